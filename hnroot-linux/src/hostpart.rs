//! hostpart's top directory: observe the image files and the revert marker for the core, and
//! carry out the hostpart steps of a plan (renames, marker removal, directory sync, checkpoint).
//! Every file is opened relative to one directory descriptor with `O_NOFOLLOW`; only regular
//! files with a single link count as images, so a symlink, hard link or device node named
//! `hn-root.img` is never booted, probed through, renamed onto or removed.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use hnroot_core::bootstate::StateSeen;
use hnroot_core::name::{ImageName, REVERT_MARKER};
use hnroot_core::observe::{ImageSeen, Observation};
use hnroot_core::probe::{FsOutcome, FsType};
use hnroot_core::uuid::FsUuid;

use crate::probe;

/// Filesystem magic numbers (`statfs.f_type`) hostpart may have.
const EXT4_SUPER_MAGIC: i64 = 0xEF53;
const XFS_SUPER_MAGIC: i64 = 0x5846_5342;
const BTRFS_SUPER_MAGIC: i64 = 0x9123_683E;

/// `FIFREEZE` / `FITHAW` (`_IOWR('X', 119, int)` / `_IOWR('X', 120, int)`).
const FIFREEZE: libc::c_ulong = 0xC004_5877;
const FITHAW: libc::c_ulong = 0xC004_5878;
/// `BTRFS_IOC_SYNC` (`_IO(0x94, 8)`): commit the running transaction.
const BTRFS_IOC_SYNC: libc::c_ulong = 0x9408;

/// `renameat2` flag: fail if the destination exists.
const RENAME_NOREPLACE: libc::c_uint = 1;

/// How one image file was found, in more detail than the core needs (for logs and `hnroot
/// status`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageFile {
    /// No such file.
    Absent,
    /// Present but not bootable, and why.
    Unreadable {
        /// Size in bytes, when it is a file.
        size: Option<u64>,
        /// Why it cannot be used.
        why: String,
    },
    /// A filesystem the probes recognise.
    Readable {
        /// Size in bytes.
        size: u64,
        /// Filesystem type.
        fs_type: FsType,
        /// Filesystem UUID.
        uuid: FsUuid,
        /// Filesystem label, if any.
        label: Option<String>,
    },
}

impl ImageFile {
    /// What the core needs.
    pub fn seen(&self) -> ImageSeen {
        match self {
            ImageFile::Absent => ImageSeen::Absent,
            ImageFile::Unreadable { .. } => ImageSeen::Unreadable,
            ImageFile::Readable { uuid, .. } => ImageSeen::Readable(*uuid),
        }
    }
}

/// Everything seen in hostpart's top directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostpartSeen {
    /// Indexed by [`ImageName::index`].
    pub images: Vec<ImageFile>,
    /// `system-revert` exists.
    pub revert_requested: bool,
}

impl HostpartSeen {
    /// The core's observation, with the boot state read elsewhere (from the ESP).
    pub fn observation(&self, state: StateSeen) -> Observation {
        let mut obs = Observation {
            revert_requested: self.revert_requested,
            state,
            ..Observation::default()
        };
        for (name, file) in ImageName::ALL.iter().zip(&self.images) {
            obs.set(*name, file.seen());
        }
        obs
    }

    /// How `name` was found.
    pub fn image(&self, name: ImageName) -> &ImageFile {
        self.images.get(name.index()).unwrap_or(&ImageFile::Absent)
    }
}

/// Errors from hostpart operations: the step, the path and the errno.
#[derive(Debug, thiserror::Error)]
#[error("{step} {path}: {source}")]
pub struct HostpartError {
    /// What was being done (`rename`, `open directory`, `checkpoint` ...).
    pub step: String,
    /// The file or directory.
    pub path: PathBuf,
    /// The error from the kernel (part of the message, so not also reported as a source).
    pub source: io::Error,
}

/// Why a file named like an image is not used as one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// Its size, when known.
    pub size: Option<u64>,
    /// Why.
    pub why: String,
}

/// hostpart's top directory, held open.
#[derive(Debug)]
pub struct Hostpart {
    dir: OwnedFd,
    path: PathBuf,
}

