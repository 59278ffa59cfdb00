//! The tokio driver of SMTP and LMTP sessions: it accepts connections, owns the socket, TLS,
//! timeouts and shutdown, and carries out what each [`Session`] asks for. The protocol
//! itself lives in the session.
//!
//! While a delivery or an authentication is pending the connection reads nothing, so
//! pipelined input waits in the kernel rather than in memory.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument as _;

use crate::ingest::{Ack, IngestError, Submission};
use crate::model::MessageId;
use crate::model::Secret;
use crate::net::{Connection, ConnectionLimiter, Listener, TlsStore};
use crate::telemetry::{self, ListenerLabel, SmtpOutcome};

use super::auth_limit::AuthLimiter;
use super::delivery::{Delivery, outcome};
use super::session::{Action, PeerInfo, Protocol, Session, SessionConfig, TlsState};

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;
/// How long a refused client gets to take its 421.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(5);
/// After the grace period, how long closing sessions get to write their 421.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause after a failed accept (out of file descriptors, say) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What the daemon provides to the listeners.
pub trait Backend: Send + Sync + 'static {
    /// Hands a message to the ingest pipeline and waits until it is durable (or refused).
    fn submit(
        &self,
        submission: Submission,
    ) -> impl Future<Output = Result<Ack, IngestError>> + Send;

    /// Checks the credentials of an SMTP AUTH relay account.
    fn verify_relay(&self, name: &str, password: &Secret) -> impl Future<Output = bool> + Send;

    /// Called once the client was told a message is stored, so that sender checks
    /// (DKIM, SPF, DMARC) can run later; must return quickly.
    fn after_stored(&self, message: StoredMessage) {
        let _ = message;
    }
}

/// What sender checks need to know about a stored message besides its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub id: MessageId,
    pub peer_ip: Option<IpAddr>,
    pub helo: String,
    /// The reverse path; empty for `<>`.
    pub mail_from: String,
    pub protocol: Protocol,
}

/// The kind of a listening socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// SMTP, STARTTLS offered when TLS is configured.
    Smtp,
    /// SMTP with implicit TLS (RFC 8314).
    Smtps,
    /// LMTP over TCP or a Unix socket.
    Lmtp,
}

impl ListenerKind {
    pub fn label(self) -> ListenerLabel {
        match self {
            ListenerKind::Smtp => ListenerLabel::Smtp,
            ListenerKind::Smtps => ListenerLabel::Smtps,
            ListenerKind::Lmtp => ListenerLabel::Lmtp,
        }
    }

    pub fn protocol(self) -> Protocol {
        match self {
            ListenerKind::Smtp | ListenerKind::Smtps => Protocol::Smtp,
            ListenerKind::Lmtp => Protocol::Lmtp,
        }
    }
}

/// One listener's settings; [`Server::serve`] runs it.
pub struct Server<B> {
    pub kind: ListenerKind,
    pub config: Arc<SessionConfig>,
    /// None: no STARTTLS; an Smtps listener then refuses every connection.
    pub tls: Option<TlsStore>,
    /// Shared by every listener of the daemon.
    pub limiter: ConnectionLimiter,
    /// Failed AUTH attempts per client address; shared by every listener of the daemon.
    pub auth_limiter: AuthLimiter,
    pub backend: Arc<B>,
}

impl<B> std::fmt::Debug for Server<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// How far shutdown has gone, as the connections see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// No new connections; idle sessions close, busy ones finish their transaction.
    Draining,
    /// The grace period is over: every session closes.
    Closing,
}

