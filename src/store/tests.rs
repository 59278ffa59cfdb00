//! Store behaviour end to end through the committer: dedup and merging, reclassification
//! after directory changes, fresh UIDs on widening, erasure, and crash-free reopening.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::ingest::{self, Ack, IngestOptions, Submission, Trust};
use crate::model::{
    Address, ChannelFlags, Login, MessageId, ProjectPath, Source, SourceKind, Visibility,
};
use crate::policy::PolicyOptions;

fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

fn login(s: &str) -> Login {
    Login::parse(s).unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    committer: Committer,
}

fn open_at(path: &std::path::Path, policy: PolicyOptions) -> Committer {
    let store = Store::open(&StoreOptions {
        path: path.to_owned(),
        cache_bytes: 8 << 20,
    })
    .unwrap();
    Committer::start(
        store,
        CommitOptions {
            policy,
            auto_create_contacts: true,
        },
    )
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let committer = open_at(dir.path(), PolicyOptions::default());
    Fixture {
        _dir: dir,
        committer,
    }
}

fn mail(id: &str, from: &str, to: &[&str], body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {}\r\nSubject: s {id}\r\nMessage-ID: <{id}>\r\n\r\n{body}\r\n",
        to.join(", ")
    )
    .into_bytes()
}

fn submission(raw: Vec<u8>, project: &str, file: &str) -> Submission {
    Submission {
        raw,
        source: Source {
            kind: SourceKind::Import {
                file: Some(file.into()),
            },
            received: 1,
            envelope: None,
        },
        projects: vec![ProjectPath::parse(project).unwrap()],
        trust: Trust::Trusted,
    }
}

impl Fixture {
    async fn ingest(&self, raw: Vec<u8>, project: &str, file: &str) -> Ack {
        let p = ingest::prepare(submission(raw, project, file), &IngestOptions::default()).unwrap();
        put(&self.committer, p).await.unwrap()
    }

    fn store(&self) -> &Store {
        self.committer.store()
    }

    fn record(&self, id: MessageId) -> crate::model::MessageRecord {
        self.store().message(id).unwrap().unwrap().record
    }

    async fn user(&self, name: &str, address: &str) {
        let new = NewUser {
            login: login(name),
            addresses: vec![addr(address)],
            password_hash: None,
            show_only_active: true,
        };
        self.committer
            .run(move |t, o| t.add_user(o, new))
            .await
            .unwrap();
    }

    async fn set(&self, address: &str, change: ChannelChange) -> usize {
        let a = addr(address);
        self.committer
            .run(move |t, o| t.set_channel(o, &a, change))
            .await
            .unwrap()
            .1
    }

    fn uids(&self, id: MessageId) -> Vec<u32> {
        let view = self.store().message(id).unwrap().unwrap();
        view.memberships.iter().map(|(_, m)| m.uid).collect()
    }
}

/// Encodes and stores, as the Ingestor does.
async fn put(c: &Committer, p: crate::ingest::Prepared) -> Result<Ack, StoreError> {
    let body = encode_body(&p.raw)?;
    c.ingest(p, body).await
}

fn stored(ack: Ack) -> (MessageId, bool) {
    match ack {
        Ack::Stored { id, duplicate } => (id, duplicate),
        Ack::Excluded => panic!("excluded, expected stored"),
    }
}

#[tokio::test]
async fn identical_mail_is_stored_once_and_readable() {
    let f = fixture();
    let raw = mail(
        "a@x.test",
        "ann@x.test",
        &["bo@y.test"],
        &"long body ".repeat(5000),
    );
    let (id, dup) = stored(f.ingest(raw.clone(), "Inbox", "1.eml").await);
    assert!(!dup);
    let (again, dup) = stored(f.ingest(raw.clone(), "Inbox", "1.eml").await);
    assert_eq!((again, dup), (id, true));
    assert_eq!(
        f.record(id).copies,
        1,
        "re-importing the same file adds nothing"
    );
    assert_eq!(f.store().raw_message(id).unwrap().unwrap(), raw);
    let stats = f.store().stats().unwrap();
    assert_eq!(stats.messages, 1);
    assert!(stats.stored_bytes < stats.raw_bytes / 10, "{stats:?}");
}

