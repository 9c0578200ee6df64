//! The ESP as the Linux side uses it: where the boot-state file lives. Found by the spec GRUB
//! passed (`hnroot.esp=PARTUUID=...`) or by its label, within a deadline; checked by the core's
//! rule (a filesystem that keeps the file's blocks where GRUB rewrites them,
//! `layout::bootstate_fs_ok`); mounted read-only; the boot state read and judged by the core;
//! written by remounting read-write for the write alone. The initramfs and the CLI use it alike.
//! It decides nothing about what the boot state should say.
//!
//! Linux shares one superblock among all mounts of a device and refuses (EBUSY) a mount that
//! would change its read-only state. In the initramfs nothing else mounts the ESP: its
//! superblock is read-only but for a write. On a running system systemd may mount it at
//! `/boot/loader` (read-write, from fstab) while the CLI has it mounted for the moment: there
//! the CLI's mount keeps the superblock read-write, as systemd's will be, and is read-only at
//! its own mount point alone; a write flips that mount point, never the superblock (which
//! would flip `/boot/loader` with it).

use std::path::{Path, PathBuf};
use std::time::Duration;

use hnroot_core::bootstate::{BootState, StateSeen};
use hnroot_core::cmdline::{BootParams, DeviceSpec};
use hnroot_core::layout;
use hnroot_core::probe::FsType;
use hnroot_core::uuid::PartUuid;

use crate::blockdev::{self, FindError, Found, Hints, Roots};
use crate::bootstate_file::{self, BootStateFileError};
use crate::fsat::InRoot;
use crate::mounts::{self, SysError};

/// Flags of an ESP hnroot mounts itself (never executed from, never device nodes).
const FLAGS: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

/// What went wrong with the ESP or its boot-state file.
#[derive(Debug, thiserror::Error)]
pub enum EspError {
    /// No device, or several, match the spec.
    #[error("the ESP: {0}")]
    NotFound(#[from] FindError),
    /// The device holds a filesystem the boot-state file may not live on.
    #[error(
        "the ESP {device} holds {}: GRUB can rewrite the boot-state file in place only on FAT \
         (or ext2/3/4)",
        found.as_ref().map_or("no filesystem hnroot recognises", FsType::as_str)
    )]
    Filesystem {
        /// The device node.
        device: PathBuf,
        /// What it holds.
        found: Option<FsType>,
    },
    /// A mount, remount or unmount failed.
    #[error("the ESP: {0}")]
    Mount(#[from] SysError),
    /// Reading or writing the boot-state file failed.
    #[error(transparent)]
    File(#[from] BootStateFileError),
    /// There is no ESP to write to.
    #[error("no boot-state file to write (the ESP is not available)")]
    Unavailable,
    /// hnroot's read-only mount of the ESP could not be made writable for a write.
    #[error(
        "the ESP mounted at {} cannot be written: remounting it read-write failed ({source}): \
         its device is read-only (write-protected, or set read-only: `blockdev --getro`) or its \
         filesystem refuses writes; nothing was written to it",
        at.display()
    )]
    NotWritable {
        /// Where hnroot mounted it.
        at: PathBuf,
        /// The remount's error.
        source: SysError,
    },
}

/// The PARTUUID a spec names, if that is how it names a device.
pub fn partuuid_of(spec: Option<DeviceSpec<'_>>) -> Option<PartUuid> {
    match spec {
        Some(DeviceSpec::PartUuid(p)) => Some(p),
        _ => None,
    }
}

/// The spec of the ESP on this command line (`hnroot.esp=`, else `LABEL=EFI-BOOT`) and the hints
/// that choose among several: GRUB's PARTUUID is both the pin and the boot disk.
pub fn spec_of<'a>(params: &BootParams<'a>) -> (DeviceSpec<'a>, Hints) {
    let pin = partuuid_of(params.esp);
    (
        params.esp_spec(),
        Hints {
            pin,
            boot_disk_of: pin,
        },
    )
}

