//! Where `hnroot stage` reads an image from: a local path (a shared filesystem such as
//! `/warehouse/images/...` included) or an `http(s)://` URL (ureq with rustls; the system's
//! certificate store). Random access for probing the image before a byte is written (HTTP
//! `Range`), a stream from any offset for copying it (resuming an interrupted copy), a reflink
//! when the source and hostpart share a btrfs or XFS filesystem, and the signature beside it
//! (`SOURCE.minisig`).
//!
//! Every network wait has a deadline ([`Http`]): resolving, connecting, sending, the answer,
//! and each read of a body (a stalled transfer ends after that long, whatever its size).
//! Redirects are followed here, to `http://` and `https://` only. A local signature is read
//! only from a regular file of bounded size, opened non-blocking.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hnroot_linux::fsat::{self, ReadError};
use hnroot_linux::image::ImageReader;

/// Longest wait for an HTTP server to answer or to send the next bytes, unless the operator
/// says (`--timeout`).
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest signature file read.
const SIGNATURE_MAX: usize = 64 * 1024;
/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 10;
/// `FICLONE` (`_IOW(0x94, 9, int)`): share the source's extents (btrfs, XFS).
const FICLONE: libc::c_ulong = 0x4004_9409;

/// The HTTP client: every wait bounded by one deadline, redirects followed by
/// [`Http::get`] (never by the client itself), to `http(s)://` only.
#[derive(Clone, Debug)]
pub struct Http {
    agent: ureq::Agent,
    timeout: Duration,
}

impl Http {
    /// A client whose every wait (name lookup, connection, request, answer, and each read of a
    /// body) lasts at most `timeout`.
    pub fn new(timeout: Duration) -> Http {
        let agent = ureq::Agent::config_builder()
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                    .build(),
            )
            .timeout_resolve(Some(timeout))
            .timeout_connect(Some(timeout))
            .timeout_send_request(Some(timeout))
            .timeout_recv_response(Some(timeout))
            .timeout_per_read(Some(timeout))
            .timeout_per_write(Some(timeout))
            // A whole image takes as long as it takes; each read of it has the deadline above.
            .timeout_recv_body(None)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .http_status_as_error(false)
            .build()
            .new_agent();
        Http { agent, timeout }
    }

    /// `GET url` with `headers`, following redirects (at most [`MAX_REDIRECTS`], to
    /// `http://` and `https://` only): the answer, and the URL that gave it.
    pub fn get(
        &self,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<(ureq::http::Response<ureq::Body>, String)> {
        let mut at = url.to_owned();
        for _ in 0..=MAX_REDIRECTS {
            let mut req = self.agent.get(&at);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let resp = req.call().map_err(|e| self.error(&at, e))?;
            if !resp.status().is_redirection() {
                return Ok((resp, at));
            }
            let location = header(&resp, "location").with_context(|| {
                format!("{at} answered {} without saying where to", resp.status())
            })?;
            at = redirect_target(&at, &location).map_err(|why| {
                anyhow::anyhow!("{at} redirected to {location}: {why}; nothing was written")
            })?;
        }
        bail!("{url}: more than {MAX_REDIRECTS} redirects (a loop?); nothing was written")
    }

    /// An error of the client on `url`, saying which deadline passed when one did.
    fn error(&self, url: &str, e: ureq::Error) -> anyhow::Error {
        match e {
            ureq::Error::Timeout(what) => anyhow::anyhow!(
                "{url}: no answer within {} s ({what}; --timeout sets the deadline)",
                self.timeout.as_secs()
            ),
            other => anyhow::anyhow!("{url}: {other}"),
        }
    }

    /// The deadline of each wait.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// Why a redirect is not followed.
#[derive(Debug)]
pub enum RedirectRefused {
    /// It leads to another scheme than `http` or `https` (`file`, `ftp`).
    Scheme(String),
    /// The URL it came from, or where it leads, is not a URL.
    Unparsable(url::ParseError),
}

impl std::fmt::Display for RedirectRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedirectRefused::Scheme(s) => write!(
                f,
                "hnroot follows redirects to http:// and https:// only, not {s}://"
            ),
            RedirectRefused::Unparsable(e) => write!(f, "not a URL ({e})"),
        }
    }
}

