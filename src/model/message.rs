//! Stored messages: the record kept for each, who may see it, and where its copies came from.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Address, Login};

/// The current time in Unix seconds, the unit of every timestamp in the records.
pub fn unix_now() -> i64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since_epoch.map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Identifies a stored message; allocated from sled's id generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageId(pub u64);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One party address seen in a message, with the display name it carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub address: Address,
    pub name: Option<String>,
}

/// Which users may read a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Visibility {
    /// Every user.
    All,
    /// Only these users (possibly none).
    Users(BTreeSet<Login>),
}

/// The outcome of classifying a stored message (ARCHITECTURE.md §4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audience {
    pub visibility: Visibility,
    /// Every outside party is an inactive channel: hidden from users who show only active
    /// contacts.
    pub inactive_only: bool,
}

impl Audience {
    /// Whether a user with this login and preference may see the message.
    pub fn admits(&self, login: &Login, show_only_active: bool) -> bool {
        if self.inactive_only && show_only_active {
            return false;
        }
        match &self.visibility {
            Visibility::All => true,
            Visibility::Users(users) => users.contains(login),
        }
    }

    /// Whether `self` lets someone see the message whom `before` did not, for any user
    /// preference. Such a change must give the message fresh IMAP UIDs (§4).
    pub fn widens(&self, before: &Audience) -> bool {
        let wider_users = match (&before.visibility, &self.visibility) {
            (Visibility::All, _) => false,
            (Visibility::Users(_), Visibility::All) => true,
            (Visibility::Users(old), Visibility::Users(new)) => !new.is_subset(old),
        };
        wider_users || (before.inactive_only && !self.inactive_only)
    }
}

/// The SMTP envelope of one delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The reverse path; empty for the null sender `<>`.
    pub mail_from: String,
    pub recipients: Vec<String>,
}

/// How one copy of a message reached threadsd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceKind {
    Smtp {
        peer: String,
        helo: String,
        auth: Option<String>,
    },
    Lmtp {
        peer: String,
        helo: String,
    },
    Import {
        file: Option<String>,
    },
    Append {
        login: String,
    },
    Pull {
        account: String,
        folder: String,
        uid: u32,
    },
}

/// One delivery of a message into a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub kind: SourceKind,
    /// Unix seconds.
    pub received: i64,
    pub envelope: Option<Envelope>,
}

impl Source {
    pub fn label(&self) -> &'static str {
        match self.kind {
            SourceKind::Smtp { .. } => "smtp",
            SourceKind::Lmtp { .. } => "lmtp",
            SourceKind::Import { .. } => "import",
            SourceKind::Append { .. } => "append",
            SourceKind::Pull { .. } => "pull",
        }
    }
}

/// DKIM, ARC, SPF and DMARC verdicts, checked after the message was acknowledged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthResults {
    pub dkim: Vec<String>,
    pub arc: String,
    pub spf: String,
    pub dmarc: String,
    /// Unix seconds.
    pub checked: i64,
}

/// What the store keeps about one message besides its bytes.
///
/// Invariant: `parties` is sorted and free of duplicates; `audience` is what
/// `policy::classify` gives for `parties` against the directory as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub id: MessageId,
    pub message_id: Option<String>,
    pub subject: Option<String>,
    /// The From header as `Name <address>` or the address alone.
    pub from: Option<String>,
    /// The Date header in Unix seconds.
    pub date: Option<i64>,
    /// When the first copy was stored, Unix seconds.
    pub received: i64,
    pub size: u64,
    pub content_hash: [u8; 32],
    pub dedup_key: [u8; 32],
    pub parties: Vec<Address>,
    /// Recipients recovered from journal reports and trusted original-recipient headers;
    /// also in `parties`.
    pub extra_recipients: Vec<Address>,
    pub audience: Audience,
    /// It arrived wrapped in a journal report.
    pub journal: bool,
    /// The parser found problems; the raw bytes are kept as they came.
    pub malformed: bool,
    /// How many copies were merged into this record.
    pub copies: u32,
    pub auth: Option<AuthResults>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(names: &[&str]) -> Visibility {
        Visibility::Users(names.iter().map(|n| Login::parse(n).unwrap()).collect())
    }

    #[test]
    fn widening_is_detected() {
        let only_a = Audience {
            visibility: users(&["a"]),
            inactive_only: false,
        };
        let a_b = Audience {
            visibility: users(&["a", "b"]),
            inactive_only: false,
        };
        let all = Audience {
            visibility: Visibility::All,
            inactive_only: false,
        };
        assert!(a_b.widens(&only_a));
        assert!(!only_a.widens(&a_b));
        assert!(all.widens(&a_b));
        assert!(!a_b.widens(&all));
        let all_inactive = Audience {
            visibility: Visibility::All,
            inactive_only: true,
        };
        assert!(all.widens(&all_inactive));
        assert!(!all_inactive.widens(&all));
    }

    #[test]
    fn admits_applies_show_only_active() {
        let login = Login::parse("a").unwrap();
        let aud = Audience {
            visibility: Visibility::All,
            inactive_only: true,
        };
        assert!(!aud.admits(&login, true));
        assert!(aud.admits(&login, false));
    }
}
