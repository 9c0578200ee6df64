//! The version floor: the newest sealed image version ever committed on this hostpart. It
//! decides whether an image may be staged (no downgrade unless asked for), what the floor becomes
//! when an image is committed (never lower), and reads and writes the floor file; it never
//! touches the file itself (the Linux side writes it through the file layer: a new file, synced,
//! renamed over the old one, the directory synced, so a power cut leaves the old floor or the new
//! one, never none and never a torn one).
//!
//! ## Why on hostpart
//!
//! The floor lives in `data/hnroot/floor` on hostpart, beside the images it judges, rather than in
//! the boot-state block on the ESP: every loader on a fleet's ESPs reads the block, and the
//! compatibility contract says a loader reads every block format up to the one it writes, so a
//! new field there would make every older loader take the block as corrupt (and put the running
//! image on trial) until each ESP's loader had been replaced. A file on hostpart is invisible to
//! older loaders, moves with the disk and its images, and is written only by Linux (`hnroot
//! mark-good`), which has the file layer's crash-safe write; GRUB can read it like the revert
//! marker. Neither place is out of reach of an attacker who is root on the server (only a TPM's
//! or firmware's rollback-protected storage would be); the floor stops an old signed image
//! served to `hnroot stage`, and an image put on hostpart by hand from being booted as an update.
//!
//! ## The file
//!
//! ```text
//! hnroot-floor 1
//! version 1.10
//! ```

use crate::loader::Writer;
use crate::seal::{version_is_valid, Version};
use crate::version::is_older;
use core::fmt::{self, Write as _};

/// The floor file, relative to hostpart's top directory.
pub const FLOOR_PATH: &str = "data/hnroot/floor";
/// The floor file's name in [`crate::layout::RECORDS_DIR`].
pub const FLOOR_FILE: &str = "floor";
/// The longest floor file.
pub const FLOOR_MAX: usize = 128;
const FORMAT_LINE: &str = "hnroot-floor 1";

/// The floor as the driver found it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum FloorSeen {
    /// No floor file: no sealed image was ever committed here.
    None,
    /// The floor.
    Set(Version),
    /// A floor file that cannot be read: it is never taken as "no floor" (that would lower it).
    Unreadable,
}

impl FloorSeen {
    /// Reads the floor file's bytes (`None`: there is no such file).
    pub fn from_file(bytes: Option<&[u8]>) -> FloorSeen {
        match bytes {
            None => FloorSeen::None,
            Some(b) => parse(b).map_or(FloorSeen::Unreadable, FloorSeen::Set),
        }
    }

    /// The floor's version, if one is set.
    pub fn version(&self) -> Option<&Version> {
        match self {
            FloorSeen::Set(v) => Some(v),
            _ => None,
        }
    }
}

/// Reads a floor file: exactly its two lines.
pub fn parse(text: &[u8]) -> Option<Version> {
    if text.len() > FLOOR_MAX {
        return None;
    }
    let text = core::str::from_utf8(text).ok()?;
    let rest = text.strip_prefix(FORMAT_LINE)?.strip_prefix('\n')?;
    let version = rest.strip_prefix("version ")?.strip_suffix('\n')?;
    if !version_is_valid(version) {
        return None;
    }
    Version::try_from(version).ok()
}

/// Writes the floor file for `version`; returns its length.
pub fn encode(version: &Version, out: &mut [u8]) -> Option<usize> {
    let mut w = Writer { out, at: 0 };
    write!(w, "{FORMAT_LINE}\nversion {version}\n").ok()?;
    Some(w.at)
}

/// The floor after an image of `committed` version is committed: `Some` when it rises (the first
/// sealed commit, or a newer version), `None` when it stays. It never goes down: an unreadable
/// floor is not replaced (an operator looks at it first).
pub fn raised(floor: &FloorSeen, committed: &Version) -> Option<Version> {
    match floor {
        FloorSeen::None => Some(committed.clone()),
        FloorSeen::Set(v) if is_older(v.as_bytes(), committed.as_bytes()) => {
            Some(committed.clone())
        }
        FloorSeen::Set(_) | FloorSeen::Unreadable => None,
    }
}

/// How a stage stands against the floor.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Admitted {
    /// No floor yet: any image.
    NoFloor,
    /// The image's signed version is the floor or newer.
    AtOrAbove,
    /// A downgrade the operator asked for (`--allow-downgrade`): recorded in the history.
    Downgrade,
}

/// Why a stage is a downgrade.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Downgrade {
    /// The image's signed version is older than the floor.
    Older {
        /// The image's version.
        version: Version,
        /// The floor.
        floor: Version,
    },
    /// The image has no signed version (it is not sealed) and a floor is set.
    Unversioned {
        /// The floor.
        floor: Version,
    },
    /// The floor file cannot be read.
    FloorUnreadable,
}

