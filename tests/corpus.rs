//! Runs every message of `tests/corpus/` through the ingest pipeline and compares the
//! outcome with the case's expected result, then stores them all and checks that the
//! copies of one message merged into one record.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use threadsd::ingest::{self, IngestOptions, Prepared, Refusal, Submission, Trust};
use threadsd::model::{ProjectPath, Source, SourceKind};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("corpus")
}

fn cases() -> Vec<(String, Vec<u8>, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(corpus_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("eml") {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let raw = std::fs::read(&path).unwrap();
        let expected = std::fs::read_to_string(path.with_extension("json"))
            .unwrap_or_else(|e| panic!("{name}.json: {e}"));
        out.push((name, raw, serde_json::from_str(&expected).unwrap()));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 30, "the corpus has only {} cases", out.len());
    out
}

fn submission(name: &str, raw: Vec<u8>) -> Submission {
    Submission {
        raw,
        source: Source {
            kind: SourceKind::Import {
                file: Some(format!("{name}.eml")),
            },
            received: 1_700_000_000,
            envelope: None,
        },
        projects: vec![ProjectPath::parse("Inbox").unwrap()],
        trust: Trust::Trusted,
    }
}

/// The bare address of `Name <address>` or `address`.
fn bare_address(from: &str) -> String {
    match (from.rfind('<'), from.rfind('>')) {
        (Some(a), Some(b)) if a < b => from[a + 1..b].to_owned(),
        _ => from.to_owned(),
    }
}

fn check_stored(name: &str, p: &Prepared, expected: &Value, failures: &mut Vec<String>) {
    let mut fail = |what: &str, got: String, want: &Value| {
        failures.push(format!("{name}: {what}: got {got}, expected {want}"));
    };
    if let Some(want) = expected.get("message_id") {
        let got = serde_json::to_value(&p.message_id).unwrap();
        if &got != want {
            fail("message_id", got.to_string(), want);
        }
    }
    if let Some(want) = expected.get("subject") {
        let got = serde_json::to_value(&p.subject).unwrap();
        if &got != want {
            fail("subject", got.to_string(), want);
        }
    }
    if let Some(want) = expected.get("from") {
        let got = serde_json::to_value(p.from.as_deref().map(bare_address)).unwrap();
        if &got != want {
            fail("from", got.to_string(), want);
        }
    }
    if let Some(want) = expected.get("date") {
        let got = serde_json::to_value(p.date).unwrap();
        if &got != want {
            fail("date", got.to_string(), want);
        }
    }
    if let Some(want) = expected.get("parties") {
        let got: Vec<String> = p
            .parties
            .iter()
            .map(|x| x.address.key().to_owned())
            .collect();
        let got = serde_json::to_value(&got).unwrap();
        if &got != want {
            fail("parties", got.to_string(), want);
        }
    }
    let journal = expected
        .get("journal")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if p.journal != journal {
        fail("journal", p.journal.to_string(), &Value::Bool(journal));
    }
    if let Some(want) = expected.get("malformed").and_then(Value::as_bool)
        && p.malformed != want
    {
        fail("malformed", p.malformed.to_string(), &Value::Bool(want));
    }
    if let Some(prefix) = expected.get("stored_prefix").and_then(Value::as_str)
        && !p.raw.starts_with(prefix.as_bytes())
    {
        let got = String::from_utf8_lossy(&p.raw[..p.raw.len().min(prefix.len() + 20)]);
        fail(
            "stored_prefix",
            format!("{got:?}"),
            &Value::String(prefix.into()),
        );
    }
    if p.raw
        .windows(2)
        .enumerate()
        .any(|(i, w)| w[1] == b'\n' && (w[0] != b'\r' || i == 0))
    {
        failures.push(format!("{name}: stored bytes have a bare LF"));
    }
}

#[test]
fn every_case_gives_its_expected_result() {
    let options = IngestOptions::default();
    let mut failures = Vec::new();
    let mut keys: BTreeMap<String, [u8; 32]> = BTreeMap::new();
    let cases = cases();

    for (name, raw, expected) in &cases {
        let outcome = expected["outcome"].as_str().unwrap();
        match (
            outcome,
            ingest::prepare(submission(name, raw.clone()), &options),
        ) {
            ("stored", Ok(p)) => {
                check_stored(name, &p, expected, &mut failures);
                keys.insert(name.clone(), p.dedup_key);
            }
            ("refused", Err(refusal)) => {
                let kind = match refusal {
                    Refusal::Empty => "empty",
                    Refusal::NotMail(_) => "not-mail",
                    Refusal::TooLarge { .. } => "too-large",
                };
                if let Some(want) = expected.get("refusal").and_then(Value::as_str)
                    && want != kind
                {
                    failures.push(format!("{name}: refused as {kind}, expected {want}"));
                }
            }
            ("stored", Err(e)) => failures.push(format!("{name}: refused ({e}), expected stored")),
            (_, Ok(_)) => failures.push(format!("{name}: stored, expected refused")),
            (other, _) => failures.push(format!("{name}: unknown outcome {other}")),
        }
    }

    for (name, _, expected) in &cases {
        let Some(other) = expected.get("same_dedup_as").and_then(Value::as_str) else {
            continue;
        };
        if keys.get(name) != keys.get(other) || !keys.contains_key(name) {
            failures.push(format!("{name}: dedup key differs from {other}'s"));
        }
    }
    let distinct: Vec<_> = cases
        .iter()
        .filter(|(n, _, e)| e.get("same_dedup_as").is_none() && keys.contains_key(n))
        .map(|(n, _, _)| keys[n])
        .collect();
    let mut unique = distinct.clone();
    unique.sort();
    unique.dedup();
    if unique.len() != distinct.len() {
        failures.push("two unrelated cases share a dedup key".into());
    }

    assert!(
        failures.is_empty(),
        "{} corpus failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
