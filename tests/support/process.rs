//! Small process and network helpers shared by the peers: finding programs, free ports,
//! polling, and temporary directories that the peers' unprivileged users can enter.

use std::collections::HashSet;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Directories searched besides `PATH`: the peers' daemons live in sbin, which a non-login
/// root shell may not have on its path.
const EXTRA_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/lib/dovecot"];

/// Finds `program` on `PATH` or in sbin, or panics naming the Debian `package` to install.
pub fn require(program: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(EXTRA_DIRS.iter().map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(program);
        let executable = candidate
            .metadata()
            .is_ok_and(|m| m.permissions().mode() & 0o111 != 0);
        if executable {
            return candidate;
        }
    }
    panic!("`{program}` not found: run tests/peers/install.sh or apt-get install {package}");
}

/// A loopback port that was free a moment ago. Ports handed out once are never handed out
/// again by this process, so tests running in parallel threads cannot collide with each
/// other; another process may still take the port before it is bound.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener
            .local_addr()
            .expect("local address of a bound socket")
            .port();
        if given.insert(port) {
            return port;
        }
    }
}

/// Polls `done` every 50 ms until it holds or `timeout` passes; true if it held.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    wait_until(timeout, || accepts(port))
}

pub(crate) fn accepts(port: u16) -> bool {
    let addr = ([127, 0, 0, 1], port).into();
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Runs swaks with `args` and returns what it did; the caller judges the outcome.
pub fn swaks(args: &[&str]) -> Output {
    let swaks = require("swaks", "swaks");
    Command::new(swaks)
        .args(["--timeout", "30"])
        .args(args)
        .output()
        .expect("run swaks")
}

/// Runs a command to completion and panics with its output when it fails.
pub(crate) fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    output
}

/// Runs a command that daemonizes, such as `postfix start`, and panics with its output and
/// `log` (the daemon's own log file) when it fails. Its output goes to a file: the daemon
/// it leaves behind inherits the descriptors, so a pipe would never reach end of file.
pub(crate) fn run_daemonizing(command: &mut Command, log: &Path) {
    let out = tempfile::tempfile().expect("create a file for a command's output");
    let status = command
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().expect("clone a file handle"))
        .stderr(out.try_clone().expect("clone a file handle"))
        .status()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    if status.success() {
        return;
    }
    let mut out = out;
    let mut text = String::new();
    let _ = std::io::Seek::rewind(&mut out);
    let _ = std::io::Read::read_to_string(&mut out, &mut text);
    panic!(
        "{command:?} failed ({status}):\n{text}\nlog:\n{}",
        read_lossy(log)
    );
}

/// A temporary directory that other users can traverse. The peers drop privileges (Postfix
/// to `postfix`, smtp-sink and Dovecot's mail processes to `nobody`), and tempfile creates
/// directories with mode 0700.
pub(crate) fn open_tempdir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create a tempdir");
    set_mode(dir.path(), 0o755);
    dir
}

pub(crate) fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// Hands `path` to a system user (`chown` keeps the harness free of unsafe libc calls).
pub(crate) fn chown(owner: &str, path: &Path) {
    run(Command::new("chown").arg(owner).arg(path));
}

/// The contents of a file, or a note that it could not be read, for failure messages.
pub(crate) fn read_lossy(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// The last `lines` lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Whether process `pid` still exists (and is not a zombie).
pub(crate) fn alive(pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    !status
        .lines()
        .any(|l| l.starts_with("State:") && l.contains("zombie"))
}

/// Sends `signal` (a name such as `TERM`) to `pid` with the `kill` program.
pub(crate) fn signal(pid: u32, signal: &str) {
    // The process may have gone already; that is what the caller wanted.
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .output();
}

/// Reads a pid file written by a daemon.
pub(crate) fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// SIGKILLs `pid` if it outlives `grace`: the clean-up after a peer's own stop command.
pub(crate) fn reap(pid: u32, grace: Duration) {
    if !wait_until(grace, || !alive(pid)) {
        signal(pid, "KILL");
    }
}