impl<B: Backend> Server<B> {
    /// Accepts connections until `shutdown` turns true (or its sender goes away), then lets
    /// sessions finish within `shutdown_grace` and closes the rest with 421 4.3.2.
    pub async fn serve(self, listener: Listener, mut shutdown: watch::Receiver<bool>) {
        let label = self.kind.label();
        match listener.local_addr() {
            Ok(addr) => tracing::info!(listener = label.as_str(), addr = %addr, "listening"),
            Err(e) => tracing::info!(listener = label.as_str(), error = %e, "listening"),
        }
        if self.kind == ListenerKind::Smtps && self.tls.is_none() {
            tracing::warn!(
                listener = label.as_str(),
                "implicit tls without a tls configuration"
            );
        }
        let server = Arc::new(self);
        let (phase, phase_rx) = watch::channel(Phase::Running);
        let mut tasks = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(connection) => server.spawn(connection, &mut tasks, phase_rx.clone()),
                    Err(e) => {
                        tracing::warn!(listener = label.as_str(), error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
                () = stopped(&mut shutdown) => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }

        drop(listener);
        tracing::info!(
            listener = label.as_str(),
            sessions = tasks.len(),
            "stopped listening"
        );
        phase.send_replace(Phase::Draining);
        let grace = server.config.shutdown_grace;
        if tokio::time::timeout(grace, drain(&mut tasks))
            .await
            .is_err()
        {
            phase.send_replace(Phase::Closing);
            if tokio::time::timeout(CLOSE_TIMEOUT, drain(&mut tasks))
                .await
                .is_err()
            {
                tasks.abort_all();
            }
        }
    }

    fn spawn(
        self: &Arc<Self>,
        connection: Connection,
        tasks: &mut JoinSet<()>,
        phase: watch::Receiver<Phase>,
    ) {
        let label = self.kind.label();
        let (ip, peer) = match &connection {
            Connection::Tcp(_, addr) => (Some(addr.ip()), addr.to_string()),
            Connection::Unix(_) => (None, "unix".to_owned()),
        };
        let span = tracing::info_span!("session", peer.addr = %peer, listener = label.as_str());
        let permit = match self.limiter.try_acquire(ip) {
            Ok(permit) => permit,
            Err(e) => {
                telemetry::session_refused(label);
                span.in_scope(|| tracing::debug!(reason = %e, "connection refused"));
                tokio::spawn(refuse(connection, self.kind).instrument(span));
                return;
            }
        };

        let server = Arc::clone(self);
        let task = async move {
            let _permit = permit;
            match connection {
                Connection::Tcp(stream, _) => server.connection(stream, ip, peer, phase).await,
                Connection::Unix(stream) => server.connection(stream, ip, peer, phase).await,
            }
        };
        tasks.spawn(task.instrument(span));
    }

    async fn connection<S>(
        self: Arc<Self>,
        stream: S,
        ip: Option<IpAddr>,
        peer: String,
        phase: watch::Receiver<Phase>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let label = self.kind.label();
        telemetry::session_opened(label);
        let _closed = OnDrop(move || telemetry::session_closed(label));
        tracing::debug!("session opened");

        let tls = match (&self.tls, self.kind, ip) {
            (_, ListenerKind::Smtps, _) => TlsState::Active,
            (Some(_), _, Some(_)) => TlsState::Available,
            _ => TlsState::Unavailable,
        };
        let info = PeerInfo {
            ip,
            trusted_network: self.config.is_trusted(ip),
            tls,
        };
        let session = Session::new(Arc::clone(&self.config), self.kind.protocol(), info);
        let mut conn = Conn {
            stream: Stream::Plain(stream),
            session,
            server: self,
            peer,
            ip,
            out: Vec::new(),
            pending_ack: None,
            phase,
        };
        conn.run().await;
        tracing::debug!("session closed");
    }
}

/// Resolves once shutdown is asked for, or its sender is gone.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

async fn drain(tasks: &mut JoinSet<()>) {
    while tasks.join_next().await.is_some() {}
}

/// Tells a client over the connection limit to come back later (RFC 5321 §3.1: 421 at the
/// greeting). A client of an implicit-TLS listener expects a handshake before any SMTP
/// (RFC 8314 §3.3), so a 421 in the clear would be garbage to it: its connection is closed
/// unanswered, which it retries later all the same.
async fn refuse(connection: Connection, kind: ListenerKind) {
    const REFUSAL: &[u8] = b"421 4.7.0 too many connections, try again later\r\n";
    if kind == ListenerKind::Smtps {
        return;
    }
    let write = async {
        match connection {
            Connection::Tcp(mut s, _) => s.write_all(REFUSAL).await.and(s.shutdown().await),
            Connection::Unix(mut s) => s.write_all(REFUSAL).await.and(s.shutdown().await),
        }
    };
    // The client is gone or slow; either way it is dropped.
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, write).await;
}

/// Runs a closure when dropped, so a counter is put right however the task ends.
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

/// A reply to a delivery not yet written: its metric is recorded once it is.
struct PendingAck {
    started: Instant,
    outcome: SmtpOutcome,
    bytes: usize,
    stored: Option<StoredMessage>,
}

