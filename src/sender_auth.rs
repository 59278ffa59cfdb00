//! Sender authentication of stored messages: DKIM, ARC, SPF and DMARC verdicts from mail-auth,
//! checked after acknowledgement within a time budget, so DNS trouble costs only verdicts.
//!
//! The checks run in their own task with a copy of the message, so that a panic inside the
//! verifier libraries on hostile input turns into a `permerror (internal error)` verdict
//! instead of a lost task. Verdicts read like Authentication-Results entries (RFC 8601):
//! a result keyword, an optional reason in parentheses, then `property=value` pairs.

use std::borrow::{Borrow, Cow};
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mail_auth::arc::ArcError;
use mail_auth::common::crypto::CryptoError;
use mail_auth::dkim::DkimError;
use mail_auth::dmarc::Policy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use mail_auth::hickory_resolver::system_conf::read_system_conf;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    ArcOutput, AuthenticatedMessage, DkimOutput, DkimResult, DmarcOutput, DmarcResult, DnsError,
    Error, MX, MessageAuthenticator, Parameters, RecordSet, ResolverCache, SpfOutput, SpfResult,
    Txt,
};
use tokio::time::{Instant, timeout_at};
use tracing::{debug, info, warn};

use crate::model::{AuthResults, unix_now};
use crate::telemetry::{self, AuthOutcome as Outcome};

/// How much of the total budget the DKIM, ARC and SPF checks may use together; the rest is
/// kept for DMARC, so that a slow SPF include chain cannot starve the DMARC lookups.
const FIRST_PHASE_SHARE: (u32, u32) = (3, 4);
/// The total budget of one verification, in DNS timeouts: DKIM, ARC and SPF run side by side,
/// SPF may need a few lookups in a row, and DMARC's tree walk follows them.
const BUDGET_IN_TIMEOUTS: u32 = 4;
/// Time past the budget after which the verification task is abandoned: the budget bounds the
/// DNS waits, this bounds the CPU work (body hashes, signature checks) around them.
const HARD_STOP_GRACE: Duration = Duration::from_secs(1);
/// Entries in each parsed-record cache. hickory keeps its own response cache; these spare
/// re-parsing records that every message from a busy domain needs.
const CACHE_ENTRIES: usize = 2048;

const TIMEOUT: &str = "timeout";

/// The SMTP facts the checks need besides the message bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SenderContext {
    /// The client's address; `None` for Unix-socket LMTP and imports, which skips SPF.
    pub client_ip: Option<IpAddr>,
    /// The EHLO/HELO argument.
    pub helo: String,
    /// The reverse path without angle brackets; empty for the null sender.
    pub mail_from: String,
    /// This host's name, for the SPF `%{r}` macro.
    pub receiver_host: String,
}

