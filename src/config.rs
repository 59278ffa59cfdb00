//! The typed configuration: every key, its default, and validation whose errors name the
//! file, the line and the key at fault.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::{Address, ProjectPath};

/// The whole configuration. Every key has a default, so an empty file (or none) is the
/// embedded default of ARCHITECTURE.md §7.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub store: StoreConfig,
    pub admin: AdminConfig,
    pub metrics: MetricsConfig,
    pub policy: PolicyConfig,
    pub log: LogConfig,
    pub tls: TlsConfig,
    pub smtp: SmtpConfig,
    pub lmtp: LmtpConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The data directory: the sled database, the generated certificate, the admin socket
    /// unless `[admin] socket` says otherwise.
    pub path: PathBuf,
    /// sled's page cache.
    pub cache_size: ByteSize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("threadsd-data"),
            cache_size: ByteSize(8 << 20),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// The admin Unix socket; `<store.path>/admin.sock` when unset.
    pub socket: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9898)),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Where mail goes when nothing else picks a project.
    pub default_project: ProjectPath,
    /// Whether an address nobody configured counts as shared.
    pub default_shared: bool,
    /// Store addresses seen in mail as contacts.
    pub auto_create_contacts: bool,
    /// Internal mail with a shared user channel is visible to every user.
    pub share_internal: bool,
    /// The daemon's own addresses: never counted as parties of a message.
    pub ingest_addresses: Vec<Address>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            default_project: ProjectPath::parse("Inbox").expect("a valid literal path"),
            default_shared: true,
            auto_create_contacts: true,
            share_internal: true,
            ingest_addresses: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter: `info`, `threadsd=debug`, …; `RUST_LOG` overrides it.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain; with neither this nor `private_key`, a self-signed
    /// certificate is generated into the data directory.
    pub certificate: Option<PathBuf>,
    pub private_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// Plain SMTP listeners (STARTTLS offered).
    pub listen: Vec<ListenAddr>,
    /// Implicit-TLS listeners (port 465 style).
    pub tls_listen: Vec<ListenAddr>,
    /// The name in the greeting and EHLO reply; the machine's host name when unset.
    pub hostname: Option<String>,
    /// Recipients mail is accepted for: exact addresses, `@domain`, or `*`.
    pub accept_recipients: Vec<RecipientPattern>,
    /// Clients from these networks may submit without authenticating.
    pub allow_networks: Vec<Network>,
    /// Refuse mail from clients that did not authenticate, whatever their network.
    pub require_auth: bool,
    /// Offer AUTH on connections without TLS.
    pub auth_without_tls: bool,
    pub max_message_size: ByteSize,
    pub max_recipients: usize,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    /// Failed commands before the session is closed with 421.
    pub max_errors: usize,
    /// Failed AUTH attempts from one client address, over all its connections, before
    /// AUTH from it is refused (454 4.7.0) for the rest of `auth_failure_window`.
    pub max_auth_failures: u32,
    /// The window `max_auth_failures` is counted in, from the first failure.
    pub auth_failure_window: Seconds,
    /// RFC 5321 §4.5.3.2: at least 5 minutes for a command.
    pub command_timeout: Seconds,
    /// RFC 5321 §4.5.3.2.6: 10 minutes between data blocks.
    pub data_timeout: Seconds,
    /// How long sessions may finish after SIGTERM.
    pub shutdown_grace: Seconds,
    /// Verify DKIM, ARC, SPF and DMARC after the message is stored.
    pub verify_auth: bool,
    /// The resolver timeout of that verification.
    pub dns_timeout: Seconds,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            listen: vec![ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 2525)))],
            tls_listen: Vec::new(),
            hostname: None,
            accept_recipients: vec![RecipientPattern::Any],
            allow_networks: vec![
                Network("127.0.0.0/8".parse().expect("a valid literal network")),
                Network("::1/128".parse().expect("a valid literal network")),
            ],
            require_auth: false,
            auth_without_tls: false,
            max_message_size: ByteSize(50 << 20),
            max_recipients: 1000,
            max_connections: 1024,
            max_connections_per_client: 128,
            max_errors: 10,
            max_auth_failures: 10,
            auth_failure_window: Seconds(900),
            command_timeout: Seconds(300),
            data_timeout: Seconds(600),
            shutdown_grace: Seconds(30),
            verify_auth: true,
            dns_timeout: Seconds(5),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LmtpConfig {
    /// LMTP listeners: `host:port` or `unix:PATH`.
    pub listen: Vec<ListenAddr>,
    /// Permission bits of the Unix sockets.
    pub socket_mode: FileMode,
    /// The group the Unix sockets are given (a name or a number), so that an MTA running
    /// as another user can connect; the daemon's own group when unset.
    pub socket_group: Option<String>,
}

