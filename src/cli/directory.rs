//! `threadsd user`, `contact`, `channel` and `relay`: the address book and the relay
//! accounts.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::backend::Backend;
use super::secrets::{self, PasswordSource};
use super::{CliError, done, output, unexpected};
use crate::admin::{Request, Response};
use crate::model::{Address, Login};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user with their own addresses.
    Add {
        login: Login,
        #[arg(long = "address", required = true, value_name = "ADDR")]
        addresses: Vec<Address>,
        #[command(flatten)]
        password: PasswordArgs,
        /// A user who logs in through LDAP only: no password of our own.
        #[arg(long, conflicts_with = "password_stdin")]
        no_password: bool,
        /// Also show mail whose only outside parties are inactive.
        #[arg(long)]
        show_inactive: bool,
    },
    /// List the users.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Set a user's password.
    Passwd {
        login: Login,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Remove a user; their contact stays as an outside party.
    Remove { login: Login },
}

#[derive(Debug, Args)]
pub struct PasswordArgs {
    /// Read the password from the first line of standard input instead of prompting.
    #[arg(long)]
    password_stdin: bool,
}

impl PasswordArgs {
    fn source(&self) -> PasswordSource {
        if self.password_stdin {
            PasswordSource::Stdin
        } else {
            PasswordSource::Prompt
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ContactCommand {
    /// Add a contact with one or more addresses.
    Add {
        name: String,
        #[arg(long)]
        company: Option<String>,
        #[arg(long = "address", required = true, value_name = "ADDR")]
        addresses: Vec<Address>,
        /// Mail with this contact is visible only to the users it addresses.
        #[arg(long)]
        private: bool,
        /// Mail with this contact is not stored at all.
        #[arg(long)]
        exclude: bool,
        /// Mail whose only outside parties are inactive is hidden by default.
        #[arg(long)]
        inactive: bool,
    },
    /// List the contacts.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Erase the contact that has this address, and every message that carries any of
    /// its addresses.
    Forget { address: Address },
}

#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// Change an address's flags; stored mail is classified again.
    Set {
        address: Address,
        #[arg(long, conflicts_with = "private")]
        shared: bool,
        #[arg(long)]
        private: bool,
        #[arg(long, conflicts_with = "include")]
        exclude: bool,
        #[arg(long)]
        include: bool,
        #[arg(long, conflicts_with = "inactive")]
        active: bool,
        #[arg(long)]
        inactive: bool,
        /// With --exclude: delete the stored mail that carries the address.
        #[arg(long, requires = "exclude")]
        purge: bool,
    },
    /// List every address with its flags.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RelayCommand {
    /// Add a relay account for SMTP AUTH.
    Add {
        name: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// List the relay accounts.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a relay account.
    Remove { name: String },
}

/// `Some(true)` for `--yes`, `Some(false)` for `--no`, `None` for neither.
fn flag(yes: bool, no: bool) -> Option<bool> {
    match (yes, no) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

pub async fn user(backend: &Backend, command: UserCommand) -> Result<ExitCode, CliError> {
    match command {
        UserCommand::Add {
            login,
            addresses,
            password,
            no_password,
            show_inactive,
        } => {
            let password_hash = if no_password {
                None
            } else {
                let secret = secrets::read(password.source(), login.as_str())?;
                Some(secrets::hash(secret).await?)
            };
            let request = Request::UserAdd {
                login,
                addresses,
                password_hash,
                show_only_active: !show_inactive,
            };
            done(backend.call(request).await?)
        }
        UserCommand::List { json } => {
            let Response::Users(users) = backend.call(Request::UserList).await? else {
                return Err(unexpected());
            };
            output::users(&users, json);
            Ok(ExitCode::SUCCESS)
        }
        UserCommand::Passwd { login, password } => {
            let secret = secrets::read(password.source(), login.as_str())?;
            let password_hash = Some(secrets::hash(secret).await?);
            done(
                backend
                    .call(Request::UserPasswd {
                        login,
                        password_hash,
                    })
                    .await?,
            )
        }
        UserCommand::Remove { login } => done(backend.call(Request::UserRemove { login }).await?),
    }
}

pub async fn contact(backend: &Backend, command: ContactCommand) -> Result<ExitCode, CliError> {
    match command {
        ContactCommand::Add {
            name,
            company,
            addresses,
            private,
            exclude,
            inactive,
        } => {
            let request = Request::ContactAdd {
                name,
                company,
                addresses,
                private,
                exclude,
                inactive,
            };
            done(backend.call(request).await?)
        }
        ContactCommand::List { json } => {
            let Response::Contacts(contacts) = backend.call(Request::ContactList).await? else {
                return Err(unexpected());
            };
            output::contacts(&contacts, json);
            Ok(ExitCode::SUCCESS)
        }
        ContactCommand::Forget { address } => {
            done(backend.call(Request::ContactForget { address }).await?)
        }
    }
}

pub async fn channel(backend: &Backend, command: ChannelCommand) -> Result<ExitCode, CliError> {
    match command {
        ChannelCommand::Set {
            address,
            shared,
            private,
            exclude,
            include,
            active,
            inactive,
            purge,
        } => {
            let request = Request::ChannelSet {
                address,
                shared: flag(shared, private),
                exclude: flag(exclude, include),
                active: flag(active, inactive),
                purge,
            };
            done(backend.call(request).await?)
        }
        ChannelCommand::List { json } => {
            let Response::Channels(channels) = backend.call(Request::ChannelList).await? else {
                return Err(unexpected());
            };
            output::channels(&channels, json);
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub async fn relay(backend: &Backend, command: RelayCommand) -> Result<ExitCode, CliError> {
    match command {
        RelayCommand::Add { name, password } => {
            let secret = secrets::read(password.source(), &name)?;
            let password_hash = secrets::hash(secret).await?;
            done(
                backend
                    .call(Request::RelayAdd {
                        name,
                        password_hash,
                    })
                    .await?,
            )
        }
        RelayCommand::List { json } => {
            let Response::Relays(relays) = backend.call(Request::RelayList).await? else {
                return Err(unexpected());
            };
            output::relays(&relays, json);
            Ok(ExitCode::SUCCESS)
        }
        RelayCommand::Remove { name } => done(backend.call(Request::RelayRemove { name }).await?),
    }
}
