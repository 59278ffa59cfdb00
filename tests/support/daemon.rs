//! A real `threadsd serve` on fresh loopback ports with its data in a temporary directory,
//! and the CLI pointed at it.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use toml::{Table, Value};

use super::process::{accepts, free_port, open_tempdir, read_lossy, signal, tail, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_threadsd");

/// How long a starting daemon may take to open its store and bind its listeners.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a stopping daemon may take; above `smtp.shutdown_grace`'s default of 30 s.
const STOP_TIMEOUT: Duration = Duration::from_secs(45);

/// The ports the harness gave the daemon. A test that overrides a listener in its extra
/// TOML uses its own port instead.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub smtp: u16,
    /// SMTP with implicit TLS.
    pub smtps: u16,
    pub lmtp: u16,
    pub metrics: u16,
}

/// A `threadsd` with its own configuration and data directory. Drop kills it; a test that
/// panics prints the daemon's log. Set `THREADSD_TEST_KEEP=1` to keep the directory.
#[derive(Debug)]
pub struct Daemon {
    dir: tempfile::TempDir,
    config: PathBuf,
    log: PathBuf,
    data: PathBuf,
    admin_socket: PathBuf,
    ports: Ports,
    /// The first TCP SMTP listener of the final configuration: readiness waits for it.
    ready_port: Option<u16>,
    child: Option<Child>,
    starts: usize,
    /// `ulimit -S -f` for the next launches, in KiB.
    file_size_limit_kib: Option<u64>,
}

impl Daemon {
    /// Writes the configuration and starts the daemon; returns once it is ready.
    ///
    /// `extra_toml` is merged over the harness's configuration: its tables merge key by key,
    /// so `"[smtp]\nrequire_auth = true"` keeps the harness's listeners.
    pub fn start(extra_toml: &str) -> Daemon {
        let mut daemon = Daemon::configure(extra_toml);
        daemon.launch();
        daemon
    }

    /// Writes the configuration without starting anything, for the CLI on a store that no
    /// daemon holds (`import`, `check-config`). [`Daemon::launch`] starts it later.
    pub fn configure(extra_toml: &str) -> Daemon {
        let dir = open_tempdir("threadsd.");
        let ports = Ports {
            smtp: free_port(),
            smtps: free_port(),
            lmtp: free_port(),
            metrics: free_port(),
        };
        let mut config = base_config(dir.path(), ports);
        let extra: Table = extra_toml
            .parse()
            .unwrap_or_else(|e| panic!("the extra TOML does not parse: {e}\n{extra_toml}"));
        merge(&mut config, extra);

        let data = PathBuf::from(lookup_str(&config, "store", "path").expect("store.path"));
        let admin_socket = lookup_str(&config, "admin", "socket")
            .map(PathBuf::from)
            .unwrap_or_else(|| data.join("admin.sock"));
        let ready_port = first_tcp_port(&config);
        let path = dir.path().join("threadsd.toml");
        std::fs::write(&path, config.to_string()).expect("write threadsd.toml");

        Daemon {
            log: dir.path().join("threadsd.log"),
            config: path,
            data,
            admin_socket,
            ports,
            ready_port,
            child: None,
            starts: 0,
            file_size_limit_kib: None,
            dir,
        }
    }

