//! Where the CLI looks: hostpart's directory and the boot-state file, found the way a running
//! hnroot system has them (`/hostpart`, `/boot/loader/hnroot/bootstate`), or on the ESP (found
//! by the PARTUUID GRUB passed, or by label, through `hnroot_linux::esp`) mounted for the
//! moment when `/boot/loader` is not mounted.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use hnroot_core::bootstate::StateSeen;
use hnroot_core::cmdline::BootParams;
use hnroot_core::layout;
use hnroot_linux::blockdev;
use hnroot_linux::esp::{self, StateFile};
use hnroot_linux::hostpart::Hostpart;

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

/// The kernel command line of the running system (empty if unreadable).
pub fn running_cmdline() -> String {
    std::fs::read_to_string("/proc/cmdline").unwrap_or_default()
}

/// Find the boot-state file: `--bootstate`, the running system's `/boot/loader`, or the ESP
/// mounted read-only for the moment (remounted read-write for a write alone).
pub fn locate_state(loc: &Location, params: &BootParams<'_>) -> Result<StateFile> {
    if let Some(path) = &loc.bootstate {
        return Ok(StateFile::at(path.clone()));
    }
    let default = Path::new(layout::ESP_MOUNT).join(layout::BOOTSTATE_PATH);
    if default.exists() {
        return Ok(StateFile::at(default));
    }
    let (spec, hints) = esp::spec_of(params);
    let found = blockdev::find(&spec, &hints).with_context(|| {
        format!(
            "looked for the boot-state file at {} and for the ESP ({spec}); found neither; \
             pass --bootstate FILE",
            default.display()
        )
    })?;
    // /run: writable even when the root image is mounted read-only.
    let base = if Path::new("/run").is_dir() {
        PathBuf::from("/run")
    } else {
        std::env::temp_dir()
    };
    StateFile::mount_temporary(&found, &base)
        .with_context(|| format!("the ESP ({spec}): pass --bootstate FILE"))
}

/// The ESP's top directory, from its boot-state file (`<esp>/hnroot/bootstate`).
pub fn esp_root(state: &StateFile) -> Option<PathBuf> {
    state.esp_root()
}

pub use hnroot_linux::esp_loader::LoaderSettings;

/// The settings of the loader on the ESP of `state`, read once, as GRUB applies them; what
/// could not be read is said (the plain verdicts and the default counting are used then).
pub fn loader_settings(state: &StateFile) -> LoaderSettings {
    let Some(root) = esp_root(state) else {
        return LoaderSettings::default();
    };
    let (settings, notes) = LoaderSettings::read(&root);
    for note in notes {
        crate::warn!("hnroot: {note}");
    }
    settings
}

/// Observe hostpart as the loader on the ESP of `state` sees it (under its seal policy when it
/// has one), and the loader's settings.
pub fn observe_as_loader(
    hostpart: &Hostpart,
    state: Option<&StateFile>,
) -> Result<(hnroot_linux::hostpart::HostpartView, LoaderSettings)> {
    let settings = state.map(loader_settings).unwrap_or_default();
    let view = match &settings.seal {
        Some(policy) => hostpart.observe_sealed(policy)?,
        None => hostpart.observe()?,
    };
    Ok((view, settings))
}

/// The boot state as the decision should see it, where it came from, and (when something was
/// wrong with it) why.
pub fn read_state(loc: &Location, params: &BootParams<'_>) -> (StateSeen, String) {
    match locate_state(loc, params) {
        Err(e) => (StateSeen::Absent, format!("not found: {e:#}")),
        Ok(file) => match file.read() {
            (StateSeen::Absent, _) => (
                StateSeen::Absent,
                format!("{} does not exist", file.path().display()),
            ),
            (state, Some(why)) => (state, format!("{why}")),
            (state, None) => (state, file.path().display().to_string()),
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
