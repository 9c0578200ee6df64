//! `cargo xtask initramfs-tools-test`: checks hnroot's initramfs-tools integration
//! (`packaging/initramfs-tools/`: the `boot=hnroot` script and the hook) three ways.
//!
//! 1. **Fake root.** The boot script runs in a chroot (own PID namespace, so nothing in it can
//!    reboot the host) the way initramfs-tools' `/init` runs it: `/scripts/functions` and
//!    `/scripts/local` sourced, then `/scripts/hnroot`, then `mount_top`, `mount_premount`,
//!    `mountroot`, `mount_bottom`. `panic` and `wait_for_udev` record their arguments instead
//!    of starting a shell or udevadm. Both shells an initramfs may have (busybox `sh`, klibc's
//!    `sh`), with stub and with initramfs-tools' real `functions`/`local`, against a fake
//!    `hnroot-init` that records its arguments, and against the real static one.
//! 2. **mkinitramfs.** In a debootstrapped Debian 12 tree (minbase + initramfs-tools,
//!    linux-image-amd64, busybox, zstd; cached under `target/hnroot-build/initramfs-tools/`), the
//!    files
//!    are installed the package way (`/usr/share/initramfs-tools/`) and the administrator way
//!    (a `CONFDIR`), `mkinitramfs` builds an image each time, and `lsinitramfs`/`unmkinitramfs`
//!    show the script, the binary, `loop` and `dm_verity` in `conf/modules` and the filesystem modules inside.
//!    Without `hnroot-init` the build must fail with the hook's message.
//! 3. **Boot.** The package-way image boots in QEMU (OVMF, that tree's kernel, `boot=hnroot`)
//!    through the production chain — hnroot's GRUB with hnroot.mod and `grub-module/grub.cfg`
//!    verbatim (its `linux` lines pass `boot=hnroot`), a committed boot state — to the test
//!    root's init from an ext4 and from a btrfs hostpart (drivers loaded on demand); a third
//!    boot has hostpart on a disk the initramfs has no driver for (NVMe) and must show the
//!    panic message with hnroot-init's FATAL line, then reboot (`panic=10`).
//!
//! It never installs anything on the host or touches the host's initramfs.

mod boot;
mod debian_tree;
mod fake_root;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use hnroot_testkit::{buildenv, initramfs};

/// The boot script and the hook, relative to the workspace root.
const SCRIPT: &str = "packaging/initramfs-tools/scripts/hnroot";
const HOOK: &str = "packaging/initramfs-tools/hooks/hnroot";
/// Where the hook takes hnroot-init from by default.
const INSTALLED_INIT: &str = "usr/lib/hnroot/hnroot-init";
/// Where the hook puts it in the initramfs.
const INITRAMFS_INIT: &str = "usr/sbin/hnroot-init";
/// initramfs-tools on this machine (package initramfs-tools-core).
const INITRAMFS_TOOLS_SHARE: &str = "/usr/share/initramfs-tools";
/// klibc's shell and its shared library (package klibc-utils, libklibc): the `sh` of an
/// initramfs built without busybox.
const KLIBC_BIN: &str = "/usr/lib/klibc/bin";
const KLIBC_LIB_DIR: &str = "/usr/lib";

/// The Debian tree mkinitramfs runs in.
const SUITE: &str = "bookworm";
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
const TREE_PACKAGES: &str = "initramfs-tools,linux-image-amd64,busybox,zstd";
/// Marks a complete tree; holds what it was made from. Written last.
const TREE_STAMP: &str = ".hnroot-tree-complete";
/// debootstrap downloads ~150 MiB and builds one initramfs; measured ~3 min.
const DEBOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(20 * 60);
const MKINITRAMFS_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// One run of the boot script in the fake root (the real hnroot-init waits 0 s).
const FAKE_ROOT_TIMEOUT: Duration = Duration::from_secs(60);
/// The boot script's number of attempts (`HNROOT_ATTEMPTS`).
const ATTEMPTS: u32 = 3;
/// The modules the hook adds, by module name; each must end up in the image or be built in.
const HOOK_MODULES: &[&str] = &[
    "loop",
    "ext4",
    "btrfs",
    "xfs",
    "vfat",
    "nls_cp437",
    "nls_ascii",
    "nls_iso8859_1",
    "nls_utf8",
    "overlay",
];
/// Disk drivers the test configuration adds (`MODULES=list`): the image then holds what the
/// hook brings, not what `MODULES=most` would have brought anyway.
const TEST_CONF_MODULES: &[&str] = &["virtio_pci", "virtio_blk"];
/// Bound on the entries of /proc/self/mountinfo looked at.
const MAX_MOUNTS: usize = 100_000;

