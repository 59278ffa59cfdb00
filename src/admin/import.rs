//! Reading messages to import: `.eml` files, mbox files, Maildir folders, directories of
//! these, and one message on standard input.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Files in a Maildir that hold its IMAP server's state, not mail.
const MAILDIR_STATE_FILES: &[&str] = &[
    "dovecot-uidlist",
    "dovecot-keywords",
    "maildirfolder",
    "subscriptions",
    "dovecot-uidvalidity",
];

/// One thing to read messages from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// One message in a file.
    Eml(PathBuf),
    /// Many messages, each opened by a `From ` line.
    Mbox(PathBuf),
    /// One message on standard input.
    Stdin,
}

impl Input {
    pub fn path(&self) -> Option<&Path> {
        match self {
            Input::Eml(p) | Input::Mbox(p) => Some(p),
            Input::Stdin => None,
        }
    }

    /// Bytes to read, for progress; 0 for standard input.
    pub fn size(&self) -> u64 {
        self.path()
            .and_then(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .unwrap_or(0)
    }
}

/// Resolves the command-line paths into inputs, in a stable order. Fails before anything
/// is imported if a path does not exist.
pub fn collect(paths: &[PathBuf]) -> io::Result<Vec<Input>> {
    let mut out = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            out.push(Input::Stdin);
            continue;
        }
        let meta = std::fs::metadata(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        if meta.is_dir() {
            walk(path, &mut out)?;
        } else {
            out.push(classify_file(path)?);
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<Input>) -> io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<_>>()?;
    entries.sort();
    let is_maildir = dir.join("cur").is_dir() || dir.join("new").is_dir();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            // Maildir's tmp/ holds deliveries still being written.
            if !(is_maildir && name == "tmp") {
                walk(&path, out)?;
            }
            continue;
        }
        // Dot files are editor, VCS and desktop state, never mail.
        if name.starts_with('.') || is_maildir_state(name) {
            continue;
        }
        out.push(classify_file(&path)?);
    }
    Ok(())
}

fn is_maildir_state(name: &str) -> bool {
    MAILDIR_STATE_FILES.contains(&name)
        || name.starts_with("dovecot.")
        || name.starts_with("courier")
}

fn classify_file(path: &Path) -> io::Result<Input> {
    let mut head = [0u8; 5];
    let mut f = File::open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let n = f.read(&mut head)?;
    Ok(if &head[..n] == b"From " && is_mbox(path)? {
        Input::Mbox(path.to_owned())
    } else {
        Input::Eml(path.to_owned())
    })
}

/// A file opening with `From ` is an mbox when a second such line follows a blank line,
/// or when it has the `.mbox` extension; otherwise it is one message that kept its
/// envelope line.
fn is_mbox(path: &Path) -> io::Result<bool> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("mbox"))
    {
        return Ok(true);
    }
    let mut reader = BufReader::new(File::open(path)?);
    let mut line = Vec::new();
    let mut previous_blank = false;
    let mut first = true;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(false);
        }
        if !first && previous_blank && line.starts_with(b"From ") {
            return Ok(true);
        }
        first = false;
        previous_blank = matches!(line.as_slice(), b"\n" | b"\r\n");
    }
}

/// Reads every message of an input.
pub fn read(input: &Input) -> io::Result<Box<dyn Iterator<Item = io::Result<Vec<u8>>> + Send>> {
    match input {
        Input::Stdin => {
            let mut raw = Vec::new();
            io::stdin().lock().read_to_end(&mut raw)?;
            Ok(Box::new(std::iter::once(Ok(raw))))
        }
        Input::Eml(path) => {
            let raw = std::fs::read(path)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            Ok(Box::new(std::iter::once(Ok(raw))))
        }
        Input::Mbox(path) => {
            let file = File::open(path)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            Ok(Box::new(Mbox::new(BufReader::new(file))))
        }
    }
}

/// Splits an mbox into messages. A message starts at a `From ` line at the start of the
/// file or after a blank line; `>From ` quoting (mboxrd) is undone, and the blank line the
/// format puts between messages is dropped.
#[derive(Debug)]
pub struct Mbox<R> {
    reader: R,
    /// The `From ` line that opened the message being read, consumed.
    started: bool,
    done: bool,
}

