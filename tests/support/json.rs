//! Reading the CLI's JSON answers in tests.

use std::collections::BTreeSet;

use serde_json::Value;

use super::Daemon;

/// The strings of a JSON array; panics on anything else.
pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_str().expect("a string").to_owned())
        .collect()
}

/// The strings of a JSON array as a set.
pub fn sorted(value: &Value) -> BTreeSet<String> {
    strings(value).into_iter().collect()
}

pub fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

impl Daemon {
    /// `message show ID --json` of a message from `message list --json`.
    pub fn show(&self, message: &Value) -> Value {
        let id = message["id"].as_u64().expect("a numeric id").to_string();
        self.cli_json(&["message", "show", &id, "--json"])
    }

    /// The stored bytes of a message from `message list --json`.
    pub fn raw(&self, message: &Value) -> Vec<u8> {
        let id = message["id"].as_u64().expect("a numeric id").to_string();
        let output = self.cli(&["message", "show", &id, "--raw"]);
        assert!(output.status.success(), "message show {id} --raw failed");
        output.stdout
    }
}
