//! Builds hnroot's standalone initramfs and never installs or boots it. `hnroot-init`, built
//! as a static musl binary and stripped, is `/init`; the kernel modules the boot needs for one
//! kernel sit under `/lib/modules/<release>/` with a `modules.dep` limited to them and the
//! kernel's `modules.builtin`; `/etc/hnroot/modules` names the modules to load (softdep
//! providers such as `crc32c_generic` included, since hnroot-init only follows `modules.dep`);
//! busybox is optional, for the emergency shell at `/bin/sh`. The archive is written in memory
//! (rootless: `/dev/console` is a header, not a mknod) and compressed with zstd or gzip.
//! `cargo xtask initramfs` is its command line (`testkit/src/bin/initramfs.rs`).

use std::path::Path;

use anyhow::Result;

use crate::busybox;
use crate::kernel;
pub use hnroot_install::initramfs::{compress, release_of, Built, Compress, Spec, MODULE_LIST};

pub use hnroot_build::binaries::{static_binary, MUSL_TARGET};

/// The default module set: [`kernel::BOOT_MODULES`].
pub fn default_modules() -> Vec<String> {
    kernel::BOOT_MODULES.iter().map(|m| m.to_string()).collect()
}

/// The host's static busybox, for [`Spec::busybox`].
pub fn host_busybox() -> Result<hnroot_install::initramfs::Busybox> {
    let bb = busybox::host()?;
    Ok(hnroot_install::initramfs::Busybox {
        binary: bb.binary,
        applets: bb.applets,
    })
}

/// Build the initramfs described by `spec` at `out` (the product's builder).
pub fn build(spec: &Spec, out: &Path) -> Result<Built> {
    hnroot_install::initramfs::build(spec, out)
}
