//! The ext2/ext3/ext4 superblock: which of libblkid's ext types it is (`ext4dev`, `ext4`,
//! `ext3`, `ext2`, `jbd`), its label and UUID. Follows libblkid's `superblocks/ext.c`; the
//! `metadata_csum` checksum is verified as util-linux 2.39 and later do (2.38 did not).
//! Never reads a disk: it parses the 1024 bytes found at [`SB_OFFSET`].

use core::fmt;
use core::ops::Range;

use super::bytes::{Fields, CRC32C};
use super::fs::{FsType, FsTypes};
use super::label::{Label, Trim};
use crate::uuid::FsUuid;

/// Where the superblock starts on the device.
pub const SB_OFFSET: u64 = 1024;
/// Bytes of the superblock this parser needs (all of it: the checksum is at its end).
pub const SB_LEN: usize = 1024;

const S_BLOCKS_COUNT_LO: Range<usize> = 0x04..0x08;
const S_LOG_BLOCK_SIZE: Range<usize> = 0x18..0x1c;
const S_MAGIC: Range<usize> = 0x38..0x3a;
const S_FEATURE_COMPAT: Range<usize> = 0x5c..0x60;
const S_FEATURE_INCOMPAT: Range<usize> = 0x60..0x64;
const S_FEATURE_RO_COMPAT: Range<usize> = 0x64..0x68;
const S_UUID: Range<usize> = 0x68..0x78;
const S_VOLUME_NAME: Range<usize> = 0x78..0x88;
const S_BLOCKS_COUNT_HI: Range<usize> = 0x150..0x154;
const S_FLAGS: Range<usize> = 0x160..0x164;
const S_CHECKSUM: Range<usize> = 0x3fc..0x400;

const MAGIC: u16 = 0xef53;

const COMPAT_HAS_JOURNAL: u32 = 0x0004;

const RO_COMPAT_SPARSE_SUPER: u32 = 0x0001;
const RO_COMPAT_LARGE_FILE: u32 = 0x0002;
const RO_COMPAT_BTREE_DIR: u32 = 0x0004;
const RO_COMPAT_METADATA_CSUM: u32 = 0x0400;

const INCOMPAT_FILETYPE: u32 = 0x0002;
const INCOMPAT_RECOVER: u32 = 0x0004;
const INCOMPAT_JOURNAL_DEV: u32 = 0x0008;
const INCOMPAT_META_BG: u32 = 0x0010;
const INCOMPAT_EXTENTS: u32 = 0x0040;
const INCOMPAT_64BIT: u32 = 0x0080;
const INCOMPAT_MMP: u32 = 0x0100;
const INCOMPAT_FLEX_BG: u32 = 0x0200;
const INCOMPAT_CSUM_SEED: u32 = 0x2000;
const INCOMPAT_LARGEDIR: u32 = 0x4000;
const INCOMPAT_ENCRYPT: u32 = 0x10000;

/// The incompatible features hnroot's GRUB (Debian's 2.12, `grub-core/fs/ext2.c`) reads
/// (`EXT2_DRIVER_SUPPORTED_INCOMPAT`) or may ignore (`EXT2_DRIVER_IGNORED_INCOMPAT`: a journal
/// to recover, MMP, the checksum seed, large directories); a filesystem with any other is one
/// GRUB refuses to open ("filesystem has unsupported incompatible features").
pub const GRUB_READS_INCOMPAT: u32 = INCOMPAT_FILETYPE
    | INCOMPAT_EXTENTS
    | INCOMPAT_FLEX_BG
    | INCOMPAT_META_BG
    | INCOMPAT_64BIT
    | INCOMPAT_ENCRYPT
    | INCOMPAT_RECOVER
    | INCOMPAT_MMP
    | INCOMPAT_CSUM_SEED
    | INCOMPAT_LARGEDIR;

