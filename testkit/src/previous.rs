//! The previous hnroot, built from a pinned older commit of this repository, for the loader's
//! compatibility contract: a disk as that commit's own `disk` command makes it (its GRUB with its
//! `hnroot.mod` and `grub.cfg` on the ESP, its kernel, `hnroot-init` and test images on hostpart,
//! `hn-root.img` = its `v1` committed). The commit's tree comes out of this repository's own
//! history (`git archive`), is built in `target/hnroot-build/previous/<commit>/` with its own
//! cargo target directory, and the disk is cached there; the apt lists and kernels it fetches
//! are shared with this build's cache (read-mostly caches, keyed by version). It never touches
//! the machine's packages.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::buildenv;

/// The commit whose hnroot is "the previous one": the last before hnroot built its own GRUB
/// (its loader is Debian 13's GRUB 2.12-9+deb13u2 with that commit's `hnroot.mod`, without a
/// version record; its boot-state format is 1).
pub const PREVIOUS_COMMIT: &str = "7c37741c1d817d01fea7621ecc7140e8baf25108";

/// The Debian release the previous disk boots (its GRUB and kernel).
pub const PREVIOUS_DEBIAN: &str = "13";

/// Caches of this build the previous tree's build shares (fetched by version, never changed in
/// place).
const SHARED_CACHES: &[&str] = &["apt", "kernel"];

/// The previous commit's disk: `v1` committed as `hn-root.img`, its loader on the ESP. Built on
/// first use (several minutes: the commit's workspace, its GRUB module and image), then cached.
pub fn disk() -> Result<PathBuf> {
    let _lock = buildenv::lock("previous")?;
    let dir = buildenv::build_root()
        .join("previous")
        .join(PREVIOUS_COMMIT);
    let out = dir.join("disk.img");
    let stamp = dir.join("disk.done");
    if out.is_file() && stamp.is_file() {
        return Ok(out);
    }
    let src = buildenv::fresh_dir(&dir.join("src"))?;
    eprintln!(
        "==> the previous hnroot ({}): its tree from git, its disk built by its own `disk` \
         command (once)",
        &PREVIOUS_COMMIT[..7]
    );
    let archive = Command::new("git")
        .arg("-C")
        .arg(buildenv::workspace_root())
        .args(["archive", "--format=tar", PREVIOUS_COMMIT])
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start git archive")?;
    let stdout = archive.stdout.context("git archive has no output")?;
    let status = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(&src)
        .stdin(stdout)
        .status()
        .context("cannot start tar")?;
    if !status.success() {
        bail!(
            "unpacking commit {PREVIOUS_COMMIT} of {} failed ({status}): is the clone's history \
             complete (not shallow)?",
            buildenv::workspace_root().display()
        );
    }
    let cache = src.join("target/hnroot-build");
    fs::create_dir_all(&cache)?;
    for name in SHARED_CACHES {
        let ours = buildenv::build_root().join(name);
        fs::create_dir_all(&ours)?;
        std::os::unix::fs::symlink(&ours, cache.join(name))
            .with_context(|| format!("linking the {name} cache into {}", cache.display()))?;
    }
    let partial = dir.join("disk.img.partial");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let log = dir.join("build.log");
    let log_file = fs::File::create(&log)?;
    let status = Command::new(&cargo)
        .args([
            "run",
            "--quiet",
            "-p",
            "hnroot-system-tests",
            "--bin",
            "disk",
            "--",
            "--debian",
            PREVIOUS_DEBIAN,
            "--out",
        ])
        .arg(&partial)
        .current_dir(&src)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_MANIFEST_DIR")
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .status()
        .with_context(|| format!("cannot run {cargo} in {}", src.display()))?;
    if !status.success() {
        let text = fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        bail!(
            "the previous hnroot's disk command failed ({status}); log {}:\n{}",
            log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    fs::rename(&partial, &out)?;
    fs::write(&stamp, PREVIOUS_COMMIT)?;
    // The disk is what is kept; the tree and its build are not needed again (the links to the
    // shared caches are removed as links).
    fs::remove_dir_all(&src).with_context(|| format!("cannot remove {}", src.display()))?;
    Ok(out)
}

/// Where partition `n` of the raw GPT disk `disk` starts, in bytes (`sfdisk --json`).
pub fn partition_offset(disk: &Path, n: usize) -> Result<u64> {
    let json = buildenv::run(Command::new("sfdisk").arg("--json").arg(disk))?;
    let value: serde_json::Value = serde_json::from_str(&json)
        .with_context(|| format!("sfdisk --json {}: {json}", disk.display()))?;
    let table = &value["partitiontable"];
    let sector = table["sectorsize"].as_u64().unwrap_or(512);
    let start = table["partitions"]
        .get(n.saturating_sub(1))
        .and_then(|p| p["start"].as_u64())
        .with_context(|| format!("{} has no partition {n}", disk.display()))?;
    Ok(start * sector)
}

/// Copy `file` on the FAT ESP (partition 1) of the raw disk `disk` out to `out` (mtools).
pub fn esp_copy_out(disk: &Path, file: &str, out: &Path) -> Result<()> {
    let offset = partition_offset(disk, 1)?;
    let _ = fs::remove_file(out);
    buildenv::run(
        Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-n")
            .arg("-i")
            .arg(format!("{}@@{offset}", disk.display()))
            .arg(format!("::{file}"))
            .arg(out),
    )?;
    Ok(())
}

/// Copy `from` onto the FAT ESP (partition 1) of the raw disk `disk` as `file` (mtools).
pub fn esp_copy_in(disk: &Path, from: &Path, file: &str) -> Result<()> {
    let offset = partition_offset(disk, 1)?;
    buildenv::run(
        Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-o")
            .arg("-i")
            .arg(format!("{}@@{offset}", disk.display()))
            .arg(from)
            .arg(format!("::{file}")),
    )?;
    Ok(())
}
