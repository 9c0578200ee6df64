//! hostpart's top directory, held open: its images judged for the core (see [`crate::image`]),
//! the revert marker, `hnroot stage`'s partial files, and the operations plan steps need —
//! renames, marker creation and removal, the partial file, directory sync, checkpoint — all
//! relative to the one directory descriptor, never through a path that could have been
//! swapped, never writing through a link. The operator commands serialise on [`Hostpart::lock`].

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use hnroot_core::bootstate::StateSeen;
use hnroot_core::layout::{self, PARTIAL_PREFIX, PARTIAL_SUFFIX, REVERT_MARKER};
use hnroot_core::name::ImageName;
use hnroot_core::observe::Observation;
use hnroot_core::overlay;
use hnroot_core::uuid::{FsUuid, PartUuid};

use hnroot_core::bootline::{ArgsFile, BootParts, Extra};

use crate::fsat;
use crate::image::{self, ArgsRead, Inspect, Judged};

/// Filesystem magic numbers (`statfs.f_type`) hostpart may have.
const EXT4_SUPER_MAGIC: i64 = 0xEF53;
const XFS_SUPER_MAGIC: i64 = 0x5846_5342;
const BTRFS_SUPER_MAGIC: i64 = 0x9123_683E;

/// `FIFREEZE` / `FITHAW` (`_IOWR('X', 119, int)` / `_IOWR('X', 120, int)`).
const FIFREEZE: libc::c_ulong = 0xC004_5877;
const FITHAW: libc::c_ulong = 0xC004_5878;
/// `EXT4_IOC_CHECKPOINT` (`_IOW('f', 43, __u32)`): write the journal home, no freeze needed.
const EXT4_IOC_CHECKPOINT: libc::c_ulong = 0x4004_662B;
/// `BTRFS_IOC_SYNC` (`_IO(0x94, 8)`): commit the running transaction.
const BTRFS_IOC_SYNC: libc::c_ulong = 0x9408;

/// Most entries of the top directory looked at for partial files.
const MAX_DIR_ENTRIES: usize = 100_000;

/// A partial file `hnroot stage` left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partial {
    /// Its name in the top directory.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Everything seen in hostpart's top directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostpartView {
    /// Indexed by [`ImageName::index`].
    pub images: Vec<Judged>,
    /// `system-revert` is there (a dangling link counts: the name is what matters, as in GRUB).
    pub revert_requested: bool,
    /// Partial files of `hnroot stage`.
    pub partials: Vec<Partial>,
    /// The host's own kernel arguments (`layout::HOST_ARGS_PATH`, opened as GRUB opens it).
    pub host_args: ArgsRead,
}

impl HostpartView {
    /// The extra kernel arguments of booting `image` as GRUB composes them: the loader's
    /// `defaults`, the image's own, the host's.
    pub fn extra_args<'a>(&'a self, image: ImageName, defaults: ArgsFile<'a>) -> Extra<'a> {
        Extra {
            defaults,
            image: self
                .image(image)
                .map_or(ArgsFile::Absent, |j| j.args.as_file()),
            host: self.host_args.as_file(),
        }
    }

    /// Every part of a boot's command line but the choice, as GRUB gathers them: hostpart's
    /// and the ESP's PARTUUIDs, the `defaults`, each image's own arguments and the host's, and
    /// the root hash of each bootable image whose seal held (observed under a seal policy).
    pub fn boot_parts<'a>(
        &'a self,
        hostpart: Option<PartUuid>,
        esp: Option<PartUuid>,
        defaults: ArgsFile<'a>,
    ) -> BootParts<'a> {
        let mut parts = BootParts {
            hostpart,
            esp,
            defaults,
            host: self.host_args.as_file(),
            ..BootParts::default()
        };
        for (slot, judged) in parts.images.iter_mut().zip(&self.images) {
            *slot = judged.args.as_file();
        }
        for (slot, judged) in parts.root_hashes.iter_mut().zip(&self.images) {
            *slot = judged
                .root_hash
                .filter(|_| matches!(judged.verdict, hnroot_core::verdict::Verdict::Bootable(_)));
        }
        parts
    }

    /// The core's observation, with the boot state read elsewhere (from the ESP).
    pub fn observation(&self, state: StateSeen) -> Observation {
        let mut obs = Observation {
            revert_requested: self.revert_requested,
            state,
            ..Observation::default()
        };
        for (name, judged) in ImageName::ALL.iter().zip(&self.images) {
            obs.set(*name, judged.verdict.seen());
        }
        obs
    }

    /// How `name` was judged.
    pub fn image(&self, name: ImageName) -> Option<&Judged> {
        self.images.get(name.index())
    }
}