/// `cargo xtask initramfs-tools-test`; without arguments (as `cargo xtask test` runs it), all
/// three parts.
#[derive(Debug, Parser)]
#[command(
    name = "initramfs-tools-test",
    about = "Test the initramfs-tools integration (boot=hnroot script and hook): the script in \
             a fake root under busybox and klibc sh, mkinitramfs in a debootstrapped Debian 12 \
             tree, and QEMU boots of the result."
)]
struct Args {
    /// Only the fake-root runs of the boot script (no debootstrap, no mkinitramfs, no QEMU).
    #[arg(long)]
    fake_root_only: bool,
    /// Build and inspect the initramfs images but do not boot them.
    #[arg(long)]
    no_boot: bool,
    /// Debian mirror for the debootstrapped tree (changing it rebuilds the tree).
    #[arg(long, default_value = DEFAULT_MIRROR)]
    mirror: String,
    /// Deadline for one QEMU boot, power-on to QEMU exit, in seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let init = initramfs::static_binary("hnroot-init", "hnroot-init")?;
    let work = buildenv::build_root().join("initramfs-tools");
    fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;

    let t = Instant::now();
    let runs = fake_root::tests(&work.join("fake-root"), &init)?;
    println!(
        "initramfs-tools-test: boot script in a fake root: {runs} runs passed in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    if args.fake_root_only {
        return Ok(());
    }

    let t = Instant::now();
    let tree = debian_tree::get(&work, &args.mirror)?;
    println!(
        "initramfs-tools-test: Debian tree {} (kernel {}) ready in {:.1} s",
        tree.root.display(),
        tree.release,
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let images = debian_tree::mkinitramfs_tests(&tree, &init, &work)?;
    println!(
        "initramfs-tools-test: mkinitramfs, package and CONFDIR layouts and the missing-binary \
         failure checked in {:.1} s ({} KiB, {} KiB)",
        t.elapsed().as_secs_f64(),
        file_len(&images.package)?.div_ceil(1024),
        file_len(&images.confdir)?.div_ceil(1024)
    );
    if args.no_boot {
        return Ok(());
    }

    let t = Instant::now();
    boot::tests(
        &tree,
        &images.package,
        &work.join("boot"),
        Duration::from_secs(args.timeout),
    )?;
    println!(
        "initramfs-tools-test: QEMU boots (boot=hnroot to the test init through hnroot.mod and \
         the production grub.cfg from ext4 and btrfs hostparts; a hostpart the initramfs cannot \
         see to panic and reboot) passed in {:.1} s; {:.1} s in all",
        t.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn file_len(path: &Path) -> Result<u64> {
    Ok(fs::metadata(path)
        .with_context(|| format!("cannot stat {}", path.display()))?
        .len())
}

/// Run `cmd` with stdin closed and stdout and stderr appended to `log`; kill it after
/// `timeout`. Returns the exit status and what it wrote. A file rather than pipes: a grandchild
/// that keeps a pipe open cannot make us wait past the deadline.
fn run_logged(
    cmd: &mut Command,
    timeout: Duration,
    log: &Path,
) -> Result<(std::process::ExitStatus, String)> {
    let shown = buildenv::show(cmd);
    let out = fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let err = out
        .try_clone()
        .with_context(|| format!("cannot reopen {}", log.display()))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .with_context(|| format!("cannot start `{shown}`"))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("cannot poll `{shown}`"))?
        {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "`{shown}` still running after {} s: killed it (its output is in {})",
                timeout.as_secs(),
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = fs::read_to_string(log).unwrap_or_default();
    Ok((status, text))
}

/// Write `data` to `path` with permissions `mode`, parents created.
fn write(path: &Path, mode: u32, data: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    fs::write(path, data).with_context(|| format!("cannot write {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

/// Copy `src` to `dst` with permissions `mode`, parents created.
fn copy_into(src: &Path, dst: &Path, mode: u32) -> Result<()> {
    let data = fs::read(src).with_context(|| format!("cannot read {}", src.display()))?;
    write(dst, mode, &data)
}
