//! Exchange / Office 365 journal reports: the original message is attached, the envelope
//! recipients are listed in a text part. The original is what gets stored; the listed
//! recipients become parties; the report itself is kept out of what users read.

use std::borrow::Cow;

use mail_parser::{Encoding, Message, PartType};

use super::parse::has_header;
use crate::model::{Address, Party};

/// Header that marks a journal report.
const MARKER: &str = "X-MS-Journal-Report";

/// Report lines whose value lists parties.
const PARTY_KEYS: &[&str] = &["sender", "on-behalf-of", "to", "cc", "bcc", "recipient"];

/// Notes after a recipient naming another address that took part: the distribution
/// list it was expanded from, or the mailbox that forwarded to it.
const NOTE_KEYS: &[&str] = &["expanded", "forwarded"];

/// What a journal report carried.
#[derive(Debug)]
pub struct Unwrapped<'a> {
    /// The original message's bytes, transfer encoding undone.
    pub original: Cow<'a, [u8]>,
    /// Every address the report lists, in order of appearance.
    pub recipients: Vec<Party>,
}

/// Whether a message (its header block is enough) calls itself a journal report.
pub fn is_report(message: &Message<'_>) -> bool {
    has_header(message, MARKER)
}

/// Unwraps a fully parsed journal report; `None` for any other message, or a report
/// without an attached original.
pub fn unwrap<'a>(raw: &'a [u8], message: &Message<'a>) -> Option<Unwrapped<'a>> {
    if !is_report(message) {
        return None;
    }
    let part = message
        .parts
        .iter()
        .skip(1)
        .find(|p| matches!(p.body, PartType::Message(_)))?;
    let PartType::Message(inner) = &part.body else {
        return None;
    };
    let original: Cow<'a, [u8]> = match part.encoding {
        // Not encoded: the parser read the original in place inside the report.
        Encoding::None => {
            let range = part.offset_body as usize..part.offset_end as usize;
            Cow::Borrowed(raw.get(range)?)
        }
        // Encoded: the parser decoded it into a buffer of its own.
        _ => Cow::Owned(inner.raw_message.to_vec()),
    };
    if original.iter().all(u8::is_ascii_whitespace) {
        return None;
    }

    let report = message.parts.iter().skip(1).find_map(|p| match &p.body {
        PartType::Text(text) => Some(text.as_ref()),
        _ => None,
    });
    let recipients = report.map(report_parties).unwrap_or_default();
    Some(Unwrapped {
        original,
        recipients,
    })
}

/// Parses report lines such as `Cc: carol@x.test, Expanded: sales@x.test`.
pub fn report_parties(text: &str) -> Vec<Party> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        if !PARTY_KEYS.contains(&key.as_str()) {
            continue;
        }
        let mut tokens = value.split(',');
        if let Some(address) = tokens.next().and_then(|t| Address::parse(t).ok()) {
            out.push(Party {
                address,
                name: None,
            });
        }
        for token in tokens {
            let Some((note, addr)) = token.split_once(':') else {
                continue;
            };
            if !NOTE_KEYS.contains(&note.trim().to_ascii_lowercase().as_str()) {
                continue;
            }
            if let Ok(address) = Address::parse(addr) {
                out.push(Party {
                    address,
                    name: None,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_with_notes() {
        let text = "Sender: alice@contoso.test\r\nSubject: Numbers: Q3\r\n\
                    Message-Id: <m1@contoso.test>\r\nTo: bob@fabrikam.test\r\n\
                    Cc: carol@contoso.test, Expanded: sales@contoso.test\r\n\
                    Recipient: erin@partner.test, Forwarded: frank@contoso.test\r\n\
                    Bcc: not an address\r\n";
        let got: Vec<String> = report_parties(text)
            .into_iter()
            .map(|p| p.address.to_string())
            .collect();
        assert_eq!(
            got,
            [
                "alice@contoso.test",
                "bob@fabrikam.test",
                "carol@contoso.test",
                "sales@contoso.test",
                "erin@partner.test",
                "frank@contoso.test",
            ]
        );
    }
}
