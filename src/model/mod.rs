//! Domain types shared by every part of threadsd: addresses, the directory, projects and
//! message records.

mod address;
mod directory;
mod message;
mod project;
mod secret;

pub use address::{Address, AddressError};
pub use directory::{
    Channel, ChannelFlags, Company, CompanyId, Contact, ContactId, Login, LoginError, Relay, User,
};
pub use message::{
    Audience, AuthResults, Envelope, MessageId, MessageRecord, Party, Source, SourceKind,
    Visibility, unix_now,
};
pub use project::{Project, ProjectId, ProjectPath, ProjectPathError};
pub use secret::Secret;
