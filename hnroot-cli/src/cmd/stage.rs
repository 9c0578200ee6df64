//! `hnroot stage SOURCE`: copy a signed image to hostpart as `hn-root-new.img`, so the next
//! boot boots it as an update. The core decides whether it may run and which steps it takes
//! (`commands::stage`): copy into a partial file (created exclusively, or resumed), verify it
//! (minisign's prehashed signature, streamed over the same pass as the copy, and the image
//! verdict GRUB and the initramfs apply), publish it by a rename, sync and checkpoint so GRUB
//! sees it. The shared executor carries the steps out; a failed step leaves no
//! `hn-root-new.img`, and its partial file is kept for the next run of the same stage (an
//! interrupted copy) or removed (a copy that does not match its signature), as the core says.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use hnroot_core::cmdline;
use hnroot_core::commands::{self, after_stage_failure, PartialFate, StageFault, StageRequest};
use hnroot_core::decide::decide;
use hnroot_core::floor::{self, Admitted};
use hnroot_core::layout::{PARTIAL_PREFIX, PARTIAL_SUFFIX};
use hnroot_core::plan::seen_after;
use hnroot_core::probe::FsOutcome;
use hnroot_core::seal::{SealSeen, SEAL_BLOCK_LEN};
use hnroot_core::verdict::{self, BootFiles, Entry, ImageFacts, Probe, Verdict};
use hnroot_linux::exec::{Executor, SourceError, Stager};
use hnroot_linux::fsat;
use hnroot_linux::image::{self, Inspect};
use minisign_verify::{PublicKey, Signature, StreamVerifier};
use serde_json::json;

use crate::delta::Delta;
use crate::locate::{self, Location};
use crate::progress::Progress;
use crate::source::{read_small, Source};
use crate::{say, warn};

/// Where `hnroot stage` looks for the publishers' public keys unless `--keys` says.
pub const KEYS_DIR: &str = "/etc/hnroot/keys";

/// Bytes copied at a time.
const CHUNK: usize = 1 << 20;
/// Chunks read and written but not yet hashed, at most (the copier waits beyond that).
const HASH_QUEUE: usize = 8;
/// Chunks read but not yet written, at most (the reader waits beyond that): room for the
/// writer to wait for the disk while reading goes on.
const WRITE_QUEUE: usize = 32;
/// Bytes of the partial file after which their writeback is started.
const WRITEBACK_WINDOW: u64 = 32 << 20;

