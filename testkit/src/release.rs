//! The Debian releases hnroot is built and tested for, and what each one's parts are: its apt
//! suite, the GRUB build `hnroot.mod` is compiled for (pinned: the module must be reviewed
//! against each new GRUB's headers), and where that GRUB comes from. The kernel is never
//! pinned: each release's `linux-image-amd64` names it ([`crate::kernel`]). It only describes;
//! fetching and building is [`crate::grubmod`], [`crate::grubbin`] and [`crate::kernel`].

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Result};

/// A Debian release hnroot supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Debian {
    /// Debian 12 bookworm: GRUB 2.06, kernel 6.1, uncompressed kernel modules. The build
    /// machine's own release.
    Bookworm,
    /// Debian 13 trixie: GRUB 2.12, kernel 6.12, xz-compressed kernel modules.
    Trixie,
}

/// A file of Debian's archive fetched by its pool path when apt's signed index no longer lists
/// its version, checked against the SHA-256 recorded here when the version was chosen.
#[derive(Clone, Copy, Debug)]
pub struct PoolFile {
    /// Its path under the archive (`pool/main/g/grub2/...`).
    pub path: &'static str,
    /// Its SHA-256, hex.
    pub sha256: &'static str,
}

/// The GRUB build of a release that `hnroot.mod` is built for.
#[derive(Clone, Copy, Debug)]
pub struct GrubBuild {
    /// The Debian version of the `grub2` source package and of `grub-efi-amd64-bin`
    /// (`grub_package_version` in its `modinfo.sh`).
    pub version: &'static str,
    /// Whether the machine's own installed `grub-efi-amd64-bin` is this build (the build
    /// machine's release), rather than a package unpacked into the cache.
    pub installed: bool,
    /// The pool's files of this build, for when apt's index has moved past this version
    /// (`None`: apt's index is the only way, and must list it).
    pub pool: Option<GrubPool>,
}

/// A GRUB build's files in Debian's pool.
#[derive(Clone, Copy, Debug)]
pub struct GrubPool {
    /// The `grub2` source's `.dsc` (the module is built against it).
    pub dsc: PoolFile,
    /// `grub-efi-amd64-bin`: the modules images are built from.
    pub bin: PoolFile,
    /// What else a Debian tree of the release needs to have this GRUB installed
    /// (`grub-efi-amd64-bin` depends on `grub-common` of its exact version, and on
    /// `grub-efi-amd64-unsigned`, which does too): the distro suite installs the three over
    /// the archive's newer build, so that the tree's GRUB is the one the module fits.
    pub tree: [PoolFile; 2],
}

impl GrubPool {
    /// The packages that make a tree's GRUB this build.
    pub fn tree_debs(&self) -> [PoolFile; 3] {
        [self.tree[0], self.bin, self.tree[1]]
    }
}

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

    /// The GRUB build `hnroot.mod` is built for on this release.
    ///
    /// Debian 13: the archive's index lists `grub2` 2.12-9+deb13u4, but the archive this project
    /// builds from does not serve that version's source package (its `.dsc` and
    /// `.debian.tar.xz` answer 404), so the module could not be built from the source of the
    /// GRUB it would be loaded into. 2.12-9+deb13u2 is the newest trixie build whose source
    /// and `grub-efi-amd64-bin` are both there; they are fetched from the pool and checked
    /// against the sums below. Move to a newer build by changing this entry once its source
    /// can be fetched (then apt's index vouches for it and `pool` can be `None`).
    pub fn grub(self) -> GrubBuild {
        match self {
            Debian::Bookworm => GrubBuild {
                version: "2.06-13+deb12u2",
                installed: true,
                pool: None,
            },
            Debian::Trixie => GrubBuild {
                version: "2.12-9+deb13u2",
                installed: false,
                pool: Some(GrubPool {
                    dsc: PoolFile {
                        path: "pool/main/g/grub2/grub2_2.12-9+deb13u2.dsc",
                        sha256: "5d1cda92727de39518a94ce23e7e239077acdfa9a4694e71eba736dbd354391a",
                    },
                    bin: PoolFile {
                        path: "pool/main/g/grub2/grub-efi-amd64-bin_2.12-9+deb13u2_amd64.deb",
                        sha256: "d486d62c83aa197f83c1dd0560ffd96d91c896f4d58485164eb7e1623e7bfde2",
                    },
                    tree: [
                        PoolFile {
                            path: "pool/main/g/grub2/grub-common_2.12-9+deb13u2_amd64.deb",
                            sha256:
                                "a59d34a52e98450165ffc05b75886e139ad77b9d851d25b11eaa973cbdcb3bdd",
                        },
                        PoolFile {
                            path:
                                "pool/main/g/grub2/grub-efi-amd64-unsigned_2.12-9+deb13u2_amd64.deb",
                            sha256:
                                "f30a4ab589f70af74bea89df37f538ad2faa7c6c41b2e7fa3b54a8fb81bf4193",
                        },
                    ],
                }),
            },
        }
    }

    /// The release whose GRUB build is `version`, if hnroot builds for it.
    pub fn with_grub(version: &str) -> Option<Debian> {
        Debian::ALL
            .into_iter()
            .find(|d| d.grub().version == version)
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
    fn grub_builds_are_distinct_and_numbered() {
        assert_eq!(Debian::Bookworm.grub().upstream_number().unwrap(), 206);
        assert_eq!(Debian::Trixie.grub().upstream_number().unwrap(), 212);
        for d in Debian::ALL {
            assert_eq!(Debian::with_grub(d.grub().version), Some(d));
            if let Some(pool) = d.grub().pool {
                assert!(pool
                    .dsc
                    .path
                    .ends_with(&format!("grub2_{}.dsc", d.grub().version)));
                let debs = pool.tree_debs();
                for (file, package) in debs.iter().zip([
                    "grub-common",
                    "grub-efi-amd64-bin",
                    "grub-efi-amd64-unsigned",
                ]) {
                    assert!(
                        file.path
                            .ends_with(&format!("/{package}_{}_amd64.deb", d.grub().version)),
                        "{}",
                        file.path
                    );
                }
                for file in debs.iter().chain([&pool.dsc]) {
                    assert!(
                        file.sha256.len() == 64
                            && file.sha256.bytes().all(|b| b.is_ascii_hexdigit()),
                        "{}",
                        file.path
                    );
                }
            }
        }
        // The build machine is Debian 12: exactly that release's GRUB is the installed one.
        assert!(Debian::Bookworm.grub().installed && !Debian::Trixie.grub().installed);
    }
}
