//! A small HTTP/1.1 file server on the host's loopback (127.0.0.1 only, a port the kernel
//! picks) for the guests of the QEMU scenarios: QEMU's user network shows the host's
//! 127.0.0.1 to the guest as [`GUEST_HOST_ADDR`]. It serves the regular files of one directory
//! (flat names only) to `GET` and `HEAD`, with byte ranges (`Range: bytes=A-B`, `bytes=A-`,
//! `If-Range`), `Content-Length`, `Content-Range` and an `ETag`; anything else is a 404, 405 or
//! 416. One request per connection (`Connection: close`). It counts what it served per file, so
//! a scenario can show the guest fetched the bytes from it. It never connects anywhere.
//!
//! Bounded: connections ([`MAX_CONNECTIONS`]), the request head ([`MAX_HEAD`]), and a timeout
//! on every socket read and write; the server stops when dropped.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context, Result};

/// The host's 127.0.0.1 as a guest on QEMU's user network sees it.
pub const GUEST_HOST_ADDR: &str = "10.0.2.2";
/// Connections served in a server's life; past that it stops accepting.
pub const MAX_CONNECTIONS: usize = 4096;
/// Largest request head read.
const MAX_HEAD: usize = 16 * 1024;
/// Bound on every read from and write to a client.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the accept loop looks at the stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(20);
/// Bytes sent per write.
const CHUNK: usize = 256 * 1024;

/// What was served of one file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Served {
    /// Requests answered with the file (200 or 206).
    pub requests: usize,
    /// Body bytes sent.
    pub bytes: u64,
}

/// Counts per requested path, and requests that found nothing.
type Counts = Arc<Mutex<BTreeMap<String, Served>>>;

/// A running server; stops when dropped.
#[derive(Debug)]
pub struct FileServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    counts: Counts,
    thread: Option<JoinHandle<()>>,
}

impl FileServer {
    /// Serve the files of `dir` on 127.0.0.1 at a port the kernel picks.
    pub fn start(dir: &Path) -> Result<FileServer> {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot listen on 127.0.0.1")?;
        listener
            .set_nonblocking(true)
            .context("cannot make the listener non-blocking")?;
        let addr = listener.local_addr().context("the listener's address")?;
        let stop = Arc::new(AtomicBool::new(false));
        let counts: Counts = Arc::default();
        let dir = dir.to_path_buf();
        let thread = {
            let (stop, counts) = (stop.clone(), counts.clone());
            thread::Builder::new()
                .name("hnroot-test-http".into())
                .spawn(move || accept_loop(&listener, &dir, &stop, &counts))
                .context("cannot start the server thread")?
        };
        Ok(FileServer {
            addr,
            stop,
            counts,
            thread: Some(thread),
        })
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The URL of `name` as a guest on QEMU's user network reaches it.
    pub fn guest_url(&self, name: &str) -> String {
        format!("http://{GUEST_HOST_ADDR}:{}/{name}", self.port())
    }

    /// What was served of `name` so far.
    pub fn served(&self, name: &str) -> Served {
        self.counts
            .lock()
            .ok()
            .and_then(|c| c.get(name).copied())
            .unwrap_or_default()
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, dir: &Path, stop: &AtomicBool, counts: &Counts) {
    let mut served = 0usize;
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::SeqCst) && served < MAX_CONNECTIONS {
        match listener.accept() {
            Ok((stream, _)) => {
                served += 1;
                let (dir, counts) = (dir.to_path_buf(), counts.clone());
                if let Ok(t) = thread::Builder::new()
                    .name("hnroot-test-http-conn".into())
                    .spawn(move || {
                        let _ = serve(stream, &dir, &counts);
                    })
                {
                    workers.push(t);
                }
                workers.retain(|t| !t.is_finished());
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(ACCEPT_POLL),
            Err(_) => thread::sleep(ACCEPT_POLL),
        }
    }
    // Each worker is bounded by IO_TIMEOUT on every read and write.
    for t in workers {
        let _ = t.join();
    }
}

/// A parsed request head.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    method: String,
    path: String,
    range: Option<String>,
    if_range: Option<String>,
}

fn parse_head(head: &str) -> Option<Request> {
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
    let mut req = Request {
        method,
        path,
        range: None,
        if_range: None,
    };
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        match k.trim().to_ascii_lowercase().as_str() {
            "range" => req.range = Some(v.trim().to_string()),
            "if-range" => req.if_range = Some(v.trim().to_string()),
            _ => {}
        }
    }
    Some(req)
}

/// `bytes=A-B` or `bytes=A-` against a file of `len` bytes: the inclusive range, or `None`
/// when unsatisfiable or not of these forms.
fn parse_range(spec: &str, len: u64) -> Option<(u64, u64)> {
    let (a, b) = spec.trim().strip_prefix("bytes=")?.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end = match b.trim() {
        "" => len.checked_sub(1)?,
        b => b.parse::<u64>().ok()?.min(len.checked_sub(1)?),
    };
    (start <= end && start < len).then_some((start, end))
}

/// A flat file name of `dir` for a request path, or `None`.
fn file_for(dir: &Path, path: &str) -> Option<PathBuf> {
    let name = path.strip_prefix('/')?;
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    ok.then(|| dir.join(name))
}

