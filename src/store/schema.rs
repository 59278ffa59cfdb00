//! The key space: one sled tree whose keys start with a one-byte space tag followed by
//! fixed-width big-endian components, so that ranges scan in order.

use crate::model::{Address, CompanyId, ContactId, Login, MessageId, ProjectId, ProjectPath};

/// The first byte of every key.
///
/// Invariant: tags are never renumbered; a new space takes a new tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Space {
    /// Named store-wide values (schema version).
    Meta = 0,
    /// `MessageId` → `MessageRecord`.
    Message = 1,
    /// `MessageId`, chunk number (u32) → a piece of the compressed message (`body`).
    Chunk = 2,
    // 3 held content-hash blob records before bodies were keyed by message id.
    /// dedup key → `MessageId`.
    Dedup = 4,
    /// address key, 0, `MessageId` → empty: which messages carry an address.
    AddressIndex = 5,
    /// `ProjectId` → `Project`.
    Project = 6,
    /// project path → `ProjectId`.
    ProjectPath = 7,
    /// `ProjectId`, UID (u32) → `MessageId`.
    MemberByUid = 8,
    /// `MessageId`, `ProjectId` → `Membership`.
    MemberByMessage = 9,
    /// `ContactId` → `Contact`.
    Contact = 10,
    /// `CompanyId` → `Company`.
    Company = 11,
    /// lower-cased company name → `CompanyId`.
    CompanyName = 12,
    /// address key → `Channel`.
    Channel = 13,
    /// login → `User`.
    User = 14,
    /// relay account name → `Relay`.
    Relay = 15,
}

pub fn prefix(space: Space) -> Vec<u8> {
    vec![space as u8]
}

fn key(space: Space, parts: &[&[u8]]) -> Vec<u8> {
    let len = 1 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut k = Vec::with_capacity(len);
    k.push(space as u8);
    for part in parts {
        k.extend_from_slice(part);
    }
    k
}

pub fn meta(name: &str) -> Vec<u8> {
    key(Space::Meta, &[name.as_bytes()])
}

pub fn message(id: MessageId) -> Vec<u8> {
    key(Space::Message, &[&id.0.to_be_bytes()])
}

pub fn chunk(id: MessageId, n: u32) -> Vec<u8> {
    key(Space::Chunk, &[&id.0.to_be_bytes(), &n.to_be_bytes()])
}

pub fn chunks_of(id: MessageId) -> Vec<u8> {
    key(Space::Chunk, &[&id.0.to_be_bytes()])
}

pub fn dedup(dedup_key: &[u8; 32]) -> Vec<u8> {
    key(Space::Dedup, &[dedup_key])
}

/// Addresses contain no NUL, so a NUL ends the address part unambiguously.
pub fn address_prefix(address: &Address) -> Vec<u8> {
    key(Space::AddressIndex, &[address.key().as_bytes(), &[0]])
}

pub fn address_index(address: &Address, id: MessageId) -> Vec<u8> {
    key(
        Space::AddressIndex,
        &[address.key().as_bytes(), &[0], &id.0.to_be_bytes()],
    )
}

pub fn project(id: ProjectId) -> Vec<u8> {
    key(Space::Project, &[&id.0.to_be_bytes()])
}

pub fn project_path(path: &ProjectPath) -> Vec<u8> {
    key(Space::ProjectPath, &[path.as_str().as_bytes()])
}

pub fn member_by_uid(project: ProjectId, uid: u32) -> Vec<u8> {
    key(
        Space::MemberByUid,
        &[&project.0.to_be_bytes(), &uid.to_be_bytes()],
    )
}

pub fn members_of_project(project: ProjectId) -> Vec<u8> {
    key(Space::MemberByUid, &[&project.0.to_be_bytes()])
}

pub fn member_by_message(id: MessageId, project: ProjectId) -> Vec<u8> {
    key(
        Space::MemberByMessage,
        &[&id.0.to_be_bytes(), &project.0.to_be_bytes()],
    )
}

pub fn memberships_of(id: MessageId) -> Vec<u8> {
    key(Space::MemberByMessage, &[&id.0.to_be_bytes()])
}

pub fn contact(id: ContactId) -> Vec<u8> {
    key(Space::Contact, &[&id.0.to_be_bytes()])
}

pub fn company(id: CompanyId) -> Vec<u8> {
    key(Space::Company, &[&id.0.to_be_bytes()])
}

pub fn company_name(name: &str) -> Vec<u8> {
    key(Space::CompanyName, &[name.trim().to_lowercase().as_bytes()])
}

pub fn channel(address: &Address) -> Vec<u8> {
    key(Space::Channel, &[address.key().as_bytes()])
}

pub fn user(login: &Login) -> Vec<u8> {
    key(Space::User, &[login.as_str().as_bytes()])
}

pub fn relay(name: &str) -> Vec<u8> {
    key(Space::Relay, &[name.as_bytes()])
}

/// The big-endian u64 at `at` in a key, if the key is long enough.
pub fn u64_at(key: &[u8], at: usize) -> Option<u64> {
    let bytes: [u8; 8] = key.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_keys_sort_by_id() {
        assert!(message(MessageId(2)) < message(MessageId(256)));
        assert!(member_by_uid(ProjectId(1), 9) < member_by_uid(ProjectId(1), 10));
        assert!(member_by_uid(ProjectId(1), u32::MAX) < member_by_uid(ProjectId(2), 0));
    }

    #[test]
    fn address_index_prefix_does_not_match_longer_addresses() {
        let a = Address::parse("a@x.test").unwrap();
        let longer = Address::parse("a@x.testing").unwrap();
        let key = address_index(&longer, MessageId(1));
        assert!(!key.starts_with(&address_prefix(&a)));
        assert!(address_index(&a, MessageId(1)).starts_with(&address_prefix(&a)));
    }
}
