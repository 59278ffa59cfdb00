//! Feeds arbitrary bytes through the ingest pipeline (parse, journal unwrap, addresses,
//! dedup key) and the privacy rules: neither may panic, and what they give must hold
//! together.
#![no_main]

use libfuzzer_sys::fuzz_target;
use threadsd::ingest::{self, IngestOptions, Submission, Trust};
use threadsd::model::{ChannelFlags, ProjectPath, Source, SourceKind};
use threadsd::policy::{self, ChannelView, Decision, Owner, PolicyOptions};

fuzz_target!(|data: &[u8]| {
    let submission = Submission {
        raw: data.to_vec(),
        source: Source { kind: SourceKind::Import { file: None }, received: 0, envelope: None },
        projects: vec![ProjectPath::parse("Inbox").expect("a valid literal")],
        trust: Trust::Trusted,
    };
    let Ok(prepared) = ingest::prepare(submission, &IngestOptions::default()) else {
        return;
    };
    assert!(
        prepared.parties.windows(2).all(|w| w[0].address < w[1].address),
        "parties are sorted and unique"
    );
    assert!(!prepared.raw.is_empty());

    // A directory derived from the addresses themselves, so that every rule is reached.
    let lookup = |a: &threadsd::model::Address| {
        let k = a.key().len();
        Some(ChannelView {
            owner: if k % 3 == 0 { Owner::Outside } else { Owner::User(login(k)) },
            flags: ChannelFlags { exclude: k % 11 == 0, active: k % 2 == 0, shared: k % 5 != 0 },
        })
    };
    let addresses: Vec<_> = prepared.parties.iter().map(|p| p.address.clone()).collect();
    let decision = policy::classify(&addresses, lookup, PolicyOptions::default());
    if let Decision::Excluded { address } = decision {
        assert!(addresses.contains(&address));
    }
});

fn login(n: usize) -> threadsd::model::Login {
    threadsd::model::Login::parse(&format!("u{n}")).expect("a valid login")
}