/// Verifies DKIM, ARC, SPF and DMARC. Built once at daemon start; clones share the resolver
/// and its caches.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` only when hickory could not build even a resolver without name servers; every
    /// check then reports `temperror (no resolver)`.
    authenticator: Option<MessageAuthenticator>,
    caches: Caches,
    /// Invariant: `first_phase <= budget`.
    budget: Duration,
    first_phase: Duration,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("resolver", &self.inner.authenticator.is_some())
            .field("budget", &self.inner.budget)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier using the system resolver configuration (`/etc/resolv.conf`) with each DNS
    /// query bounded by `dns_timeout`. If that configuration cannot be read, every lookup
    /// fails at once and the verdicts that need DNS are `temperror`.
    pub fn new(dns_timeout: Duration) -> Verifier {
        let (config, options) = match read_system_conf() {
            Ok(conf) => conf,
            Err(e) => {
                warn!(error = %e, "cannot read the resolver configuration; dns checks will fail");
                (ResolverConfig::default(), ResolverOpts::default())
            }
        };
        Verifier::build(config, options, dns_timeout)
    }

    /// A verifier asking these name servers (UDP, and TCP for truncated answers) instead of
    /// the system's.
    pub fn with_name_servers(servers: &[SocketAddr], dns_timeout: Duration) -> Verifier {
        let servers = servers.iter().map(|server| name_server(*server)).collect();
        let config = ResolverConfig::from_name_servers(servers);
        Verifier::build(config, ResolverOpts::default(), dns_timeout)
    }

    fn build(config: ResolverConfig, mut options: ResolverOpts, dns_timeout: Duration) -> Verifier {
        let servers = config.name_servers().len();
        options.timeout = dns_timeout;
        // hickory retries a failed query `attempts` more times, each with the full timeout;
        // without retries one query waits at most `dns_timeout`.
        options.attempts = 0;
        let authenticator = match MessageAuthenticator::new(config, options) {
            Ok(authenticator) => Some(authenticator),
            Err(e) => {
                warn!(error = %e, "cannot build the resolver; dns checks will fail");
                None
            }
        };
        let budget = dns_timeout.saturating_mul(BUDGET_IN_TIMEOUTS);
        info!(
            servers,
            dns_timeout_ms = dns_timeout.as_millis(),
            "sender authentication ready"
        );
        Verifier::assemble(authenticator, budget)
    }

    fn assemble(authenticator: Option<MessageAuthenticator>, budget: Duration) -> Verifier {
        let (share, of) = FIRST_PHASE_SHARE;
        let inner = Inner {
            authenticator,
            caches: Caches::default(),
            budget,
            first_phase: budget / of * share,
        };
        Verifier {
            inner: Arc::new(inner),
        }
    }

    /// Checks one message. Never fails and never takes much longer than four DNS timeouts:
    /// whatever did not finish in time reads `temperror (timeout)`.
    ///
    /// The message is copied into the checking task; call this from a task of its own after
    /// the message was acknowledged, never on the way to the SMTP reply.
    pub async fn verify(&self, raw_message: &[u8], ctx: &SenderContext) -> AuthResults {
        let started = Instant::now();
        let inner = Arc::clone(&self.inner);
        let raw = raw_message.to_vec();
        let task_ctx = ctx.clone();
        // TODO(perf): body hashes and signature checks run on a runtime worker; a 50 MB
        // message holds it for a while. Move the hashing to spawn_blocking if that shows.
        let mut task = tokio::spawn(async move { inner.check(&raw, &task_ctx, started).await });

        let hard_stop = started + self.inner.budget + HARD_STOP_GRACE;
        let verdicts = match timeout_at(hard_stop, &mut task).await {
            Ok(Ok(verdicts)) => verdicts,
            Ok(Err(e)) => {
                warn!(error = %e, "sender authentication task failed");
                Verdicts::uniform("permerror", "internal error", Outcome::Internal)
            }
            Err(_) => {
                task.abort();
                Verdicts::uniform("temperror", TIMEOUT, Outcome::TimedOut)
            }
        };

        telemetry::auth_check(verdicts.outcome);
        debug!(
            outcome = verdicts.outcome.as_str(),
            dkim = verdicts.dkim.len(),
            spf = %verdicts.spf,
            dmarc = %verdicts.dmarc,
            elapsed_ms = started.elapsed().as_millis(),
            "sender authentication checked"
        );
        verdicts.into_results(unix_now())
    }

    /// Pre-loads a parsed TXT answer, as if the resolver had returned it.
    #[cfg(test)]
    fn insert_txt(&self, name: &str, record: impl Into<Txt>) {
        use mail_auth::common::resolver::ToFqdn;
        let key = name.to_fqdn().into_owned().into_boxed_str();
        let valid_until = std::time::Instant::now() + Duration::from_secs(3600);
        self.inner
            .caches
            .txt
            .insert(key, record.into(), valid_until);
    }
}

fn name_server(server: SocketAddr) -> NameServerConfig {
    let mut config = NameServerConfig::udp_and_tcp(server.ip());
    for connection in &mut config.connections {
        connection.port = server.port();
    }
    config
}

impl Inner {
    async fn check(&self, raw: &[u8], ctx: &SenderContext, started: Instant) -> Verdicts {
        let Some(auth) = &self.authenticator else {
            return Verdicts::uniform("temperror", "no resolver", Outcome::TempError);
        };
        let first_phase = started + self.first_phase;
        let end = started + self.budget;
        let identity = SpfIdentity::of(ctx);

        let Some(message) = AuthenticatedMessage::parse(raw) else {
            let spf = self.check_spf(auth, ctx, &identity, end).await;
            return Verdicts::unparsable(spf.verdict(&identity));
        };

        let (dkim, arc, spf) = tokio::join!(
            timeout_at(first_phase, auth.verify_dkim(self.caches.params(&message))),
            timeout_at(first_phase, auth.verify_arc(self.caches.params(&message))),
            self.check_spf(auth, ctx, &identity, first_phase),
        );
        let mut timed_out = dkim.is_err() || arc.is_err() || matches!(spf, SpfCheck::TimedOut);
        let dkim = dkim.unwrap_or_else(|_| timed_out_dkim(&message));
        let spf_output = spf.dmarc_input(&identity);

        let dmarc = DmarcParameters::new(&message, &dkim, identity.domain, &spf_output);
        let dmarc = timeout_at(end, auth.verify_dmarc(self.caches.params(dmarc))).await;
        timed_out |= dmarc.is_err();

        let outcome = match &dmarc {
            Ok(dmarc) if !timed_out => outcome_of(&dmarc.result()),
            _ => Outcome::TimedOut,
        };
        Verdicts {
            dkim: dkim_verdicts(&dkim),
            arc: arc.map_or_else(|_| timed_out_verdict(), |arc| arc_verdict(&arc)),
            spf: spf.verdict(&identity),
            dmarc: dmarc.map_or_else(|_| timed_out_verdict(), |dmarc| dmarc_verdict(&dmarc)),
            outcome,
        }
    }

