//! A raw SMTP/LMTP client over any byte stream, for what no peer will send: smuggled
//! terminators, pipelined bursts, over-long lines, clients that fall silent, BDAT.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long a reply may take before the test fails instead of hanging.
const REPLY_TIMEOUT: Duration = Duration::from_secs(15);

/// A connection that sends bytes as given and reads whole replies.
#[derive(Debug)]
pub struct SmtpClient<S> {
    io: BufReader<S>,
}

impl SmtpClient<TcpStream> {
    /// Connects to 127.0.0.1:`port`, with a read timeout so that a missing reply fails.
    pub fn connect(port: u16) -> SmtpClient<TcpStream> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
        SmtpClient::over_tcp(stream)
    }

    /// Wraps a connected socket, setting its read timeout.
    pub fn over_tcp(stream: TcpStream) -> SmtpClient<TcpStream> {
        stream
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .expect("set a read timeout");
        SmtpClient::new(stream)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.io.get_ref().local_addr().expect("a connected socket")
    }
}

impl<S: Read + Write> SmtpClient<S> {
    pub fn new(stream: S) -> SmtpClient<S> {
        SmtpClient {
            io: BufReader::new(stream),
        }
    }

    /// One whole reply, every line of it with its CRLF; empty when the server closed.
    pub fn reply(&mut self) -> String {
        let mut reply = String::new();
        loop {
            let mut line = Vec::new();
            let n = self
                .io
                .read_until(b'\n', &mut line)
                .unwrap_or_else(|e| panic!("reading a reply (so far {reply:?}): {e}"));
            if n == 0 {
                return reply;
            }
            reply.push_str(&String::from_utf8_lossy(&line));
            if line.get(3) != Some(&b'-') {
                return reply;
            }
        }
    }

    /// Writes `bytes` as they are, in one write.
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        let stream = self.io.get_mut();
        stream
            .write_all(bytes.as_ref())
            .expect("send to the server");
        stream.flush().expect("flush to the server");
    }

    /// Sends `line` with CRLF and returns the reply.
    pub fn command(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n"));
        self.reply()
    }

    /// Sends `line` with CRLF and asserts that the reply's codes (see [`status`]) are
    /// `expected`; returns the reply.
    #[track_caller]
    pub fn expect(&mut self, line: &str, expected: &str) -> String {
        let reply = self.command(line);
        assert_eq!(status(&reply), expected, "{line:?} was answered {reply:?}");
        reply
    }

    /// Reads until the server closes; true if it closed without sending anything more.
    pub fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        match self.io.read_to_end(&mut rest) {
            Ok(_) => rest.is_empty(),
            // A server that closes with unread input in its buffer resets the connection.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => rest.is_empty(),
            Err(e) => panic!("waiting for the server to close: {e}"),
        }
    }

    /// The stream, for a TLS handshake after STARTTLS. Panics if the server sent bytes
    /// that were read but not consumed: those would be lost (or be an injection).
    pub fn into_inner(self) -> S {
        assert!(
            self.io.buffer().is_empty(),
            "unread bytes before the handshake: {:?}",
            String::from_utf8_lossy(self.io.buffer())
        );
        self.io.into_inner()
    }

    pub fn get_ref(&self) -> &S {
        self.io.get_ref()
    }
}

/// The code and enhanced code of a reply's last line, `"250 2.1.5"`; the code alone when
/// the reply has no enhanced code.
pub fn status(reply: &str) -> &str {
    let last = reply.trim_end().rsplit("\r\n").next().unwrap_or_default();
    let mut end = 0;
    for (i, word) in last.split(' ').take(2).enumerate() {
        let is_code = if i == 0 {
            word.len() == 3 && word.bytes().all(|b| b.is_ascii_digit())
        } else {
            word.split('.').count() == 3 && word.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        };
        if !is_code {
            break;
        }
        end += word.len() + usize::from(i > 0);
    }
    &last[..end]
}
