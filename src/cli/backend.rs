//! Where management requests go: the running daemon's admin socket if one answers,
//! otherwise the store opened in this process.

use std::sync::Arc;

use anyhow::Context;

use super::CliError;
use crate::admin::socket::AdminClient;
use crate::admin::{Admin, AdminError, Request, Response};
use crate::config::Config;
use crate::store::StoreError;

#[derive(Debug, Clone)]
pub enum Backend {
    Daemon(Arc<AdminClient>),
    Local(Admin),
}

impl Backend {
    pub async fn connect(config: &Config) -> Result<Backend, CliError> {
        let socket = config.admin_socket();
        let client = AdminClient::connect(&socket)
            .await
            .with_context(|| format!("cannot reach the daemon at {}", socket.display()))?;
        if let Some(client) = client {
            return Ok(Backend::Daemon(Arc::new(client)));
        }
        match Admin::open(config) {
            Ok(admin) => Ok(Backend::Local(admin)),
            Err(StoreError::Locked(path)) => Err(CliError::Unavailable(format!(
                "the store at {} is in use by another process, and no daemon answers on {}",
                path.display(),
                socket.display()
            ))),
            Err(e) => Err(CliError::Unavailable(format!(
                "cannot open the store at {}: {e}",
                config.store.path.display()
            ))),
        }
    }

    pub async fn call(&self, request: Request) -> Result<Response, AdminError> {
        self.call_with(request, Vec::new()).await
    }

    pub async fn call_with(&self, request: Request, raw: Vec<u8>) -> Result<Response, AdminError> {
        match self {
            Backend::Daemon(client) => client.call(request, raw).await,
            Backend::Local(admin) => admin.handle(request, raw).await,
        }
    }

    pub async fn close(self) {
        if let Backend::Local(admin) = self {
            admin.close().await;
        }
    }
}
