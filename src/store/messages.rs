//! Writing messages: storing a new one, merging another copy into a known one, giving
//! fresh UIDs when visibility widens, reclassifying and deleting.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::txn::Txn;
use super::{CommitOptions, StoreError, body, directory, schema};
use crate::ingest::{Ack, Prepared};
use crate::model::{
    Address, AuthResults, Channel, MessageId, MessageRecord, Party, Project, ProjectId,
    ProjectPath, Source, unix_now,
};
use crate::policy::{self, ChannelView, Decision, Owner};

/// Why a message is in a project (ARCHITECTURE.md §5).
///
/// Invariant: `sources` is never empty; the membership goes with its last source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub uid: u32,
    pub sources: Vec<Source>,
}

pub(super) fn ingest(
    txn: &mut Txn<'_>,
    options: &CommitOptions,
    p: Prepared,
    body: body::Encoded,
) -> Result<Ack, StoreError> {
    let dedup_key = schema::dedup(&p.dedup_key);
    if let Some(id) = txn.get::<MessageId>("dedup entry", &dedup_key)? {
        match txn.get::<MessageRecord>("message", &schema::message(id))? {
            Some(record) => return merge(txn, options, record, p),
            None => {
                tracing::warn!(message = %id, "dedup entry of a missing message dropped");
                txn.remove(dedup_key.clone());
            }
        }
    }

    let addresses: Vec<Address> = p.parties.iter().map(|x| x.address.clone()).collect();
    let audience = match classify(txn, options, &addresses)? {
        Decision::Excluded { address } => {
            tracing::debug!(%address, "message not stored: excluded address");
            return Ok(Ack::Excluded);
        }
        Decision::Store(audience) => audience,
    };

    let id = MessageId(txn.generate_id()?);
    let size = body.raw_len;
    body::put(txn, id, body);
    index_parties(txn, options, id, &p.parties)?;
    for path in &p.projects {
        add_membership(txn, id, path, &p.source)?;
    }
    let record = MessageRecord {
        id,
        message_id: p.message_id,
        subject: p.subject,
        from: p.from,
        date: p.date,
        received: p.source.received,
        size,
        content_hash: p.content_hash,
        dedup_key: p.dedup_key,
        parties: addresses,
        extra_recipients: p.extra_recipients,
        audience,
        journal: p.journal,
        malformed: p.malformed,
        copies: 1,
        auth: None,
    };
    txn.put(schema::message(id), &record);
    txn.put(dedup_key, &id);
    Ok(Ack::Stored {
        id,
        duplicate: false,
    })
}

/// Another copy of a stored message: merge its parties, recipients and sources.
fn merge(
    txn: &mut Txn<'_>,
    options: &CommitOptions,
    mut record: MessageRecord,
    p: Prepared,
) -> Result<Ack, StoreError> {
    let id = record.id;
    let new_parties: Vec<Party> = p
        .parties
        .into_iter()
        .filter(|x| record.parties.binary_search(&x.address).is_err())
        .collect();
    let mut changed = !new_parties.is_empty() || (p.journal && !record.journal);
    record.journal |= p.journal;
    for r in p.extra_recipients {
        if !record.extra_recipients.contains(&r) {
            record.extra_recipients.push(r);
            changed = true;
        }
    }

    if !new_parties.is_empty() {
        record
            .parties
            .extend(new_parties.iter().map(|x| x.address.clone()));
        record.parties.sort();
        record.parties.dedup();
        match classify(txn, options, &record.parties)? {
            // Rule 1 holds for what the message is now known to involve: a copy that
            // reveals an excluded party takes the message out of the store.
            Decision::Excluded { address } => {
                tracing::debug!(message = %id, %address, "merged copy reveals an excluded party");
                delete(txn, &record)?;
                return Ok(Ack::Excluded);
            }
            Decision::Store(audience) => {
                if audience.widens(&record.audience) {
                    renumber(txn, id)?;
                }
                record.audience = audience;
            }
        }
        index_parties(txn, options, id, &new_parties)?;
    }

    let mut new_source = false;
    for path in &p.projects {
        new_source |= add_membership(txn, id, path, &p.source)?;
    }
    if new_source {
        record.copies += 1;
        changed = true;
    }
    if changed {
        txn.put(schema::message(id), &record);
    }
    Ok(Ack::Stored {
        id,
        duplicate: true,
    })
}