    /// RFC 7208 §2.4: the MAIL FROM identity, or the HELO identity for the null sender.
    async fn check_spf(
        &self,
        auth: &MessageAuthenticator,
        ctx: &SenderContext,
        identity: &SpfIdentity<'_>,
        deadline: Instant,
    ) -> SpfCheck {
        let Some(ip) = ctx.client_ip else {
            return SpfCheck::NoClient;
        };
        let params = match identity.kind {
            SpfKind::MailFrom => {
                SpfParameters::verify_mail_from(ip, &ctx.helo, &ctx.receiver_host, identity.sender)
            }
            SpfKind::Helo => SpfParameters::verify_ehlo(ip, &ctx.helo, &ctx.receiver_host),
        };
        match timeout_at(deadline, auth.verify_spf(self.caches.params(params))).await {
            Ok(output) => SpfCheck::Checked(output),
            Err(_) => SpfCheck::TimedOut,
        }
    }
}

/// When the DKIM checks ran out of time, DMARC must still see the signatures as temporarily
/// unverifiable rather than absent, or it could report `fail` instead of `temperror`.
fn timed_out_dkim<'x>(message: &'x AuthenticatedMessage<'x>) -> Vec<DkimOutput<'x>> {
    let timeout = Error::Dns(DnsError::Resolver(TIMEOUT.to_string()));
    let outputs = message
        .dkim_headers
        .iter()
        .map(|header| DkimOutput::temp_err(timeout.clone()).with_signature(&header.header));
    outputs.collect()
}

/// Which SPF identity is checked and the domain it names.
#[derive(Debug)]
struct SpfIdentity<'a> {
    kind: SpfKind,
    sender: &'a str,
    /// Also the RFC 5321 domain DMARC aligns SPF with.
    domain: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SpfKind {
    MailFrom,
    Helo,
}

impl<'a> SpfIdentity<'a> {
    fn of(ctx: &'a SenderContext) -> SpfIdentity<'a> {
        let sender = ctx
            .mail_from
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>');
        if sender.is_empty() {
            return SpfIdentity {
                kind: SpfKind::Helo,
                sender,
                domain: &ctx.helo,
            };
        }
        let domain = sender
            .rsplit_once('@')
            .map_or(ctx.helo.as_str(), |(_, domain)| domain);
        SpfIdentity {
            kind: SpfKind::MailFrom,
            sender,
            domain,
        }
    }

    fn property(&self) -> &'static str {
        match self.kind {
            SpfKind::MailFrom => "smtp.mailfrom",
            SpfKind::Helo => "smtp.helo",
        }
    }
}

enum SpfCheck {
    /// No client address: SPF does not apply, DMARC goes by DKIM alone.
    NoClient,
    Checked(SpfOutput),
    TimedOut,
}

impl SpfCheck {
    fn verdict(&self, identity: &SpfIdentity<'_>) -> String {
        let domain = [(identity.property(), identity.domain)];
        match self {
            SpfCheck::NoClient => verdict("none", Some("no client address".into()), &[]),
            SpfCheck::TimedOut => verdict("temperror", Some(TIMEOUT.into()), &domain),
            SpfCheck::Checked(_) if identity.domain.is_empty() => {
                verdict("none", Some("no sender domain".into()), &[])
            }
            SpfCheck::Checked(output) => verdict(spf_keyword(output.result()), None, &domain),
        }
    }

    /// What DMARC is told about SPF; a check that did not finish counts as a temporary error.
    fn dmarc_input(&self, identity: &SpfIdentity<'_>) -> SpfOutput {
        match self {
            SpfCheck::NoClient => SpfOutput::default(),
            SpfCheck::Checked(output) => output.clone(),
            SpfCheck::TimedOut => {
                SpfOutput::new(identity.domain.to_string()).with_result(SpfResult::TempError)
            }
        }
    }
}