impl Default for LmtpConfig {
    fn default() -> Self {
        LmtpConfig {
            listen: vec![ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 2424)))],
            socket_mode: FileMode(0o660),
            socket_group: None,
        }
    }
}

/// Permission bits of a file: an octal string such as `"0660"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct FileMode(pub u32);

impl TryFrom<String> for FileMode {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let digits = value.trim();
        let octal = !digits.is_empty()
            && digits.len() <= 4
            && digits.bytes().all(|b| (b'0'..=b'7').contains(&b));
        let bits = octal
            .then(|| u32::from_str_radix(digits, 8).ok())
            .flatten()
            .filter(|bits| *bits <= 0o777);
        bits.map(FileMode).ok_or_else(|| {
            format!("{value:?} is not a file mode: permission bits in octal, such as \"0660\"")
        })
    }
}

impl From<FileMode> for String {
    fn from(value: FileMode) -> Self {
        format!("{:04o}", value.0)
    }
}

/// The id of a group given by name (looked up in `/etc/group`) or by number.
pub fn group_id(group: &str) -> Result<u32, String> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let groups = std::fs::read_to_string("/etc/group")
        .map_err(|e| format!("cannot read /etc/group to find group \"{group}\": {e}"))?;
    groups
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let gid = fields.nth(1)?.parse::<u32>().ok()?;
            (name == group).then_some(gid)
        })
        .next()
        .ok_or_else(|| format!("no group \"{group}\" in /etc/group"))
}

/// A listening address: TCP `host:port`, or `unix:PATH` for a Unix socket.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl TryFrom<String> for ListenAddr {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        if let Some(path) = value.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path".into());
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        value
            .parse()
            .map(ListenAddr::Tcp)
            .map_err(|_| format!("{value:?} is not host:port (IP address and port) or unix:PATH"))
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl From<ListenAddr> for String {
    fn from(value: ListenAddr) -> Self {
        value.to_string()
    }
}

/// Which envelope recipients the SMTP and LMTP listeners accept.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum RecipientPattern {
    Any,
    /// `@example.com`: every address at that domain.
    Domain(String),
    /// An exact address; its `+detail` sub-addresses match too.
    Exact(Address),
}

impl RecipientPattern {
    pub fn matches(&self, address: &Address) -> bool {
        match self {
            RecipientPattern::Any => true,
            RecipientPattern::Domain(d) => address.domain() == Some(d.as_str()),
            RecipientPattern::Exact(a) => a == address || *a == address.without_detail(),
        }
    }
}

impl TryFrom<String> for RecipientPattern {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let value = value.trim();
        if value == "*" {
            return Ok(RecipientPattern::Any);
        }
        if let Some(domain) = value.strip_prefix('@') {
            if domain.is_empty() || domain.contains('@') || domain.contains(char::is_whitespace) {
                return Err(format!("{value:?} is not @domain"));
            }
            return Ok(RecipientPattern::Domain(domain.to_lowercase()));
        }
        Address::parse(value)
            .map(RecipientPattern::Exact)
            .map_err(|e| e.to_string())
    }
}

impl From<RecipientPattern> for String {
    fn from(value: RecipientPattern) -> Self {
        match value {
            RecipientPattern::Any => "*".into(),
            RecipientPattern::Domain(d) => format!("@{d}"),
            RecipientPattern::Exact(a) => a.to_string(),
        }
    }
}

/// A CIDR network; a bare IP address is a network of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Network(pub ipnet::IpNet);

impl Network {
    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client on a dual-stack socket shows as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.0.contains(&ip)
    }
}

impl TryFrom<String> for Network {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        if let Ok(net) = value.parse::<ipnet::IpNet>() {
            return Ok(Network(net));
        }
        value
            .parse::<IpAddr>()
            .map(|ip| Network(ipnet::IpNet::from(ip)))
            .map_err(|_| format!("{value:?} is not a network (CIDR such as 10.0.0.0/8) or an IP"))
    }
}

