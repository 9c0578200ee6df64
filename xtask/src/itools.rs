//! `cargo xtask initramfs-tools-test`: checks hnroot's initramfs-tools integration
//! (`initramfs/initramfs-tools/`: the `boot=hnroot` script and the hook) three ways.
//!
//! 1. **Fake root.** The boot script runs in a chroot (own PID namespace, so nothing in it can
//!    reboot the host) the way initramfs-tools' `/init` runs it: `/scripts/functions` and
//!    `/scripts/local` sourced, then `/scripts/hnroot`, then `mount_top`, `mount_premount`,
//!    `mountroot`, `mount_bottom`. `panic` and `wait_for_udev` record their arguments instead
//!    of starting a shell or udevadm. Both shells an initramfs may have (busybox `sh`, klibc's
//!    `sh`), with stub and with initramfs-tools' real `functions`/`local`, against a fake
//!    `hnroot-init` that records its arguments, and against the real static one.
//! 2. **mkinitramfs.** In a debootstrapped Debian 12 tree (minbase + initramfs-tools,
//!    linux-image-amd64, busybox, zstd; cached under `target/hnroot-build/itools/`), the files
//!    are installed the package way (`/usr/share/initramfs-tools/`) and the administrator way
//!    (a `CONFDIR`), `mkinitramfs` builds an image each time, and `lsinitramfs`/`unmkinitramfs`
//!    show the script, the binary, `loop` in `conf/modules` and the filesystem modules inside.
//!    Without `hnroot-init` the build must fail with the hook's message.
//! 3. **Boot.** The package-way image boots in QEMU (OVMF, that tree's kernel, `boot=hnroot`)
//!    to the test root's init: through Debian's GRUB with hnroot.mod and the production
//!    grub.cfg (verbatim; its `linux` lines pass `boot=hnroot`) from an ext4 hostpart,
//!    and through the smoke grub.cfg from a btrfs hostpart (drivers loaded on demand); a third
//!    boot looks for a hostpart that is not there and must show the panic message with
//!    hnroot-init's FATAL line, then reboot (`panic=1`).
//!
//! It never installs anything on the host or touches the host's initramfs.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hnroot_core::bootstate::{new_block, BootState};
use hnroot_core::uuid::FsUuid;
use regex::Regex;

use crate::buildenv;
use crate::disk::{self, EspSpec, HostFs, HostpartSpec, ImageFile, PartSpec};
use crate::grubimage::{self, GrubImageSpec, SmokeCfg};
use crate::grubmod;
use crate::initramfs;
use crate::qemu::{Vm, VmSpec};
use crate::util;

/// The boot script and the hook, relative to the workspace root.
pub const SCRIPT: &str = "initramfs/initramfs-tools/scripts/hnroot";
pub const HOOK: &str = "initramfs/initramfs-tools/hooks/hnroot";
/// Where the hook takes hnroot-init from by default.
pub const INSTALLED_INIT: &str = "usr/lib/hnroot/hnroot-init";
/// Where the hook puts it in the initramfs.
const INITRAMFS_INIT: &str = "usr/sbin/hnroot-init";
/// initramfs-tools on this machine (package initramfs-tools-core).
const ITOOLS_SHARE: &str = "/usr/share/initramfs-tools";
/// klibc's shell and its shared library (package klibc-utils, libklibc): the `sh` of an
/// initramfs built without busybox.
const KLIBC_BIN: &str = "/usr/lib/klibc/bin";
const KLIBC_LIB_DIR: &str = "/usr/lib";

/// The Debian tree mkinitramfs runs in.
const SUITE: &str = "bookworm";
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
const TREE_PACKAGES: &str = "initramfs-tools,linux-image-amd64,busybox,zstd";
/// Marks a complete tree; holds what it was made from. Written last.
const TREE_STAMP: &str = ".hnroot-itools-complete";
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
];
/// Disk drivers the test configuration adds (`MODULES=list`): the image then holds what the
/// hook brings, not what `MODULES=most` would have brought anyway.
const TEST_CONF_MODULES: &[&str] = &["virtio_pci", "virtio_blk"];
/// Bound on the entries of /proc/self/mountinfo looked at.
const MAX_MOUNTS: usize = 100_000;

/// `cargo xtask initramfs-tools-test`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only the fake-root runs of the boot script (no debootstrap, no mkinitramfs, no QEMU).
    #[arg(long)]
    pub fake_root_only: bool,
    /// Build and inspect the initramfs images but do not boot them.
    #[arg(long)]
    pub no_boot: bool,
    /// Debian mirror for the debootstrapped tree (changing it rebuilds the tree).
    #[arg(long, default_value = DEFAULT_MIRROR)]
    pub mirror: String,
    /// Deadline for one QEMU boot, power-on to QEMU exit, in seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            fake_root_only: false,
            no_boot: false,
            mirror: DEFAULT_MIRROR.to_string(),
            timeout: 300,
        }
    }
}

/// `cargo xtask initramfs-tools-test`.
pub fn run(args: &Args) -> Result<()> {
    let started = Instant::now();
    let init = initramfs::static_binary("hnroot-init", "hnroot-init")?;
    let work = buildenv::build_root().join("itools");
    fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;

    let t = Instant::now();
    let runs = fake_root_tests(&work.join("fake-root"), &init)?;
    println!(
        "initramfs-tools-test: boot script in a fake root: {runs} runs passed in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    if args.fake_root_only {
        return Ok(());
    }

    let t = Instant::now();
    let tree = debian_tree(&work, &args.mirror)?;
    println!(
        "initramfs-tools-test: Debian tree {} (kernel {}) ready in {:.1} s",
        tree.root.display(),
        tree.release,
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let images = mkinitramfs_tests(&tree, &init, &work)?;
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
    boot_tests(
        &tree,
        &images.package,
        &work.join("boot"),
        Duration::from_secs(args.timeout),
    )?;
    println!(
        "initramfs-tools-test: QEMU boots (boot=hnroot to the test init through hnroot.mod and \
         the production grub.cfg, and from a btrfs hostpart; a missing hostpart to panic and \
         reboot) passed in {:.1} s; {:.1} s in all",
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

// ---------------------------------------------------------------------------------------------
// 1. The boot script in a fake root.

/// The `sh` the initramfs runs the script with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shell {
    /// busybox's ash (initramfs-tools' default, `BUSYBOX=auto` with busybox installed).
    Busybox,
    /// klibc's dash (an initramfs built without busybox).
    Klibc,
}

/// Which `/scripts/functions` and `/scripts/local` the script is sourced after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Functions {
    /// Minimal stand-ins that record `local_top`, `local_premount`, `local_bottom`.
    Stubs,
    /// initramfs-tools' own files from this machine.
    Real,
}

/// What plays `hnroot-init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fake {
    /// Mounts (pretends to) and exits 0.
    Ok,
    /// Fails with a FATAL line and status 2 the first time, then succeeds.
    FailOnce,
    /// Always fails with a FATAL line and status 2.
    FailAlways,
    /// Killed by SIGKILL after one progress line the first time, then succeeds.
    KilledOnce,
    /// Exits 3 without a word the first time, then succeeds.
    SilentOnce,
    /// Not in the initramfs at all.
    Missing,
    /// The real static hnroot-init, with a command line naming a hostpart that is not there.
    Real,
}