fn cstr(name: &str) -> CString {
    // Names come from `ImageName` and `REVERT_MARKER`: constants without NUL bytes.
    CString::new(name).unwrap_or_default()
}

fn last_os_error() -> io::Error {
    io::Error::last_os_error()
}

impl Hostpart {
    /// Open the directory `path` (hostpart's mount point).
    pub fn open(path: &Path) -> Result<Hostpart, HostpartError> {
        let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|e| HostpartError {
            step: "open directory".into(),
            path: path.to_owned(),
            source: io::Error::new(io::ErrorKind::InvalidInput, e),
        })?;
        // SAFETY: `c` is a valid NUL-terminated path; the returned descriptor is owned below.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(self::err("open directory", path, last_os_error()));
        }
        // SAFETY: `fd` is a fresh descriptor we own.
        Ok(Hostpart {
            dir: unsafe { OwnedFd::from_raw_fd(fd) },
            path: path.to_owned(),
        })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, step: &str, name: &str, source: io::Error) -> HostpartError {
        err(step, &self.path.join(name), source)
    }

    /// Open `name` in the directory for reading, refusing symlinks and anything but a regular
    /// file with one link.
    pub fn open_image(&self, name: ImageName) -> Result<Option<(File, u64)>, Refused> {
        let c = cstr(name.file_name());
        // SAFETY: valid directory descriptor and NUL-terminated name; the result is owned below.
        let fd = unsafe {
            libc::openat(
                self.dir.as_raw_fd(),
                c.as_ptr(),
                libc::O_RDONLY
                    | libc::O_NOFOLLOW
                    | libc::O_CLOEXEC
                    | libc::O_NOCTTY
                    | libc::O_NONBLOCK,
            )
        };
        if fd < 0 {
            let e = last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOENT) => Ok(None),
                Some(libc::ELOOP) => Err(Refused {
                    size: None,
                    why: "a symbolic link: images must be regular files".into(),
                }),
                _ => Err(Refused {
                    size: None,
                    why: format!("cannot open: {e}"),
                }),
            };
        }
        // SAFETY: `fd` is a fresh descriptor we own.
        let file = unsafe { File::from_raw_fd(fd) };
        let meta = file.metadata().map_err(|e| Refused {
            size: None,
            why: format!("cannot stat: {e}"),
        })?;
        if !meta.file_type().is_file() {
            return Err(Refused {
                size: None,
                why: "not a regular file".into(),
            });
        }
        if meta.nlink() != 1 {
            return Err(Refused {
                size: Some(meta.len()),
                why: format!(
                    "has {} hard links: an image must have exactly one name",
                    meta.nlink()
                ),
            });
        }
        Ok(Some((file, meta.len())))
    }

    /// Look at every image file and the revert marker.
    pub fn observe(&self) -> Result<HostpartSeen, HostpartError> {
        let mut images = Vec::with_capacity(ImageName::ALL.len());
        for name in ImageName::ALL {
            images.push(match self.open_image(name) {
                Ok(None) => ImageFile::Absent,
                Err(Refused { size, why }) => ImageFile::Unreadable { size, why },
                Ok(Some((file, size))) => classify(file, &self.path.join(name.file_name()), size),
            });
        }
        let revert_requested = self.exists(REVERT_MARKER)?;
        Ok(HostpartSeen {
            images,
            revert_requested,
        })
    }

    fn exists(&self, name: &str) -> Result<bool, HostpartError> {
        let c = cstr(name);
        // SAFETY: zeroed `stat` is a valid out-buffer for fstatat.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid descriptor, NUL-terminated name, valid out-pointer.
        let r = unsafe {
            libc::fstatat(
                self.dir.as_raw_fd(),
                c.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if r == 0 {
            return Ok(true);
        }
        let e = last_os_error();
        if e.raw_os_error() == Some(libc::ENOENT) {
            Ok(false)
        } else {
            Err(self.err("stat", name, e))
        }
    }

    /// `renameat2(from, to)`, with `RENAME_NOREPLACE` unless `replace`. The source must be an
    /// image we would open (regular file, one link), and a replaced destination too.
    pub fn rename(
        &self,
        from: ImageName,
        to: ImageName,
        replace: bool,
    ) -> Result<(), HostpartError> {
        let step = if replace {
            "rename"
        } else {
            "rename (no replace)"
        };
        if let Err(Refused { why, .. }) = self.open_image(from) {
            return Err(self.err(
                step,
                from.file_name(),
                io::Error::other(format!("refusing to move it: {why}")),
            ));
        }
        if replace {
            if let Err(Refused { why, .. }) = self.open_image(to) {
                return Err(self.err(
                    step,
                    to.file_name(),
                    io::Error::other(format!("refusing to replace it: {why}")),
                ));
            }
        }
        let (f, t) = (cstr(from.file_name()), cstr(to.file_name()));
        let flags = if replace { 0 } else { RENAME_NOREPLACE };
        let dir = self.dir.as_raw_fd();
        // SAFETY: valid descriptors and NUL-terminated names; renameat2 has no other inputs.
        let r =
            unsafe { libc::syscall(libc::SYS_renameat2, dir, f.as_ptr(), dir, t.as_ptr(), flags) };
        if r != 0 {
            let name = format!("{} -> {}", from.file_name(), to.file_name());
            return Err(self.err(step, &name, last_os_error()));
        }
        Ok(())
    }

    /// Remove `system-revert` (already gone is fine: a repeated plan after a crash).
    pub fn remove_revert_marker(&self) -> Result<(), HostpartError> {
        let c = cstr(REVERT_MARKER);
        // SAFETY: valid descriptor and NUL-terminated name.
        let r = unsafe { libc::unlinkat(self.dir.as_raw_fd(), c.as_ptr(), 0) };
        if r != 0 {
            let e = last_os_error();
            if e.raw_os_error() != Some(libc::ENOENT) {
                return Err(self.err("remove", REVERT_MARKER, e));
            }
        }
        Ok(())
    }

    /// `fsync` the directory.
    pub fn sync_dir(&self) -> Result<(), HostpartError> {
        // SAFETY: valid descriptor.
        if unsafe { libc::fsync(self.dir.as_raw_fd()) } != 0 {
            return Err(self.err("fsync", ".", last_os_error()));
        }
        Ok(())
    }

    /// Make everything written so far visible to a reader that does not replay journals
    /// (GRUB): `syncfs`, then `FIFREEZE`+`FITHAW` on ext4 and XFS (which write the journal
    /// home), a transaction commit on btrfs. Returns what was done, for the log.
    pub fn checkpoint(&self) -> Result<&'static str, HostpartError> {
        let fd = self.dir.as_raw_fd();
        // SAFETY: valid descriptor.
        if unsafe { libc::syncfs(fd) } != 0 {
            return Err(self.err("syncfs", ".", last_os_error()));
        }
        // SAFETY: zeroed statfs is a valid out-buffer.
        let mut sfs: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: valid descriptor and out-pointer.
        if unsafe { libc::fstatfs(fd, &mut sfs) } != 0 {
            return Err(self.err("statfs", ".", last_os_error()));
        }
        #[allow(clippy::unnecessary_cast)] // f_type's width differs between libcs.
        match sfs.f_type as i64 {
            EXT4_SUPER_MAGIC | XFS_SUPER_MAGIC => {
                // SAFETY: FIFREEZE takes an int argument that the kernel ignores.
                if unsafe { libc::ioctl(fd, FIFREEZE as _, 0) } != 0 {
                    return Err(self.err("freeze (FIFREEZE)", ".", last_os_error()));
                }
                // SAFETY: as above; thaw even if something else fails later.
                if unsafe { libc::ioctl(fd, FITHAW as _, 0) } != 0 {
                    return Err(self.err("thaw (FITHAW)", ".", last_os_error()));
                }
                Ok("syncfs + freeze/thaw")
            }
            BTRFS_SUPER_MAGIC => {
                // SAFETY: BTRFS_IOC_SYNC takes no argument.
                if unsafe { libc::ioctl(fd, BTRFS_IOC_SYNC as _, 0) } != 0 {
                    return Err(self.err("btrfs sync", ".", last_os_error()));
                }
                Ok("syncfs + btrfs transaction commit")
            }
            other => Ok(if other == 0 {
                "syncfs"
            } else {
                "syncfs (filesystem without a checkpoint ioctl)"
            }),
        }
    }
}