#[tokio::test]
async fn a_copy_in_another_project_adds_a_membership() {
    let f = fixture();
    let raw = mail("b@x.test", "ann@x.test", &["bo@y.test"], "hi");
    let (id, _) = stored(f.ingest(raw.clone(), "Inbox", "1.eml").await);
    let (again, dup) = stored(f.ingest(raw, "Clients/Acme", "2.eml").await);
    assert_eq!((again, dup), (id, true));
    let view = f.store().message(id).unwrap().unwrap();
    let paths: BTreeSet<String> = view
        .memberships
        .iter()
        .map(|(p, _)| p.path.to_string())
        .collect();
    assert_eq!(
        paths,
        BTreeSet::from(["Inbox".to_owned(), "Clients/Acme".to_owned()])
    );
    assert_eq!(view.record.copies, 2);
}

#[tokio::test]
async fn excluded_mail_is_not_stored_and_a_revealing_copy_removes_it() {
    let f = fixture();
    f.set(
        "secret@x.test",
        ChannelChange {
            exclude: Some(true),
            ..Default::default()
        },
    )
    .await;
    let raw = mail("c@x.test", "secret@x.test", &["bo@y.test"], "hi");
    assert_eq!(f.ingest(raw, "Inbox", "1.eml").await, Ack::Excluded);
    assert_eq!(f.store().stats().unwrap().messages, 0);

    // A second copy whose envelope reveals the excluded party as a Bcc recipient.
    let first = mail("d@x.test", "ann@x.test", &["bo@y.test"], "body");
    let (id, _) = stored(f.ingest(first, "Inbox", "2.eml").await);
    let mut copy = b"Bcc: secret@x.test\r\n".to_vec();
    copy.extend(mail("d@x.test", "ann@x.test", &["bo@y.test"], "body"));
    assert_eq!(f.ingest(copy, "Inbox", "3.eml").await, Ack::Excluded);
    assert!(f.store().message(id).unwrap().is_none());
}

