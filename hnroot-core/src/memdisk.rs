//! The files an hnroot GRUB image carries in its memdisk (`grub.cfg`, the fleet's files such as
//! `hnroot/kernel-args`), read from the image's bytes without running it: how the Linux side
//! learns the defaults GRUB would put on a kernel command line (`hnroot reboot`, `hnroot
//! explain`). It never reads a disk: the driver hands in the loader's bytes.
//!
//! `grub-mkimage` puts the modules, the memdisk and the prefix into the PE section `mods`:
//!
//! | offset | size | field (`struct grub_module_info64`, then objects)              |
//! |-------:|-----:|-----------------------------------------------------------------|
//! |      0 |    4 | magic `mimg` (`0x676d696d`)                                     |
//! |      8 |    8 | offset of the first object from the section's start             |
//! |     16 |    8 | size of the whole module area (the objects included)            |
//! |    … |    8 | each object: type (0 module, 1 memdisk, 2 config, 3 prefix, …) and its size with this header |
//!
//! The memdisk is a ustar archive (`hnroot-install`'s `tar.rs` writes it): 512-byte headers,
//! the name in bytes 0..100, the size in octal in 124..136, the type in 156, each file's data
//! padded to 512 bytes, two zero blocks at the end.

use core::fmt;
use core::ops::Range;

use crate::loader::{find_section, PeError};

/// The PE section `grub-mkimage` puts the modules and the memdisk in.
pub const MODS_SECTION: [u8; 8] = *b"mods\0\0\0\0";
/// `struct grub_module_info64`'s magic, little-endian.
const MODULE_MAGIC: u32 = 0x676d_696d;
const INFO_MAGIC: Range<usize> = 0..4;
const INFO_OFFSET: Range<usize> = 8..16;
const INFO_SIZE: Range<usize> = 16..24;
const OBJ_TYPE: Range<usize> = 0..4;
const OBJ_SIZE: Range<usize> = 4..8;
const OBJ_HEADER_LEN: usize = 8;
/// `OBJ_TYPE_MEMDISK`.
const OBJ_MEMDISK: u32 = 1;
/// Bound on the objects walked (GRUB images carry a few dozen modules).
const MAX_OBJECTS: usize = 1024;

const TAR_BLOCK: usize = 512;
const TAR_NAME: Range<usize> = 0..100;
const TAR_SIZE: Range<usize> = 124..136;
const TAR_TYPE: usize = 156;
/// Bound on the archive's entries walked.
const MAX_ENTRIES: usize = 4096;

/// Why the memdisk could not be read.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MemdiskError {
    /// The image is not a PE image the loader reader understands.
    Pe(PeError),
    /// No `mods` section: not an image `grub-mkimage` made.
    NoModules,
    /// The `mods` section does not start with GRUB's module magic.
    Magic,
    /// An object or an archive entry runs past its end.
    Truncated,
    /// More objects or archive entries than any GRUB image holds.
    TooMany,
    /// An archive header's size field is not octal.
    BadSize,
    /// The image carries no memdisk.
    NoMemdisk,
}

impl fmt::Display for MemdiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemdiskError::Pe(e) => write!(f, "not a loader image hnroot can read: {e}"),
            MemdiskError::NoModules => f.write_str("no `mods` section (not made by grub-mkimage)"),
            MemdiskError::Magic => f.write_str("the `mods` section lacks GRUB's module magic"),
            MemdiskError::Truncated => f.write_str("a module or memdisk entry runs past its end"),
            MemdiskError::TooMany => f.write_str("more modules or memdisk entries than bounded"),
            MemdiskError::BadSize => f.write_str("a memdisk entry's size is not octal"),
            MemdiskError::NoMemdisk => f.write_str("the image carries no memdisk"),
        }
    }
}

impl core::error::Error for MemdiskError {}

fn le32(b: &[u8], r: Range<usize>) -> Result<u32, MemdiskError> {
    let a: [u8; 4] = b
        .get(r)
        .and_then(|s| s.try_into().ok())
        .ok_or(MemdiskError::Truncated)?;
    Ok(u32::from_le_bytes(a))
}

fn le64(b: &[u8], r: Range<usize>) -> Result<u64, MemdiskError> {
    let a: [u8; 8] = b
        .get(r)
        .and_then(|s| s.try_into().ok())
        .ok_or(MemdiskError::Truncated)?;
    Ok(u64::from_le_bytes(a))
}