/// Where a redirect from `base` to `location` leads (RFC 3986 reference resolution, by the
/// `url` crate): an `http(s)://` URL; anything else (`file://`, `ftp://`) is refused.
pub fn redirect_target(base: &str, location: &str) -> Result<String, RedirectRefused> {
    let base = url::Url::parse(base).map_err(RedirectRefused::Unparsable)?;
    let to = base
        .join(location.trim())
        .map_err(RedirectRefused::Unparsable)?;
    match to.scheme() {
        "http" | "https" => Ok(to.into()),
        other => Err(RedirectRefused::Scheme(other.to_owned())),
    }
}

/// An image to stage.
#[derive(Debug)]
pub enum Source {
    /// A local file.
    File {
        /// As the operator named it.
        path: PathBuf,
        /// Open for reading.
        file: File,
        /// Its length.
        len: u64,
    },
    /// A URL.
    Http {
        /// The URL.
        url: String,
        /// The HTTP client.
        http: Http,
        /// `Content-Length` of the whole image.
        len: u64,
        /// `ETag` (or `Last-Modified`), to resume only the same content.
        validator: Option<String>,
    },
}

fn is_url(text: &str) -> bool {
    text.starts_with("http://") || text.starts_with("https://")
}

/// A header's value as text.
fn header(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

impl Source {
    /// Open `text`: a URL (its length asked for with a one-byte range request, every wait
    /// bounded by `timeout`) or a path.
    pub fn open(text: &str, timeout: Duration) -> Result<Source> {
        if is_url(text) {
            let http = Http::new(timeout);
            let (resp, _) = http
                .get(text, &[("Range", "bytes=0-0")])
                .with_context(|| format!("asked {text} for the image"))?;
            if !resp.status().is_success() {
                bail!(
                    "asked {text} for the image: it answered {}; nothing was written",
                    resp.status()
                );
            }
            let validator = header(&resp, "etag").or_else(|| header(&resp, "last-modified"));
            let len = match resp.status().as_u16() {
                206 => header(&resp, "content-range")
                    .and_then(|r| r.rsplit('/').next().and_then(|n| n.parse().ok())),
                _ => header(&resp, "content-length").and_then(|n| n.parse().ok()),
            }
            .with_context(|| {
                format!("{text} answered without saying how long the image is (no Content-Range or Content-Length)")
            })?;
            return Ok(Source::Http {
                url: text.to_owned(),
                http,
                len,
                validator,
            });
        }
        let path = PathBuf::from(text);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(&path)
            .with_context(|| format!("looked for the image at {}", path.display()))?;
        let meta = file
            .metadata()
            .with_context(|| format!("{}", path.display()))?;
        if !meta.is_file() {
            bail!(
                "{} is not a regular file: an image to stage is a file (the staged copy is \
                 one too); nothing was written",
                path.display()
            );
        }
        Ok(Source::File {
            path,
            file,
            len: meta.len(),
        })
    }

    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Source::File { len, .. } | Source::Http { len, .. } => *len,
        }
    }

    /// How the operator named it.
    pub fn name(&self) -> String {
        match self {
            Source::File { path, .. } => path.display().to_string(),
            Source::Http { url, .. } => url.clone(),
        }
    }

    /// What identifies this content for resuming: the name, the length and the server's
    /// validator (or the file's modification time).
    pub fn identity(&self) -> String {
        match self {
            Source::File { path, file, len } => {
                let mtime = file
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
                format!("{} {len} {mtime}", canonical.display())
            }
            Source::Http {
                url,
                len,
                validator,
                ..
            } => format!("{url} {len} {}", validator.as_deref().unwrap_or("-")),
        }
    }

    /// Where its signature is by the minisign convention: `SOURCE.minisig`.
    pub fn signature_location(&self) -> String {
        format!("{}.minisig", self.name())
    }

    /// A reader of its bytes from `offset` on, and the offset it really starts at (0 when a
    /// server does not honour the range, or the content changed: the copy starts over).
    pub fn stream_from(&self, offset: u64) -> Result<(Box<dyn Read + '_>, u64)> {
        match self {
            Source::File { file, .. } => {
                let mut f = file.try_clone().context("reopen the source")?;
                use std::io::Seek;
                f.seek(io::SeekFrom::Start(offset))
                    .context("seek in the source")?;
                // Read through once, front to back: a larger read-ahead keeps the disk busy
                // while the copy writes. Only a hint.
                // SAFETY: a valid descriptor owned by `f` for the duration of the call.
                unsafe {
                    libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
                }
                Ok((Box::new(f), offset))
            }
            Source::Http {
                url,
                http,
                validator,
                ..
            } => {
                let range = format!("bytes={offset}-");
                let mut headers: Vec<(&str, &str)> = Vec::new();
                if offset > 0 {
                    headers.push(("Range", &range));
                    if let Some(v) = validator {
                        headers.push(("If-Range", v));
                    }
                }
                let (resp, _) = http
                    .get(url, &headers)
                    .with_context(|| format!("asked {url} for the image from byte {offset}"))?;
                if !resp.status().is_success() {
                    bail!(
                        "asked {url} for the image from byte {offset}: it answered {}",
                        resp.status()
                    );
                }
                let start = if resp.status().as_u16() == 206 {
                    offset
                } else {
                    0
                };
                let reader = TimedReader {
                    inner: resp.into_body().into_reader(),
                    url: url.clone(),
                    timeout: http.timeout(),
                };
                Ok((Box::new(reader), start))
            }
        }
    }

    /// Clone the whole source into `dst` (empty), sharing extents: only for a local file on
    /// the same btrfs or XFS filesystem. `false` when the filesystem cannot.
    pub fn reflink_into(&self, dst: &File) -> bool {
        match self {
            Source::File { file, .. } => {
                // SAFETY: FICLONE takes the source descriptor; both descriptors are valid.
                unsafe { libc::ioctl(dst.as_raw_fd(), FICLONE as _, file.as_raw_fd()) == 0 }
            }
            Source::Http { .. } => false,
        }
    }

    /// A reader for probing it (random access).
    pub fn reader(&self) -> Result<Box<dyn ImageReader>> {
        Ok(match self {
            Source::File { file, len, .. } => Box::new(FileReader {
                file: file.try_clone().context("reopen the source")?,
                len: *len,
            }),
            Source::Http { url, http, len, .. } => Box::new(HttpReader {
                url: url.clone(),
                http: http.clone(),
                len: *len,
            }),
        })
    }
}

