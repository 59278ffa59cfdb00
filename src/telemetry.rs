//! Logging set-up and the one catalogue of metric names and label values.

use std::time::Duration;

use crate::config::{LogConfig, LogFormat};

/// Installs the global tracing subscriber: `RUST_LOG` if set, else the configured level.
pub fn init_logging(config: &LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for people: the journal and log files want plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let result = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    // A second initialisation (tests, or the CLI calling into serve) keeps the first.
    drop(result);
}

/// Metric names. Every metric threadsd exports is named here and nowhere else.
pub mod names {
    /// Counter: messages handed to the store, by `source` and `outcome`.
    pub const MESSAGES: &str = "threadsd_messages_total";
    /// Counter: raw bytes of messages handed to the store, by `source`.
    pub const MESSAGE_BYTES: &str = "threadsd_message_bytes_total";
    /// Histogram: submissions applied in one durable commit.
    pub const COMMIT_BATCH: &str = "threadsd_commit_batch_size";
    /// Histogram: seconds from the start of applying a batch to the end of its sync.
    pub const COMMIT_SECONDS: &str = "threadsd_commit_duration_seconds";
    /// Counter: commits that failed; their waiters were told to retry.
    pub const COMMIT_FAILURES: &str = "threadsd_commit_failures_total";
    /// Gauge: SMTP or LMTP sessions open, by `listener`.
    pub const SESSIONS_ACTIVE: &str = "threadsd_sessions_active";
    /// Counter: SMTP or LMTP sessions accepted, by `listener`.
    pub const SESSIONS: &str = "threadsd_sessions_total";
    /// Counter: connections refused at accept for a limit, by `listener`.
    pub const SESSIONS_REFUSED: &str = "threadsd_sessions_refused_total";
    /// Counter: messages at the end of DATA/BDAT, by `listener` and `outcome`.
    pub const SMTP_MESSAGES: &str = "threadsd_smtp_messages_total";
    /// Counter: bytes of message data received, by `listener`.
    pub const SMTP_BYTES: &str = "threadsd_smtp_bytes_received_total";
    /// Histogram: seconds from the end of data to the reply, by `listener`.
    pub const SMTP_ACK_SECONDS: &str = "threadsd_smtp_ack_duration_seconds";
    /// Counter: SMTP AUTH attempts, by `listener` and `outcome` (`success`, `failure`,
    /// `locked_out`: refused unchecked after too many failures from the address).
    pub const SMTP_AUTH: &str = "threadsd_smtp_auth_total";
    /// Counter: DKIM/SPF/DMARC verifications done after acknowledgement, by `outcome`.
    pub const AUTH_CHECKS: &str = "threadsd_auth_checks_total";
}

/// Where a message came from, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceLabel {
    Smtp,
    Lmtp,
    Import,
    Append,
    Pull,
}

impl SourceLabel {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceLabel::Smtp => "smtp",
            SourceLabel::Lmtp => "lmtp",
            SourceLabel::Import => "import",
            SourceLabel::Append => "append",
            SourceLabel::Pull => "pull",
        }
    }

    pub fn of(source: &crate::model::Source) -> SourceLabel {
        use crate::model::SourceKind;
        match source.kind {
            SourceKind::Smtp { .. } => SourceLabel::Smtp,
            SourceKind::Lmtp { .. } => SourceLabel::Lmtp,
            SourceKind::Import { .. } => SourceLabel::Import,
            SourceKind::Append { .. } => SourceLabel::Append,
            SourceKind::Pull { .. } => SourceLabel::Pull,
        }
    }
}

/// What the store did with a message, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Stored,
    Duplicate,
    Excluded,
    Refused,
    /// The store failed; the sender was told to retry.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Stored => "stored",
            Outcome::Duplicate => "duplicate",
            Outcome::Excluded => "excluded",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

/// The listener a session belongs to, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerLabel {
    Smtp,
    /// SMTP with implicit TLS.
    Smtps,
    Lmtp,
}

impl ListenerLabel {
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerLabel::Smtp => "smtp",
            ListenerLabel::Smtps => "smtps",
            ListenerLabel::Lmtp => "lmtp",
        }
    }
}

/// The outcome of one SMTP/LMTP message, as a metric label: accepted, or refused by class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpOutcome {
    Accepted,
    Duplicate,
    Excluded,
    /// A 4xx reply: the client retries.
    Deferred,
    /// A 5xx reply: the client gives up.
    Rejected,
}

impl SmtpOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            SmtpOutcome::Accepted => "accepted",
            SmtpOutcome::Duplicate => "duplicate",
            SmtpOutcome::Excluded => "excluded",
            SmtpOutcome::Deferred => "refused_4xx",
            SmtpOutcome::Rejected => "refused_5xx",
        }
    }
}

