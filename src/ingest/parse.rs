//! Reading a message: the gate that tells mail from anything else, line-end
//! normalisation, and a parse whose cost hostile input cannot blow up.

use std::panic::{AssertUnwindSafe, catch_unwind};

use mail_parser::{HeaderName, Message, MessageParser, MimeHeaders};

use super::Refusal;

/// Lines of the form `name:` a message may have before only its top-level headers are
/// parsed. mail-parser keeps a structure of some hundred bytes per header field, so an
/// input made of nothing but tiny fields would cost twenty times its size.
const MAX_FIELD_LINES: usize = 20_000;
/// MIME delimiter lines (`--boundary`) before only the top-level headers are parsed:
/// bounds the number and the nesting of parts.
const MAX_DELIMITER_LINES: usize = 4_000;
/// Top-level header fields parsed, at most.
const MAX_TOP_FIELDS: usize = 5_000;

/// Header fields at least one of which every mail message has.
const MAIL_FIELDS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "date",
    "message-id",
    "received",
    "return-path",
    "sender",
    "reply-to",
    "mime-version",
    "content-type",
    "delivered-to",
    "x-original-to",
    "x-ms-journal-report",
];

/// Rejects what is not mail at all: empty input, or input that does not open with header
/// fields including at least one that mail has.
pub fn check_is_mail(raw: &[u8]) -> Result<(), Refusal> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(Refusal::Empty);
    }
    let mut known = false;
    for (i, line) in header_lines(raw).enumerate() {
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            if i == 0 {
                return Err(Refusal::NotMail("it starts with an indented line"));
            }
            continue;
        }
        let Some(name) = field_name(line) else {
            if i == 0 {
                return Err(Refusal::NotMail("it does not start with a header field"));
            }
            continue;
        };
        known |= MAIL_FIELDS
            .iter()
            .any(|f| name.eq_ignore_ascii_case(f.as_bytes()));
        if i > MAX_TOP_FIELDS {
            break;
        }
    }
    if known {
        Ok(())
    } else {
        Err(Refusal::NotMail("it has none of the header fields of mail"))
    }
}

/// The lines of the header block, without their line ends.
pub fn header_lines(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    raw.split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .take_while(|l| !l.is_empty())
}

/// RFC 5322 §2.2: a field name is printable US-ASCII except colon, followed by a colon
/// (optional white space before the colon is obsolete syntax, §4.5).
pub fn field_name(line: &[u8]) -> Option<&[u8]> {
    let colon = line.iter().position(|b| *b == b':')?;
    let name = line[..colon].trim_ascii_end();
    let ok = !name.is_empty() && name.iter().all(|b| (33..=126).contains(b));
    ok.then_some(name)
}

/// Drops an mbox `From ` envelope line and turns every bare LF into CRLF, the line end of
/// mail on the wire and in IMAP.
pub fn normalise(raw: Vec<u8>) -> Vec<u8> {
    let raw = match raw.strip_prefix(b"From ") {
        Some(rest) => match rest.iter().position(|b| *b == b'\n') {
            Some(end) => raw[5 + end + 1..].to_vec(),
            None => raw,
        },
        None => raw,
    };
    let bare = raw
        .iter()
        .enumerate()
        .filter(|(i, b)| **b == b'\n' && (*i == 0 || raw[i - 1] != b'\r'))
        .count();
    if bare == 0 {
        return raw;
    }
    let mut out = Vec::with_capacity(raw.len() + bare);
    for (i, b) in raw.iter().enumerate() {
        if *b == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(*b);
    }
    out
}

/// Parses the top-level header block, at most `MAX_TOP_FIELDS` fields of it. `None` when
/// the parser finds nothing, or fails.
pub fn parse_head(raw: &[u8]) -> Option<Message<'_>> {
    let view = &raw[..top_fields_end(raw, MAX_TOP_FIELDS)];
    guarded(|| MessageParser::default().parse_headers(view))
}

/// Parses the whole message, parts and all, unless it is over the structural limits
/// above; `None` then, or when the parser finds nothing.
pub fn parse_full(raw: &[u8]) -> Option<Message<'_>> {
    let (fields, delimiters) = count_structure(raw);
    if fields > MAX_FIELD_LINES || delimiters > MAX_DELIMITER_LINES {
        return None;
    }
    guarded(|| MessageParser::default().parse(raw))
}

/// The parser promises never to panic; a bug there must still not take the daemon down.
fn guarded<'x>(parse: impl FnOnce() -> Option<Message<'x>>) -> Option<Message<'x>> {
    match catch_unwind(AssertUnwindSafe(parse)) {
        Ok(Some(message)) if !message.parts.is_empty() => Some(message),
        _ => None,
    }
}

