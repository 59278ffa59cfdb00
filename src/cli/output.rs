//! Printing answers: aligned tables for people, one JSON array (or object) for scripts.

use serde::Serialize;

use crate::admin::views::{
    ChannelView, ContactView, MessageDetail, MessageSummary, ProjectView, RelayView, StatsView,
    UserView,
};

fn json<T: Serialize + ?Sized>(value: &T) {
    // These plain records always serialise.
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// Prints rows under a header, each column as wide as its widest cell.
fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes".into() } else { "no".into() }
}

fn flags(shared: bool, exclude: bool, active: bool) -> String {
    let mut f = vec![if shared { "shared" } else { "private" }];
    if exclude {
        f.push("excluded");
    }
    if !active {
        f.push("inactive");
    }
    f.join(",")
}

pub fn users(users: &[UserView], as_json: bool) {
    if as_json {
        return json(users);
    }
    let rows = users
        .iter()
        .map(|u| {
            vec![
                u.login.clone(),
                if u.password { "password" } else { "ldap" }.into(),
                yes_no(u.show_only_active),
                u.addresses.join(", "),
            ]
        })
        .collect();
    table(&["LOGIN", "LOGIN BY", "ONLY ACTIVE", "ADDRESSES"], rows);
}

pub fn contacts(contacts: &[ContactView], as_json: bool) {
    if as_json {
        return json(contacts);
    }
    let rows = contacts
        .iter()
        .map(|c| {
            let channels: Vec<String> = c
                .channels
                .iter()
                .map(|ch| {
                    format!(
                        "{} ({})",
                        ch.address,
                        flags(ch.shared, ch.exclude, ch.active)
                    )
                })
                .collect();
            vec![
                c.id.to_string(),
                c.name.clone(),
                c.company.clone().unwrap_or_default(),
                c.user.clone().unwrap_or_default(),
                channels.join(", "),
            ]
        })
        .collect();
    table(&["ID", "NAME", "COMPANY", "USER", "ADDRESSES"], rows);
}

pub fn channels(channels: &[ChannelView], as_json: bool) {
    if as_json {
        return json(channels);
    }
    let rows = channels
        .iter()
        .map(|c| {
            vec![
                c.address.clone(),
                flags(c.shared, c.exclude, c.active),
                c.user.clone().unwrap_or_default(),
                c.contact.clone(),
            ]
        })
        .collect();
    table(&["ADDRESS", "FLAGS", "USER", "CONTACT"], rows);
}

pub fn relays(relays: &[RelayView], as_json: bool) {
    if as_json {
        return json(relays);
    }
    table(
        &["NAME"],
        relays.iter().map(|r| vec![r.name.clone()]).collect(),
    );
}

pub fn projects(projects: &[ProjectView], as_json: bool) {
    if as_json {
        return json(projects);
    }
    let rows = projects
        .iter()
        .map(|p| {
            vec![
                p.path.clone(),
                p.messages.to_string(),
                p.uid_validity.to_string(),
                p.uid_next.to_string(),
            ]
        })
        .collect();
    table(&["PROJECT", "MESSAGES", "UIDVALIDITY", "UIDNEXT"], rows);
}

fn audience(m: &MessageSummary) -> String {
    let mut s = match m.visibility.as_str() {
        "all" => "all".to_owned(),
        _ if m.visible_to.is_empty() => "nobody".to_owned(),
        _ => m.visible_to.join(","),
    };
    if m.inactive_only {
        s.push_str(" (inactive)");
    }
    s
}

pub fn messages(messages: &[MessageSummary], as_json: bool) {
    if as_json {
        return json(messages);
    }
    let rows = messages
        .iter()
        .map(|m| {
            vec![
                m.id.to_string(),
                m.date.map(time).unwrap_or_default(),
                m.from.clone().unwrap_or_default(),
                audience(m),
                m.projects.join(","),
                m.subject.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &["ID", "DATE", "FROM", "VISIBLE TO", "PROJECTS", "SUBJECT"],
        rows,
    );
}

pub fn message(m: &MessageDetail, as_json: bool) {
    if as_json {
        return json(m);
    }
    let s = &m.summary;
    let field = |name: &str, value: String| println!("{:<15}{value}", format!("{name}:"));
    field("id", s.id.to_string());
    field(
        "message-id",
        s.message_id.clone().unwrap_or_else(|| "(none)".into()),
    );
    field("subject", s.subject.clone().unwrap_or_default());
    field("from", s.from.clone().unwrap_or_default());
    field("date", s.date.map(time).unwrap_or_else(|| "(none)".into()));
    field("received", time(s.received));
    field("size", format!("{} bytes", s.size));
    field("visibility", s.visibility.clone());
    field(
        "visible to",
        if s.visible_to.is_empty() {
            "nobody".into()
        } else {
            s.visible_to.join(", ")
        },
    );
    field("inactive only", yes_no(s.inactive_only));
    field("journal", yes_no(s.journal));
    field("malformed", yes_no(s.malformed));
    field("copies", s.copies.to_string());
    field("parties", s.parties.join(", "));
    if !m.extra_recipients.is_empty() {
        field("recipients", m.extra_recipients.join(", "));
    }
    field("content hash", m.content_hash.clone());
    println!("sources:");
    for src in &m.sources {
        let mut line = format!(
            "  {} UID {}: {} {} at {}",
            src.project,
            src.uid,
            src.kind,
            src.detail,
            time(src.received)
        );
        if let Some(from) = &src.mail_from {
            line.push_str(&format!(
                "; MAIL FROM <{from}> RCPT TO {}",
                src.recipients.join(", ")
            ));
        }
        println!("{line}");
    }
    match &m.auth {
        Some(a) => {
            println!("authentication (checked {}):", time(a.checked));
            println!("  dkim:  {}", a.dkim.join("; "));
            println!("  arc:   {}", a.arc);
            println!("  spf:   {}", a.spf);
            println!("  dmarc: {}", a.dmarc);
        }
        None => println!("authentication: not checked"),
    }
}

pub fn stats(s: &StatsView, as_json: bool) {
    if as_json {
        return json(s);
    }
    let ratio = if s.raw_bytes > 0 {
        format!(
            " ({:.0}% of raw)",
            100.0 * s.stored_bytes as f64 / s.raw_bytes as f64
        )
    } else {
        String::new()
    };
    println!("messages:          {}", s.messages);
    println!("duplicates merged: {}", s.duplicates_merged);
    println!("raw bytes:         {}", s.raw_bytes);
    println!("stored bytes:      {}{ratio}", s.stored_bytes);
    println!("disk bytes:        {}", s.disk_bytes);
    println!("projects:          {}", s.projects);
    println!("contacts:          {}", s.contacts);
    println!("channels:          {}", s.channels);
    println!("users:             {}", s.users);
    println!("relays:            {}", s.relays);
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn time(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01, by eras of 400 years.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_in_utc() {
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(time(1_712_049_300), "2024-04-02 09:15:00 UTC");
        assert_eq!(time(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(time(-86_400), "1969-12-31 00:00:00 UTC");
    }
}
