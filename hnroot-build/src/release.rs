//! The Debian releases hnroot is built and tested for (their apt suites; the kernel is never
//! pinned: each release's `linux-image-amd64` names it, `hnroot_testkit::kernel`), and the one
//! GRUB build hnroot ships for all of them ([`GRUB`], pinned: the module is reviewed against
//! its headers). It only describes; fetching and building is [`crate::grub`] and
//! [`crate::grubmod`].

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Result};

/// A Debian release hnroot supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Debian {
    /// Debian 12 bookworm: kernel 6.1, uncompressed kernel modules.
    Bookworm,
    /// Debian 13 trixie: kernel 6.12, xz-compressed kernel modules.
    Trixie,
}

/// A file of Debian's archive fetched by its pool path, checked against the SHA-256 recorded
/// here when the version was chosen (apt's signed index may have moved past it).
#[derive(Clone, Copy, Debug)]
pub struct PoolFile {
    /// Its path under the archive (`pool/main/g/grub2/...`).
    pub path: &'static str,
    /// Its SHA-256, hex.
    pub sha256: &'static str,
}

/// The one GRUB hnroot builds, ships and installs: Debian's `grub2` source package at one
/// version, Debian's patches applied, built here for `x86_64-efi` with `hnroot.mod`
/// ([`crate::grub`]). Every server gets this GRUB, whatever its release's own GRUB is.
#[derive(Clone, Copy, Debug)]
pub struct GrubBuild {
    /// The Debian version of the `grub2` source package (`grub_package_version` in the built
    /// `modinfo.sh`).
    pub version: &'static str,
    /// The source's `.dsc` in the pool; the files it lists are checked against its
    /// `Checksums-Sha256`.
    pub dsc: PoolFile,
}

/// hnroot's GRUB: Debian's `grub2` 2.12-9+deb13u2 (trixie's). Why this build: it is the newest
/// Debian GRUB whose source the archive serves (2.12-9+deb13u4's `.dsc` and `.debian.tar.xz`
/// answer 404), 2.12 reads everything hnroot needs (ext4, btrfs, XFS, FAT; the disk read hook
/// `hnroot.mod` counts its writes with), and its SBAT generations are Debian's current ones.
/// Move to a newer build by changing this entry (and reviewing `grub-module/` against its
/// headers): a GRUB security fix reaches servers as a new hnroot package built from it.
pub const GRUB: GrubBuild = GrubBuild {
    version: "2.12-9+deb13u2",
    dsc: PoolFile {
        path: "pool/main/g/grub2/grub2_2.12-9+deb13u2.dsc",
        sha256: "5d1cda92727de39518a94ce23e7e239077acdfa9a4694e71eba736dbd354391a",
    },
};

impl GrubBuild {
    /// The upstream release as a number, `2.06` -> 206, `2.12` -> 212: what the C code of the
    /// module tests (`HNROOT_GRUB_UPSTREAM`) where GRUB's interfaces changed.
    pub fn upstream_number(&self) -> Result<u32> {
        let upstream = self.upstream();
        let (major, minor) = upstream
            .split_once('.')
            .ok_or_else(|| anyhow::anyhow!("GRUB version {} has no major.minor", self.version))?;
        let major: u32 = major.parse()?;
        let minor: u32 = minor.parse()?;
        if minor >= 100 {
            bail!("GRUB version {}: minor part too large", self.version);
        }
        Ok(major * 100 + minor)
    }

    /// The upstream part of the version (`2.12` of `2.12-9+deb13u2`).
    pub fn upstream(&self) -> &'static str {
        let v = self
            .version
            .split_once(':')
            .map_or(self.version, |(_, v)| v);
        v.split('-').next().unwrap_or(v)
    }
}

impl Debian {
    /// Every supported release, oldest first.
    pub const ALL: [Debian; 2] = [Debian::Bookworm, Debian::Trixie];
    /// The newest stable release: what the suites and the demo use unless told otherwise.
    pub const NEWEST: Debian = Debian::Trixie;

    /// The release number (`12`).
    pub fn number(self) -> u32 {
        match self {
            Debian::Bookworm => 12,
            Debian::Trixie => 13,
        }
    }

    /// The apt suite (`bookworm`).
    pub fn suite(self) -> &'static str {
        match self {
            Debian::Bookworm => "bookworm",
            Debian::Trixie => "trixie",
        }
    }
}

/// The release of the build machine (`VERSION_CODENAME` in `/etc/os-release`).
pub fn this_machine() -> Result<Debian> {
    crate::apt::debian_suite()?.parse()
}

impl fmt::Display for Debian {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Debian {} ({})", self.number(), self.suite())
    }
}

impl FromStr for Debian {
    type Err = anyhow::Error;

    /// `12`, `13`, `bookworm` or `trixie`, or how the release displays itself (`Debian 13
    /// (trixie)`: clap turns a `default_value_t` into text and parses that back).
    fn from_str(s: &str) -> Result<Debian> {
        Debian::ALL
            .into_iter()
            .find(|d| s == d.number().to_string() || s == d.suite() || s == d.to_string())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown Debian release {s:?}: hnroot supports {}",
                    Debian::ALL
                        .iter()
                        .map(|d| format!("{} ({})", d.number(), d.suite()))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_parse_by_number_and_name() {
        assert_eq!("12".parse::<Debian>().unwrap(), Debian::Bookworm);
        assert_eq!("trixie".parse::<Debian>().unwrap(), Debian::Trixie);
        let err = "14".parse::<Debian>().unwrap_err().to_string();
        assert!(err.contains("12 (bookworm), 13 (trixie)"), "{err}");
        assert_eq!(Debian::NEWEST, *Debian::ALL.iter().max().unwrap());
    }

    #[test]
    fn the_grub_build_is_numbered_and_its_source_pinned() {
        assert_eq!(GRUB.upstream(), "2.12");
        assert_eq!(GRUB.upstream_number().unwrap(), 212);
        assert!(GRUB
            .dsc
            .path
            .ends_with(&format!("/grub2_{}.dsc", GRUB.version)));
        assert!(
            GRUB.dsc.sha256.len() == 64 && GRUB.dsc.sha256.bytes().all(|b| b.is_ascii_hexdigit())
        );
    }
}
