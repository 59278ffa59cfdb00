//! Every management operation, once. The CLI calls these directly when no daemon runs,
//! and a running daemon serves the same calls over its admin socket.

pub mod import;
pub mod password;
pub mod socket;
pub mod views;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::ingest::{Ack, IngestError, IngestOptions, Ingestor, Submission, Trust};
use crate::model::{
    Address, ChannelFlags, Login, MessageId, ProjectPath, Source, SourceKind, unix_now,
};
use crate::store::{
    ChannelChange, CommitOptions, Committer, MessageFilter, NewContact, NewUser, Store, StoreError,
    StoreOptions,
};
use views::{
    AuthView, ChannelView, ContactView, IngestOutcome, IngestStatus, MessageDetail, ProjectView,
    RelayView, SourceView, StatsView, UserView,
};

/// A management request, as the CLI builds it and the admin socket carries it.
///
/// Passwords travel only as argon2id hashes, made by the CLI before the request leaves.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    UserAdd {
        login: Login,
        addresses: Vec<Address>,
        password_hash: Option<String>,
        show_only_active: bool,
    },
    UserList,
    UserPasswd {
        login: Login,
        password_hash: Option<String>,
    },
    UserRemove {
        login: Login,
    },
    ContactAdd {
        name: String,
        company: Option<String>,
        addresses: Vec<Address>,
        private: bool,
        exclude: bool,
        inactive: bool,
    },
    ContactList,
    ContactForget {
        address: Address,
    },
    ChannelSet {
        address: Address,
        shared: Option<bool>,
        exclude: Option<bool>,
        active: Option<bool>,
        purge: bool,
    },
    ChannelList,
    ProjectList,
    MessageList {
        project: Option<ProjectPath>,
        visible_to: Option<Login>,
    },
    MessageShow {
        id: u64,
    },
    MessageRaw {
        id: u64,
    },
    Stats,
    RelayAdd {
        name: String,
        password_hash: String,
    },
    RelayList,
    RelayRemove {
        name: String,
    },
    /// One message to ingest; its bytes follow the request on the socket.
    Ingest {
        project: Option<ProjectPath>,
        file: Option<String>,
    },
}

/// The answer to a request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Response {
    /// A change was made; the text says what.
    Done(String),
    Users(Vec<UserView>),
    Contacts(Vec<ContactView>),
    Channels(Vec<ChannelView>),
    Projects(Vec<ProjectView>),
    Messages(Vec<views::MessageSummary>),
    Message(Box<MessageDetail>),
    /// Base64 of a message's stored bytes.
    Raw(String),
    Stats(StatsView),
    Relays(Vec<RelayView>),
    Ingested(IngestOutcome),
}

/// Why a request failed. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AdminError {
    /// The request cannot be carried out as asked (`no user "bob"`).
    #[error("{0}")]
    Refused(String),
    /// The store failed; the request may succeed later.
    #[error("store error: {0}")]
    Store(String),
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Refused(msg) => AdminError::Refused(msg),
            other => AdminError::Store(other.to_string()),
        }
    }
}

/// The management operations over one store.
#[derive(Debug, Clone)]
pub struct Admin {
    ingestor: Ingestor,
    default_project: ProjectPath,
}

impl Admin {
    pub fn new(ingestor: Ingestor, default_project: ProjectPath) -> Admin {
        Admin {
            ingestor,
            default_project,
        }
    }

    /// Opens the configured store and starts its committer.
    pub fn open(config: &Config) -> Result<Admin, StoreError> {
        let store = Store::open(&StoreOptions {
            path: config.store.path.clone(),
            cache_bytes: config.store.cache_size.0,
        })?;
        let committer = Committer::start(
            store,
            CommitOptions {
                policy: config.policy_options(),
                auto_create_contacts: config.policy.auto_create_contacts,
            },
        );
        let options = IngestOptions {
            ingest_addresses: config.policy.ingest_addresses.clone(),
            max_message_size: config.smtp.max_message_size.0 as usize,
        };
        let ingestor = Ingestor::new(committer, options);
        Ok(Admin::new(ingestor, config.policy.default_project.clone()))
    }

