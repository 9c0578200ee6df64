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

/// Run each target for `seconds`; fail on the first crash (the artifact path is in its output).
pub fn run(seconds: u32) -> Result<()> {
    if !have_cargo_fuzz() {
        buildenv::step(
            "install cargo-fuzz",
            &["cargo", "install", "--locked", "cargo-fuzz"],
        )?;
    }
    let root = buildenv::workspace_root();
    let time = format!("-max_total_time={seconds}");
    for target in targets(&root)? {
        eprintln!("==> fuzz {target} for {seconds} s");
        let status = Command::new("cargo")
            .args(["fuzz", "run", &target, "--", &time])
            .env("RUSTC_BOOTSTRAP", "1")
            .current_dir(root.join("fuzz"))
            .status()
            .with_context(|| format!("run cargo fuzz run {target}"))?;
        if !status.success() {
            bail!("fuzz target {target} failed ({status}); the crashing input is under fuzz/artifacts/{target}/");
        }
    }
    Ok(())
}
