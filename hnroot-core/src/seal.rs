//! Sealed images: the seal block at the end of an image file, the signed manifest in it, the
//! dm-verity geometry it promises, and the judgement of one image's seal. It decides whether a
//! seal holds for the bytes a driver observed; it never reads the image, hashes a kernel or
//! sets up device-mapper (GRUB's `hnroot.mod`, `hnroot-init` and the CLI do, and hand the facts
//! in).
//!
//! ## The layout, and why it is one file
//!
//! A sealed image is one file on hostpart, in this order:
//!
//! | bytes | what |
//! |---|---|
//! | `0 .. data_bytes` | the filesystem (its size rounded up to 4 KiB) |
//! | `hash_offset .. hash_offset + tree` | dm-verity's hash tree (`veritysetup format --no-superblock`, SHA-256, 4 KiB blocks), `hash_offset == data_bytes` |
//! | the last 4 KiB, right after the tree | the seal block: magic, the manifest, its minisign signature |
//!
//! The hash tree and the seal travel inside the image file rather than beside it because every
//! hnroot operation moves images by renaming one file (a switch, a revert, a rollback: each
//! rename atomic, each intermediate state a valid input to the decision); a second file would
//! need a second rename that a power cut can separate from the first. `hnroot stage` copies, signs
//! off and judges one file; the whole-file minisign signature the publisher makes after sealing
//! covers the tree and the seal too; `status` and `history` name one file; a delta transfer
//! sends blocks of one file. Filesystems and GRUB ignore bytes past the end of the filesystem, so
//! a sealed image still mounts and boots as an unsealed one would.
//!
//! ## The seal block (4096 bytes)
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 8 | magic `HNSEAL` 0 1 |
//! | 8 | 2 | manifest length, little-endian |
//! | 10 | 2 | signature length, little-endian |
//! | 12 | 4 | zero |
//! | 16 | manifest length | the manifest (text, below) |
//! | then | signature length | the manifest's `.minisig` text |
//! | rest | | zero |
//!
//! ## The manifest (signed)
//!
//! Text, one `key value` per line, every key once, in this order:
//!
//! ```text
//! hnroot-seal 1
//! image-version 1.10
//! uuid 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0
//! kernel-sha256 <64 hex>
//! initramfs-sha256 <64 hex>
//! verity-data-bytes <bytes>
//! verity-hash-offset <bytes>
//! verity-data-block-size 4096
//! verity-hash-block-size 4096
//! verity-algorithm sha256
//! verity-salt <hex, up to 64 bytes>
//! verity-root-hash <64 hex>
//! ```
//!
//! The image's version is this `image-version` (bound by the signature), compared by
//! [`crate::version::compare`].

use crate::loader::Writer;
use crate::minisig::{KeyId, MinisigError, PublicKey, Signature};
use crate::uuid::FsUuid;
use core::fmt::{self, Write as _};
use core::ops::Range;

/// The seal block's size: the last this many bytes of a sealed image file.
pub const SEAL_BLOCK_LEN: usize = 4096;
const B_MAGIC: Range<usize> = 0..8;
const B_MANIFEST_LEN: Range<usize> = 8..10;
const B_SIGNATURE_LEN: Range<usize> = 10..12;
const B_RESERVED: Range<usize> = 12..16;
const B_BODY: usize = 16;
/// The seal block's magic.
pub const MAGIC: [u8; 8] = *b"HNSEAL\x00\x01";
/// The manifest format this hnroot writes and reads.
pub const MANIFEST_FORMAT: u32 = 1;
/// The longest manifest.
pub const MANIFEST_MAX: usize = 1024;
/// The longest version string.
pub const VERSION_MAX: usize = 64;
/// The longest salt, in bytes.
pub const SALT_MAX: usize = 64;
/// dm-verity block size hnroot seals with (data and hash).
pub const VERITY_BLOCK: u32 = 4096;
const DIGEST_LEN: u64 = 32;

/// An image version, as the manifest states it: 1 to [`VERSION_MAX`] bytes of ASCII letters,
/// digits and `. , _ - + ~ ^` (systemd's version characters).
pub type Version = heapless::String<VERSION_MAX>;

/// Whether `text` is a version hnroot accepts in a manifest (and in the floor file).
pub fn version_is_valid(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= VERSION_MAX
        && text
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".,_-+~^".contains(&c))
}

