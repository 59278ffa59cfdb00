//! A channel address: an email address or an E.164 phone number, normalised for comparison.

use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

/// RFC 5321 §4.5.3.1.3: a path is at most 256 octets, so an address at most 254.
const MAX_EMAIL_LEN: usize = 254;

/// An email address or phone number.
///
/// Invariant: `text` is the address as given with the domain lower-cased (email) or the
/// canonical `+digits` form (phone). Equality, ordering and hashing use [`Address::key`],
/// which also lower-cases the local part: RFC 5321 lets a local part be case-sensitive, but
/// no mail system in practice treats `Bob@` and `bob@` as different people.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Address {
    text: String,
    key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("empty address")]
    Empty,
    #[error("address {0:?} is longer than 254 characters")]
    TooLong(String),
    #[error("address {0:?} has no domain")]
    NoDomain(String),
    #[error("address {0:?} has no local part")]
    NoLocalPart(String),
    #[error("address {0:?} contains whitespace or control characters")]
    BadCharacter(String),
    #[error("phone number {0:?} is not in E.164 form (+ and 8 to 15 digits)")]
    BadPhone(String),
}

impl Address {
    /// Parses an email address (`local@domain`, optionally in angle brackets) or a phone
    /// number (`+` followed by digits; spaces, dots, dashes and parentheses are dropped).
    pub fn parse(input: &str) -> Result<Address, AddressError> {
        let trimmed = input.trim();
        let trimmed = trimmed
            .strip_prefix('<')
            .and_then(|s| s.strip_suffix('>'))
            .unwrap_or(trimmed);
        if trimmed.is_empty() {
            return Err(AddressError::Empty);
        }
        if trimmed.starts_with('+') && !trimmed.contains('@') {
            return Self::parse_phone(trimmed);
        }
        Self::parse_email(trimmed)
    }

    fn parse_email(input: &str) -> Result<Address, AddressError> {
        if input.len() > MAX_EMAIL_LEN {
            return Err(AddressError::TooLong(input.to_owned()));
        }
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(AddressError::BadCharacter(input.to_owned()));
        }
        // The last `@` separates the domain: a quoted local part may contain `@`.
        let Some((local, domain)) = input.rsplit_once('@') else {
            return Err(AddressError::NoDomain(input.to_owned()));
        };
        if local.is_empty() {
            return Err(AddressError::NoLocalPart(input.to_owned()));
        }
        let domain = domain.trim_end_matches('.');
        if domain.is_empty() {
            return Err(AddressError::NoDomain(input.to_owned()));
        }
        let text = format!("{local}@{}", domain.to_lowercase());
        let key = text.to_lowercase();
        Ok(Address { text, key })
    }

    fn parse_phone(input: &str) -> Result<Address, AddressError> {
        let mut digits = String::with_capacity(16);
        for c in input[1..].chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(AddressError::BadPhone(input.to_owned())),
            }
        }
        // ITU-T E.164: at most 15 digits; no real number is shorter than 8 with its
        // country code.
        if !(8..=15).contains(&digits.len()) || digits.starts_with('0') {
            return Err(AddressError::BadPhone(input.to_owned()));
        }
        let text = format!("+{digits}");
        Ok(Address {
            key: text.clone(),
            text,
        })
    }

    /// The address as given, domain lower-cased.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The comparison key: the whole address lower-cased.
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn is_phone(&self) -> bool {
        self.text.starts_with('+') && !self.text.contains('@')
    }

    /// The domain of an email address.
    pub fn domain(&self) -> Option<&str> {
        self.key.rsplit_once('@').map(|(_, d)| d)
    }

    /// The local part of an email address, as given.
    pub fn local_part(&self) -> Option<&str> {
        self.text.rsplit_once('@').map(|(l, _)| l)
    }

    /// Drops a `+detail` sub-address: `threads+Clients@x` becomes `threads@x`.
    pub fn without_detail(&self) -> Address {
        let (Some(local), Some(domain)) = (self.local_part(), self.domain()) else {
            return self.clone();
        };
        match local.split_once('+') {
            Some((base, _)) if !base.is_empty() => {
                let text = format!("{base}@{domain}");
                Address {
                    key: text.to_lowercase(),
                    text,
                }
            }
            _ => self.clone(),
        }
    }

    /// The `+detail` of the local part, if any.
    pub fn detail(&self) -> Option<&str> {
        let local = self.local_part()?;
        let (base, detail) = local.split_once('+')?;
        (!base.is_empty() && !detail.is_empty()).then_some(detail)
    }
}

impl TryFrom<String> for Address {
    type Error = AddressError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Address::parse(&value)
    }
}

impl From<Address> for String {
    fn from(value: Address) -> Self {
        value.text
    }
}

impl std::str::FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Address::parse(s)
    }
}

impl PartialEq for Address {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for Address {}

impl Hash for Address {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl PartialOrd for Address {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Address {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({:?})", self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_domain_is_lower_cased_local_part_kept() {
        let a = Address::parse("Bob.Smith@Example.COM").unwrap();
        assert_eq!(a.as_str(), "Bob.Smith@example.com");
        assert_eq!(a.key(), "bob.smith@example.com");
        assert_eq!(a, Address::parse("bob.smith@example.com").unwrap());
    }

    #[test]
    fn angle_brackets_and_trailing_dot_are_dropped() {
        let a = Address::parse(" <ann@example.org.> ").unwrap();
        assert_eq!(a.as_str(), "ann@example.org");
    }

    #[test]
    fn bad_emails_are_refused() {
        assert_eq!(Address::parse(""), Err(AddressError::Empty));
        assert!(matches!(
            Address::parse("nobody"),
            Err(AddressError::NoDomain(_))
        ));
        assert!(matches!(
            Address::parse("@x.org"),
            Err(AddressError::NoLocalPart(_))
        ));
        assert!(matches!(
            Address::parse("a b@x.org"),
            Err(AddressError::BadCharacter(_))
        ));
        let long = format!("{}@x.org", "a".repeat(250));
        assert!(matches!(
            Address::parse(&long),
            Err(AddressError::TooLong(_))
        ));
    }

    #[test]
    fn phones_are_canonical_e164() {
        let p = Address::parse("+44 (20) 7946-0958").unwrap();
        assert_eq!(p.as_str(), "+442079460958");
        assert!(p.is_phone());
        assert!(Address::parse("+12").is_err());
        assert!(Address::parse("+0123456789").is_err());
        assert!(Address::parse("+4420x").is_err());
    }

    #[test]
    fn sub_address_detail() {
        let a = Address::parse("threads+Clients.Acme@Example.com").unwrap();
        assert_eq!(a.detail(), Some("Clients.Acme"));
        assert_eq!(a.without_detail().as_str(), "threads@example.com");
        let plain = Address::parse("+threads@example.com").unwrap();
        assert_eq!(plain.detail(), None);
    }
}