crate::codes::notes! {
    /// Incompatible ext features GRUB cannot read (everything outside [`GRUB_READS_INCOMPAT`]);
    /// each known one by its e2fsprogs name, which `mkfs.ext4 -O ^NAME` turns off.
    pub struct ExtFeatures: u32 {
        /// Per-file compression (never finished in Linux).
        const COMPRESSION = 0x0001 => ("compression", "compression");
        /// The filesystem is an external journal.
        const JOURNAL_DEV = INCOMPAT_JOURNAL_DEV => ("journal_dev", "journal_dev (an external journal)");
        /// Extended attributes in inodes of their own.
        const EA_INODE = 0x0400 => ("ea_inode", "ea_inode (large extended attributes in inodes of their own)");
        /// Extra data in directory entries (Lustre).
        const DIRDATA = 0x1000 => ("dirdata", "dirdata (data in directory entries)");
        /// Small files and directories stored in their inode.
        const INLINE_DATA = 0x8000 => ("inline_data", "inline_data (small files kept in their inode)");
        /// Case-insensitive directories.
        const CASEFOLD = 0x20000 => ("casefold", "casefold (case-insensitive directories)");
    }
}

impl ExtFeatures {
    /// The features of `incompat` GRUB cannot read (unknown bits kept).
    pub const fn grub_lacks(incompat: u32) -> ExtFeatures {
        ExtFeatures::from_bits_retain(incompat & !GRUB_READS_INCOMPAT)
    }

    /// Those `mke2fs` (e2fsprogs 1.47) can turn on, from its options or a distribution's
    /// `mke2fs.conf`: what `hnroot image build` and `hnroot install` turn off by name
    /// (`mkfs.ext4 -O ^NAME`; mke2fs refuses the names of the others, which it never sets).
    pub const MKE2FS_SETS: ExtFeatures = ExtFeatures::EA_INODE
        .union(ExtFeatures::INLINE_DATA)
        .union(ExtFeatures::CASEFOLD);

    /// Bits set that no known feature names.
    pub const fn unknown_bits(self) -> u32 {
        self.bits() & !ExtFeatures::all().bits()
    }
}

/// Largest `s_log_block_size` the kernel mounts: 64 KiB blocks.
const MAX_LOG_BLOCK_SIZE: u32 = 6;

/// `s_flags`: the filesystem is for in-development code (`tune2fs -E test_fs`).
const FLAGS_TEST_FILESYS: u32 = 0x0004;

/// Read-only-compatible features ext2 and ext3 both understand.
const EXT23_RO_COMPAT_SUPP: u32 =
    RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE | RO_COMPAT_BTREE_DIR;
/// Incompatible features ext2 understands.
const EXT2_INCOMPAT_SUPP: u32 = INCOMPAT_FILETYPE | INCOMPAT_META_BG;
/// Incompatible features ext3 understands.
const EXT3_INCOMPAT_SUPP: u32 = INCOMPAT_FILETYPE | INCOMPAT_RECOVER | INCOMPAT_META_BG;

/// Why 1024 bytes are not an ext superblock.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ExtReject {
    /// Fewer than [`SB_LEN`] bytes.
    TooShort {
        /// Bytes given.
        len: usize,
    },
    /// `s_magic` is not 0xEF53.
    Magic {
        /// Value found.
        found: u16,
    },
    /// `metadata_csum` is set and the CRC32C of the superblock does not match `s_checksum`.
    Checksum {
        /// `s_checksum`.
        stored: u32,
        /// CRC32C computed over bytes 0..1020.
        computed: u32,
    },
    /// The feature flags fit none of ext2, ext3, ext4, ext4dev, jbd.
    Features {
        /// `s_feature_compat`.
        compat: u32,
        /// `s_feature_incompat`.
        incompat: u32,
        /// `s_feature_ro_compat`.
        ro_compat: u32,
    },
}

impl fmt::Display for ExtReject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExtReject::TooShort { len } => {
                write!(f, "ext superblock needs {SB_LEN} bytes, got {len}")
            }
            ExtReject::Magic { found } => write!(f, "ext magic 0xef53 not found ({found:#06x})"),
            ExtReject::Checksum { stored, computed } => write!(
                f,
                "ext superblock checksum mismatch (stored {stored:08x}, computed {computed:08x})"
            ),
            ExtReject::Features {
                compat,
                incompat,
                ro_compat,
            } => write!(
                f,
                "ext feature set fits no ext type (compat {compat:#x}, incompat {incompat:#x}, ro_compat {ro_compat:#x})"
            ),
        }
    }
}