/// What a seal promises about dm-verity.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Verity {
    /// Bytes of data the tree covers (the filesystem, rounded up to [`VERITY_BLOCK`]).
    pub data_bytes: u64,
    /// Where the tree starts in the image file.
    pub hash_offset: u64,
    /// The salt.
    pub salt: heapless::Vec<u8, SALT_MAX>,
    /// The root hash.
    pub root_hash: [u8; 32],
}

impl Verity {
    /// Data blocks the tree covers.
    pub fn data_blocks(&self) -> u64 {
        self.data_bytes
            .checked_div(u64::from(VERITY_BLOCK))
            .unwrap_or(0)
    }

    /// The tree's first hash block (dm-verity's `hash_start_block`).
    pub fn hash_start_block(&self) -> u64 {
        self.hash_offset
            .checked_div(u64::from(VERITY_BLOCK))
            .unwrap_or(0)
    }

    /// The 512-byte sectors of the verified device (the data the tree covers).
    pub fn sectors(&self) -> u64 {
        self.data_bytes.checked_div(512).unwrap_or(0)
    }

    /// dm-verity's table parameters for the image attached at `device` (data and tree on the
    /// one device, the tree at [`Verity::hash_start_block`]): format 1, 4 KiB blocks, SHA-256,
    /// the root hash and salt. No optional arguments: a block that does not match its hash
    /// fails its read with an I/O error (never `restart_on_corruption` or
    /// `ignore_corruption`).
    pub fn dm_table<'a>(&'a self, device: &'a str) -> impl fmt::Display + 'a {
        DmTable {
            verity: self,
            device,
        }
    }

    /// Where the seal block starts: right after the tree.
    pub fn seal_offset(&self) -> Option<u64> {
        let tree = tree_blocks(self.data_blocks())?.checked_mul(u64::from(VERITY_BLOCK))?;
        self.hash_offset.checked_add(tree)
    }
}

/// The hash blocks of a dm-verity tree over `data_blocks` blocks, SHA-256, 4 KiB hash blocks,
/// every level (cryptsetup's `hash_levels`: 128 digests per block).
pub fn tree_blocks(data_blocks: u64) -> Option<u64> {
    let per_block_bits: u32 = (u64::from(VERITY_BLOCK) / DIGEST_LEN).trailing_zeros();
    let mut levels: u32 = 0;
    while per_block_bits.checked_mul(levels)? < 64
        && data_blocks.checked_sub(1)? >> per_block_bits.checked_mul(levels)? != 0
    {
        levels = levels.checked_add(1)?;
    }
    let mut total: u64 = 0;
    for level in 0..levels {
        let shift = per_block_bits.checked_mul(level.checked_add(1)?)?;
        if shift > 63 {
            return None;
        }
        let blocks = data_blocks.checked_add((1u64 << shift).checked_sub(1)?)? >> shift;
        total = total.checked_add(blocks)?;
    }
    Some(total)
}

/// A seal's manifest.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Manifest {
    /// The image's version.
    pub version: Version,
    /// The image's filesystem UUID.
    pub uuid: FsUuid,
    /// SHA-256 of `/boot/kernel` in the image.
    pub kernel_sha256: [u8; 32],
    /// SHA-256 of `/boot/initramfs` in the image.
    pub initramfs_sha256: [u8; 32],
    /// The dm-verity tree.
    pub verity: Verity,
}

crate::codes::stable_codes! {
    /// Why a seal does not hold: the stable codes of `status`, `history`, GRUB's record.
    pub enum SealProblem {
        /// The seal block is not one hnroot reads (lengths, reserved bytes, padding).
        Block = 1 => "seal-block-malformed",
        /// The manifest is not one hnroot reads.
        Manifest = 2 => "seal-manifest-malformed",
        /// The manifest's signature is not a minisign signature.
        Signature = 3 => "seal-signature-malformed",
        /// The manifest was signed by no trusted key.
        UnknownKey = 4 => "seal-unknown-key",
        /// The signature does not verify with the trusted key whose ID it names.
        BadSignature = 5 => "seal-bad-signature",
        /// The manifest names another filesystem UUID than the image has.
        Uuid = 6 => "seal-uuid-mismatch",
        /// The file's size or the filesystem's does not match the manifest's layout.
        Layout = 7 => "seal-layout-mismatch",
        /// `/boot/kernel`'s SHA-256 is not the manifest's.
        Kernel = 8 => "seal-kernel-mismatch",
        /// `/boot/initramfs`'s SHA-256 is not the manifest's.
        Initramfs = 9 => "seal-initramfs-mismatch",
        /// Sealed images are required and this one is not sealed.
        Unsealed = 10 => "unsealed",
        /// The root hash the loader passed is not the image's seal's (`hnroot-init`: the image
        /// changed between the loader's check and the mount, or is another image).
        RootHash = 11 => "seal-root-hash-mismatch",
    }
}

