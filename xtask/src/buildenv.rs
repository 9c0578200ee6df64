//! Where the boot-chain builders keep their artifacts (`target/hnroot-build/` under the
//! workspace root, whatever `CARGO_TARGET_DIR` says) and how they run host tools: every tool
//! failure names the command, its exit status and its stderr.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::util;

/// `target/hnroot-build/` in the workspace: the kernel cache and the work trees of boots.
pub fn build_root() -> PathBuf {
    util::root().join("target").join("hnroot-build")
}

/// An empty directory at `path` (removed first if it exists), parents created.
pub fn fresh_dir(path: &Path) -> Result<PathBuf> {
    if path.exists() {
        fs::remove_dir_all(path)
            .with_context(|| format!("cannot remove the old work tree {}", path.display()))?;
    }
    fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(path.to_path_buf())
}

/// Run `cmd`, return its stdout; on failure say which command, how it ended and its stderr.
pub fn run(cmd: &mut Command) -> Result<String> {
    let shown = show(cmd);
    let out = cmd
        .output()
        .with_context(|| format!("cannot start `{shown}` (is it installed? `cargo xtask deps`)"))?;
    if !out.status.success() {
        bail!(
            "`{shown}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `program args...` as a shell would show it, for error messages.
pub fn show(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(
        cmd.get_args()
            .map(|a: &OsStr| a.to_string_lossy().into_owned()),
    );
    parts.join(" ")
}

/// Write `data` to `path` through a temporary file and a rename, so a reader (or a rerun after
/// an interrupted build) never sees half a file.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp-write");
    fs::write(&tmp, data).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    Ok(())
}