/// A valid ext superblock: the libblkid types it matches (in libblkid's order; two of them
/// at once, e.g. `ext4dev` and `ext2`, is libblkid's "ambivalent result"), label and UUID.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ExtSuperblock {
    /// Every ext type whose libblkid prober accepts this superblock; never empty.
    pub types: FsTypes,
    /// `s_volume_name`.
    pub label: Option<Label>,
    /// `s_uuid`, unless all zero.
    pub uuid: Option<FsUuid>,
    /// Bytes the filesystem spans from the start of the device: `s_blocks_count` (with its
    /// high half on a 64-bit filesystem) times the block size; `None` when the block size is
    /// beyond the kernel's 64 KiB or the product overflows.
    pub size: Option<u64>,
    /// The block size (1 KiB to 64 KiB), the smallest unit it reads and writes; `None` beyond
    /// the kernel's 64 KiB.
    pub block_size: Option<u32>,
    /// The incompatible features it uses that GRUB cannot read.
    pub grub_lacks: ExtFeatures,
}

/// Parse the [`SB_LEN`] bytes at [`SB_OFFSET`].
pub fn parse(sb: &[u8]) -> Result<ExtSuperblock, ExtReject> {
    let f = Fields::new(sb, SB_LEN).ok_or(ExtReject::TooShort { len: sb.len() })?;
    let magic = f.le16(S_MAGIC);
    if magic != MAGIC {
        return Err(ExtReject::Magic { found: magic });
    }
    let compat = f.le32(S_FEATURE_COMPAT);
    let incompat = f.le32(S_FEATURE_INCOMPAT);
    let ro_compat = f.le32(S_FEATURE_RO_COMPAT);
    if ro_compat & RO_COMPAT_METADATA_CSUM != 0 {
        let stored = f.le32(S_CHECKSUM);
        // ext4 stores the raw CRC32C register (seed !0, no final inversion).
        let computed = !CRC32C.checksum(f.bytes(0..S_CHECKSUM.start));
        if stored != computed {
            return Err(ExtReject::Checksum { stored, computed });
        }
    }
    let types = classify(compat, incompat, ro_compat, f.le32(S_FLAGS));
    if types.is_empty() {
        return Err(ExtReject::Features {
            compat,
            incompat,
            ro_compat,
        });
    }
    let name = f.bytes(S_VOLUME_NAME);
    let label = if name.first().is_some_and(|&b| b != 0) {
        Label::from_field(name, Trim::Right)
    } else {
        None
    };
    let uuid = f.array::<16>(S_UUID);
    Ok(ExtSuperblock {
        types,
        label,
        uuid: (uuid != [0; 16]).then_some(FsUuid::Uuid(uuid)),
        size: extent(&f, incompat),
        block_size: block_size(&f),
        grub_lacks: ExtFeatures::grub_lacks(incompat),
    })
}

/// 1024 << `s_log_block_size`, unless beyond the kernel's 64 KiB.
fn block_size(f: &Fields<'_>) -> Option<u32> {
    let log = f.le32(S_LOG_BLOCK_SIZE);
    (log <= MAX_LOG_BLOCK_SIZE).then(|| 1024u32 << log)
}

/// `s_blocks_count` × block size, as the kernel compares it with the device size at mount.
fn extent(f: &Fields<'_>, incompat: u32) -> Option<u64> {
    let block_size = u64::from(block_size(f)?);
    let hi = if incompat & INCOMPAT_64BIT != 0 {
        u64::from(f.le32(S_BLOCKS_COUNT_HI))
    } else {
        0
    };
    let blocks = (hi << 32) | u64::from(f.le32(S_BLOCKS_COUNT_LO));
    blocks.checked_mul(block_size)
}

