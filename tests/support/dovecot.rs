//! A private Dovecot: IMAP and LMTP on free loopback ports, passwd-file users with plain
//! passwords, Maildirs in a temporary directory. The remote mailbox for the puller, the
//! durable-store peer for LMTP.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::{
    alive, chown, free_port, open_tempdir, read_lossy, read_pid, reap, require, run_daemonizing,
    tail, wait_for_port,
};

/// The system user and group that own the Maildirs; Dovecot refuses to deliver as root.
const MAIL_USER: &str = "nobody";
const MAIL_GROUP: &str = "nogroup";

/// A running private Dovecot. Drop stops it.
#[derive(Debug)]
pub struct Dovecot {
    dir: tempfile::TempDir,
    config: PathBuf,
    users: PathBuf,
    mail: PathBuf,
    log: PathBuf,
    imap_port: u16,
    lmtp_port: u16,
    doveadm: PathBuf,
}

impl Dovecot {
    pub fn start() -> Dovecot {
        Dovecot::start_with("")
    }

    /// Starts with `extra` appended to the generated dovecot.conf, where a later top-level
    /// setting overrides an earlier one (for example `imap_capability = IMAP4rev1 IDLE`).
    pub fn start_with(extra: &str) -> Dovecot {
        let dovecot = require("dovecot", "dovecot-core");
        let doveadm = require("doveadm", "dovecot-core");
        require("imap", "dovecot-imapd");
        require("lmtp", "dovecot-lmtpd");

        let dir = open_tempdir("dovecot.");
        let root = dir.path();
        let peer = Dovecot {
            config: root.join("dovecot.conf"),
            users: root.join("users"),
            mail: root.join("mail"),
            log: root.join("dovecot.log"),
            imap_port: free_port(),
            lmtp_port: free_port(),
            doveadm,
            dir,
        };
        for sub in ["run", "state"] {
            std::fs::create_dir(peer.dir.path().join(sub)).expect("create a dovecot directory");
        }
        std::fs::create_dir(&peer.mail).expect("create the mail directory");
        chown(&format!("{MAIL_USER}:{MAIL_GROUP}"), &peer.mail);
        std::fs::write(&peer.users, "").expect("create the passwd-file");
        std::fs::write(&peer.config, peer.config_text() + extra).expect("write dovecot.conf");

        run_daemonizing(Command::new(dovecot).arg("-c").arg(&peer.config), &peer.log);
        for port in [peer.imap_port, peer.lmtp_port] {
            let listening = wait_for_port(port, Duration::from_secs(15));
            assert!(
                listening,
                "dovecot did not listen on {port}; log:\n{}",
                peer.log()
            );
        }
        peer
    }

    fn config_text(&self) -> String {
        let root = self.dir.path().display();
        let users = self.users.display();
        let mail = self.mail.display();
        let (imap, lmtp) = (self.imap_port, self.lmtp_port);
        // `allow_all_users`: LMTP otherwise refuses recipients missing from the passdb, and
        // the benchmark's load generator sends to made-up ones.
        format!(
            r#"base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{mail}/%u/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {users}
}}
userdb {{
  driver = static
  args = uid={MAIL_USER} gid={MAIL_GROUP} home={mail}/%u allow_all_users=yes
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp}
  }}
}}
"#
        )
    }

    /// Adds a user who can log in over IMAP; Dovecot rereads the passwd-file when it changes.
    pub fn add_user(&self, login: &str, password: &str) {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.users)
            .expect("open the passwd-file");
        writeln!(file, "{login}:{{PLAIN}}{password}").expect("append to the passwd-file");
    }

    pub fn imap_port(&self) -> u16 {
        self.imap_port
    }

    pub fn lmtp_port(&self) -> u16 {
        self.lmtp_port
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The Maildir of `user` (it exists once something was delivered to them).
    pub fn maildir(&self, user: &str) -> PathBuf {
        self.mail.join(user).join("Maildir")
    }

    /// Messages in `user`'s INBOX, new and seen.
    pub fn inbox_count(&self, user: &str) -> usize {
        let maildir = self.maildir(user);
        ["new", "cur"]
            .iter()
            .filter_map(|sub| std::fs::read_dir(maildir.join(sub)).ok())
            .map(|entries| entries.count())
            .sum()
    }

    pub fn log(&self) -> String {
        read_lossy(&self.log)
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- dovecot log ({}) ---\n{}",
                self.log.display(),
                tail(&self.log(), 60)
            );
        }
        let master_pid = read_pid(&self.dir.path().join("run/master.pid"));
        let _ = Command::new(&self.doveadm)
            .arg("-c")
            .arg(&self.config)
            .arg("stop")
            .output();
        if let Some(pid) = master_pid.filter(|&pid| alive(pid)) {
            reap(pid, Duration::from_secs(5));
        }
    }
}
