//! Builds the baseline initramfs `bench-initramfs` measures hnroot-init against, and never
//! boots it: `benches/linuxrc.sh` as `/init`, the host's static busybox with its applet links,
//! and the kernel modules the boot needs with `/etc/hnroot/modules` listing them in load order.
//! Rootless: the cpio is written in memory (`/dev/console` is a header, not a mknod), then
//! compressed with zstd.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::buildenv;
use crate::busybox;
use crate::cpio;
use crate::kernel::{Kernel, ModuleSet};

/// The prototype linuxrc, relative to the workspace root.
pub const LINUXRC: &str = "benches/linuxrc.sh";
/// Inside the initramfs: the module list the linuxrc reads.
pub const MODULE_LIST: &str = "etc/hnroot/modules";

/// What was built.
#[derive(Debug, Clone)]
pub struct Initramfs {
    /// The compressed archive.
    pub path: PathBuf,
    /// Size of the cpio before compression.
    pub cpio_bytes: u64,
    /// Size of the compressed file.
    pub compressed_bytes: u64,
    /// Number of .ko files inside.
    pub modules: usize,
}

/// Build the linuxrc initramfs for `kernel` with `modules` (from `Kernel::modules_for`) at `out`.
pub fn build(kernel: &Kernel, modules: &ModuleSet, out: &Path) -> Result<Initramfs> {
    let script_path = buildenv::workspace_root().join(LINUXRC);
    let script = fs::read(&script_path).with_context(|| {
        format!(
            "cannot read the prototype linuxrc {}",
            script_path.display()
        )
    })?;
    let bb = busybox::host()?;
    let mut a = cpio::Archive::new();
    for dir in [
        "bin",
        "sbin",
        "dev",
        "proc",
        "sys",
        "run",
        "tmp",
        "etc",
        "etc/hnroot",
        "hostpart",
        "newroot",
        "lib",
        "lib/modules",
    ] {
        a.dir(dir, 0o755)?;
    }
    a.char_dev("dev/console", 0o600, 5, 1)?;
    a.char_dev("dev/null", 0o666, 1, 3)?;
    a.file("init", 0o755, &script)?;
    a.file("bin/busybox", 0o755, &bb.binary)?;
    for applet in &bb.applets {
        a.symlink(&format!("bin/{applet}"), "busybox")?;
    }
    let base = format!("lib/modules/{}", kernel.release);
    a.dir(&base, 0o755)?;
    let mut made = std::collections::BTreeSet::new();
    for ko in &modules.load_order {
        let parts: Vec<&str> = ko.split('/').collect();
        for depth in 1..parts.len() {
            let dir = format!("{base}/{}", parts[..depth].join("/"));
            if made.insert(dir.clone()) {
                a.dir(&dir, 0o755)?;
            }
        }
        let src = kernel.modules_dir.join(ko);
        let data =
            fs::read(&src).with_context(|| format!("cannot read module {}", src.display()))?;
        a.file(&format!("{base}/{ko}"), 0o644, &data)?;
    }
    let list: String = modules
        .load_order
        .iter()
        .map(|ko| format!("{ko}\n"))
        .collect();
    a.file(MODULE_LIST, 0o644, list.as_bytes())?;
    let cpio = a.finish()?;
    let compressed = crate::initramfs::compress(&cpio, crate::initramfs::Compress::Zstd)?;
    fs::write(out, &compressed).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(Initramfs {
        path: out.to_path_buf(),
        cpio_bytes: cpio.len() as u64,
        compressed_bytes: compressed.len() as u64,
        modules: modules.load_order.len(),
    })
}
