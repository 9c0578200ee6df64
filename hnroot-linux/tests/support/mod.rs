//! What the root-only integration tests of `hnroot-linux` share: whether they can run here, and
//! running a program that must succeed.

use std::path::Path;
use std::process::Command;

/// Whether this test can run: root and `/dev/loop-control` (mount, loop devices). Without them
/// it says so, and the test returns.
pub fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root || !Path::new("/dev/loop-control").exists() {
        eprintln!("SKIPPED: needs root and /dev/loop-control (mount, loop devices)");
        return false;
    }
    true
}

/// Run `argv` (a program and its arguments); panic with its stderr unless it succeeds. Its
/// stdout, trimmed.
pub fn run(argv: &[&str]) -> String {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
