//! The loop device an image file is attached to: its logical block size, and whether direct
//! I/O can work at that size.
//!
//! Two facts decide it. The image's filesystem cannot be mounted from a device whose logical
//! block size is larger than its own smallest unit ([`crate::probe::FsInfo::io_unit`]: an XFS
//! made with 512-byte sectors refuses a 4096-byte device, "device supports 4096 byte sectors
//! (not 512)"; so does an ext4 of 1 KiB blocks). And direct I/O on the file holding the image
//! works only in blocks at least as large as that file's direct-I/O alignment (`statx`'s
//! `stx_dio_offset_align`: hostpart's logical sector size, 4096 on a 4Kn disk). Left to itself
//! (`block_size` 0), Linux 6.1 gives the loop device 512-byte blocks and turns direct I/O off
//! where they are too small; Linux 6.18 gives it the file's alignment whenever direct I/O is
//! asked for, and the 512-byte XFS on a 4Kn hostpart no longer mounts. So hnroot chooses: the
//! alignment when the image's unit holds it (direct I/O, as the kernel would), else 512 with
//! buffered I/O (the image mounts, its pages cached twice, and the record says why).

use core::fmt;

/// The smallest logical block size a loop device takes, and the one every filesystem mounts
/// from.
pub const MIN_BLOCK_SIZE: u32 = 512;
/// The largest: the page size (4096 on x86_64; the kernel refuses larger).
pub const MAX_BLOCK_SIZE: u32 = 4096;

/// How the loop device is to be configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Its logical block size (`LOOP_CONFIGURE`'s `block_size`).
    pub block_size: u32,
    /// Whether to ask for direct I/O.
    pub direct: Direct,
}

/// Whether direct I/O is asked for, and when not, why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direct {
    /// Ask: the kernel says whether it got it (the backing filesystem may still refuse).
    Ask,
    /// Not at a block size the image mounts from: its filesystem's unit (`None`: no
    /// filesystem found that says) is smaller than the alignment direct I/O on its file needs.
    UnitTooSmall {
        /// The image filesystem's smallest unit, when known.
        unit: Option<u32>,
        /// The backing file's direct-I/O alignment.
        align: u32,
    },
    /// The backing file's direct-I/O alignment is larger than any loop device's block size.
    AlignTooLarge {
        /// That alignment.
        align: u32,
    },
}

impl fmt::Display for Direct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Direct::Ask => f.write_str("direct I/O asked for"),
            Direct::UnitTooSmall {
                unit: Some(unit),
                align,
            } => write!(
                f,
                "direct I/O on the file holding the image needs {align}-byte blocks (its \
                 filesystem's sectors), but the image's filesystem works in {unit}-byte units \
                 and would not mount from them; the loop device takes {MIN_BLOCK_SIZE}-byte \
                 blocks instead"
            ),
            Direct::UnitTooSmall { unit: None, align } => write!(
                f,
                "direct I/O on the file holding the image needs {align}-byte blocks (its \
                 filesystem's sectors), and no filesystem on the image says it can work in \
                 units that large; the loop device takes {MIN_BLOCK_SIZE}-byte blocks, which \
                 every filesystem mounts from"
            ),
            Direct::AlignTooLarge { align } => write!(
                f,
                "direct I/O on the file holding the image needs {align}-byte blocks, larger \
                 than a loop device's {MAX_BLOCK_SIZE}"
            ),
        }
    }
}

/// A power of two in `MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE` no larger than `unit` (the largest
/// block size an image of that unit mounts from); 512 for an unknown or odd unit.
fn largest_fitting(unit: Option<u32>) -> u32 {
    match unit {
        Some(u) if u.is_power_of_two() && u >= MIN_BLOCK_SIZE => u.min(MAX_BLOCK_SIZE),
        _ => MIN_BLOCK_SIZE,
    }
}

/// The loop device for an image whose filesystem works in `unit`-byte units (`None`: not
/// known, e.g. a file with no filesystem yet), held by a file whose direct I/O needs
/// `dio_align`-byte alignment (`None`: the kernel does not say, before Linux 6.1 or on a
/// filesystem that does not report it; then the kernel decides, at 512 as it always did).
pub fn geometry(unit: Option<u32>, dio_align: Option<u32>) -> Geometry {
    let ask = |block_size| Geometry {
        block_size,
        direct: Direct::Ask,
    };
    let Some(align) = dio_align.filter(|a| a.is_power_of_two()) else {
        return ask(MIN_BLOCK_SIZE);
    };
    let align = align.max(MIN_BLOCK_SIZE);
    if align > MAX_BLOCK_SIZE {
        return Geometry {
            block_size: MIN_BLOCK_SIZE,
            direct: Direct::AlignTooLarge { align },
        };
    }
    if align <= largest_fitting(unit) {
        return ask(align);
    }
    Geometry {
        block_size: MIN_BLOCK_SIZE,
        direct: Direct::UnitTooSmall { unit, align },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;
    use std::string::ToString;

    #[test]
    fn ordinary_disks_keep_512_and_direct_io() {
        // A 512-byte-sector hostpart: 512 whatever the image (as every kernel chose).
        for unit in [Some(512), Some(1024), Some(4096), Some(65536), None] {
            assert_eq!(geometry(unit, Some(512)), ask(512), "{unit:?}");
        }
        // No alignment known: the kernel decides, at 512.
        assert_eq!(geometry(Some(512), None), ask(512));
        assert_eq!(geometry(Some(4096), None), ask(512));
    }

    #[test]
    fn a_4kn_hostpart_gets_4096_where_the_image_mounts_from_it() {
        // ext4 of 4 KiB blocks, XFS or btrfs of 4096-byte sectors, ext4 of 64 KiB blocks.
        for unit in [4096, 65536] {
            assert_eq!(geometry(Some(unit), Some(4096)), ask(4096), "{unit}");
        }
    }

    #[test]
    fn an_image_of_smaller_units_on_a_4kn_hostpart_mounts_buffered() {
        for unit in [512, 1024, 2048] {
            let g = geometry(Some(unit), Some(4096));
            assert_eq!(g.block_size, 512, "{unit}");
            assert_eq!(
                g.direct,
                Direct::UnitTooSmall {
                    unit: Some(unit),
                    align: 4096
                }
            );
            let said = g.direct.to_string();
            assert!(
                said.contains(&format!("{unit}-byte units")) && said.contains("4096-byte blocks"),
                "{said}"
            );
        }
        let g = geometry(None, Some(4096));
        assert_eq!(
            (g.block_size, g.direct),
            (
                512,
                Direct::UnitTooSmall {
                    unit: None,
                    align: 4096
                }
            )
        );
        assert!(g.direct.to_string().contains("no filesystem on the image"));
    }

    #[test]
    fn odd_values_fall_back_to_512() {
        // Alignments below 512 (a filesystem may report 1 or 2): the loop device's least.
        assert_eq!(geometry(Some(4096), Some(1)), ask(512));
        // Not powers of two: not believed.
        assert_eq!(geometry(Some(4096), Some(3000)), ask(512));
        assert_eq!(geometry(Some(3000), Some(4096)).block_size, 512);
        // A unit below 512 cannot be: treated as unknown.
        assert_eq!(geometry(Some(256), Some(512)), ask(512));
        // An alignment no loop device can meet.
        assert_eq!(
            geometry(Some(65536), Some(8192)),
            Geometry {
                block_size: 512,
                direct: Direct::AlignTooLarge { align: 8192 }
            }
        );
    }

    fn ask(block_size: u32) -> Geometry {
        Geometry {
            block_size,
            direct: Direct::Ask,
        }
    }
}
