//! `threadsd project` and `threadsd message`: what is stored, and who may see it.

use std::io::Write;
use std::process::ExitCode;

use base64::Engine;
use clap::Subcommand;

use super::backend::Backend;
use super::{CliError, output, unexpected};
use crate::admin::{Request, Response};
use crate::model::{Login, ProjectPath};

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// List the projects with their message counts.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum MessageCommand {
    /// List stored messages.
    List {
        /// Only the messages of this project, in UID order.
        #[arg(long)]
        project: Option<ProjectPath>,
        /// Only what this user may see, their show-only-active preference applied.
        #[arg(long, value_name = "LOGIN")]
        visible_to: Option<Login>,
        #[arg(long)]
        json: bool,
    },
    /// Show one message's record, or its stored bytes with --raw.
    Show {
        id: u64,
        #[arg(long)]
        raw: bool,
        #[arg(long, conflicts_with = "raw")]
        json: bool,
    },
}

pub async fn project(backend: &Backend, command: ProjectCommand) -> Result<ExitCode, CliError> {
    let ProjectCommand::List { json } = command;
    let Response::Projects(projects) = backend.call(Request::ProjectList).await? else {
        return Err(unexpected());
    };
    output::projects(&projects, json);
    Ok(ExitCode::SUCCESS)
}

pub async fn message(backend: &Backend, command: MessageCommand) -> Result<ExitCode, CliError> {
    match command {
        MessageCommand::List {
            project,
            visible_to,
            json,
        } => {
            let request = Request::MessageList {
                project,
                visible_to,
            };
            let Response::Messages(messages) = backend.call(request).await? else {
                return Err(unexpected());
            };
            output::messages(&messages, json);
        }
        MessageCommand::Show { id, raw: true, .. } => {
            let Response::Raw(encoded) = backend.call(Request::MessageRaw { id }).await? else {
                return Err(unexpected());
            };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| CliError::Other(anyhow::anyhow!("bad message bytes: {e}")))?;
            std::io::stdout()
                .write_all(&bytes)
                .map_err(|e| CliError::Other(anyhow::anyhow!("cannot write: {e}")))?;
        }
        MessageCommand::Show { id, json, .. } => {
            let Response::Message(detail) = backend.call(Request::MessageShow { id }).await? else {
                return Err(unexpected());
            };
            output::message(&detail, json);
        }
    }
    Ok(ExitCode::SUCCESS)
}