/// The metric outcome of one verification: the DMARC result.
fn outcome_of(dmarc: &DmarcResult) -> Outcome {
    match dmarc {
        DmarcResult::Pass => Outcome::Pass,
        DmarcResult::Fail(_) => Outcome::Fail,
        DmarcResult::TempError(_) => Outcome::TempError,
        DmarcResult::PermError(_) => Outcome::PermError,
        DmarcResult::None => Outcome::None,
    }
}

/// The verdicts of one verification before they are stamped with the time.
#[derive(Debug)]
struct Verdicts {
    dkim: Vec<String>,
    arc: String,
    spf: String,
    dmarc: String,
    outcome: Outcome,
}

impl Verdicts {
    fn uniform(keyword: &str, reason: &str, outcome: Outcome) -> Verdicts {
        let text = verdict(keyword, Some(reason.into()), &[]);
        Verdicts {
            dkim: vec![text.clone()],
            arc: text.clone(),
            spf: text.clone(),
            dmarc: text,
            outcome,
        }
    }

    /// mail-auth found no header at all; SPF depends on the envelope only and still counts.
    fn unparsable(spf: String) -> Verdicts {
        let text = verdict("permerror", Some("unparsable message".into()), &[]);
        Verdicts {
            dkim: vec![text.clone()],
            arc: text.clone(),
            spf,
            dmarc: text,
            outcome: Outcome::PermError,
        }
    }

    fn into_results(self, checked: i64) -> AuthResults {
        AuthResults {
            dkim: self.dkim,
            arc: self.arc,
            spf: self.spf,
            dmarc: self.dmarc,
            checked,
        }
    }
}

/// `keyword (reason) property=value …`, leaving out empty values.
fn verdict(keyword: &str, reason: Option<Cow<'_, str>>, properties: &[(&str, &str)]) -> String {
    let mut text = keyword.to_string();
    if let Some(reason) = reason {
        text.push_str(" (");
        text.push_str(&reason);
        text.push(')');
    }
    for (name, value) in properties.iter().filter(|(_, value)| !value.is_empty()) {
        text.push(' ');
        text.push_str(name);
        text.push('=');
        text.push_str(value);
    }
    text
}

fn timed_out_verdict() -> String {
    verdict("temperror", Some(TIMEOUT.into()), &[])
}

fn dkim_verdicts(outputs: &[DkimOutput<'_>]) -> Vec<String> {
    if outputs.is_empty() {
        return vec![verdict("none", None, &[])];
    }
    outputs.iter().map(dkim_verdict).collect()
}

fn dkim_verdict(output: &DkimOutput<'_>) -> String {
    let (keyword, why) = match output.result() {
        DkimResult::Pass => ("pass", None),
        // RFC 6376 §3.7: a body hash that does not match is a failed verification; mail-auth
        // files it under neutral, RFC 8601 §2.7.1 reads it as fail.
        DkimResult::Neutral(e @ Error::Dkim(DkimError::FailedBodyHashMatch)) => {
            ("fail", Some(reason(e)))
        }
        // mail-auth passes ring's unspecified error through for a bad Ed25519 signature; a
        // key that cannot be used shows as a permerror instead.
        DkimResult::Fail(Error::Crypto(CryptoError::Library(_))) => (
            "fail",
            Some(crypto_reason(&CryptoError::FailedVerification).into()),
        ),
        DkimResult::Neutral(e) => ("neutral", Some(reason(e))),
        DkimResult::Fail(e) => ("fail", Some(reason(e))),
        DkimResult::PermError(e) => ("permerror", Some(reason(e))),
        DkimResult::TempError(e) => ("temperror", Some(reason(e))),
        DkimResult::None => ("none", None),
    };
    let (domain, selector) = output.signature().map_or(("", ""), |s| (&s.d, &s.s));
    verdict(
        keyword,
        why,
        &[("header.d", domain), ("header.s", selector)],
    )
}

fn arc_verdict(output: &ArcOutput<'_>) -> String {
    match output.result() {
        DkimResult::Pass => {
            let hops = output.sets().len().to_string();
            verdict("pass", None, &[("arc.chain", &hops)])
        }
        DkimResult::Neutral(e) => verdict("neutral", Some(reason(e)), &[]),
        DkimResult::Fail(e) => verdict("fail", Some(reason(e)), &[]),
        DkimResult::PermError(e) => verdict("permerror", Some(reason(e)), &[]),
        DkimResult::TempError(e) => verdict("temperror", Some(reason(e)), &[]),
        DkimResult::None => verdict("none", None, &[]),
    }
}

fn spf_keyword(result: SpfResult) -> &'static str {
    match result {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

fn dmarc_verdict(output: &DmarcOutput) -> String {
    let result = output.result();
    let (keyword, error) = match &result {
        DmarcResult::Pass => ("pass", None),
        DmarcResult::Fail(e) => ("fail", Some(e)),
        DmarcResult::TempError(e) => ("temperror", Some(e)),
        DmarcResult::PermError(e) => ("permerror", Some(e)),
        DmarcResult::None => ("none", None),
    };
    // The policy is only meaningful when a record was found.
    let policy = output
        .dmarc_record()
        .map_or("", |_| policy_name(output.policy()));
    verdict(
        keyword,
        error.map(reason),
        &[("header.from", output.domain()), ("policy", policy)],
    )
}

fn policy_name(policy: Policy) -> &'static str {
    match policy {
        Policy::None | Policy::Unspecified => "none",
        Policy::Quarantine => "quarantine",
        Policy::Reject => "reject",
    }
}

/// A short lower-case reason for a verdict; mail-auth's own messages are sentences.
fn reason(error: &Error) -> Cow<'static, str> {
    let text = match error {
        Error::ParseError => "malformed",
        Error::MissingParameters => "missing tags",
        Error::NoHeadersFound => "no signed headers",
        Error::Base64 => "bad base64",
        Error::NotAligned => "not aligned",
        Error::Io(_) => "unexpected record",
        Error::Crypto(e) => crypto_reason(e),
        Error::Dns(e) => dns_reason(e),
        Error::Dkim(e) => dkim_reason(e),
        Error::Arc(ArcError::InvalidInstance(i)) => return format!("invalid instance {i}").into(),
        Error::Arc(e) => arc_reason(e),
        Error::Dkim2(_) => "dkim2 error",
    };
    Cow::Borrowed(text)
}