/// A refused seal: the code and a short detail.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SealError {
    /// The stable code.
    pub problem: SealProblem,
    /// What exactly (a field, a limit).
    pub detail: &'static str,
}

impl core::error::Error for SealError {}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.problem, self.detail)
    }
}

const fn err(problem: SealProblem, detail: &'static str) -> SealError {
    SealError { problem, detail }
}

/// The two parts of a seal block.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SealBlock<'a> {
    /// The manifest text.
    pub manifest: &'a [u8],
    /// Its `.minisig` text.
    pub signature: &'a [u8],
}

fn le16(b: &[u8], at: Range<usize>) -> Option<usize> {
    let s = b.get(at)?;
    Some(usize::from(u16::from_le_bytes([*s.first()?, *s.get(1)?])))
}

/// Reads a seal block: `Ok(None)` when it does not start with the magic (an unsealed image);
/// lengths, reserved bytes and zero padding checked before the parts are handed out.
pub fn read_block(block: &[u8]) -> Result<Option<SealBlock<'_>>, SealError> {
    if block.len() != SEAL_BLOCK_LEN {
        return Err(err(SealProblem::Block, "not 4096 bytes"));
    }
    if block.get(B_MAGIC) != Some(&MAGIC[..]) {
        return Ok(None);
    }
    let bad = |what| err(SealProblem::Block, what);
    let manifest_len = le16(block, B_MANIFEST_LEN).ok_or(bad("manifest length"))?;
    let signature_len = le16(block, B_SIGNATURE_LEN).ok_or(bad("signature length"))?;
    if block
        .get(B_RESERVED)
        .is_none_or(|r| r.iter().any(|&b| b != 0))
    {
        return Err(bad("reserved bytes not zero"));
    }
    if manifest_len == 0 || manifest_len > MANIFEST_MAX || signature_len == 0 {
        return Err(bad("manifest or signature length out of range"));
    }
    let manifest_end = B_BODY
        .checked_add(manifest_len)
        .ok_or(bad("manifest length"))?;
    let end = manifest_end
        .checked_add(signature_len)
        .ok_or(bad("signature length"))?;
    let manifest = block
        .get(B_BODY..manifest_end)
        .ok_or(bad("manifest past the block"))?;
    let signature = block
        .get(manifest_end..end)
        .ok_or(bad("signature past the block"))?;
    if block.get(end..).is_none_or(|p| p.iter().any(|&b| b != 0)) {
        return Err(bad("padding not zero"));
    }
    Ok(Some(SealBlock {
        manifest,
        signature,
    }))
}

/// Writes a seal block of `manifest` and `signature` into `out`.
pub fn write_block(
    manifest: &[u8],
    signature: &[u8],
    out: &mut [u8; SEAL_BLOCK_LEN],
) -> Result<(), SealError> {
    let too_long = err(
        SealProblem::Block,
        "manifest and signature longer than the block",
    );
    if manifest.is_empty() || manifest.len() > MANIFEST_MAX || signature.is_empty() {
        return Err(too_long);
    }
    let manifest_end = B_BODY.checked_add(manifest.len()).ok_or(too_long)?;
    let end = manifest_end.checked_add(signature.len()).ok_or(too_long)?;
    out.fill(0);
    out.get_mut(B_MAGIC)
        .ok_or(too_long)?
        .copy_from_slice(&MAGIC);
    let m = u16::try_from(manifest.len()).map_err(|_| too_long)?;
    let s = u16::try_from(signature.len()).map_err(|_| too_long)?;
    out.get_mut(B_MANIFEST_LEN)
        .ok_or(too_long)?
        .copy_from_slice(&m.to_le_bytes());
    out.get_mut(B_SIGNATURE_LEN)
        .ok_or(too_long)?
        .copy_from_slice(&s.to_le_bytes());
    out.get_mut(B_BODY..manifest_end)
        .ok_or(too_long)?
        .copy_from_slice(manifest);
    out.get_mut(manifest_end..end)
        .ok_or(too_long)?
        .copy_from_slice(signature);
    Ok(())
}

struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

