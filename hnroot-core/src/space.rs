//! Whether hostpart has room for what the boot and the running system write there (the images'
//! writable layers, the boot history, staged images), judged from the counts its filesystem
//! gives (`statvfs`). It reads nothing itself; the initramfs says it on the console at boot
//! and `hnroot status` in its report, from this one judgement.

use core::fmt;

/// Below this many bytes available to a writer hostpart is full: a directory, a history record
/// or a page of the writable layer may no longer fit.
pub const FULL_BELOW: u64 = 1 << 20;

/// hostpart's space, as judged.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Space {
    /// Fewer than [`FULL_BELOW`] bytes available: writes on hostpart fail with `ENOSPC`.
    Full {
        /// Bytes available to a writer.
        free: u64,
        /// The filesystem's size in bytes.
        total: u64,
    },
    /// Room to write.
    Room {
        /// Bytes available to a writer.
        free: u64,
        /// The filesystem's size in bytes.
        total: u64,
    },
}

/// Judge hostpart's space from the bytes available to a writer and its size.
pub fn judge(free: u64, total: u64) -> Space {
    if free < FULL_BELOW {
        Space::Full { free, total }
    } else {
        Space::Room { free, total }
    }
}

impl Space {
    /// Whether hostpart is full.
    pub fn is_full(&self) -> bool {
        matches!(self, Space::Full { .. })
    }

    /// Bytes available to a writer.
    pub fn free(&self) -> u64 {
        match *self {
            Space::Full { free, .. } | Space::Room { free, .. } => free,
        }
    }

    /// The filesystem's size in bytes.
    pub fn total(&self) -> u64 {
        match *self {
            Space::Full { total, .. } | Space::Room { total, .. } => total,
        }
    }

    /// The stable word for reports (`full`, `room`).
    pub fn code(&self) -> &'static str {
        match self {
            Space::Full { .. } => "full",
            Space::Room { .. } => "room",
        }
    }
}

impl fmt::Display for Space {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Space::Full { free, total } => write!(
                f,
                "FULL: {} KiB free of {} MiB; what is written there fails (the writable layers, \
                 the boot history, `hnroot stage`): an image without a writable layer yet boots \
                 read-only, nothing on hostpart is lost; free space under /data0 (hostpart's \
                 data/) or remove images no longer needed",
                free >> 10,
                total >> 20
            ),
            Space::Room { free, total } => {
                write!(f, "{} MiB free of {} MiB", free >> 20, total >> 20)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_below_one_mib_available() {
        assert!(judge(0, 300 << 20).is_full());
        assert!(judge(FULL_BELOW - 1, 300 << 20).is_full());
        assert_eq!(judge(FULL_BELOW, 300 << 20).code(), "room");
        assert_eq!(judge(0, 0).code(), "full");
    }
}