/// The fake hnroot-init's FATAL line (the real program's wording for a missing hostpart).
const FAKE_FATAL: &str = "hnroot: FATAL: hostpart: no filesystem labelled 'hostpart' among 2 \
                          block devices (vda1 vfat LABEL=EFI-BOOT, vda2 ext4 LABEL=data)";
/// The fake's progress line before it is killed.
const FAKE_PROGRESS: &str =
    "hnroot: hostpart: looking for filesystem labelled 'hostpart' (up to 30 s)";
/// The label the real hnroot-init is sent to look for.
const MISSING_LABEL: &str = "no-such-hostpart";
const LOG: &str = "/run/hnroot/mount-root.log";
/// The kernel's /dev/kmsg rate-limit setting, relative to the fake root; "ratelimit" before
/// and after the script, "on" while hnroot-init runs.
const DEVKMSG: &str = "proc/sys/kernel/printk_devkmsg";

const HARNESS: &str = r#"#!/bin/sh
# Written by cargo xtask initramfs-tools-test (xtask/src/itools.rs): what initramfs-tools' /init
# does around a boot script, in a fake root. panic and wait_for_udev record their arguments.
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
export quiet=n
export panic=
export rootmnt="$1"
export BOOT=hnroot
. /scripts/functions
. /scripts/local
panic()
{
	echo "panic: $*" >>/record/events
}
wait_for_udev()
{
	echo "wait_for_udev $*" >>/record/events
}
. "/scripts/${BOOT}"
mount_top
mount_premount
mountroot
echo "mountroot returned $?" >>/record/events
mount_bottom
"#;

const STUB_FUNCTIONS: &str = r#"# Stand-in for initramfs-tools' scripts/functions (cargo xtask initramfs-tools-test).
log_begin_msg() { echo "log_begin_msg $*" >>/record/events; }
log_end_msg() { echo "log_end_msg" >>/record/events; }
log_success_msg() { echo "log_success_msg $*" >>/record/events; }
log_failure_msg() { echo "log_failure_msg $*" >>/record/events; }
log_warning_msg() { echo "log_warning_msg $*" >>/record/events; }
maybe_break() { :; }
run_scripts() { :; }
"#;

const STUB_LOCAL: &str = r#"# Stand-in for initramfs-tools' scripts/local (cargo xtask initramfs-tools-test).
local_top() { echo local_top >>/record/events; }
local_premount() { echo local_premount >>/record/events; }
local_bottom() { echo local_bottom >>/record/events; }
"#;

fn fake_hnroot_init(fake: Fake) -> String {
    let mode = match fake {
        Fake::Ok => "ok",
        Fake::FailOnce => "fail-once",
        Fake::FailAlways => "fail",
        Fake::KilledOnce => "killed-once",
        Fake::SilentOnce => "silent-once",
        Fake::Missing | Fake::Real => "unused",
    };
    format!(
        r#"#!/bin/sh
# Fake hnroot-init (cargo xtask initramfs-tools-test): records its arguments, then plays "{mode}".
devkmsg=none
[ -f /proc/sys/kernel/printk_devkmsg ] && read -r devkmsg </proc/sys/kernel/printk_devkmsg
echo "hnroot-init $* (printk_devkmsg=$devkmsg)" >>/record/events
calls=0
[ -f /record/calls ] && read -r calls </record/calls
calls=$((calls + 1))
echo "$calls" >/record/calls
fail()
{{
	echo "hnroot: cmdline: GRUB booted hn-root.img (UUID 0f0e0d0c-0b0a-4908-8706-050403020100), hostpart LABEL=hostpart" >&2
	echo "{FAKE_FATAL}" >&2
	echo "hnroot: fallback: hostpart or the booted image is unknown: nothing to fall back to" >&2
	exit 2
}}
case "{mode}" in
fail) fail ;;
fail-once) [ "$calls" -eq 1 ] && fail ;;
killed-once)
	if [ "$calls" -eq 1 ]; then
		echo "{FAKE_PROGRESS}" >&2
		kill -9 $$
	fi
	;;
silent-once) [ "$calls" -eq 1 ] && exit 3 ;;
esac
echo "hnroot: mounted /dev/loop0 (ext4, UUID=0f0e0d0c-0b0a-4908-8706-050403020100) ro at $2" >&2
exit 0
"#
    )
}

