//! Builds `hnroot_<version>_amd64.deb` with `dpkg-deb --build` from a staging tree (`cargo
//! xtask deb`): the CLI and `hnroot-init` (both static, musl: the package works on every Debian
//! release without a libc dependency), the initramfs-tools hook and script, the dracut module,
//! the systemd units (commit a healthy image; the host's SSH host keys; the host state's sync
//! with the shared repository; the loader's update after a commit; the metrics for
//! node_exporter and their timer), the loader kit (hnroot's own GRUB: its EFI modules with
//! `hnroot.mod`, its static `grub-mkimage`, `grub.cfg`, SBAT metadata and the version record;
//! `hnroot_install::grub::LoaderKit`), and `/etc/hnroot/keys/`. It depends on no GRUB package:
//! the server's own GRUB packages are neither needed nor touched, and upgrade as they like.
//! Maintainer scripts:
//! a trigger rebuilds every initramfs (`update-initramfs`: Debian's initramfs-tools and dracut
//! both declare interest in it, so `dpkg -i` alone yields an hnroot-capable initrd with either);
//! postinst enables the units, prerm/postrm disable them on removal.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::{binaries, buildenv, grubmod};

/// The package's name.
pub const PACKAGE: &str = "hnroot";

/// A built package.
#[derive(Debug, Clone)]
pub struct Deb {
    /// The `.deb`.
    pub path: PathBuf,
    /// Its version.
    pub version: String,
    /// The GRUB build of its loader kit.
    pub grub_build: String,
}

