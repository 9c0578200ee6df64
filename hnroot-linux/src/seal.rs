//! The seal's facts gathered on Linux, for the core's judgement (`hnroot_core::seal`,
//! `hnroot_core::floor`): an image file's last block and its filesystem, the trusted keys, the
//! SHA-256 of an image's boot files, and the version floor on hostpart, read and written through
//! the file layer. It judges nothing itself.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use hnroot_core::floor::{self, FloorSeen, FLOOR_FILE, FLOOR_MAX};
use hnroot_core::layout::{self, RECORDS_DIR};
use hnroot_core::minisig::PublicKey;
use hnroot_core::probe::{FsOutcome, FsType};
use hnroot_core::seal::{self, SealFacts, SealSeen, Version, SEAL_BLOCK_LEN};
use sha2::{Digest, Sha256};

use crate::fsat::{self, InRoot};
use crate::hostpart::Hostpart;
use crate::image::{self, Inspect};
use crate::{loopdev, mounts};

/// The most bytes of one key file read.
pub const KEY_MAX: usize = 4096;
/// The most key files looked at in a directory.
pub const KEYS_MAX: usize = 1000;

/// Trusted keys, each with the file it came from.
pub type Keys = Vec<(PathBuf, PublicKey)>;

/// The trusted keys of `dir` (`*.pub`, regular files of at most [`KEY_MAX`] bytes, opened
/// without following a FIFO or a device), and a line for each file skipped.
pub fn load_keys(dir: &Path) -> io::Result<(Keys, Vec<String>)> {
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for entry in std::fs::read_dir(dir)?.take(KEYS_MAX).flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("pub") {
            continue;
        }
        match fsat::read_regular(&path, KEY_MAX) {
            Ok(bytes) => match PublicKey::parse(&bytes) {
                Ok(key) => keys.push((path, key)),
                Err(e) => skipped.push(format!("{}: {e}: ignored", path.display())),
            },
            Err(e) => skipped.push(format!(
                "{} is {e}: not a key file; skipped",
                path.display()
            )),
        }
    }
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((keys, skipped))
}

/// An image file's length and, when it is long enough, its last [`SEAL_BLOCK_LEN`] bytes.
pub fn last_block(file: &File) -> io::Result<(u64, Option<Vec<u8>>)> {
    let len = file.metadata()?.len();
    let block = SEAL_BLOCK_LEN as u64;
    if len < block {
        return Ok((len, None));
    }
    let mut buf = vec![0u8; SEAL_BLOCK_LEN];
    file.read_exact_at(&mut buf, len - block)?;
    Ok((len, Some(buf)))
}

/// The seal of an image file whose filesystem `outcome` the probe found, judged by the core
/// against `keys`. A file without one filesystem with a UUID is judged by the image verdict,
/// not here: it is `Unsealed` for this purpose.
pub fn judge_file(file: &File, outcome: &FsOutcome, keys: &[PublicKey]) -> io::Result<SealSeen> {
    let (file_len, block) = last_block(file)?;
    Ok(judge_facts(file_len, block.as_deref(), outcome, keys))
}

/// As [`judge_file`], from the length and last block already read (a URL's, say).
pub fn judge_facts(
    file_len: u64,
    block: Option<&[u8]>,
    outcome: &FsOutcome,
    keys: &[PublicKey],
) -> SealSeen {
    let Some(info) = outcome.info() else {
        return SealSeen::Unsealed;
    };
    let Some(fs_uuid) = info.uuid else {
        return SealSeen::Unsealed;
    };
    let facts = SealFacts {
        file_len,
        last_block: block,
        fs_uuid,
        fs_bytes: info.size.unwrap_or(u64::MAX),
    };
    seal::judge(&facts, keys)
}

/// How a seal reads in `status`, `history` and messages: `sealed VERSION`, `unsealed`, or the
/// problem's code.
pub fn describe(seen: &SealSeen) -> String {
    match seen {
        SealSeen::Unsealed => "unsealed".into(),
        SealSeen::Sealed { manifest, .. } => format!("sealed {}", manifest.version),
        SealSeen::Broken(e) => format!("seal broken ({})", e.problem),
    }
}

/// The most bytes of a boot file hashed.
pub const BOOT_FILE_MAX: usize = 1 << 30;

