//! One line per step, to the kernel log (`/dev/kmsg`) and the console, always prefixed
//! `hnroot: ` so a person at a serial console, `journalctl -k` and the scenario tests see the
//! same stable text. Logging never fails the boot: a sink that cannot be written is dropped.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;

/// Severity, as the kernel log's priorities.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Level {
    /// `KERN_ERR`.
    Error = 3,
    /// `KERN_WARNING`.
    Warning = 4,
    /// `KERN_INFO`.
    Info = 6,
}

struct Sinks {
    kmsg: Option<File>,
    console: Option<File>,
    stderr: bool,
    /// The kernel itself echoes kernel-log records below this level to the console
    /// (`/proc/sys/kernel/printk`, first field); such lines are not written there twice.
    console_loglevel: u8,
}

static SINKS: Mutex<Sinks> = Mutex::new(Sinks {
    kmsg: None,
    console: None,
    stderr: true,
    console_loglevel: 0,
});

/// The console log level, or 0 (the kernel echoes nothing) if unknown.
fn console_loglevel() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/printk")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// Open `/dev/kmsg` and, when `console` is true, `/dev/console` (PID 1 in a bare initramfs);
/// otherwise lines go to standard error (under initramfs-tools, which owns the console).
pub fn open(console: bool) {
    let kmsg = OpenOptions::new().write(true).open("/dev/kmsg").ok();
    let console_file = if console {
        OpenOptions::new().write(true).open("/dev/console").ok()
    } else {
        None
    };
    if let Ok(mut sinks) = SINKS.lock() {
        sinks.stderr = console_file.is_none();
        sinks.kmsg = kmsg;
        sinks.console = console_file;
        sinks.console_loglevel = console_loglevel();
    }
}

/// Write one line.
pub fn line(level: Level, args: fmt::Arguments<'_>) {
    let text = format!("hnroot: {args}");
    let Ok(mut sinks) = SINKS.lock() else { return };
    let mut echoed_by_kernel = false;
    if let Some(kmsg) = sinks.kmsg.as_mut() {
        // One write per record; the kernel splits nothing.
        if kmsg
            .write_all(format!("<{}>{text}\n", level as u8).as_bytes())
            .is_ok()
        {
            echoed_by_kernel = (level as u8) < sinks.console_loglevel;
        } else {
            sinks.kmsg = None;
        }
    }
    if !echoed_by_kernel {
        if let Some(console) = sinks.console.as_mut() {
            if console.write_all(format!("{text}\n").as_bytes()).is_err() {
                sinks.console = None;
                sinks.stderr = true;
            }
        }
    }
    if sinks.stderr {
        let _ = writeln!(std::io::stderr(), "{text}");
    }
}

/// `hnroot: ...` at info level.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::line($crate::log::Level::Info, format_args!($($arg)*)) };
}

/// `hnroot: ...` at warning level.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::line($crate::log::Level::Warning, format_args!($($arg)*)) };
}

/// `hnroot: ...` at error level.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::line($crate::log::Level::Error, format_args!($($arg)*)) };
}
