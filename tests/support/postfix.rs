//! A private Postfix instance that journals every message to a test's receiver with
//! `always_bcc`, the way an organisation points its mail server at threadsd.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::{
    alive, chown, free_port, open_tempdir, read_lossy, read_pid, reap, require, run,
    run_daemonizing, tail, wait_for_port, wait_until,
};

/// The journaling recipient Postfix adds to every message.
pub const JOURNAL_ADDRESS: &str = "archive@bcc.test";

/// Where Postfix delivers the journaling copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Journal {
    /// LMTP to 127.0.0.1:port.
    Lmtp(u16),
    /// SMTP to 127.0.0.1:port (no MX lookup).
    Smtp(u16),
}

impl Journal {
    fn transport(self) -> String {
        match self {
            Journal::Lmtp(port) => format!("lmtp:inet:127.0.0.1:{port}"),
            Journal::Smtp(port) => format!("smtp:[127.0.0.1]:{port}"),
        }
    }
}

/// A running private Postfix: its own config, queue and data directories and log file, an
/// smtpd on a free loopback port that relays for 127.0.0.0/8, the journaling copy routed to
/// the [`Journal`], and every other recipient discarded. Drop stops it.
#[derive(Debug)]
pub struct Postfix {
    dir: tempfile::TempDir,
    config: PathBuf,
    smtp_port: u16,
    maillog: PathBuf,
    /// Where postfix, postconf and postqueue are.
    sbin: PathBuf,
}

impl Postfix {
    pub fn start(journal: Journal) -> Postfix {
        Postfix::start_with(journal, &[])
    }

    /// Starts with extra `main.cf` parameters that override the harness's.
    pub fn start_with(journal: Journal, params: &[(&str, &str)]) -> Postfix {
        let postfix = require("postfix", "postfix");
        let sbin = postfix.parent().expect("a program's directory").to_owned();
        let dir = open_tempdir("postfix.");
        let config = dir.path().join("config");
        let smtp_port = free_port();
        let instance = Postfix {
            maillog: dir.path().join("maillog"),
            config,
            smtp_port,
            sbin,
            dir,
        };
        instance.write_config(journal, params);

        let mut start = Command::new(&postfix);
        start.arg("-c").arg(&instance.config).arg("start");
        run_daemonizing(&mut start, &instance.maillog);
        assert!(
            wait_for_port(smtp_port, Duration::from_secs(15)),
            "postfix smtpd did not listen on {smtp_port}; maillog:\n{}",
            instance.log(),
        );
        instance
    }

    fn write_config(&self, journal: Journal, params: &[(&str, &str)]) {
        let root = self.dir.path();
        let queue = root.join("queue");
        let data = root.join("data");
        for dir in [&self.config, &queue, &data] {
            std::fs::create_dir(dir).expect("create a postfix directory");
        }
        // Postfix refuses a data_directory that its mail_owner does not own.
        chown("postfix", &data);

        let transports = format!("inline:{{ bcc.test={}, *=discard: }}", journal.transport());
        let mut main_cf = vec![
            ("compatibility_level", "3.6".to_owned()),
            ("queue_directory", display(&queue)),
            ("data_directory", display(&data)),
            // Without /dev/log Postfix logs nowhere, and `postfix check` fails without a word,
            // unless the log file's directory is an allowed prefix.
            ("maillog_file", display(&self.maillog)),
            ("maillog_file_prefixes", display(root)),
            ("inet_interfaces", "127.0.0.1".into()),
            ("inet_protocols", "ipv4".into()),
            ("myhostname", "mx.corp.test".into()),
            ("mydomain", "corp.test".into()),
            ("myorigin", "corp.test".into()),
            ("mydestination", String::new()),
            ("mynetworks", "127.0.0.0/8".into()),
            ("alias_maps", String::new()),
            ("alias_database", String::new()),
            ("always_bcc", JOURNAL_ADDRESS.into()),
            ("transport_maps", transports),
            // A refused or unreachable journal target is retried within seconds, not minutes.
            ("queue_run_delay", "1s".into()),
            ("minimal_backoff_time", "1s".into()),
            ("maximal_backoff_time", "2s".into()),
            ("in_flow_delay", "0s".into()),
        ];
        for (key, value) in params {
            main_cf.retain(|(k, _)| k != key);
            main_cf.push((key, (*value).to_owned()));
        }
        let text: String = main_cf
            .iter()
            .map(|(k, v)| format!("{k} = {v}\n"))
            .collect();
        std::fs::write(self.config.join("main.cf"), text).expect("write main.cf");

        let master = [
            "/etc/postfix/master.cf",
            "/usr/share/postfix/master.cf.dist",
        ]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("postfix's master.cf (package postfix)");
        std::fs::copy(master, self.config.join("master.cf")).expect("copy master.cf");
        let service = format!(
            "127.0.0.1:{0}/inet=127.0.0.1:{0} inet n - n - - smtpd",
            self.smtp_port
        );
        self.postconf(&["-M#", "smtp/inet"]);
        self.postconf(&["-Me", &service]);
        // A chrooted service would need copies of /etc files inside the queue directory.
        self.postconf(&["-F", "*/*/chroot = n"]);
    }

    fn postconf(&self, args: &[&str]) {
        run(Command::new(self.sbin.join("postconf"))
            .arg("-c")
            .arg(&self.config)
            .args(args));
    }

    pub fn smtp_port(&self) -> u16 {
        self.smtp_port
    }

    /// `127.0.0.1:port` of the smtpd, as swaks' `--server` takes it.
    pub fn smtp_addr(&self) -> String {
        format!("127.0.0.1:{}", self.smtp_port)
    }

    pub fn config_dir(&self) -> &Path {
        &self.config
    }

    /// `postqueue -p`: the queue listing, "Mail queue is empty" when it is.
    pub fn queue(&self) -> String {
        let output = run(Command::new(self.sbin.join("postqueue"))
            .arg("-c")
            .arg(&self.config)
            .arg("-p"));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Asks for an immediate delivery attempt of everything deferred.
    pub fn flush(&self) {
        run(Command::new(self.sbin.join("postqueue"))
            .arg("-c")
            .arg(&self.config)
            .arg("-f"));
    }

    /// Waits until every accepted message has left the queue; panics with the queue and the
    /// end of the mail log otherwise.
    pub fn wait_queue_empty(&self, timeout: Duration) {
        let empty = wait_until(timeout, || self.queue().contains("Mail queue is empty"));
        if !empty {
            panic!(
                "postfix queue not empty after {timeout:?}:\n{}\nmaillog:\n{}",
                self.queue(),
                tail(&self.log(), 40),
            );
        }
    }

    /// The instance's mail log.
    pub fn log(&self) -> String {
        read_lossy(&self.maillog)
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- postfix maillog ({}) ---\n{}",
                self.maillog.display(),
                tail(&self.log(), 60)
            );
        }
        let master_pid = read_pid(&self.dir.path().join("queue/pid/master.pid"));
        let _ = Command::new(self.sbin.join("postfix"))
            .arg("-c")
            .arg(&self.config)
            .arg("stop")
            .output();
        // The master takes its children with it; if it lingers, it goes by force.
        if let Some(pid) = master_pid.filter(|&pid| alive(pid)) {
            reap(pid, Duration::from_secs(5));
        }
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}