/// SHA-256 of `/boot/kernel` and `/boot/initramfs` inside the image `file` (an ext filesystem
/// read with ext4-view; btrfs and XFS through a read-only loop mount, links resolved inside the
/// image), the bytes GRUB will load.
pub fn boot_file_hashes(
    file: &File,
    fs_type: FsType,
    inspect: &Inspect,
) -> io::Result<([u8; 32], [u8; 32])> {
    let kernel = layout::KERNEL_PATH;
    let initramfs = layout::INITRAMFS_PATH;
    match fs_type {
        FsType::Ext2 | FsType::Ext3 | FsType::Ext4 | FsType::Ext4dev => {
            let fs = ext4_view::Ext4::load(Box::new(file.try_clone()?))
                .map_err(|e| io::Error::other(format!("reading the ext filesystem: {e}")))?;
            let hash = |rel: &str| -> io::Result<[u8; 32]> {
                let bytes = fs
                    .read(format!("/{rel}").as_str())
                    .map_err(|e| io::Error::other(format!("/{rel}: {e}")))?;
                Ok(Sha256::digest(&bytes).into())
            };
            Ok((hash(kernel)?, hash(initramfs)?))
        }
        FsType::Xfs | FsType::Btrfs => {
            let lo = loopdev::attach(&inspect.dev, file, "hnroot-seal", false)?;
            mounts::mkdir_p(&inspect.scratch).map_err(|e| io::Error::other(e.to_string()))?;
            let dir = inspect.scratch.join(format!("seal-{}", std::process::id()));
            std::fs::create_dir(&dir)?;
            let mounted = mounts::mount_image_readonly(&lo.node, fs_type, &dir)
                .map_err(|e| io::Error::other(e.to_string()));
            drop(lo);
            let result = mounted.and_then(|()| {
                let root = InRoot::open(&dir)?;
                let hash = |rel: &str| -> io::Result<[u8; 32]> {
                    let bytes = root
                        .read(rel, BOOT_FILE_MAX)
                        .map_err(|e| io::Error::other(format!("/{rel}: {e}")))?;
                    Ok(Sha256::digest(&bytes).into())
                };
                Ok((hash(kernel)?, hash(initramfs)?))
            });
            let _ = mounts::umount(&dir, libc::MNT_DETACH);
            let _ = std::fs::remove_dir(&dir);
            result
        }
        other => Err(io::Error::other(format!(
            "{} images have no boot files GRUB reads",
            other.as_str()
        ))),
    }
}

/// SHA-256 of everything `reader` yields.
pub fn sha256_of(reader: &mut dyn Read) -> io::Result<[u8; 32]> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finalize().into());
        }
        h.update(buf.get(..n).unwrap_or_default());
    }
}

/// The version floor on `hostpart` as found: no file, a floor, or a file that cannot be read
/// (never taken as no floor).
pub fn read_floor(hostpart: &Hostpart) -> FloorSeen {
    let dir = match hostpart.open_dirs(RECORDS_DIR) {
        Ok(Some(dir)) => dir,
        Ok(None) => return FloorSeen::None,
        Err(_) => return FloorSeen::Unreadable,
    };
    match fsat::read_file(&dir, FLOOR_FILE, FLOOR_MAX + 1) {
        Ok((bytes, _)) => FloorSeen::from_file(Some(&bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => FloorSeen::None,
        Err(_) => FloorSeen::Unreadable,
    }
}

/// Write the floor `version` on `hostpart`: a new file, synced, renamed over the old one, the
/// directory synced (`fsat::write_file`), then read back. A power cut at any moment leaves the
/// old floor or the new one.
pub fn write_floor(hostpart: &Hostpart, version: &Version) -> io::Result<()> {
    let mut buf = [0u8; FLOOR_MAX];
    let n = floor::encode(version, &mut buf)
        .ok_or_else(|| io::Error::other("the floor does not fit its file"))?;
    let dir = hostpart.make_dirs(RECORDS_DIR).map_err(|e| e.error)?;
    fsat::write_file(
        &dir,
        FLOOR_FILE,
        buf.get(..n).unwrap_or_default(),
        0o644,
        true,
    )?;
    match read_floor(hostpart) {
        FloorSeen::Set(v) if &v == version => Ok(()),
        other => Err(io::Error::other(format!(
            "the floor read back is {other:?}, not version {version}"
        ))),
    }
}

/// The probe's outcome for an open image file.
pub fn probe(file: &File) -> io::Result<FsOutcome> {
    image::probe_file(file)
}
