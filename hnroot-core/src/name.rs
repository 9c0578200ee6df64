//! The file names hnroot knows on hostpart. Names are an enum: nothing outside this set is ever
//! booted, renamed or removed, and no name can carry a `/` or `..`.

use core::fmt;

/// One of the image files in the top directory of hostpart.
///
/// The order of the variants is the documented fallback order (see [`ImageName::FALLBACK_ORDER`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[repr(u8)]
pub enum ImageName {
    /// `hn-root.img`: the current image.
    Current = 0,
    /// `hn-root-old.img`: the image that was current before the last update; the rollback target.
    Old = 1,
    /// `hn-root-new.img`: a staged update; boots directly on the next boot.
    New = 2,
    /// `hn-root-cancelled.img`: an update that never became committed: a staged image cancelled by
    /// a revert, or a trial image superseded by a newer update before it was marked good.
    Cancelled = 3,
    /// `hn-root-broken.img`: the image a revert or an automatic rollback moved away from.
    Broken = 4,
}

impl ImageName {
    /// Every image name, in fallback order: an image that cannot be booted as decided is replaced
    /// by the first bootable image of this list (never `hn-root-broken.img` while anything else
    /// is readable, because it comes last).
    pub const FALLBACK_ORDER: [ImageName; 5] = [
        ImageName::Current,
        ImageName::Old,
        ImageName::New,
        ImageName::Cancelled,
        ImageName::Broken,
    ];

    /// The same five names; the order of [`ImageName::FALLBACK_ORDER`].
    pub const ALL: [ImageName; 5] = Self::FALLBACK_ORDER;

    /// The file name on hostpart.
    pub const fn file_name(self) -> &'static str {
        match self {
            ImageName::Current => "hn-root.img",
            ImageName::Old => "hn-root-old.img",
            ImageName::New => "hn-root-new.img",
            ImageName::Cancelled => "hn-root-cancelled.img",
            ImageName::Broken => "hn-root-broken.img",
        }
    }

    /// A short word for logs and JSON: `current`, `old`, `new`, `cancelled`, `broken`.
    pub const fn role(self) -> &'static str {
        match self {
            ImageName::Current => "current",
            ImageName::Old => "old",
            ImageName::New => "new",
            ImageName::Cancelled => "cancelled",
            ImageName::Broken => "broken",
        }
    }

    /// The name whose file name is exactly `name`; `None` for anything else, including paths.
    pub fn from_file_name(name: &str) -> Option<ImageName> {
        Self::ALL.into_iter().find(|n| n.file_name() == name)
    }

    /// Position in [`ImageName::ALL`], for per-image tables.
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.file_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::REVERT_MARKER;

    #[test]
    fn file_names_round_trip_and_reject_everything_else() {
        for name in ImageName::ALL {
            assert_eq!(ImageName::from_file_name(name.file_name()), Some(name));
            assert_eq!(ImageName::ALL[name.index()], name);
        }
        for bad in [
            "",
            "hn-root",
            "/hn-root.img",
            "../hn-root.img",
            "hn-root.img/",
            "HN-ROOT.IMG",
            "hn-root.img\0",
            REVERT_MARKER,
        ] {
            assert_eq!(ImageName::from_file_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn broken_is_the_last_resort() {
        assert_eq!(ImageName::FALLBACK_ORDER.last(), Some(&ImageName::Broken));
        assert_eq!(ImageName::FALLBACK_ORDER.first(), Some(&ImageName::Current));
    }
}
