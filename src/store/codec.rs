//! Encoding of stored values: a format byte, then postcard.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::StoreError;

/// Bumped when a stored type changes shape; decoding refuses other formats rather than
/// misreading them.
const FORMAT: u8 = 1;

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT];
    // postcard only fails on writers that run out of room; a Vec never does.
    out.extend(postcard::to_stdvec(value).expect("postcard encodes into a Vec"));
    out
}

pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT, rest)) => postcard::from_bytes(rest).map_err(|e| StoreError::Corrupt {
            what,
            detail: e.to_string(),
        }),
        Some((other, _)) => Err(StoreError::Corrupt {
            what,
            detail: format!("unknown format {other}"),
        }),
        None => Err(StoreError::Corrupt {
            what,
            detail: "empty value".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Address, Channel, ChannelFlags, ContactId};

    #[test]
    fn round_trip_and_refusals() {
        let ch = Channel {
            address: Address::parse("a@x.test").unwrap(),
            contact: ContactId(7),
            user: None,
            flags: ChannelFlags::default_with(true),
        };
        let bytes = encode(&ch);
        assert_eq!(decode::<Channel>("channel", &bytes).unwrap(), ch);
        assert!(decode::<Channel>("channel", &[]).is_err());
        assert!(decode::<Channel>("channel", &[9, 1, 2]).is_err());
        assert!(decode::<Channel>("channel", &bytes[..bytes.len() - 1]).is_err());
    }
}
