//! The writable root: each image runs read-only under an overlay whose upper layer is that
//! image's own directory on hostpart, [`crate::layout::OVERLAY_DIR`]`/<filesystem UUID>/`
//! ([`UPPER`] and [`WORK`] inside it). What the running system writes survives its reboots and
//! stays with its image: an update starts from the new image's files, a rollback or revert
//! returns to the old image's layer as it was left. A layer whose image is no longer on
//! hostpart is stale, and the initramfs removes it.

use crate::uuid::FsUuid;

/// The upper layer's directory inside an image's overlay directory.
pub const UPPER: &str = "upper";
/// overlayfs's work directory (same filesystem as [`UPPER`]) inside an image's overlay
/// directory.
pub const WORK: &str = "work";

/// What an entry of [`crate::layout::OVERLAY_DIR`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverlayEntry {
    /// The layer of an image on hostpart: kept.
    Live(FsUuid),
    /// The layer of an image no longer on hostpart: removed at boot.
    Stale(FsUuid),
    /// Not named by a filesystem UUID: not hnroot's, left alone (and reported).
    Foreign,
}

/// Judge the entry `name` of the overlay directory against the UUIDs of the images on
/// hostpart.
pub fn judge(name: &str, images: &[FsUuid]) -> OverlayEntry {
    match FsUuid::parse(name) {
        // Only the canonical spelling is ours: the directory is created from the UUID's
        // Display form, so any other spelling of a UUID was put there by someone else.
        Ok(u) if !name_is_canonical(name, u) => OverlayEntry::Foreign,
        Ok(u) if images.contains(&u) => OverlayEntry::Live(u),
        Ok(u) => OverlayEntry::Stale(u),
        Err(_) => OverlayEntry::Foreign,
    }
}

fn name_is_canonical(name: &str, u: FsUuid) -> bool {
    use core::fmt::Write;
    let mut buf = Canonical {
        bytes: [0; 40],
        len: 0,
    };
    write!(buf, "{u}").is_ok() && buf.as_str() == Some(name)
}

/// A fixed buffer for a UUID's Display form (no allocation in the core).
struct Canonical {
    bytes: [u8; 40],
    len: usize,
}

impl Canonical {
    fn as_str(&self) -> Option<&str> {
        core::str::from_utf8(self.bytes.get(..self.len)?).ok()
    }
}

impl core::fmt::Write for Canonical {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(core::fmt::Error)?;
        self.bytes
            .get_mut(self.len..end)
            .ok_or(core::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0b5c1f6e-8f3a-4d52-9a43-2f1f4c7a9e01";
    const B: &str = "7d0e3b1a-1c2d-4e5f-8a9b-0c1d2e3f4a5b";

    #[test]
    fn live_stale_and_foreign() {
        let a = FsUuid::parse(A).unwrap();
        let b = FsUuid::parse(B).unwrap();
        assert_eq!(judge(A, &[a]), OverlayEntry::Live(a));
        assert_eq!(judge(B, &[a]), OverlayEntry::Stale(b));
        assert_eq!(judge(B, &[]), OverlayEntry::Stale(b));
        assert_eq!(judge("lost+found", &[a]), OverlayEntry::Foreign);
        assert_eq!(judge("", &[a]), OverlayEntry::Foreign);
    }

    #[test]
    fn other_spellings_of_a_uuid_are_not_ours() {
        let a = FsUuid::parse(A).unwrap();
        let upper = A.to_ascii_uppercase();
        assert_eq!(
            FsUuid::parse(&upper),
            Ok(a),
            "the parser accepts either case"
        );
        assert_eq!(judge(&upper, &[a]), OverlayEntry::Foreign);
    }
}
