//! Postfix's `smtp-sink` as a receiver that keeps what it is sent: each transaction is dumped
//! to a file, so a test can count and read what a peer delivered.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::process::{
    free_port, open_tempdir, read_lossy, require, set_mode, wait_for_port, wait_until,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkProtocol {
    Smtp,
    Lmtp,
}

/// A running `smtp-sink` on a free loopback port. Drop stops it.
#[derive(Debug)]
pub struct SmtpSink {
    dir: tempfile::TempDir,
    dumps: PathBuf,
    port: u16,
    child: Child,
}

impl SmtpSink {
    pub fn start(protocol: SinkProtocol) -> SmtpSink {
        SmtpSink::start_on(protocol, free_port())
    }

    /// Starts on a given port: a receiver that comes up after a sender began retrying.
    pub fn start_on(protocol: SinkProtocol, port: u16) -> SmtpSink {
        let program = require("smtp-sink", "postfix");
        let dir = open_tempdir("smtp-sink.");
        let dumps = dir.path().join("dumps");
        std::fs::create_dir(&dumps).expect("create the dump directory");
        // smtp-sink writes as `nobody`.
        set_mode(&dumps, 0o777);

        let mut command = Command::new(program);
        // `-u` is required when started as root; `-d` dumps each transaction to the
        // template plus a random suffix.
        command
            .args(["-u", "nobody", "-d"])
            .arg(dumps.join("message."));
        if protocol == SinkProtocol::Lmtp {
            command.arg("-L");
        }
        command.arg(format!("127.0.0.1:{port}")).arg("1000");
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn smtp-sink");

        let sink = SmtpSink {
            dir,
            dumps,
            port,
            child,
        };
        assert!(
            wait_for_port(port, Duration::from_secs(10)),
            "smtp-sink did not listen"
        );
        sink
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The transactions received so far: smtp-sink's `X-…-Args` lines, then the message.
    pub fn messages(&self) -> Vec<String> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&self.dumps)
            .expect("read the dump directory")
            .map(|entry| entry.expect("a dump directory entry").path())
            .collect();
        paths.sort();
        paths.iter().map(|p| read_lossy(p)).collect()
    }

    pub fn count(&self) -> usize {
        std::fs::read_dir(&self.dumps)
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Waits until at least `n` transactions arrived and returns them all.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<String> {
        let arrived = wait_until(timeout, || self.count() >= n);
        assert!(
            arrived,
            "smtp-sink received {} of {n} messages",
            self.count()
        );
        // A dump file may still be being written when it appears.
        std::thread::sleep(Duration::from_millis(100));
        self.messages()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