/// A failed operation on hostpart: what, on which name, and the error. The error's text is
/// part of the message, and it is not also given as a source (it would print twice).
#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {error}")]
pub struct HostpartError {
    /// What was being done (`rename`, `open directory`, `checkpoint` ...).
    pub what: String,
    /// The file or directory.
    pub path: PathBuf,
    /// The error from the kernel.
    pub error: io::Error,
}

impl HostpartError {
    /// The errno, when the kernel gave one.
    pub fn errno(&self) -> Option<i32> {
        self.error.raw_os_error()
    }
}

/// hostpart's top directory, held open.
#[derive(Debug)]
pub struct Hostpart {
    dir: OwnedFd,
    path: PathBuf,
    inspect: Inspect,
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Hostpart {
    /// Open the directory `path` (hostpart's mount point).
    pub fn open(path: &Path) -> Result<Hostpart, HostpartError> {
        let dir = fsat::open_root(path).map_err(|error| HostpartError {
            what: "open directory".into(),
            path: path.to_owned(),
            error,
        })?;
        Ok(Hostpart {
            dir,
            path: path.to_owned(),
            inspect: Inspect::default(),
        })
    }

    /// Look inside XFS and btrfs images with these loop devices and scratch directory.
    pub fn with_inspect(mut self, inspect: Inspect) -> Hostpart {
        self.inspect = inspect;
        self
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory descriptor.
    pub fn dir(&self) -> &OwnedFd {
        &self.dir
    }

    /// Where temporary loop mounts of images go.
    pub fn inspect(&self) -> &Inspect {
        &self.inspect
    }

    fn err(&self, what: &str, name: &str, error: io::Error) -> HostpartError {
        HostpartError {
            what: what.to_owned(),
            path: self.path.join(name),
            error,
        }
    }

    /// Judge every image name, see the marker, the partial files and the host's kernel
    /// arguments.
    pub fn observe(&self) -> Result<HostpartView, HostpartError> {
        self.observe_as(None)
    }

    /// [`Hostpart::observe`] as a loader with the seal policy `policy` sees hostpart: each
    /// bootable image's seal judged (`image::judge_file_sealed`).
    pub fn observe_sealed(
        &self,
        policy: &image::SealPolicy,
    ) -> Result<HostpartView, HostpartError> {
        self.observe_as(Some(policy))
    }

    fn observe_as(
        &self,
        policy: Option<&image::SealPolicy>,
    ) -> Result<HostpartView, HostpartError> {
        let images = ImageName::ALL
            .iter()
            .map(|name| image::judge_name_as(&self.dir, name.file_name(), &self.inspect, policy))
            .collect();
        let revert_requested = self.exists(REVERT_MARKER)?;
        let partials = self.partials()?;
        let host_args = image::read_args_in(&self.dir, layout::HOST_ARGS_PATH);
        Ok(HostpartView {
            images,
            revert_requested,
            partials,
            host_args,
        })
    }

    /// Whether the name exists (not following a link).
    pub fn exists(&self, name: &str) -> Result<bool, HostpartError> {
        fsat::stat_at(&self.dir, name)
            .map(|st| st.is_some())
            .map_err(|e| self.err("stat", name, e))
    }

    /// Open image `name` for reading as GRUB would (a link resolved inside hostpart).
    pub fn open_image(&self, name: ImageName) -> Result<File, HostpartError> {
        image::open_in_root(&self.dir, name.file_name())
            .map_err(|e| self.err("open", name.file_name(), e))
    }

    /// Open image `name` for reading and writing (`hnroot.rw`), resolved as by
    /// [`Hostpart::open_image`].
    pub fn open_image_rw(&self, name: ImageName) -> Result<File, HostpartError> {
        image::open_in_root_as(&self.dir, name.file_name(), libc::O_RDWR)
            .map_err(|e| self.err("open read-write", name.file_name(), e))
    }

    /// `renameat2(from, to)` in the top directory, with `RENAME_NOREPLACE` unless `replace`.
    /// Names are moved as they are (a link stays a link); nothing is written through them.
    pub fn rename(&self, from: &str, to: &str, replace: bool) -> Result<(), HostpartError> {
        fsat::rename(&self.dir, from, to, replace).map_err(|e| {
            let step = if replace {
                "rename"
            } else {
                "rename (no replace)"
            };
            self.err(step, &format!("{from} -> {to}"), e)
        })
    }

    /// Remove `name` from the top directory (already gone is fine: a repeated plan).
    pub fn remove(&self, name: &str) -> Result<(), HostpartError> {
        fsat::unlink(&self.dir, name).map_err(|e| self.err("remove", name, e))
    }

    /// Remove the revert marker, whatever it is: a file, a link (never followed), or a directory
    /// (a revert request like any other; its contents go with it, never crossing into another
    /// filesystem). Already gone is fine.
    pub fn remove_marker(&self) -> Result<(), HostpartError> {
        match self.remove(REVERT_MARKER) {
            Err(e) if e.errno() == Some(libc::EISDIR) => {
                let mnt =
                    crate::fsat::mount_id(&self.dir, "").map_err(|e| self.err("statx", ".", e))?;
                let mut budget = 1 << 16;
                remove_tree(&self.dir, REVERT_MARKER, mnt, &mut budget);
                match self.exists(REVERT_MARKER)? {
                    false => Ok(()),
                    true => Err(self.err(
                        "remove",
                        REVERT_MARKER,
                        io::Error::other("a directory that could not be emptied"),
                    )),
                }
            }
            other => other,
        }
    }

    /// Create the revert marker (an empty file), unless something has that name already.
    pub fn create_marker(&self) -> Result<(), HostpartError> {
        match self.create_exclusive(REVERT_MARKER, 0o644) {
            Ok(file) => file
                .sync_all()
                .map_err(|e| self.err("sync", REVERT_MARKER, e)),
            Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Create `name` in the top directory: exclusively (it must not exist), never through a
    /// link, for writing (and reading back). The only way hnroot writes file contents on hostpart.
    pub fn create_exclusive(&self, name: &str, mode: libc::mode_t) -> Result<File, HostpartError> {
        fsat::create_exclusive(&self.dir, name, mode).map_err(|e| self.err("create", name, e))
    }

    /// Open (creating each missing component) the directory `rel` (`a/b/c`, relative to the
    /// top directory), never following a link on the way.
    pub fn make_dirs(&self, rel: &str) -> Result<OwnedFd, HostpartError> {
        let mut dir = subdir(&self.dir, ".", false).map_err(|e| self.err("open", ".", e))?;
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            dir = subdir(&dir, part, true).map_err(|e| self.err("create directory", rel, e))?;
        }
        Ok(dir)
    }

    /// Open the directory `rel` if it exists (never following a link): `None` when it does not.
    pub fn open_dirs(&self, rel: &str) -> Result<Option<OwnedFd>, HostpartError> {
        let mut dir = subdir(&self.dir, ".", false).map_err(|e| self.err("open", ".", e))?;
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            dir = match subdir(&dir, part, false) {
                Ok(d) => d,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(self.err("open", rel, e)),
            };
        }
        Ok(Some(dir))
    }

    /// The image `uuid`'s writable layer: its `upper` and `work` directories under
    /// [`layout::OVERLAY_DIR`], created as needed without following a link. Returns their
    /// paths (for overlayfs's mount options).
    pub fn overlay_layer(&self, uuid: FsUuid) -> Result<(PathBuf, PathBuf), HostpartError> {
        let base = format!("{}/{uuid}", layout::OVERLAY_DIR);
        let mut paths = Vec::with_capacity(2);
        for part in [overlay::UPPER, overlay::WORK] {
            let rel = format!("{base}/{part}");
            self.make_dirs(&rel)?;
            paths.push(self.path.join(rel));
        }
        let work = paths.pop().unwrap_or_default();
        let upper = paths.pop().unwrap_or_default();
        Ok((upper, work))
    }

    /// Remove the writable layers of images no longer on hostpart (`images`: the UUIDs of
    /// those that are), as the core judges each entry. Returns what was done, one line each.
    pub fn remove_stale_overlays(&self, images: &[FsUuid]) -> Result<Vec<String>, HostpartError> {
        let Some(dir) = self.open_dirs(layout::OVERLAY_DIR)? else {
            return Ok(Vec::new());
        };
        let mnt = crate::fsat::mount_id(&dir, "")
            .map_err(|e| self.err("statx", layout::OVERLAY_DIR, e))?;
        let (names, _) = fsat::list(&dir, MAX_DIR_ENTRIES)
            .map_err(|e| self.err("list", layout::OVERLAY_DIR, e))?;
        let mut done = Vec::new();
        for name in names {
            match overlay::judge(&name, images) {
                overlay::OverlayEntry::Live(_) => {}
                overlay::OverlayEntry::Stale(u) => {
                    let mut budget = 1 << 20;
                    let removed = remove_tree(&dir, &name, mnt, &mut budget);
                    let left = subdir(&dir, &name, false).is_ok();
                    done.push(if left {
                        format!(
                            "the writable layer of {u} (no such image on hostpart any more): removed {removed} entries, some are left in {}/{name}",
                            layout::OVERLAY_DIR
                        )
                    } else {
                        format!(
                            "removed the writable layer of {u} (no such image on hostpart any more; {removed} entries)"
                        )
                    });
                }
                overlay::OverlayEntry::Foreign => done.push(format!(
                    "{}/{name} is not named by an image UUID: not hnroot's, left alone",
                    layout::OVERLAY_DIR
                )),
            }
        }
        Ok(done)
    }

    /// Reopen a partial file this hnroot created, to resume it: only a regular file with one
    /// link, owned by us, never through a link. `None` when there is none. Anything else at
    /// that name is refused with what it is and what to do (one sentence: remove it, then run
    /// the command again).
    pub fn reopen_partial(&self, name: &str) -> Result<Option<File>, HostpartError> {
        use std::os::unix::fs::MetadataExt;
        let Some(st) =
            crate::fsat::stat_at(&self.dir, name).map_err(|e| self.err("stat", name, e))?
        else {
            return Ok(None);
        };
        // SAFETY: geteuid has no inputs.
        let me = unsafe { libc::geteuid() };
        let what = crate::fsat::describe(&st);
        let remove = match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => "remove it by hand (rm -r)",
            _ => "remove it (`hnroot discard-partials`, or rm)",
        };
        #[allow(clippy::useless_conversion)] // st_nlink's width differs between libcs.
        let links = u64::from(st.st_nlink);
        let why = if !matches!(crate::fsat::kind_of(&st), crate::fsat::Kind::File(_)) {
            Some(format!("{what}, not a partial file hnroot made"))
        } else if links != 1 {
            Some(format!(
                "a file with {links} links (another name shares it), not a partial file hnroot made"
            ))
        } else if st.st_uid != me {
            Some(format!(
                "a file owned by uid {}, not a partial file hnroot made",
                st.st_uid
            ))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(self.err(
                "resume",
                name,
                io::Error::other(format!("{why}: {remove}, then run the same command again")),
            ));
        }
        let file = match fsat::open_file_rw(&self.dir, name, false, 0) {
            Ok(Some(file)) => file,
            Ok(None) => return Ok(None),
            Err(e) => return Err(self.err("open", name, e)),
        };
        let meta = file.metadata().map_err(|e| self.err("stat", name, e))?;
        #[allow(clippy::unnecessary_cast)] // st_ino's width differs between libcs.
        if !meta.is_file() || meta.nlink() != 1 || meta.ino() != st.st_ino as u64 {
            return Err(self.err(
                "resume",
                name,
                io::Error::other("it changed while it was opened: run the same command again"),
            ));
        }
        Ok(Some(file))
    }

    /// The partial files of `hnroot stage` in the top directory.
    pub fn partials(&self) -> Result<Vec<Partial>, HostpartError> {
        let (names, _) =
            fsat::list(&self.dir, MAX_DIR_ENTRIES).map_err(|e| self.err("list", ".", e))?;
        let mut out = Vec::new();
        for name in names {
            if name.starts_with(PARTIAL_PREFIX) && name.ends_with(PARTIAL_SUFFIX) {
                #[allow(clippy::unnecessary_cast)] // st_size's width differs between libcs.
                let size = match fsat::stat_at(&self.dir, &name) {
                    Ok(Some(st)) => u64::try_from(st.st_size).unwrap_or(0),
                    _ => 0,
                };
                out.push(Partial { name, size });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Bytes free for a writer (`fstatvfs`).
    pub fn free_bytes(&self) -> Result<u64, HostpartError> {
        // SAFETY: zeroed statvfs is a valid out-buffer.
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: valid descriptor and out-pointer.
        check(unsafe { libc::fstatvfs(self.dir.as_raw_fd(), &mut s) })
            .map_err(|e| self.err("statvfs", ".", e))?;
        #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
        // widths differ between libcs.
        Ok((s.f_bavail as u64).saturating_mul(s.f_frsize as u64))
    }

    /// hostpart's space as the core judges it (`fstatvfs`: bytes available to a writer, and
    /// the filesystem's size).
    pub fn space(&self) -> Result<hnroot_core::space::Space, HostpartError> {
        // SAFETY: zeroed statvfs is a valid out-buffer.
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: valid descriptor and out-pointer.
        check(unsafe { libc::fstatvfs(self.dir.as_raw_fd(), &mut s) })
            .map_err(|e| self.err("statvfs", ".", e))?;
        #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
        // widths differ between libcs.
        let (free, total) = (
            (s.f_bavail as u64).saturating_mul(s.f_frsize as u64),
            (s.f_blocks as u64).saturating_mul(s.f_frsize as u64),
        );
        Ok(hnroot_core::space::judge(free, total))
    }

    /// Take the lock the operator commands (`stage`, `revert`, `mark-good`) share: an
    /// exclusive `flock` on the directory, released when the returned guard drops (or the
    /// process dies). Fails at once when another holds it.
    pub fn lock(&self) -> Result<Lock, HostpartError> {
        let fd = fsat::open_dir(&self.dir, ".")
            .and_then(|d| d.ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT)))
            .map(File::from)
            .map_err(|e| self.err("open for locking", ".", e))?;
        // SAFETY: a valid descriptor.
        if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(self.err(
                    "lock",
                    ".",
                    io::Error::other(
                        "another hnroot command (stage, revert or mark-good) is running on this \
                         hostpart; wait for it, then run this one again",
                    ),
                ));
            }
            return Err(self.err("lock", ".", e));
        }
        Ok(Lock { _fd: fd })
    }

