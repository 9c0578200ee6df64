//! Where the harness keeps what it builds (`target/hnroot-build/` under the workspace root,
//! whatever `CARGO_TARGET_DIR` says) and how it runs host tools: every tool failure names the
//! command, its exit status and its output. It never installs anything (`cargo xtask deps`
//! does) and never deletes anything outside the build cache.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The workspace root (the parent of `testkit/`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `target/hnroot-build/` in the workspace: the caches and the work trees of every suite.
pub fn build_root() -> PathBuf {
    workspace_root().join("target").join("hnroot-build")
}

/// Cargo's target directory as cargo itself will use it (`CARGO_TARGET_DIR`, relative to the
/// workspace root, or `target/`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                workspace_root().join(p)
            }
        })
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// An exclusive lock on a shared part of the build cache (`target/hnroot-build/locks/NAME`),
/// held until dropped: `cargo xtask test` runs suites side by side, and two of them must not
/// build the same cached part at once. A lock dies with its process (`flock`).
#[derive(Debug)]
pub struct CacheLock {
    _file: fs::File,
}

/// Take the lock `name`, waiting for another process that holds it.
pub fn lock(name: &str) -> Result<CacheLock> {
    use std::os::fd::AsRawFd;
    let dir = build_root().join("locks");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{name}.lock"));
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    loop {
        // SAFETY: a valid descriptor; flock has no memory effects.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(CacheLock { _file: file });
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
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

/// Run `cmd`, return its stdout; on failure say which command, how it ended, and what it
/// printed (stdout, then stderr).
pub fn run(cmd: &mut Command) -> Result<String> {
    let shown = show(cmd);
    let out = cmd
        .output()
        .with_context(|| format!("cannot start `{shown}` (is it installed? `cargo xtask deps`)"))?;
    if !out.status.success() {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stdout = stdout.trim();
        bail!(
            "`{shown}` failed ({}): {}{}",
            out.status,
            if stdout.is_empty() {
                String::new()
            } else {
                format!("{stdout}\n")
            },
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

/// Run `argv` in the workspace root with its output on the terminal, after a step banner
/// (`==> name: argv`); fail with the step name.
pub fn step(name: &str, argv: &[&str]) -> Result<()> {
    step_env(name, argv, &[])
}

/// [`step`] with extra environment variables.
pub fn step_env(name: &str, argv: &[&str], env: &[(&str, &OsStr)]) -> Result<()> {
    eprintln!("==> {name}: {}", argv.join(" "));
    let (program, args) = argv.split_first().context("empty command")?;
    let started = std::time::Instant::now();
    let status = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("{name}: cannot run {program}"))?;
    if !status.success() {
        bail!("{name} failed ({status}): {}", argv.join(" "));
    }
    eprintln!("<== {name}: {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Run `argv` and return its stdout; fail with its stderr in the message.
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

/// Whether this process runs as root.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
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

/// FNV-1a, 64 bits: cache keys and image digests (not a security boundary).
pub fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Build `out` with `build` unless `out` exists next to a `.key` file holding `key`.
/// Returns whether the cached file was used.
pub fn cached(out: &Path, key: &str, build: impl FnOnce() -> Result<()>) -> Result<bool> {
    let key_file = out.with_extension("key");
    if out.is_file() && fs::read_to_string(&key_file).ok().as_deref() == Some(key) {
        return Ok(true);
    }
    let _ = fs::remove_file(&key_file);
    build()?;
    write_atomic(&key_file, key.as_bytes())?;
    Ok(false)
}

/// Read a whole file, naming it on failure.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn a_failing_tool_is_named_with_its_output() {
        let err = run(Command::new("cp").args(["/nonexistent-hnroot-testkit", "/tmp"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`cp /nonexistent-hnroot-testkit /tmp` failed"),
            "{err}"
        );
        assert!(err.contains("No such file"), "{err}");
    }
}