fn unhex_into(text: &str, out: &mut [u8]) -> Option<usize> {
    let t = text.as_bytes();
    if t.len() % 2 != 0 || t.len() / 2 > out.len() {
        return None;
    }
    for (i, pair) in t.chunks_exact(2).enumerate() {
        let hi = char::from(*pair.first()?).to_digit(16)?;
        let lo = char::from(*pair.get(1)?).to_digit(16)?;
        // Lower-case only: one spelling per manifest.
        if pair.iter().any(|c| c.is_ascii_uppercase()) {
            return None;
        }
        *out.get_mut(i)? = u8::try_from(hi.checked_mul(16)?.checked_add(lo)?).ok()?;
    }
    Some(t.len() / 2)
}

/// 64 lower-case hex digits as 32 bytes (a manifest's hashes, `hnroot.roothash=`).
pub(crate) fn hash32(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    (unhex_into(text, &mut out)? == 32).then_some(out)
}

/// Canonical decimal: digits only, no leading zero (so one manifest has one spelling).
fn decimal(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 20 || (text.len() > 1 && text.starts_with('0')) {
        return None;
    }
    if !text.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

const KEYS: [&str; 12] = [
    "hnroot-seal",
    "image-version",
    "uuid",
    "kernel-sha256",
    "initramfs-sha256",
    "verity-data-bytes",
    "verity-hash-offset",
    "verity-data-block-size",
    "verity-hash-block-size",
    "verity-algorithm",
    "verity-salt",
    "verity-root-hash",
];

impl Manifest {
    /// Reads a manifest: UTF-8, at most [`MANIFEST_MAX`] bytes, every line `key value` with the
    /// keys in their one order, each value in its one spelling, the layout consistent.
    pub fn parse(text: &[u8]) -> Result<Manifest, SealError> {
        let bad = |what| err(SealProblem::Manifest, what);
        if text.len() > MANIFEST_MAX {
            return Err(bad("longer than 1024 bytes"));
        }
        let text = core::str::from_utf8(text).map_err(|_| bad("not UTF-8"))?;
        let body = text.strip_suffix('\n').ok_or(bad("no final newline"))?;
        let mut values = [""; KEYS.len()];
        let mut lines = body.split('\n');
        for (slot, key) in values.iter_mut().zip(KEYS) {
            let line = lines.next().ok_or(bad("a line is missing"))?;
            let (k, v) = line.split_once(' ').ok_or(bad("a line without a value"))?;
            if k != key {
                return Err(bad("a key out of order or unknown"));
            }
            *slot = v;
        }
        if lines.next().is_some() {
            return Err(bad("lines after verity-root-hash"));
        }
        let [format, version, uuid, kernel, initramfs, data_bytes, hash_offset, data_block, hash_block, algorithm, salt, root] =
            values;
        if decimal(format) != Some(u64::from(MANIFEST_FORMAT)) {
            return Err(bad("hnroot-seal is not format 1"));
        }
        if !version_is_valid(version) {
            return Err(bad("image-version is not a version"));
        }
        let version = Version::try_from(version).map_err(|_| bad("image-version too long"))?;
        if uuid.bytes().any(|c| c.is_ascii_uppercase()) {
            return Err(bad("uuid"));
        }
        let uuid = FsUuid::parse(uuid).map_err(|_| bad("uuid"))?;
        let kernel_sha256 = hash32(kernel).ok_or(bad("kernel-sha256"))?;
        let initramfs_sha256 = hash32(initramfs).ok_or(bad("initramfs-sha256"))?;
        let block = Some(u64::from(VERITY_BLOCK));
        if decimal(data_block) != block || decimal(hash_block) != block {
            return Err(bad("verity block sizes are not 4096"));
        }
        if algorithm != "sha256" {
            return Err(bad("verity-algorithm is not sha256"));
        }
        let mut salt_bytes = [0u8; SALT_MAX];
        let salt_len = unhex_into(salt, &mut salt_bytes).ok_or(bad("verity-salt"))?;
        let salt = heapless::Vec::from_slice(salt_bytes.get(..salt_len).ok_or(bad("verity-salt"))?)
            .map_err(|_| bad("verity-salt"))?;
        let verity = Verity {
            data_bytes: decimal(data_bytes).ok_or(bad("verity-data-bytes"))?,
            hash_offset: decimal(hash_offset).ok_or(bad("verity-hash-offset"))?,
            salt,
            root_hash: hash32(root).ok_or(bad("verity-root-hash"))?,
        };
        let whole_blocks = |n: u64| n != 0 && n.checked_rem(u64::from(VERITY_BLOCK)) == Some(0);
        if !whole_blocks(verity.data_bytes) || verity.hash_offset != verity.data_bytes {
            return Err(bad(
                "verity data must be whole blocks with the tree right after it",
            ));
        }
        verity
            .seal_offset()
            .ok_or(bad("verity tree size overflows"))?;
        Ok(Manifest {
            version,
            uuid,
            kernel_sha256,
            initramfs_sha256,
            verity,
        })
    }

    /// Writes the manifest in its one spelling; returns its length.
    pub fn write(&self, out: &mut [u8]) -> Result<usize, SealError> {
        let v = &self.verity;
        let mut w = Writer { out, at: 0 };
        write!(
            w,
            "hnroot-seal {MANIFEST_FORMAT}\nimage-version {}\nuuid {}\nkernel-sha256 {}\n\
             initramfs-sha256 {}\nverity-data-bytes {}\nverity-hash-offset {}\n\
             verity-data-block-size {VERITY_BLOCK}\nverity-hash-block-size {VERITY_BLOCK}\n\
             verity-algorithm sha256\nverity-salt {}\nverity-root-hash {}\n",
            self.version,
            self.uuid,
            Hex(&self.kernel_sha256),
            Hex(&self.initramfs_sha256),
            v.data_bytes,
            v.hash_offset,
            Hex(&v.salt),
            Hex(&v.root_hash),
        )
        .map_err(|_| err(SealProblem::Manifest, "longer than the buffer"))?;
        if w.at > MANIFEST_MAX {
            return Err(err(SealProblem::Manifest, "longer than 1024 bytes"));
        }
        Ok(w.at)
    }

    /// The root hash in hex, as the kernel command line and `veritysetup` take it.
    pub fn root_hash_hex(&self) -> impl fmt::Display + '_ {
        Hex(&self.verity.root_hash)
    }

    /// The salt in hex (`-` for none, as dm-verity's table takes it).
    pub fn salt_hex(&self) -> impl fmt::Display + '_ {
        SaltHex(&self.verity.salt)
    }
}

