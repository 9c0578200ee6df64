//! Run every cargo-fuzz target for a short while (`cargo xtask fuzz [--seconds N]`), installing
//! cargo-fuzz first if it is missing. Stable Rust with RUSTC_BOOTSTRAP=1, as cargo-fuzz needs
//! nightly-only sanitizer flags.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use hnroot_testkit::buildenv;

/// Every target in `fuzz/Cargo.toml`.
pub fn targets(root: &Path) -> Result<Vec<String>> {
    let manifest =
        std::fs::read_to_string(root.join("fuzz/Cargo.toml")).context("read fuzz/Cargo.toml")?;
    let mut out = Vec::new();
    let mut in_bin = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin {
            if let Some(name) = line.strip_prefix("name = ") {
                out.push(name.trim_matches('"').to_owned());
            }
        }
    }
    if out.is_empty() {
        bail!("no [[bin]] targets in fuzz/Cargo.toml");
    }
    Ok(out)
}

fn have_cargo_fuzz() -> bool {
    Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Run each target for `seconds`, as many at once as there are cores (libFuzzer runs on one),
/// after one build of them all; fail when any crashed, printing its last lines.
pub fn run(seconds: u32) -> Result<()> {
    if !have_cargo_fuzz() {
        buildenv::step(
            "install cargo-fuzz",
            &["cargo", "install", "--locked", "cargo-fuzz"],
        )?;
    }
    let root = buildenv::workspace_root();
    let fuzz_dir = root.join("fuzz");
    let status = Command::new("cargo")
        .args(["fuzz", "build"])
        .env("RUSTC_BOOTSTRAP", "1")
        .current_dir(&fuzz_dir)
        .status()
        .context("run cargo fuzz build")?;
    if !status.success() {
        bail!("cargo fuzz build failed ({status})");
    }
    let time = format!("-max_total_time={seconds}");
    let queue = std::sync::Mutex::new(targets(&root)?.into_iter());
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let Some(target) = queue.lock().expect("queue").next() else {
                    return;
                };
                eprintln!("==> fuzz {target} for {seconds} s");
                // libFuzzer's own lines go to the target's log; a crash's are printed.
                let out = Command::new("cargo")
                    .args(["fuzz", "run", &target, "--", &time])
                    .env("RUSTC_BOOTSTRAP", "1")
                    .current_dir(&fuzz_dir)
                    .output();
                let failed = match out {
                    Ok(o) if o.status.success() => None,
                    Ok(o) => {
                        let err = String::from_utf8_lossy(&o.stderr);
                        let lines: Vec<&str> = err.lines().collect();
                        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                        Some(format!(
                            "fuzz target {target} failed ({}); the crashing input is under \
                             fuzz/artifacts/{target}/; its last lines:\n{tail}",
                            o.status
                        ))
                    }
                    Err(e) => Some(format!("cannot run cargo fuzz run {target}: {e}")),
                };
                if let Some(f) = failed {
                    failures.lock().expect("failures").push(f);
                }
            });
        }
    });
    let failures = failures.into_inner().expect("failures");
    if !failures.is_empty() {
        bail!("{}", failures.join("\n"));
    }
    Ok(())
}
