//! Debian packages and source packages fetched into the build cache with a private apt
//! configuration (`target/hnroot-build/apt/<suite>/`: its own sources list with `deb` and
//! `deb-src` entries, package lists and download cache). The machine's own apt sources, lists
//! and installed packages are never changed, so a Debian 12 build machine can fetch Debian 13's
//! parts as easily as its own.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};

use crate::buildenv;
use crate::release::PoolFile;

/// The Debian archive.
pub const MIRROR: &str = "http://deb.debian.org/debian";
/// The security archive.
pub const SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";
/// apt's helper that downloads one URL and checks its hash.
const APT_HELPER: &str = "/usr/lib/apt/apt-helper";
/// The archive keyring every Debian machine has.
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// Package lists older than this are refreshed before a version is looked up.
const LISTS_MAX_AGE: Duration = Duration::from_secs(6 * 3600);

/// A private apt configuration for one Debian suite.
#[derive(Debug, Clone)]
pub struct Apt {
    suite: String,
    dir: PathBuf,
}

impl Apt {
    /// The configuration for `suite` (`bookworm`, `trixie`), created on first use.
    pub fn for_suite(suite: &str) -> Result<Apt> {
        let dir = buildenv::build_root().join("apt").join(suite);
        for sub in ["lists/partial", "archives/partial", "parts"] {
            fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("cannot create {}", dir.join(sub).display()))?;
        }
        let sources = format!(
            "deb [signed-by={KEYRING}] {MIRROR} {suite} main\n\
             deb-src [signed-by={KEYRING}] {MIRROR} {suite} main\n\
             deb [signed-by={KEYRING}] {MIRROR} {suite}-updates main\n\
             deb-src [signed-by={KEYRING}] {MIRROR} {suite}-updates main\n\
             deb [signed-by={KEYRING}] {SECURITY_MIRROR} {suite}-security main\n\
             deb-src [signed-by={KEYRING}] {SECURITY_MIRROR} {suite}-security main\n"
        );
        let list = dir.join("sources.list");
        if fs::read_to_string(&list).ok().as_deref() != Some(sources.as_str()) {
            buildenv::write_atomic(&list, sources.as_bytes())?;
            // A changed list makes the old package lists meaningless.
            let _ = fs::remove_file(dir.join("lists/.updated"));
        }
        Ok(Apt {
            suite: suite.to_string(),
            dir,
        })
    }

    /// `apt-get` with this configuration only.
    fn apt_get(&self) -> Command {
        let d = |p: &str| self.dir.join(p).display().to_string();
        let mut cmd = Command::new("apt-get");
        cmd.arg("-q")
            .arg("-o")
            .arg(format!("Dir::Etc::SourceList={}", d("sources.list")))
            .arg("-o")
            .arg(format!("Dir::Etc::SourceParts={}", d("parts")))
            .arg("-o")
            .arg(format!("Dir::State::Lists={}", d("lists")))
            .arg("-o")
            .arg(format!("Dir::Cache={}", d("cache")))
            .arg("-o")
            .arg(format!("Dir::Cache::Archives={}", d("archives")))
            .arg("-o")
            .arg("APT::Sandbox::User=root");
        cmd
    }

    /// Refresh the package lists when they are missing or older than [`LISTS_MAX_AGE`], or
    /// when `force`.
    pub fn update(&self, force: bool) -> Result<()> {
        let stamp = self.dir.join("lists/.updated");
        let fresh = fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age < LISTS_MAX_AGE);
        if fresh && !force {
            return Ok(());
        }
        eprintln!(
            "==> apt ({}): updating the private package lists",
            self.suite
        );
        buildenv::run(self.apt_get().arg("update"))
            .with_context(|| format!("apt-get update for {} (private lists)", self.suite))?;
        fs::write(&stamp, b"").with_context(|| format!("cannot write {}", stamp.display()))?;
        Ok(())
    }

    /// `apt-get source --download-only PACKAGE=VERSION` into `into` (the .dsc and its tarballs,
    /// checked by apt against the signed Sources index). Refreshes the lists once if the version
    /// is not found.
    pub fn download_source(&self, package: &str, version: &str, into: &Path) -> Result<PathBuf> {
        fs::create_dir_all(into).with_context(|| format!("cannot create {}", into.display()))?;
        let spec = format!("{package}={version}");
        self.update(false)?;
        let get = |apt: &Apt| {
            buildenv::run(
                apt.apt_get()
                    .args(["source", "--download-only", &spec])
                    .current_dir(into),
            )
        };
        if get(self).is_err() {
            self.update(true)?;
            get(self).with_context(|| {
                format!(
                    "apt-get source {spec} from {} ({MIRROR}): the archive may no longer carry \
                     this version",
                    self.suite
                )
            })?;
        }
        let upstream = version
            .split_once(':')
            .map_or(version, |(_, v)| v)
            .to_string();
        let dsc = into.join(format!("{package}_{upstream}.dsc"));
        if !dsc.exists() {
            bail!(
                "apt-get source {spec} finished but {} is not there",
                dsc.display()
            );
        }
        Ok(dsc)
    }

    /// `apt-get download PACKAGE=VERSION` into `into`; the path of the .deb.
    pub fn download(&self, package: &str, version: &str, into: &Path) -> Result<PathBuf> {
        fs::create_dir_all(into).with_context(|| format!("cannot create {}", into.display()))?;
        let spec = format!("{package}={version}");
        self.update(false)?;
        let get =
            |apt: &Apt| buildenv::run(apt.apt_get().args(["download", &spec]).current_dir(into));
        if get(self).is_err() {
            self.update(true)?;
            get(self).with_context(|| format!("apt-get download {spec} from {}", self.suite))?;
        }
        let prefix = format!("{package}_");
        let mut debs: Vec<PathBuf> = fs::read_dir(into)
            .with_context(|| format!("cannot list {}", into.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
            })
            .collect();
        debs.sort();
        match debs.as_slice() {
            [one] => Ok(one.clone()),
            [] => bail!(
                "apt-get download {spec} left no {prefix}*.deb in {}",
                into.display()
            ),
            many => bail!(
                "several {prefix}*.deb in {}: {}; expected one",
                into.display(),
                many.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// `apt-cache ARGS...` with this configuration only, on up-to-date lists.
    pub fn cache_query(&self, args: &[&str]) -> Result<String> {
        self.update(false)?;
        let d = |p: &str| self.dir.join(p).display().to_string();
        buildenv::run(
            Command::new("apt-cache")
                .arg("-o")
                .arg(format!("Dir::Etc::SourceList={}", d("sources.list")))
                .arg("-o")
                .arg(format!("Dir::Etc::SourceParts={}", d("parts")))
                .arg("-o")
                .arg(format!("Dir::State::Lists={}", d("lists")))
                .arg("-o")
                .arg(format!("Dir::Cache={}", d("cache")))
                .args(args),
        )
    }

    /// The candidate version of `package` in this suite (`apt-cache policy`).
    pub fn candidate(&self, package: &str) -> Result<String> {
        let out = self.cache_query(&["policy", package])?;
        out.lines()
            .find_map(|l| l.trim().strip_prefix("Candidate:"))
            .map(|v| v.trim().to_string())
            .filter(|v| v != "(none)")
            .with_context(|| format!("no candidate for {package} in {}: {out}", self.suite))
    }
}

/// A file of the archive by its pool path (`/usr/lib/apt/apt-helper download-file`, apt's own
/// downloader, which checks the SHA-256), into `into`; kept when already there with that sum.
/// For versions apt's signed index no longer lists: the sum is what vouches for the file.
pub fn download_pool_file(file: &PoolFile, into: &Path) -> Result<PathBuf> {
    download_pool_path(file.path, file.sha256, into)
}

/// [`download_pool_file`] of `path` with SHA-256 `sha256`.
fn download_pool_path(path: &str, sha256: &str, into: &Path) -> Result<PathBuf> {
    fs::create_dir_all(into).with_context(|| format!("cannot create {}", into.display()))?;
    let name = path
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .with_context(|| format!("pool path {path} names no file"))?;
    let out = into.join(name);
    if out.is_file() && sha256_of(&out)? == sha256 {
        return Ok(out);
    }
    let url = format!("{MIRROR}/{}", path.replace('+', "%2b"));
    buildenv::run(
        Command::new(APT_HELPER)
            .args(["download-file", &url])
            .arg(&out)
            .arg(format!("SHA256:{sha256}")),
    )
    .with_context(|| {
        format!("downloading {url} (SHA-256 {sha256}): the archive may no longer carry it")
    })?;
    let got = sha256_of(&out)?;
    if got != sha256 {
        bail!(
            "{} has SHA-256 {got}, expected {sha256}: not using it",
            out.display()
        );
    }
    Ok(out)
}

/// A source package by the pool path of its `.dsc` (checked against its pinned sum), and the
/// files the `.dsc` lists beside it, each checked against the `.dsc`'s `Checksums-Sha256`.
/// Returns the `.dsc`.
pub fn download_pool_source(dsc: &PoolFile, into: &Path) -> Result<PathBuf> {
    let dsc_path = download_pool_file(dsc, into)?;
    let text = fs::read_to_string(&dsc_path)
        .with_context(|| format!("cannot read {}", dsc_path.display()))?;
    let dir = dsc.path.rsplit_once('/').map_or("", |(d, _)| d);
    let files = dsc_sha256_files(&text);
    if files.is_empty() {
        bail!(
            "{} lists no files under Checksums-Sha256",
            dsc_path.display()
        );
    }
    for (sha256, name) in files {
        download_pool_path(&format!("{dir}/{name}"), &sha256, into)?;
    }
    Ok(dsc_path)
}

/// `(sha256, file name)` of each line of a `.dsc`'s `Checksums-Sha256` field.
fn dsc_sha256_files(dsc: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in dsc.lines() {
        if line.starts_with("Checksums-Sha256:") {
            inside = true;
            continue;
        }
        if inside {
            if !line.starts_with(' ') {
                break;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            if let [sum, _size, name] = words.as_slice() {
                out.push((sum.to_string(), name.to_string()));
            }
        }
    }
    out
}

/// The SHA-256 of a file, hex (`sha256sum`).
pub fn sha256_of(path: &Path) -> Result<String> {
    let out = buildenv::run(Command::new("sha256sum").arg(path))?;
    out.split_whitespace()
        .next()
        .map(str::to_owned)
        .with_context(|| format!("sha256sum printed nothing for {}", path.display()))
}

/// The installed version of a Debian package on this machine.
pub fn installed_version(package: &str) -> Result<String> {
    let v = buildenv::run(Command::new("dpkg-query").args(["-W", "-f=${Version}", package]))?;
    let v = v.trim().to_string();
    if v.is_empty() {
        bail!("{package} is not installed");
    }
    Ok(v)
}

/// The Debian suite of this machine (`VERSION_CODENAME` in `/etc/os-release`).
pub fn debian_suite() -> Result<String> {
    let text = fs::read_to_string("/etc/os-release").context("reading /etc/os-release")?;
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
        .context("/etc/os-release has no VERSION_CODENAME: is this Debian?")
}

/// `dpkg-source -x DSC DIR`: the source tree with Debian's patches applied.
pub fn unpack_source(dsc: &Path, dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    buildenv::run(
        Command::new("dpkg-source")
            .args(["--no-check", "-x"])
            .arg(dsc)
            .arg(dir),
    )
    .with_context(|| format!("unpacking {}", dsc.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dsc_names_its_files_with_their_sums() {
        let dsc = "Format: 3.0 (quilt)\nChecksums-Sha256:\n f3c9 6675608 grub2_2.12.orig.tar.xz\n \
                   4d3c 1123180 grub2_2.12-9+deb13u2.debian.tar.xz\nFiles:\n 60c5 6675608 x\n";
        assert_eq!(
            dsc_sha256_files(dsc),
            [
                ("f3c9".to_string(), "grub2_2.12.orig.tar.xz".to_string()),
                (
                    "4d3c".to_string(),
                    "grub2_2.12-9+deb13u2.debian.tar.xz".to_string()
                )
            ]
        );
        assert!(dsc_sha256_files("Files:\n a 1 b\n").is_empty());
    }
}