struct DmTable<'a> {
    verity: &'a Verity,
    device: &'a str,
}

impl fmt::Display for DmTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.verity;
        write!(
            f,
            "1 {dev} {dev} {VERITY_BLOCK} {VERITY_BLOCK} {} {} sha256 {} {}",
            v.data_blocks(),
            v.hash_start_block(),
            Hex(&v.root_hash),
            SaltHex(&v.salt),
            dev = self.device,
        )
    }
}

struct SaltHex<'a>(&'a [u8]);

impl fmt::Display for SaltHex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("-")
        } else {
            Hex(self.0).fmt(f)
        }
    }
}

/// What a driver observed of one image to judge its seal.
#[derive(Clone, Copy, Debug)]
pub struct SealFacts<'a> {
    /// The image file's size.
    pub file_len: u64,
    /// Its last [`SEAL_BLOCK_LEN`] bytes (`None` when the file is shorter).
    pub last_block: Option<&'a [u8]>,
    /// The filesystem UUID the probe found.
    pub fs_uuid: FsUuid,
    /// The filesystem's size by its superblock.
    pub fs_bytes: u64,
}

/// An image's seal as judged.
// The manifest is kept by value: the core allocates nothing, so no box.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum SealSeen {
    /// No seal block: the image boots as an unsealed image (unless sealed images are required).
    Unsealed,
    /// The seal holds: the manifest verified with a trusted key and matches the file.
    Sealed {
        /// The manifest.
        manifest: Manifest,
        /// The key that signed it.
        key_id: KeyId,
    },
    /// A seal block is there and does not hold: the image is not bootable.
    Broken(SealError),
}

/// Judges one image's seal against the trusted keys: the block read, the signature verified
/// with the trusted key it names, the manifest read, its UUID and layout compared with the file.
/// Kernel and initramfs hashes are compared later, as they are read ([`check_boot_file`]).
pub fn judge(facts: &SealFacts, keys: &[PublicKey]) -> SealSeen {
    match judge_inner(facts, keys) {
        Ok(None) => SealSeen::Unsealed,
        Ok(Some((manifest, key_id))) => SealSeen::Sealed { manifest, key_id },
        Err(e) => SealSeen::Broken(e),
    }
}