/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`: start writing `len` bytes at `offset` back to the
/// disk and return at once. Only a hint for speed: the fsync after the copy is what makes the
/// file durable, so a failure here changes nothing and is not reported.
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: a valid descriptor owned by `file` for the duration of the call; the call only
    // schedules I/O on it.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// One pass, two threads: `step` fills buffers in this thread (reading, and for a copy writing
/// too) while a second thread hashes the ones it filled for the signature, so reading, writing
/// and hashing overlap instead of taking turns (a BLAKE2b pass over an image costs about as much
/// as reading it from disk). `step` gets an empty buffer and returns it filled, or `None` at the
/// end; the hasher gets the buffers in order. Returns the verifier with everything hashed.
fn hash_alongside<'v>(
    verifier: Option<StreamVerifier<'v>>,
    mut step: impl FnMut(Vec<u8>) -> Result<Option<Vec<u8>>, SourceError>,
) -> Result<Option<StreamVerifier<'v>>, SourceError> {
    let (to_hash, chunks) = std::sync::mpsc::sync_channel::<Vec<u8>>(HASH_QUEUE);
    let (recycle, spare) = std::sync::mpsc::channel::<Vec<u8>>();
    let (filled, verifier) = std::thread::scope(|scope| {
        let hasher = scope.spawn(move || {
            let mut verifier = verifier;
            for chunk in chunks {
                if let Some(v) = verifier.as_mut() {
                    v.update(&chunk);
                }
                // `step` may have stopped; then the buffer is simply dropped.
                let _ = recycle.send(chunk);
            }
            verifier
        });
        let filled = (|| -> Result<(), SourceError> {
            loop {
                let mut buf = spare
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
                buf.clear();
                let Some(buf) = step(buf)? else {
                    return Ok(());
                };
                to_hash
                    .send(buf)
                    .map_err(|_| SourceError::Hasher("stopped"))?;
            }
        })();
        // Closing the queue ends the hasher once it has hashed everything sent.
        drop(to_hash);
        (filled, hasher.join())
    });
    let verifier = verifier.map_err(|_| SourceError::Hasher("panicked"))?;
    filled?;
    Ok(verifier)
}

/// The copy's pipeline, three threads: `read` fills buffers in this thread (the source), a
/// writer thread hands each to `write` (the partial file, and its writeback), the hasher
/// thread to the verifier, in order. Reading, writing (with the waits writeback brings) and
/// hashing then overlap, as the kernel overlaps `cp`'s reads with its writeback, instead of
/// the reads stopping whenever a write waits for the disk. Returns the verifier with everything
/// hashed; a failed write is reported as the writer's error.
fn copy_alongside<'v>(
    verifier: Option<StreamVerifier<'v>>,
    mut read: impl FnMut(Vec<u8>) -> Result<Option<Vec<u8>>, SourceError>,
    mut write: impl FnMut(&[u8]) -> Result<(), SourceError> + Send,
) -> Result<Option<StreamVerifier<'v>>, SourceError> {
    use std::sync::mpsc::{channel, sync_channel};
    use std::sync::Arc;
    let (to_hash, hash_queue) = sync_channel::<Arc<Vec<u8>>>(HASH_QUEUE);
    let (to_write, write_queue) = sync_channel::<Arc<Vec<u8>>>(WRITE_QUEUE);
    // Whichever of the two threads is done with a buffer last gives it back for reading.
    let (recycle, spare) = channel::<Vec<u8>>();
    let recycle_written = recycle.clone();
    let (read_result, written, verifier) = std::thread::scope(|scope| {
        let hasher = scope.spawn(move || {
            let mut verifier = verifier;
            for chunk in hash_queue {
                if let Some(v) = verifier.as_mut() {
                    v.update(&chunk);
                }
                if let Ok(buf) = Arc::try_unwrap(chunk) {
                    // The reader may have stopped; then the buffer is simply dropped.
                    let _ = recycle.send(buf);
                }
            }
            verifier
        });
        let writer = scope.spawn(move || -> Result<(), SourceError> {
            for chunk in write_queue {
                write(&chunk)?;
                if let Ok(buf) = Arc::try_unwrap(chunk) {
                    let _ = recycle_written.send(buf);
                }
            }
            Ok(())
        });
        let read_result = (|| -> Result<(), SourceError> {
            loop {
                // A buffer given back keeps its length: `read` resizes it, which costs nothing
                // when it is as long as before (no pass of zeros over it).
                let buf = spare
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
                let Some(buf) = read(buf)? else {
                    return Ok(());
                };
                let chunk = Arc::new(buf);
                // The writer stops only on an error, which is reported below in its place.
                to_write
                    .send(Arc::clone(&chunk))
                    .map_err(|_| SourceError::Writer("stopped"))?;
                to_hash
                    .send(chunk)
                    .map_err(|_| SourceError::Hasher("stopped"))?;
            }
        })();
        // Closing the queues ends both threads once they have taken everything sent.
        drop(to_write);
        drop(to_hash);
        (read_result, writer.join(), hasher.join())
    });
    written.map_err(|_| SourceError::Writer("panicked"))??;
    read_result?;
    verifier.map_err(|_| SourceError::Hasher("panicked"))
}

/// Read `len` bytes of `file` from its start (`len: None`: to its end) into `hash_alongside`'s
/// buffers; `done` is told the bytes read so far.
fn read_alongside<'v>(
    verifier: Option<StreamVerifier<'v>>,
    file: &File,
    len: Option<u64>,
    what: &str,
    mut done: impl FnMut(u64),
) -> Result<Option<StreamVerifier<'v>>, SourceError> {
    let mut reader = file
        .try_clone()
        .map_err(|e| SourceError::partial(what, e))?;
    reader
        .seek(SeekFrom::Start(0))
        .map_err(|e| SourceError::partial(what, e))?;
    let mut at = 0u64;
    hash_alongside(verifier, |mut buf| {
        let want = match len {
            Some(l) if at >= l => return Ok(None),
            Some(l) => ((l - at) as usize).min(CHUNK),
            None => CHUNK,
        };
        buf.resize(want, 0);
        let n = reader
            .read(&mut buf)
            .map_err(|e| SourceError::partial(format!("{what} at byte {at}"), e))?;
        if n == 0 {
            return match len {
                Some(total) => Err(SourceError::Short {
                    name: what.to_owned(),
                    at,
                    total,
                }),
                None => Ok(None),
            };
        }
        buf.truncate(n);
        at += n as u64;
        done(at);
        Ok(Some(buf))
    })
}

/// Largest public key file read from the keys directory (a minisign key is two short lines).
const KEY_MAX: usize = 4096;

/// How an image is fetched and its signature found and checked (`hnroot stage`, `hnroot
/// install`).
#[derive(clap::Args, Debug, Clone)]
pub struct SignatureArgs {
    /// The minisign signature of the image [default: the image's path or URL + .minisig].
    #[arg(long, value_name = "FILE|URL")]
    pub signature: Option<String>,
    /// Directory of trusted minisign public keys (*.pub).
    #[arg(long, value_name = "DIR", default_value = KEYS_DIR)]
    pub keys: PathBuf,
    /// Take an image without checking any signature. Anyone who can put a file where the
    /// source is can then choose what this machine boots.
    #[arg(long)]
    pub insecure_no_signature: bool,
    /// Longest wait, in seconds, for an HTTP server: to connect, to answer, and for each read
    /// of the image (a stalled transfer ends after that long; its partial file is kept).
    #[arg(long, value_name = "SECONDS", default_value_t = crate::source::HTTP_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
}

impl SignatureArgs {
    /// The deadline of each network wait.
    pub fn deadline(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout)
    }
}

/// Options of `hnroot stage`.
#[derive(clap::Args, Debug)]
pub struct StageArgs {
    #[command(flatten)]
    loc: Location,
    /// The image: a path (a shared filesystem such as /warehouse/images/...) or an http(s) URL.
    source: String,
    #[command(flatten)]
    sig: SignatureArgs,
    /// Replace an image already staged.
    #[arg(long)]
    replace: bool,
    /// Stage even while an image is on trial (it is then superseded before it was judged).
    #[arg(long)]
    force: bool,
    /// Stage an image older than the version floor (the newest sealed version committed
    /// here), or an unsealed one once a floor is set: a rollback by choice, recorded in the
    /// history as stage-downgrade.
    #[arg(long)]
    allow_downgrade: bool,
    /// Progress and the result as JSON lines (events) on standard output.
    #[arg(long)]
    json: bool,
    /// Open the source, check its signature's key and its image, and say what a stage would
    /// do (or why it would be refused, with a stable code); write nothing.
    #[arg(long)]
    dry_run: bool,
}

