//! Collecting party addresses and the listing metadata from parsed header fields.

use mail_parser::{Addr, HeaderValue, Message};

use super::parse::{is_party_field, other_header};
use crate::model::{Address, Party};

/// Fields that name the original recipient, added by the delivering MTA. Believed only
/// from trusted clients: anyone else could name any party.
const ORIGINAL_RECIPIENT_FIELDS: &[&str] = &[
    "X-Original-To",
    "Delivered-To",
    "X-Gm-Original-To",
    "X-Envelope-To",
    "Envelope-To",
];

/// What a listing shows of a message.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub from: Option<String>,
    pub date: Option<i64>,
    /// The Date field as written, for the dedup key of mail without a Message-ID.
    pub date_text: Option<String>,
}

pub fn meta(message: &Message<'_>) -> Meta {
    let message_id = message
        .message_id()
        .map(|id| {
            id.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .trim()
                .to_owned()
        })
        .filter(|id| !id.is_empty());
    // An empty Subject field is a subject of its own: "" rather than none.
    let subject = message
        .subject()
        .map(|s| s.trim().to_owned())
        .or_else(|| message.header_raw("Subject").map(|_| String::new()));
    let from = message.from().and_then(|a| a.first()).and_then(display);
    let date = message.date().map(|d| d.to_timestamp());
    let date_text = message.header_raw("Date").map(|d| d.trim().to_owned());
    Meta {
        message_id,
        subject,
        from,
        date,
        date_text,
    }
}

fn display(addr: &Addr<'_>) -> Option<String> {
    let written = addr.address.as_deref()?.trim();
    let address = Address::parse(written)
        .map(|a| a.to_string())
        .unwrap_or(written.to_owned());
    match addr.name.as_deref().map(str::trim) {
        Some(name) if !name.is_empty() => Some(format!("{name} <{address}>")),
        _ => Some(address.to_owned()),
    }
}

/// Every address in From, Sender, Reply-To, To, Cc, Bcc and Resent-*, group members
/// included, however often each field appears.
pub fn header_parties(message: &Message<'_>) -> Vec<Party> {
    let mut out = Vec::new();
    for header in message.headers() {
        if !is_party_field(&header.name) {
            continue;
        }
        let HeaderValue::Address(list) = &header.value else {
            continue;
        };
        for addr in list.iter() {
            let Some(address) = addr.address.as_deref().and_then(|a| Address::parse(a).ok()) else {
                continue;
            };
            let name = addr.name.as_deref().map(str::to_owned);
            out.push(Party { address, name });
        }
    }
    out
}

/// Addresses in the original-recipient fields.
pub fn original_recipients(message: &Message<'_>) -> Vec<Party> {
    let mut out = Vec::new();
    for field in ORIGINAL_RECIPIENT_FIELDS {
        for value in other_header(message, field) {
            for token in value.split(',') {
                if let Ok(address) = Address::parse(token) {
                    out.push(Party {
                        address,
                        name: None,
                    });
                }
            }
        }
    }
    out
}

/// Sorted by address, each once (keeping the first display name seen), without `own`.
pub fn unique_sorted(mut parties: Vec<Party>, own: &[Address]) -> Vec<Party> {
    parties.retain(|p| !own.contains(&p.address));
    // A stable sort keeps the first occurrence first among equals.
    parties.sort_by(|a, b| a.address.cmp(&b.address));
    let mut out: Vec<Party> = Vec::with_capacity(parties.len());
    for p in parties {
        match out.last_mut() {
            Some(last) if last.address == p.address => {
                if last.name.is_none() {
                    last.name = p.name;
                }
            }
            _ => out.push(p),
        }
    }
    out
}