fn judge_inner(
    facts: &SealFacts,
    keys: &[PublicKey],
) -> Result<Option<(Manifest, KeyId)>, SealError> {
    let Some(block) = facts.last_block else {
        return Ok(None);
    };
    let Some(parts) = read_block(block)? else {
        return Ok(None);
    };
    let sig = Signature::parse(parts.signature)
        .map_err(|_| err(SealProblem::Signature, "not a minisign signature"))?;
    let key = keys.iter().find(|k| k.key_id == sig.key_id).ok_or(err(
        SealProblem::UnknownKey,
        "no trusted key has the signature's key ID",
    ))?;
    key.verify(parts.manifest, &sig).map_err(|e| match e {
        MinisigError::TrustedComment => err(SealProblem::BadSignature, "trusted comment"),
        _ => err(SealProblem::BadSignature, "manifest"),
    })?;
    let manifest = Manifest::parse(parts.manifest)?;
    check_fits(&manifest, facts)?;
    Ok(Some((manifest, key.key_id)))
}

/// The dm-verity mapping of the image `hnroot-init` is about to mount as root, booted with the
/// root hash `root_hash` (`hnroot.roothash=`, put there by the loader from the seal it
/// verified): the seal block read, its manifest's root hash compared with the loader's, its
/// layout with the file and filesystem `facts` found.
///
/// The signature is not verified again (the initramfs holds no keys): the root hash is the
/// trust. It commits to every data block, the tree and the salt, so a manifest changed after
/// the loader's check either names another root hash (refused here) or describes a tree whose
/// reads fail; it never lets an unverified block through.
pub fn mapping(facts: &SealFacts, root_hash: &[u8; 32]) -> Result<Verity, SealError> {
    let absent = err(
        SealProblem::RootHash,
        "the loader passed a root hash, and the image has no seal block",
    );
    let block = facts.last_block.ok_or(absent)?;
    let parts = read_block(block)?.ok_or(absent)?;
    let manifest = Manifest::parse(parts.manifest)?;
    if &manifest.verity.root_hash != root_hash {
        return Err(err(
            SealProblem::RootHash,
            "the seal's root hash is not the one the loader passed",
        ));
    }
    check_fits(&manifest, facts)?;
    Ok(manifest.verity)
}

/// Whether `manifest` describes the file and filesystem of `facts`: its UUID, and a file of
/// exactly data + tree + seal block covering the whole filesystem.
fn check_fits(manifest: &Manifest, facts: &SealFacts) -> Result<(), SealError> {
    if manifest.uuid != facts.fs_uuid {
        return Err(err(
            SealProblem::Uuid,
            "the manifest names another filesystem",
        ));
    }
    let seal_offset = manifest
        .verity
        .seal_offset()
        .ok_or(err(SealProblem::Layout, "tree size"))?;
    let expected_len = seal_offset.checked_add(SEAL_BLOCK_LEN as u64);
    if expected_len != Some(facts.file_len) {
        return Err(err(
            SealProblem::Layout,
            "the file is not data + tree + seal block long",
        ));
    }
    if facts.fs_bytes > manifest.verity.data_bytes {
        return Err(err(
            SealProblem::Layout,
            "the filesystem is larger than the data the tree covers",
        ));
    }
    Ok(())
}

/// How the running root is verified, from the kernel command line (whether the loader passed
/// a root hash) and what device-mapper says of `hnroot-init`'s dm-verity device.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RootVerity {
    /// Booted without a root hash: the image is not verified after the boot.
    Off,
    /// dm-verity verifies every block read, and none read so far was corrupt (status `V`).
    Verified,
    /// dm-verity refused at least one block (status `C`): the image changed after sealing, and
    /// reading what it changed fails with an I/O error.
    Corrupt,
    /// Booted with a root hash, and no dm-verity device answers as one should.
    Missing,
}

impl RootVerity {
    /// Judge `root_hash_given` (the running kernel's `hnroot.roothash=`) and `status`, the
    /// dm-verity status text of `hnroot-root` (`None`: no such device).
    pub fn judge(root_hash_given: bool, status: Option<&str>) -> RootVerity {
        match (root_hash_given, status.and_then(|s| s.bytes().next())) {
            (false, _) => RootVerity::Off,
            (true, Some(b'V')) => RootVerity::Verified,
            (true, Some(b'C')) => RootVerity::Corrupt,
            (true, _) => RootVerity::Missing,
        }
    }