impl From<Network> for String {
    fn from(value: Network) -> Self {
        value.0.to_string()
    }
}

/// A size in bytes: an integer, or a string with a K, M or G suffix (powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "SizeInput", into = "u64")]
pub struct ByteSize(pub u64);

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeInput {
    Number(u64),
    Text(String),
}

impl SizeInput {
    /// The number, or the text's number times the factor of its unit suffix.
    fn scaled(self, units: &[(char, u64)], example: &str) -> Result<u64, String> {
        let text = match self {
            SizeInput::Number(n) => return Ok(n),
            SizeInput::Text(t) => t,
        };
        let t = text.trim();
        let (digits, factor) = match t.char_indices().last() {
            Some((i, c)) => match units.iter().find(|(u, _)| *u == c) {
                Some((_, f)) => (&t[..i], *f),
                None => (t, 1),
            },
            None => (t, 1),
        };
        let n: u64 = digits
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not {example}"))?;
        n.checked_mul(factor)
            .ok_or_else(|| format!("{text:?} is too large"))
    }
}

impl TryFrom<SizeInput> for ByteSize {
    type Error = String;
    fn try_from(value: SizeInput) -> Result<Self, Self::Error> {
        const UNITS: &[(char, u64)] = &[
            ('K', 1 << 10),
            ('k', 1 << 10),
            ('M', 1 << 20),
            ('m', 1 << 20),
            ('G', 1 << 30),
            ('g', 1 << 30),
        ];
        let example = "a size such as 1048576, \"512K\" or \"50M\"";
        value.scaled(UNITS, example).map(ByteSize)
    }
}

impl From<ByteSize> for u64 {
    fn from(value: ByteSize) -> Self {
        value.0
    }
}

/// A duration in whole seconds: an integer, or a string with an s, m or h suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "SizeInput", into = "u64")]
pub struct Seconds(pub u64);

impl Seconds {
    pub fn duration(self) -> Duration {
        Duration::from_secs(self.0)
    }
}

impl From<Seconds> for u64 {
    fn from(value: Seconds) -> Self {
        value.0
    }
}

impl TryFrom<SizeInput> for Seconds {
    type Error = String;
    fn try_from(value: SizeInput) -> Result<Self, Self::Error> {
        const UNITS: &[(char, u64)] = &[('s', 1), ('m', 60), ('h', 3600)];
        let example = "a duration such as 30, \"90s\", \"5m\" or \"1h\"";
        value.scaled(UNITS, example).map(Seconds)
    }
}

/// A configuration that cannot be used, with where the fault is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}", file.display())?,
            None => f.write_str("configuration")?,
        }
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: Some(path.to_owned()),
            line: None,
            key: None,
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(&text).map_err(|e| ConfigError {
            file: Some(path.to_owned()),
            ..e
        })
    }

    /// Reads the file if one is given, otherwise the embedded default.
    pub fn load_or_default(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            Some(path) => Config::load(path),
            None => Ok(Config::default()),
        }
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let (line, key) = match e.span() {
                Some(span) => locate(text, span.start),
                None => (None, None),
            };
            ConfigError {
                file: None,
                line,
                key,
                message: e.message().trim().to_owned(),
            }
        })?;
        config.validate(text)?;
        Ok(config)
    }

    fn validate(&self, text: &str) -> Result<(), ConfigError> {
        let fail = |key: &str, message: String| {
            let line = find_key_line(text, key);
            Err(ConfigError {
                file: None,
                line,
                key: Some(key.to_owned()),
                message,
            })
        };
        if self.tls.certificate.is_some() != self.tls.private_key.is_some() {
            let key = if self.tls.certificate.is_some() {
                "tls.private_key"
            } else {
                "tls.certificate"
            };
            return fail(
                key,
                "certificate and private_key must be set together".into(),
            );
        }
        if self.smtp.max_message_size.0 < 1024 {
            return fail("smtp.max_message_size", "must be at least 1K".into());
        }
        if self.smtp.max_recipients == 0 {
            return fail("smtp.max_recipients", "must be at least 1".into());
        }
        if self.smtp.max_connections == 0 || self.smtp.max_connections_per_client == 0 {
            return fail(
                "smtp.max_connections",
                "connection limits must be at least 1".into(),
            );
        }
        if self.smtp.max_auth_failures == 0 {
            return fail("smtp.max_auth_failures", "must be at least 1".into());
        }
        if self.smtp.auth_failure_window.0 == 0 {
            return fail(
                "smtp.auth_failure_window",
                "must be at least 1 second".into(),
            );
        }
        if self.smtp.command_timeout.0 == 0 || self.smtp.data_timeout.0 == 0 {
            return fail(
                "smtp.command_timeout",
                "timeouts must be at least 1 second".into(),
            );
        }
        if let Some(group) = &self.lmtp.socket_group
            && let Err(e) = group_id(group)
        {
            return fail("lmtp.socket_group", e);
        }
        if self.store.path.as_os_str().is_empty() {
            return fail("store.path", "must not be empty".into());
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return fail("log.level", format!("not a log filter: {e}"));
        }
        Ok(())
    }

    /// Where the admin socket is.
    pub fn admin_socket(&self) -> PathBuf {
        self.admin
            .socket
            .clone()
            .unwrap_or_else(|| self.store.path.join("admin.sock"))
    }

    pub fn policy_options(&self) -> crate::policy::PolicyOptions {
        crate::policy::PolicyOptions {
            share_internal: self.policy.share_internal,
            default_shared: self.policy.default_shared,
        }
    }
}