    /// Starts `threadsd serve` and waits until it is ready: its SMTP port accepts and
    /// `threadsd stats --json` answers. Panics with the log if it is not within 30 s.
    pub fn launch(&mut self) {
        assert!(self.child.is_none(), "threadsd is already running");
        self.starts += 1;
        let mut log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the daemon log");
        writeln!(
            log,
            "--- harness: start {} of threadsd serve ---",
            self.starts
        )
        .expect("write the daemon log");
        let stdout = log.try_clone().expect("clone the daemon log handle");

        let mut command = match self.file_size_limit_kib {
            None => Command::new(BIN),
            Some(kib) => {
                // bash execs the daemon, so the child's pid stays the daemon's.
                let mut c = Command::new("bash");
                c.args([
                    "-c",
                    r#"ulimit -S -f "$1" && shift && exec "$@""#,
                    "threadsd",
                ])
                .arg(kib.to_string())
                .arg(BIN);
                c
            }
        };
        let child = command
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {BIN}: {e}"));
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child_exited() {
                self.child = None;
                panic!(
                    "threadsd exited before it was ready ({status}); log:\n{}",
                    self.log()
                );
            }
            // The CLI opens the store itself when no daemon answers, so it is asked only
            // once the daemon has shown it is past opening the store.
            let listening = match self.ready_port {
                Some(port) => accepts(port),
                None => self.admin_socket.exists(),
            };
            if listening && self.cli(&["stats", "--json"]).status.success() {
                return;
            }
            if Instant::now() >= deadline {
                self.kill9();
                panic!(
                    "threadsd not ready after {READY_TIMEOUT:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn child_exited(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child.try_wait().expect("poll the threadsd process")
    }

    /// Limits the size of any file the next launches may write (`ulimit -S -f`, in KiB), to
    /// make the store fail the way a full disk does; `None` lifts the limit.
    pub fn set_file_size_limit_kib(&mut self, kib: Option<u64>) {
        self.file_size_limit_kib = kib;
    }

    /// Lifts the file size limit of the running daemon (prlimit(1)), as freeing disk
    /// space would: the daemon is not restarted. Only the soft limit was lowered, so this
    /// needs no privilege beyond being the daemon's user.
    pub fn lift_file_size_limit(&self) {
        let pid = self.pid().expect("threadsd is not running");
        let prlimit = super::require("prlimit", "util-linux");
        let output = Command::new(prlimit)
            .args(["--pid", &pid.to_string(), "--fsize=unlimited:"])
            .output()
            .expect("run prlimit");
        assert!(
            output.status.success(),
            "prlimit failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// SIGTERM, then waits for the exit; panics if the daemon outlives the grace period.
    pub fn stop(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("threadsd is not running");
        signal(child.id(), "TERM");
        let mut status = None;
        wait_until(STOP_TIMEOUT, || {
            status = child.try_wait().expect("poll the threadsd process");
            status.is_some()
        });
        let Some(status) = status else {
            self.kill9();
            panic!(
                "threadsd did not stop within {STOP_TIMEOUT:?} of SIGTERM; log:\n{}",
                self.log()
            );
        };
        self.child = None;
        status
    }

    /// SIGKILL: a crash, as far as the store can tell.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // It may have exited already; either way it is gone after the wait.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the daemon if it runs and starts it again on the same data and ports.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.launch();
    }

    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.child_exited().is_none()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn ports(&self) -> Ports {
        self.ports
    }

    /// `127.0.0.1:port` of the plain SMTP listener, as swaks' `--server` takes it.
    pub fn smtp_addr(&self) -> String {
        format!("127.0.0.1:{}", self.ports.smtp)
    }

    pub fn lmtp_addr(&self) -> String {
        format!("127.0.0.1:{}", self.ports.lmtp)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    pub fn admin_socket(&self) -> &Path {
        &self.admin_socket
    }

    /// Everything the daemon wrote to stdout and stderr, over all its starts.
    pub fn log(&self) -> String {
        read_lossy(&self.log)
    }

    /// Runs the CLI with `--config` added (before a `--`, if there is one).
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_stdin(args, b"")
    }

    /// Runs the CLI with `input` on its standard input (`--password-stdin`, `import -`).
    pub fn cli_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let split = args.iter().position(|a| *a == "--").unwrap_or(args.len());
        let mut child = Command::new(BIN)
            .args(&args[..split])
            .arg("--config")
            .arg(&self.config)
            .args(&args[split..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {BIN}: {e}"));
        let mut stdin = child.stdin.take().expect("a piped stdin");
        // A CLI that exits without reading its input closes the pipe; its status tells.
        let _ = stdin.write_all(input);
        drop(stdin);
        child.wait_with_output().expect("wait for the threadsd CLI")
    }

    /// Runs the CLI, panics unless it succeeds, and returns its standard output.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let output = self.cli(args);
        self.expect_success(args, &output);
        String::from_utf8(output.stdout).expect("the CLI's output is UTF-8")
    }

    /// Runs the CLI, panics unless it succeeds, and parses its standard output as JSON.
    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        let stdout = self.cli_ok(args);
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("threadsd {args:?} printed no JSON ({e}):\n{stdout}"))
    }

    fn expect_success(&self, args: &[&str], output: &Output) {
        assert!(
            output.status.success(),
            "threadsd {args:?} failed ({}):\n{}{}\ndaemon log:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            tail(&self.log(), 40),
        );
    }

    /// The metrics endpoint's text, fetched over plain HTTP/1.0.
    pub fn metrics(&self) -> String {
        let addr = ([127, 0, 0, 1], self.ports.metrics).into();
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .expect("connect to the metrics endpoint");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set a read timeout");
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .expect("send the metrics request");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .expect("read the metrics response");
        let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
        assert!(
            head.starts_with("HTTP/1.") && head.contains(" 200 "),
            "metrics: {head}"
        );
        body.to_owned()
    }

    /// The daemon's peak resident set (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "--- threadsd log ({}) ---\n{}",
                self.log.display(),
                tail(&self.log(), 200)
            );
        }
        if std::env::var_os("THREADSD_TEST_KEEP").is_some() {
            self.dir.disable_cleanup(true);
            eprintln!("keeping {}", self.dir.path().display());
        }
    }
}

