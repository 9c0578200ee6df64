//! Output that never panics: every line the CLI prints goes through [`line`] (standard output)
//! or [`note`] (standard error). A reader that goes away (`| head`) or a full disk
//! (`> /dev/full`) never interrupts what the command is doing — a stage or a mark-good already
//! under way finishes — and the command's exit status says it afterwards ([`finish`]). So does
//! a standard output that was closed when the command started (`>&-`): the Rust runtime puts
//! `/dev/null` there before `main`, so that is looked at earlier, as the program is loaded.

use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The first error writing standard output, if any; nothing more is written after it.
static STDOUT_ERROR: Mutex<Option<io::ErrorKind>> = Mutex::new(None);

/// Standard output was closed when the program started.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Runs as the program is loaded, before the Rust runtime reopens a closed standard output on
/// `/dev/null` (which would make every line vanish with success).
extern "C" fn note_closed_stdout() {
    // SAFETY: F_GETFD on a descriptor number reads only the descriptor table.
    if unsafe { libc::fcntl(libc::STDOUT_FILENO, libc::F_GETFD) } < 0 {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
    }
}

#[used]
#[link_section = ".init_array"]
static NOTE_CLOSED_STDOUT: extern "C" fn() = note_closed_stdout;

/// Write one line to standard output (unless an earlier write failed, or it was closed).
pub fn line(args: fmt::Arguments<'_>) {
    let Ok(mut failed) = STDOUT_ERROR.lock() else {
        return;
    };
    if failed.is_some() {
        return;
    }
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        *failed = Some(io::ErrorKind::NotConnected);
        return;
    }
    let stdout = io::stdout();
    let mut lock = stdout.lock();
    if let Err(e) = lock
        .write_fmt(args)
        .and_then(|()| lock.write_all(b"\n"))
        .and_then(|()| lock.flush())
    {
        *failed = Some(e.kind());
    }
}

/// Write one line to standard error (errors there have nowhere to go).
pub fn note(args: fmt::Arguments<'_>) {
    let stderr = io::stderr();
    let mut lock = stderr.lock();
    let _ = lock.write_fmt(args).and_then(|()| lock.write_all(b"\n"));
}

/// The exit status: `code`, unless standard output failed for another reason than its reader
/// going away, which is then said on standard error and fails the command.
pub fn finish(code: ExitCode) -> ExitCode {
    let failed = STDOUT_ERROR.lock().ok().and_then(|f| *f);
    match failed {
        None | Some(io::ErrorKind::BrokenPipe) => code,
        Some(io::ErrorKind::NotConnected) => {
            note(format_args!(
                "hnroot: standard output is closed: nothing of its output was written; what the \
                 command did is done (see `hnroot status`)"
            ));
            ExitCode::from(1)
        }
        Some(kind) => {
            note(format_args!(
                "hnroot: writing standard output failed ({}): its output is incomplete; what \
                 the command did is done (see `hnroot status`)",
                io::Error::from(kind)
            ));
            ExitCode::from(1)
        }
    }
}

/// `say!("...")`: one line on standard output.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::out::line(format_args!($($arg)*)) };
}

/// `warn!("...")`: one line on standard error.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::out::note(format_args!($($arg)*)) };
}
