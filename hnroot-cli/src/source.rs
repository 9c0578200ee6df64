//! Where `hnroot stage` reads an image from: a local path (a shared filesystem such as
//! `/warehouse/images/...` included) or an `http(s)://` URL (ureq with rustls; the system's
//! certificate store). Random access for probing the image before a byte is written (HTTP
//! `Range`), a stream from any offset for copying it (resuming an interrupted copy), a reflink
//! when the source and hostpart share a btrfs or XFS filesystem, and the signature beside it
//! (`SOURCE.minisig`).

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hnroot_linux::image::ImageReader;

/// Longest wait for an HTTP server to answer or to send the next bytes.
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest signature file read.
const SIGNATURE_MAX: u64 = 64 * 1024;
/// `FICLONE` (`_IOW(0x94, 9, int)`): share the source's extents (btrfs, XFS).
const FICLONE: libc::c_ulong = 0x4004_9409;

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
        agent: ureq::Agent,
        /// `Content-Length` of the whole image.
        len: u64,
        /// `ETag` (or `Last-Modified`), to resume only the same content.
        validator: Option<String>,
    },
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                .build(),
        )
        .timeout_connect(Some(HTTP_TIMEOUT))
        .timeout_recv_response(Some(HTTP_TIMEOUT))
        .timeout_recv_body(None)
        .build()
        .new_agent()
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
    /// Open `text`: a URL (its length asked for with a one-byte range request) or a path.
    pub fn open(text: &str) -> Result<Source> {
        if is_url(text) {
            let agent = agent();
            let resp = agent
                .get(text)
                .header("Range", "bytes=0-0")
                .call()
                .with_context(|| format!("asked {text} for the image: no answer"))?;
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
                agent,
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
                Ok((Box::new(f), offset))
            }
            Source::Http {
                url,
                agent,
                validator,
                ..
            } => {
                let mut req = agent.get(url);
                if offset > 0 {
                    req = req.header("Range", &format!("bytes={offset}-"));
                    if let Some(v) = validator {
                        req = req.header("If-Range", v);
                    }
                }
                let resp = req
                    .call()
                    .with_context(|| format!("asked {url} for the image from byte {offset}"))?;
                let start = if resp.status().as_u16() == 206 {
                    offset
                } else {
                    0
                };
                Ok((Box::new(resp.into_body().into_reader()), start))
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
            Source::Http {
                url, agent, len, ..
            } => Box::new(HttpReader {
                url: url.clone(),
                agent: agent.clone(),
                len: *len,
            }),
        })
    }
}

/// Read a small file (a signature) from a path or URL; `None` when it does not exist.
pub fn read_small(location: &str) -> Result<Option<Vec<u8>>> {
    if is_url(location) {
        let resp = agent()
            .get(location)
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .with_context(|| format!("asked {location}: no answer"))?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        if !resp.status().is_success() {
            bail!("{location} answered {}", resp.status());
        }
        let mut out = Vec::new();
        resp.into_body()
            .into_reader()
            .take(SIGNATURE_MAX)
            .read_to_end(&mut out)
            .with_context(|| format!("reading {location}"))?;
        return Ok(Some(out));
    }
    match std::fs::File::open(location) {
        Ok(f) => {
            let mut out = Vec::new();
            f.take(SIGNATURE_MAX)
                .read_to_end(&mut out)
                .with_context(|| format!("reading {location}"))?;
            Ok(Some(out))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {location}")),
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
    agent: ureq::Agent,
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
        let resp = self
            .agent
            .get(&self.url)
            .header("Range", &format!("bytes={offset}-{last}"))
            .call()
            .map_err(io::Error::other)?;
        if resp.status().as_u16() != 206 {
            return Err(io::Error::other(format!(
                "{} does not serve byte ranges ({}): the image cannot be looked at before it is copied",
                self.url,
                resp.status()
            )));
        }
        resp.into_body().into_reader().read_exact(buf)
    }

    fn boxed_clone(&self) -> Box<dyn ImageReader> {
        Box::new(HttpReader {
            url: self.url.clone(),
            agent: self.agent.clone(),
            len: self.len,
        })
    }
}
