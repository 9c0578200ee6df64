//! Part 1: the boot script in a fake root, the way initramfs-tools' `/init` runs it, under both
//! shells and both `functions`/`local`, against fake `hnroot-init`s and the real one. It runs
//! nothing outside the chroot and its own PID namespace.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use hnroot_testkit::{buildenv, busybox};

use crate::{
    copy_into, run_logged, write, ATTEMPTS, FAKE_ROOT_TIMEOUT, INITRAMFS_INIT,
    INITRAMFS_TOOLS_SHARE, KLIBC_BIN, KLIBC_LIB_DIR, SCRIPT,
};

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
# Written by cargo xtask initramfs-tools-test (tests/src/bin/initramfs-tools-test/fake_root.rs): what initramfs-tools' /init
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
	echo "hnroot: after failure: hostpart or the booted image is unknown: nothing to fall back to" >&2
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
            copy_into(Path::new(busybox::BUSYBOX), &dir.join("bin/busybox"), 0o755)?;
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
                    &Path::new(INITRAMFS_TOOLS_SHARE).join("scripts").join(f),
                    &dir.join("scripts").join(f),
                    0o644,
                )?;
            }
        }
    }
    copy_into(
        &buildenv::workspace_root().join(SCRIPT),
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
    if !buildenv::is_root() {
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

pub(crate) fn failure_suffix(rootmnt: &str, status: u32) -> String {
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
pub(crate) fn tests(work: &Path, init: &Path) -> Result<usize> {
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
}
