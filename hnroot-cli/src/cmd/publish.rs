//! `hnroot publish IMAGE --out DIR`: put a signed image where a web server serves it, with the
//! chunk index that lets `hnroot stage URL` fetch only the chunks a server does not already
//! hold (`crate::delta`). Written to DIR: the image, its signature (`IMAGE.minisig`, required:
//! sign the image first), and `IMAGE.hnidx`, which names that signature; the index is signed
//! with the same key (`--sign-key`, or by the publisher afterwards with `minisign -Sm`). Every
//! file appears under its name whole (written beside it, then renamed), so a server never
//! serves half of one.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Context, Result};
use hnroot_core::delta::{ChunkSizes, DEFAULT_SIZES};
use hnroot_linux::fsat;

use crate::delta::{index_of, INDEX_SUFFIX};
use crate::source::{read_small, Source};

/// Arguments of `hnroot publish`.
#[derive(clap::Args, Debug)]
pub struct PublishArgs {
    /// The image (signed: IMAGE.minisig beside it).
    image: PathBuf,
    /// The directory a web server serves (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Sign the index with this minisign secret key (unencrypted, as for unattended builds);
    /// without it, sign DIR/IMAGE.hnidx with `minisign -Sm` before servers use it.
    #[arg(long, value_name = "KEY")]
    sign_key: Option<PathBuf>,
    /// The chunks' average size in KiB, a power of two from 4 to 4096 (the smallest chunk is a
    /// quarter of it, the largest four times it). Smaller chunks cost a stage less around each
    /// change in the image and make the index larger (36 bytes a chunk); a stage cuts the
    /// images on hostpart with the sizes the index names.
    #[arg(long, value_name = "KIB", default_value_t = DEFAULT_SIZES.avg >> 10)]
    chunk_avg: u32,
}

/// The chunk sizes of `--chunk-avg KIB`, judged by the core (a power of two, within the
/// bounds every stage parses an index with).
fn chunk_sizes(kib: u32) -> Result<ChunkSizes> {
    let refused = |why: &dyn std::fmt::Display| {
        anyhow::anyhow!("--chunk-avg {kib}: {why}; nothing was published")
    };
    let avg = kib
        .checked_mul(1024)
        .ok_or_else(|| refused(&format_args!("{kib} KiB is over 4 GiB")))?;
    ChunkSizes::around(avg).map_err(|e| refused(&e))
}

/// Write `data` (or the contents of `from`) to `name` in `dir` whole: a temporary name first,
/// then a rename over `name`.
fn put(dir: &OwnedFd, name: &str, from: Content<'_>) -> Result<()> {
    let tmp = format!(".{name}.publishing");
    match fsat::unlink(dir, &tmp) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(e).with_context(|| format!("removing a leftover {tmp}")),
    }
    let mut file = fsat::create_exclusive(dir, &tmp, 0o644)
        .with_context(|| format!("creating {tmp} in the output directory"))?;
    let written = match from {
        Content::Bytes(b) => io::Write::write_all(&mut file, b),
        // From the first byte, whatever the descriptor's offset (indexing moved it).
        Content::File(mut src) => io::Seek::seek(&mut src, io::SeekFrom::Start(0))
            .and_then(|_| io::copy(&mut src, &mut file))
            .map(|_| ()),
    };
    written
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {tmp}"))?;
    fsat::rename(dir, &tmp, name, true).with_context(|| format!("renaming {tmp} to {name}"))?;
    Ok(())
}

enum Content<'a> {
    Bytes(&'a [u8]),
    File(&'a File),
}

/// The image as a stage would open it (a regular file, opened non-blocking), never a URL.
fn open_image(path: &Path) -> Result<File> {
    match Source::open(&path.to_string_lossy(), crate::source::HTTP_TIMEOUT)? {
        Source::File { file, .. } => Ok(file),
        Source::Http { url, .. } => bail!("{url} is a URL: publish a local image file"),
    }
}

fn sign(key: &Path, index: &Path, name: &str) -> Result<()> {
    let sig = PathBuf::from(format!("{}.minisig", index.display()));
    let mut cmd = Command::new("minisign");
    cmd.arg("-S")
        .arg("-s")
        .arg(key)
        .arg("-m")
        .arg(index)
        .arg("-x")
        .arg(&sig)
        .arg("-t")
        .arg(format!("hnroot chunk index of {name}"))
        .stdin(Stdio::null());
    hnroot_install::tool::run_with_hint(&mut cmd, "is minisign installed?")
        .map(|_| ())
        .with_context(|| format!("signing {}", index.display()))
}

fn publish(args: &PublishArgs) -> Result<()> {
    let name = args
        .image
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} names no file", args.image.display()))?
        .to_owned();
    let sizes = chunk_sizes(args.chunk_avg)?;
    let image = open_image(&args.image)?;
    let sig_path = PathBuf::from(format!("{}.minisig", args.image.display()));
    let signature = read_small(&sig_path.to_string_lossy(), crate::source::HTTP_TIMEOUT)?
        .with_context(|| {
            format!(
                "looked for the image's signature at {}; found none: sign the image first \
                 (`minisign -Sm {}`); nothing was published",
                sig_path.display(),
                args.image.display()
            )
        })?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let dir =
        fsat::open_root(&args.out).with_context(|| format!("opening {}", args.out.display()))?;
    let (index, summary) = index_of(&image, &signature, sizes)
        .with_context(|| format!("indexing {}", args.image.display()))?;
    let same_file =
        std::fs::canonicalize(&args.image).ok() == std::fs::canonicalize(args.out.join(&name)).ok();
    if !same_file {
        put(&dir, &name, Content::File(&image))?;
        put(&dir, &format!("{name}.minisig"), Content::Bytes(&signature))?;
    }
    let index_name = format!("{name}{INDEX_SUFFIX}");
    put(&dir, &index_name, Content::Bytes(&index))?;
    let index_path = args.out.join(&index_name);
    match &args.sign_key {
        Some(key) => sign(key, &index_path, &name)?,
        None => crate::warn!(
            "hnroot: sign the index before servers use it (`minisign -Sm {}`): a stage trusts \
             only an index signed by the image's publisher, and downloads the whole image \
             otherwise",
            index_path.display()
        ),
    }
    let len = image.metadata()?.len();
    crate::say!(
        "hnroot: published {name} in {}: {} MiB in {} chunks of {} KiB on average ({} MiB of \
         zeros), index {} KiB ({:.2} % of the image)",
        args.out.display(),
        len >> 20,
        summary.chunks,
        sizes.avg >> 10,
        summary.zero_bytes >> 20,
        index.len() >> 10,
        index.len() as f64 * 100.0 / len.max(1) as f64
    );
    Ok(())
}

/// Run `hnroot publish`.
pub fn run(args: &PublishArgs) -> ExitCode {
    match publish(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            crate::warn!("hnroot publish: {e:#}");
            ExitCode::FAILURE
        }
    }
}
