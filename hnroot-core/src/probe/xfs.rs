//! The XFS superblock (v4 and v5) at the start of the device: libblkid's sanity checks of
//! `superblocks/xfs.c`, and for v5 the superblock CRC32C as util-linux 2.39 and later verify it.
//! Never reads a disk: it parses the first sector handed to it.

use core::fmt;
use core::ops::Range;

use super::bytes::{crc_of, Fields, CRC32C, ZEROS};
use super::label::{Label, Trim};
use crate::uuid::FsUuid;

/// Bytes of the superblock structure libblkid reads before its checks.
pub const SB_LEN: usize = 272;
/// Largest XFS sector size: a v5 CRC covers one sector, so this many bytes may be needed.
pub const MAX_SECTOR_SIZE: usize = 32768;

const SB_MAGICNUM: Range<usize> = 0..4;
const SB_BLOCKSIZE: Range<usize> = 4..8;
const SB_DBLOCKS: Range<usize> = 8..16;
const SB_UUID: Range<usize> = 32..48;
const SB_REXTSIZE: Range<usize> = 80..84;
const SB_AGBLOCKS: Range<usize> = 84..88;
const SB_AGCOUNT: Range<usize> = 88..92;
const SB_VERSIONNUM: Range<usize> = 100..102;
const SB_SECTSIZE: Range<usize> = 102..104;
const SB_INODESIZE: Range<usize> = 104..106;
const SB_FNAME: Range<usize> = 108..120;
const SB_BLOCKLOG: usize = 120;
const SB_SECTLOG: usize = 121;
const SB_INODELOG: usize = 122;
const SB_INOPBLOG: usize = 123;
const SB_IMAX_PCT: usize = 127;
const SB_FEATURES2: Range<usize> = 200..204;
const SB_CRC: Range<usize> = 224..228;

const MAGIC: [u8; 4] = *b"XFSB";
const MIN_BLOCKSIZE_LOG: u8 = 9;
const MAX_BLOCKSIZE_LOG: u8 = 16;
const MIN_SECTORSIZE_LOG: u8 = 9;
const MAX_SECTORSIZE_LOG: u8 = 15;
const DINODE_MIN_LOG: u8 = 8;
const DINODE_MAX_LOG: u8 = 11;
const MAX_RTEXTSIZE: u32 = 1024 * 1024 * 1024;
const MIN_RTEXTSIZE: u32 = 4 * 1024;
const MIN_AG_BLOCKS: u64 = 64;
const VERSION_NUMBITS: u16 = 0x000f;
const VERSION_5: u16 = 5;
const VERSION_MOREBITSBIT: u16 = 0x8000;
const VERSION2_CRCBIT: u32 = 0x0000_0100;

/// Why bytes are not an XFS superblock.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum XfsReject {
    /// Fewer than [`SB_LEN`] bytes, or fewer than one sector for a v5 checksum.
    TooShort {
        /// Bytes needed.
        need: usize,
        /// Bytes given.
        len: usize,
    },
    /// No `XFSB` at offset 0.
    Magic,
    /// One of libblkid's sanity checks failed (sizes, logs, block counts).
    Geometry(&'static str),
    /// A v5 superblock without the CRC feature bits.
    V5WithoutCrc,
    /// A v5 superblock whose CRC32C does not match `sb_crc`.
    Checksum {
        /// `sb_crc`.
        stored: u32,
        /// CRC32C computed over the sector.
        computed: u32,
    },
}

impl fmt::Display for XfsReject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XfsReject::TooShort { need, len } => {
                write!(f, "XFS superblock needs {need} bytes, got {len}")
            }
            XfsReject::Magic => f.write_str("XFS magic XFSB not found"),
            XfsReject::Geometry(what) => write!(f, "XFS superblock fails a sanity check: {what}"),
            XfsReject::V5WithoutCrc => f.write_str("XFS v5 superblock without the CRC feature"),
            XfsReject::Checksum { stored, computed } => write!(
                f,
                "XFS superblock checksum mismatch (stored {stored:08x}, computed {computed:08x})"
            ),
        }
    }
}

/// A valid XFS superblock.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct XfsSuperblock {
    /// `sb_fname`.
    pub label: Option<Label>,
    /// `sb_uuid`, unless all zero.
    pub uuid: Option<FsUuid>,
    /// Bytes of the data device the filesystem spans: `sb_dblocks` × `sb_blocksize` (the
    /// kernel refuses to mount a smaller device).
    pub size: Option<u64>,
    /// `sb_sectsize` (512 to 32768, checked): the smallest unit it reads and writes.
    pub sector_size: u32,
}