    /// `fsync` the directory.
    pub fn sync_dir(&self) -> Result<(), HostpartError> {
        // SAFETY: valid descriptor.
        check(unsafe { libc::fsync(self.dir.as_raw_fd()) }).map_err(|e| self.err("fsync", ".", e))
    }

    /// Whether the directory is the root of its filesystem (its `..` is on another device, or
    /// is itself): the only directory hnroot ever freezes.
    pub fn is_filesystem_root(&self) -> Result<bool, HostpartError> {
        let me = fsat::fstat(&self.dir).map_err(|e| self.err("stat", ".", e))?;
        let up = fsat::open_dir(&self.dir, "..")
            .and_then(|d| d.ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT)))
            .and_then(|d| fsat::fstat(&d))
            .map_err(|e| self.err("stat", "..", e))?;
        Ok(me.st_dev != up.st_dev || me.st_ino == up.st_ino)
    }

    /// Make everything written so far visible to a reader that does not replay journals
    /// (GRUB): `syncfs`, then on ext4 a journal checkpoint (`EXT4_IOC_CHECKPOINT`), on XFS a
    /// freeze and thaw (in a child process that ignores signals, so a killed hnroot cannot
    /// leave the filesystem frozen), on btrfs a transaction commit. Only hostpart's own root
    /// is ever frozen: on a directory that is not the root of its filesystem (a test) only
    /// `syncfs` runs. Returns what was done, for the log.
    pub fn checkpoint(&self) -> Result<&'static str, HostpartError> {
        let fd = self.dir.as_raw_fd();
        // SAFETY: valid descriptor.
        check(unsafe { libc::syncfs(fd) }).map_err(|e| self.err("syncfs", ".", e))?;
        if !self.is_filesystem_root()? {
            return Ok("syncfs (not a filesystem root: nothing frozen)");
        }
        // SAFETY: zeroed statfs is a valid out-buffer.
        let mut sfs: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: valid descriptor and out-pointer.
        check(unsafe { libc::fstatfs(fd, &mut sfs) }).map_err(|e| self.err("statfs", ".", e))?;
        #[allow(clippy::unnecessary_cast)] // f_type's width differs between libcs.
        match sfs.f_type as i64 {
            EXT4_SUPER_MAGIC => {
                let flags: u32 = 0;
                // SAFETY: EXT4_IOC_CHECKPOINT takes a pointer to a u32 of flags.
                if unsafe { libc::ioctl(fd, EXT4_IOC_CHECKPOINT as _, &flags) } == 0 {
                    return Ok("syncfs + ext4 journal checkpoint");
                }
                let e = io::Error::last_os_error();
                if !matches!(
                    e.raw_os_error(),
                    Some(libc::ENOTTY) | Some(libc::EOPNOTSUPP)
                ) {
                    return Err(self.err("ext4 checkpoint", ".", e));
                }
                // Kernels before 5.13, or ext2/3 without the ioctl: freeze and thaw.
                self.freeze_thaw().map(|()| "syncfs + freeze/thaw")
            }
            XFS_SUPER_MAGIC => self.freeze_thaw().map(|()| "syncfs + freeze/thaw"),
            BTRFS_SUPER_MAGIC => {
                // SAFETY: BTRFS_IOC_SYNC takes no argument.
                check(unsafe { libc::ioctl(fd, BTRFS_IOC_SYNC as _, 0) })
                    .map_err(|e| self.err("btrfs sync", ".", e))?;
                Ok("syncfs + btrfs transaction commit")
            }
            _ => Ok("syncfs (filesystem without a checkpoint ioctl)"),
        }
    }

    /// `FIFREEZE` then `FITHAW`, in a child that ignores every signal it can, in its own
    /// session: killing hnroot (even with SIGKILL) between the two cannot leave hostpart
    /// frozen. The parent waits for it.
    fn freeze_thaw(&self) -> Result<(), HostpartError> {
        let fd = self.dir.as_raw_fd();
        // SAFETY: fork in a process whose child only makes async-signal-safe calls
        // (sigaction-free signal(), setsid, ioctl, _exit) before it exits.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(self.err("fork for freeze", ".", io::Error::last_os_error()));
        }
        if pid == 0 {
            // SAFETY: async-signal-safe calls only; the child never returns.
            unsafe {
                libc::setsid();
                for sig in [
                    libc::SIGINT,
                    libc::SIGTERM,
                    libc::SIGHUP,
                    libc::SIGQUIT,
                    libc::SIGPIPE,
                ] {
                    libc::signal(sig, libc::SIG_IGN);
                }
                let frozen = libc::ioctl(fd, FIFREEZE as _, 0);
                let err = if frozen == 0 {
                    0
                } else {
                    *libc::__errno_location()
                };
                let thawed = libc::ioctl(fd, FITHAW as _, 0);
                let code = if frozen != 0 {
                    err.clamp(1, 120)
                } else if thawed != 0 {
                    121
                } else {
                    0
                };
                libc::_exit(code);
            }
        }
        let mut status = 0;
        loop {
            // SAFETY: our own child; valid out-pointer.
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            if r == pid {
                break;
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(self.err("wait for freeze", ".", e));
            }
        }
        match libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)) {
            Some(0) => Ok(()),
            Some(121) => Err(self.err("thaw (FITHAW)", ".", io::Error::other("failed"))),
            Some(errno) => Err(self.err(
                "freeze (FIFREEZE)",
                ".",
                io::Error::from_raw_os_error(errno),
            )),
            None => Err(self.err("freeze", ".", io::Error::other("the freezing child died"))),
        }
    }
}