fn err(step: &str, path: &Path, source: io::Error) -> HostpartError {
    HostpartError {
        step: step.to_owned(),
        path: path.to_owned(),
        source,
    }
}

/// Probe an open image file of `size` bytes and say what it is: the judgement `observe`
/// applies to hostpart's images, for any image file (`hnroot stage` checks its source with
/// it). Never `Absent`.
pub fn classify(file: File, path: &Path, size: u64) -> ImageFile {
    let mut device = probe::Device::from_file(file, path, size, 512);
    match device.probe_fs(0, size) {
        Err(e) => ImageFile::Unreadable {
            size: Some(size),
            why: format!("read error: {e}"),
        },
        Ok(FsOutcome::Found(info)) => match (info.missing_bytes(size), info.uuid) {
            (Some(missing), _) => ImageFile::Unreadable {
                size: Some(size),
                why: format!(
                    "truncated: its {} filesystem spans {} bytes, the file holds {size} \
                     ({missing} missing; an incomplete copy?)",
                    info.fs_type.as_str(),
                    size.saturating_add(missing),
                ),
            },
            (None, Some(uuid)) if !uuid.is_nil() => ImageFile::Readable {
                size,
                fs_type: info.fs_type,
                uuid,
                label: info
                    .label
                    .as_ref()
                    .map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned()),
            },
            (None, _) => ImageFile::Unreadable {
                size: Some(size),
                why: format!(
                    "{} filesystem without a UUID: hnroot identifies images by UUID",
                    info.fs_type.as_str()
                ),
            },
        },
        Ok(FsOutcome::Unknown) => ImageFile::Unreadable {
            size: Some(size),
            why: "no ext2/3/4, XFS, btrfs or FAT filesystem found (truncated or not an image?)"
                .into(),
        },
        Ok(FsOutcome::Ambivalent(types)) => ImageFile::Unreadable {
            size: Some(size),
            why: format!("ambiguous: valid superblocks of {types} (wipefs the stale one)"),
        },
        Ok(FsOutcome::Other(other)) => ImageFile::Unreadable {
            size: Some(size),
            why: format!("a {other} volume, not a filesystem"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A small real ext4 image made by mkfs.ext4, and its UUID as blkid sees it.
    fn ext4_image(path: &Path, uuid: &str) {
        let status = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-U", uuid, "-L", "root"])
            .arg(path)
            .arg("4M")
            .status()
            .expect("mkfs.ext4 runs");
        assert!(status.success());
    }

    const U1: &str = "11111111-2222-3333-4444-555555555555";
    const U2: &str = "66666666-7777-8888-9999-aaaaaaaaaaaa";

    #[test]
    fn observes_real_images_and_refuses_links_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        ext4_image(&d.join("hn-root.img"), U1);
        ext4_image(&d.join("elsewhere.img"), U2);
        std::os::unix::fs::symlink(d.join("elsewhere.img"), d.join("hn-root-new.img")).unwrap();
        std::fs::hard_link(d.join("elsewhere.img"), d.join("hn-root-old.img")).unwrap();
        std::fs::write(d.join("hn-root-broken.img"), vec![0x5a; 300_000]).unwrap();
        std::fs::create_dir(d.join("hn-root-cancelled.img")).unwrap();
        std::fs::write(d.join(REVERT_MARKER), b"").unwrap();

        let hp = Hostpart::open(d).unwrap();
        let seen = hp.observe().unwrap();
        assert!(seen.revert_requested);
        match seen.image(ImageName::Current) {
            ImageFile::Readable {
                fs_type,
                uuid,
                label,
                ..
            } => {
                assert_eq!(*fs_type, FsType::Ext4);
                assert_eq!(uuid.to_string(), U1);
                assert_eq!(label.as_deref(), Some("root"));
            }
            other => panic!("{other:?}"),
        }
        let why = |name| match seen.image(name) {
            ImageFile::Unreadable { why, .. } => why.clone(),
            other => panic!("{name}: {other:?}"),
        };
        assert!(
            why(ImageName::New).contains("symbolic link"),
            "{}",
            why(ImageName::New)
        );
        assert!(
            why(ImageName::Old).contains("2 hard links"),
            "{}",
            why(ImageName::Old)
        );
        assert!(
            why(ImageName::Broken).contains("no ext2/3/4"),
            "{}",
            why(ImageName::Broken)
        );
        assert!(
            why(ImageName::Cancelled).contains("not a regular file"),
            "{}",
            why(ImageName::Cancelled)
        );
        let obs = seen.observation(StateSeen::Absent);
        assert_eq!(
            obs.readable(ImageName::Current)
                .map(|u| u.to_string())
                .as_deref(),
            Some(U1)
        );
        assert_eq!(obs.image(ImageName::New), ImageSeen::Unreadable);
    }

    #[test]
    fn a_truncated_copy_is_unreadable_and_says_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        ext4_image(&d.join("hn-root.img"), U1);
        // A copy of a 4 MiB filesystem that stopped after 3 MiB: its superblock (and UUID)
        // are intact, which is all blkid looks at.
        ext4_image(&d.join("hn-root-new.img"), U2);
        let staged = std::fs::OpenOptions::new()
            .write(true)
            .open(d.join("hn-root-new.img"))
            .unwrap();
        staged.set_len(3 << 20).unwrap();
        drop(staged);
        let seen = Hostpart::open(d).unwrap().observe().unwrap();
        match seen.image(ImageName::New) {
            ImageFile::Unreadable { why, size } => {
                assert_eq!(*size, Some(3 << 20));
                assert_eq!(
                    why,
                    "truncated: its ext4 filesystem spans 4194304 bytes, the file holds 3145728 \
                     (1048576 missing; an incomplete copy?)"
                );
            }
            other => panic!("{other:?}"),
        }
        let obs = seen.observation(StateSeen::Absent);
        assert_eq!(obs.image(ImageName::New), ImageSeen::Unreadable);
        assert!(obs.readable(ImageName::Current).is_some());
    }

    #[test]
    fn renames_refuse_links_and_noreplace_refuses_an_existing_target() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        ext4_image(&d.join("hn-root.img"), U1);
        ext4_image(&d.join("hn-root-new.img"), U2);
        let hp = Hostpart::open(d).unwrap();
        let e = hp
            .rename(ImageName::New, ImageName::Current, false)
            .unwrap_err();
        assert_eq!(e.source.raw_os_error(), Some(libc::EEXIST), "{e}");
        assert!(e.to_string().contains("rename (no replace)"), "{e}");
        hp.rename(ImageName::Current, ImageName::Old, true).unwrap();
        hp.rename(ImageName::New, ImageName::Current, false)
            .unwrap();
        hp.sync_dir().unwrap();
        let seen = hp.observe().unwrap();
        assert_eq!(
            seen.observation(StateSeen::Absent)
                .readable(ImageName::Current)
                .unwrap()
                .to_string(),
            U2
        );
        assert_eq!(
            seen.observation(StateSeen::Absent)
                .readable(ImageName::Old)
                .unwrap()
                .to_string(),
            U1
        );

        std::os::unix::fs::symlink("/etc/passwd", d.join("hn-root-broken.img")).unwrap();
        let e = hp
            .rename(ImageName::Old, ImageName::Broken, true)
            .unwrap_err();
        assert!(e.to_string().contains("refusing to replace it"), "{e}");
        assert!(d.join("hn-root-old.img").exists(), "nothing moved");
    }

    #[test]
    fn marker_removal_is_idempotent_and_checkpoint_reports_what_it_did() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(REVERT_MARKER), b"").unwrap();
        let hp = Hostpart::open(dir.path()).unwrap();
        hp.remove_revert_marker().unwrap();
        hp.remove_revert_marker().unwrap();
        assert!(!hp.observe().unwrap().revert_requested);
        // Whatever filesystem the temporary directory is on, a checkpoint succeeds and says how.
        assert!(hp.checkpoint().unwrap().starts_with("syncfs"));
    }
}