fn put(root: &Path, rel: &str, data: &[u8], mode: u32) -> Result<()> {
    let path = root.join(rel);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    fs::write(&path, data).with_context(|| format!("cannot write {}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn copy(root: &Path, rel: &str, from: &Path, mode: u32) -> Result<()> {
    let data = fs::read(from).with_context(|| format!("cannot read {}", from.display()))?;
    put(root, rel, &data, mode)
}

/// The units the package ships, enabled by its postinst (the metrics service is started by its
/// timer; enabling a unit without an `[Install]` section does nothing).
const UNITS: [&str; 6] = [
    "hnroot-mark-good.service",
    "hnroot-host-keys.service",
    "hnroot-host-sync.service",
    "hnroot-bootloader-update.service",
    "hnroot-metrics.service",
    "hnroot-metrics.timer",
];

/// systemd drop-ins the package ships: where they go, and their source in the workspace.
const SYSTEMD_DROPINS: [(&str, &str); 2] = [
    (
        "usr/lib/systemd/system/boot-complete.target.d/hnroot-health-timeout.conf",
        "packaging/systemd/boot-complete.target.d/hnroot-health-timeout.conf",
    ),
    (
        "usr/lib/systemd/system.conf.d/hnroot-watchdog.conf",
        "packaging/systemd/system.conf.d/hnroot-watchdog.conf",
    ),
];

/// A maintainer script running `deb-systemd-helper VERB` on every unit when `$1` is `when`.
fn helper_script(comment: &str, when: &str, verb: &str) -> String {
    let mut s = format!(
        "#!/bin/sh\nset -e\n# {comment}\nif [ \"$1\" = {when} ] && command -v deb-systemd-helper >/dev/null 2>&1; then\n"
    );
    for unit in UNITS {
        s.push_str(&format!(
            "\tdeb-systemd-helper {verb} {unit} >/dev/null || true\n"
        ));
    }
    s.push_str("fi\nexit 0\n");
    s
}

/// The initrd is rebuilt once hnroot's hook or module is in place: initramfs-tools runs
/// `update-initramfs` on this trigger, Debian's dracut runs `dracut --force` for every kernel in
/// /boot (its postinst, `triggered`).
const TRIGGERS: &str = "activate-noawait update-initramfs\n";

/// Build the package into `out_dir`.
pub fn build(out_dir: &Path) -> Result<Deb> {
    let _lock = buildenv::lock("deb")?;
    let version = env!("CARGO_PKG_VERSION").to_owned();
    let kit = grubmod::build_kit()?;
    let cli = binaries::static_binary("hnroot-cli", "hnroot")?;
    let init = binaries::static_binary("hnroot-init", "hnroot-init")?;
    let stage = buildenv::fresh_dir(&buildenv::build_root().join("deb").join("root"))?;
    stage_files(&stage, &cli, &init, &kit.dir)?;
    let installed_kib: u64 = dir_bytes(&stage)?.div_ceil(1024);
    maintainer_files(&stage, &version, installed_kib, &kit.grub_version)?;
    fs::create_dir_all(out_dir)?;
    let path = out_dir.join(format!("{PACKAGE}_{version}_amd64.deb"));
    buildenv::run(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&stage)
            .arg(&path),
    )
    .context("dpkg-deb --build")?;
    Ok(Deb {
        path,
        version,
        grub_build: kit.grub_version,
    })
}

/// The package's files under `stage` as they install: the binaries, the initramfs-tools and
/// dracut integration, the units, the loader kit, the keys directory, the docs.
fn stage_files(stage: &Path, cli: &Path, init: &Path, kit: &Path) -> Result<()> {
    let ws = buildenv::workspace_root();
    let stage = stage.to_owned();
    copy(&stage, "usr/sbin/hnroot", cli, 0o755)?;
    copy(&stage, "usr/lib/hnroot/hnroot-init", init, 0o755)?;
    copy(
        &stage,
        "usr/share/initramfs-tools/hooks/hnroot",
        &ws.join("packaging/initramfs-tools/hooks/hnroot"),
        0o755,
    )?;
    copy(
        &stage,
        "usr/share/initramfs-tools/scripts/hnroot",
        &ws.join("packaging/initramfs-tools/scripts/hnroot"),
        0o644,
    )?;
    let dracut = ws.join("packaging/dracut/90hnroot");
    if dracut.is_dir() {
        for entry in fs::read_dir(&dracut)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // dracut runs module-setup.sh and installs the hooks from here: scripts are
            // executable, units and other data are not (systemd warns about an executable unit).
            let mode = if name.ends_with(".sh") { 0o755 } else { 0o644 };
            copy(
                &stage,
                &format!("usr/lib/dracut/modules.d/90hnroot/{name}"),
                &entry.path(),
                mode,
            )?;
        }
    }
    for unit in UNITS {
        copy(
            &stage,
            &format!("usr/lib/systemd/system/{unit}"),
            &ws.join("packaging/systemd").join(unit),
            0o644,
        )?;
    }
    // The health checks' deadline and the hardware watchdog: systemd's own drop-ins, in the
    // vendor directories so an administrator's /etc drop-ins override them.
    for (to, from) in SYSTEMD_DROPINS {
        copy(&stage, to, &ws.join(from), 0o644)?;
    }
    copy_tree(kit, &stage.join(KIT_IN_PACKAGE))?;
    fs::create_dir_all(stage.join("etc/hnroot/keys"))?;
    put(
        &stage,
        "usr/share/doc/hnroot/copyright",
        b"hnroot\nLicense: MIT OR Apache-2.0\n",
        0o644,
    )?;
    put(
        &stage,
        "usr/share/doc/hnroot/README.md",
        &fs::read(ws.join("README.md"))?,
        0o644,
    )
}