fn crypto_reason(error: &CryptoError) -> &'static str {
    match error {
        CryptoError::FailedVerification => "signature mismatch",
        CryptoError::IncompatibleAlgorithms => "key does not fit the algorithm",
        CryptoError::Library(_) => "unusable key",
    }
}

fn dns_reason(error: &DnsError) -> &'static str {
    match error {
        // mail-auth keeps only hickory's message; a timeout is worth telling apart.
        DnsError::Resolver(message) if message.contains("timed out") => "dns timeout",
        DnsError::Resolver(message) if message == TIMEOUT => TIMEOUT,
        DnsError::Resolver(message) if message.contains("no connections") => "no resolver",
        DnsError::Resolver(_) => "dns error",
        DnsError::RecordNotFound(_) => "no dns record",
        DnsError::InvalidRecordType => "invalid dns record",
    }
}

fn dkim_reason(error: &DkimError) -> &'static str {
    match error {
        DkimError::UnsupportedVersion => "unsupported version",
        DkimError::UnsupportedAlgorithm => "unsupported algorithm",
        DkimError::UnsupportedCanonicalization => "unsupported canonicalization",
        DkimError::UnsupportedKeyType => "unsupported key type",
        DkimError::FailedBodyHashMatch => "body hash mismatch",
        DkimError::FailedAuidMatch => "identity outside the signing domain",
        DkimError::RevokedPublicKey => "key revoked",
        DkimError::SignatureExpired => "signature expired",
        DkimError::SignatureLength => "body length limit refused",
    }
}

fn arc_reason(error: &ArcError) -> &'static str {
    match error {
        ArcError::ChainTooLong => "chain too long",
        ArcError::InvalidInstance(_) => "invalid instance",
        ArcError::InvalidCV => "invalid cv",
        ArcError::HasHeaderTag => "seal has an h= tag",
        ArcError::BrokenChain => "broken chain",
        ArcError::FailedBodyHashMatch => "body hash mismatch",
        ArcError::SignatureExpired => "signature expired",
        ArcError::SignatureLength => "body length limit refused",
    }
}

type TxtCache = DnsCache<Box<str>, Txt>;
type MxCache = DnsCache<Box<str>, RecordSet<MX>>;
type Ipv4Cache = DnsCache<Box<str>, RecordSet<Ipv4Addr>>;
type Ipv6Cache = DnsCache<Box<str>, RecordSet<Ipv6Addr>>;
type PtrCache = DnsCache<IpAddr, RecordSet<Box<str>>>;
type CachedParameters<'x, P> = Parameters<'x, P, TxtCache, MxCache, Ipv4Cache, Ipv6Cache, PtrCache>;

