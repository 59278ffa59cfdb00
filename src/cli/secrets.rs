//! Reading a password from standard input or a terminal prompt, and hashing it before
//! it goes anywhere.

use std::io::{BufRead, IsTerminal};

use super::CliError;
use crate::admin::password;
use crate::model::Secret;

/// How the password is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordSource {
    /// The first line of standard input.
    Stdin,
    /// Asked twice on the terminal.
    Prompt,
}

pub fn read(source: PasswordSource, what: &str) -> Result<Secret, CliError> {
    let password = match source {
        PasswordSource::Stdin => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| CliError::Usage(format!("cannot read the password: {e}")))?;
            Secret::new(line.trim_end_matches(['\r', '\n']))
        }
        PasswordSource::Prompt => {
            if !std::io::stdin().is_terminal() {
                let msg = "no terminal to ask for a password: use --password-stdin";
                return Err(CliError::Usage(msg.into()));
            }
            let first = prompt(&format!("password for {what}: "))?;
            let again = prompt("again: ")?;
            if first != again {
                return Err(CliError::Usage("the passwords differ".into()));
            }
            first
        }
    };
    if password.is_empty() {
        return Err(CliError::Usage("empty password".into()));
    }
    Ok(password)
}

fn prompt(text: &str) -> Result<Secret, CliError> {
    rpassword::prompt_password(text)
        .map(Secret::new)
        .map_err(|e| CliError::Usage(format!("cannot read the password: {e}")))
}

/// Hashes on a blocking thread: argon2id takes a noticeable moment by design.
pub async fn hash(password: Secret) -> Result<String, CliError> {
    tokio::task::spawn_blocking(move || password::hash(&password))
        .await
        .map_err(|e| CliError::Other(anyhow::anyhow!("hashing task failed: {e}")))?
        .map_err(|e| CliError::Usage(e.to_string()))
}
