//! The address book: contacts, their companies and channels, Threads users and SMTP relay
//! accounts.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Address;

/// Identifies a contact; allocated by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ContactId(pub u64);

/// Identifies a company; allocated by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CompanyId(pub u64);

/// The privacy flags of one channel (ARCHITECTURE.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelFlags {
    /// Mail that involves this address is not stored at all.
    pub exclude: bool,
    /// Inactive channels' mail is hidden from users who show only active contacts.
    pub active: bool,
    /// Shared channels' mail is visible to every user; private to the addressed users only.
    pub shared: bool,
}

impl ChannelFlags {
    /// The flags of an address nobody has configured.
    pub fn default_with(shared: bool) -> ChannelFlags {
        ChannelFlags {
            exclude: false,
            active: true,
            shared,
        }
    }
}

/// One address of a contact with its flags.
///
/// Invariant: `user` is the login of the user whose own contact is `contact`, kept in step
/// by the store so that classification needs one lookup per address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    pub address: Address,
    pub contact: ContactId,
    pub user: Option<Login>,
    pub flags: ChannelFlags,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub id: ContactId,
    pub name: String,
    pub company: Option<CompanyId>,
    pub addresses: Vec<Address>,
    /// Created by the store from an address seen in mail, not by an operator.
    pub auto_created: bool,
    /// Set when this contact is a user's own.
    pub user: Option<Login>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Company {
    pub id: CompanyId,
    pub name: String,
}

/// A Threads user: the person who reads mail through the IMAP server.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub login: Login,
    /// A PHC-format argon2id hash; `None` for a user who logs in through LDAP only.
    pub password_hash: Option<String>,
    pub contact: ContactId,
    /// Hide mail whose only outside parties are inactive channels.
    pub show_only_active: bool,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("login", &self.login)
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "<hidden>"),
            )
            .field("contact", &self.contact)
            .field("show_only_active", &self.show_only_active)
            .finish()
    }
}

/// An SMTP AUTH account allowed to submit mail for ingestion; not a Threads user.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relay {
    pub name: String,
    pub password_hash: String,
}

impl fmt::Debug for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A user's login name: 1 to 64 characters of letters, digits and `._-@+`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Login(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("login {0:?} must be 1 to 64 characters of letters, digits, '.', '_', '-', '@' or '+'")]
pub struct LoginError(String);

impl Login {
    pub fn parse(input: &str) -> Result<Login, LoginError> {
        let ok = (1..=64).contains(&input.len())
            && input
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+'));
        if ok {
            Ok(Login(input.to_owned()))
        } else {
            Err(LoginError(input.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Login {
    type Error = LoginError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Login::parse(&value)
    }
}

impl From<Login> for String {
    fn from(value: Login) -> Self {
        value.0
    }
}

impl std::str::FromStr for Login {
    type Err = LoginError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Login::parse(s)
    }
}

impl fmt::Display for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_are_checked() {
        assert!(Login::parse("alice").is_ok());
        assert!(Login::parse("a.b-c_d@x").is_ok());
        assert!(Login::parse("").is_err());
        assert!(Login::parse("has space").is_err());
        assert!(Login::parse(&"x".repeat(65)).is_err());
    }

    #[test]
    fn user_debug_hides_the_hash() {
        let user = User {
            login: Login::parse("alice").unwrap(),
            password_hash: Some("$argon2id$secret".into()),
            contact: ContactId(1),
            show_only_active: true,
        };
        assert!(!format!("{user:?}").contains("secret"));
    }
}