/// Which of libblkid's ext probers accept these features (`probe_ext4dev`, `probe_ext4`,
/// `probe_ext3`, `probe_ext2`, `probe_jbd`).
fn classify(compat: u32, incompat: u32, ro_compat: u32, flags: u32) -> FsTypes {
    let journal = compat & COMPAT_HAS_JOURNAL != 0;
    let journal_dev = incompat & INCOMPAT_JOURNAL_DEV != 0;
    let test_fs = flags & FLAGS_TEST_FILESYS != 0;
    let ro_beyond_ext23 = ro_compat & !EXT23_RO_COMPAT_SUPP != 0;
    let beyond_ext3 = ro_beyond_ext23 || incompat & !EXT3_INCOMPAT_SUPP != 0;
    let beyond_ext2 = ro_beyond_ext23 || incompat & !EXT2_INCOMPAT_SUPP != 0;

    let mut types = FsTypes::EMPTY;
    if !journal_dev && test_fs {
        types.insert(FsType::Ext4dev);
    }
    if !journal_dev && beyond_ext3 && !test_fs {
        types.insert(FsType::Ext4);
    }
    if journal && !beyond_ext3 {
        types.insert(FsType::Ext3);
    }
    if !journal && !beyond_ext2 {
        types.insert(FsType::Ext2);
    }
    if journal_dev {
        types.insert(FsType::Jbd);
    }
    types
}