    pub fn ingestor(&self) -> &Ingestor {
        &self.ingestor
    }

    /// Finishes queued work, syncs and stops the committer.
    pub async fn close(&self) {
        self.ingestor.committer().close().await;
    }

    fn store(&self) -> &Store {
        self.ingestor.committer().store()
    }

    /// Carries out one request. `raw` is the message of an `Ingest` request.
    pub async fn handle(&self, request: Request, raw: Vec<u8>) -> Result<Response, AdminError> {
        match request {
            Request::Ingest { project, file } => {
                Ok(Response::Ingested(self.ingest(raw, project, file).await))
            }
            Request::UserList
            | Request::ContactList
            | Request::ChannelList
            | Request::ProjectList
            | Request::MessageList { .. }
            | Request::MessageShow { .. }
            | Request::MessageRaw { .. }
            | Request::Stats
            | Request::RelayList => {
                // Listings scan the store: blocking reads, kept off the async threads.
                let admin = self.clone();
                tokio::task::spawn_blocking(move || admin.query(request))
                    .await
                    .map_err(|e| AdminError::Store(format!("query task failed: {e}")))?
            }
            change => self.change(change).await,
        }
    }

    /// A request that changes the store: a committer job, answered once durable.
    async fn change(&self, request: Request) -> Result<Response, AdminError> {
        let committer = self.ingestor.committer();
        let text = match request {
            Request::UserAdd {
                login,
                addresses,
                password_hash,
                show_only_active,
            } => {
                let new = NewUser {
                    login,
                    addresses,
                    password_hash,
                    show_only_active,
                };
                let user = committer.run(move |txn, o| txn.add_user(o, new)).await?;
                format!("user \"{}\" added", user.login)
            }
            Request::UserPasswd {
                login,
                password_hash,
            } => {
                let l = login.clone();
                committer
                    .run(move |txn, _| txn.set_password(&l, password_hash))
                    .await?;
                format!("password of \"{login}\" changed")
            }
            Request::UserRemove { login } => {
                let l = login.clone();
                committer.run(move |txn, o| txn.remove_user(o, &l)).await?;
                format!("user \"{login}\" removed")
            }
            Request::ContactAdd {
                name,
                company,
                addresses,
                private,
                exclude,
                inactive,
            } => {
                let flags = ChannelFlags {
                    exclude,
                    active: !inactive,
                    shared: !private,
                };
                let new = NewContact {
                    name,
                    company,
                    addresses,
                    flags,
                };
                let contact = committer.run(move |txn, o| txn.add_contact(o, new)).await?;
                format!("contact \"{}\" added", contact.name)
            }
            Request::ContactForget { address } => {
                let (contact, erased) = committer
                    .run(move |txn, _| txn.forget_contact(&address))
                    .await?;
                format!(
                    "contact \"{}\" forgotten, {erased} messages erased",
                    contact.name
                )
            }
            Request::ChannelSet {
                address,
                shared,
                exclude,
                active,
                purge,
            } => {
                let change = ChannelChange {
                    shared,
                    exclude,
                    active,
                    purge,
                };
                let a = address.clone();
                let (ch, purged) = committer
                    .run(move |txn, o| txn.set_channel(o, &a, change))
                    .await?;
                let f = ch.flags;
                let mut text = format!(
                    "{address}: {}, {}, {}",
                    if f.shared { "shared" } else { "private" },
                    if f.exclude { "excluded" } else { "included" },
                    if f.active { "active" } else { "inactive" },
                );
                if purge {
                    text.push_str(&format!("; {purged} messages purged"));
                }
                text
            }
            Request::RelayAdd {
                name,
                password_hash,
            } => {
                let relay = committer
                    .run(move |txn, _| txn.add_relay(&name, password_hash))
                    .await?;
                format!("relay \"{}\" added", relay.name)
            }
            Request::RelayRemove { name } => {
                let n = name.clone();
                committer.run(move |txn, _| txn.remove_relay(&n)).await?;
                format!("relay \"{name}\" removed")
            }
            // `handle` routes every other request elsewhere.
            _ => {
                return Err(AdminError::Store(
                    "request routed to the wrong handler".into(),
                ));
            }
        };
        Ok(Response::Done(text))
    }