/// The 1-based line of a byte offset and the dotted key written on that line, if any.
fn locate(text: &str, offset: usize) -> (Option<usize>, Option<String>) {
    let offset = offset.min(text.len());
    let line_no = text[..offset].matches('\n').count() + 1;
    let mut table = String::new();
    for line in text.lines().take(line_no - 1) {
        if let Some(name) = table_header(line) {
            table = name;
        }
    }
    let line = text.lines().nth(line_no - 1).unwrap_or("");
    if let Some(name) = table_header(line) {
        return (Some(line_no), Some(name));
    }
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_owned());
    let key = match key {
        Some(k) if !k.is_empty() && table.is_empty() => Some(k),
        Some(k) if !k.is_empty() => Some(format!("{table}.{k}")),
        _ => (!table.is_empty()).then_some(table),
    };
    (Some(line_no), key)
}

fn table_header(line: &str) -> Option<String> {
    let line = line.trim();
    let inner = line.strip_prefix('[')?.split(']').next()?;
    Some(inner.trim_matches('[').trim().to_owned())
}

/// The line where a dotted key (`smtp.max_recipients`) is set, if the text sets it.
fn find_key_line(text: &str, dotted: &str) -> Option<usize> {
    let (table, key) = dotted.rsplit_once('.').unwrap_or(("", dotted));
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(name) = table_header(line) {
            current = name;
            continue;
        }
        let Some((k, _)) = line.split_once('=') else {
            continue;
        };
        if current == table && k.trim() == key {
            return Some(i + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn socket_modes_are_octal_permission_bits() {
        let mode = |s: &str| FileMode::try_from(s.to_owned());
        assert_eq!(mode("0660"), Ok(FileMode(0o660)));
        assert_eq!(mode("600"), Ok(FileMode(0o600)));
        assert!(mode("0999").is_err());
        assert!(mode("1777").is_err(), "only permission bits");
        assert!(mode("").is_err());
        assert!(mode("rw-rw----").is_err());
        assert_eq!(String::from(FileMode(0o620)), "0620");
    }

    #[test]
    fn groups_are_found_by_name_or_number() {
        assert_eq!(group_id("root"), Ok(0));
        assert_eq!(group_id("4242"), Ok(4242));
        let e = group_id("no-such-group-here").unwrap_err();
        assert!(e.contains("no group \"no-such-group-here\""), "{e}");
    }

    #[test]
    fn empty_text_is_the_embedded_default() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.store.path, PathBuf::from("threadsd-data"));
        assert_eq!(config.policy.default_project.as_str(), "Inbox");
        assert_eq!(
            config.smtp.listen,
            vec![ListenAddr::Tcp("127.0.0.1:2525".parse().unwrap())]
        );
        assert_eq!(
            config.admin_socket(),
            PathBuf::from("threadsd-data/admin.sock")
        );
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let err =
            Config::parse("[store]\npath = \"/x\"\n\n[policy]\nshare_intern = true\n").unwrap_err();
        assert_eq!(err.line, Some(5));
        assert_eq!(err.key.as_deref(), Some("policy.share_intern"));
        assert!(err.message.contains("unknown field"), "{}", err.message);
    }

    #[test]
    fn unknown_table_is_an_error() {
        let err = Config::parse("[stor]\npath = \"/x\"\n").unwrap_err();
        assert_eq!(err.line, Some(1));
        assert_eq!(err.key.as_deref(), Some("stor"));
    }

    #[test]
    fn bad_value_names_the_key() {
        let err = Config::parse("[policy]\ndefault_shared = \"yes\"\n").unwrap_err();
        assert_eq!(err.line, Some(2));
        assert_eq!(err.key.as_deref(), Some("policy.default_shared"));
        let err = Config::parse("[policy]\ndefault_project = \"a//b\"\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("policy.default_project"));
        let err = Config::parse("[lmtp]\nlisten = [\"nowhere\"]\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("lmtp.listen"));
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let err = Config::parse("[tls]\ncertificate = \"/c.pem\"\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("tls.private_key"));
        let err = Config::parse("[smtp]\nmax_recipients = 0\n").unwrap_err();
        assert_eq!(
            (err.line, err.key.as_deref()),
            (Some(2), Some("smtp.max_recipients"))
        );
    }

    #[test]
    fn sizes_durations_and_patterns() {
        let c = Config::parse(
            "[smtp]\nmax_message_size = \"10M\"\ncommand_timeout = \"5m\"\n\
             accept_recipients = [\"@Example.com\", \"archive@bcc.test\"]\n\
             allow_networks = [\"10.0.0.0/8\", \"192.0.2.7\"]\n\
             [lmtp]\nlisten = [\"unix:/run/threadsd/lmtp.sock\"]\n",
        )
        .unwrap();
        assert_eq!(c.smtp.max_message_size, ByteSize(10 << 20));
        assert_eq!(c.smtp.command_timeout, Seconds(300));
        let lower = Config::parse("[store]\ncache_size = \"1g\"\n").unwrap();
        assert_eq!(lower.store.cache_size, ByteSize(1 << 30));
        let bob = Address::parse("bob@example.com").unwrap();
        assert!(c.smtp.accept_recipients[0].matches(&bob));
        let sub = Address::parse("archive+Clients.Acme@bcc.test").unwrap();
        assert!(c.smtp.accept_recipients[1].matches(&sub));
        assert!(c.smtp.allow_networks[1].contains("192.0.2.7".parse().unwrap()));
        assert!(c.smtp.allow_networks[0].contains("::ffff:10.1.2.3".parse().unwrap()));
        assert_eq!(
            c.lmtp.listen,
            vec![ListenAddr::Unix("/run/threadsd/lmtp.sock".into())]
        );
    }

    #[test]
    fn the_packaged_configuration_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/threadsd.toml");
        let config = Config::load(&path).unwrap();
        assert_eq!(config.store.path, PathBuf::from("/var/lib/threadsd"));
        assert_eq!(
            config.lmtp.listen,
            vec![ListenAddr::Unix("/run/threadsd/lmtp.sock".into())]
        );
    }

    /// Every key of the configuration appears in the packaged file, set or commented out.
    #[test]
    fn the_packaged_configuration_documents_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/threadsd.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if rest.contains(" = ") && !rest.contains(':') => rest,
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        // Every key the file names is a real key...
        Config::parse(&uncommented).unwrap();
        // ...and every real key is named: the defaults' keys (optional keys included,
        // since the packaged file sets or shows them all) against the file's.
        let keys = |value: toml::Value| -> BTreeSet<String> {
            let mut out = BTreeSet::new();
            for (table, entries) in value.as_table().unwrap() {
                for key in entries.as_table().unwrap().keys() {
                    out.insert(format!("{table}.{key}"));
                }
            }
            out
        };
        let file_keys = keys(uncommented.parse::<toml::Value>().unwrap());
        let mut all = keys(toml::Value::try_from(Config::default()).unwrap());
        for optional in [
            "admin.socket",
            "tls.certificate",
            "tls.private_key",
            "smtp.hostname",
            "lmtp.socket_group",
        ] {
            all.insert(optional.into());
        }
        assert_eq!(file_keys, all);
    }

    #[test]
    fn display_names_file_line_and_key() {
        let err = ConfigError {
            file: Some("/etc/threadsd/threadsd.toml".into()),
            line: Some(4),
            key: Some("store.path".into()),
            message: "must not be empty".into(),
        };
        assert_eq!(
            err.to_string(),
            "/etc/threadsd/threadsd.toml:4: key `store.path`: must not be empty"
        );
    }
}