/// Read a small file (a signature) from a path or URL; `None` when it does not exist. A URL is
/// asked with every wait bounded by `timeout`; a path is read only when it is a regular file
/// (a FIFO or a device is named and never read), and at most [`SIGNATURE_MAX`] bytes either
/// way (more is refused, naming the limit).
pub fn read_small(location: &str, timeout: Duration) -> Result<Option<Vec<u8>>> {
    read_limited(location, timeout, SIGNATURE_MAX)
}

/// As [`read_small`], at most `max` bytes.
pub fn read_limited(location: &str, timeout: Duration, max: usize) -> Result<Option<Vec<u8>>> {
    if is_url(location) {
        let (resp, _) = Http::new(timeout).get(location, &[])?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        if !resp.status().is_success() {
            bail!("{location} answered {}", resp.status());
        }
        let mut out = Vec::new();
        let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
        TimedReader {
            inner: resp.into_body().into_reader(),
            url: location.to_owned(),
            timeout,
        }
        .take(limit)
        .read_to_end(&mut out)
        .with_context(|| format!("reading {location}"))?;
        if out.len() > max {
            bail!("{location} is larger than {max} bytes: not what was looked for");
        }
        return Ok(Some(out));
    }
    match fsat::read_regular(std::path::Path::new(location), max) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(ReadError::Absent) => Ok(None),
        Err(e @ (ReadError::NotAFile(_) | ReadError::TooLarge(_))) => {
            bail!("the signature {location} is {e}: it is not read; nothing was written")
        }
        Err(e) => Err(anyhow::anyhow!("reading {location}: {e}")),
    }
}

/// A body being read: a read the deadline ended says so, naming the URL and the deadline.
struct TimedReader<R> {
    inner: R,
    url: String,
    timeout: Duration,
}

