//! Small helpers for running commands with a visible step name.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The workspace root (the parent of `xtask/`).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Run `argv` in the workspace root, echoing a step banner; fail with the step name.
pub fn step(name: &str, argv: &[&str]) -> Result<()> {
    step_env(name, argv, &[])
}

/// [`step`] with extra environment variables.
pub fn step_env(name: &str, argv: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Result<()> {
    eprintln!("==> {name}: {}", argv.join(" "));
    let (program, args) = argv.split_first().context("empty command")?;
    let status = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(root())
        .status()
        .with_context(|| format!("{name}: cannot run {program}"))?;
    if !status.success() {
        bail!("{name} failed ({status}): {}", argv.join(" "));
    }
    Ok(())
}

/// Run a command and return its stdout; fail with stderr in the message.
pub fn output(argv: &[&str]) -> Result<String> {
    let (program, args) = argv.split_first().context("empty command")?;
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