#[cfg(test)]
// Test fixtures compute offsets freely; a panic there is a failed test.
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    /// A superblock built field by field: ext4 as mkfs.ext4 1.47 makes it, with a label.
    fn ext4_sb() -> [u8; SB_LEN] {
        let mut sb = [0u8; SB_LEN];
        sb[S_MAGIC].copy_from_slice(&MAGIC.to_le_bytes());
        sb[S_FEATURE_COMPAT].copy_from_slice(&0x3cu32.to_le_bytes());
        sb[S_FEATURE_INCOMPAT].copy_from_slice(&0x2c2u32.to_le_bytes());
        sb[S_FEATURE_RO_COMPAT].copy_from_slice(&0x46bu32.to_le_bytes());
        sb[S_UUID].copy_from_slice(&[0x11; 16]);
        sb[S_VOLUME_NAME][..8].copy_from_slice(b"hostpart");
        seal(&mut sb);
        sb
    }

    fn seal(sb: &mut [u8; SB_LEN]) {
        let crc = !CRC32C.checksum(&sb[..S_CHECKSUM.start]);
        sb[S_CHECKSUM].copy_from_slice(&crc.to_le_bytes());
    }

    fn set32(sb: &mut [u8; SB_LEN], r: Range<usize>, v: u32) {
        sb[r].copy_from_slice(&v.to_le_bytes());
        seal(sb);
    }

    #[test]
    fn ext4_with_label() {
        let got = parse(&ext4_sb()).unwrap();
        assert_eq!(got.types, FsTypes::of(FsType::Ext4));
        assert_eq!(got.label.unwrap().as_bytes(), b"hostpart");
        assert_eq!(got.uuid, Some(FsUuid::Uuid([0x11; 16])));
    }

    #[test]
    fn the_features_grub_cannot_read_are_named() {
        // mkfs.ext4 1.47's defaults (filetype, extents, 64bit, flex_bg) and everything GRUB
        // reads or ignores: nothing lacking.
        assert_eq!(parse(&ext4_sb()).unwrap().grub_lacks, ExtFeatures::empty());
        assert!(ExtFeatures::grub_lacks(GRUB_READS_INCOMPAT).is_empty());
        // inline_data and casefold (what a distribution's mke2fs.conf may turn on), and a bit
        // no feature has yet.
        let mut sb = ext4_sb();
        set32(
            &mut sb,
            S_FEATURE_INCOMPAT,
            0x2c2 | 0x8000 | 0x20000 | 0x4000_0000,
        );
        let lacks = parse(&sb).unwrap().grub_lacks;
        assert_eq!(
            lacks & ExtFeatures::all(),
            ExtFeatures::INLINE_DATA | ExtFeatures::CASEFOLD
        );
        assert_eq!(lacks.unknown_bits(), 0x4000_0000);
        assert_eq!(
            lacks.codes().collect::<std::vec::Vec<_>>(),
            ["inline_data", "casefold"]
        );
        assert!(ExtFeatures::MKE2FS_SETS.contains(ExtFeatures::INLINE_DATA));
    }

    #[test]
    fn corrupt_checksum_is_refused() {
        let mut sb = ext4_sb();
        sb[S_VOLUME_NAME][0] = b'H';
        assert!(matches!(parse(&sb), Err(ExtReject::Checksum { .. })));
    }

    #[test]
    fn short_and_wrong_magic() {
        assert_eq!(
            parse(&ext4_sb()[..1000]),
            Err(ExtReject::TooShort { len: 1000 })
        );
        let mut sb = ext4_sb();
        sb[S_MAGIC.start] = 0x54;
        assert_eq!(parse(&sb), Err(ExtReject::Magic { found: 0xef54 }));
    }

    #[test]
    fn the_ext_family() {
        // ext3: journal, nothing ext3 does not know.
        let mut sb = ext4_sb();
        set32(&mut sb, S_FEATURE_RO_COMPAT, RO_COMPAT_SPARSE_SUPER);
        set32(&mut sb, S_FEATURE_INCOMPAT, INCOMPAT_FILETYPE);
        assert_eq!(parse(&sb).unwrap().types, FsTypes::of(FsType::Ext3));
        // ext2: no journal.
        set32(&mut sb, S_FEATURE_COMPAT, 0);
        assert_eq!(parse(&sb).unwrap().types, FsTypes::of(FsType::Ext2));
        // ext2 with test_fs: ext4dev and ext2 at once (libblkid: ambivalent).
        set32(&mut sb, S_FLAGS, FLAGS_TEST_FILESYS);
        let both = parse(&sb).unwrap().types;
        assert!(both.contains(FsType::Ext4dev) && both.contains(FsType::Ext2));
        assert_eq!(both.len(), 2);
        // jbd: an external journal.
        set32(&mut sb, S_FLAGS, 0);
        set32(&mut sb, S_FEATURE_INCOMPAT, INCOMPAT_JOURNAL_DEV);
        assert_eq!(parse(&sb).unwrap().types, FsTypes::of(FsType::Jbd));
        // ext4 features with test_fs: ext4dev only.
        let mut sb = ext4_sb();
        set32(&mut sb, S_FLAGS, FLAGS_TEST_FILESYS);
        assert_eq!(parse(&sb).unwrap().types, FsTypes::of(FsType::Ext4dev));
    }

    #[test]
    fn empty_label_and_nil_uuid_are_absent() {
        let mut sb = ext4_sb();
        sb[S_VOLUME_NAME].fill(0);
        sb[S_UUID].fill(0);
        seal(&mut sb);
        let got = parse(&sb).unwrap();
        assert_eq!(got.label, None);
        assert_eq!(got.uuid, None);
    }

    #[test]
    fn size_is_block_count_times_block_size() {
        let mut sb = ext4_sb();
        // 1 KiB blocks (s_log_block_size 0), 8192 of them.
        set32(&mut sb, S_BLOCKS_COUNT_LO, 8192);
        assert_eq!(parse(&sb).unwrap().size, Some(8 << 20));
        assert_eq!(parse(&sb).unwrap().block_size, Some(1024));
        // 4 KiB blocks; the high half counts only on a 64-bit filesystem (mkfs.ext4's 0x2c2
        // includes 64bit).
        set32(&mut sb, S_LOG_BLOCK_SIZE, 2);
        set32(&mut sb, S_BLOCKS_COUNT_HI, 1);
        set32(&mut sb, S_FEATURE_INCOMPAT, 0x2c2 & !INCOMPAT_64BIT);
        assert_eq!(parse(&sb).unwrap().size, Some(8192 * 4096));
        set32(&mut sb, S_FEATURE_INCOMPAT, 0x2c2);
        assert_eq!(parse(&sb).unwrap().size, Some(((1 << 32) + 8192) * 4096));
        assert_eq!(parse(&sb).unwrap().block_size, Some(4096));
        // A block size the kernel refuses gives no size nor unit, not a wrong one.
        set32(&mut sb, S_LOG_BLOCK_SIZE, 7);
        assert_eq!(parse(&sb).unwrap().size, None);
        assert_eq!(parse(&sb).unwrap().block_size, None);
    }
}
