//! Kernel modules in hnroot's own initramfs: everything on the wanted list
//! (`/etc/hnroot/modules`) at start except the filesystem and device-mapper drivers, and each
//! of those only when it is about to be used (the probes need none): btrfs alone costs seconds
//! at load time (its RAID6 code benchmarks itself), which an ext4 hostpart never pays, and
//! dm-verity is loaded for a sealed image only.

use std::path::PathBuf;
use std::time::Instant;

use hnroot_core::probe::FsType;

use crate::{info, kmod, warn};

/// The initramfs's modules and the filesystem drivers not loaded yet.
#[derive(Debug)]
pub struct Drivers {
    modules: Option<kmod::Modules>,
    /// Filesystem drivers on the wanted list, loaded on demand.
    deferred: Vec<String>,
}

/// Module names loaded on demand: the drivers of filesystems (and their code pages) and of
/// device-mapper targets.
fn is_deferred(name: &str) -> bool {
    matches!(
        name,
        "ext4" | "ext3" | "ext2" | "btrfs" | "xfs" | "vfat" | "fat" | "msdos" | "overlay"
    ) || name.starts_with("nls_")
        || name.starts_with("dm_")
}

/// The modules a filesystem type needs to be mounted (FAT: the driver and the code pages its
/// default mount options use).
fn fs_modules(t: FsType) -> &'static [&'static str] {
    match t {
        FsType::Ext2 | FsType::Ext3 | FsType::Ext4 | FsType::Ext4dev => &["ext4"],
        FsType::Btrfs => &["btrfs"],
        FsType::Xfs => &["xfs"],
        FsType::Vfat => &[
            "vfat",
            "nls_cp437",
            "nls_ascii",
            "nls_iso8859_1",
            "nls_utf8",
        ],
        FsType::Jbd => &[],
    }
}

fn log_loaded(what: &str, loaded: &[kmod::Loaded], errors: Vec<kmod::KmodError>, start: Instant) {
    let inserted: Vec<&str> = loaded
        .iter()
        .filter_map(|l| match l {
            kmod::Loaded::Inserted(n) => Some(n.as_str()),
            kmod::Loaded::Present(_) => None,
        })
        .collect();
    info!(
        "modules: loaded {} {what}({}) in {:.2} s, {} already present",
        inserted.len(),
        inserted.join(" "),
        start.elapsed().as_secs_f32(),
        loaded.len() - inserted.len()
    );
    for e in errors {
        warn!("modules: {e}; continuing (what it drives may not appear or mount)");
    }
}

impl Drivers {
    /// No modules: the kernel's built-in drivers only.
    pub fn none() -> Drivers {
        Drivers {
            modules: None,
            deferred: Vec::new(),
        }
    }

    /// Index the initramfs's modules in `dir` and load those on `list` but the filesystem
    /// drivers.
    pub fn start(dir: Option<&PathBuf>, list: &std::path::Path) -> Drivers {
        let Some(dir) = dir else {
            return Drivers::none();
        };
        if !dir.is_dir() {
            info!(
                "modules: none in this initramfs for this kernel ({}): relying on built-in drivers",
                dir.display()
            );
            return Drivers::none();
        }
        let wanted = match kmod::read_wanted(list) {
            Ok(w) => w,
            Err(e) => {
                warn!("modules: cannot read {}: {e}; loading none", list.display());
                return Drivers::none();
            }
        };
        let modules = match kmod::Modules::open(dir) {
            Ok(m) => m,
            Err(e) => {
                warn!("modules: {e}; loading none");
                return Drivers::none();
            }
        };
        let (deferred, now): (Vec<String>, Vec<String>) = wanted
            .into_iter()
            .partition(|n| is_deferred(&kmod::module_name(n)));
        let start = Instant::now();
        let (loaded, errors) = modules.load(&now);
        log_loaded("", &loaded, errors, start);
        let deferred = deferred.iter().map(|n| kmod::module_name(n)).collect();
        Drivers {
            modules: Some(modules),
            deferred,
        }
    }

    /// Load overlayfs (for the writable layer over the image), if this initramfs has it and it
    /// is not loaded yet.
    pub fn for_overlay(&mut self) {
        self.load_deferred(&["overlay"], "for the writable layer ");
    }

    /// Load dm-verity (and device-mapper under it) for a sealed image, if this initramfs has
    /// it and it is not loaded yet.
    pub fn for_verity(&mut self) {
        self.load_deferred(&["dm_verity"], "for dm-verity ");
    }

    /// Load what mounting a `t` filesystem needs, if this initramfs has it and it is not
    /// loaded yet.
    pub fn for_fs(&mut self, t: FsType) {
        self.load_deferred(fs_modules(t), &format!("for {} ", t.as_str()));
    }

    fn load_deferred(&mut self, names: &[&str], what: &str) {
        let Some(modules) = &self.modules else { return };
        let wanted: Vec<String> = names
            .iter()
            .filter(|m| self.deferred.iter().any(|d| d == *m) && modules.has(m))
            .map(|m| (*m).to_owned())
            .collect();
        if wanted.is_empty() {
            return;
        }
        self.deferred.retain(|d| !wanted.contains(d));
        let start = Instant::now();
        let (loaded, errors) = modules.load(&wanted);
        log_loaded(what, &loaded, errors, start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_filesystem_type_names_only_deferred_drivers() {
        for t in FsType::ALL {
            for m in fs_modules(t) {
                assert!(is_deferred(m), "{m} for {t} would never be deferred");
            }
        }
        assert!(is_deferred("dm_verity"));
        assert!(
            !is_deferred("loop") && !is_deferred("virtio_blk") && !is_deferred("crc32c_generic")
        );
        assert_eq!(
            fs_modules(FsType::Ext3),
            ["ext4"],
            "ext2/3 are served by the ext4 driver"
        );
    }
}