/// The memdisk archive of a GRUB image: the `mods` section, its magic, then the objects in
/// order until the memdisk.
pub fn memdisk(image: &[u8]) -> Result<&[u8], MemdiskError> {
    let mods = find_section(image, &MODS_SECTION)
        .map_err(MemdiskError::Pe)?
        .ok_or(MemdiskError::NoModules)?;
    if le32(mods, INFO_MAGIC)? != MODULE_MAGIC {
        return Err(MemdiskError::Magic);
    }
    let first = usize::try_from(le64(mods, INFO_OFFSET)?).map_err(|_| MemdiskError::Truncated)?;
    let size = usize::try_from(le64(mods, INFO_SIZE)?).map_err(|_| MemdiskError::Truncated)?;
    let area = mods.get(..size).ok_or(MemdiskError::Truncated)?;
    let mut at = first;
    for _ in 0..MAX_OBJECTS {
        if at >= area.len() {
            return Err(MemdiskError::NoMemdisk);
        }
        let header = area
            .get(at..at.saturating_add(OBJ_HEADER_LEN))
            .ok_or(MemdiskError::Truncated)?;
        let kind = le32(header, OBJ_TYPE)?;
        let len = le32(header, OBJ_SIZE)? as usize;
        if len < OBJ_HEADER_LEN {
            return Err(MemdiskError::Truncated);
        }
        let end = at.checked_add(len).ok_or(MemdiskError::Truncated)?;
        if kind == OBJ_MEMDISK {
            return area
                .get(at.saturating_add(OBJ_HEADER_LEN)..end)
                .ok_or(MemdiskError::Truncated);
        }
        at = end;
    }
    Err(MemdiskError::TooMany)
}

/// An octal field of a ustar header (digits, ended by NUL or a blank).
fn octal(field: &[u8]) -> Result<usize, MemdiskError> {
    let mut n: usize = 0;
    let mut digits = 0usize;
    for &b in field {
        match b {
            b'0'..=b'7' => {
                n = n
                    .checked_mul(8)
                    .and_then(|n| n.checked_add(usize::from(b.wrapping_sub(b'0'))))
                    .ok_or(MemdiskError::BadSize)?;
                digits = digits.saturating_add(1);
            }
            0 | b' ' if digits > 0 => break,
            b' ' => {}
            _ => return Err(MemdiskError::BadSize),
        }
    }
    if digits == 0 {
        return Err(MemdiskError::BadSize);
    }
    Ok(n)
}

/// The file at `path` (as stored, `hnroot/kernel-args`) in a ustar archive; `None` when the
/// archive has no such regular file.
pub fn tar_file<'a>(archive: &'a [u8], path: &str) -> Result<Option<&'a [u8]>, MemdiskError> {
    let mut at = 0usize;
    for _ in 0..MAX_ENTRIES {
        let Some(header) = archive.get(at..at.saturating_add(TAR_BLOCK)) else {
            // No end blocks: the archive ends here.
            return Ok(None);
        };
        if header.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        let name = header.get(TAR_NAME).ok_or(MemdiskError::Truncated)?;
        let name = name.split(|&b| b == 0).next().unwrap_or(name);
        let size = octal(header.get(TAR_SIZE).ok_or(MemdiskError::Truncated)?)?;
        let data = at.checked_add(TAR_BLOCK).ok_or(MemdiskError::Truncated)?;
        let data_end = data.checked_add(size).ok_or(MemdiskError::Truncated)?;
        let regular = matches!(header.get(TAR_TYPE), Some(0 | b'0'));
        if regular && name == path.as_bytes() {
            return archive
                .get(data..data_end)
                .map(Some)
                .ok_or(MemdiskError::Truncated);
        }
        at = data_end
            .checked_next_multiple_of(TAR_BLOCK)
            .ok_or(MemdiskError::Truncated)?;
    }
    Err(MemdiskError::TooMany)
}