/// `DEBIAN/`: control, the maintainer scripts, the trigger.
fn maintainer_files(stage: &Path, version: &str, installed_kib: u64, grub: &str) -> Result<()> {
    let control = format!(
        "Package: {PACKAGE}\n\
         Version: {version}\n\
         Architecture: amd64\n\
         Maintainer: hnroot maintainers <maintainers@example.invalid>\n\
         Installed-Size: {installed_kib}\n\
         Depends: mtools, gdisk, dosfstools, e2fsprogs, util-linux, zstd, kmod\n\
         Recommends: initramfs-tools | dracut, systemd, efibootmgr, btrfs-progs, xfsprogs, minisign, openssh-client\n\
         Suggests: cryptsetup-bin, sbsigntool\n\
         Section: admin\n\
         Priority: optional\n\
         Homepage: https://example.invalid/hnroot\n\
         Description: image-based, roll-back-able root filesystems chosen by GRUB\n \
         The whole root filesystem is one image file on the hostpart partition; GRUB's\n \
         hnroot.mod picks the image before the kernel loads, the initramfs commits the\n \
         switch and mounts it, and the hnroot command stages, reverts and explains.\n \
         This package carries its own GRUB (Debian grub2 {grub}) with hnroot.mod\n \
         built in; the system's GRUB packages are not used.\n",
    );
    put(stage, "DEBIAN/control", control.as_bytes(), 0o644)?;
    let postinst = helper_script(
        "Enable the units: commit a healthy image (or end a failed trial boot), the host's SSH \
         host keys, the host state's sync.",
        "configure",
        "enable",
    );
    put(stage, "DEBIAN/postinst", postinst.as_bytes(), 0o755)?;
    let prerm = helper_script("Disable the units on removal.", "remove", "disable");
    put(stage, "DEBIAN/prerm", prerm.as_bytes(), 0o755)?;
    let postrm = helper_script("Forget the units on purge.", "purge", "purge");
    put(stage, "DEBIAN/postrm", postrm.as_bytes(), 0o755)?;
    put(stage, "DEBIAN/triggers", TRIGGERS.as_bytes(), 0o644)
}

/// Where the loader kit lies in the package (`hnroot_install::grub::KIT_DIR`).
const KIT_IN_PACKAGE: &str = "usr/lib/hnroot/grub";

/// Copy the files under `from` to `to` (directories made; executables stay executable).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in fs::read_dir(from).with_context(|| format!("cannot list {}", from.display()))? {
        let entry = entry?;
        let dst = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &dst)?;
        } else {
            let exec = entry.metadata()?.permissions().mode() & 0o111 != 0;
            let data = fs::read(entry.path())?;
            fs::write(&dst, data).with_context(|| format!("cannot write {}", dst.display()))?;
            fs::set_permissions(
                &dst,
                fs::Permissions::from_mode(if exec { 0o755 } else { 0o644 }),
            )?;
        }
    }
    Ok(())
}

fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dracut module's files as the package ships them: every script parses under the
    /// shells that run it (dracut sources module-setup.sh in bash; the initrd's /bin/sh is bash
    /// or dash), the unit is not executable in the package, and the hooks module-setup.sh
    /// installs exist.
    #[test]
    fn the_dracut_module_parses_and_names_files_that_exist() {
        let dir = buildenv::workspace_root().join("packaging/dracut/90hnroot");
        let mut names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let scripts: Vec<&String> = names.iter().filter(|n| n.ends_with(".sh")).collect();
        assert!(scripts.len() >= 6, "{names:?}");
        for name in &scripts {
            let shells: &[&str] = if name.as_str() == "module-setup.sh" {
                &["bash"]
            } else {
                &["sh", "bash"]
            };
            for shell in shells {
                let out = Command::new(shell)
                    .arg("-n")
                    .arg(dir.join(name))
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{shell} -n {name}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let setup = fs::read_to_string(dir.join("module-setup.sh")).unwrap();
        let installed: Vec<&str> = setup
            .split("\"$moddir/")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect();
        assert!(installed.len() >= 6, "{installed:?}");
        for file in installed {
            assert!(
                names.iter().any(|n| n == file),
                "module-setup.sh installs {file}, which is not in {}",
                dir.display()
            );
        }
    }

    #[test]
    fn the_kit_lies_where_hnroot_looks_for_it() {
        assert_eq!(format!("/{KIT_IN_PACKAGE}"), hnroot_install::grub::KIT_DIR);
    }

    #[test]
    fn the_maintainer_scripts_name_every_unit() {
        let postinst = helper_script("x", "configure", "enable");
        for unit in UNITS {
            assert!(postinst.contains(&format!("deb-systemd-helper enable {unit} ")));
            assert!(buildenv::workspace_root()
                .join("packaging/systemd")
                .join(unit)
                .is_file());
        }
        assert!(postinst.starts_with("#!/bin/sh\nset -e\n") && postinst.ends_with("fi\nexit 0\n"));
    }
}