/// One connection: the socket (plain or TLS) and its session.
struct Conn<S, B> {
    stream: Stream<S>,
    session: Session,
    server: Arc<Server<B>>,
    peer: String,
    ip: Option<IpAddr>,
    /// Replies not yet written.
    out: Vec<u8>,
    pending_ack: Option<PendingAck>,
    phase: watch::Receiver<Phase>,
}

impl<S, B> Conn<S, B>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: Backend,
{
    async fn run(&mut self) {
        if self.server.kind == ListenerKind::Smtps
            && let Err(e) = self.start_tls().await
        {
            tracing::debug!(error = %e, "tls handshake failed");
            return;
        }
        self.out.extend_from_slice(&self.session.greeting());
        if self.flush().await.is_break() {
            return;
        }
        let mut buf = vec![0; READ_CHUNK];
        while !self.session.is_closed() {
            let actions = match self.next_input(&mut buf).await {
                Input::Bytes(n) => self.session.feed(&buf[..n]),
                Input::TimedOut => {
                    tracing::debug!("client timed out");
                    self.session.timed_out()
                }
                Input::Stop => self.session.shutdown(),
                Input::Again => continue,
                Input::Closed => break,
            };
            if self.act(actions).await.is_break() {
                break;
            }
        }
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.stream.shutdown()).await;
    }

    /// Waits for the client's next bytes, a timeout or the shutdown.
    async fn next_input(&mut self, buf: &mut [u8]) -> Input {
        let phase = *self.phase.borrow_and_update();
        if phase == Phase::Closing || (phase == Phase::Draining && self.session.is_idle()) {
            return Input::Stop;
        }
        let timeout = self.session.timeout();
        tokio::select! {
            read = tokio::time::timeout(timeout, self.stream.read(buf)) => match read {
                Err(_) => Input::TimedOut,
                Ok(Ok(0)) => {
                    tracing::debug!("client closed the connection");
                    Input::Closed
                }
                Ok(Ok(n)) => Input::Bytes(n),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "read failed");
                    Input::Closed
                }
            },
            changed = self.phase.changed() => match changed {
                Ok(()) => Input::Again,
                // The server is gone: nothing will tell this session to stop any more.
                Err(_) => Input::Stop,
            },
        }
    }

    /// Carries out the session's actions, and those its answers lead to.
    async fn act(&mut self, actions: Vec<Action>) -> ControlFlow<()> {
        let mut queue = VecDeque::from(actions);
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Reply(bytes) => self.out.extend_from_slice(&bytes),
                Action::Deliver(delivery) => {
                    self.flush().await?;
                    queue.extend(self.deliver(*delivery).await);
                }
                Action::Authenticate { identity, password } => {
                    self.flush().await?;
                    let label = self.server.kind.label();
                    let limiter = &self.server.auth_limiter;
                    if !limiter.allows(self.ip) {
                        telemetry::smtp_auth(label, "locked_out");
                        queue.extend(self.session.authentication_locked_out());
                        continue;
                    }
                    let ok = self.server.backend.verify_relay(&identity, &password).await;
                    limiter.record(self.ip, ok);
                    telemetry::smtp_auth(label, if ok { "success" } else { "failure" });
                    queue.extend(self.session.authenticated(ok));
                }
                Action::StartTls => {
                    self.flush().await?;
                    if let Err(e) = self.start_tls().await {
                        tracing::debug!(error = %e, "tls handshake failed");
                        return ControlFlow::Break(());
                    }
                    queue.extend(self.session.tls_started());
                }
                Action::Discarded { bytes } => {
                    tracing::debug!(bytes, "message over the size limit refused");
                    let label = self.server.kind.label();
                    telemetry::smtp_message(label, SmtpOutcome::Rejected, bytes, None);
                }
                Action::Close => {
                    self.flush().await?;
                    return ControlFlow::Break(());
                }
            }
        }
        self.flush().await
    }

    async fn deliver(&mut self, delivery: Delivery) -> Vec<Action> {
        let started = Instant::now();
        let bytes = delivery.data.len();
        let helo = delivery.helo.clone();
        let mail_from = delivery.envelope.mail_from.clone();
        let submission = delivery.into_submission(&self.peer);
        let result = self.server.backend.submit(submission).await;

        let stored = match &result {
            Ok(Ack::Stored { id, duplicate }) => {
                tracing::debug!(message.id = %id, bytes, duplicate, "message stored");
                let protocol = self.session.protocol();
                Some(StoredMessage {
                    id: *id,
                    peer_ip: self.ip,
                    helo,
                    mail_from,
                    protocol,
                })
            }
            Ok(Ack::Excluded) => {
                tracing::debug!(bytes, "message excluded");
                None
            }
            Err(IngestError::Unavailable(e)) => {
                tracing::warn!(error = %e, "store unavailable, client told to retry");
                None
            }
            Err(IngestError::Refused(e)) => {
                tracing::debug!(error = %e, "message refused");
                None
            }
        };
        let outcome = outcome(&result);
        self.pending_ack = Some(PendingAck {
            started,
            outcome,
            bytes,
            stored,
        });
        self.session.delivered(result)
    }

    async fn start_tls(&mut self) -> io::Result<()> {
        let Some(tls) = &self.server.tls else {
            return Err(io::Error::other("no tls configuration"));
        };
        let acceptor = tls.acceptor();
        let Stream::Plain(plain) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(io::Error::other("tls already active"));
        };
        let timeout = self.server.config.command_timeout;
        let handshake = tokio::time::timeout(timeout, acceptor.accept(plain)).await;
        let stream = handshake.map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        self.stream = Stream::Tls(Box::new(stream));
        tracing::debug!("tls started");
        Ok(())
    }

    /// Writes the pending replies; a client that takes none for a command timeout is gone.
    async fn flush(&mut self) -> ControlFlow<()> {
        if self.out.is_empty() {
            return ControlFlow::Continue(());
        }
        let timeout = self.server.config.command_timeout;
        let write = async {
            self.stream.write_all(&self.out).await?;
            self.stream.flush().await
        };
        let written = tokio::time::timeout(timeout, write).await;
        self.out.clear();
        if let Some(ack) = self.pending_ack.take() {
            let label = self.server.kind.label();
            telemetry::smtp_message(label, ack.outcome, ack.bytes, Some(ack.started.elapsed()));
            if let Some(stored) = ack.stored {
                self.server.backend.after_stored(stored);
            }
        }
        match written {
            Ok(Ok(())) => ControlFlow::Continue(()),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "write failed");
                ControlFlow::Break(())
            }
            Err(_) => {
                tracing::debug!("client took no reply for the command timeout");
                ControlFlow::Break(())
            }
        }
    }
}