fn index_parties(
    txn: &mut Txn<'_>,
    options: &CommitOptions,
    id: MessageId,
    parties: &[Party],
) -> Result<(), StoreError> {
    for party in parties {
        txn.put_raw(schema::address_index(&party.address, id), Vec::new());
    }
    if options.auto_create_contacts {
        directory::auto_create(txn, options, parties)?;
    }
    Ok(())
}

/// Classifies party addresses against the directory as the batch sees it.
pub(super) fn classify(
    txn: &Txn<'_>,
    options: &CommitOptions,
    addresses: &[Address],
) -> Result<Decision, StoreError> {
    let mut views = HashMap::new();
    for address in addresses {
        if let Some(ch) = txn.get::<Channel>("channel", &schema::channel(address))? {
            let owner = ch.user.map(Owner::User).unwrap_or(Owner::Outside);
            views.insert(
                address.clone(),
                ChannelView {
                    owner,
                    flags: ch.flags,
                },
            );
        }
    }
    Ok(policy::classify(
        addresses,
        |a| views.get(a).cloned(),
        options.policy,
    ))
}

/// Classifies a stored message again after the directory changed.
///
/// A message that now involves an excluded address keeps its stored audience: setting
/// `exclude` later keeps what is stored unless the operator purges (§4).
pub(super) fn reclassify(
    txn: &mut Txn<'_>,
    options: &CommitOptions,
    id: MessageId,
) -> Result<(), StoreError> {
    let Some(mut record) = txn.get::<MessageRecord>("message", &schema::message(id))? else {
        return Ok(());
    };
    let Decision::Store(audience) = classify(txn, options, &record.parties)? else {
        return Ok(());
    };
    if audience == record.audience {
        return Ok(());
    }
    if audience.widens(&record.audience) {
        renumber(txn, id)?;
    }
    record.audience = audience;
    txn.put(schema::message(id), &record);
    Ok(())
}

/// The messages that carry an address, from the address index.
pub(super) fn carrying(txn: &Txn<'_>, address: &Address) -> Result<Vec<MessageId>, StoreError> {
    let prefix = schema::address_prefix(address);
    let ids = txn
        .scan_prefix(&prefix)?
        .into_iter()
        .filter_map(|(k, _)| schema::u64_at(&k, prefix.len()).map(MessageId))
        .collect();
    Ok(ids)
}

/// Adds a source to the message's membership of a project, creating the project and the
/// membership as needed. Returns whether anything was added.
fn add_membership(
    txn: &mut Txn<'_>,
    id: MessageId,
    path: &ProjectPath,
    source: &Source,
) -> Result<bool, StoreError> {
    let project = project_for(txn, path)?;
    let key = schema::member_by_message(id, project.id);
    if let Some(mut membership) = txn.get::<Membership>("membership", &key)? {
        if membership.sources.iter().any(|s| same_source(s, source)) {
            return Ok(false);
        }
        membership.sources.push(source.clone());
        txn.put(key, &membership);
        return Ok(true);
    }
    let uid = take_uid(txn, project.id)?;
    txn.put(
        key,
        &Membership {
            uid,
            sources: vec![source.clone()],
        },
    );
    txn.put(schema::member_by_uid(project.id, uid), &id);
    Ok(true)
}

/// Two deliveries are the same source when they differ at most in their time.
fn same_source(a: &Source, b: &Source) -> bool {
    a.kind == b.kind && a.envelope == b.envelope
}