impl Downgrade {
    /// The stable code (JSON `refused` events, tests).
    pub const fn code(&self) -> &'static str {
        match self {
            Downgrade::Older { .. } => "downgrade",
            Downgrade::Unversioned { .. } => "unversioned",
            Downgrade::FloorUnreadable => "floor-unreadable",
        }
    }
}

impl core::error::Error for Downgrade {}

impl fmt::Display for Downgrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Downgrade::Older { version, floor } => write!(
                f,
                "the image is version {version}, older than {floor}, the newest version committed \
                 on this server: staging it would roll the server back (pass --allow-downgrade if \
                 that is what you want; it is recorded in the history); nothing was written"
            ),
            Downgrade::Unversioned { floor } => write!(
                f,
                "the image is not sealed, so it has no signed version, and this server has \
                 committed sealed version {floor}: it could be any older image (seal it with \
                 `hnroot image seal`, or pass --allow-downgrade); nothing was written"
            ),
            Downgrade::FloorUnreadable => write!(
                f,
                "the version floor ({FLOOR_PATH} on hostpart) cannot be read, so hnroot cannot \
                 tell a downgrade: look at it (hnroot writes `{FORMAT_LINE}` and `version V`), \
                 or pass --allow-downgrade; nothing was written"
            ),
        }
    }
}

// A refusal carries the two versions by value: the core allocates nothing, so no box.
#[allow(clippy::result_large_err)]
/// Whether an image of signed version `version` (`None`: not sealed) may be staged over
/// `floor`. A revert or a rollback is not a stage: the images they return to were committed.
pub fn admits(
    floor: &FloorSeen,
    version: Option<&Version>,
    allow_downgrade: bool,
) -> Result<Admitted, Downgrade> {
    let refusal = match (floor, version) {
        (FloorSeen::None, _) => return Ok(Admitted::NoFloor),
        (FloorSeen::Set(f), Some(v)) if !is_older(v.as_bytes(), f.as_bytes()) => {
            return Ok(Admitted::AtOrAbove)
        }
        (FloorSeen::Set(f), Some(v)) => Downgrade::Older {
            version: v.clone(),
            floor: f.clone(),
        },
        (FloorSeen::Set(f), None) => Downgrade::Unversioned { floor: f.clone() },
        (FloorSeen::Unreadable, _) => Downgrade::FloorUnreadable,
    };
    if allow_downgrade {
        Ok(Admitted::Downgrade)
    } else {
        Err(refusal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::try_from(s).unwrap()
    }

    #[test]
    fn the_floor_file_round_trips_and_refuses_anything_else() {
        let mut buf = [0u8; FLOOR_MAX];
        let n = encode(&v("1.10"), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hnroot-floor 1\nversion 1.10\n");
        assert_eq!(parse(&buf[..n]), Some(v("1.10")));
        for bad in [
            &b"hnroot-floor 2\nversion 1.10\n"[..],
            b"hnroot-floor 1\nversion 1.10",
            b"hnroot-floor 1\nversion 1 10\n",
            b"hnroot-floor 1\nversion \n",
            b"",
        ] {
            assert_eq!(
                FloorSeen::from_file(Some(bad)),
                FloorSeen::Unreadable,
                "{bad:?}"
            );
        }
        assert_eq!(FloorSeen::from_file(None), FloorSeen::None);
    }

    #[test]
    fn the_floor_only_rises() {
        assert_eq!(raised(&FloorSeen::None, &v("1.9")), Some(v("1.9")));
        assert_eq!(
            raised(&FloorSeen::Set(v("1.9")), &v("1.10")),
            Some(v("1.10"))
        );
        assert_eq!(raised(&FloorSeen::Set(v("1.10")), &v("1.9")), None);
        assert_eq!(raised(&FloorSeen::Set(v("1.10")), &v("1.10")), None);
        assert_eq!(raised(&FloorSeen::Unreadable, &v("9")), None);
    }

    #[test]
    fn a_downgrade_is_refused_unless_allowed() {
        let floor = FloorSeen::Set(v("1.10"));
        assert_eq!(
            admits(&floor, Some(&v("1.9")), false),
            Err(Downgrade::Older {
                version: v("1.9"),
                floor: v("1.10")
            })
        );
        assert_eq!(
            admits(&floor, Some(&v("1.9")), true),
            Ok(Admitted::Downgrade)
        );
        assert_eq!(
            admits(&floor, Some(&v("1.10")), false),
            Ok(Admitted::AtOrAbove)
        );
        assert_eq!(
            admits(&floor, Some(&v("1.11~rc1")), false),
            Ok(Admitted::AtOrAbove)
        );
        assert_eq!(
            admits(&floor, None, false).unwrap_err().code(),
            "unversioned"
        );
        assert_eq!(admits(&FloorSeen::None, None, false), Ok(Admitted::NoFloor));
        assert_eq!(
            admits(&FloorSeen::Unreadable, Some(&v("2")), false)
                .unwrap_err()
                .code(),
            "floor-unreadable"
        );
    }
}