/// The signature and the key that made it.
pub struct Signed {
    key: PublicKey,
    key_file: PathBuf,
    signature: Signature,
    /// The signature file as read (a delta's index names it).
    text: Vec<u8>,
}

/// Load every key of `dir` and the signature at `location`; the key whose id the signature
/// names. Keys are read only from regular files of at most [`KEY_MAX`] bytes (a FIFO, a device,
/// a link to one is named and skipped); every network wait lasts at most `timeout`.
fn load_signature(dir: &Path, location: &str, timeout: std::time::Duration) -> Result<Signed> {
    let text = read_small(location, timeout)?.with_context(|| {
        format!(
            "looked for the image's signature at {location}; found none: sign it with `minisign \
             -Sm IMAGE` (or pass --signature FILE); nothing was written"
        )
    })?;
    let signature = Signature::decode(&String::from_utf8_lossy(&text))
        .map_err(|e| anyhow::anyhow!("{location} is not a minisign signature: {e}"))?;
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!(
            "looked for trusted keys in {}; there is no such directory: put the publishers' \
             minisign public keys (*.pub) there, or pass --keys DIR; nothing was written",
            dir.display()
        )
    })?;
    let mut keys = Vec::new();
    for entry in entries.take(1000).flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("pub") {
            continue;
        }
        let text = match fsat::read_regular(&path, KEY_MAX) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => {
                warn!("hnroot: {} is {e}: not a key file; skipped", path.display());
                continue;
            }
        };
        match PublicKey::decode(&text) {
            Ok(key) => keys.push((path, key)),
            Err(e) => warn!(
                "hnroot: {} is not a minisign public key ({e}): ignored",
                path.display()
            ),
        }
    }
    if keys.is_empty() {
        bail!(
            "no minisign public key (*.pub) in {}: nothing can vouch for the image; nothing was \
             written",
            dir.display()
        );
    }
    let count = keys.len();
    for (key_file, key) in keys {
        match key.verify_stream(&signature) {
            Ok(_) => {
                return Ok(Signed {
                    key,
                    key_file,
                    signature,
                    text,
                })
            }
            Err(minisign_verify::Error::UnexpectedKeyId) => continue,
            Err(minisign_verify::Error::UnsupportedLegacyMode) => bail!(
                "{location} is a legacy (non-prehashed) minisign signature; sign with a current \
                 minisign (`minisign -Sm IMAGE`, prehashed by default); nothing was written"
            ),
            Err(e) => bail!("{location}: {e}; nothing was written"),
        }
    }
    bail!(
        "{location} was made by a key that is none of the {count} trusted keys in {}; nothing \
         was written",
        dir.display()
    )
}

/// The image from byte `have`: assembled from the delta's chunks when there is one, otherwise
/// the source's own stream (and where it really starts).
fn stream_from<'a>(
    source: &'a Source,
    delta: Option<&'a Delta>,
    have: u64,
) -> Result<(Box<dyn Read + 'a>, u64), SourceError> {
    if let Some(delta) = delta {
        let remote = source
            .reader()
            .map_err(|e| SourceError::Delivery(format!("{e:#}")))?;
        return Ok((Box::new(delta.reader(remote, have)), have));
    }
    source
        .stream_from(have)
        .map_err(|e| SourceError::Delivery(format!("{e:#}")))
}

/// The stage's source as the executor sees it.
struct SourceStager<'a> {
    source: &'a Source,
    signed: Option<&'a Signed>,
    delta: Option<&'a Delta>,
    partial: String,
    verifier: Option<StreamVerifier<'a>>,
    progress: Progress,
}

impl SourceStager<'_> {
    fn fresh_verifier(&mut self) -> Result<(), SourceError> {
        self.verifier = match self.signed {
            Some(s) => Some(
                s.key
                    .verify_stream(&s.signature)
                    .map_err(|e| SourceError::Verifier(e.to_string()))?,
            ),
            None => None,
        };
        Ok(())
    }
}

impl Stager for SourceStager<'_> {
    fn partial_name(&self) -> &str {
        &self.partial
    }

    fn fill(&mut self, partial: &mut File, have: u64) -> Result<String, SourceError> {
        self.copy(partial, have)
    }

    fn verify(&mut self) -> Result<String, SourceError> {
        self.check()
    }
}

