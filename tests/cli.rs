//! The management CLI against the real binary: through a running daemon's admin socket,
//! and on a store no daemon holds. Every command's outcome is checked in what the store
//! holds afterwards, not only in its exit code.

mod support;

use std::path::Path;
use std::process::Output;

use serde_json::Value;
use support::Daemon;

fn mail(id: &str, from: &str, to: &str, subject: &str) -> String {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n\
         Date: Tue, 02 Apr 2024 09:15:00 +0000\r\n\r\nbody of {id}\r\n"
    )
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(out: &Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
}

fn messages(d: &Daemon, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["message", "list", "--json"];
    args.extend_from_slice(extra);
    d.cli_json(&args).as_array().expect("an array").clone()
}

fn subjects(list: &[Value]) -> Vec<String> {
    let mut s: Vec<String> = list
        .iter()
        .map(|m| m["subject"].as_str().unwrap_or("").to_owned())
        .collect();
    s.sort();
    s
}

fn write_maildir(dir: &Path, mails: &[String]) {
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    for (i, m) in mails.iter().enumerate() {
        let sub = if i % 2 == 0 { "cur" } else { "new" };
        std::fs::write(dir.join(sub).join(format!("{i}.host:2,S")), m).unwrap();
    }
}

#[test]
fn the_directory_and_privacy_through_the_daemon() {
    let d = Daemon::start("");

    let out = d.cli_stdin(
        &[
            "user",
            "add",
            "alice",
            "--address",
            "alice@us.test",
            "--password-stdin",
        ],
        b"correct horse battery\n",
    );
    ok(&out);
    ok(&d.cli_stdin(
        &[
            "user",
            "add",
            "bob",
            "--address",
            "Bob@US.test",
            "--password-stdin",
        ],
        b"another long one\n",
    ));
    let users = d.cli_json(&["user", "list", "--json"]);
    assert_eq!(users.as_array().unwrap().len(), 2);
    assert_eq!(users[0]["login"], "alice");
    assert_eq!(users[0]["password"], true);
    assert_eq!(users[1]["addresses"][0], "Bob@us.test");

    // Errors name what was wrong, exit non-zero and change nothing.
    fails(
        &d.cli_stdin(
            &["user", "passwd", "carol", "--password-stdin"],
            b"whatever123\n",
        ),
        1,
        "no user \"carol\"",
    );
    fails(
        &d.cli_stdin(
            &[
                "user",
                "add",
                "alice",
                "--address",
                "a2@us.test",
                "--password-stdin",
            ],
            b"long enough pw\n",
        ),
        1,
        "already exists",
    );
    fails(
        &d.cli_stdin(
            &[
                "user",
                "add",
                "eve",
                "--address",
                "alice@us.test",
                "--password-stdin",
            ],
            b"long enough pw\n",
        ),
        1,
        "belongs to user \"alice\"",
    );
    fails(
        &d.cli_stdin(
            &[
                "user",
                "add",
                "eve",
                "--address",
                "e@us.test",
                "--password-stdin",
            ],
            b"short\n",
        ),
        64,
        "shorter than",
    );
    assert_eq!(
        d.cli_json(&["user", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        2
    );

    ok(&d.cli(&[
        "contact",
        "add",
        "Acme Buyer",
        "--company",
        "Acme Ltd",
        "--address",
        "buyer@acme.test",
        "--private",
    ]));
    fails(
        &d.cli(&["contact", "add", "Other", "--address", "buyer@acme.test"]),
        1,
        "already belongs to contact",
    );
    let contacts = d.cli_json(&["contact", "list", "--json"]);
    let acme = contacts
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "Acme Buyer")
        .unwrap();
    assert_eq!(acme["company"], "Acme Ltd");
    assert_eq!(acme["channels"][0]["shared"], false);

    // Private outside mail: only the addressed user sees it.
    let dir = tempfile::tempdir().unwrap();
    let offer = dir.path().join("offer.eml");
    std::fs::write(
        &offer,
        mail(
            "offer-1@acme.test",
            "buyer@acme.test",
            "alice@us.test",
            "Offer",
        ),
    )
    .unwrap();
    let news = dir.path().join("news.eml");
    std::fs::write(
        &news,
        mail(
            "news-1@press.test",
            "editor@press.test",
            "bob@us.test",
            "News",
        ),
    )
    .unwrap();
    let summary = ok(&d.cli(&["import", offer.to_str().unwrap(), news.to_str().unwrap()]));
    assert!(
        summary.contains("2 stored, 0 duplicates, 0 excluded, 0 refused"),
        "{summary}"
    );

    let all = messages(&d, &[]);
    let offer_json = all.iter().find(|m| m["subject"] == "Offer").unwrap();
    for key in [
        "id",
        "message_id",
        "subject",
        "from",
        "date",
        "projects",
        "visibility",
        "visible_to",
        "inactive_only",
        "parties",
    ] {
        assert!(offer_json.get(key).is_some(), "no {key} in {offer_json}");
    }
    assert_eq!(offer_json["visibility"], "users");
    assert_eq!(offer_json["visible_to"], serde_json::json!(["alice"]));
    assert_eq!(offer_json["message_id"], "offer-1@acme.test");
    assert_eq!(offer_json["projects"], serde_json::json!(["Inbox"]));
    assert_eq!(
        subjects(&messages(&d, &["--visible-to", "alice"])),
        ["News", "Offer"]
    );
    assert_eq!(subjects(&messages(&d, &["--visible-to", "bob"])), ["News"]);
    fails(
        &d.cli(&["message", "list", "--visible-to", "nobody"]),
        1,
        "no user \"nobody\"",
    );

    // A flag change reclassifies what is stored.
    ok(&d.cli(&["channel", "set", "buyer@acme.test", "--shared"]));
    assert_eq!(
        subjects(&messages(&d, &["--visible-to", "bob"])),
        ["News", "Offer"]
    );
    ok(&d.cli(&["channel", "set", "editor@press.test", "--inactive"]));
    assert_eq!(subjects(&messages(&d, &["--visible-to", "bob"])), ["Offer"]);
    let channels = d.cli_json(&["channel", "list", "--json"]);
    let editor = channels
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "editor@press.test")
        .unwrap();
    assert_eq!(editor["active"], false);

    // The stored bytes are what was imported; re-importing stores nothing new.
    let id = offer_json["id"].as_u64().unwrap().to_string();
    let raw = d.cli(&["message", "show", &id, "--raw"]);
    assert_eq!(raw.stdout, std::fs::read(&offer).unwrap());
    let show = d.cli_json(&["message", "show", &id, "--json"]);
    assert_eq!(show["sources"][0]["kind"], "import");
    let again = ok(&d.cli(&["import", offer.to_str().unwrap(), news.to_str().unwrap()]));
    assert!(again.contains("0 stored, 2 duplicates"), "{again}");
    assert_eq!(messages(&d, &[]).len(), 2);

    // Excluding with --purge deletes the address's mail; forgetting erases the contact.
    fails(
        &d.cli(&["channel", "set", "editor@press.test", "--purge"]),
        64,
        "--exclude",
    );
    ok(&d.cli(&[
        "channel",
        "set",
        "editor@press.test",
        "--exclude",
        "--purge",
    ]));
    assert_eq!(subjects(&messages(&d, &[])), ["Offer"]);
    let excluded = ok(&d.cli(&["import", news.to_str().unwrap()]));
    assert!(excluded.contains("1 excluded"), "{excluded}");
    fails(
        &d.cli(&["contact", "forget", "alice@us.test"]),
        1,
        "remove the user first",
    );
    let forgot = ok(&d.cli(&["contact", "forget", "buyer@acme.test"]));
    assert!(forgot.contains("1 messages erased"), "{forgot}");
    assert!(messages(&d, &[]).is_empty());

    ok(&d.cli(&["user", "remove", "bob"]));
    assert_eq!(
        d.cli_json(&["user", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let stats = d.cli_json(&["stats", "--json"]);
    assert_eq!(stats["messages"], 0);
    assert_eq!(stats["users"], 1);
}

#[test]
fn import_reads_maildir_mbox_and_stdin_through_the_daemon() {
    let d = Daemon::start("");
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let mails: Vec<String> = (0..6)
        .map(|i| {
            mail(
                &format!("md-{i}@x.test"),
                "a@x.test",
                "b@y.test",
                &format!("md {i}"),
            )
        })
        .collect();
    write_maildir(&maildir, &mails);
    std::fs::write(maildir.join("tmp/partial"), "Subject: half written").unwrap();
    std::fs::write(maildir.join("dovecot-uidlist"), "3 V1 N7").unwrap();

    let mbox = dir.path().join("archive.mbox");
    let mut text = String::new();
    for i in 0..3 {
        let m = mail(
            &format!("mb-{i}@x.test"),
            "a@x.test",
            "b@y.test",
            &format!("mb {i}"),
        );
        text.push_str(&format!(
            "From a@x.test Tue Apr  2 09:15:00 2024\n{}\n",
            m.replace("\r\n", "\n")
        ));
    }
    text = text.replace(
        "body of mb-1@x.test",
        "body of mb-1@x.test\n>From the quoted line",
    );
    std::fs::write(&mbox, text).unwrap();

    let out = d.cli(&[
        "import",
        "--project",
        "Clients/Acme",
        maildir.to_str().unwrap(),
        mbox.to_str().unwrap(),
    ]);
    let summary = ok(&out);
    assert!(summary.contains("imported 9 messages"), "{summary}");
    assert!(summary.contains("9 stored"), "{summary}");
    let projects = d.cli_json(&["project", "list", "--json"]);
    assert_eq!(projects[0]["path"], "Clients/Acme");
    assert_eq!(projects[0]["messages"], 9);
    assert_eq!(projects[0]["uid_next"], 10);

    let quoted = messages(&d, &[])
        .into_iter()
        .find(|m| m["subject"] == "mb 1")
        .unwrap();
    let raw = d.cli(&["message", "show", &quoted["id"].to_string(), "--raw"]);
    let raw = String::from_utf8(raw.stdout).unwrap();
    assert!(raw.contains("\r\nFrom the quoted line\r\n"), "{raw:?}");

    let one = mail("stdin-1@x.test", "a@x.test", "b@y.test", "from stdin");
    ok(&d.cli_stdin(&["import", "-"], one.as_bytes()));
    assert_eq!(messages(&d, &["--project", "Inbox"]).len(), 1);

    // Something that is not mail is refused by name; the rest still goes in (exit 65).
    let junk = dir.path().join("notes.txt");
    std::fs::write(&junk, "Dear diary, it rained all day.\n").unwrap();
    let extra = dir.path().join("extra.eml");
    std::fs::write(
        &extra,
        mail("extra-1@x.test", "a@x.test", "b@y.test", "extra"),
    )
    .unwrap();
    let out = d.cli(&["import", junk.to_str().unwrap(), extra.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(65));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("notes.txt") && stderr.contains("not a mail message"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 stored"));
    fails(
        &d.cli(&["import", "/nonexistent/path"]),
        64,
        "/nonexistent/path",
    );
    assert_eq!(messages(&d, &[]).len(), 11);
}

#[test]
fn without_a_daemon_the_cli_opens_the_store_itself() {
    let mut d = Daemon::configure("[policy]\ndefault_project = \"Archive/2024\"\n");
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let mails: Vec<String> = (0..4)
        .map(|i| {
            mail(
                &format!("direct-{i}@x.test"),
                "a@x.test",
                "b@y.test",
                &format!("d {i}"),
            )
        })
        .collect();
    write_maildir(&maildir, &mails);
    let summary = ok(&d.cli(&["import", maildir.to_str().unwrap()]));
    assert!(summary.contains("4 stored"), "{summary}");
    ok(&d.cli_stdin(
        &[
            "user",
            "add",
            "alice",
            "--address",
            "a@x.test",
            "--password-stdin",
        ],
        b"long password\n",
    ));

    // What the CLI wrote is what the daemon serves afterwards.
    d.launch();
    let list = messages(&d, &["--visible-to", "alice"]);
    assert_eq!(list.len(), 4);
    assert_eq!(list[0]["projects"], serde_json::json!(["Archive/2024"]));
    let status = d.stop();
    assert!(status.success(), "{status:?}");
    assert!(
        !d.admin_socket().exists(),
        "the admin socket is removed on stop"
    );
    assert!(d.log().contains("threadsd stopped"), "{}", d.log());
    assert_eq!(d.cli_json(&["stats", "--json"])["messages"], 4);
}

#[test]
fn check_config_names_the_file_line_and_key() {
    let d = Daemon::configure("");
    ok(&d.cli(&["check-config"]));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[store]\npath = \"/tmp/x\"\n[smtp]\nmax_recipients = \"many\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_threadsd"))
        .args(["check-config", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    let expected = format!("{}:4: key `smtp.max_recipients`", bad.display());
    fails(&out, 78, &expected);
    for (text, key) in [
        (
            "[lmtp]\nsocket_group = \"no-such-group-here\"\n",
            "key `lmtp.socket_group`: no group \"no-such-group-here\"",
        ),
        ("[lmtp]\nsocket_mode = \"0999\"\n", "key `lmtp.socket_mode`"),
    ] {
        std::fs::write(&bad, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_threadsd"))
            .args(["check-config", "--config", bad.to_str().unwrap()])
            .output()
            .unwrap();
        fails(&out, 78, &format!("{}:2: {key}", bad.display()));
    }
    std::fs::write(&bad, "[policy]\nshare_internl = false\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_threadsd"))
        .args(["serve", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    fails(&out, 78, "key `policy.share_internl`: unknown field");
}

#[test]
fn usage_errors_exit_64() {
    let bin = env!("CARGO_BIN_EXE_threadsd");
    let run = |args: &[&str]| std::process::Command::new(bin).args(args).output().unwrap();
    assert_eq!(run(&["frobnicate"]).status.code(), Some(64));
    assert_eq!(run(&["user", "add", "alice"]).status.code(), Some(64));
    assert_eq!(
        run(&["user", "add", "alice", "--address", "not an address"])
            .status
            .code(),
        Some(64)
    );
    assert_eq!(
        run(&["channel", "set", "a@b.test", "--shared", "--private"])
            .status
            .code(),
        Some(64)
    );
    let help = run(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("import"));
}