    /// The stable word (`status --json`, metrics).
    pub fn code(self) -> &'static str {
        match self {
            RootVerity::Off => "off",
            RootVerity::Verified => "verified",
            RootVerity::Corrupt => "corrupt",
            RootVerity::Missing => "missing",
        }
    }
}

impl fmt::Display for RootVerity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RootVerity::Off => "not verified (booted without a seal's root hash)",
            RootVerity::Verified => {
                "verified by dm-verity (every block read is checked; none was corrupt so far)"
            }
            RootVerity::Corrupt => {
                "CORRUPT: dm-verity refused a block of the running image (reading it fails with \
                 an I/O error): the image file changed after it was sealed; stage a fresh copy"
            }
            RootVerity::Missing => {
                "UNKNOWN: booted with a root hash, but no dm-verity device hnroot-root answers"
            }
        })
    }
}

/// Which boot file a hash belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BootFile {
    /// `/boot/kernel`.
    Kernel,
    /// `/boot/initramfs`.
    Initramfs,
}

/// Whether a boot file's SHA-256, computed as it was read, is the manifest's.
pub fn check_boot_file(
    manifest: &Manifest,
    file: BootFile,
    sha256: &[u8; 32],
) -> Result<(), SealError> {
    let stated = match file {
        BootFile::Kernel => &manifest.kernel_sha256,
        BootFile::Initramfs => &manifest.initramfs_sha256,
    };
    check_boot_digest(file, stated, sha256)
}