/// Find the ESP the command line names, waiting at most `wait` for it to appear.
pub fn find(
    roots: &Roots,
    params: &BootParams<'_>,
    wait: Duration,
    poll: Duration,
) -> Result<Found, EspError> {
    let (spec, hints) = spec_of(params);
    Ok(blockdev::find_waiting(roots, &spec, &hints, wait, poll)?.0)
}

/// The boot-state file: where it is, and the ESP mount hnroot made for it, if it made one (then
/// read-only but for a write, and unmounted when this is dropped).
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    mount: Option<OwnMount>,
}

/// An ESP mount hnroot made: read-only, remounted read-write for a write, unmounted on drop.
#[derive(Debug)]
struct OwnMount {
    at: PathBuf,
    /// The mount point was made for this mount alone: removed after the unmount (the CLI's).
    temporary: bool,
    /// What is read-only about it.
    read_only: ReadOnly,
}

/// Where the read-only state of hnroot's ESP mount is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadOnly {
    /// The superblock: the initramfs's, or where the ESP is already mounted read-only
    /// elsewhere (then a write makes that mount writable for as long as it lasts).
    Superblock,
    /// hnroot's mount point alone, the superblock read-write: the running system's, where
    /// systemd may mount the same ESP read-write at `/boot/loader` meanwhile.
    MountPoint,
}

impl ReadOnly {
    /// The remount flags that make the mount writable (`false`) or read-only (`true`).
    fn remount_flags(self, read_only: bool) -> libc::c_ulong {
        let scope = match self {
            ReadOnly::Superblock => 0,
            ReadOnly::MountPoint => libc::MS_BIND,
        };
        let ro = if read_only { libc::MS_RDONLY } else { 0 };
        FLAGS | scope | ro
    }
}

impl Drop for OwnMount {
    fn drop(&mut self) {
        // Still busy after a second ([`while_busy`]): detached, so it goes once its last file
        // is closed, never left behind.
        let unmounted = while_busy(|| mounts::umount(&self.at, 0))
            .or_else(|_| mounts::umount(&self.at, libc::MNT_DETACH));
        if unmounted.is_ok() && self.temporary {
            let _ = std::fs::remove_dir(&self.at);
        }
    }
}

/// `op` (a remount read-only or an unmount of hnroot's ESP mount), tried again every 10 ms for
/// up to a second while Linux says EBUSY: a file on the mount is still open. hnroot closed its
/// files, but a child forked meanwhile by another thread of the process holds copies of its
/// descriptors until the child execs (seen in CI: tests running side by side, 10 of 40 runs
/// under load failed without this).
fn while_busy(mut op: impl FnMut() -> Result<(), SysError>) -> Result<(), SysError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    loop {
        match op() {
            Err(e)
                if e.source.raw_os_error() == Some(libc::EBUSY)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            done => return done,
        }
    }
}

impl StateFile {
    /// A boot-state file at a path hnroot does not manage the mount of (`--bootstate FILE`, or
    /// the running system's `/boot/loader`).
    pub fn at(path: PathBuf) -> StateFile {
        StateFile { path, mount: None }
    }

    /// Mount the ESP `found` read-only at `at` (a directory made if missing), after checking
    /// its filesystem by the core's rule: the initramfs's mount, which nothing shares
    /// (its superblock read-only but for a write).
    pub fn mount(found: &Found, at: &Path) -> Result<StateFile, EspError> {
        Self::mount_in(found, at.to_owned(), false)
    }

    /// Mount the ESP `found` read-only in a fresh directory under `base` (`hnroot-esp.<pid>`,
    /// made for it and removed when done): the running system's mount for the moment, which
    /// systemd's own mount of the ESP may share (read-only at this mount point alone).
    pub fn mount_temporary(found: &Found, base: &Path) -> Result<StateFile, EspError> {
        let at = base.join(format!("hnroot-esp.{}", std::process::id()));
        std::fs::create_dir(&at).map_err(|source| SysError {
            what: format!("make the mount point {}", at.display()),
            source,
        })?;
        let mounted = Self::mount_in(found, at.clone(), true);
        if mounted.is_err() {
            let _ = std::fs::remove_dir(&at);
        }
        mounted
    }