/// mail-auth's record caches, shared by every verification.
#[derive(Default)]
struct Caches {
    txt: TxtCache,
    mx: MxCache,
    ipv4: Ipv4Cache,
    ipv6: Ipv6Cache,
    ptr: PtrCache,
}

impl Caches {
    fn params<P>(&self, params: P) -> CachedParameters<'_, P> {
        Parameters::new(params)
            .with_txt_cache(&self.txt)
            .with_mx_cache(&self.mx)
            .with_ipv4_cache(&self.ipv4)
            .with_ipv6_cache(&self.ipv6)
            .with_ptr_cache(&self.ptr)
    }
}

/// A bounded map of parsed DNS answers, each kept until the TTL mail-auth gives it.
struct DnsCache<K, V> {
    entries: Mutex<HashMap<K, (V, std::time::Instant)>>,
}

impl<K, V> Default for DnsCache<K, V> {
    fn default() -> Self {
        DnsCache {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq, V: Clone> ResolverCache<K, V> for DnsCache<K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        // A panic elsewhere cannot leave the map half-updated: every change is one call.
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let (value, valid_until) = entries.get(name)?;
        if *valid_until > std::time::Instant::now() {
            return Some(value.clone());
        }
        entries.remove(name);
        None
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.remove(name).map(|(value, _)| value)
    }

    fn insert(&self, key: K, value: V, valid_until: std::time::Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= CACHE_ENTRIES {
            let now = std::time::Instant::now();
            entries.retain(|_, (_, until)| *until > now);
        }
        // Still full of live entries: start over rather than track recency. A miss costs one
        // answer from hickory's cache and a parse.
        if entries.len() >= CACHE_ENTRIES {
            entries.clear();
        }
        entries.insert(key, (value, valid_until));
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;

    use base64::Engine;
    use mail_auth::common::crypto::Ed25519Key;
    use mail_auth::common::headers::HeaderWriter;
    use mail_auth::common::parse::TxtRecordParser;
    use mail_auth::common::verify::DomainKey;
    use mail_auth::dkim::DkimSigner;
    use mail_auth::dmarc::Dmarc;
    use mail_auth::hickory_resolver::proto::op::ResponseCode;
    use mail_auth::spf::Spf;
    use proptest::prelude::*;

    use super::*;

    const MESSAGE: &str = "From: Alice <alice@example.test>\r\n\
        To: bob@example.org\r\n\
        Subject: quarterly numbers\r\n\
        Date: Mon, 2 Jun 2025 10:00:00 +0000\r\n\
        Message-ID: <1@example.test>\r\n\
        \r\n\
        The numbers are attached.\r\n";

    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));

    /// A verifier without name servers: every lookup that the test did not pre-load fails at
    /// once, as on a machine whose resolv.conf cannot be read.
    fn offline_verifier() -> Verifier {
        Verifier::build(
            ResolverConfig::default(),
            ResolverOpts::default(),
            Duration::from_secs(1),
        )
    }

    /// A UDP socket that takes queries and never answers.
    fn black_hole() -> (UdpSocket, SocketAddr) {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a loopback udp socket");
        let addr = socket.local_addr().expect("a bound socket has an address");
        (socket, addr)
    }

    fn context(client_ip: Option<IpAddr>) -> SenderContext {
        SenderContext {
            client_ip,
            helo: "mx.example.test".to_string(),
            mail_from: "alice@example.test".to_string(),
            receiver_host: "threads.example.org".to_string(),
        }
    }

    /// Signs `MESSAGE` with a fresh Ed25519 key and publishes the key, an SPF record for the
    /// client and a DMARC reject policy for example.test in the verifier's cache.
    fn signed_message(verifier: &Verifier) -> Vec<u8> {
        let pkcs8 = Ed25519Key::generate_pkcs8().expect("generate an ed25519 key");
        let key = Ed25519Key::from_pkcs8_der(&pkcs8).expect("read the generated key");
        let public = base64::engine::general_purpose::STANDARD.encode(key.public_key());
        let record = format!("v=DKIM1; k=ed25519; p={public}");
        let signature = DkimSigner::from_key(key)
            .domain("example.test")
            .selector("s1")
            .headers(["From", "To", "Subject", "Date", "Message-ID"])
            .sign(MESSAGE.as_bytes())
            .expect("sign the message");

        let key = DomainKey::parse(record.as_bytes()).expect("a valid key record");
        verifier.insert_txt("s1._domainkey.example.test", key);
        let spf = Spf::parse(b"v=spf1 ip4:192.0.2.10 -all").expect("a valid spf record");
        verifier.insert_txt("example.test", spf);
        let dmarc = Dmarc::parse(b"v=DMARC1; p=reject").expect("a valid dmarc record");
        verifier.insert_txt("_dmarc.example.test", dmarc);
        // The DMARC tree walk also asks the top-level domain.
        let nxdomain = Error::Dns(DnsError::RecordNotFound(ResponseCode::NXDomain));
        verifier.insert_txt("_dmarc.test", Txt::Error(nxdomain));

        format!("{}{MESSAGE}", signature.to_header()).into_bytes()
    }

