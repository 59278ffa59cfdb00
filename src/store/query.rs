//! Reading the store: the directory, projects and messages, straight from the tree and
//! never through the committer.

use serde::de::DeserializeOwned;

use super::messages::Membership;
use super::schema::{self, Space};
use super::{Store, StoreError, body, codec};
use crate::model::{
    Address, Channel, Company, CompanyId, Contact, ContactId, Login, MessageId, MessageRecord,
    Project, ProjectId, ProjectPath, Relay, User,
};

/// A message with the projects it is in.
#[derive(Debug, Clone)]
pub struct MessageView {
    pub record: MessageRecord,
    pub memberships: Vec<(Project, Membership)>,
}

/// Which messages a listing shows.
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    pub project: Option<ProjectPath>,
    /// Only what this user may see, their `show_only_active` applied.
    pub visible_to: Option<Login>,
}

/// Counts for `threadsd stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub messages: u64,
    /// Copies merged into messages stored before.
    pub duplicates_merged: u64,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    pub projects: u64,
    pub contacts: u64,
    pub channels: u64,
    pub users: u64,
    pub relays: u64,
    pub disk_bytes: u64,
}

impl Store {
    fn all<T: DeserializeOwned>(
        &self,
        what: &'static str,
        space: Space,
    ) -> Result<Vec<T>, StoreError> {
        self.tree()?
            .scan_prefix(schema::prefix(space))
            .map(|item| {
                let (_, v) = item?;
                codec::decode(what, &v)
            })
            .collect()
    }

    fn one<T: DeserializeOwned>(
        &self,
        what: &'static str,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        match self.tree()?.get(key)? {
            Some(v) => codec::decode(what, &v).map(Some),
            None => Ok(None),
        }
    }

    pub fn users(&self) -> Result<Vec<User>, StoreError> {
        self.all("user", Space::User)
    }

    pub fn user(&self, login: &Login) -> Result<Option<User>, StoreError> {
        self.one("user", &schema::user(login))
    }

    pub fn contacts(&self) -> Result<Vec<Contact>, StoreError> {
        self.all("contact", Space::Contact)
    }

    pub fn contact(&self, id: ContactId) -> Result<Option<Contact>, StoreError> {
        self.one("contact", &schema::contact(id))
    }

    pub fn company(&self, id: CompanyId) -> Result<Option<Company>, StoreError> {
        self.one("company", &schema::company(id))
    }

    pub fn channels(&self) -> Result<Vec<Channel>, StoreError> {
        self.all("channel", Space::Channel)
    }

    pub fn channel(&self, address: &Address) -> Result<Option<Channel>, StoreError> {
        self.one("channel", &schema::channel(address))
    }

    pub fn relays(&self) -> Result<Vec<Relay>, StoreError> {
        self.all("relay", Space::Relay)
    }

    pub fn relay(&self, name: &str) -> Result<Option<Relay>, StoreError> {
        self.one("relay", &schema::relay(name))
    }

    pub fn projects(&self) -> Result<Vec<Project>, StoreError> {
        self.all("project", Space::Project)
    }

    pub fn project(&self, path: &ProjectPath) -> Result<Option<Project>, StoreError> {
        let Some(id) = self.one::<ProjectId>("project path", &schema::project_path(path))? else {
            return Ok(None);
        };
        self.one("project", &schema::project(id))
    }

    /// How many messages a project holds.
    pub fn project_size(&self, id: ProjectId) -> Result<u64, StoreError> {
        let mut n = 0;
        for item in self.tree()?.scan_prefix(schema::members_of_project(id)) {
            item?;
            n += 1;
        }
        Ok(n)
    }

    pub fn message(&self, id: MessageId) -> Result<Option<MessageView>, StoreError> {
        let Some(record) = self.one::<MessageRecord>("message", &schema::message(id))? else {
            return Ok(None);
        };
        self.view(record).map(Some)
    }

    fn view(&self, record: MessageRecord) -> Result<MessageView, StoreError> {
        let mut memberships = Vec::new();
        for item in self.tree()?.scan_prefix(schema::memberships_of(record.id)) {
            let (k, v) = item?;
            let Some(pid) = schema::u64_at(&k, 9).map(ProjectId) else {
                continue;
            };
            let membership: Membership = codec::decode("membership", &v)?;
            if let Some(project) = self.one::<Project>("project", &schema::project(pid))? {
                memberships.push((project, membership));
            }
        }
        Ok(MessageView {
            record,
            memberships,
        })
    }

    /// The stored bytes of a message.
    pub fn raw_message(&self, id: MessageId) -> Result<Option<Vec<u8>>, StoreError> {
        body::read(&self.tree()?, id)
    }

    /// Messages in id order (project listings in UID order), filtered.
    pub fn messages(&self, filter: &MessageFilter) -> Result<Vec<MessageView>, StoreError> {
        let viewer = match &filter.visible_to {
            Some(login) => match self.user(login)? {
                Some(user) => Some(user),
                None => return Err(StoreError::refused(format!("no user \"{login}\""))),
            },
            None => None,
        };
        let ids = match &filter.project {
            Some(path) => {
                let Some(project) = self.project(path)? else {
                    return Err(StoreError::refused(format!("no project \"{path}\"")));
                };
                let mut ids = Vec::new();
                for item in self
                    .tree()?
                    .scan_prefix(schema::members_of_project(project.id))
                {
                    let (_, v) = item?;
                    ids.push(codec::decode::<MessageId>("membership", &v)?);
                }
                ids
            }
            None => {
                let mut ids = Vec::new();
                for item in self.tree()?.scan_prefix(schema::prefix(Space::Message)) {
                    let (k, _) = item?;
                    ids.extend(schema::u64_at(&k, 1).map(MessageId));
                }
                ids
            }
        };

        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(record) = self.one::<MessageRecord>("message", &schema::message(id))? else {
                continue;
            };
            if let Some(user) = &viewer
                && !record.audience.admits(&user.login, user.show_only_active)
            {
                continue;
            }
            out.push(self.view(record)?);
        }
        Ok(out)
    }

    pub fn stats(&self) -> Result<Stats, StoreError> {
        let mut stats = Stats::default();
        for item in self.tree()?.scan_prefix(schema::prefix(Space::Message)) {
            let (_, v) = item?;
            let record: MessageRecord = codec::decode("message", &v)?;
            stats.messages += 1;
            stats.duplicates_merged += u64::from(record.copies.saturating_sub(1));
            stats.raw_bytes += record.size;
        }
        for item in self.tree()?.scan_prefix(schema::prefix(Space::Chunk)) {
            let (_, v) = item?;
            stats.stored_bytes += v.len() as u64;
        }
        let count = |space| -> Result<u64, StoreError> {
            let mut n = 0;
            for item in self.tree()?.scan_prefix(schema::prefix(space)) {
                item?;
                n += 1;
            }
            Ok(n)
        };
        stats.projects = count(Space::Project)?;
        stats.contacts = count(Space::Contact)?;
        stats.channels = count(Space::Channel)?;
        stats.users = count(Space::User)?;
        stats.relays = count(Space::Relay)?;
        stats.disk_bytes = self.size_on_disk()?;
        Ok(stats)
    }
}