/// Parse the superblock at the start of `buf` (at least [`SB_LEN`] bytes, and a whole sector
/// for v5).
pub fn parse(buf: &[u8]) -> Result<XfsSuperblock, XfsReject> {
    let f = Fields::new(buf, SB_LEN).ok_or(XfsReject::TooShort {
        need: SB_LEN,
        len: buf.len(),
    })?;
    if f.array::<4>(SB_MAGICNUM) != MAGIC {
        return Err(XfsReject::Magic);
    }
    check_geometry(&f).map_err(XfsReject::Geometry)?;
    let version = f.be16(SB_VERSIONNUM);
    if version & VERSION_NUMBITS == VERSION_5 {
        if version & VERSION_MOREBITSBIT == 0 || f.be32(SB_FEATURES2) & VERSION2_CRCBIT == 0 {
            return Err(XfsReject::V5WithoutCrc);
        }
        let sectsize = usize::from(f.be16(SB_SECTSIZE));
        let sector = buf.get(..sectsize).ok_or(XfsReject::TooShort {
            need: sectsize,
            len: buf.len(),
        })?;
        // The CRC covers the sector with the CRC field counted as zero; XFS stores it little
        // endian.
        let computed = crc_of(
            &CRC32C,
            &[
                sector.get(..SB_CRC.start).unwrap_or(&[]),
                ZEROS.get(..SB_CRC.len()).unwrap_or(&[]),
                sector.get(SB_CRC.end..).unwrap_or(&[]),
            ],
        );
        let stored = f.le32(SB_CRC);
        if stored != computed {
            return Err(XfsReject::Checksum { stored, computed });
        }
    }
    let fname = f.bytes(SB_FNAME);
    let label = if fname.first().is_some_and(|&b| b != 0) {
        Label::from_field(fname, Trim::Right)
    } else {
        None
    };
    let uuid = f.array::<16>(SB_UUID);
    Ok(XfsSuperblock {
        label,
        uuid: (uuid != [0; 16]).then_some(FsUuid::Uuid(uuid)),
        size: f
            .be64(SB_DBLOCKS)
            .checked_mul(u64::from(f.be32(SB_BLOCKSIZE))),
        sector_size: u32::from(f.be16(SB_SECTSIZE)),
    })
}