    #[tokio::test]
    async fn signed_message_passes_dkim_spf_and_dmarc() {
        let verifier = offline_verifier();
        let raw = signed_message(&verifier);

        let results = verifier.verify(&raw, &context(Some(CLIENT))).await;

        assert_eq!(results.dkim, ["pass header.d=example.test header.s=s1"]);
        assert_eq!(results.arc, "none");
        assert_eq!(results.spf, "pass smtp.mailfrom=example.test");
        assert_eq!(results.dmarc, "pass header.from=example.test policy=reject");
        assert!(results.checked > 0);
    }

    #[tokio::test]
    async fn without_client_address_dmarc_goes_by_dkim() {
        let verifier = offline_verifier();
        let raw = signed_message(&verifier);

        let results = verifier.verify(&raw, &context(None)).await;

        assert_eq!(results.dkim, ["pass header.d=example.test header.s=s1"]);
        assert_eq!(results.spf, "none (no client address)");
        assert_eq!(results.dmarc, "pass header.from=example.test policy=reject");
    }

    #[tokio::test]
    async fn changed_body_fails_dkim_and_dmarc() {
        let verifier = offline_verifier();
        let raw = String::from_utf8(signed_message(&verifier)).expect("the message is text");
        let raw = raw.replace("are attached", "are not attached");

        let results = verifier.verify(raw.as_bytes(), &context(None)).await;

        assert_eq!(
            results.dkim,
            ["fail (body hash mismatch) header.d=example.test header.s=s1"]
        );
        assert_eq!(
            results.dmarc,
            "fail (not aligned) header.from=example.test policy=reject"
        );
    }

    #[tokio::test]
    async fn changed_signed_header_fails_dkim() {
        let verifier = offline_verifier();
        let raw = String::from_utf8(signed_message(&verifier)).expect("the message is text");
        let raw = raw.replace("quarterly numbers", "urgent: wire transfer");

        let results = verifier
            .verify(raw.as_bytes(), &context(Some(CLIENT)))
            .await;

        assert_eq!(
            results.dkim,
            ["fail (signature mismatch) header.d=example.test header.s=s1"]
        );
        // SPF still passes and aligns, so DMARC does too.
        assert_eq!(results.dmarc, "pass header.from=example.test policy=reject");
    }

    #[tokio::test]
    async fn null_sender_checks_helo() {
        let verifier = offline_verifier();
        let raw = signed_message(&verifier);
        let spf = Spf::parse(b"v=spf1 ip4:192.0.2.10 -all").expect("a valid spf record");
        verifier.insert_txt("mx.example.test", spf);
        let ctx = SenderContext {
            mail_from: String::new(),
            ..context(Some(CLIENT))
        };

        let results = verifier.verify(&raw, &ctx).await;

        assert_eq!(results.spf, "pass smtp.helo=mx.example.test");
    }

    #[tokio::test]
    async fn unanswered_queries_give_temperror_within_the_deadline() {
        let (_socket, addr) = black_hole();
        let dns_timeout = Duration::from_secs(1);
        let verifier = Verifier::with_name_servers(&[addr], dns_timeout);
        let pkcs8 = Ed25519Key::generate_pkcs8().expect("generate an ed25519 key");
        let key = Ed25519Key::from_pkcs8_der(&pkcs8).expect("read the generated key");
        let signature = DkimSigner::from_key(key)
            .domain("example.test")
            .selector("s1")
            .headers(["From", "Subject"])
            .sign(MESSAGE.as_bytes())
            .expect("sign the message");
        let raw = format!("{}{MESSAGE}", signature.to_header());

        let started = std::time::Instant::now();
        let results = verifier
            .verify(raw.as_bytes(), &context(Some(CLIENT)))
            .await;
        let elapsed = started.elapsed();

        assert!(
            elapsed < dns_timeout * BUDGET_IN_TIMEOUTS + HARD_STOP_GRACE,
            "{elapsed:?}"
        );
        assert_eq!(results.dkim.len(), 1);
        assert!(
            results.dkim[0].starts_with("temperror ("),
            "{:?}",
            results.dkim
        );
        assert!(results.dkim[0].ends_with("header.d=example.test header.s=s1"));
        assert!(results.spf.starts_with("temperror"), "{}", results.spf);
        assert!(
            results.dmarc.starts_with("temperror ("),
            "{}",
            results.dmarc
        );
        assert_eq!(results.arc, "none");
    }