impl SourceStager<'_> {
    /// The copy into the partial file, hashed as it goes (resumed after `have` bytes).
    fn copy(&mut self, partial: &mut File, have: u64) -> Result<String, SourceError> {
        let total = self.source.len();
        let started = Instant::now();
        self.fresh_verifier()?;
        let mut have = if have > total { 0 } else { have };
        if have == 0 {
            partial
                .set_len(0)
                .map_err(|e| SourceError::partial("truncate the partial file", e))?;
            if self.source.reflink_into(partial) {
                return self.verify_reflinked(partial, started);
            }
        } else {
            // Resume: what is there is verified with the rest (the signature covers the whole).
            self.verifier = read_alongside(
                self.verifier.take(),
                partial,
                Some(have),
                "reading the partial file back",
                |_| {},
            )?;
        }
        let (stream, start) = stream_from(self.source, self.delta, have)?;
        if start != have {
            // The server sent the whole: start over.
            partial
                .set_len(0)
                .map_err(|e| SourceError::partial("truncate the partial file", e))?;
            self.fresh_verifier()?;
            have = 0;
        }
        let resumed = have;
        let holes = self.stream_into(partial, stream, have)?;
        let secs = started.elapsed().as_secs_f64();
        let copied = total - resumed;
        Ok(format!(
            "copied {} MiB in {secs:.1} s ({:.0} MiB/s; {} MiB of zeros left as holes){}",
            copied >> 20,
            copied as f64 / f64::from(1u32 << 20) / secs.max(0.001),
            holes >> 20,
            if resumed > 0 {
                format!(", resuming after {} MiB already there", resumed >> 20)
            } else {
                String::new()
            }
        ))
    }

    /// A reflinked copy: the bytes are shared, not copied; the signature still covers every
    /// one, so they are read back and hashed.
    fn verify_reflinked(
        &mut self,
        partial: &File,
        started: Instant,
    ) -> Result<String, SourceError> {
        let total = self.source.len();
        self.progress.phase("reflinked; verifying");
        let progress = &self.progress;
        let mut done = 0u64;
        self.verifier = read_alongside(
            self.verifier.take(),
            partial,
            None,
            "reading the reflinked copy back",
            |at| {
                done = at;
                progress.update(at, total);
            },
        )?;
        self.progress.finish(done);
        Ok(format!(
            "reflinked {} MiB (shared extents, nothing copied) and read them to verify in {:.1} s",
            total >> 20,
            started.elapsed().as_secs_f64()
        ))
    }

    /// The copy from `stream` (the source from byte `have`) into the partial file from the
    /// same byte, through [`copy_alongside`]'s three threads.
    /// Whole blocks of zeros become holes; returns their bytes.
    fn stream_into(
        &mut self,
        partial: &mut File,
        mut stream: Box<dyn Read + '_>,
        have: u64,
    ) -> Result<u64, SourceError> {
        let total = self.source.len();
        partial.seek(SeekFrom::Start(have)).map_err(|e| {
            SourceError::partial(format!("seek in the partial file to byte {have}"), e)
        })?;
        // The copy: this thread reads the source, the writer writes the partial file, the
        // hasher hashes.
        let mut done = have;
        let mut holes = 0u64;
        let mut written = have;
        let mut written_back = have;
        let source = self.source;
        let progress = &self.progress;
        let file: &mut File = partial;
        let read = |mut buf: Vec<u8>| {
            if done >= total {
                return Ok(None);
            }
            let want = ((total - done) as usize).min(CHUNK);
            buf.resize(want, 0);
            let n = match stream.read(&mut buf) {
                Ok(n) => n,
                // The connection closed before the whole image came.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                Err(e) => {
                    return Err(SourceError::io(
                        format!("reading {} at byte {done}", source.name()),
                        e,
                    ))
                }
            };
            if n == 0 {
                return Err(SourceError::Short {
                    name: source.name().to_string(),
                    at: done,
                    total,
                });
            }
            buf.truncate(n);
            done += n as u64;
            progress.update(done, total);
            Ok(Some(buf))
        };
        let write = |buf: &[u8]| {
            let n = buf.len() as u64;
            // Whole blocks of zeros (the free space of an image) become holes: no bytes
            // written, no space taken on hostpart; every byte is still hashed.
            if n % 4096 == 0 && buf.iter().all(|b| *b == 0) {
                file.seek(SeekFrom::Current(n as i64)).map_err(|e| {
                    SourceError::partial(format!("seek in the partial file at byte {written}"), e)
                })?;
                holes += n;
            } else {
                file.write_all(buf).map_err(|e| {
                    SourceError::partial(format!("writing the partial file at byte {written}"), e)
                })?;
            }
            written += n;
            // Start writing back what is written so far, without waiting for it: the disk
            // then works while the copy goes on, and the fsync at the end has little left to
            // do (as `dd oflag=direct` would, but through the page cache).
            if written - written_back >= WRITEBACK_WINDOW {
                start_writeback(file, written_back, written - written_back);
                written_back = written;
            }
            Ok(())
        };
        self.verifier = copy_alongside(self.verifier.take(), read, write)?;
        // A hole at the end is not a length: set it.
        partial.set_len(total).map_err(|e| {
            SourceError::partial(format!("set the partial file's length to {total}"), e)
        })?;
        self.progress.finish(done);
        Ok(holes)
    }

    /// Whether what was hashed matches the signature.
    fn check(&mut self) -> Result<String, SourceError> {
        let Some(signed) = self.signed else {
            return Ok("NOT verified: --insecure-no-signature".into());
        };
        let Some(verifier) = self.verifier.as_mut() else {
            return Err(SourceError::Hasher("hashed nothing"));
        };
        match verifier.finalize() {
            Ok(()) => {
                // Only now is the trusted comment trusted: the signature covers it.
                let comment = signed.signature.trusted_comment();
                self.progress.event(json!({
                    "event": "verified",
                    "signed_by": signed.key_file.display().to_string(),
                    "trusted_comment": comment,
                }));
                Ok(format!(
                    "signature by {} verified; trusted comment: {comment}",
                    signed.key_file.display()
                ))
            }
            Err(e) => Err(SourceError::Mismatch(e.to_string())),
        }
    }
}