use crate::fsat::{remove_tree, subdir};

/// The operator commands' lock on a hostpart; released when dropped.
#[derive(Debug)]
pub struct Lock {
    _fd: File,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revert_marker_of_any_kind_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let hp = Hostpart::open(dir.path()).unwrap();
        let marker = dir.path().join(REVERT_MARKER);
        for make in 0..4 {
            match make {
                0 => std::fs::write(&marker, b"").unwrap(),
                1 => std::os::unix::fs::symlink("/nonexistent", &marker).unwrap(),
                2 => std::fs::create_dir(&marker).unwrap(),
                _ => {
                    std::fs::create_dir_all(marker.join("a/b")).unwrap();
                    std::fs::write(marker.join("a/b/note"), b"x").unwrap();
                }
            }
            hp.remove_marker().unwrap();
            assert!(
                std::fs::symlink_metadata(&marker).is_err(),
                "kind {make} left"
            );
        }
        hp.remove_marker().unwrap();
    }

    #[test]
    fn marker_creation_and_removal_are_idempotent_and_never_follow_links() {
        let dir = tempfile::tempdir().unwrap();
        let hp = Hostpart::open(dir.path()).unwrap();
        hp.create_marker().unwrap();
        hp.create_marker().unwrap();
        assert!(hp.observe().unwrap().revert_requested);
        hp.remove(REVERT_MARKER).unwrap();
        hp.remove(REVERT_MARKER).unwrap();
        assert!(!hp.observe().unwrap().revert_requested);
        // A dangling link named system-revert is there, as GRUB's listing sees it.
        std::os::unix::fs::symlink("nowhere", dir.path().join(REVERT_MARKER)).unwrap();
        assert!(hp.observe().unwrap().revert_requested);
        // Creating the marker does not write through it.
        hp.create_marker().unwrap();
        assert!(!dir.path().join("nowhere").exists());
    }

    #[test]
    fn exclusive_creation_refuses_links_and_existing_files() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("hn-root.img");
        std::fs::write(&victim, b"precious").unwrap();
        let hp = Hostpart::open(dir.path()).unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join(".hn-root-new.a.partial")).unwrap();
        std::fs::hard_link(&victim, dir.path().join(".hn-root-new.b.partial")).unwrap();
        let e = hp
            .create_exclusive(".hn-root-new.a.partial", 0o600)
            .unwrap_err();
        assert_eq!(e.errno(), Some(libc::EEXIST));
        let e = hp
            .create_exclusive(".hn-root-new.b.partial", 0o600)
            .unwrap_err();
        assert_eq!(e.errno(), Some(libc::EEXIST));
        let e = hp.reopen_partial(".hn-root-new.a.partial").unwrap_err();
        assert!(
            e.to_string()
                .contains("a symbolic link, not a partial file hnroot made: remove it"),
            "{e}"
        );
        let e = hp.reopen_partial(".hn-root-new.b.partial").unwrap_err();
        assert!(e.to_string().contains("2 links"), "{e}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(hp.partials().unwrap().len(), 2);
    }

    #[test]
    fn one_command_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let hp = Hostpart::open(dir.path()).unwrap();
        let held = hp.lock().unwrap();
        let e = hp.lock().unwrap_err();
        assert!(e.to_string().contains("another hnroot command"), "{e}");
        drop(held);
        hp.lock().unwrap();
    }

    #[test]
    fn renames_never_replace_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"a").unwrap();
        std::fs::write(dir.path().join("b"), b"b").unwrap();
        let hp = Hostpart::open(dir.path()).unwrap();
        let e = hp.rename("a", "b", false).unwrap_err();
        assert_eq!(e.errno(), Some(libc::EEXIST));
        assert_eq!(
            e.to_string().matches("exists").count(),
            1,
            "the error once: {e}"
        );
        hp.rename("a", "b", true).unwrap();
        assert_eq!(std::fs::read(dir.path().join("b")).unwrap(), b"a");
    }

    #[test]
    fn a_temporary_directory_is_synced_never_frozen() {
        let dir = tempfile::tempdir().unwrap();
        let hp = Hostpart::open(dir.path()).unwrap();
        assert!(!hp.is_filesystem_root().unwrap());
        assert_eq!(
            hp.checkpoint().unwrap(),
            "syncfs (not a filesystem root: nothing frozen)"
        );
    }
}