    /// A request that only reads.
    fn query(&self, request: Request) -> Result<Response, AdminError> {
        match request {
            Request::UserList => self.users().map(Response::Users),
            Request::ContactList => self.contacts().map(Response::Contacts),
            Request::ChannelList => self.channels().map(Response::Channels),
            Request::ProjectList => self.projects().map(Response::Projects),
            Request::MessageList {
                project,
                visible_to,
            } => self.messages(project, visible_to).map(Response::Messages),
            Request::MessageShow { id } => self.message(id).map(|m| Response::Message(Box::new(m))),
            Request::MessageRaw { id } => {
                let raw = self
                    .store()
                    .raw_message(MessageId(id))?
                    .ok_or_else(|| AdminError::Refused(format!("no message {id}")))?;
                Ok(Response::Raw(
                    base64::engine::general_purpose::STANDARD.encode(raw),
                ))
            }
            Request::Stats => Ok(Response::Stats(self.store().stats()?.into())),
            Request::RelayList => {
                let relays = self.store().relays()?;
                Ok(Response::Relays(
                    relays
                        .into_iter()
                        .map(|r| RelayView { name: r.name })
                        .collect(),
                ))
            }
            _ => Err(AdminError::Store(
                "request routed to the wrong handler".into(),
            )),
        }
    }

    /// Ingests one message as an import.
    pub async fn ingest(
        &self,
        raw: Vec<u8>,
        project: Option<ProjectPath>,
        file: Option<String>,
    ) -> IngestOutcome {
        let submission = Submission {
            raw,
            source: Source {
                kind: SourceKind::Import { file },
                received: unix_now(),
                envelope: None,
            },
            projects: vec![project.unwrap_or_else(|| self.default_project.clone())],
            trust: Trust::Trusted,
        };
        match self.ingestor.submit(submission).await {
            Ok(Ack::Stored { id, duplicate }) => IngestOutcome {
                status: if duplicate {
                    IngestStatus::Duplicate
                } else {
                    IngestStatus::Stored
                },
                id: Some(id.0),
                reason: None,
            },
            Ok(Ack::Excluded) => IngestOutcome {
                status: IngestStatus::Excluded,
                id: None,
                reason: None,
            },
            Err(IngestError::Refused(r)) => IngestOutcome {
                status: IngestStatus::Refused,
                id: None,
                reason: Some(r.to_string()),
            },
            Err(IngestError::Unavailable(e)) => IngestOutcome {
                status: IngestStatus::Refused,
                id: None,
                reason: Some(format!("not stored, retry: {e}")),
            },
        }
    }

    fn users(&self) -> Result<Vec<UserView>, AdminError> {
        let store = self.store();
        let mut out = Vec::new();
        for user in store.users()? {
            let addresses = match store.contact(user.contact)? {
                Some(c) => c.addresses.iter().map(|a| a.to_string()).collect(),
                None => Vec::new(),
            };
            out.push(UserView {
                login: user.login.to_string(),
                addresses,
                password: user.password_hash.is_some(),
                show_only_active: user.show_only_active,
            });
        }
        Ok(out)
    }

    fn channels(&self) -> Result<Vec<ChannelView>, AdminError> {
        let store = self.store();
        let mut out = Vec::new();
        for ch in store.channels()? {
            let name = store
                .contact(ch.contact)?
                .map(|c| c.name)
                .unwrap_or_default();
            out.push(channel_view(&ch, name));
        }
        Ok(out)
    }