/// What waiting for input gave.
enum Input {
    Bytes(usize),
    TimedOut,
    /// Shutdown: close the session with 421.
    Stop,
    /// Something changed; look again.
    Again,
    Closed,
}

/// The connection's byte stream, before or after the TLS handshake.
enum Stream<S> {
    Plain(S),
    Tls(Box<tokio_rustls::server::TlsStream<S>>),
    /// Only while a handshake is in progress, or after it failed.
    Gone,
}

fn gone() -> io::Error {
    io::Error::from(io::ErrorKind::NotConnected)
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Gone => Poll::Ready(Err(gone())),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
            Stream::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncBufReadExt as _, BufReader};
    use tokio::net::{TcpStream, UnixStream};
    use tokio::task::JoinHandle;

    use super::*;
    use crate::config::{ListenAddr, Network, RecipientPattern, TlsConfig};
    use crate::model::{ProjectPath, SourceKind};
    use crate::net::test_client_config;

    /// Records what the listener hands over and stores everything.
    #[derive(Default)]
    struct Recorder {
        submissions: Mutex<Vec<Submission>>,
        stored: Mutex<Vec<StoredMessage>>,
    }

    impl Backend for Recorder {
        fn submit(
            &self,
            submission: Submission,
        ) -> impl Future<Output = Result<Ack, IngestError>> + Send {
            let mut submissions = self.submissions.lock().unwrap();
            submissions.push(submission);
            let id = MessageId(submissions.len() as u64);
            async move {
                Ok(Ack::Stored {
                    id,
                    duplicate: false,
                })
            }
        }

        fn verify_relay(&self, name: &str, password: &Secret) -> impl Future<Output = bool> + Send {
            let ok = name == "relay" && password.expose() == "secret";
            async move { ok }
        }

        fn after_stored(&self, message: StoredMessage) {
            self.stored.lock().unwrap().push(message);
        }
    }

    fn config(allow_loopback: bool) -> SessionConfig {
        let networks = if allow_loopback {
            vec![Network("127.0.0.0/8".parse().unwrap())]
        } else {
            Vec::new()
        };
        SessionConfig {
            hostname: "mx.test".into(),
            accept_recipients: vec![RecipientPattern::Any],
            allow_networks: networks,
            require_auth: false,
            auth_without_tls: false,
            max_message_size: 1 << 20,
            max_recipients: 10,
            max_errors: 10,
            default_project: ProjectPath::parse("Inbox").unwrap(),
            command_timeout: Duration::from_secs(10),
            data_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
        }
    }

    struct Running {
        addr: ListenAddr,
        backend: Arc<Recorder>,
        stop: watch::Sender<bool>,
        task: JoinHandle<()>,
        tls: TlsStore,
        _dir: tempfile::TempDir,
    }

    async fn start(
        kind: ListenerKind,
        config: SessionConfig,
        limiter: ConnectionLimiter,
    ) -> Running {
        start_at(
            kind,
            config,
            limiter,
            ListenAddr::Tcp("127.0.0.1:0".parse().unwrap()),
        )
        .await
    }

    async fn start_at(
        kind: ListenerKind,
        config: SessionConfig,
        limiter: ConnectionLimiter,
        addr: ListenAddr,
    ) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let tls = TlsStore::load(&TlsConfig::default(), dir.path(), "localhost").unwrap();
        let listener = Listener::bind(&addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let backend = Arc::new(Recorder::default());
        let server = Server {
            kind,
            config: Arc::new(config),
            tls: Some(tls.clone()),
            limiter,
            auth_limiter: AuthLimiter::new(3, Duration::from_secs(60)),
            backend: Arc::clone(&backend),
        };
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(server.serve(listener, stopped));
        Running {
            addr,
            backend,
            stop,
            task,
            tls,
            _dir: dir,
        }
    }

    fn limiter() -> ConnectionLimiter {
        ConnectionLimiter::new(100, 100)
    }

    /// A test client speaking over any stream.
    struct Client<S> {
        io: BufReader<S>,
    }

    impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
        fn new(stream: S) -> Client<S> {
            Client {
                io: BufReader::new(stream),
            }
        }

        /// One whole reply, every line of it.
        async fn reply(&mut self) -> String {
            let mut reply = String::new();
            loop {
                let mut line = String::new();
                if self.io.read_line(&mut line).await.unwrap() == 0 {
                    return reply;
                }
                reply.push_str(&line);
                if line.as_bytes().get(3) != Some(&b'-') {
                    return reply;
                }
            }
        }

        async fn send(&mut self, text: &str) {
            self.io.get_mut().write_all(text.as_bytes()).await.unwrap();
        }

        async fn command(&mut self, text: &str) -> String {
            self.send(text).await;
            self.reply().await
        }

        async fn closed(&mut self) -> bool {
            let mut rest = Vec::new();
            self.io
                .read_to_end(&mut rest)
                .await
                .is_ok_and(|_| rest.is_empty())
        }
    }

    async fn connect(addr: &ListenAddr) -> Client<TcpStream> {
        let ListenAddr::Tcp(addr) = addr else {
            panic!("a tcp listener")
        };
        Client::new(TcpStream::connect(addr).await.unwrap())
    }

    async fn handshake(
        stream: TcpStream,
        tls: &TlsStore,
    ) -> Client<tokio_rustls::client::TlsStream<TcpStream>> {
        let connector =
            tokio_rustls::TlsConnector::from(test_client_config(&tls.certificate_path()));
        let name = ServerName::try_from("localhost").unwrap();
        Client::new(connector.connect(name, stream).await.unwrap())
    }

    #[tokio::test]
    async fn plain_pipelined_session() {
        let running = start(ListenerKind::Smtp, config(true), limiter()).await;
        let mut c = connect(&running.addr).await;
        assert_eq!(c.reply().await, "220 mx.test ESMTP threadsd ready\r\n");
        let ehlo = c.command("EHLO client.test\r\n").await;
        assert!(ehlo.contains("250-STARTTLS\r\n"), "{ehlo}");
        assert!(!ehlo.contains("AUTH"), "{ehlo}");

        c.send("MAIL FROM:<a@x.test>\r\nRCPT TO:<t+P@a.test>\r\nRCPT TO:<u@a.test>\r\nDATA\r\n")
            .await;
        assert_eq!(c.reply().await, "250 2.1.0 sender OK\r\n");
        assert_eq!(c.reply().await, "250 2.1.5 recipient OK\r\n");
        assert_eq!(c.reply().await, "250 2.1.5 recipient OK\r\n");
        assert!(c.reply().await.starts_with("354 "));
        assert_eq!(
            c.command("Subject: x\r\n\r\nbody\r\n.\r\n").await,
            "250 2.0.0 stored as 1\r\n"
        );
        assert_eq!(c.command("QUIT\r\n").await, "221 2.0.0 bye\r\n");
        assert!(c.closed().await);

        let submissions = running.backend.submissions.lock().unwrap();
        let [submission] = &submissions[..] else {
            panic!("one submission")
        };
        assert_eq!(submission.raw, b"Subject: x\r\n\r\nbody\r\n");
        assert_eq!(submission.projects.len(), 2);
        let SourceKind::Smtp { peer, helo, auth } = &submission.source.kind else {
            panic!("{:?}", submission.source.kind)
        };
        assert!(peer.starts_with("127.0.0.1:"), "{peer}");
        assert_eq!((helo.as_str(), auth), ("client.test", &None));
        let stored = running.backend.stored.lock().unwrap();
        assert_eq!(stored[0].id, MessageId(1));
        assert_eq!(stored[0].peer_ip, Some("127.0.0.1".parse().unwrap()));
    }

    #[tokio::test]
    async fn starttls_then_auth() {
        let running = start(ListenerKind::Smtp, config(false), limiter()).await;
        let mut c = connect(&running.addr).await;
        c.reply().await;
        c.command("EHLO client.test\r\n").await;
        assert!(
            c.command("MAIL FROM:<a@x.test>\r\n")
                .await
                .starts_with("530 5.7.0")
        );
        // Pipelined after STARTTLS: must be dropped, not run after the handshake.
        let ready = c.command("STARTTLS\r\nMAIL FROM:<evil@x.test>\r\n").await;
        assert_eq!(ready, "220 2.0.0 ready to start TLS\r\n");

        let mut c = handshake(c.io.into_inner(), &running.tls).await;
        let ehlo = c.command("EHLO client.test\r\n").await;
        assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
        assert!(ehlo.contains("250-AUTH PLAIN LOGIN\r\n"), "{ehlo}");
        assert!(
            c.command("AUTH PLAIN AHJlbGF5AHdyb25n\r\n")
                .await
                .starts_with("535 5.7.8")
        );
        assert!(
            c.command("AUTH PLAIN AHJlbGF5AHNlY3JldA==\r\n")
                .await
                .starts_with("235 2.7.0")
        );
        c.send("MAIL FROM:<a@x.test>\r\nRCPT TO:<t@a.test>\r\nDATA\r\n")
            .await;
        for _ in 0..3 {
            c.reply().await;
        }
        assert!(c.command("x\r\n.\r\n").await.starts_with("250 2.0.0"));
        c.command("QUIT\r\n").await;

        let submissions = running.backend.submissions.lock().unwrap();
        let [submission] = &submissions[..] else {
            panic!("one submission")
        };
        let SourceKind::Smtp { auth, .. } = &submission.source.kind else {
            panic!("smtp")
        };
        assert_eq!(auth.as_deref(), Some("relay"));
        assert_eq!(
            submission.source.envelope.as_ref().unwrap().mail_from,
            "a@x.test"
        );
    }

    #[tokio::test]
    async fn auth_failures_lock_the_address_out_across_connections() {
        let mut config = config(false);
        config.auth_without_tls = true;
        let running = start(ListenerKind::Smtp, config, limiter()).await;
        // The test server allows three failures a minute.
        for _ in 0..3 {
            let mut c = connect(&running.addr).await;
            c.reply().await;
            c.command("EHLO client.test\r\n").await;
            let reply = c.command("AUTH PLAIN AHJlbGF5AHdyb25n\r\n").await;
            assert!(reply.starts_with("535 5.7.8"), "{reply}");
        }
        let mut c = connect(&running.addr).await;
        c.reply().await;
        c.command("EHLO client.test\r\n").await;
        // Locked out: even the right password is not checked.
        let reply = c.command("AUTH PLAIN AHJlbGF5AHNlY3JldA==\r\n").await;
        assert!(reply.starts_with("454 4.7.0"), "{reply}");
        // The session goes on.
        assert!(c.command("NOOP\r\n").await.starts_with("250"));
    }

    #[tokio::test]
    async fn implicit_tls() {
        let running = start(ListenerKind::Smtps, config(true), limiter()).await;
        let ListenAddr::Tcp(addr) = &running.addr else {
            panic!("tcp")
        };
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut c = handshake(stream, &running.tls).await;
        assert_eq!(c.reply().await, "220 mx.test ESMTP threadsd ready\r\n");
        let ehlo = c.command("EHLO c\r\n").await;
        assert!(
            !ehlo.contains("STARTTLS") && ehlo.contains("AUTH"),
            "{ehlo}"
        );
    }

    #[tokio::test]
    async fn lmtp_over_a_unix_socket_is_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lmtp.sock");
        let addr = ListenAddr::Unix(path.clone());
        let running = start_at(ListenerKind::Lmtp, config(false), limiter(), addr).await;
        let mut c = Client::new(UnixStream::connect(&path).await.unwrap());
        assert_eq!(c.reply().await, "220 mx.test LMTP threadsd ready\r\n");
        let lhlo = c.command("LHLO c\r\n").await;
        assert!(!lhlo.contains("STARTTLS"), "{lhlo}");
        c.send("MAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nBDAT 1 LAST\r\nx")
            .await;
        for _ in 0..3 {
            assert!(c.reply().await.starts_with("250 2.1"));
        }
        assert_eq!(c.reply().await, "250 2.0.0 <a@x.test> stored as 1\r\n");
        assert_eq!(c.reply().await, "250 2.0.0 <b@x.test> stored as 1\r\n");
        let submissions = running.backend.submissions.lock().unwrap();
        assert!(matches!(
            submissions[0].source.kind,
            SourceKind::Lmtp { .. }
        ));
    }

    #[tokio::test]
    async fn connections_over_the_limit_are_refused() {
        let running = start(
            ListenerKind::Smtp,
            config(true),
            ConnectionLimiter::new(10, 1),
        )
        .await;
        let mut first = connect(&running.addr).await;
        first.reply().await;
        let mut second = connect(&running.addr).await;
        assert!(second.reply().await.starts_with("421 4.7.0"));
        assert!(second.closed().await);
        assert!(first.command("NOOP\r\n").await.starts_with("250"));
    }

    #[tokio::test]
    async fn implicit_tls_connections_over_the_limit_get_no_plaintext() {
        let running = start(
            ListenerKind::Smtps,
            config(true),
            ConnectionLimiter::new(10, 1),
        )
        .await;
        let ListenAddr::Tcp(addr) = &running.addr else {
            panic!("tcp")
        };
        let mut first = handshake(TcpStream::connect(addr).await.unwrap(), &running.tls).await;
        assert!(first.reply().await.starts_with("220 "));
        let mut second = Client::new(TcpStream::connect(addr).await.unwrap());
        assert!(second.closed().await);
    }

    #[tokio::test]
    async fn silent_clients_time_out() {
        let config = SessionConfig {
            command_timeout: Duration::from_millis(200),
            ..config(true)
        };
        let running = start(ListenerKind::Smtp, config, limiter()).await;
        let mut c = connect(&running.addr).await;
        c.reply().await;
        assert_eq!(c.reply().await, "421 4.4.2 timeout, closing connection\r\n");
        assert!(c.closed().await);
    }

    #[tokio::test]
    async fn shutdown_lets_a_transaction_finish() {
        let running = start(ListenerKind::Smtp, config(true), limiter()).await;
        let mut idle = connect(&running.addr).await;
        idle.reply().await;
        let mut busy = connect(&running.addr).await;
        busy.reply().await;
        busy.command("EHLO c\r\n").await;
        busy.command("MAIL FROM:<a@x.test>\r\n").await;

        running.stop.send_replace(true);
        assert!(idle.reply().await.starts_with("421 4.3.2"));
        busy.command("RCPT TO:<t@a.test>\r\n").await;
        assert!(busy.command("DATA\r\n").await.starts_with("354"));
        assert!(
            busy.command("x\r\n.\r\n")
                .await
                .starts_with("250 2.0.0 stored")
        );
        assert!(busy.reply().await.starts_with("421 4.3.2"));
        tokio::time::timeout(Duration::from_secs(5), running.task)
            .await
            .unwrap()
            .unwrap();
        // The listening socket is closed.
        let ListenAddr::Tcp(addr) = running.addr else {
            panic!("a tcp listener")
        };
        assert!(TcpStream::connect(addr).await.is_err());
    }
}
