//! Where the operator commands look: hostpart's directory and the boot-state file, found the
//! way the booted system has them (`/hostpart`, `/boot/loader/hnroot/bootstate`), or on the ESP
//! mounted for the moment when `/boot/loader` is not mounted.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use hnroot_core::bootstate::StateSeen;
use hnroot_core::cmdline::{self, BootParams, DeviceSpec};
use hnroot_linux::blockdev;
use hnroot_linux::bootstate_file::{self, ESP_RELATIVE_PATH};
use hnroot_linux::hostpart::{Hostpart, HostpartSeen};

/// hostpart's mount point on a running hnroot system.
pub const DEFAULT_HOSTPART: &str = "/hostpart";
/// The ESP's mount point on a running hnroot system.
pub const DEFAULT_ESP_MOUNT: &str = "/boot/loader";

/// Options every command that reads the machine accepts.
#[derive(clap::Args, Debug, Clone)]
pub struct Location {
    /// hostpart's top directory.
    #[arg(long, default_value = DEFAULT_HOSTPART)]
    pub hostpart: PathBuf,
    /// The boot-state file [default: /boot/loader/hnroot/bootstate, or the ESP found by label
    /// (hnroot.esp= or LABEL=EFI-BOOT) mounted for the moment].
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
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// The kernel command line of the running system (empty if unreadable).
pub fn running_cmdline() -> String {
    std::fs::read_to_string("/proc/cmdline").unwrap_or_default()
}

/// Find the boot-state file. `writable` mounts a temporary ESP read-write.
pub fn locate_state(loc: &Location, params: &BootParams<'_>, writable: bool) -> Result<StateFile> {
    if let Some(path) = &loc.bootstate {
        return Ok(StateFile {
            path: path.clone(),
            _mount: None,
        });
    }
    let default = Path::new(DEFAULT_ESP_MOUNT).join(ESP_RELATIVE_PATH);
    if default.exists() {
        return Ok(StateFile {
            path: default,
            _mount: None,
        });
    }
    let spec = params
        .esp
        .unwrap_or(DeviceSpec::Label(cmdline::DEFAULT_ESP_LABEL));
    let found = blockdev::find(&spec, None).with_context(|| {
        format!(
            "no boot-state file at {} and the ESP ({spec}) cannot be found; pass --bootstate FILE",
            default.display()
        )
    })?;
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
    let mode = if writable { "rw" } else { "ro" };
    let status = Command::new("mount")
        .args(["-o", mode])
        .arg(&found.node)
        .arg(dir.path())
        .status()
        .context("run mount")?;
    if !status.success() {
        bail!(
            "cannot mount the ESP {} ({spec}) at {}: mount failed ({status})",
            found.node.display(),
            dir.path().display()
        );
    }
    Ok(StateFile {
        path: dir.path().join(ESP_RELATIVE_PATH),
        _mount: Some(TempMount { dir }),
    })
}

/// The boot state as the decision should see it, and where it came from (or why it is absent).
pub fn read_state(loc: &Location, params: &BootParams<'_>) -> (StateSeen, String) {
    match locate_state(loc, params, false) {
        Err(e) => (StateSeen::Absent, format!("not found: {e:#}")),
        Ok(file) => match bootstate_file::seen(&file.path) {
            Ok(StateSeen::Absent) if !file.path.exists() => (
                StateSeen::Absent,
                format!("{} does not exist", file.path.display()),
            ),
            Ok(state) => (state, file.path.display().to_string()),
            Err(e) => (StateSeen::Absent, format!("unreadable: {e}")),
        },
    }
}

/// Open and look at hostpart.
pub fn observe_hostpart(loc: &Location) -> Result<(Hostpart, HostpartSeen)> {
    let hostpart = Hostpart::open(&loc.hostpart).with_context(|| {
        format!(
            "hostpart directory {} (pass --hostpart DIR)",
            loc.hostpart.display()
        )
    })?;
    let seen = hostpart.observe().context("look at hostpart")?;
    Ok((hostpart, seen))
}