/// The harness's configuration: every listener on a fresh loopback port, data in `dir`.
fn base_config(dir: &Path, ports: Ports) -> Table {
    let path = |name: &str| Value::String(dir.join(name).display().to_string());
    let addr = |port: u16| Value::String(format!("127.0.0.1:{port}"));
    let table = |entries: Vec<(&str, Value)>| {
        Value::Table(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    };

    let mut config = Table::new();
    config.insert("store".into(), table(vec![("path", path("data"))]));
    config.insert("admin".into(), table(vec![("socket", path("admin.sock"))]));
    config.insert(
        "metrics".into(),
        table(vec![
            ("enabled", Value::Boolean(true)),
            ("listen", addr(ports.metrics)),
        ]),
    );
    config.insert(
        "smtp".into(),
        table(vec![
            ("listen", Value::Array(vec![addr(ports.smtp)])),
            ("tls_listen", Value::Array(vec![addr(ports.smtps)])),
            ("hostname", Value::String("threadsd.test".into())),
            // Tests run without DNS; a test of the verification turns it back on.
            ("verify_auth", Value::Boolean(false)),
        ]),
    );
    config.insert(
        "lmtp".into(),
        table(vec![("listen", Value::Array(vec![addr(ports.lmtp)]))]),
    );
    // TODO(imap): give `[imap] listen` a free port once the IMAP listener has a config
    // section, or parallel tests will fight over its default port.
    config
}

/// Merges `extra` over `base`: tables key by key, anything else replaced.
fn merge(base: &mut Table, extra: Table) {
    for (key, value) in extra {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(base)), Value::Table(extra)) => merge(base, extra),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn lookup_str<'a>(config: &'a Table, section: &str, key: &str) -> Option<&'a str> {
    config.get(section)?.get(key)?.as_str()
}

fn first_tcp_port(config: &Table) -> Option<u16> {
    let listen = config.get("smtp")?.get("listen")?.as_array()?;
    let addr = listen
        .iter()
        .filter_map(Value::as_str)
        .find(|a| !a.starts_with("unix:"))?;
    addr.rsplit_once(':')?.1.parse().ok()
}
