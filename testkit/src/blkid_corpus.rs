//! util-linux's blkid test corpus, the behavioural reference of hnroot's probes: the images
//! and expected outputs of Debian's `util-linux` source package at the version installed on
//! this machine (`tests/ts/blkid/images-fs`, `tests/ts/blkid/images-pt`,
//! `tests/expected/blkid`), fetched with `apt-get source` and cached under
//! `target/hnroot-build/blkid-corpus/util-linux-<version>/`. `cargo xtask test` hands its path to
//! the workspace tests in [`ENV`]; `hnroot-core/tests/probe_corpus.rs` reads it.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::apt::{self, Apt};
use crate::buildenv;

/// The environment variable the corpus tests read: the corpus directory.
pub const ENV: &str = "HNROOT_BLKID_CORPUS";
/// Set by `cargo xtask test`: a missing corpus is then a failure, not a skip.
pub const REQUIRE_ENV: &str = "HNROOT_REQUIRE_BLKID_CORPUS";
/// Written last into a complete corpus directory; holds the util-linux version.
const STAMP: &str = ".complete";
/// The three parts of the corpus: (path in the source tree, directory in the cache).
const PARTS: [(&str, &str); 3] = [
    ("tests/ts/blkid/images-fs", "images-fs"),
    ("tests/ts/blkid/images-pt", "images-pt"),
    ("tests/expected/blkid", "expected"),
];

/// The corpus for the installed util-linux, fetched if it is not cached yet.
pub fn fetch() -> Result<PathBuf> {
    let version = apt::installed_version("util-linux")?;
    let base = buildenv::build_root().join("blkid-corpus");
    let dir = base.join(format!("util-linux-{version}"));
    if fs::read_to_string(dir.join(STAMP)).ok().as_deref() == Some(version.as_str()) {
        return Ok(dir);
    }
    eprintln!("==> blkid corpus: fetching util-linux {version}'s test images (apt-get source)");
    let download = base.join("download");
    let apt = Apt::for_suite(&apt::debian_suite()?)?;
    let dsc = apt.download_source("util-linux", &version, &download)?;
    let tree = base.join("source");
    apt::unpack_source(&dsc, &tree)?;
    let staging = base.join("staging");
    buildenv::fresh_dir(&staging)?;
    for (from, to) in PARTS {
        let src = tree.join(from);
        if !src.is_dir() {
            bail!(
                "util-linux {version}'s source has no {from}: looked in {}",
                tree.display()
            );
        }
        copy_dir(&src, &staging.join(to))?;
    }
    fs::write(staging.join(STAMP), &version).context("writing the corpus stamp")?;
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    fs::rename(&staging, &dir)
        .with_context(|| format!("cannot move {} to {}", staging.display(), dir.display()))?;
    fs::remove_dir_all(&tree).with_context(|| format!("cannot remove {}", tree.display()))?;
    fs::remove_dir_all(&download)
        .with_context(|| format!("cannot remove {}", download.display()))?;
    let count = |d: &str| fs::read_dir(dir.join(d)).map(|r| r.count()).unwrap_or(0);
    eprintln!(
        "    {}: {} filesystem images, {} partition-table images, {} expected outputs",
        dir.display(),
        count("images-fs"),
        count("images-pt"),
        count("expected")
    );
    Ok(dir)
}

/// Copy the regular files of `from` into a new directory `to` (the corpus is flat).
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in fs::read_dir(from).with_context(|| format!("cannot list {}", from.display()))? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_file() {
            fs::copy(&path, to.join(entry.file_name()))
                .with_context(|| format!("cannot copy {}", path.display()))?;
        }
    }
    Ok(())
}
