//! Where the CLI looks: hostpart's directory and the boot-state file, found the way a running
//! hnroot system has them (`/hostpart`, `/boot/loader/hnroot/bootstate`), or on the ESP
//! (found by the PARTUUID GRUB passed, or by label) mounted for the moment when `/boot/loader`
//! is not mounted.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use hnroot_core::bootstate::StateSeen;
use hnroot_core::cmdline::{BootParams, DeviceSpec};
use hnroot_core::layout;
use hnroot_core::probe::FsType;
use hnroot_linux::blockdev::{self, Hints};
use hnroot_linux::bootstate_file;
use hnroot_linux::hostpart::Hostpart;
use hnroot_linux::mounts;

/// Options every command that reads the machine accepts.
#[derive(clap::Args, Debug, Clone)]
pub struct Location {
    /// hostpart's top directory.
    #[arg(long, default_value = layout::HOSTPART_MOUNT)]
    pub hostpart: PathBuf,
    /// The boot-state file [default: /boot/loader/hnroot/bootstate, or the ESP found by the
    /// PARTUUID GRUB passed or by label EFI-BOOT, mounted for the moment].
    #[arg(long)]
    pub bootstate: Option<PathBuf>,
}

/// The boot-state file, and the temporary ESP mount that holds it if there is one.
#[derive(Debug)]
pub struct StateFile {
    /// The file.
    pub path: PathBuf,
    /// Unmounted when dropped.
    _mount: Option<TempMount>,
}

/// A filesystem mounted for the duration of one command.
#[derive(Debug)]
struct TempMount {
    dir: tempfile::TempDir,
}

impl Drop for TempMount {
    fn drop(&mut self) {
        let _ = mounts::umount(self.dir.path(), 0);
    }
}

/// The kernel command line of the running system (empty if unreadable).
pub fn running_cmdline() -> String {
    std::fs::read_to_string("/proc/cmdline").unwrap_or_default()
}

fn partuuid_of(spec: Option<DeviceSpec<'_>>) -> Option<hnroot_core::PartUuid> {
    match spec {
        Some(DeviceSpec::PartUuid(p)) => Some(p),
        _ => None,
    }
}

/// Find the boot-state file. `writable` mounts a temporary ESP read-write.
pub fn locate_state(loc: &Location, params: &BootParams<'_>, writable: bool) -> Result<StateFile> {
    if let Some(path) = &loc.bootstate {
        return Ok(StateFile {
            path: path.clone(),
            _mount: None,
        });
    }
    let default = Path::new(layout::ESP_MOUNT).join(layout::BOOTSTATE_PATH);
    if default.exists() {
        return Ok(StateFile {
            path: default,
            _mount: None,
        });
    }
    let spec = params.esp_spec();
    let hints = Hints {
        pin: partuuid_of(params.esp),
        boot_disk_of: partuuid_of(params.esp),
    };
    let found = blockdev::find(&spec, &hints).with_context(|| {
        format!(
            "looked for the boot-state file at {} and for the ESP ({spec}); found neither; \
             pass --bootstate FILE",
            default.display()
        )
    })?;
    let fs = match found.fs.as_ref().map(|f| f.fs_type) {
        Some(t @ (FsType::Vfat | FsType::Ext2 | FsType::Ext3 | FsType::Ext4)) => t,
        other => bail!(
            "the ESP {} holds {}: the boot-state file lives on FAT (or ext2/3/4); pass \
             --bootstate FILE",
            found.node.display(),
            other.map_or("no filesystem hnroot recognises", |t| t.as_str())
        ),
    };
    // /run: writable even when the root image is mounted read-only.
    let base = if Path::new("/run").is_dir() {
        PathBuf::from("/run")
    } else {
        std::env::temp_dir()
    };
    let dir = tempfile::Builder::new()
        .prefix("hnroot-esp-")
        .tempdir_in(&base)
        .with_context(|| format!("temporary mount point in {}", base.display()))?;
    let mut flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    if !writable {
        flags |= libc::MS_RDONLY;
    }
    mounts::mount(&found.node, dir.path(), Some(fs.as_str()), flags, None).with_context(|| {
        format!(
            "the ESP {} ({spec}) could not be mounted",
            found.node.display()
        )
    })?;
    Ok(StateFile {
        path: dir.path().join(layout::BOOTSTATE_PATH),
        _mount: Some(TempMount { dir }),
    })
}

/// The boot state as the decision should see it, where it came from, and (when something was
/// wrong with it) why.
pub fn read_state(loc: &Location, params: &BootParams<'_>) -> (StateSeen, String) {
    match locate_state(loc, params, false) {
        Err(e) => (StateSeen::Absent, format!("not found: {e:#}")),
        Ok(file) => match bootstate_file::seen(&file.path) {
            (StateSeen::Absent, _) => (
                StateSeen::Absent,
                format!("{} does not exist", file.path.display()),
            ),
            (state, Some(why)) => (state, format!("{why}")),
            (state, None) => (state, file.path.display().to_string()),
        },
    }
}

/// Open hostpart's top directory.
pub fn open_hostpart(loc: &Location) -> Result<Hostpart> {
    Hostpart::open(&loc.hostpart).with_context(|| {
        format!(
            "looked for hostpart at {}; pass --hostpart DIR if it is mounted elsewhere",
            loc.hostpart.display()
        )
    })
}