/// Whether a boot file's SHA-256 is the one a manifest stated (`stated`): for a reader that kept
/// the manifest's digests and not the manifest (GRUB's `hnroot_seal`).
pub fn check_boot_digest(
    file: BootFile,
    stated: &[u8; 32],
    sha256: &[u8; 32],
) -> Result<(), SealError> {
    if stated == sha256 {
        return Ok(());
    }
    Err(match file {
        BootFile::Kernel => err(
            SealProblem::Kernel,
            "/boot/kernel's SHA-256 is not the manifest's",
        ),
        BootFile::Initramfs => err(
            SealProblem::Initramfs,
            "/boot/initramfs's SHA-256 is not the manifest's",
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            version: Version::try_from("1.10").unwrap(),
            uuid: FsUuid::parse("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0").unwrap(),
            kernel_sha256: [0x11; 32],
            initramfs_sha256: [0x22; 32],
            verity: Verity {
                data_bytes: 4096 * 1000,
                hash_offset: 4096 * 1000,
                salt: heapless::Vec::from_slice(&[0xab; 32]).unwrap(),
                root_hash: [0x33; 32],
            },
        }
    }

    #[test]
    fn manifest_round_trips() {
        let m = manifest();
        let mut buf = [0u8; MANIFEST_MAX];
        let n = m.write(&mut buf).unwrap();
        assert_eq!(Manifest::parse(&buf[..n]).unwrap(), m);
    }

    #[test]
    fn manifest_refuses_each_field_changed() {
        let m = manifest();
        let mut buf = [0u8; MANIFEST_MAX];
        let n = m.write(&mut buf).unwrap();
        let text = core::str::from_utf8(&buf[..n]).unwrap();
        for (from, to, why) in [
            (
                "hnroot-seal 1",
                "hnroot-seal 2",
                "hnroot-seal is not format 1",
            ),
            (
                "image-version 1.10",
                "image-version 1 10",
                "image-version is not a version",
            ),
            (
                "verity-algorithm sha256",
                "verity-algorithm sha1",
                "verity-algorithm is not sha256",
            ),
            (
                "verity-data-block-size 4096",
                "verity-data-block-size 512",
                "verity block sizes are not 4096",
            ),
            (
                "verity-hash-offset 4096000",
                "verity-hash-offset 8192000",
                "verity data must be whole blocks with the tree right after it",
            ),
            (
                "verity-data-bytes 4096000",
                "verity-data-bytes 04096000",
                "verity-data-bytes",
            ),
            ("uuid 0f1e", "uuid 0F1E", "uuid"),
            ("kernel-sha256 1111", "kernel-sha256 111", "kernel-sha256"),
            (
                "hnroot-seal 1\n",
                "hnroot-seal 1\nextra x\n",
                "a key out of order or unknown",
            ),
        ] {
            let changed = text.replacen(from, to, 1);
            assert_ne!(changed, text, "{from}");
            let e = Manifest::parse(changed.as_bytes()).unwrap_err();
            assert_eq!(e.detail, why, "{from} -> {to}");
        }
    }

    #[test]
    fn block_round_trips_and_checks_padding() {
        let mut block = [0u8; SEAL_BLOCK_LEN];
        write_block(b"m\n", b"s\n", &mut block).unwrap();
        let parts = read_block(&block).unwrap().unwrap();
        assert_eq!(parts.manifest, b"m\n");
        assert_eq!(parts.signature, b"s\n");
        block[4000] = 1;
        assert_eq!(read_block(&block).unwrap_err().detail, "padding not zero");
        assert_eq!(read_block(&[0u8; SEAL_BLOCK_LEN]).unwrap(), None);
    }

    fn sealed_block(m: &Manifest) -> [u8; SEAL_BLOCK_LEN] {
        let mut text = [0u8; MANIFEST_MAX];
        let n = m.write(&mut text).unwrap();
        let mut block = [0u8; SEAL_BLOCK_LEN];
        write_block(
            &text[..n],
            b"untrusted comment: never read here\n",
            &mut block,
        )
        .unwrap();
        block
    }

    #[test]
    fn mapping_takes_the_loaders_root_hash_and_the_files_layout() {
        let m = manifest();
        let block = sealed_block(&m);
        let file_len = m.verity.seal_offset().unwrap() + SEAL_BLOCK_LEN as u64;
        let facts = SealFacts {
            file_len,
            last_block: Some(&block),
            fs_uuid: m.uuid,
            fs_bytes: m.verity.data_bytes,
        };
        let v = mapping(&facts, &[0x33; 32]).unwrap();
        assert_eq!(v, m.verity);
        assert_eq!(v.sectors(), 8000);
        assert_eq!(
            std::format!("{}", v.dm_table("7:0")),
            std::format!(
                "1 7:0 7:0 4096 4096 1000 1000 sha256 {} {}",
                "33".repeat(32),
                "ab".repeat(32)
            )
        );
        let problem =
            |facts: &SealFacts, hash: &[u8; 32]| mapping(facts, hash).unwrap_err().problem;
        assert_eq!(problem(&facts, &[0x34; 32]), SealProblem::RootHash);
        let unsealed = [0u8; SEAL_BLOCK_LEN];
        let plain = SealFacts {
            last_block: Some(&unsealed),
            ..facts
        };
        assert_eq!(problem(&plain, &[0x33; 32]), SealProblem::RootHash);
        let short = SealFacts {
            last_block: None,
            ..facts
        };
        assert_eq!(problem(&short, &[0x33; 32]), SealProblem::RootHash);
        let grown = SealFacts {
            file_len: file_len + 4096,
            ..facts
        };
        assert_eq!(problem(&grown, &[0x33; 32]), SealProblem::Layout);
        let bigger_fs = SealFacts {
            fs_bytes: m.verity.data_bytes + 4096,
            ..facts
        };
        assert_eq!(problem(&bigger_fs, &[0x33; 32]), SealProblem::Layout);
        let other = SealFacts {
            fs_uuid: FsUuid::Uuid([9; 16]),
            ..facts
        };
        assert_eq!(problem(&other, &[0x33; 32]), SealProblem::Uuid);
        let mut unsalted = m.clone();
        unsalted.verity.salt.clear();
        assert!(std::format!("{}", unsalted.verity.dm_table("/dev/loop0")).ends_with(" -"));
    }

    #[test]
    fn the_running_roots_verity_is_judged_from_the_line_and_the_status() {
        use RootVerity::*;
        assert_eq!(RootVerity::judge(false, Some("V")), Off);
        assert_eq!(RootVerity::judge(true, Some("V")), Verified);
        assert_eq!(RootVerity::judge(true, Some("C")), Corrupt);
        assert_eq!(RootVerity::judge(true, Some("C 3")), Corrupt);
        assert_eq!(RootVerity::judge(true, None), Missing);
        assert_eq!(RootVerity::judge(true, Some("")), Missing);
    }

    #[test]
    fn tree_sizes_follow_cryptsetup() {
        // 128 digests per 4 KiB block: one level up to 128 blocks, two up to 16384.
        assert_eq!(tree_blocks(1), Some(0));
        assert_eq!(tree_blocks(2), Some(1));
        assert_eq!(tree_blocks(128), Some(1));
        assert_eq!(tree_blocks(129), Some(2 + 1));
        assert_eq!(tree_blocks(16384), Some(128 + 1));
        assert_eq!(tree_blocks(16385), Some(129 + 2 + 1));
    }
}