fn write(path: &Path, mode: u32, data: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    fs::write(path, data).with_context(|| format!("cannot write {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

fn copy_into(src: &Path, dst: &Path, mode: u32) -> Result<()> {
    let data = fs::read(src).with_context(|| format!("cannot read {}", src.display()))?;
    write(dst, mode, &data)
}

/// The klibc shared library `sh` needs (its ELF interpreter, `/lib/klibc-<hash>.so`).
fn klibc_library() -> Result<PathBuf> {
    let dir = Path::new(KLIBC_LIB_DIR);
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with("klibc-") && name.ends_with(".so") {
            found.push(name);
        }
    }
    match found.as_slice() {
        [one] => Ok(dir.join(one)),
        [] => bail!(
            "no klibc-*.so in {} (apt-get install libklibc): klibc's sh cannot run",
            dir.display()
        ),
        many => bail!(
            "several klibc libraries in {}: {}; cannot tell which {KLIBC_BIN}/sh uses",
            dir.display(),
            many.join(" ")
        ),
    }
}

/// Build the fake root for one run at `dir`.
fn make_fake_root(
    dir: &Path,
    shell: Shell,
    functions: Functions,
    fake: Fake,
    init: &Path,
) -> Result<()> {
    buildenv::fresh_dir(dir)?;
    for d in [
        "bin",
        "dev",
        "lib",
        "record",
        "run",
        "root",
        "proc",
        "sys/class/block",
    ] {
        fs::create_dir_all(dir.join(d))
            .with_context(|| format!("cannot create {}", dir.join(d).display()))?;
    }
    match shell {
        Shell::Busybox => {
            copy_into(
                Path::new(crate::busybox::BUSYBOX),
                &dir.join("bin/busybox"),
                0o755,
            )?;
            for applet in ["sh", "mkdir"] {
                symlink("busybox", dir.join("bin").join(applet))
                    .with_context(|| format!("cannot link bin/{applet}"))?;
            }
        }
        Shell::Klibc => {
            for tool in ["sh", "mkdir"] {
                copy_into(
                    &Path::new(KLIBC_BIN).join(tool),
                    &dir.join("bin").join(tool),
                    0o755,
                )?;
            }
            let lib = klibc_library()?;
            let name = lib.file_name().context("klibc library has no file name")?;
            copy_into(&lib, &dir.join("lib").join(name), 0o755)?;
        }
    }
    match functions {
        Functions::Stubs => {
            write(
                &dir.join("scripts/functions"),
                0o644,
                STUB_FUNCTIONS.as_bytes(),
            )?;
            write(&dir.join("scripts/local"), 0o644, STUB_LOCAL.as_bytes())?;
        }
        Functions::Real => {
            for f in ["functions", "local"] {
                copy_into(
                    &Path::new(ITOOLS_SHARE).join("scripts").join(f),
                    &dir.join("scripts").join(f),
                    0o644,
                )?;
            }
        }
    }
    copy_into(
        &util::root().join(SCRIPT),
        &dir.join("scripts/hnroot"),
        0o644,
    )?;
    write(&dir.join("harness"), 0o755, HARNESS.as_bytes())?;
    write(&dir.join("record/events"), 0o644, b"")?;
    write(&dir.join("dev/null"), 0o644, b"")?;
    write(&dir.join(DEVKMSG), 0o644, b"ratelimit\n")?;
    match fake {
        Fake::Missing => {}
        Fake::Real => {
            copy_into(init, &dir.join(INITRAMFS_INIT), 0o755)?;
            write(
                &dir.join("proc/cmdline"),
                0o644,
                format!("boot=hnroot hnroot.timeout=0 hnroot.hostpart=LABEL={MISSING_LABEL}\n")
                    .as_bytes(),
            )?;
        }
        _ => write(
            &dir.join(INITRAMFS_INIT),
            0o755,
            fake_hnroot_init(fake).as_bytes(),
        )?,
    }
    Ok(())
}

/// Run the harness in the fake root; return the recorded events.
fn run_fake_root(dir: &Path, rootmnt: &str) -> Result<Vec<String>> {
    // A PID namespace of its own: a reboot(2) in there ends the namespace, not the host.
    let mut cmd = Command::new("unshare");
    if !crate::deps::is_root() {
        cmd.arg("--map-root-user");
    }
    // /dev/null as in an initramfs (devtmpfs), bound into the fake root in the private mount
    // namespace only.
    cmd.args(["--pid", "--fork", "--kill-child", "--mount"])
        .args([
            "/bin/sh",
            "-c",
            r#"mount --bind /dev/null "$1/dev/null" && exec chroot "$1" /bin/sh /harness "$2""#,
            "fake-root",
        ])
        .arg(dir)
        .arg(rootmnt)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    let log = dir.with_extension("log");
    let (status, output) = run_logged(&mut cmd, FAKE_ROOT_TIMEOUT, &log)?;
    if !status.success() {
        bail!(
            "the harness in the fake root {} ended with {status}; output:\n{output}",
            dir.display()
        );
    }
    let events = fs::read_to_string(dir.join("record/events"))
        .with_context(|| format!("cannot read {}/record/events", dir.display()))?;
    Ok(events.lines().map(str::to_string).collect())
}

fn failure_suffix(rootmnt: &str, status: u32) -> String {
    format!("(hnroot-init mount-root {rootmnt} exited with status {status}; its log is {LOG})")
}

fn retry_panic(reason: &str, attempt: u32) -> String {
    format!(
        "panic: {reason}. Fix it in this shell and leave it (exit) to try again (attempt \
         {attempt} of {ATTEMPTS} failed)."
    )
}

fn final_panic(reason: &str) -> String {
    format!("panic: {reason}. Giving up after {ATTEMPTS} attempts: no root file system is mounted.")
}

/// The events one run must record, stubbed `local_*` calls included.
fn expected_events(fake: Fake, rootmnt: &str, real_fatal: Option<&str>) -> Vec<String> {
    // The script lifts the kernel's /dev/kmsg rate limit while hnroot-init runs.
    let call = format!("hnroot-init mount-root {rootmnt} (printk_devkmsg=on)");
    let mut e = vec![
        "local_top".to_string(),
        "local_premount".to_string(),
        "wait_for_udev 10".to_string(),
    ];
    let fatal_reason = format!("{FAKE_FATAL} {}", failure_suffix(rootmnt, 2));
    match fake {
        Fake::Ok => e.push(call.clone()),
        Fake::FailOnce => {
            e.push(call.clone());
            e.push(retry_panic(&fatal_reason, 1));
            e.push(call.clone());
        }
        Fake::FailAlways => {
            for attempt in 1..ATTEMPTS {
                e.push(call.clone());
                e.push(retry_panic(&fatal_reason, attempt));
            }
            e.push(call.clone());
            e.push(final_panic(&fatal_reason));
        }
        Fake::KilledOnce => {
            e.push(call.clone());
            e.push(retry_panic(
                &format!("{FAKE_PROGRESS} {}", failure_suffix(rootmnt, 128 + 9)),
                1,
            ));
            e.push(call.clone());
        }
        Fake::SilentOnce => {
            e.push(call.clone());
            e.push(retry_panic(
                &format!(
                    "hnroot: hnroot-init printed nothing {}",
                    failure_suffix(rootmnt, 3)
                ),
                1,
            ));
            e.push(call.clone());
        }
        Fake::Missing | Fake::Real => {
            let reason = match (fake, real_fatal) {
                (Fake::Real, Some(fatal)) => format!("{fatal} {}", failure_suffix(rootmnt, 2)),
                (Fake::Real, None) => "(no FATAL line in hnroot-init's log)".to_string(),
                _ => "hnroot: hnroot-init is not in this initramfs \
                      (PATH=/sbin:/usr/sbin:/bin:/usr/bin): the hnroot hook did not run; \
                      install hnroot-init as /usr/lib/hnroot/hnroot-init and run \
                      update-initramfs -u"
                    .to_string(),
            };
            for attempt in 1..ATTEMPTS {
                e.push(retry_panic(&reason, attempt));
            }
            e.push(final_panic(&reason));
        }
    }
    let failed = matches!(fake, Fake::FailAlways | Fake::Missing | Fake::Real);
    e.push(format!("mountroot returned {}", u8::from(failed)));
    e.push("local_bottom".to_string());
    e
}

/// The FATAL line the real hnroot-init wrote to the script's log in the fake root.
fn real_fatal_line(dir: &Path) -> Result<String> {
    let log = dir.join(LOG.trim_start_matches('/'));
    let text =
        fs::read_to_string(&log).with_context(|| format!("cannot read {}", log.display()))?;
    let fatal = text
        .lines()
        .rev()
        .find(|l| l.starts_with("hnroot: FATAL: "))
        .ok_or_else(|| {
            anyhow!(
                "the real hnroot-init wrote no `hnroot: FATAL: ` line to {}:\n{text}",
                log.display()
            )
        })?;
    if !fatal.contains(MISSING_LABEL) {
        bail!(
            "the real hnroot-init's FATAL line does not name the hostpart label it was sent to \
             look for ({MISSING_LABEL}): {fatal}"
        );
    }
    Ok(fatal.to_string())
}

/// Every combination of shell, functions and fake; returns the number of runs.
fn fake_root_tests(work: &Path, init: &Path) -> Result<usize> {
    let mut runs = 0;
    for shell in [Shell::Busybox, Shell::Klibc] {
        for functions in [Functions::Stubs, Functions::Real] {
            for fake in [
                Fake::Ok,
                Fake::FailOnce,
                Fake::FailAlways,
                Fake::KilledOnce,
                Fake::SilentOnce,
                Fake::Missing,
                Fake::Real,
            ] {
                // ${rootmnt} must be passed through, not assumed to be /root.
                let rootmnts: &[&str] = if fake == Fake::Ok {
                    &["/root", "/media/hnroot-new-root"]
                } else {
                    &["/root"]
                };
                for rootmnt in rootmnts {
                    let name = format!("{shell:?}-{functions:?}-{fake:?}").to_lowercase();
                    let dir = work.join(&name);
                    make_fake_root(&dir, shell, functions, fake, init)?;
                    let got = run_fake_root(&dir, rootmnt)?;
                    let real_fatal = if fake == Fake::Real {
                        Some(real_fatal_line(&dir)?)
                    } else {
                        None
                    };
                    let mut want = expected_events(fake, rootmnt, real_fatal.as_deref());
                    if functions == Functions::Real {
                        want.retain(|e| !e.starts_with("local_"));
                    }
                    if got != want {
                        bail!(
                            "boot script in the fake root {} ({shell:?} sh, {functions:?} \
                             functions, hnroot-init {fake:?}, rootmnt {rootmnt}):\n  \
                             recorded: {got:#?}\n  expected: {want:#?}",
                            dir.display()
                        );
                    }
                    let devkmsg = fs::read_to_string(dir.join(DEVKMSG))
                        .with_context(|| format!("{name}: cannot read {DEVKMSG}"))?;
                    if devkmsg != "ratelimit\n" {
                        bail!(
                            "{name}: the script left /{DEVKMSG} at {devkmsg:?}, not at the \
                             \"ratelimit\" it found"
                        );
                    }
                    if fake == Fake::Ok {
                        let log = fs::read_to_string(dir.join(LOG.trim_start_matches('/')))
                            .with_context(|| format!("{name}: no {LOG} after a good mount"))?;
                        if !log.contains(&format!("ro at {rootmnt}")) {
                            bail!("{name}: {LOG} lacks hnroot-init's mount line: {log}");
                        }
                    }
                    runs += 1;
                }
            }
        }
    }
    Ok(runs)
}

// ---------------------------------------------------------------------------------------------
// 2. mkinitramfs in a Debian tree.

/// A debootstrapped tree with a kernel.
#[derive(Debug, Clone)]
pub struct DebianTree {
    pub root: PathBuf,
    /// `uname -r` of its kernel.
    pub release: String,
    pub vmlinuz: PathBuf,
}

/// Mount points at or under `dir` (from /proc/self/mountinfo).
fn mounts_under(dir: &Path) -> Result<Vec<String>> {
    let info =
        fs::read_to_string("/proc/self/mountinfo").context("cannot read /proc/self/mountinfo")?;
    let prefix = dir.to_string_lossy().into_owned();
    Ok(info
        .lines()
        .take(MAX_MOUNTS)
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| m.replace("\\040", " "))
        .filter(|m| m == &prefix || m.starts_with(&format!("{prefix}/")))
        .collect())
}

/// Remove a chroot tree, refusing while anything is mounted in it.
fn remove_tree(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let mounted = mounts_under(dir)?;
    if !mounted.is_empty() {
        bail!(
            "not removing {}: still mounted in it: {} (unmount them first)",
            dir.display(),
            mounted.join(" ")
        );
    }
    fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))
}