/// The file at `path` in a GRUB image's memdisk (`(memdisk)/path` to GRUB).
pub fn file<'a>(image: &'a [u8], path: &str) -> Result<Option<&'a [u8]>, MemdiskError> {
    tar_file(memdisk(image)?, path)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use std::vec::Vec;

    extern crate std;

    /// A ustar entry as `hnroot-install`'s tar.rs and GNU tar write it.
    fn entry(out: &mut Vec<u8>, name: &str, data: &[u8], kind: u8) {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let size = std::format!("{:011o}\0", data.len());
        h[124..136].copy_from_slice(size.as_bytes());
        h[156] = kind;
        h[257..263].copy_from_slice(b"ustar\0");
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }

    /// A minimal PE image with one `mods` section holding `objects`.
    fn image(objects: &[(u32, &[u8])]) -> Vec<u8> {
        let mut mods = Vec::new();
        mods.extend_from_slice(&MODULE_MAGIC.to_le_bytes());
        mods.extend_from_slice(&[0; 4]);
        mods.extend_from_slice(&24u64.to_le_bytes());
        mods.extend_from_slice(&0u64.to_le_bytes());
        for (kind, body) in objects {
            mods.extend_from_slice(&kind.to_le_bytes());
            mods.extend_from_slice(&(u32::try_from(body.len()).unwrap() + 8).to_le_bytes());
            mods.extend_from_slice(body);
        }
        let size = mods.len() as u64;
        mods[16..24].copy_from_slice(&size.to_le_bytes());
        let mut pe = std::vec![0u8; 0x200];
        pe[0..2].copy_from_slice(b"MZ");
        pe[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
        pe[0x40..0x44].copy_from_slice(b"PE\0\0");
        // COFF: 1 section, no optional header; the table at 0x58.
        pe[0x46..0x48].copy_from_slice(&1u16.to_le_bytes());
        let s = 0x58;
        pe[s..s + 8].copy_from_slice(&MODS_SECTION);
        pe[s + 8..s + 12].copy_from_slice(&(mods.len() as u32).to_le_bytes());
        pe[s + 16..s + 20].copy_from_slice(&(mods.len() as u32).to_le_bytes());
        pe[s + 20..s + 24].copy_from_slice(&0x200u32.to_le_bytes());
        pe.extend_from_slice(&mods);
        pe
    }

    #[test]
    fn the_fleets_file_is_found_past_the_modules() {
        let mut tar = Vec::new();
        entry(&mut tar, "boot/", b"", b'5');
        entry(&mut tar, "boot/grub/grub.cfg", b"set default=0\n", b'0');
        entry(
            &mut tar,
            "hnroot/kernel-args",
            b"console=ttyS1,115200\n",
            b'0',
        );
        tar.extend_from_slice(&[0; 1024]);
        let img = image(&[(0, &[0xcc; 40]), (1, &tar), (3, b"(memdisk)/boot/grub\0")]);
        assert_eq!(
            file(&img, "hnroot/kernel-args"),
            Ok(Some(&b"console=ttyS1,115200\n"[..]))
        );
        assert_eq!(
            file(&img, "boot/grub/grub.cfg"),
            Ok(Some(&b"set default=0\n"[..]))
        );
        assert_eq!(file(&img, "hnroot/other"), Ok(None));
        // A directory is not the file.
        assert_eq!(file(&img, "boot/"), Ok(None));
    }

    #[test]
    fn what_is_not_there_or_damaged_is_named() {
        let img = image(&[(0, &[0xcc; 40])]);
        assert_eq!(file(&img, "x"), Err(MemdiskError::NoMemdisk));
        let mut bad = image(&[(1, &[0; 1024])]);
        bad[0x200] ^= 1;
        assert_eq!(file(&bad, "x"), Err(MemdiskError::Magic));
        assert_eq!(
            file(b"not a PE image", "x"),
            Err(MemdiskError::Pe(PeError::NotPe))
        );
        let mut tar = Vec::new();
        entry(&mut tar, "hnroot/kernel-args", b"console=ttyS1", b'0');
        tar[124..136].copy_from_slice(b"0000000099x\0");
        assert_eq!(
            tar_file(&tar, "hnroot/kernel-args"),
            Err(MemdiskError::BadSize)
        );
        let mut tar = Vec::new();
        entry(&mut tar, "hnroot/kernel-args", &[b'a'; 600], b'0');
        tar.truncate(700);
        assert_eq!(
            tar_file(&tar, "hnroot/kernel-args"),
            Err(MemdiskError::Truncated)
        );
    }
}
