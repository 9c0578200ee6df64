//! The ESP's part of an install: GRUB's EFI image as `\EFI\BOOT\BOOTX64.EFI` (the removable-
//! media path every UEFI firmware boots without a boot entry), the boot-state file GRUB
//! rewrites in place, and a firmware boot entry where the firmware's variables are reachable.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use hnroot_core::bootstate::{BootState, StateSeen};
use hnroot_core::layout;
use hnroot_core::uuid::FsUuid;
use hnroot_linux::bootstate_file;
use hnroot_linux::fsat::InRoot;

/// Where GRUB goes on the ESP, relative to its root.
pub const BOOT_LOADER_PATH: &str = "EFI/BOOT/BOOTX64.EFI";

/// The same path as the firmware spells it.
pub const BOOT_LOADER_EFI_PATH: &str = "\\EFI\\BOOT\\BOOTX64.EFI";

/// The label of the firmware boot entry.
pub const BOOT_ENTRY_LABEL: &str = "hnroot";

/// Make sure the ESP at `esp` has a boot-state file: a valid one is kept (it is the boot's
/// memory: a trial, a good image); without one, a new one records `good`; a corrupt one or one
/// of a newer format is refused (`hnroot bootstate init --force` starts over). Returns what was
/// done.
pub fn ensure_boot_state(esp: &Path, good: FsUuid) -> Result<String> {
    let path = esp.join(layout::BOOTSTATE_PATH);
    match bootstate_file::seen(&path) {
        (StateSeen::Valid(state), _) => Ok(format!("{} kept: {state}", path.display())),
        (StateSeen::Absent, _) => {
            let root = InRoot::open(esp)
                .with_context(|| format!("cannot open the ESP {}", esp.display()))?;
            let (dir, name) = layout::BOOTSTATE_PATH
                .rsplit_once('/')
                .unwrap_or(("", layout::BOOTSTATE_PATH));
            let dir = root
                .make_dir(dir)
                .with_context(|| format!("cannot create {}/{dir}", esp.display()))?;
            let state = BootState::committed(good);
            bootstate_file::create_in(&dir, name, &path, &state, false)?;
            Ok(format!("{} created: {state}", path.display()))
        }
        (StateSeen::Corrupt, why) => bail!(
            "looked for the boot-state file at {}; found one that cannot be used{}: it is left \
             as it is; `hnroot bootstate init --force` replaces it",
            path.display(),
            why.map(|e| format!(" ({e})")).unwrap_or_default()
        ),
    }
}

fn mtools(cmd: &mut Command) -> Result<String> {
    // A partition holds the FAT directly; skip mtools' disk-geometry check.
    crate::tool::run_with_hint(cmd.env("MTOOLS_SKIP_CHECK", "1"), "apt-get install mtools")
}

/// The EFI image `efi` as [`BOOT_LOADER_PATH`] onto the FAT filesystem on the device `dev` of a
/// disk being installed (nothing boots from it yet), with mtools (no mount: works where the
/// running kernel has no FAT driver, as in a minimal rescue system). A mounted ESP gets its
/// loader through `hnroot_linux::esp_loader`'s steps instead.
pub fn write_boot_loader_fat(dev: &Path, efi: &Path) -> Result<String> {
    let size = fs::metadata(efi)
        .with_context(|| format!("cannot read {}", efi.display()))?
        .len();
    for dir in ["::/EFI", "::/EFI/BOOT"] {
        mtools(
            Command::new("mmd")
                .args(["-D", "s", "-i"])
                .arg(dev)
                .arg(dir),
        )?;
    }
    mtools(
        Command::new("mcopy")
            .args(["-o", "-i"])
            .arg(dev)
            .arg(efi)
            .arg(format!("::/{BOOT_LOADER_PATH}")),
    )?;
    Ok(format!(
        "{BOOT_LOADER_EFI_PATH} ({} KiB) written to {}",
        size.div_ceil(1024),
        dev.display()
    ))
}

/// [`ensure_boot_state`] on the FAT filesystem on the device `dev`, with mtools.
pub fn ensure_boot_state_fat(dev: &Path, good: FsUuid) -> Result<String> {
    // A fresh private directory (never a predictable name another user could have planted).
    let work = tempfile::Builder::new()
        .prefix("hnroot-bootstate-")
        .tempdir()
        .context("cannot make a scratch directory")?;
    let scratch = work.path();
    let local = scratch.join(layout::BOOTSTATE_PATH);
    let remote = format!("::/{}", layout::BOOTSTATE_PATH);
    InRoot::open(scratch)
        .and_then(|r| r.make_dir(layout::BOOTSTATE_DIR))
        .with_context(|| {
            format!(
                "cannot create {}/{}",
                scratch.display(),
                layout::BOOTSTATE_DIR
            )
        })?;
    // Absent unless mcopy can copy it out.
    let _ = mtools(
        Command::new("mcopy")
            .args(["-n", "-i"])
            .arg(dev)
            .arg(&remote)
            .arg(&local),
    );
    let said = ensure_boot_state(scratch, good)?;
    if said.contains(" created: ") {
        mtools(
            Command::new("mmd")
                .args(["-D", "s", "-i"])
                .arg(dev)
                .arg("::/hnroot"),
        )?;
        mtools(
            Command::new("mcopy")
                .args(["-o", "-i"])
                .arg(dev)
                .arg(&local)
                .arg(&remote),
        )?;
    }
    Ok(said.replace(
        &scratch.display().to_string(),
        &format!("{}:", dev.display()),
    ))
}

/// Whether the firmware's variables can be written from here.
pub fn efivars_present() -> bool {
    Path::new("/sys/firmware/efi/efivars").is_dir()
}

/// Add a firmware boot entry for [`BOOT_LOADER_EFI_PATH`] on partition `part` of `disk`, first
/// in the boot order (efibootmgr). Returns efibootmgr's account of it.
pub fn register_boot_entry(disk: &Path, part: u32) -> Result<String> {
    crate::tool::run_with_hint(
        Command::new("efibootmgr")
            .arg("--create")
            .arg("--disk")
            .arg(disk)
            .arg("--part")
            .arg(part.to_string())
            .arg("--label")
            .arg(BOOT_ENTRY_LABEL)
            .arg("--loader")
            .arg(BOOT_LOADER_EFI_PATH),
        "apt-get install efibootmgr",
    )
    .with_context(|| {
        format!("the disk still boots through the removable-media path {BOOT_LOADER_EFI_PATH}")
    })?;
    Ok(format!(
        "boot entry '{BOOT_ENTRY_LABEL}' for {BOOT_LOADER_EFI_PATH} created"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_boot_state_is_kept_and_a_corrupt_one_refused() {
        let esp = tempfile::tempdir().unwrap();
        let a = FsUuid::parse("aaaaaaaa-0000-4000-8000-00000000000a").unwrap();
        let b = FsUuid::parse("bbbbbbbb-0000-4000-8000-00000000000b").unwrap();
        let said = ensure_boot_state(esp.path(), a).unwrap();
        assert!(said.contains("created"), "{said}");
        let said = ensure_boot_state(esp.path(), b).unwrap();
        assert!(
            said.contains("kept") && said.contains(&a.to_string()),
            "{said}"
        );
        let path = esp.path().join(layout::BOOTSTATE_PATH);
        fs::write(&path, b"short").unwrap();
        let err = ensure_boot_state(esp.path(), b).unwrap_err().to_string();
        assert!(err.contains("--force"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"short", "left as it was");
    }
}
