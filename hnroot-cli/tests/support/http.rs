//! A tiny HTTP/1.1 file server on 127.0.0.1 for the stage tests, with the ways a server can
//! misbehave.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A tiny HTTP/1.1 file server on 127.0.0.1: `GET /NAME` with or without `Range: bytes=A-B`,
/// one request per connection. `cut_after`: the first whole-body answer stops after that many
/// bytes (a connection cut); `stall_after`: the first whole-body answer sends that many bytes
/// and then nothing, holding the connection open; `delay_per_mib`: it sends slowly;
/// `claim_extra`: it says every file is that many bytes longer than it is (and sends what it
/// has); `redirect`: a request for the first name is answered with a redirect to the second;
/// `range_shift`: a range is answered with the bytes that many further on (its header says
/// the range asked for); `misstate_range`: a range is answered with a header naming another.
/// `body_bytes` counts the bytes of files sent.
pub struct Server {
    pub port: u16,
    pub requests: Arc<AtomicU64>,
    pub body_bytes: Arc<AtomicU64>,
}

#[derive(Clone, Default)]
pub struct Behaviour {
    pub cut_after: Option<u64>,
    pub stall_after: Option<u64>,
    pub delay_per_mib: Option<Duration>,
    pub claim_extra: u64,
    pub redirect: Option<(String, String)>,
    pub range_shift: u64,
    pub misstate_range: bool,
}

impl Server {
    pub fn start(root: PathBuf, behaviour: Behaviour) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicU64::new(0));
        let body_bytes = Arc::new(AtomicU64::new(0));
        let counter = requests.clone();
        let sent_bytes = body_bytes.clone();
        std::thread::spawn(move || {
            let mut cut_done = false;
            for stream in listener.incoming().flatten() {
                counter.fetch_add(1, Ordering::SeqCst);
                let mut b = behaviour.clone();
                if cut_done {
                    b.cut_after = None;
                    b.stall_after = None;
                }
                if serve(stream, &root, &b, &sent_bytes).unwrap_or(false) {
                    cut_done = true;
                }
            }
        });
        Server {
            port,
            requests,
            body_bytes,
        }
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }
}

/// Serve one request; `Ok(true)` when the answer was cut or stalled.
fn serve(
    mut stream: TcpStream,
    root: &Path,
    b: &Behaviour,
    sent_bytes: &AtomicU64,
) -> std::io::Result<bool> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .trim_start_matches('/')
        .to_owned();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
            let (a, b) = v.trim().split_once('-').unwrap();
            range = Some((a.parse::<u64>().unwrap(), b.parse::<u64>().ok()));
        }
    }
    if let Some((from, to)) = &b.redirect {
        if path == *from {
            stream.write_all(
                format!(
                    "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            )?;
            return Ok(false);
        }
    }
    let Ok(data) = std::fs::read(root.join(&path)) else {
        stream.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return Ok(false);
    };
    let real = data.len() as u64;
    let len = real + b.claim_extra;
    let (start, end, head) = match range {
        Some((a, z)) => {
            let end = z.unwrap_or(len - 1).min(len - 1);
            let named = if b.misstate_range { a + 1 } else { a };
            (a + b.range_shift, end + b.range_shift, format!("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {named}-{end}/{len}\r\nETag: \"v1\"\r\n"))
        }
        None => (0, len - 1, "HTTP/1.1 200 OK\r\nETag: \"v1\"\r\n".to_owned()),
    };
    // What it has of what it claims.
    let body = &data[start.min(real) as usize..(end + 1).min(real) as usize];
    stream.write_all(
        format!(
            "{head}Content-Length: {}\r\nConnection: close\r\n\r\n",
            end + 1 - start
        )
        .as_bytes(),
    )?;
    let mut sent = 0u64;
    for chunk in body.chunks(1 << 20) {
        if range.is_none() {
            if let Some(c) = b.cut_after {
                if sent + chunk.len() as u64 > c {
                    stream.write_all(&chunk[..(c - sent) as usize])?;
                    return Ok(true);
                }
            }
            if let Some(c) = b.stall_after {
                if sent + chunk.len() as u64 > c {
                    stream.write_all(&chunk[..(c - sent) as usize])?;
                    stream.flush()?;
                    // Nothing more, the connection held open.
                    let held = stream;
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_secs(600));
                        drop(held);
                    });
                    return Ok(true);
                }
            }
        }
        stream.write_all(chunk)?;
        sent += chunk.len() as u64;
        sent_bytes.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        if let Some(d) = b.delay_per_mib {
            std::thread::sleep(d);
        }
    }
    Ok(false)
}
