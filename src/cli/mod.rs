//! The command line: one file per subcommand group, each a thin layer that builds an
//! `admin::Request` and prints the answer.

mod backend;
mod directory;
mod import;
mod message;
mod output;
mod secrets;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::admin::{AdminError, Request, Response};
use crate::config::{Config, ConfigError};
use backend::Backend;

/// threadsd: the mail-sink daemon of Threads.
#[derive(Debug, Parser)]
#[command(name = "threadsd", version, about, propagate_version = true)]
pub struct Cli {
    /// The configuration file; without one, the embedded default.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "THREADSD_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Serve,
    /// Check a configuration file and exit (0 good, 78 bad).
    CheckConfig,
    /// Import .eml files, mbox files, Maildir folders, or one message from stdin (-).
    Import(import::ImportArgs),
    /// Threads users: the people who read mail through threadsd.
    #[command(subcommand)]
    User(directory::UserCommand),
    /// Contacts of the address book.
    #[command(subcommand)]
    Contact(directory::ContactCommand),
    /// The privacy flags of single addresses.
    #[command(subcommand)]
    Channel(directory::ChannelCommand),
    /// SMTP AUTH accounts allowed to submit mail for ingestion.
    #[command(subcommand)]
    Relay(directory::RelayCommand),
    /// Projects: the folders mail is stored in.
    #[command(subcommand)]
    Project(message::ProjectCommand),
    /// Stored messages.
    #[command(subcommand)]
    Message(message::MessageCommand),
    /// Counts of what the store holds.
    Stats {
        #[arg(long)]
        json: bool,
    },
}

/// Exit codes of sysexits.h, which mail administrators' scripts know.
pub mod exit {
    pub const USAGE: u8 = 64;
    pub const DATA: u8 = 65;
    pub const UNAVAILABLE: u8 = 69;
    pub const TEMPFAIL: u8 = 75;
    pub const CONFIG: u8 = 78;
}

/// A command that failed, with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

impl From<AdminError> for CliError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Refused(m) => CliError::Refused(m),
            AdminError::Store(m) => CliError::Unavailable(m),
        }
    }
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            CliError::Config(_) => exit::CONFIG,
            CliError::Usage(_) => exit::USAGE,
            CliError::Refused(_) => 1,
            CliError::Unavailable(_) => exit::TEMPFAIL,
            CliError::Other(_) => 1,
        })
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let config = Config::load_or_default(cli.config.as_deref())?;
    match cli.command {
        Command::CheckConfig => {
            match &cli.config {
                Some(path) => println!("{}: configuration is valid", path.display()),
                None => println!("no --config given: the embedded default is valid"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve => {
            crate::telemetry::init_logging(&config.log);
            runtime()?.block_on(crate::daemon::serve(config))?;
            Ok(ExitCode::SUCCESS)
        }
        command => {
            // Management commands print their results; the log says only what went
            // wrong (a store opened in-process can warn), unless RUST_LOG asks for more.
            let log = crate::config::LogConfig {
                level: "warn".into(),
                ..config.log.clone()
            };
            crate::telemetry::init_logging(&log);
            runtime()?.block_on(manage(config, command))
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Other(anyhow::anyhow!("cannot start the runtime: {e}")))
}

async fn manage(config: Config, command: Command) -> Result<ExitCode, CliError> {
    let backend = Backend::connect(&config).await?;
    let result = dispatch(&backend, command).await;
    backend.close().await;
    result
}

async fn dispatch(backend: &Backend, command: Command) -> Result<ExitCode, CliError> {
    match command {
        Command::Serve | Command::CheckConfig => unreachable!("handled before connecting"),
        Command::Import(args) => import::run(backend, args).await,
        Command::User(c) => directory::user(backend, c).await,
        Command::Contact(c) => directory::contact(backend, c).await,
        Command::Channel(c) => directory::channel(backend, c).await,
        Command::Relay(c) => directory::relay(backend, c).await,
        Command::Project(c) => message::project(backend, c).await,
        Command::Message(c) => message::message(backend, c).await,
        Command::Stats { json } => {
            let Response::Stats(stats) = backend.call(Request::Stats).await? else {
                return Err(unexpected());
            };
            output::stats(&stats, json);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The daemon answered with a response of the wrong kind: versions out of step.
fn unexpected() -> CliError {
    CliError::Other(anyhow::anyhow!("unexpected answer from the admin layer"))
}

/// Prints the text of a `Done` answer.
fn done(response: Response) -> Result<ExitCode, CliError> {
    match response {
        Response::Done(text) => {
            println!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(unexpected()),
    }
}