    #[tokio::test]
    async fn budget_cuts_off_slow_lookups() {
        let (_socket, addr) = black_hole();
        let slow = Verifier::with_name_servers(&[addr], Duration::from_secs(30));
        let authenticator = slow.inner.authenticator.clone();
        let verifier = Verifier::assemble(authenticator, Duration::from_millis(400));
        let raw = signed_message(&offline_verifier());

        let started = std::time::Instant::now();
        let results = verifier.verify(&raw, &context(Some(CLIENT))).await;

        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            results.dkim,
            ["temperror (timeout) header.d=example.test header.s=s1"]
        );
        assert_eq!(
            results.spf,
            "temperror (timeout) smtp.mailfrom=example.test"
        );
        assert_eq!(results.dmarc, "temperror (timeout)");
    }

    #[tokio::test]
    async fn garbage_gives_none_or_permerror() {
        let verifier = offline_verifier();
        for raw in [
            &b""[..],
            b"\0\xff\xfe",
            b"no header here",
            b"\r\n\r\n",
            b":::\r\n\r\n",
        ] {
            let results = verifier.verify(raw, &context(None)).await;

            let mut verdicts = results.dkim.iter().chain([&results.arc, &results.dmarc]);
            assert!(
                verdicts.all(|v| v == "none" || v.starts_with("permerror")),
                "{raw:?}: {results:?}"
            );
            assert_eq!(results.spf, "none (no client address)");
        }
    }

    #[test]
    fn cache_forgets_expired_entries() {
        let cache: DnsCache<Box<str>, u32> = DnsCache::default();
        let past = std::time::Instant::now();
        cache.insert("old.test.".into(), 1, past);
        cache.insert("new.test.".into(), 2, past + Duration::from_secs(60));

        assert_eq!(cache.get("old.test."), None);
        assert_eq!(cache.get("new.test."), Some(2));
    }

    #[test]
    fn cache_stays_bounded() {
        let cache: DnsCache<Box<str>, usize> = DnsCache::default();
        let later = std::time::Instant::now() + Duration::from_secs(60);
        for i in 0..CACHE_ENTRIES * 2 + 1 {
            cache.insert(format!("{i}.test.").into(), i, later);
        }

        let len = cache.entries.lock().expect("not poisoned").len();
        assert!(len <= CACHE_ENTRIES, "{len}");
    }

    /// Header lines that reach deeper into mail-auth's parsers than random bytes do.
    fn header_line() -> impl Strategy<Value = Vec<u8>> {
        let names = prop::sample::select(vec![
            "DKIM-Signature",
            "ARC-Seal",
            "ARC-Message-Signature",
            "ARC-Authentication-Results",
            "From",
            "Received",
            "Subject",
        ]);
        let value = prop::collection::vec(any::<u8>(), 0..200);
        (names, value).prop_map(|(name, value)| {
            let mut line = format!("{name}: ").into_bytes();
            line.extend(value);
            line.extend_from_slice(b"\r\n");
            line
        })
    }

    fn message_bytes() -> impl Strategy<Value = Vec<u8>> {
        let random = prop::collection::vec(any::<u8>(), 0..2048);
        let headers = prop::collection::vec(header_line(), 0..8);
        let body = prop::collection::vec(any::<u8>(), 0..256);
        let structured = (headers, body).prop_map(|(headers, body)| {
            let mut raw = headers.concat();
            raw.extend_from_slice(b"\r\n");
            raw.extend(body);
            raw
        });
        prop_oneof![random, structured]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn verify_survives_any_bytes(raw in message_bytes(), with_client in any::<bool>()) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("build a test runtime");
            let ctx = context(with_client.then_some(CLIENT));

            let results = runtime.block_on(offline_verifier().verify(&raw, &ctx));

            prop_assert!(!results.dkim.is_empty());
            let verdicts = results.dkim.iter().chain([&results.arc, &results.spf, &results.dmarc]);
            for verdict in verdicts {
                prop_assert!(!verdict.contains("internal error"), "{:?}", results);
            }
        }
    }
}