/// Counts lines that look like header fields and lines that look like MIME delimiters.
fn count_structure(raw: &[u8]) -> (usize, usize) {
    let mut fields = 0;
    let mut delimiters = 0;
    for line in raw.split(|b| *b == b'\n') {
        if line.starts_with(b"--") {
            delimiters += 1;
        } else if field_name(line).is_some() {
            fields += 1;
        }
    }
    (fields, delimiters)
}

/// The offset after the first `max` top-level header fields (or the whole header block).
fn top_fields_end(raw: &[u8], max: usize) -> usize {
    let mut offset = 0;
    let mut fields = 0;
    for line in raw.split_inclusive(|b| *b == b'\n') {
        let bare = line.strip_suffix(b"\n").unwrap_or(line);
        let bare = bare.strip_suffix(b"\r").unwrap_or(bare);
        if bare.is_empty() {
            return offset + line.len();
        }
        if !bare.starts_with(b" ") && !bare.starts_with(b"\t") {
            fields += 1;
            if fields > max {
                return offset;
            }
        }
        offset += line.len();
    }
    offset
}

/// Whether the message is visibly broken: stray lines in its header block, a multipart
/// type without a boundary, or a boundary whose closing delimiter never comes.
pub fn is_malformed(raw: &[u8], message: &Message<'_>) -> bool {
    let stray_line = header_lines(raw)
        .any(|l| !l.starts_with(b" ") && !l.starts_with(b"\t") && field_name(l).is_none());
    if stray_line {
        return true;
    }
    let Some(ct) = message.content_type() else {
        return false;
    };
    if !ct.ctype().eq_ignore_ascii_case("multipart") {
        return false;
    }
    let Some(boundary) = ct.attribute("boundary") else {
        return true;
    };
    let closing = [b"--", boundary.as_bytes(), b"--"].concat();
    !contains(raw, &closing)
}

/// Searches from the end: a closing delimiter is normally in the last lines.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && memchr::memmem::rfind(haystack, needle).is_some()
}

/// The first value of a header field the parser does not know, as text.
pub fn other_header<'m>(message: &'m Message<'_>, name: &str) -> Vec<&'m str> {
    message
        .headers()
        .iter()
        .filter(|h| h.name.as_str().eq_ignore_ascii_case(name))
        .filter_map(|h| h.value.as_text())
        .collect()
}

/// Whether the message has a header field of this name.
pub fn has_header(message: &Message<'_>, name: &str) -> bool {
    message
        .headers()
        .iter()
        .any(|h| h.name.as_str().eq_ignore_ascii_case(name))
}

/// The header names that carry party addresses (ARCHITECTURE.md §4).
pub fn is_party_field(name: &HeaderName<'_>) -> bool {
    matches!(
        name,
        HeaderName::From
            | HeaderName::Sender
            | HeaderName::ReplyTo
            | HeaderName::To
            | HeaderName::Cc
            | HeaderName::Bcc
            | HeaderName::ResentFrom
            | HeaderName::ResentSender
            | HeaderName::ResentTo
            | HeaderName::ResentCc
            | HeaderName::ResentBcc
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_tells_mail_from_other_input() {
        assert_eq!(check_is_mail(b""), Err(Refusal::Empty));
        assert_eq!(check_is_mail(b" \r\n\n"), Err(Refusal::Empty));
        assert!(matches!(
            check_is_mail(b"Dear diary,\nit rained.\n"),
            Err(Refusal::NotMail(_))
        ));
        assert!(matches!(
            check_is_mail(b"{\"a\": 1}\n"),
            Err(Refusal::NotMail(_))
        ));
        assert!(matches!(
            check_is_mail(b"X-Foo: bar\r\n\r\nhi"),
            Err(Refusal::NotMail(_))
        ));
        assert!(check_is_mail(b"Subject: hi\r\n\r\nbody").is_ok());
        assert!(check_is_mail(b"X-Foo: bar\r\nfrom: a@b.test\r\n").is_ok());
    }

    #[test]
    fn line_ends_become_crlf_and_mbox_lines_go() {
        assert_eq!(
            normalise(b"A: b\nC: d\r\n\nx\n".to_vec()),
            b"A: b\r\nC: d\r\n\r\nx\r\n"
        );
        assert_eq!(
            normalise(b"From a@b Mon Jan 1\nA: b\n".to_vec()),
            b"A: b\r\n"
        );
        assert_eq!(normalise(b"From: a@b\r\n".to_vec()), b"From: a@b\r\n");
    }

    #[test]
    fn floods_of_fields_are_parsed_within_bounds() {
        let mut raw = b"From: a@b.test\r\nSubject: flood\r\n".to_vec();
        for i in 0..(MAX_FIELD_LINES + 10) {
            raw.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\nbody\r\n");
        let message = parse_head(&raw).unwrap();
        assert_eq!(message.headers().len(), MAX_TOP_FIELDS);
        assert_eq!(message.subject(), Some("flood"));
        assert!(parse_full(&raw).is_none());
    }
}