pub fn count_message(source: SourceLabel, outcome: Outcome, bytes: usize) {
    metrics::counter!(names::MESSAGES, "source" => source.as_str(), "outcome" => outcome.as_str())
        .increment(1);
    if matches!(outcome, Outcome::Stored | Outcome::Duplicate) {
        metrics::counter!(names::MESSAGE_BYTES, "source" => source.as_str())
            .increment(bytes as u64);
    }
}

pub fn record_commit(batch: usize, elapsed: Duration) {
    metrics::histogram!(names::COMMIT_BATCH).record(batch as f64);
    metrics::histogram!(names::COMMIT_SECONDS).record(elapsed.as_secs_f64());
}

pub fn count_commit_failure() {
    metrics::counter!(names::COMMIT_FAILURES).increment(1);
}

pub fn session_opened(listener: ListenerLabel) {
    metrics::counter!(names::SESSIONS, "listener" => listener.as_str()).increment(1);
    metrics::gauge!(names::SESSIONS_ACTIVE, "listener" => listener.as_str()).increment(1.0);
}

pub fn session_closed(listener: ListenerLabel) {
    metrics::gauge!(names::SESSIONS_ACTIVE, "listener" => listener.as_str()).decrement(1.0);
}

pub fn session_refused(listener: ListenerLabel) {
    metrics::counter!(names::SESSIONS_REFUSED, "listener" => listener.as_str()).increment(1);
}

/// One message at the end of its data. `ack` is the time from the end of data to the
/// reply, for messages that went to the store; `None` for those the session refused
/// itself, which would only pull the latency histogram towards zero.
pub fn smtp_message(
    listener: ListenerLabel,
    outcome: SmtpOutcome,
    bytes: usize,
    ack: Option<Duration>,
) {
    let l = listener.as_str();
    metrics::counter!(names::SMTP_MESSAGES, "listener" => l, "outcome" => outcome.as_str())
        .increment(1);
    metrics::counter!(names::SMTP_BYTES, "listener" => l).increment(bytes as u64);
    if let Some(ack) = ack {
        metrics::histogram!(names::SMTP_ACK_SECONDS, "listener" => l).record(ack.as_secs_f64());
    }
}

/// One SMTP AUTH attempt that reached a verdict.
pub fn smtp_auth(listener: ListenerLabel, outcome: &'static str) {
    metrics::counter!(names::SMTP_AUTH, "listener" => listener.as_str(), "outcome" => outcome)
        .increment(1);
}

/// The outcome of one sender check, as a metric label: the DMARC result, unless the check
/// did not finish or did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    Pass,
    Fail,
    None,
    TempError,
    PermError,
    /// Some check did not finish within the budget.
    TimedOut,
    /// The checking task panicked.
    Internal,
    /// Not checked: the queue of checks was full.
    Skipped,
}

impl AuthOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthOutcome::Pass => "pass",
            AuthOutcome::Fail => "fail",
            AuthOutcome::None => "none",
            AuthOutcome::TempError => "temperror",
            AuthOutcome::PermError => "permerror",
            AuthOutcome::TimedOut => "timeout",
            AuthOutcome::Internal => "internal",
            AuthOutcome::Skipped => "skipped",
        }
    }
}

pub fn auth_check(outcome: AuthOutcome) {
    metrics::counter!(names::AUTH_CHECKS, "outcome" => outcome.as_str()).increment(1);
}

/// Registers every metric's description with the installed recorder, so that the endpoint
/// lists them with HELP text from the start.
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        names::MESSAGES,
        "Messages handed to the store, by source and outcome"
    );
    describe_counter!(
        names::MESSAGE_BYTES,
        "Raw bytes of messages stored or merged"
    );
    describe_histogram!(
        names::COMMIT_BATCH,
        "Submissions applied in one durable commit"
    );
    describe_histogram!(
        names::COMMIT_SECONDS,
        "Duration of a durable commit in seconds"
    );
    describe_counter!(
        names::COMMIT_FAILURES,
        "Commits that failed and were not acknowledged"
    );
    describe_gauge!(names::SESSIONS_ACTIVE, "SMTP and LMTP sessions open");
    describe_counter!(names::SESSIONS, "SMTP and LMTP sessions accepted");
    describe_counter!(
        names::SESSIONS_REFUSED,
        "Connections refused for a connection limit"
    );
    describe_counter!(names::SMTP_MESSAGES, "SMTP and LMTP messages by outcome");
    describe_counter!(
        names::SMTP_BYTES,
        "Bytes of SMTP and LMTP message data received"
    );
    describe_histogram!(
        names::SMTP_ACK_SECONDS,
        "Seconds from end of data to the reply"
    );
    describe_counter!(names::SMTP_AUTH, "SMTP AUTH attempts by outcome");
    describe_counter!(
        names::AUTH_CHECKS,
        "Sender authentication checks by outcome"
    );
}