/// 16 hex digits naming the source's content, for its partial file (FNV-1a; not security:
/// the signature is checked over every byte anyway).
fn partial_name(identity: &str, signature: Option<&Signature>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let sig = signature
        .map(|s| s.trusted_comment().to_owned())
        .unwrap_or_default();
    for b in identity.bytes().chain(sig.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{PARTIAL_PREFIX}{h:016x}{PARTIAL_SUFFIX}")
}

/// The image's verdict before a byte is written: the facts of the source as GRUB would gather
/// them from the file. For a URL, an XFS or btrfs image's boot files are checked once it is
/// copied (before it is published).
fn judge_source(source: &Source, inspect: &Inspect) -> Result<(Verdict, Option<String>, bool)> {
    if let Source::File { file, .. } = source {
        let j = image::judge_file(file, inspect);
        let version = j.os_release.as_ref().and_then(|o| o.version());
        return Ok((j.verdict, version, false));
    }
    let mut reader = source.reader()?;
    let (outcome, boot_files, os) = image::look_at_reader(reader.as_mut());
    let outcome: FsOutcome = outcome.with_context(|| format!("reading {}", source.name()))?;
    let entry = Entry::File {
        length: source.len(),
    };
    let deferred =
        boot_files == BootFiles::NotChecked && verdict::needs_boot_files(entry, &outcome).is_some();
    let facts = ImageFacts {
        entry,
        probe: Probe::Done(&outcome),
        // Checked after the copy, before anything boots it: the verdict then is the last word.
        boot_files: if deferred {
            BootFiles::Present
        } else {
            boot_files
        },
    };
    Ok((
        verdict::judge(&facts),
        os.and_then(|o| o.version()),
        deferred,
    ))
}

/// An image source checked before a byte is written: its signature found and made by a trusted
/// key (unless waived), its verdict bootable.
pub struct Checked {
    /// Where the bytes come from.
    pub source: Source,
    /// The signature, unless `--insecure-no-signature`.
    pub signed: Option<Signed>,
    /// The image's filesystem and UUID.
    pub bootable: verdict::Bootable,
    /// `IMAGE_VERSION` from its os-release, if it has one.
    pub version: Option<String>,
    /// Whether its boot files are checked only once it is copied (XFS or btrfs over HTTP).
    pub deferred: bool,
    /// The chunks taken from hostpart's images and fetched, when its publisher indexed it.
    pub delta: Option<Delta>,
    /// Its seal, judged with the trusted keys (a broken seal is refused before this exists).
    pub seal: SealSeen,
}

/// The source's seal: its last block and its filesystem, judged by the core with the trusted
/// keys of `keys_dir` (none there: a sealed image's key is unknown, and the seal refused).
fn seal_of(source: &Source, keys_dir: &Path) -> Result<SealSeen> {
    let keys: Vec<_> = hnroot_linux::seal::load_keys(keys_dir)
        .map(|(k, _)| k.into_iter().map(|(_, k)| k).collect())
        .unwrap_or_default();
    let mut reader = source.reader()?;
    let len = reader.length();
    let (outcome, _, _) = image::look_at_reader(reader.as_mut());
    let outcome = outcome.with_context(|| format!("reading {}", source.name()))?;
    let block = if len >= SEAL_BLOCK_LEN as u64 {
        let mut b = vec![0u8; SEAL_BLOCK_LEN];
        reader
            .read_exact_at(len - SEAL_BLOCK_LEN as u64, &mut b)
            .with_context(|| format!("reading the last block of {}", source.name()))?;
        Some(b)
    } else {
        None
    };
    Ok(hnroot_linux::seal::judge_facts(
        len,
        block.as_deref(),
        &outcome,
        &keys,
    ))
}

impl Checked {
    /// Open `location` and check its signature and verdict.
    pub fn open(location: &str, sig: &SignatureArgs) -> Result<Checked> {
        let source = Source::open(location, sig.deadline())?;
        let signed = if sig.insecure_no_signature {
            warn!(
                "hnroot: WARNING: --insecure-no-signature: {} is taken without checking who made it",
                source.name()
            );
            None
        } else {
            let location = sig
                .signature
                .clone()
                .unwrap_or_else(|| source.signature_location());
            Some(load_signature(&sig.keys, &location, sig.deadline())?)
        };
        let (verdict, version, deferred) = judge_source(&source, &Inspect::default())?;
        let bootable = match verdict {
            Verdict::Bootable(b) => b,
            Verdict::Refused(r) => bail!(
                "{} cannot be used: not bootable ({}): {r}; nothing was written",
                source.name(),
                r.code()
            ),
            Verdict::Absent => bail!("{} vanished; nothing was written", source.name()),
        };
        let seal = seal_of(&source, &sig.keys)?;
        if let SealSeen::Broken(e) = &seal {
            bail!(
                "{} is sealed, but its seal does not hold ({}: {}): the image was changed after \
                 it was sealed, or sealed with a key that is not in {}; nothing was written",
                source.name(),
                e.problem,
                e.detail,
                sig.keys.display()
            );
        }
        Ok(Checked {
            source,
            signed,
            bootable,
            version,
            deferred,
            delta: None,
            seal,
        })
    }

    /// The name of this source's partial file on hostpart.
    pub fn partial_name(&self) -> String {
        partial_name(
            &self.source.identity(),
            self.signed.as_ref().map(|s| &s.signature),
        )
    }

    /// Bytes of this source a partial file on hostpart already holds.
    pub fn resumable(&self, view: &hnroot_linux::hostpart::HostpartView) -> u64 {
        let partial = self.partial_name();
        view.partials
            .iter()
            .find(|p| p.name == partial)
            .map_or(0, |p| p.size.min(self.source.len()))
    }

    /// Announce the copy (text and the JSON `start` event).
    pub fn announce(&self, progress: &Progress, target: &str, have: u64) {
        // Nothing of the signature is shown before it is verified (the `verified` event and the
        // verification step say who signed it and its trusted comment).
        progress.event(json!({
            "event": "start", "source": self.source.name(), "size": self.source.len(), "uuid": self.bootable.uuid.to_string(),
            "version": self.version, "resume_from": have, "partial": self.partial_name(),
            "signed": self.signed.is_some(), "seal": hnroot_linux::seal::describe(&self.seal),
        }));
        progress.say(format_args!(
            "hnroot: copying {} ({} MiB, {} UUID={}{}) to hostpart as {target}{}",
            self.source.name(),
            self.source.len() >> 20,
            self.bootable.fs_type.as_str(),
            self.bootable.uuid,
            self.version
                .as_deref()
                .map(|v| format!(", version {v}"))
                .unwrap_or_default(),
            if self.deferred {
                "; its boot files are checked once it is copied"
            } else {
                ""
            }
        ));
    }

    /// Carry out `plan` (a stage's or an install's copy) on `hostpart` with the shared
    /// executor; on a failure, keep or remove the partial file as the core says, and say so.
    pub fn copy(
        &self,
        hostpart: &hnroot_linux::hostpart::Hostpart,
        plan: &hnroot_core::plan::ChangePlan,
        store: &mut dyn hnroot_linux::exec::BootStateStore,
        progress: &Progress,
    ) -> Result<Vec<hnroot_core::plan::ChangeStep>> {
        let partial = self.partial_name();
        let mut stager = SourceStager {
            source: &self.source,
            signed: self.signed.as_ref(),
            delta: self.delta.as_ref(),
            partial: partial.clone(),
            verifier: None,
            progress: progress.clone(),
        };
        let result = Executor::new(hostpart)
            .boot_state(store)
            .stager(&mut stager)
            .inspect(Inspect::default())
            .run(plan, |r| {
                let n = r.index + 1;
                match r.outcome {
                    Ok(how) => progress.step(n, r.total, &r.step.to_string(), Ok(how)),
                    Err(e) => progress.step(n, r.total, &r.step.to_string(), Err(e)),
                }
            });
        let failed = match result {
            Ok(done) => return Ok(done.to_vec()),
            Err(failed) => failed,
        };
        let fault = failed.error.stage_fault();
        let fate = after_stage_failure(&failed.step, fault);
        let what = match fate {
            PartialFate::Keep => match hostpart.reopen_partial(&partial) {
                Err(e) => format!("{e}"),
                Ok(_) => format!(
                    "the partial file {partial} is kept: run the same command again to resume"
                ),
            },
            PartialFate::Remove => match hostpart.remove(&partial) {
                Ok(()) => format!("the partial file {partial} was removed"),
                Err(e) => format!(
                    "removing the partial file failed ({e}): `hnroot discard-partials` removes it"
                ),
            },
            PartialFate::Published => {
                "the image is in place; run `hnroot status` to see whether GRUB will see it".into()
            }
        };
        progress.event(json!({ "event": "failed", "step": failed.step.code(), "error": failed.error.to_string(), "partial": format!("{fate:?}").to_lowercase() }));
        if fault == StageFault::PartialStorage {
            bail!(
                "{failed}: hostpart's storage failed under the partial file; no image was \
                 published, and hn-root.img and the other images were not written to; {what}; \
                 check the disk before staging again (the kernel log names the device and the \
                 error; its filesystem may have gone read-only)"
            );
        }
        bail!("{failed}; no image was published by this copy unless said; {what}");
    }
}

fn run(args: &StageArgs, progress: Progress) -> Result<()> {
    let started = Instant::now();
    let hostpart = locate::open_hostpart(&args.loc)?;
    let _lock = hostpart.lock()?;
    let view = hostpart.observe()?;
    let cmdline_text = locate::running_cmdline();
    let params = cmdline::parse(&cmdline_text);
    let (state, _) = locate::read_state(&args.loc, &params);
    let checked = Checked::open(&args.source, &args.sig)?;
    let partial = checked.partial_name();
    // A name where this stage's partial file goes that is not one hnroot made (a FIFO, a link,
    // a file with another name): said once, with what to do, before anything is written.
    hostpart
        .reopen_partial(&partial)
        .map_err(|e| anyhow::anyhow!("{e}; nothing was written"))?;
    let have = checked.resumable(&view);
    for other in view.partials.iter().filter(|p| p.name != partial) {
        warn!(
            "hnroot: {} ({} MiB) is the partial copy of another stage: kept (`hnroot \
             discard-partials` removes it)",
            other.name,
            other.size >> 20
        );
    }
    let request = StageRequest {
        uuid: checked.bootable.uuid,
        needed: checked.source.len().saturating_sub(have),
        free: hostpart.free_bytes()?,
        replace: args.replace,
        force: args.force,
    };
    let admitted = admit_version(&hostpart, &checked, args.allow_downgrade, &progress)?;
    let obs = view.observation(state);
    // The refusal's stable code for orchestrators (an image already running or staged is
    // `duplicate-uuid` naming its file).
    let plan = commands::stage(&obs, &request).inspect_err(|e| {
        let existing = match e {
            hnroot_core::commands::StageError::DuplicateUuid { existing, .. } => {
                Some(existing.file_name())
            }
            _ => None,
        };
        progress.event(
            json!({ "event": "refused", "code": e.code(), "existing": existing,
            "uuid": checked.bootable.uuid.to_string(), "version": checked.version }),
        );
    })?;
    if args.dry_run {
        progress.event(
            json!({ "event": "would-stage", "uuid": checked.bootable.uuid.to_string(),
            "version": checked.version, "size": checked.source.len(), "resume_from": have,
            "steps": plan.steps.iter().map(|s| s.code()).collect::<Vec<_>>() }),
        );
        progress.say(format_args!(
            "hnroot: would stage {} (UUID {}) as hn-root-new.img; --dry-run: nothing written",
            checked.source.name(),
            checked.bootable.uuid
        ));
        return Ok(());
    }
    let mut checked = checked;
    if let Some(signed) = &checked.signed {
        checked.delta = Delta::prepare(
            &checked.source,
            &signed.key,
            &signed.text,
            &hostpart,
            &view,
            args.sig.deadline(),
            &progress,
        );
    }
    checked.announce(&progress, "hn-root-new.img", have);
    let mut store = locate::locate_state(&args.loc, &params).ok();
    let done = checked.copy(&hostpart, &plan, &mut store, &progress)?;
    let bootable = checked.bootable;
    let after = seen_after(&obs, &done);
    let operator = match admitted {
        Admitted::Downgrade => hnroot_core::history::Operator::StageDowngrade,
        Admitted::NoFloor | Admitted::AtOrAbove => hnroot_core::history::Operator::Stage,
    };
    crate::cmd::history::record(
        &hostpart,
        operator,
        Some(hnroot_core::name::ImageName::New),
        Some(bootable.uuid),
        after.good(),
    );
    let stats = checked.delta.as_ref().map(Delta::stats);
    let fetched = stats.map_or(checked.source.len().saturating_sub(have), |s| s.fetched);
    let last = crate::cmd::metrics::LastStage {
        time: hnroot_linux::history_file::now(),
        bytes: fetched,
        seconds: started.elapsed().as_secs_f64(),
    };
    crate::cmd::metrics::record_stage(&hostpart, &last);
    check_leftovers(&hostpart, &progress);
    // The next boot as the ESP's loader counts (its tries).
    let counting = store
        .as_ref()
        .map(|f| locate::loader_settings(f).counting)
        .unwrap_or_default();
    let next = decide(&after, &counting);
    progress.event(json!({ "event": "staged", "uuid": bootable.uuid.to_string(), "next_boot": next.record().to_string(),
        "version": checked.version, "bytes_fetched": last.bytes, "seconds": last.seconds,
        "bytes_reused": stats.map_or(0, |s| s.reused), "bytes_zero": stats.map(|s| s.zero),
        "delta": stats.is_some(), "range_requests": stats.map(|s| s.requests),
        "chunks_refetched": stats.map(|s| s.refetched) }));
    if let Some(s) = stats {
        progress.say(format_args!(
            "hnroot: {} MiB fetched in {} range requests, {} MiB taken from the images on \
             hostpart, {} MiB of zeros ({} chunks a seed no longer held were fetched)",
            s.fetched >> 20,
            s.requests,
            s.reused >> 20,
            s.zero >> 20,
            s.refetched
        ));
    }
    progress.say(format_args!(
        "hnroot: staged {} as hn-root-new.img (UUID {}); next boot: {next}",
        checked.source.name(),
        bootable.uuid
    ));
    Ok(())
}

/// The version floor against the image's signed version: refused (with the stable code) unless
/// at or above it, or `--allow-downgrade`, which is said loudly.
fn admit_version(
    hostpart: &hnroot_linux::hostpart::Hostpart,
    checked: &Checked,
    allow_downgrade: bool,
    progress: &Progress,
) -> Result<Admitted> {
    let floor_seen = hnroot_linux::seal::read_floor(hostpart);
    let version = match &checked.seal {
        SealSeen::Sealed { manifest, .. } => Some(&manifest.version),
        _ => None,
    };
    match floor::admits(&floor_seen, version, allow_downgrade) {
        Ok(Admitted::Downgrade) => {
            warn!(
                "hnroot: WARNING: --allow-downgrade: {} ({}) is staged below the version floor {} \
                 (recorded in the history as stage-downgrade)",
                checked.source.name(),
                hnroot_linux::seal::describe(&checked.seal),
                floor_seen
                    .version()
                    .map_or("(unreadable)".to_string(), ToString::to_string)
            );
            Ok(Admitted::Downgrade)
        }
        Ok(a) => Ok(a),
        Err(e) => {
            progress.event(json!({ "event": "refused", "code": e.code(),
                "uuid": checked.bootable.uuid.to_string(),
                "version": version.map(ToString::to_string),
                "floor": floor_seen.version().map(ToString::to_string) }));
            bail!("{}: {e}", checked.source.name())
        }
    }
}

/// Warn when the staged image holds one host's identity (`hnroot sysprep` was not run on it):
/// every server it is staged on would share it. Looked at read-only; never fails the stage.
fn check_leftovers(hostpart: &hnroot_linux::hostpart::Hostpart, progress: &Progress) {
    let image = hostpart
        .path()
        .join(hnroot_core::name::ImageName::New.file_name());
    match hnroot_install::sysprep::check(&image) {
        Ok(found) => {
            progress.event(json!({ "event": "leftovers", "count": found.len(), "paths": found.iter().map(|l| &l.path).collect::<Vec<_>>() }));
            for line in hnroot_install::sysprep::warnings(&found) {
                warn!("hnroot: warning: {line}");
            }
        }
        Err(e) => warn!("hnroot: the staged image was not checked for host-specific files: {e:#}"),
    }
}

/// Remove every partial file `hnroot stage` left on hostpart.
fn discard_partials(loc: &Location) -> Result<()> {
    let hostpart = locate::open_hostpart(loc)?;
    let _lock = hostpart.lock()?;
    let partials = hostpart.partials()?;
    if partials.is_empty() {
        say!("hnroot: no partial files on {}", hostpart.path().display());
    }
    for p in partials {
        match hostpart.remove(&p.name) {
            Ok(()) => say!("hnroot: removed {} ({} MiB)", p.name, p.size >> 20),
            Err(e) if e.errno() == Some(libc::EISDIR) => warn!(
                "hnroot: {} is a directory, not a partial file: left as it is (remove it by \
                 hand)",
                p.name
            ),
            Err(e) => return Err(e.into()),
        }
    }
    hostpart.sync_dir()?;
    Ok(())
}

/// Options of `hnroot discard-partials`.
#[derive(clap::Args, Debug)]
pub struct DiscardArgs {
    #[command(flatten)]
    loc: Location,
}

/// `hnroot discard-partials`.
pub fn discard(args: &DiscardArgs) -> ExitCode {
    match discard_partials(&args.loc) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            warn!("hnroot: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `hnroot stage`.
pub fn stage(args: &StageArgs) -> ExitCode {
    let progress = Progress::new(args.json);
    match run(args, progress.clone()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            progress.event(json!({ "event": "error", "error": format!("{e:#}") }));
            warn!("hnroot: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunks of `sizes` bytes, each filled with its index.
    fn reader(sizes: Vec<usize>) -> impl FnMut(Vec<u8>) -> Result<Option<Vec<u8>>, SourceError> {
        let mut next = 0usize;
        move |mut buf: Vec<u8>| {
            let Some(&n) = sizes.get(next) else {
                return Ok(None);
            };
            buf.resize(n, 0);
            buf.fill(next as u8);
            next += 1;
            Ok(Some(buf))
        }
    }

    #[test]
    fn the_copy_pipeline_writes_every_chunk_in_order() {
        // More chunks than both queues hold, of changing lengths (buffers come back reused).
        let sizes: Vec<usize> = (0..200).map(|i| 1 + (i * 7919) % 5000).collect();
        let mut written = Vec::new();
        let verifier = copy_alongside(None, reader(sizes.clone()), |b: &[u8]| {
            written.push(b.to_vec());
            Ok(())
        })
        .unwrap();
        assert!(verifier.is_none());
        assert_eq!(written.len(), sizes.len());
        for (i, (chunk, n)) in written.iter().zip(&sizes).enumerate() {
            assert_eq!(chunk.len(), *n, "chunk {i}");
            assert!(
                chunk.iter().all(|b| *b == i as u8),
                "chunk {i} in order, whole"
            );
        }
    }

    #[test]
    fn a_failed_write_is_the_copys_error() {
        let mut calls = 0;
        let Err(err) = copy_alongside(None, reader(vec![4096; 100]), |_: &[u8]| {
            calls += 1;
            if calls == 3 {
                Err(SourceError::partial(
                    "writing the partial file at byte 8192",
                    std::io::Error::from_raw_os_error(libc::ENOSPC),
                ))
            } else {
                Ok(())
            }
        }) else {
            panic!("the copy went on after a failed write");
        };
        assert_eq!(
            err.to_string(),
            "writing the partial file at byte 8192: No space left on device (os error 28)"
        );
    }

    #[test]
    fn a_failed_read_stops_the_copy() {
        let mut left = 5;
        let read = move |mut buf: Vec<u8>| {
            if left == 0 {
                return Err(SourceError::io(
                    "reading v2.img at byte 20480",
                    std::io::Error::from_raw_os_error(libc::EIO),
                ));
            }
            left -= 1;
            buf.resize(4096, 1);
            Ok(Some(buf))
        };
        let mut written = 0;
        let Err(err) = copy_alongside(None, read, |_: &[u8]| {
            written += 1;
            Ok(())
        }) else {
            panic!("the copy went on after a failed read");
        };
        assert_eq!(
            err.to_string(),
            "reading v2.img at byte 20480: Input/output error (os error 5)"
        );
        assert_eq!(written, 5, "what was read before is written");
    }
}
