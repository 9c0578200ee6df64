//! `hnroot-init`: as `/init` of hnroot's initramfs (PID 1) it runs the whole early boot and
//! switches root; `hnroot-init mount-root ROOTMNT` does the same up to a mounted root at
//! `ROOTMNT`, for initramfs-tools' `mountroot` (`boot=hnroot`) and dracut's module (a mount hook,
//! or a service before `initrd-root-fs.target` under systemd).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use hnroot_init::boot::{prepare, Env};
use hnroot_init::{after_failure, error, info, log, newroot, switch_root};
use hnroot_linux::mounts;

const USAGE: &str = "usage: hnroot-init            (as PID 1 in hnroot's initramfs)
       hnroot-init mount-root ROOTMNT   (initramfs-tools, dracut: mount the image at ROOTMNT)
       hnroot-init --version";

fn release() -> String {
    // SAFETY: zeroed utsname is a valid out-buffer.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    if unsafe { libc::uname(&mut u) } != 0 {
        return String::new();
    }
    // SAFETY: the kernel NUL-terminates `release`.
    unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

fn early_mounts() {
    let api: [(&str, &str, &str, libc::c_ulong, Option<&str>); 4] = [
        (
            "devtmpfs",
            "/dev",
            "devtmpfs",
            libc::MS_NOSUID,
            Some("mode=0755"),
        ),
        (
            "proc",
            "/proc",
            "proc",
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            None,
        ),
        (
            "sysfs",
            "/sys",
            "sysfs",
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            None,
        ),
        (
            "tmpfs",
            "/run",
            "tmpfs",
            libc::MS_NOSUID | libc::MS_NODEV,
            Some("mode=0755"),
        ),
    ];
    for (source, target, fstype, flags, data) in api {
        let _ = mounts::mkdir_p(Path::new(target));
        if mounts::is_mount_point(Path::new(target)) {
            continue;
        }
        if let Err(e) = mounts::mount(
            Path::new(source),
            Path::new(target),
            Some(fstype),
            flags,
            data,
        ) {
            // Logging may not work yet; the console is the kernel's.
            eprintln!("hnroot: {e}");
        }
    }
}

/// `/dev/kmsg` rate-limits writers; every step's line must reach the kernel log, so lift the
/// limit while we run and put the previous setting back before the real init starts.
const PRINTK_DEVKMSG: &str = "/proc/sys/kernel/printk_devkmsg";

/// As PID 1: every argument the kernel passed (words of its command line without `=` that it
/// does not know, like `single`, `emergency` or `1`) goes on to the image's init, which knows
/// what they mean.
fn pid1(init_args: &[String]) -> ! {
    early_mounts();
    let devkmsg = std::fs::read_to_string(PRINTK_DEVKMSG).ok();
    let _ = std::fs::write(PRINTK_DEVKMSG, "on\n");
    log::open(true);
    let release = release();
    info!(
        "hnroot-init {} starting as PID 1 on Linux {release}",
        env!("CARGO_PKG_VERSION")
    );
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_else(|e| {
        error!("cannot read /proc/cmdline ({e}): using defaults");
        String::new()
    });
    let env = Env::initramfs(&release);
    match prepare(&env, &cmdline) {
        Ok(prepared) => {
            let (image, uuid) = prepared.mounted;
            info!(
                "switch_root to {} ({image}, UUID {uuid}), exec {}",
                env.newroot.display(),
                prepared.init
            );
            if let Some(previous) = &devkmsg {
                let _ = std::fs::write(PRINTK_DEVKMSG, previous);
            }
            let e = switch_root::switch_root(&env.newroot, &prepared.init, init_args);
            // Past the point of no return: the initramfs is gone, nothing can be recorded.
            error!("FATAL: switch_root: {e}");
            after_failure::stop(&e.to_string())
        }
        Err(failure) => after_failure::handle(&failure),
    }
}

fn mount_root(rootmnt: &Path) -> ExitCode {
    let devkmsg = std::fs::read_to_string(PRINTK_DEVKMSG).ok();
    let _ = std::fs::write(PRINTK_DEVKMSG, "on\n");
    let code = mount_root_logged(rootmnt);
    if let Some(previous) = &devkmsg {
        let _ = std::fs::write(PRINTK_DEVKMSG, previous);
    }
    code
}

fn mount_root_logged(rootmnt: &Path) -> ExitCode {
    log::open(false);
    let cmdline = match std::fs::read_to_string("/proc/cmdline") {
        Ok(c) => c,
        Err(e) => {
            error!("cannot read /proc/cmdline: {e}");
            return ExitCode::FAILURE;
        }
    };
    let env = Env {
        newroot: rootmnt.to_owned(),
        hostpart_mnt: PathBuf::from("/run/hnroot/hostpart"),
        modules_dir: None,
        ..Env::initramfs(&release())
    };
    info!(
        "hnroot-init {} mount-root {} on Linux {}",
        env!("CARGO_PKG_VERSION"),
        rootmnt.display(),
        release()
    );
    newroot::private_scratch(&env.scratch);
    match prepare(&env, &cmdline) {
        Ok(p) => {
            let (image, uuid) = p.mounted;
            info!(
                "mounted {image} (UUID {uuid}) at {}; init {}",
                rootmnt.display(),
                p.init
            );
            ExitCode::SUCCESS
        }
        Err(failure) => {
            // Not PID 1: reboot into another image if the core says one will boot; otherwise
            // initramfs-tools' panic() (its shell) takes over after we exit.
            error!("FATAL: {}", failure.message());
            after_failure::reboot_into_another_image(&failure);
            hnroot_init::boot::unwind(&env);
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if std::process::id() == 1 {
        // PID 1 never exits, whatever it was given.
        pid1(&args);
    }
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["mount-root", rootmnt] => mount_root(Path::new(rootmnt)),
        ["--version"] => {
            println!("hnroot-init {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