/// The project at `path`, created if it does not exist yet.
pub(super) fn project_for(txn: &mut Txn<'_>, path: &ProjectPath) -> Result<Project, StoreError> {
    let path_key = schema::project_path(path);
    if let Some(pid) = txn.get::<ProjectId>("project path", &path_key)?
        && let Some(project) = txn.get::<Project>("project", &schema::project(pid))?
    {
        return Ok(project);
    }
    let id = ProjectId(txn.generate_id()?);
    // RFC 3501 §2.3.1.1: a new UIDVALIDITY for a new mailbox. Seconds since 1970 only
    // grow, and a project id tie-breaks two created within one second.
    let uid_validity = (unix_now() as u32).wrapping_add(id.0 as u32).max(1);
    let project = Project {
        id,
        path: path.clone(),
        uid_validity,
        uid_next: 1,
        created: unix_now(),
    };
    txn.put(schema::project(id), &project);
    txn.put(path_key, &id);
    Ok(project)
}

fn take_uid(txn: &mut Txn<'_>, project: ProjectId) -> Result<u32, StoreError> {
    let key = schema::project(project);
    let Some(mut p) = txn.get::<Project>("project", &key)? else {
        let detail = format!("project {} missing", project.0);
        return Err(StoreError::Corrupt {
            what: "project",
            detail,
        });
    };
    let uid = p.uid_next;
    p.uid_next = uid
        .checked_add(1)
        .ok_or_else(|| StoreError::refused(format!("project {} has used every UID", p.path)))?;
    txn.put(key, &p);
    Ok(uid)
}

/// Gives every membership of a message a fresh UID, so that a user who could not see it
/// before never finds it below a UID they have already seen (§4).
fn renumber(txn: &mut Txn<'_>, id: MessageId) -> Result<(), StoreError> {
    for (key, value) in txn.scan_prefix(&schema::memberships_of(id))? {
        let Some(project) = schema::u64_at(&key, 9).map(ProjectId) else {
            continue;
        };
        let mut membership: Membership = super::codec::decode("membership", &value)?;
        txn.remove(schema::member_by_uid(project, membership.uid));
        membership.uid = take_uid(txn, project)?;
        txn.put(schema::member_by_uid(project, membership.uid), &id);
        txn.put(key, &membership);
    }
    Ok(())
}

/// Removes a message and everything that points at it.
pub(super) fn delete(txn: &mut Txn<'_>, record: &MessageRecord) -> Result<(), StoreError> {
    let id = record.id;
    for (key, value) in txn.scan_prefix(&schema::memberships_of(id))? {
        let membership: Membership = super::codec::decode("membership", &value)?;
        if let Some(project) = schema::u64_at(&key, 9).map(ProjectId) {
            txn.remove(schema::member_by_uid(project, membership.uid));
        }
        txn.remove(key);
    }
    for address in &record.parties {
        txn.remove(schema::address_index(address, id));
    }
    let dedup_key = schema::dedup(&record.dedup_key);
    if txn.get::<MessageId>("dedup entry", &dedup_key)? == Some(id) {
        txn.remove(dedup_key);
    }
    body::remove(txn, id)?;
    txn.remove(schema::message(id));
    Ok(())
}

/// Deletes every message that carries `address`; returns how many.
pub(super) fn purge(txn: &mut Txn<'_>, address: &Address) -> Result<usize, StoreError> {
    let ids = carrying(txn, address)?;
    let mut count = 0;
    for id in ids {
        if let Some(record) = txn.get::<MessageRecord>("message", &schema::message(id))? {
            delete(txn, &record)?;
            count += 1;
        }
    }
    Ok(count)
}

impl Txn<'_> {
    /// Records sender-authentication verdicts on a stored message.
    pub fn set_auth(&mut self, id: MessageId, auth: AuthResults) -> Result<(), StoreError> {
        let key = schema::message(id);
        let Some(mut record) = self.get::<MessageRecord>("message", &key)? else {
            // Deleted meanwhile: purged, or a later copy revealed an excluded party.
            return Ok(());
        };
        record.auth = Some(auth);
        self.put(key, &record);
        Ok(())
    }

    /// Creates a project if it does not exist; returns it either way.
    pub fn create_project(&mut self, path: &ProjectPath) -> Result<Project, StoreError> {
        project_for(self, path)
    }
}
