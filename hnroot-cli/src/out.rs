//! Output that never panics: every line the CLI prints goes through [`line`] (standard output)
//! or [`note`] (standard error). A reader that goes away (`| head`) or a full disk
//! (`> /dev/full`) never interrupts what the command is doing — a stage or a mark-good already
//! under way finishes — and the command's exit status says it afterwards ([`finish`]).

use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Mutex;

/// The first error writing standard output, if any; nothing more is written after it.
static STDOUT_ERROR: Mutex<Option<io::ErrorKind>> = Mutex::new(None);

/// Write one line to standard output (unless an earlier write failed).
pub fn line(args: fmt::Arguments<'_>) {
    let Ok(mut failed) = STDOUT_ERROR.lock() else {
        return;
    };
    if failed.is_some() {
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
