//! Wiring: open the store, start the committer, the admin socket, the metrics endpoint
//! and the listeners; reload on SIGHUP; on SIGTERM stop accepting, drain and close.

mod backend;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::admin::{Admin, socket};
use crate::config::{Config, ListenAddr};
use crate::net::{ConnectionLimiter, Listener, TlsStore, UnixAccess};
use crate::sender_auth::Verifier;
use crate::smtp::{AuthLimiter, ListenerKind, Server, SessionConfig};
use crate::telemetry::{self, names};
use backend::DaemonBackend;

/// Admin frames carry at most one message, plus room for the request around it.
const ADMIN_FRAME_SLACK: usize = 1 << 20;

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    watch_file_size_limit()?;
    let admin = Admin::open(&config)
        .with_context(|| format!("cannot open the store at {}", config.store.path.display()))?;
    tracing::info!(path = %config.store.path.display(), "store open");

    if config.metrics.enabled {
        install_metrics(&config)?;
        tracing::info!(listen = %config.metrics.listen, "metrics endpoint listening");
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let socket_path = config.admin_socket();
    let listener = socket::bind(&socket_path)
        .await
        .with_context(|| format!("cannot bind the admin socket {}", socket_path.display()))?;
    tracing::info!(socket = %socket_path.display(), "admin socket listening");
    let max_frame = config.smtp.max_message_size.0 as usize + ADMIN_FRAME_SLACK;
    let admin_task = tokio::spawn(socket::serve(
        listener,
        admin.clone(),
        max_frame,
        stop_rx.clone(),
    ));

    let session = Arc::new(SessionConfig::new(&config.smtp, &config.policy));
    let tls = TlsStore::load(&config.tls, &config.store.path, &session.hostname)
        .context("cannot set up TLS")?;
    let verifier = config
        .smtp
        .verify_auth
        .then(|| Verifier::new(config.smtp.dns_timeout.duration()));
    let backend = Arc::new(DaemonBackend::new(
        admin.ingestor().clone(),
        verifier,
        session.hostname.clone(),
    ));
    let limiter = ConnectionLimiter::new(
        config.smtp.max_connections,
        config.smtp.max_connections_per_client,
    );
    let auth_limiter = AuthLimiter::new(
        config.smtp.max_auth_failures,
        config.smtp.auth_failure_window.duration(),
    );
    let lmtp_access = UnixAccess {
        mode: config.lmtp.socket_mode.0,
        group: match &config.lmtp.socket_group {
            Some(group) => Some(crate::config::group_id(group).map_err(anyhow::Error::msg)?),
            None => None,
        },
    };
    let mut servers = Vec::new();
    for (addrs, kind) in [
        (&config.smtp.listen, ListenerKind::Smtp),
        (&config.smtp.tls_listen, ListenerKind::Smtps),
        (&config.lmtp.listen, ListenerKind::Lmtp),
    ] {
        for addr in addrs {
            let access = match kind {
                ListenerKind::Lmtp => lmtp_access,
                ListenerKind::Smtp | ListenerKind::Smtps => UnixAccess::default(),
            };
            let listener = bind(addr, access).await?;
            let server = Server {
                kind,
                config: session.clone(),
                tls: Some(tls.clone()),
                limiter: limiter.clone(),
                auth_limiter: auth_limiter.clone(),
                backend: backend.clone(),
            };
            servers.push(tokio::spawn(server.serve(listener, stop_rx.clone())));
        }
    }

    notify_systemd("READY=1");
    tracing::info!("threadsd ready");
    wait_for_stop(&tls).await?;

    tracing::info!("stopping: no new sessions, open ones may finish");
    notify_systemd("STOPPING=1");
    let _ = stop_tx.send(true);
    for server in servers {
        let _ = server.await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), admin_task).await;
    admin.close().await;
    let _ = std::fs::remove_file(&socket_path);
    tracing::info!("store closed; threadsd stopped");
    Ok(())
}

async fn bind(addr: &ListenAddr, access: UnixAccess) -> anyhow::Result<Listener> {
    Listener::bind_with(addr, access)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

/// A write past the process's file size limit (`ulimit -f`, systemd's `LimitFSIZE=`)
/// raises SIGXFSZ, whose default action kills the process mid-write. Caught instead, the
/// write fails with EFBIG like any other I/O error: the commit fails, waiting clients get
/// 451, and what was acknowledged before stays on disk.
fn watch_file_size_limit() -> anyhow::Result<()> {
    let mut xfsz = signal(SignalKind::from_raw(libc::SIGXFSZ)).context("cannot watch SIGXFSZ")?;
    tokio::spawn(async move {
        while xfsz.recv().await.is_some() {
            tracing::error!(
                "a store write went over the process's file size limit (RLIMIT_FSIZE); \
                 mail is deferred until the limit is raised"
            );
        }
    });
    Ok(())
}

async fn wait_for_stop(tls: &TlsStore) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = hup.recv() => match tls.reload() {
                Ok(()) => tracing::info!("SIGHUP: tls certificates reloaded"),
                Err(e) => tracing::error!(error = %e, "SIGHUP: tls reload failed; keeping the old"),
            },
        }
    }
}

fn install_metrics(config: &Config) -> anyhow::Result<()> {
    const SECONDS: &[f64] = &[
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    const BATCH: &[f64] = &[
        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
    ];
    PrometheusBuilder::new()
        .with_http_listener(config.metrics.listen)
        .set_buckets_for_metric(Matcher::Full(names::COMMIT_SECONDS.into()), SECONDS)?
        .set_buckets_for_metric(Matcher::Full(names::SMTP_ACK_SECONDS.into()), SECONDS)?
        .set_buckets_for_metric(Matcher::Full(names::COMMIT_BATCH.into()), BATCH)?
        .install()
        .with_context(|| format!("cannot serve metrics on {}", config.metrics.listen))?;
    telemetry::describe_metrics();
    Ok(())
}

/// Tells systemd about a state change when it started us with `Type=notify`.
fn notify_systemd(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let socket = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot notify systemd");
            return;
        }
    };
    // An abstract socket name starts with '@' in the variable and a NUL on the wire.
    let result = if let Some(name) = path.to_str().and_then(|p| p.strip_prefix('@')) {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr))
    } else {
        socket.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}