#[tokio::test]
async fn flag_changes_reclassify_and_widening_gives_fresh_uids() {
    let f = fixture();
    f.user("alice", "alice@us.test").await;
    f.user("bob", "bob@us.test").await;
    f.set(
        "client@them.test",
        ChannelChange {
            shared: Some(false),
            ..Default::default()
        },
    )
    .await;
    let raw = mail("e@x.test", "client@them.test", &["alice@us.test"], "offer");
    let (id, _) = stored(f.ingest(raw, "Inbox", "1.eml").await);
    let only_alice = Visibility::Users(BTreeSet::from([login("alice")]));
    assert_eq!(f.record(id).audience.visibility, only_alice);
    let before = f.uids(id);

    // Filler so that the project's UIDNEXT moves on.
    f.ingest(
        mail("f@x.test", "z@z.test", &["y@z.test"], "x"),
        "Inbox",
        "2.eml",
    )
    .await;
    f.set(
        "client@them.test",
        ChannelChange {
            shared: Some(true),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(f.record(id).audience.visibility, Visibility::All);
    let after = f.uids(id);
    assert!(
        after[0] > before[0] && after[0] > 2,
        "{before:?} -> {after:?}"
    );

    // Narrowing again keeps the UID: nobody gains sight of it.
    f.set(
        "client@them.test",
        ChannelChange {
            shared: Some(false),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(f.record(id).audience.visibility, only_alice);
    assert_eq!(f.uids(id), after);
    let listed = f.store().messages(&MessageFilter {
        project: Some(ProjectPath::parse("Inbox").unwrap()),
        visible_to: Some(login("bob")),
    });
    assert!(listed.unwrap().iter().all(|v| v.record.id != id));
}

#[tokio::test]
async fn inactive_only_mail_is_hidden_from_show_only_active_users() {
    let f = fixture();
    f.user("alice", "alice@us.test").await;
    let raw = mail("g@x.test", "old@them.test", &["alice@us.test"], "hello");
    let (id, _) = stored(f.ingest(raw, "Inbox", "1.eml").await);
    let visible = |f: &Fixture| {
        let filter = MessageFilter {
            project: None,
            visible_to: Some(login("alice")),
        };
        f.store()
            .messages(&filter)
            .unwrap()
            .iter()
            .any(|v| v.record.id == id)
    };
    assert!(visible(&f));
    f.set(
        "old@them.test",
        ChannelChange {
            active: Some(false),
            ..Default::default()
        },
    )
    .await;
    assert!(f.record(id).audience.inactive_only);
    assert!(!visible(&f));
}

#[tokio::test]
async fn a_new_user_sees_private_mail_addressed_to_them() {
    let f = fixture();
    // An unknown address is shared by default, so both parties start out private.
    for a in ["client@them.test", "carol@us.test"] {
        f.set(
            a,
            ChannelChange {
                shared: Some(false),
                ..Default::default()
            },
        )
        .await;
    }
    let raw = mail("h@x.test", "client@them.test", &["carol@us.test"], "quote");
    let (id, _) = stored(f.ingest(raw, "Inbox", "1.eml").await);
    assert_eq!(
        f.record(id).audience.visibility,
        Visibility::Users(BTreeSet::new())
    );
    f.user("carol", "carol@us.test").await;
    assert_eq!(
        f.record(id).audience.visibility,
        Visibility::Users(BTreeSet::from([login("carol")]))
    );
}

#[tokio::test]
async fn forgetting_a_contact_erases_its_mail_and_purge_deletes_excluded_mail() {
    let f = fixture();
    let keep = mail("i@x.test", "ann@x.test", &["bo@y.test"], "keep");
    let (kept, _) = stored(f.ingest(keep, "Inbox", "1.eml").await);
    let gone = mail("j@x.test", "eve@evil.test", &["bo@y.test"], "erase me");
    let (erased, _) = stored(f.ingest(gone, "Inbox", "2.eml").await);
    let eve = addr("eve@evil.test");
    let (_, n) = f
        .committer
        .run(move |t, _| t.forget_contact(&eve))
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert!(f.store().message(erased).unwrap().is_none());
    assert!(f.store().message(kept).unwrap().is_some());
    assert!(f.store().channel(&addr("eve@evil.test")).unwrap().is_none());

    let refused = f
        .committer
        .run(|t, o| {
            let change = ChannelChange {
                purge: true,
                ..Default::default()
            };
            t.set_channel(o, &Address::parse("ann@x.test").unwrap(), change)
        })
        .await;
    assert!(matches!(refused, Err(StoreError::Refused(_))));
    let change = ChannelChange {
        exclude: Some(true),
        purge: true,
        ..Default::default()
    };
    assert_eq!(f.set("ann@x.test", change).await, 1);
    assert_eq!(f.store().stats().unwrap().messages, 0);
    assert_eq!(
        f.store().stats().unwrap().stored_bytes,
        0,
        "bytes go with the last message"
    );
}

#[tokio::test]
async fn refused_admin_jobs_change_nothing() {
    let f = fixture();
    f.user("alice", "alice@us.test").await;
    let new = NewUser {
        login: login("mallory"),
        addresses: vec![addr("m@us.test"), addr("alice@us.test")],
        password_hash: None,
        show_only_active: true,
    };
    let err = f
        .committer
        .run(move |t, o| t.add_user(o, new))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("alice@us.test"), "{err}");
    assert!(f.store().user(&login("mallory")).unwrap().is_none());
    assert!(f.store().channel(&addr("m@us.test")).unwrap().is_none());
}

#[tokio::test]
async fn a_reopened_store_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let raw = mail("k@x.test", "ann@x.test", &["bo@y.test"], "persist");
    let id = {
        let committer = open_at(dir.path(), PolicyOptions::default());
        let p = ingest::prepare(
            submission(raw.clone(), "Inbox", "1.eml"),
            &IngestOptions::default(),
        )
        .unwrap();
        let (id, _) = stored(put(&committer, p).await.unwrap());
        committer.close().await;
        id
    };
    let committer = open_at(dir.path(), PolicyOptions::default());
    assert_eq!(committer.store().raw_message(id).unwrap().unwrap(), raw);
    assert!(
        Store::open(&StoreOptions {
            path: dir.path().into(),
            cache_bytes: 1 << 20
        })
        .is_err()
    );
}

#[tokio::test]
async fn concurrent_submissions_share_syncs_and_get_distinct_ids_and_uids() {
    let f = fixture();
    let syncs_before = f.store().syncs();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let c = f.committer.clone();
        let raw = mail(
            &format!("m{i}@x.test"),
            "ann@x.test",
            &["bo@y.test"],
            &format!("n {i}"),
        );
        let p = ingest::prepare(
            submission(raw, "Inbox", &format!("{i}")),
            &IngestOptions::default(),
        )
        .unwrap();
        tasks.push(tokio::spawn(async move { put(&c, p).await }));
    }
    let mut ids = BTreeSet::new();
    for t in tasks {
        ids.insert(stored(t.await.unwrap().unwrap()).0);
    }
    assert_eq!(ids.len(), 200);
    let syncs = f.store().syncs() - syncs_before;
    assert!(syncs < 100, "200 concurrent messages took {syncs} syncs");
    let inbox = f
        .store()
        .project(&ProjectPath::parse("Inbox").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(inbox.uid_next, 201);
    assert_eq!(f.store().project_size(inbox.id).unwrap(), 200);
}

fn arb_flags() -> impl Strategy<Value = ChannelFlags> {
    (prop::bool::weighted(0.1), any::<bool>(), any::<bool>()).prop_map(
        |(exclude, active, shared)| ChannelFlags {
            exclude,
            active,
            shared,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// After any sequence of flag changes, each stored record's audience is what
    /// classifying it afresh against the final directory gives.
    #[test]
    fn reclassification_equals_classifying_afresh(
        messages in prop::collection::vec(prop::collection::btree_set(0..6usize, 1..4), 1..6),
        changes in prop::collection::vec((0..6usize, arb_flags()), 0..8),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let f = fixture();
            f.user("u0", "a0@x.test").await;
            f.user("u1", "a1@x.test").await;
            for (n, parties) in messages.iter().enumerate() {
                let to: Vec<String> = parties.iter().map(|i| format!("a{i}@x.test")).collect();
                let to: Vec<&str> = to.iter().map(String::as_str).collect();
                let raw = mail(&format!("p{n}@x.test"), to[0], &to, "b");
                f.ingest(raw, "Inbox", &n.to_string()).await;
            }
            for (i, flags) in &changes {
                let change = ChannelChange {
                    shared: Some(flags.shared),
                    exclude: Some(flags.exclude),
                    active: Some(flags.active),
                    purge: false,
                };
                f.set(&format!("a{i}@x.test"), change).await;
            }
            let options =
                CommitOptions { policy: PolicyOptions::default(), auto_create_contacts: true };
            for view in f.store().messages(&MessageFilter::default()).unwrap() {
                let record = view.record;
                let parties = record.parties.clone();
                let options = options.clone();
                let fresh = f
                    .committer
                    .run(move |t, _| super::messages::classify(t, &options, &parties))
                    .await
                    .unwrap();
                match fresh {
                    crate::policy::Decision::Store(audience) => {
                        prop_assert_eq!(&record.audience, &audience)
                    }
                    // Excluded later: what was stored keeps its audience (§4).
                    crate::policy::Decision::Excluded { .. } => {}
                }
            }
            Ok(())
        })?;
    }
}

#[test]
fn reopening_waits_for_every_handle_on_the_old_instance() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreOptions {
        path: dir.path().to_owned(),
        cache_bytes: 8 << 20,
    })
    .unwrap();
    store.tree().unwrap().insert(b"k", b"v".to_vec()).unwrap();
    store.sync().unwrap();

    // A batch or a query still holding the old instance keeps sled's lock.
    let held = store.handles().unwrap();
    let e = store.reopen().unwrap_err();
    assert!(matches!(e, StoreError::Locked(_)), "{e}");
    assert!(matches!(store.tree(), Err(StoreError::Reopening)));
    drop(held);

    store.reopen().unwrap();
    assert_eq!(
        store.tree().unwrap().get(b"k").unwrap().as_deref(),
        Some(&b"v"[..])
    );
    assert!(!store.needs_reopen());
}

#[test]
fn only_running_out_of_room_asks_for_a_reopen() {
    use std::io::{Error, ErrorKind};
    let io = |kind| StoreError::Io {
        path: "db".into(),
        source: Error::from(kind),
    };
    assert!(io(ErrorKind::StorageFull).is_out_of_space());
    assert!(io(ErrorKind::FileTooLarge).is_out_of_space());
    assert!(
        StoreError::Db(sled::Error::Io(Error::from(ErrorKind::QuotaExceeded))).is_out_of_space()
    );
    assert!(!io(ErrorKind::Other).is_out_of_space());
    assert!(
        !StoreError::Db(sled::Error::Io(Error::from(ErrorKind::Interrupted))).is_out_of_space()
    );
}