fn serve(mut stream: TcpStream, dir: &Path, counts: &Counts) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            return respond(&mut stream, "431 Request Header Fields Too Large", &[], b"");
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let Some(req) = parse_head(&String::from_utf8_lossy(&head)) else {
        return respond(&mut stream, "400 Bad Request", &[], b"");
    };
    if req.method != "GET" && req.method != "HEAD" {
        return respond(&mut stream, "405 Method Not Allowed", &[], b"");
    }
    let Some(path) = file_for(dir, &req.path) else {
        return respond(&mut stream, "404 Not Found", &[], b"");
    };
    let Ok(mut file) = File::open(&path) else {
        return respond(&mut stream, "404 Not Found", &[], b"");
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return respond(&mut stream, "404 Not Found", &[], b"");
    }
    let len = meta.len();
    let etag = format!("\"{len:x}-{:x}\"", meta.mtime_nsec() ^ meta.mtime());
    let range_applies = req.if_range.as_ref().is_none_or(|v| *v == etag);
    let (status, start, end) = match req.range.as_deref().filter(|_| range_applies) {
        None => ("200 OK", 0, len),
        Some(spec) => match parse_range(spec, len) {
            Some((a, b)) => ("206 Partial Content", a, b + 1),
            None => {
                let cr = format!("bytes */{len}");
                return respond(
                    &mut stream,
                    "416 Range Not Satisfiable",
                    &[("Content-Range", &cr)],
                    b"",
                );
            }
        },
    };
    let mut headers = vec![
        ("Content-Length".to_string(), (end - start).to_string()),
        ("ETag".to_string(), etag),
        ("Accept-Ranges".to_string(), "bytes".to_string()),
    ];
    if status.starts_with("206") {
        headers.push((
            "Content-Range".to_string(),
            format!("bytes {start}-{}/{len}", end - 1),
        ));
    }
    write_head(&mut stream, status, &headers)?;
    let name = req.path.trim_start_matches('/').to_string();
    if req.method == "HEAD" {
        return Ok(());
    }
    file.seek(SeekFrom::Start(start))?;
    let mut left = end - start;
    let mut chunk = vec![0u8; CHUNK];
    let mut sent = 0u64;
    let result = loop {
        if left == 0 {
            break Ok(());
        }
        let want = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
        if let Err(e) = file.read_exact(&mut chunk[..want]) {
            break Err(e);
        }
        if let Err(e) = stream.write_all(&chunk[..want]) {
            break Err(e);
        }
        left -= want as u64;
        sent += want as u64;
    };
    if let Ok(mut c) = counts.lock() {
        let entry = c.entry(name).or_default();
        entry.requests += 1;
        entry.bytes += sent;
    }
    result
}

fn write_head(
    stream: &mut TcpStream,
    status: &str,
    headers: &[(String, String)],
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    let mut all: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    all.push(("Content-Length".to_string(), body.len().to_string()));
    write_head(stream, status, &all)?;
    stream.write_all(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(port: u16, path: &str, extra: &str) -> (String, Vec<u8>) {
        let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        let at = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        (
            String::from_utf8_lossy(&all[..at]).into_owned(),
            all[at + 4..].to_vec(),
        )
    }

    #[test]
    fn ranges_whole_files_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        std::fs::write(dir.path().join("img.bin"), &data).unwrap();
        let server = FileServer::start(dir.path()).unwrap();
        let port = server.port();
        assert_eq!(
            server.guest_url("img.bin"),
            format!("http://10.0.2.2:{port}/img.bin")
        );

        let (head, body) = get(port, "/img.bin", "");
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert!(head.contains("Content-Length: 1000"), "{head}");
        assert_eq!(body, data);

        let (head, body) = get(port, "/img.bin", "Range: bytes=0-0\r\n");
        assert!(head.starts_with("HTTP/1.1 206"), "{head}");
        assert!(head.contains("Content-Range: bytes 0-0/1000"), "{head}");
        assert_eq!(body, [0]);

        let (head, body) = get(port, "/img.bin", "Range: bytes=990-\r\n");
        assert!(head.contains("Content-Range: bytes 990-999/1000"), "{head}");
        assert_eq!(body, &data[990..]);

        let (head, _) = get(port, "/img.bin", "Range: bytes=1000-1001\r\n");
        assert!(head.starts_with("HTTP/1.1 416"), "{head}");

        // A stale validator: the whole file again.
        let (head, body) = get(
            port,
            "/img.bin",
            "Range: bytes=10-\r\nIf-Range: \"other\"\r\n",
        );
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body.len(), 1000);

        for bad in ["/nothing", "/../img.bin", "/", "/.hidden"] {
            let (head, _) = get(port, bad, "");
            assert!(head.starts_with("HTTP/1.1 404"), "{bad}: {head}");
        }
        let served = server.served("img.bin");
        assert_eq!(served.requests, 4);
        assert_eq!(served.bytes, 1000 + 1 + 10 + 1000);
        assert_eq!(server.served("nothing"), Served::default());
    }

    #[test]
    fn ranges_are_checked_against_the_length() {
        assert_eq!(parse_range("bytes=0-0", 10), Some((0, 0)));
        assert_eq!(parse_range("bytes=5-", 10), Some((5, 9)));
        assert_eq!(parse_range("bytes=5-100", 10), Some((5, 9)));
        assert_eq!(parse_range("bytes=10-", 10), None);
        assert_eq!(parse_range("bytes=3-2", 10), None);
        assert_eq!(parse_range("bytes=-5", 10), None);
        assert_eq!(parse_range("items=0-1", 10), None);
        assert_eq!(parse_range("bytes=0-0", 0), None);
    }
}