impl<R: BufRead> Mbox<R> {
    pub fn new(reader: R) -> Mbox<R> {
        Mbox {
            reader,
            started: false,
            done: false,
        }
    }

    fn next_message(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut message = Vec::new();
        let mut line = Vec::new();
        let mut previous_blank = true;
        loop {
            line.clear();
            if self.reader.read_until(b'\n', &mut line)? == 0 {
                self.done = true;
                break;
            }
            if line.starts_with(b"From ") && previous_blank {
                if self.started {
                    break;
                }
                self.started = true;
                continue;
            }
            if !self.started {
                // Text before the first `From ` line is not part of any message.
                previous_blank = is_blank(&line);
                continue;
            }
            previous_blank = is_blank(&line);
            message.extend_from_slice(unquote(&line));
        }
        if !self.started || (message.is_empty() && self.done) {
            return Ok(None);
        }
        if message.ends_with(b"\r\n\r\n") {
            message.truncate(message.len() - 2);
        } else if message.ends_with(b"\n\n") {
            message.truncate(message.len() - 1);
        }
        Ok(Some(message))
    }
}

fn is_blank(line: &[u8]) -> bool {
    matches!(line, b"\n" | b"\r\n")
}

/// mboxrd: a line of `>`s followed by `From ` lost one `>` when it was written.
fn unquote(line: &[u8]) -> &[u8] {
    let quotes = line.iter().take_while(|b| **b == b'>').count();
    if quotes > 0 && line[quotes..].starts_with(b"From ") {
        &line[1..]
    } else {
        line
    }
}

impl<R: BufRead> Iterator for Mbox<R> {
    type Item = io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        self.next_message().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbox_splits_and_unquotes() {
        let text = b"From a@x Mon Jan  1 00:00:00 2024\nSubject: one\n\nbody\n>From here\n\n\
                     From b@x Mon Jan  1 00:00:01 2024\nSubject: two\n\n\
                     body\nFrom mid-paragraph is text\n";
        let msgs: Vec<Vec<u8>> = Mbox::new(&text[..]).map(Result::unwrap).collect();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0], b"Subject: one\n\nbody\nFrom here\n");
        // Only a `From ` line after a blank line starts a message.
        assert_eq!(
            msgs[1],
            b"Subject: two\n\nbody\nFrom mid-paragraph is text\n"
        );
    }

    #[test]
    fn empty_mbox_has_no_messages() {
        assert_eq!(Mbox::new(&b""[..]).count(), 0);
        assert_eq!(Mbox::new(&b"no from line\n"[..]).count(), 0);
    }

    #[test]
    fn maildirs_and_mboxes_are_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let md = dir.path().join("Maildir");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(md.join(sub)).unwrap();
        }
        std::fs::write(md.join("cur/1:2,S"), b"Subject: a\r\n\r\nx").unwrap();
        std::fs::write(md.join("new/2"), b"Subject: b\r\n\r\ny").unwrap();
        std::fs::write(md.join("tmp/3"), b"Subject: partial").unwrap();
        std::fs::write(md.join("dovecot-uidlist"), b"3 V1 N4").unwrap();
        let mbox = dir.path().join("archive");
        std::fs::write(
            &mbox,
            b"From a\nSubject: a\n\nx\n\nFrom b\nSubject: b\n\ny\n",
        )
        .unwrap();
        let single = dir.path().join("one.eml");
        std::fs::write(&single, b"From a\nSubject: a\n\nx\n").unwrap();

        let inputs = collect(&[md.clone(), mbox.clone(), single.clone()]).unwrap();
        assert_eq!(
            inputs,
            vec![
                Input::Eml(md.join("cur/1:2,S")),
                Input::Eml(md.join("new/2")),
                Input::Mbox(mbox),
                Input::Eml(single),
            ]
        );
        assert!(collect(&[dir.path().join("missing")]).is_err());
    }
}