    fn mount_in(found: &Found, at: PathBuf, temporary: bool) -> Result<StateFile, EspError> {
        let fs = found.fs.as_ref().map(|f| f.fs_type);
        let Some(fs) = fs.filter(|&t| layout::bootstate_fs_ok(t)) else {
            return Err(EspError::Filesystem {
                device: found.node.clone(),
                found: fs,
            });
        };
        mounts::mkdir_p(&at)?;
        let read_only = if temporary {
            Self::mount_shared(found, &at, fs)?
        } else {
            mounts::mount(
                &found.node,
                &at,
                Some(fs.as_str()),
                FLAGS | libc::MS_RDONLY,
                None,
            )?;
            ReadOnly::Superblock
        };
        Ok(StateFile {
            path: at.join(layout::BOOTSTATE_PATH),
            mount: Some(OwnMount {
                at,
                temporary,
                read_only,
            }),
        })
    }

    /// Mount the ESP with its superblock read-write and `at` read-only. Where the kernel
    /// refuses a read-write superblock (the device is mounted read-only elsewhere: EBUSY; the
    /// device is read-only: EACCES, EROFS), the superblock is read-only, as before any write.
    fn mount_shared(found: &Found, at: &Path, fs: FsType) -> Result<ReadOnly, EspError> {
        let (node, fs) = (&found.node, Some(fs.as_str()));
        let refused = [libc::EBUSY, libc::EACCES, libc::EROFS];
        match mounts::mount(node, at, fs, FLAGS, None) {
            Err(e)
                if e.source
                    .raw_os_error()
                    .is_some_and(|n| refused.contains(&n)) =>
            {
                mounts::mount(node, at, fs, FLAGS | libc::MS_RDONLY, None)?;
                return Ok(ReadOnly::Superblock);
            }
            mounted => mounted?,
        }
        let read_only = ReadOnly::MountPoint;
        if let Err(e) = mounts::remount(at, read_only.remount_flags(true)) {
            let _ = mounts::umount(at, 0);
            return Err(e.into());
        }
        Ok(read_only)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The ESP's top directory (`<esp>/hnroot/bootstate`: two levels up).
    pub fn esp_root(&self) -> Option<PathBuf> {
        let levels = layout::BOOTSTATE_PATH.split('/').count();
        self.path.ancestors().nth(levels).map(|p| p.to_owned())
    }

    /// Where hnroot mounted the ESP, if it did.
    pub fn mounted_at(&self) -> Option<&Path> {
        self.mount.as_ref().map(|m| m.at.as_path())
    }

    /// The boot state as the core judges what is there, and why it is not valid when something
    /// is wrong with the file.
    pub fn read(&self) -> (StateSeen, Option<BootStateFileError>) {
        bootstate_file::seen(&self.path)
    }

    /// Write `state` in place (remounting hnroot's own read-only mount read-write for the write
    /// alone), synced and read back.
    pub fn write(&self, state: &BootState) -> Result<(), EspError> {
        self.writable(|path| bootstate_file::write(path, state))
    }

    /// The file's bytes as they are (`None`: no file), to put back with [`StateFile::restore`].
    pub fn bytes(&self) -> Result<Option<Vec<u8>>, EspError> {
        Ok(bootstate_file::read(&self.path)?)
    }

    /// Put back the bytes [`StateFile::bytes`] gave, after a [`StateFile::write`]: the boot
    /// state exactly as it was.
    pub fn restore(&self, previous: &[u8]) -> Result<(), EspError> {
        self.writable(|path| bootstate_file::restore(path, previous))
    }

    /// Create the file holding `state` (its directory made if missing, through the file layer:
    /// a link on the way or at its name is never written through); with `replace`, an existing
    /// file is replaced (`hnroot bootstate init`).
    pub fn create(&self, state: &BootState, replace: bool) -> Result<(), EspError> {
        self.writable(|path| {
            let io = |action| {
                move |source| BootStateFileError::Io {
                    path: path.to_owned(),
                    action,
                    source,
                }
            };
            let absolute = std::env::current_dir()
                .map_err(io("the current directory"))?
                .join(path);
            let rel = absolute
                .strip_prefix("/")
                .unwrap_or(&absolute)
                .to_str()
                .ok_or_else(|| {
                    io("create")(std::io::Error::from(std::io::ErrorKind::InvalidInput))
                })?;
            let (dir_rel, name) = rel.rsplit_once('/').unwrap_or(("", rel));
            let dir = InRoot::open(Path::new("/"))
                .and_then(|root| root.make_dir(dir_rel))
                .map_err(io("create its directory"))?;
            bootstate_file::create_in(&dir, name, path, state, replace)
        })
    }

    /// Run `f` on the file's path with the ESP writable: hnroot's own mount is remounted
    /// read-write for it alone and read-only again afterwards.
    fn writable(
        &self,
        f: impl FnOnce(&Path) -> Result<(), BootStateFileError>,
    ) -> Result<(), EspError> {
        let Some(own) = &self.mount else {
            return Ok(f(&self.path)?);
        };
        mounts::remount(&own.at, own.read_only.remount_flags(false)).map_err(|source| {
            EspError::NotWritable {
                at: own.at.clone(),
                source,
            }
        })?;
        let written = f(&self.path);
        let back = own.read_only_again();
        written?;
        Ok(back?)
    }
}

impl OwnMount {
    /// Make the mount read-only again after a write ([`while_busy`]: Linux refuses while a file
    /// on it is open for writing).
    fn read_only_again(&self) -> Result<(), SysError> {
        while_busy(|| mounts::remount(&self.at, self.read_only.remount_flags(true)))
    }
}

/// Where a boot-state write goes: the file, or nowhere (no ESP), which is an error to write to.
pub trait BootStateStore {
    /// Write `state` (in place, synced, read back).
    fn write(&mut self, state: &BootState) -> Result<(), EspError>;
}

impl BootStateStore for StateFile {
    fn write(&mut self, state: &BootState) -> Result<(), EspError> {
        StateFile::write(self, state)
    }
}

impl BootStateStore for Option<StateFile> {
    fn write(&mut self, state: &BootState) -> Result<(), EspError> {
        match self {
            Some(file) => file.write(state),
            None => Err(EspError::Unavailable),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hnroot_core::uuid::FsUuid;

    const A: FsUuid = FsUuid::Uuid([0xa; 16]);

    #[test]
    fn a_file_not_mounted_by_hnroot_is_written_where_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bootstate");
        bootstate_file::create(&path, &BootState::committed(A), false).unwrap();
        let mut file = StateFile::at(path.clone());
        assert!(file.mounted_at().is_none());
        let trial = BootState::Trial(hnroot_core::bootstate::Trial {
            image: A,
            tries: hnroot_core::bootstate::Tries::new(2, 3).unwrap(),
            good: Some(A),
        });
        BootStateStore::write(&mut file, &trial).unwrap();
        assert_eq!(file.read().0, StateSeen::Valid(trial));
        let mut none: Option<StateFile> = None;
        assert!(matches!(none.write(&trial), Err(EspError::Unavailable)));
    }

    #[test]
    fn a_device_without_a_fitting_filesystem_is_refused_before_any_mount() {
        let found = Found {
            name: "vda3".into(),
            node: PathBuf::from("/dev/vda3"),
            fs: None,
            part: None,
            chosen_by: None,
            devices: 1,
            reads: 0,
        };
        let at = tempfile::tempdir().unwrap();
        let e = StateFile::mount(&found, at.path()).unwrap_err();
        assert!(matches!(e, EspError::Filesystem { found: None, .. }), "{e}");
        assert!(e.to_string().contains("/dev/vda3"), "{e}");
    }
}