/// The debootstrapped tree, made once and cached; rebuilt when the mirror or package list
/// changes or a previous build did not finish.
pub fn debian_tree(work: &Path, mirror: &str) -> Result<DebianTree> {
    let root = work.join(format!("debian-{SUITE}"));
    let recipe =
        format!("debootstrap --variant=minbase --include={TREE_PACKAGES} {SUITE} {mirror}\n");
    let stamp = root.join(TREE_STAMP);
    if fs::read_to_string(&stamp).ok().as_deref() != Some(recipe.as_str()) {
        remove_tree(&root)?;
        let partial = root.with_extension("partial");
        remove_tree(&partial)?;
        eprintln!(
            "==> initramfs-tools-test: {} (once; ~3 min, ~800 MiB)",
            recipe.trim()
        );
        let log = work.join("debootstrap.log");
        let (status, output) = run_logged(
            Command::new("debootstrap")
                .args(["--variant=minbase", &format!("--include={TREE_PACKAGES}")])
                .arg(SUITE)
                .arg(&partial)
                .arg(mirror),
            DEBOOTSTRAP_TIMEOUT,
            &log,
        )?;
        let left = mounts_under(&partial)?;
        if !left.is_empty() {
            bail!(
                "debootstrap left mounts in {}: {}; unmount them and retry",
                partial.display(),
                left.join(" ")
            );
        }
        if !status.success() {
            let tail: Vec<&str> = output.lines().rev().take(20).collect();
            bail!(
                "debootstrap of {SUITE} from {mirror} failed ({status}); log {}, last lines:\n{}",
                log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        fs::rename(&partial, &root)
            .with_context(|| format!("cannot move {} to {}", partial.display(), root.display()))?;
        buildenv::write_atomic(&stamp, recipe.as_bytes())?;
    }
    let modules = root.join("lib/modules");
    let mut releases: Vec<String> = fs::read_dir(&modules)
        .with_context(|| format!("cannot list {}", modules.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    releases.sort();
    let [release] = releases.as_slice() else {
        bail!(
            "{} holds {} kernels ({}), expected exactly one; delete {} to rebuild the tree",
            modules.display(),
            releases.len(),
            releases.join(" "),
            root.display()
        );
    };
    let vmlinuz = root.join("boot").join(format!("vmlinuz-{release}"));
    if !vmlinuz.is_file() {
        bail!(
            "{} has modules for {release} but no {}; delete it to rebuild",
            root.display(),
            vmlinuz.display()
        );
    }
    Ok(DebianTree {
        root: root.clone(),
        release: release.clone(),
        vmlinuz,
    })
}

/// The two images built.
#[derive(Debug, Clone)]
pub struct Images {
    /// Hook and script under `/usr/share/initramfs-tools/`.
    pub package: PathBuf,
    /// Hook and script under the `CONFDIR`.
    pub confdir: PathBuf,
}

/// Where in the tree the test puts things; removed again by [`Installed::drop`].
struct Installed {
    paths: Vec<PathBuf>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        for p in self.paths.iter().rev() {
            let result = if p.is_dir() {
                fs::remove_dir_all(p)
            } else {
                fs::remove_file(p)
            };
            if let Err(e) = result {
                if e.kind() != std::io::ErrorKind::NotFound {
                    eprintln!("warning: cannot remove {}: {e}", p.display());
                }
            }
        }
    }
}

/// In the tree: `/usr/lib/hnroot/hnroot-init`, and a `CONFDIR` at `/etc/hnroot-itools/<name>`
/// copied from `/etc/initramfs-tools` with `MODULES=list` and the test disk drivers.
fn conf_dir(tree: &DebianTree, name: &str, with_hnroot: bool) -> Result<PathBuf> {
    let rel = PathBuf::from("etc/hnroot-itools").join(name);
    let dir = tree.root.join(&rel);
    buildenv::fresh_dir(&dir)?;
    let base = tree.root.join("etc/initramfs-tools");
    let conf = fs::read_to_string(base.join("initramfs.conf"))
        .with_context(|| format!("cannot read {}/initramfs.conf", base.display()))?;
    if !conf.lines().any(|l| l.starts_with("MODULES=")) {
        bail!(
            "{}/initramfs.conf has no MODULES= line to replace",
            base.display()
        );
    }
    let conf: String = conf
        .lines()
        .map(|l| {
            if l.starts_with("MODULES=") {
                "MODULES=list".to_string()
            } else {
                l.to_string()
            }
        })
        .map(|l| l + "\n")
        .collect();
    write(&dir.join("initramfs.conf"), 0o644, conf.as_bytes())?;
    let modules: String = TEST_CONF_MODULES.iter().map(|m| format!("{m}\n")).collect();
    write(&dir.join("modules"), 0o644, modules.as_bytes())?;
    for sub in ["conf.d", "hooks", "scripts"] {
        fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("cannot create {}", dir.join(sub).display()))?;
    }
    if with_hnroot {
        copy_into(&util::root().join(HOOK), &dir.join("hooks/hnroot"), 0o755)?;
        copy_into(
            &util::root().join(SCRIPT),
            &dir.join("scripts/hnroot"),
            0o644,
        )?;
    }
    Ok(PathBuf::from("/").join(rel))
}

/// `chroot TREE mkinitramfs -d CONFDIR -o OUT RELEASE` with a clean environment.
fn mkinitramfs(
    tree: &DebianTree,
    confdir: &Path,
    out_in_tree: &str,
    log: &Path,
) -> Result<(bool, String)> {
    let (status, output) = run_logged(
        Command::new("chroot")
            .arg(&tree.root)
            .args(["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"])
            .arg("mkinitramfs")
            .arg("-d")
            .arg(confdir)
            .args(["-o", out_in_tree, &tree.release]),
        MKINITRAMFS_TIMEOUT,
        log,
    )?;
    Ok((status.success(), output))
}

/// Check an image: listing, extracted bytes, modules.
fn inspect(tree: &DebianTree, image: &Path, init: &Path, scratch: &Path) -> Result<()> {
    let listing = buildenv::run(Command::new("lsinitramfs").arg(image))?;
    let entries: Vec<&str> = listing.lines().map(str::trim).collect();
    for needed in ["init", "scripts/hnroot", INITRAMFS_INIT, "conf/modules"] {
        if !entries.contains(&needed) {
            bail!(
                "{}: no {needed} among its {} entries (lsinitramfs)",
                image.display(),
                entries.len()
            );
        }
    }
    let builtin_path = tree
        .root
        .join("lib/modules")
        .join(&tree.release)
        .join("modules.builtin");
    let builtin = fs::read_to_string(&builtin_path)
        .with_context(|| format!("cannot read {}", builtin_path.display()))?;
    let norm = |s: &str| s.replace('-', "_");
    let is_builtin = |m: &str| {
        builtin.lines().any(|l| {
            let file = l.rsplit('/').next().unwrap_or(l);
            norm(file.split(".ko").next().unwrap_or(file)) == m
        })
    };
    let module_prefix = format!("usr/lib/modules/{}/", tree.release);
    for m in HOOK_MODULES.iter().chain(TEST_CONF_MODULES) {
        let present = entries.iter().any(|e| {
            e.starts_with(&module_prefix)
                && e.rsplit('/')
                    .next()
                    .and_then(|f| f.split(".ko").next().filter(|_| f.contains(".ko")))
                    .is_some_and(|stem| norm(stem) == *m)
        });
        if !present && !is_builtin(m) {
            bail!(
                "{}: module {m} is neither in the image (under {module_prefix}) nor built into \
                 kernel {}",
                image.display(),
                tree.release
            );
        }
    }
    let x = buildenv::fresh_dir(scratch)?;
    buildenv::run(Command::new("unmkinitramfs").arg(image).arg(&x))?;
    // With an early (microcode) archive unmkinitramfs splits into early/ and main/.
    let main = if x.join("main").is_dir() {
        x.join("main")
    } else {
        x.clone()
    };
    let same = |inside: &str, outside: &Path| -> Result<()> {
        let a = fs::read(main.join(inside))
            .with_context(|| format!("cannot read {inside} extracted from {}", image.display()))?;
        let b = fs::read(outside).with_context(|| format!("cannot read {}", outside.display()))?;
        if a != b {
            bail!(
                "{}: {inside} ({} bytes) differs from {} ({} bytes)",
                image.display(),
                a.len(),
                outside.display(),
                b.len()
            );
        }
        Ok(())
    };
    same("scripts/hnroot", &util::root().join(SCRIPT))?;
    same(INITRAMFS_INIT, init)?;
    let conf_modules = fs::read_to_string(main.join("conf/modules"))
        .context("cannot read the extracted conf/modules")?;
    if !conf_modules.lines().any(|l| l.trim() == "loop") {
        bail!(
            "{}: conf/modules does not load loop at boot (force_load):\n{conf_modules}",
            image.display()
        );
    }
    let itools_init =
        fs::read_to_string(main.join("init")).context("cannot read the extracted init")?;
    if !itools_init.contains(". \"/scripts/${BOOT}\"") {
        bail!(
            "{}: /init is not initramfs-tools' (it does not source /scripts/${{BOOT}})",
            image.display()
        );
    }
    fs::remove_dir_all(&x).with_context(|| format!("cannot remove {}", x.display()))?;
    Ok(())
}

/// Build and inspect the images; returns them.
pub fn mkinitramfs_tests(tree: &DebianTree, init: &Path, work: &Path) -> Result<Images> {
    let share = tree.root.join(ITOOLS_SHARE.trim_start_matches('/'));
    let installed_init = tree.root.join(INSTALLED_INIT);
    let mut installed = Installed {
        paths: vec![
            tree.root.join("usr/lib/hnroot"),
            tree.root.join("etc/hnroot-itools"),
        ],
    };
    copy_into(init, &installed_init, 0o755)?;

    // Package layout: /usr/share/initramfs-tools/{hooks,scripts}/hnroot.
    let hook = share.join("hooks/hnroot");
    let script = share.join("scripts/hnroot");
    installed.paths.push(hook.clone());
    installed.paths.push(script.clone());
    copy_into(&util::root().join(HOOK), &hook, 0o755)?;
    copy_into(&util::root().join(SCRIPT), &script, 0o644)?;
    let conf = conf_dir(tree, "package", false)?;
    let package = work.join("initrd-package.img");
    let (ok, out) = mkinitramfs(
        tree,
        &conf,
        "/tmp/hnroot-initrd.img",
        &work.join("mkinitramfs-package.log"),
    )?;
    if !ok {
        bail!("mkinitramfs with hnroot under {ITOOLS_SHARE} failed:\n{out}");
    }
    move_out(tree, "/tmp/hnroot-initrd.img", &package)?;
    inspect(tree, &package, init, &work.join("unpacked"))?;
    fs::remove_file(&hook).with_context(|| format!("cannot remove {}", hook.display()))?;
    fs::remove_file(&script).with_context(|| format!("cannot remove {}", script.display()))?;

    // Administrator layout: CONFDIR/{hooks,scripts}/hnroot.
    let conf = conf_dir(tree, "confdir", true)?;
    let confdir = work.join("initrd-confdir.img");
    let (ok, out) = mkinitramfs(
        tree,
        &conf,
        "/tmp/hnroot-initrd.img",
        &work.join("mkinitramfs-confdir.log"),
    )?;
    if !ok {
        bail!(
            "mkinitramfs with hnroot in CONFDIR {} failed:\n{out}",
            conf.display()
        );
    }
    move_out(tree, "/tmp/hnroot-initrd.img", &confdir)?;
    inspect(tree, &confdir, init, &work.join("unpacked"))?;

    // No hnroot-init: the hook must stop the build and say where it looked.
    fs::remove_file(&installed_init)
        .with_context(|| format!("cannot remove {}", installed_init.display()))?;
    let (ok, out) = mkinitramfs(
        tree,
        &conf,
        "/tmp/hnroot-initrd-bad.img",
        &work.join("mkinitramfs-missing.log"),
    )?;
    let _ = fs::remove_file(tree.root.join("tmp/hnroot-initrd-bad.img"));
    let want = format!("E: hnroot: no executable hnroot-init at /{INSTALLED_INIT}");
    if ok || !out.contains(&want) {
        bail!(
            "mkinitramfs without hnroot-init {}; expected a failure saying `{want}`; output:\n{out}",
            if ok { "succeeded" } else { "failed otherwise" }
        );
    }
    drop(installed);
    Ok(Images { package, confdir })
}

fn move_out(tree: &DebianTree, in_tree: &str, to: &Path) -> Result<()> {
    let from = tree.root.join(in_tree.trim_start_matches('/'));
    if fs::rename(&from, to).is_err() {
        fs::copy(&from, to)
            .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
        fs::remove_file(&from).with_context(|| format!("cannot remove {}", from.display()))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3. Boot in QEMU.

const IMAGE_NAME: &str = "hn-root.img";
const VERSION: &str = "itools-1";
const DATA_MARKER: &str = "itools-data-marker";

/// A disk (ESP, hostpart of `fs` holding `root_image`) whose GRUB boots the image's kernel and
/// initramfs with `extra_cmdline`.
fn build_boot_disk(
    work: &Path,
    name: &str,
    root_image: &Path,
    fs: HostFs,
    extra_cmdline: &str,
) -> Result<PathBuf> {
    let dir = buildenv::fresh_dir(&work.join(name))?;
    let cfg = grubimage::smoke_grub_cfg(&SmokeCfg {
        extra_cmdline: extra_cmdline.to_string(),
        ..SmokeCfg::default()
    });
    let bootx64 = dir.join("BOOTX64.EFI");
    grubimage::build_bootx64(&GrubImageSpec::new(cfg), &dir.join("grub"), &bootx64)?;
    let esp = disk::build_esp(&EspSpec::new(&bootx64), &dir.join("esp.img"))?;
    let mut spec = HostpartSpec::new(fs).image(IMAGE_NAME, root_image);
    spec.files.push(ImageFile::new(
        &format!("data/{DATA_MARKER}"),
        0o644,
        "itools\n",
    ));
    let hostpart = disk::build_hostpart(&spec, &dir.join("hostpart.img"))?;
    let disk = disk::build_disk(
        &[PartSpec::esp(&esp), PartSpec::hostpart(&hostpart.path)],
        &dir.join("disk.img"),
    )?;
    Ok(disk.path)
}

fn re(s: &str) -> Result<Regex> {
    Regex::new(s).with_context(|| format!("boot milestone regex {s:?}"))
}

/// Boot `boot=hnroot` from a hostpart of `fs` to the test init and its poweroff. The
/// filesystem drivers are not loaded by hnroot-init here (initramfs-tools owns the modules):
/// mount(2) has them loaded on demand, which this boot proves for each hostpart type.
fn boot_good(work: &Path, root: &disk::BuiltFs, fs: HostFs, timeout: Duration) -> Result<()> {
    let name = format!("good-{fs}");
    let disk = build_boot_disk(work, &name, &root.path, fs, "boot=hnroot")?;
    let run_dir = work.join("runs").join(&name);
    eprintln!(
        "==> initramfs-tools-test: booting boot=hnroot from a {fs} hostpart (serial log {}/serial.log)",
        run_dir.display()
    );
    let mut vm = Vm::start(&VmSpec::new(
        &format!("initramfs-tools boot=hnroot, {fs} hostpart"),
        &[&disk],
        &run_dir,
    ))?;
    let left = |vm: &Vm| timeout.saturating_sub(vm.elapsed());
    vm.wait_for(&re(r"Loading, please wait")?, left(&vm))?;
    vm.wait_for(&re(r"Begin: Mounting root file system")?, left(&vm))?;
    vm.wait_for(
        &re(&format!(
            r"hnroot: mounted hostpart /dev/vda2 \({fs}, LABEL=hostpart\) rw at /run/hnroot/hostpart"
        ))?,
        left(&vm),
    )?;
    let uuid = regex::escape(&root.uuid.to_string());
    let mounted = vm.wait_for(
        &re(&format!(
            r"hnroot: mounted /dev/loop\d+ \(ext4, UUID={uuid}\) ro at /root"
        ))?,
        left(&vm),
    )?;
    vm.wait_for(&re(r"hnroot: moved hostpart to /root/hostpart")?, left(&vm))?;
    let booted = vm.wait_for(
        &re(r"hnroot-test: booted version=(\S+) uuid=(\S+)")?,
        left(&vm),
    )?;
    if booted.groups[1] != VERSION || booted.groups[2] != root.uuid.to_string() {
        bail!(
            "boot=hnroot from {fs} booted `{}`, expected version={VERSION} uuid={}",
            booted.line.trim(),
            root.uuid
        );
    }
    vm.wait_for(
        &re(&format!(
            r"hnroot-test: root=/dev/loop\d+ backing=\S*/{}",
            regex::escape(IMAGE_NAME)
        ))?,
        left(&vm),
    )?;
    let status =
        crate::bootsmoke::wait_hostpart_data_poweroff(&mut vm, IMAGE_NAME, DATA_MARKER, timeout)?;
    if !status.success() {
        bail!("boot=hnroot from {fs}: QEMU exited with {status} after the guest powered off");
    }
    eprintln!(
        "==> initramfs-tools-test: {fs}: `{}` then `{}` ({:.1} s)",
        mounted.line.trim(),
        booted.line.trim(),
        vm.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The production grub.cfg, relative to the workspace root.
const PRODUCTION_GRUB_CFG: &str = "grub-module/grub.cfg";

/// The production grub.cfg, verbatim, after checking that every `linux` line passes
/// `boot=hnroot` (initramfs-tools needs it; hnroot's own initramfs ignores it).
fn production_cfg_with_boot_hnroot() -> Result<String> {
    let path = util::root().join(PRODUCTION_GRUB_CFG);
    let cfg =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let linux: Vec<&str> = cfg
        .lines()
        .filter(|l| l.trim_start().starts_with("linux (loop)/boot/kernel "))
        .collect();
    if linux.is_empty() {
        bail!(
            "{} has no `linux (loop)/boot/kernel ...` line",
            path.display()
        );
    }
    if let Some(l) = linux
        .iter()
        .find(|l| !l.split_whitespace().any(|w| w == "boot=hnroot"))
    {
        bail!(
            "{}: this linux line lacks boot=hnroot, so an initramfs-tools initramfs would not run hnroot's script: {}",
            path.display(),
            l.trim()
        );
    }
    Ok(cfg)
}

/// `boot=hnroot` through the production chain: Debian's GRUB with hnroot.mod and the
/// production grub.cfg (verbatim), a boot state that commits the image, so GRUB
/// passes `hnroot.hostpart=PARTUUID=` and `hnroot.esp=PARTUUID=` as in the field.
fn boot_production_chain(work: &Path, root: &disk::BuiltFs, timeout: Duration) -> Result<()> {
    let dir = buildenv::fresh_dir(&work.join("production"))?;
    let module = grubmod::build()?;
    grubmod::check_installed(&module.path)?;
    let mut grub = GrubImageSpec::new(production_cfg_with_boot_hnroot()?);
    grub.extra_module_files.push(module.path.clone());
    let bootx64 = dir.join("BOOTX64.EFI");
    grubimage::build_bootx64(&grub, &dir.join("grub"), &bootx64)?;
    let mut esp = EspSpec::new(&bootx64);
    esp.bootstate = Some(
        new_block(&BootState::Committed {
            good: FsUuid::Uuid(root.uuid.0),
        })
        .to_vec(),
    );
    let esp = disk::build_esp(&esp, &dir.join("esp.img"))?;
    let mut host = HostpartSpec::new(HostFs::Ext4).image(IMAGE_NAME, &root.path);
    host.files.push(ImageFile::new(
        &format!("data/{DATA_MARKER}"),
        0o644,
        "itools\n",
    ));
    let hostpart = disk::build_hostpart(&host, &dir.join("hostpart.img"))?;
    let built = disk::build_disk(
        &[PartSpec::esp(&esp), PartSpec::hostpart(&hostpart.path)],
        &dir.join("disk.img"),
    )?;
    let partuuid = built
        .partitions
        .get(1)
        .map(|p| p.partuuid.to_string())
        .context("the production-chain disk has no second partition")?;
    let run_dir = work.join("runs").join("production");
    eprintln!(
        "==> initramfs-tools-test: booting boot=hnroot through hnroot.mod and the production \
         grub.cfg (serial log {}/serial.log)",
        run_dir.display()
    );
    let mut vm = Vm::start(&VmSpec::new(
        "initramfs-tools boot=hnroot, production GRUB",
        &[&built.path],
        &run_dir,
    ))?;
    let left = |vm: &Vm| timeout.saturating_sub(vm.elapsed());
    let uuid = root.uuid.to_string();
    vm.wait_for(&re(r"Loading, please wait")?, left(&vm))?;
    vm.wait_for(
        &re(&format!(
            r"hnroot: cmdline: GRUB booted {} \(UUID {}\), hostpart PARTUUID={}",
            regex::escape(IMAGE_NAME),
            regex::escape(&uuid),
            regex::escape(&partuuid)
        ))?,
        left(&vm),
    )?;
    vm.wait_for(
        &re(&format!(
            r"hnroot: hostpart: found /dev/vda2 \(ext4, LABEL=hostpart, PARTUUID={}\)",
            regex::escape(&partuuid)
        ))?,
        left(&vm),
    )?;
    vm.wait_for(
        &re(&format!(
            r"hnroot: boot state: committed \(good {}\)",
            regex::escape(&uuid)
        ))?,
        left(&vm),
    )?;
    let mounted = vm.wait_for(
        &re(&format!(
            r"hnroot: mounted /dev/loop\d+ \(ext4, UUID={}\) ro at /root",
            regex::escape(&uuid)
        ))?,
        left(&vm),
    )?;
    let booted = vm.wait_for(
        &re(r"hnroot-test: booted version=(\S+) uuid=(\S+)")?,
        left(&vm),
    )?;
    if booted.groups[1] != VERSION || booted.groups[2] != uuid {
        bail!(
            "production chain booted `{}`, expected version={VERSION} uuid={uuid}",
            booted.line.trim()
        );
    }
    vm.wait_for(&re(&regex::escape(DATA_MARKER))?, left(&vm))?;
    vm.wait_for(&re(r"hnroot-test: powering off")?, left(&vm))?;
    let status = vm.wait_exit(left(&vm))?;
    if !status.success() {
        bail!("production chain: QEMU exited with {status} after the guest powered off");
    }
    eprintln!(
        "==> initramfs-tools-test: production chain: `{}` ({:.1} s)",
        mounted.line.trim(),
        vm.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Boot the mkinitramfs image with `boot=hnroot`: through hnroot.mod and the production
/// grub.cfg from an ext4 hostpart, through the smoke grub.cfg from a btrfs hostpart, then once
/// with a hostpart that is not there.
pub fn boot_tests(tree: &DebianTree, initrd: &Path, work: &Path, timeout: Duration) -> Result<()> {
    buildenv::fresh_dir(work)?;
    let root = disk::build_root_image(
        &disk::RootImageSpec::new(VERSION, &tree.vmlinuz, initrd),
        &work.join(IMAGE_NAME),
    )?;
    boot_production_chain(work, &root, timeout)?;
    boot_good(work, &root, HostFs::Btrfs, timeout)?;

    let bad = build_boot_disk(
        work,
        "missing-hostpart",
        &root.path,
        HostFs::Ext4,
        &format!("boot=hnroot hnroot.hostpart=LABEL={MISSING_LABEL} hnroot.timeout=2 panic=1"),
    )?;
    eprintln!("==> initramfs-tools-test: booting with a missing hostpart (serial log {}/runs/missing-hostpart/serial.log)", work.display());
    let mut vm = Vm::start(&VmSpec::new(
        "initramfs-tools missing hostpart",
        &[&bad],
        &work.join("runs/missing-hostpart"),
    ))?;
    let left = |vm: &Vm| timeout.saturating_sub(vm.elapsed());
    let fatal = vm.wait_for(&re(r"hnroot: FATAL: (hostpart: .*)")?, left(&vm))?;
    if !fatal.groups[1].contains(MISSING_LABEL) {
        bail!(
            "the FATAL line does not name the label looked for ({MISSING_LABEL}): {}",
            fatal.line.trim()
        );
    }
    let panic_line = format!(
        "{} {}. Fix it in this shell",
        regex::escape(&format!("hnroot: FATAL: {}", fatal.groups[1])),
        regex::escape(&failure_suffix("/root", 2))
    );
    vm.wait_for(&re(&panic_line)?, left(&vm))?;
    vm.wait_for(
        &re(r"Rebooting automatically due to panic= boot argument")?,
        left(&vm),
    )?;
    let status = vm.wait_exit(left(&vm))?;
    if !status.success() {
        bail!("missing hostpart: QEMU exited with {status} after the guest rebooted");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_events_of_a_persistent_failure_are_bounded() {
        let e = expected_events(Fake::FailAlways, "/root", None);
        let calls = e.iter().filter(|l| l.starts_with("hnroot-init ")).count();
        let panics = e.iter().filter(|l| l.starts_with("panic: ")).count();
        assert_eq!((calls, panics), (ATTEMPTS as usize, ATTEMPTS as usize));
        assert!(e.iter().any(|l| l == "mountroot returned 1"));
        assert!(e[e.len() - 3].contains("Giving up after 3 attempts"));
    }

    #[test]
    fn mounts_under_matches_whole_components() {
        let all = mounts_under(Path::new("/")).unwrap();
        assert!(all.iter().any(|m| m == "/"));
        assert!(mounts_under(Path::new("/no-such-dir-hnroot"))
            .unwrap()
            .is_empty());
    }
}