/// libblkid's `xfs_verify_sb` checks, with its unsigned 32-bit arithmetic.
fn check_geometry(f: &Fields<'_>) -> Result<(), &'static str> {
    let agcount = f.be32(SB_AGCOUNT);
    let agblocks = f.be32(SB_AGBLOCKS);
    let sectsize = u32::from(f.be16(SB_SECTSIZE));
    let sectlog = f.u8(SB_SECTLOG);
    let blocksize = f.be32(SB_BLOCKSIZE);
    let blocklog = f.u8(SB_BLOCKLOG);
    let inodesize = u32::from(f.be16(SB_INODESIZE));
    let inodelog = f.u8(SB_INODELOG);
    let inopblog = f.u8(SB_INOPBLOG);
    let rextsize = f.be32(SB_REXTSIZE);
    let dblocks = f.be64(SB_DBLOCKS);
    let pow = |log: u8| 1u32.checked_shl(u32::from(log)).unwrap_or(0);
    if agcount == 0 {
        return Err("no allocation groups");
    }
    if !(MIN_SECTORSIZE_LOG..=MAX_SECTORSIZE_LOG).contains(&sectlog) || sectsize != pow(sectlog) {
        return Err("sector size");
    }
    if !(MIN_BLOCKSIZE_LOG..=MAX_BLOCKSIZE_LOG).contains(&blocklog) || blocksize != pow(blocklog) {
        return Err("block size");
    }
    if !(DINODE_MIN_LOG..=DINODE_MAX_LOG).contains(&inodelog) || inodesize != pow(inodelog) {
        return Err("inode size");
    }
    if i32::from(blocklog).wrapping_sub(i32::from(inodelog)) != i32::from(inopblog) {
        return Err("inodes per block");
    }
    let rext_bytes = rextsize.wrapping_mul(blocksize);
    if !(MIN_RTEXTSIZE..=MAX_RTEXTSIZE).contains(&rext_bytes) {
        return Err("realtime extent size");
    }
    if f.u8(SB_IMAX_PCT) > 100 {
        return Err("inode space percentage");
    }
    let max_dblocks = u64::from(agcount).wrapping_mul(u64::from(agblocks));
    let min_dblocks = u64::from(agcount.wrapping_sub(1))
        .wrapping_mul(u64::from(agblocks))
        .wrapping_add(MIN_AG_BLOCKS);
    if dblocks == 0 || dblocks > max_dblocks || dblocks < min_dblocks {
        return Err("data block count");
    }
    Ok(())
}

#[cfg(test)]
// Test fixtures compute offsets freely; a panic there is a failed test.
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    const SECT: usize = 512;

    fn put(b: &mut [u8], r: Range<usize>, v: &[u8]) {
        b[r].copy_from_slice(v);
    }

    /// A v5 superblock as mkfs.xfs 6.x makes it for a 300 MiB device, field by field.
    fn v5() -> [u8; SECT] {
        let mut b = [0u8; SECT];
        put(&mut b, SB_MAGICNUM, &MAGIC);
        put(&mut b, SB_BLOCKSIZE, &4096u32.to_be_bytes());
        put(&mut b, SB_DBLOCKS, &76800u64.to_be_bytes());
        put(&mut b, SB_UUID, &[0x42; 16]);
        put(&mut b, SB_REXTSIZE, &1u32.to_be_bytes());
        put(&mut b, SB_AGBLOCKS, &19200u32.to_be_bytes());
        put(&mut b, SB_AGCOUNT, &4u32.to_be_bytes());
        put(&mut b, SB_VERSIONNUM, &0xb4a5u16.to_be_bytes());
        put(&mut b, SB_SECTSIZE, &512u16.to_be_bytes());
        put(&mut b, SB_INODESIZE, &512u16.to_be_bytes());
        put(&mut b, SB_FNAME, b"hostpart\0\0\0\0");
        b[SB_BLOCKLOG] = 12;
        b[SB_SECTLOG] = 9;
        b[SB_INODELOG] = 9;
        b[SB_INOPBLOG] = 3;
        b[SB_IMAX_PCT] = 25;
        put(&mut b, SB_FEATURES2, &0x18au32.to_be_bytes());
        seal(&mut b);
        b
    }

    fn seal(b: &mut [u8; SECT]) {
        b[SB_CRC].fill(0);
        let crc = CRC32C.checksum(&b[..]);
        b[SB_CRC].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn v5_with_label() {
        let got = parse(&v5()).unwrap();
        assert_eq!(got.label.unwrap().as_bytes(), b"hostpart");
        assert_eq!(got.uuid, Some(FsUuid::Uuid([0x42; 16])));
    }

    #[test]
    fn size_is_data_blocks_times_block_size() {
        assert_eq!(parse(&v5()).unwrap().size, Some(300 << 20));
        // Its unit is the sector, not the block.
        assert_eq!(parse(&v5()).unwrap().sector_size, 512);
    }

    #[test]
    fn v5_checksum_is_verified() {
        let mut b = v5();
        b[SB_FNAME.start] = b'H';
        assert!(matches!(parse(&b), Err(XfsReject::Checksum { .. })));
    }

    #[test]
    fn v4_has_no_checksum() {
        let mut b = v5();
        put(&mut b, SB_VERSIONNUM, &0xb4a4u16.to_be_bytes());
        b[SB_FNAME.start] = b'H';
        assert_eq!(parse(&b).unwrap().label.unwrap().as_bytes(), b"Hostpart");
    }

    #[test]
    fn v5_without_crc_bit() {
        let mut b = v5();
        put(&mut b, SB_FEATURES2, &0x8au32.to_be_bytes());
        seal(&mut b);
        assert_eq!(parse(&b), Err(XfsReject::V5WithoutCrc));
    }

    #[test]
    fn geometry_checks() {
        let cases: [(Range<usize>, &[u8], &str); 4] = [
            (SB_AGCOUNT, &0u32.to_be_bytes(), "no allocation groups"),
            (SB_SECTSIZE, &1024u16.to_be_bytes(), "sector size"),
            (SB_BLOCKSIZE, &8192u32.to_be_bytes(), "block size"),
            (SB_DBLOCKS, &0u64.to_be_bytes(), "data block count"),
        ];
        for (field, value, why) in cases {
            let mut b = v5();
            put(&mut b, field, value);
            seal(&mut b);
            assert_eq!(parse(&b), Err(XfsReject::Geometry(why)));
        }
        let mut b = v5();
        b[SB_INOPBLOG] = 4;
        seal(&mut b);
        assert_eq!(parse(&b), Err(XfsReject::Geometry("inodes per block")));
    }

    #[test]
    fn short_buffers() {
        let b = v5();
        assert_eq!(
            parse(&b[..100]),
            Err(XfsReject::TooShort {
                need: SB_LEN,
                len: 100
            })
        );
        assert_eq!(
            parse(&b[..300]),
            Err(XfsReject::TooShort {
                need: 512,
                len: 300
            })
        );
        assert_eq!(parse(&[0u8; SECT]), Err(XfsReject::Magic));
    }
}