impl<R: Read> Read for TimedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            let timed_out = e.kind() == io::ErrorKind::TimedOut
                || e.get_ref()
                    .and_then(|inner| inner.downcast_ref::<ureq::Error>())
                    .is_some_and(|u| matches!(u, ureq::Error::Timeout(_)));
            if timed_out {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "nothing arrived from {} for {} s (the deadline of each read; --timeout \
                         sets it)",
                        self.url,
                        self.timeout.as_secs()
                    ),
                )
            } else {
                e
            }
        })
    }
}

struct FileReader {
    file: File,
    len: u64,
}

impl ImageReader for FileReader {
    fn length(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn boxed_clone(&self) -> Box<dyn ImageReader> {
        match self.file.try_clone() {
            Ok(file) => Box::new(FileReader {
                file,
                len: self.len,
            }),
            Err(_) => Box::new(FailedReader),
        }
    }
}

/// A reader that could not be cloned: every read fails.
struct FailedReader;

impl ImageReader for FailedReader {
    fn length(&self) -> u64 {
        0
    }

    fn read_exact_at(&mut self, _: u64, _: &mut [u8]) -> io::Result<()> {
        Err(io::Error::other("the source could not be reopened"))
    }

    fn boxed_clone(&self) -> Box<dyn ImageReader> {
        Box::new(FailedReader)
    }
}

struct HttpReader {
    url: String,
    http: Http,
    len: u64,
}

impl ImageReader for HttpReader {
    fn length(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let last = offset.saturating_add(buf.len() as u64 - 1);
        let range = format!("bytes={offset}-{last}");
        let (resp, _) = self
            .http
            .get(&self.url, &[("Range", &range)])
            .map_err(|e| io::Error::other(format!("{e:#}")))?;
        if resp.status().as_u16() != 206 {
            return Err(io::Error::other(format!(
                "{} does not serve byte ranges ({}): the image cannot be looked at before it is copied",
                self.url,
                resp.status()
            )));
        }
        let asked = format!("bytes {offset}-{last}/");
        match header(&resp, "content-range") {
            Some(r) if r.starts_with(&asked) => {}
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "asked {} for bytes {offset}-{last}; it answered with the range {}: a \
                         server that sends other bytes than asked for is not used",
                        self.url,
                        other.as_deref().unwrap_or("(none)")
                    ),
                ))
            }
        }
        let mut reader = TimedReader {
            inner: resp.into_body().into_reader(),
            url: self.url.clone(),
            timeout: self.http.timeout(),
        };
        let mut got = 0usize;
        while got < buf.len() {
            let ended = match reader.read(&mut buf[got..]) {
                Ok(0) => true,
                Ok(n) => {
                    got += n;
                    false
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => false,
                // The connection closed before the answer was whole.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => true,
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!(
                            "after {got} of the {} bytes asked for (bytes {offset}-{last}): {e}",
                            buf.len()
                        ),
                    ))
                }
            };
            if ended {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the server sent {got} of the {} bytes asked for (bytes {offset}-{last} of \
                         the {} it says the image has) and stopped: it serves less than it claims",
                        buf.len(),
                        self.len
                    ),
                ));
            }
        }
        Ok(())
    }

    fn boxed_clone(&self) -> Box<dyn ImageReader> {
        Box::new(HttpReader {
            url: self.url.clone(),
            http: self.http.clone(),
            len: self.len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_lead_to_http_or_https_only() {
        let base = "http://h:8/img/v2.img?sig=1";
        assert_eq!(
            redirect_target(base, "https://cdn/x.img").unwrap(),
            "https://cdn/x.img"
        );
        assert_eq!(redirect_target(base, "//m/y").unwrap(), "http://m/y");
        assert_eq!(redirect_target(base, "/z.img").unwrap(), "http://h:8/z.img");
        assert_eq!(
            redirect_target(base, "v3.img").unwrap(),
            "http://h:8/img/v3.img"
        );
        let e = redirect_target(base, "file:///etc/passwd").unwrap_err();
        assert!(e.to_string().contains("not file://"), "{e}");
        assert!(redirect_target(base, "FTP://x/y")
            .unwrap_err()
            .to_string()
            .contains("ftp://"));
        assert!(matches!(
            redirect_target("no scheme", "x"),
            Err(RedirectRefused::Unparsable(_))
        ));
    }
}
