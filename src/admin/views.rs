//! What management operations return: plain serialisable records, the `--json` output of
//! the CLI and the admin socket's answers.

use serde::{Deserialize, Serialize};

use crate::model::{Audience, MessageRecord, User, Visibility};
use crate::store::{MessageView, Stats};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    pub login: String,
    pub addresses: Vec<String>,
    /// Whether a password is set (otherwise the user logs in through LDAP only).
    pub password: bool,
    pub show_only_active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelView {
    pub address: String,
    pub contact: String,
    pub contact_id: u64,
    pub user: Option<String>,
    pub shared: bool,
    pub exclude: bool,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactView {
    pub id: u64,
    pub name: String,
    pub company: Option<String>,
    pub user: Option<String>,
    pub auto_created: bool,
    pub channels: Vec<ChannelView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectView {
    pub path: String,
    pub messages: u64,
    pub uid_validity: u32,
    pub uid_next: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageSummary {
    pub id: u64,
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub from: Option<String>,
    /// The Date header, Unix seconds.
    pub date: Option<i64>,
    pub received: i64,
    pub size: u64,
    pub projects: Vec<String>,
    /// `"all"` or `"users"`.
    pub visibility: String,
    /// Every user who may see it now, their `show_only_active` applied.
    pub visible_to: Vec<String>,
    pub inactive_only: bool,
    pub parties: Vec<String>,
    pub journal: bool,
    pub malformed: bool,
    pub copies: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceView {
    pub project: String,
    pub uid: u32,
    pub kind: String,
    pub detail: String,
    pub received: i64,
    pub mail_from: Option<String>,
    pub recipients: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthView {
    pub dkim: Vec<String>,
    pub arc: String,
    pub spf: String,
    pub dmarc: String,
    pub checked: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageDetail {
    #[serde(flatten)]
    pub summary: MessageSummary,
    pub content_hash: String,
    pub extra_recipients: Vec<String>,
    pub sources: Vec<SourceView>,
    /// Sender authentication verdicts; absent until checked (or when never checked).
    pub auth: Option<AuthView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsView {
    pub messages: u64,
    pub duplicates_merged: u64,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    pub disk_bytes: u64,
    pub projects: u64,
    pub contacts: u64,
    pub channels: u64,
    pub users: u64,
    pub relays: u64,
}

impl From<Stats> for StatsView {
    fn from(s: Stats) -> Self {
        StatsView {
            messages: s.messages,
            duplicates_merged: s.duplicates_merged,
            raw_bytes: s.raw_bytes,
            stored_bytes: s.stored_bytes,
            disk_bytes: s.disk_bytes,
            projects: s.projects,
            contacts: s.contacts,
            channels: s.channels,
            users: s.users,
            relays: s.relays,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayView {
    pub name: String,
}

/// What happened to one ingested message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IngestStatus {
    Stored,
    Duplicate,
    Excluded,
    Refused,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestOutcome {
    pub status: IngestStatus,
    pub id: Option<u64>,
    pub reason: Option<String>,
}

pub fn summary(view: &MessageView, users: &[User]) -> MessageSummary {
    let r: &MessageRecord = &view.record;
    MessageSummary {
        id: r.id.0,
        message_id: r.message_id.clone(),
        subject: r.subject.clone(),
        from: r.from.clone(),
        date: r.date,
        received: r.received,
        size: r.size,
        projects: view
            .memberships
            .iter()
            .map(|(p, _)| p.path.to_string())
            .collect(),
        visibility: match r.audience.visibility {
            Visibility::All => "all".into(),
            Visibility::Users(_) => "users".into(),
        },
        visible_to: visible_to(&r.audience, users),
        inactive_only: r.audience.inactive_only,
        parties: r.parties.iter().map(|a| a.to_string()).collect(),
        journal: r.journal,
        malformed: r.malformed,
        copies: r.copies,
    }
}

fn visible_to(audience: &Audience, users: &[User]) -> Vec<String> {
    users
        .iter()
        .filter(|u| audience.admits(&u.login, u.show_only_active))
        .map(|u| u.login.to_string())
        .collect()
}