    fn contacts(&self) -> Result<Vec<ContactView>, AdminError> {
        let store = self.store();
        let mut out = Vec::new();
        for contact in store.contacts()? {
            let company = match contact.company {
                Some(id) => store.company(id)?.map(|c| c.name),
                None => None,
            };
            let mut channels = Vec::new();
            for address in &contact.addresses {
                if let Some(ch) = store.channel(address)? {
                    channels.push(channel_view(&ch, contact.name.clone()));
                }
            }
            out.push(ContactView {
                id: contact.id.0,
                name: contact.name,
                company,
                user: contact.user.map(|l| l.to_string()),
                auto_created: contact.auto_created,
                channels,
            });
        }
        Ok(out)
    }

    fn projects(&self) -> Result<Vec<ProjectView>, AdminError> {
        let store = self.store();
        let mut out = Vec::new();
        for p in store.projects()? {
            out.push(ProjectView {
                path: p.path.to_string(),
                messages: store.project_size(p.id)?,
                uid_validity: p.uid_validity,
                uid_next: p.uid_next,
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn messages(
        &self,
        project: Option<ProjectPath>,
        visible_to: Option<Login>,
    ) -> Result<Vec<views::MessageSummary>, AdminError> {
        let store = self.store();
        let users = store.users()?;
        let filter = MessageFilter {
            project,
            visible_to,
        };
        Ok(store
            .messages(&filter)?
            .iter()
            .map(|v| views::summary(v, &users))
            .collect())
    }

    fn message(&self, id: u64) -> Result<MessageDetail, AdminError> {
        let store = self.store();
        let view = store
            .message(MessageId(id))?
            .ok_or_else(|| AdminError::Refused(format!("no message {id}")))?;
        let users = store.users()?;
        let mut sources = Vec::new();
        for (project, membership) in &view.memberships {
            for s in &membership.sources {
                let detail = match &s.kind {
                    SourceKind::Smtp { peer, helo, auth } => match auth {
                        Some(a) => format!("from {peer} ({helo}), authenticated as {a}"),
                        None => format!("from {peer} ({helo})"),
                    },
                    SourceKind::Lmtp { peer, helo } => format!("from {peer} ({helo})"),
                    SourceKind::Import { file } => file.clone().unwrap_or_else(|| "stdin".into()),
                    SourceKind::Append { login } => format!("by {login}"),
                    SourceKind::Pull {
                        account,
                        folder,
                        uid,
                    } => {
                        format!("{account} {folder} UID {uid}")
                    }
                };
                sources.push(SourceView {
                    project: project.path.to_string(),
                    uid: membership.uid,
                    kind: s.label().into(),
                    detail,
                    received: s.received,
                    mail_from: s.envelope.as_ref().map(|e| e.mail_from.clone()),
                    recipients: s
                        .envelope
                        .as_ref()
                        .map(|e| e.recipients.clone())
                        .unwrap_or_default(),
                });
            }
        }
        let r = &view.record;
        Ok(MessageDetail {
            summary: views::summary(&view, &users),
            content_hash: r.content_hash.iter().map(|b| format!("{b:02x}")).collect(),
            extra_recipients: r.extra_recipients.iter().map(|a| a.to_string()).collect(),
            sources,
            auth: r.auth.as_ref().map(|a| AuthView {
                dkim: a.dkim.clone(),
                arc: a.arc.clone(),
                spf: a.spf.clone(),
                dmarc: a.dmarc.clone(),
                checked: a.checked,
            }),
        })
    }
}

fn channel_view(ch: &crate::model::Channel, contact: String) -> ChannelView {
    ChannelView {
        address: ch.address.to_string(),
        contact,
        contact_id: ch.contact.0,
        user: ch.user.as_ref().map(|l| l.to_string()),
        shared: ch.flags.shared,
        exclude: ch.flags.exclude,
        active: ch.flags.active,
    }
}
