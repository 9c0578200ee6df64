//! The boot loader on the ESP: what an hnroot GRUB image says about itself (its version record,
//! in a `.hnroot` PE section, read without running it), whether one loader may replace another,
//! and the steps that replace it on FAT so that the firmware always finds a whole loader. It
//! never reads or writes a disk: the CLI reads the two images, asks here, and carries out the
//! steps (`hnroot bootloader status`, `hnroot bootloader update`).
//!
//! ## The version record
//!
//! Text, one `key value` pair a line, in the image's `.hnroot` section:
//!
//! ```text
//! hnroot-loader 1
//! hnroot 0.1.0
//! grub 2.12-9+deb13u2
//! bootstate-reads 1-2
//! bootstate-writes 2
//! ```
//!
//! `hnroot-loader` is the record's own format. `hnroot` is the version of the hnroot that built
//! the image (its `hnroot.mod` and `grub.cfg`), `grub` the Debian build of the GRUB under it,
//! `bootstate-reads` the boot-state formats (`crate::bootstate`) its `hnroot.mod` reads (an
//! inclusive range), `bootstate-writes` the one it writes. A loader without the section is one
//! an hnroot before the record installed (it reads and writes boot-state format 1).
//!
//! ## Replacing the loader on FAT: the argument
//!
//! The firmware finds hnroot's GRUB at one path, `\EFI\BOOT\BOOTX64.EFI`: by the removable-media
//! path, and by the boot entry `hnroot install` registers, which names the same file. The update
//! ([`update_steps`]) never writes that file's clusters and never frees them while its directory
//! entry points at them:
//!
//! 1. [`LoaderStep::ClearLeftovers`]: `hnroot-new.efi` and `hnroot-previous.efi` beside it are
//!    removed (what an earlier update left; neither is a boot path).
//! 2. [`LoaderStep::WriteNew`]: the new image is written as `\EFI\BOOT\hnroot-new.efi` (new
//!    clusters, a new directory entry), flushed (`fsync`, then `syncfs`).
//! 3. [`LoaderStep::VerifyNew`]: read back from the disk (the page cache dropped first) and
//!    compared byte for byte with the image built.
//! 4. [`LoaderStep::Exchange`]: `renameat2(RENAME_EXCHANGE)` of the two names, then `syncfs`.
//!    Linux's vfat (6.0 and later) exchanges by rewriting the two directory entries in place
//!    (start cluster and size), allocating and freeing nothing. Each entry is one 32-byte record
//!    inside one sector; whatever order the two sector writes reach the disk in, and whichever
//!    of them a power cut stops, each name points at the whole chain of one of two complete,
//!    verified loaders (at worst both names at the same one, which `fsck.vfat` calls
//!    cross-linked and the firmware reads as a file).
//! 5. [`LoaderStep::VerifyInPlace`]: `BOOTX64.EFI` read back and compared again.
//! 6. [`LoaderStep::KeepPrevious`]: the old loader, now under `hnroot-new.efi`, is renamed
//!    `hnroot-previous.efi` (a rename within the directory, not over a boot path) and stays
//!    until the next update: by then the loader that replaced it has booted, since the service
//!    updates only from a committed boot.
//!
//! Before step 4 `BOOTX64.EFI` is the old loader, untouched (the directory and FAT sectors that
//! steps 1 to 3 rewrite are written whole, with its entries unchanged: one sector is the unit a
//! disk writes whole, the assumption GRUB's in-place boot-state write makes too); from step 4 on
//! it is the new one or the old one, each whole. So at no moment does the firmware find no
//! bootable loader. A step that fails (an error, not a crash) is answered by [`after_failure`].

use core::fmt;
use core::ops::Range;

use crate::bootstate;

/// The PE section holding the record (8 bytes, zero-padded, as PE names sections).
pub const SECTION_NAME: [u8; 8] = *b".hnroot\0";
/// This record format.
pub const RECORD_FORMAT: u16 = 1;
/// Bound on the record's size (the section may be padded beyond the text with zeros).
pub const RECORD_MAX: usize = 1024;
/// Bound on a version or build string in the record.
pub const FIELD_MAX: usize = 64;
/// The boot-state format a loader without a record reads and writes.
pub const UNRECORDED_STATE_FORMAT: u16 = 1;

/// A version `major.minor.patch`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct Version {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
}

impl Version {
    /// `1.2.3` (a pre-release or build suffix after `-` or `+` is ignored).
    pub fn parse(s: &str) -> Option<Version> {
        let core = s.split(['-', '+']).next()?;
        let mut parts = core.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Version {
            major,
            minor,
            patch,
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// What a loader says about itself.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Record<'a> {
    /// The hnroot that built it.
    pub hnroot: Version,
    /// The Debian build of its GRUB (`2.12-9+deb13u2`).
    pub grub: &'a str,
    /// The boot-state formats it reads, inclusive.
    pub reads: (u16, u16),
    /// The boot-state format it writes.
    pub writes: u16,
}

impl Record<'_> {
    /// The record of a loader built by this hnroot (`hnroot` its version) on GRUB build `grub`.
    pub fn current(hnroot: Version, grub: &str) -> Record<'_> {
        Record {
            hnroot,
            grub,
            reads: (bootstate::READS_FROM, bootstate::FORMAT_VERSION),
            writes: bootstate::FORMAT_VERSION,
        }
    }

    /// Whether it reads boot-state format `format`.
    pub fn reads(&self, format: u16) -> bool {
        self.reads.0 <= format && format <= self.reads.1
    }

    /// The record as text into `out`; the bytes written. Fails only when `out` is too small.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, RecordError> {
        let mut w = Writer { out, at: 0 };
        fmt::write(
            &mut w,
            format_args!(
                "hnroot-loader {RECORD_FORMAT}\nhnroot {}\ngrub {}\nbootstate-reads {}-{}\n\
                 bootstate-writes {}\n",
                self.hnroot, self.grub, self.reads.0, self.reads.1, self.writes
            ),
        )
        .map_err(|_| RecordError::TooLong)?;
        Ok(w.at)
    }
}

pub(crate) struct Writer<'b> {
    pub(crate) out: &'b mut [u8],
    pub(crate) at: usize,
}

impl fmt::Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.at.checked_add(s.len()).ok_or(fmt::Error)?;
        let dst = self.out.get_mut(self.at..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.at = end;
        Ok(())
    }
}

/// Why a record cannot be read (or written).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RecordError {
    /// Longer than [`RECORD_MAX`], or the buffer is too small to write it.
    TooLong,
    /// Not UTF-8 text.
    NotText,
    /// The first line is not `hnroot-loader N`.
    NotARecord,
    /// A record format this hnroot does not read.
    Format(u16),
    /// A line is missing or malformed.
    Field(&'static str),
}

impl core::error::Error for RecordError {}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::TooLong => write!(f, "the record is longer than {RECORD_MAX} bytes"),
            RecordError::NotText => f.write_str("the record is not UTF-8 text"),
            RecordError::NotARecord => f.write_str("the record does not begin `hnroot-loader N`"),
            RecordError::Format(n) => write!(
                f,
                "record format {n}; this hnroot reads format {RECORD_FORMAT}"
            ),
            RecordError::Field(name) => {
                write!(f, "the record's `{name}` line is missing or malformed")
            }
        }
    }
}

/// Decode a record (trailing zero padding allowed).
pub fn parse_record(bytes: &[u8]) -> Result<Record<'_>, RecordError> {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    if end > RECORD_MAX {
        return Err(RecordError::TooLong);
    }
    let text = bytes.get(..end).ok_or(RecordError::TooLong)?;
    let text = core::str::from_utf8(text).map_err(|_| RecordError::NotText)?;
    let mut lines = text.lines();
    let format = lines
        .next()
        .and_then(|l| l.strip_prefix("hnroot-loader "))
        .ok_or(RecordError::NotARecord)?;
    let format: u16 = format.trim().parse().map_err(|_| RecordError::NotARecord)?;
    if format != RECORD_FORMAT {
        return Err(RecordError::Format(format));
    }
    let (mut hnroot, mut grub, mut reads, mut writes) = (None, None, None, None);
    for line in lines {
        let Some((key, value)) = line.split_once(' ') else {
            continue;
        };
        match key {
            "hnroot" => hnroot = Some(Version::parse(value).ok_or(RecordError::Field("hnroot"))?),
            "grub" => {
                let ok = !value.is_empty()
                    && value.len() <= FIELD_MAX
                    && value.bytes().all(|b| b.is_ascii_graphic());
                grub = Some(ok.then_some(value).ok_or(RecordError::Field("grub"))?);
            }
            "bootstate-reads" => {
                let (a, b) = value
                    .split_once('-')
                    .ok_or(RecordError::Field("bootstate-reads"))?;
                let a: u16 = a
                    .parse()
                    .map_err(|_| RecordError::Field("bootstate-reads"))?;
                let b: u16 = b
                    .parse()
                    .map_err(|_| RecordError::Field("bootstate-reads"))?;
                if a > b {
                    return Err(RecordError::Field("bootstate-reads"));
                }
                reads = Some((a, b));
            }
            "bootstate-writes" => {
                writes = Some(
                    value
                        .parse()
                        .map_err(|_| RecordError::Field("bootstate-writes"))?,
                )
            }
            // Later formats may add lines; this one ignores what it does not know.
            _ => {}
        }
    }
    Ok(Record {
        hnroot: hnroot.ok_or(RecordError::Field("hnroot"))?,
        grub: grub.ok_or(RecordError::Field("grub"))?,
        reads: reads.ok_or(RecordError::Field("bootstate-reads"))?,
        writes: writes.ok_or(RecordError::Field("bootstate-writes"))?,
    })
}

/// Why a file is not a PE image whose sections can be listed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PeError {
    /// Shorter than its headers say.
    Truncated,
    /// No `MZ` at the start or no `PE\0\0` where `e_lfanew` points.
    NotPe,
    /// More sections than a PE image may have (96).
    TooManySections(u16),
    /// The certificate table holds an entry that is not a PKCS#7 SignedData in DER.
    BadSignature,
}

impl core::error::Error for PeError {}

impl fmt::Display for PeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeError::Truncated => f.write_str("the file is shorter than its PE headers say"),
            PeError::NotPe => f.write_str("not a PE image (no MZ/PE signatures)"),
            PeError::TooManySections(n) => write!(f, "{n} sections (PE allows 96)"),
            PeError::BadSignature => f.write_str(
                "the certificate table holds an entry that is not a PKCS#7 SignedData in DER",
            ),
        }
    }
}

/// DOS header: `MZ` and the offset of the PE header.
const DOS_MAGIC: Range<usize> = 0..2;
const DOS_LFANEW: Range<usize> = 0x3c..0x40;
/// From the PE signature: COFF header fields.
const PE_SIGNATURE_LEN: usize = 4;
const COFF_NUMBER_OF_SECTIONS: Range<usize> = 2..4;
const COFF_SIZE_OF_OPTIONAL_HEADER: Range<usize> = 16..18;
const COFF_HEADER_LEN: usize = 20;
/// One section header and its fields.
const SECTION_HEADER_LEN: usize = 40;
const SH_NAME: Range<usize> = 0..8;
const SH_VIRTUAL_SIZE: Range<usize> = 8..12;
const SH_SIZE_OF_RAW_DATA: Range<usize> = 16..20;
const SH_POINTER_TO_RAW_DATA: Range<usize> = 20..24;
/// PE's limit on sections.
const MAX_SECTIONS: u16 = 96;

fn le16(b: &[u8], r: Range<usize>) -> Result<u16, PeError> {
    let s = b.get(r).ok_or(PeError::Truncated)?;
    let a: [u8; 2] = s.try_into().map_err(|_| PeError::Truncated)?;
    Ok(u16::from_le_bytes(a))
}

fn le32(b: &[u8], r: Range<usize>) -> Result<u32, PeError> {
    let s = b.get(r).ok_or(PeError::Truncated)?;
    let a: [u8; 4] = s.try_into().map_err(|_| PeError::Truncated)?;
    Ok(u32::from_le_bytes(a))
}

/// Where the PE image's section table is: (offset of the first section header, count).
pub fn section_table(image: &[u8]) -> Result<(usize, u16), PeError> {
    if image.get(DOS_MAGIC) != Some(b"MZ".as_slice()) {
        return Err(PeError::NotPe);
    }
    let pe = le32(image, DOS_LFANEW)? as usize;
    let sig_end = pe.checked_add(PE_SIGNATURE_LEN).ok_or(PeError::Truncated)?;
    if image.get(pe..sig_end) != Some(b"PE\0\0".as_slice()) {
        return Err(PeError::NotPe);
    }
    let coff = image.get(sig_end..).ok_or(PeError::Truncated)?;
    let count = le16(coff, COFF_NUMBER_OF_SECTIONS)?;
    if count > MAX_SECTIONS {
        return Err(PeError::TooManySections(count));
    }
    let optional = le16(coff, COFF_SIZE_OF_OPTIONAL_HEADER)? as usize;
    let table = sig_end
        .checked_add(COFF_HEADER_LEN)
        .and_then(|x| x.checked_add(optional))
        .ok_or(PeError::Truncated)?;
    let table_end = (count as usize)
        .checked_mul(SECTION_HEADER_LEN)
        .and_then(|n| n.checked_add(table))
        .ok_or(PeError::Truncated)?;
    if table_end > image.len() {
        return Err(PeError::Truncated);
    }
    Ok((table, count))
}

/// PE32+ optional header magic, and where its data directories start and are counted.
const OPT_MAGIC_PE32_PLUS: u16 = 0x20b;
const OPT_NUMBER_OF_RVA_AND_SIZES: Range<usize> = 108..112;
const OPT_DATA_DIRECTORIES: usize = 112;
/// The certificate table's index among the data directories (Authenticode signatures).
const CERTIFICATE_TABLE: usize = 4;

/// The PE32+ image's certificate table (its Authenticode signatures, as `sbsign` writes them:
/// WIN_CERTIFICATE entries), `None` when it has none.
fn certificate_table(image: &[u8]) -> Result<Option<&[u8]>, PeError> {
    let (table, _) = section_table(image)?;
    let pe = le32(image, DOS_LFANEW)? as usize;
    let optional_start = pe
        .checked_add(PE_SIGNATURE_LEN + COFF_HEADER_LEN)
        .ok_or(PeError::Truncated)?;
    let optional = image.get(optional_start..table).ok_or(PeError::Truncated)?;
    if le16(optional, 0..2)? != OPT_MAGIC_PE32_PLUS {
        return Err(PeError::NotPe);
    }
    let count = le32(optional, OPT_NUMBER_OF_RVA_AND_SIZES)? as usize;
    if count <= CERTIFICATE_TABLE {
        return Ok(None);
    }
    let at = OPT_DATA_DIRECTORIES + CERTIFICATE_TABLE * 8;
    // The certificate table's "address" is a file offset, not an RVA.
    let offset = le32(optional, at..at + 4)? as usize;
    let size = le32(optional, at + 4..at + 8)? as usize;
    if size == 0 {
        return Ok(None);
    }
    let end = offset.checked_add(size).ok_or(PeError::Truncated)?;
    image.get(offset..end).map(Some).ok_or(PeError::Truncated)
}

/// Whether the PE32+ image carries an Authenticode signature (a certificate table, as
/// `sbsign` writes it): the firmware's Secure Boot checks it; an image without one does not
/// start while Secure Boot is on.
pub fn authenticode_signed(image: &[u8]) -> Result<bool, PeError> {
    Ok(certificate_table(image)?.is_some())
}

/// The most certificates [`signature_certificates`] returns (`sbsign` embeds one, the
/// signer's; `--addcert` adds its chain).
pub const MAX_SIGNATURE_CERTIFICATES: usize = 8;

/// WIN_CERTIFICATE: its header, and the type of a PKCS#7 SignedData entry.
const WIN_CERTIFICATE_HEADER: usize = 8;
const WIN_CERT_TYPE_PKCS_SIGNED_DATA: u16 = 0x0002;
/// DER tags PKCS#7 SignedData uses.
const DER_SEQUENCE: u8 = 0x30;
const DER_SET: u8 = 0x31;
const DER_INTEGER: u8 = 0x02;
const DER_OID: u8 = 0x06;
const DER_CONTEXT_0: u8 = 0xa0;
/// The OID of PKCS#7 signedData, 1.2.840.113549.1.7.2, as DER contents.
const OID_SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];

/// One DER element at the start of `b`: its tag, its contents and what follows it. Only the
/// definite lengths DER allows, up to 4 length bytes; single-byte tags.
fn der(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, rest) = rest.split_at_checked(n)?;
        let len = bytes.iter().try_fold(0usize, |l, b| {
            l.checked_mul(256)?.checked_add(usize::from(*b))
        })?;
        (len, rest)
    };
    let (contents, rest) = rest.split_at_checked(len)?;
    Some((tag, contents, rest))
}

/// The contents of `b`'s first element when its tag is `tag`, and what follows it.
fn der_expect(b: &[u8], tag: u8) -> Result<(&[u8], &[u8]), PeError> {
    match der(b) {
        Some((t, contents, rest)) if t == tag => Ok((contents, rest)),
        _ => Err(PeError::BadSignature),
    }
}

/// The certificates (each an X.509 `Certificate`'s DER contents) of one PKCS#7 SignedData
/// (`ContentInfo`), appended to `out` from `n`; the new count.
fn signed_data_certificates<'a>(
    blob: &'a [u8],
    out: &mut [&'a [u8]; MAX_SIGNATURE_CERTIFICATES],
    mut n: usize,
) -> Result<usize, PeError> {
    let (content_info, _) = der_expect(blob, DER_SEQUENCE)?;
    let (oid, rest) = der_expect(content_info, DER_OID)?;
    if oid != OID_SIGNED_DATA {
        return Err(PeError::BadSignature);
    }
    let (explicit, _) = der_expect(rest, DER_CONTEXT_0)?;
    let (signed_data, _) = der_expect(explicit, DER_SEQUENCE)?;
    let (_, rest) = der_expect(signed_data, DER_INTEGER)?;
    let (_, rest) = der_expect(rest, DER_SET)?;
    let (_, rest) = der_expect(rest, DER_SEQUENCE)?;
    // `certificates [0] IMPLICIT` is optional.
    let Ok((mut certificates, _)) = der_expect(rest, DER_CONTEXT_0) else {
        return Ok(n);
    };
    while !certificates.is_empty() {
        let (certificate, rest) = der_expect(certificates, DER_SEQUENCE)?;
        if let Some(slot) = out.get_mut(n) {
            *slot = certificate;
            n = n.saturating_add(1);
        }
        certificates = rest;
    }
    Ok(n)
}

/// The X.509 certificates in the image's Authenticode signatures (every WIN_CERTIFICATE of
/// type PKCS#7 SignedData, its `certificates`), each one's DER contents, at most
/// [`MAX_SIGNATURE_CERTIFICATES`]; the count. None for an unsigned image.
pub fn signature_certificates<'a>(
    image: &'a [u8],
    out: &mut [&'a [u8]; MAX_SIGNATURE_CERTIFICATES],
) -> Result<usize, PeError> {
    let Some(mut table) = certificate_table(image)? else {
        return Ok(0);
    };
    let mut n = 0;
    while table.len() >= WIN_CERTIFICATE_HEADER {
        let len = le32(table, 0..4)? as usize;
        let kind = le16(table, 6..8)?;
        if len < WIN_CERTIFICATE_HEADER {
            return Err(PeError::BadSignature);
        }
        let entry = table
            .get(WIN_CERTIFICATE_HEADER..len)
            .ok_or(PeError::Truncated)?;
        if kind == WIN_CERT_TYPE_PKCS_SIGNED_DATA {
            n = signed_data_certificates(entry, out, n)?;
        }
        // Entries are 8-byte aligned.
        let next = len.checked_next_multiple_of(8).ok_or(PeError::Truncated)?;
        table = table.get(next..).unwrap_or(&[]);
    }
    Ok(n)
}

/// Whether `new`'s signature carries a certificate that `esp`'s carries: the firmware starts
/// the ESP's loader, so it trusts the certificate that signed it (or one above it); a loader
/// signed by the same certificate starts as well. A firmware `db` may trust others too; hnroot
/// does not read the firmware's variables, and asks for the certificate it knows works.
pub fn same_signer(esp: &[u8], new: &[u8]) -> Result<bool, PeError> {
    let mut theirs = [&[][..]; MAX_SIGNATURE_CERTIFICATES];
    let mut ours = [&[][..]; MAX_SIGNATURE_CERTIFICATES];
    let a = signature_certificates(esp, &mut theirs)?;
    let b = signature_certificates(new, &mut ours)?;
    let (theirs, ours) = (theirs.get(..a).unwrap_or(&[]), ours.get(..b).unwrap_or(&[]));
    Ok(ours.iter().any(|c| theirs.contains(c)))
}

/// The bytes of the section named `name` (its raw data, cut to its virtual size when that is
/// smaller), `None` when the image has no such section.
pub fn find_section<'a>(image: &'a [u8], name: &[u8; 8]) -> Result<Option<&'a [u8]>, PeError> {
    let (table, count) = section_table(image)?;
    for i in 0..usize::from(count) {
        let start = table
            .checked_add(
                i.checked_mul(SECTION_HEADER_LEN)
                    .ok_or(PeError::Truncated)?,
            )
            .ok_or(PeError::Truncated)?;
        let end = start
            .checked_add(SECTION_HEADER_LEN)
            .ok_or(PeError::Truncated)?;
        let header = image.get(start..end).ok_or(PeError::Truncated)?;
        if header.get(SH_NAME) != Some(name.as_slice()) {
            continue;
        }
        let raw = le32(header, SH_SIZE_OF_RAW_DATA)? as usize;
        let virt = le32(header, SH_VIRTUAL_SIZE)? as usize;
        let at = le32(header, SH_POINTER_TO_RAW_DATA)? as usize;
        let len = if virt == 0 { raw } else { raw.min(virt) };
        let stop = at.checked_add(len).ok_or(PeError::Truncated)?;
        return image.get(at..stop).map(Some).ok_or(PeError::Truncated);
    }
    Ok(None)
}

/// The loader a file holds, as the firmware would find it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Loader<'a> {
    /// No file at the path.
    Absent,
    /// A PE image without hnroot's record: a loader an hnroot before the record installed (or
    /// another loader altogether).
    Unrecorded,
    /// A PE image with a record.
    Recorded(Record<'a>),
    /// Not a PE image, or a record that cannot be read.
    Unreadable,
}

/// Judge the bytes of a loader file.
pub fn identify(image: Option<&[u8]>) -> Loader<'_> {
    let Some(image) = image else {
        return Loader::Absent;
    };
    match find_section(image, &SECTION_NAME) {
        Err(_) => Loader::Unreadable,
        Ok(None) => Loader::Unrecorded,
        Ok(Some(bytes)) => match parse_record(bytes) {
            Ok(r) => Loader::Recorded(r),
            Err(_) => Loader::Unreadable,
        },
    }
}

/// How the update was asked for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct UpdateRequest {
    /// `--allow-downgrade`.
    pub allow_downgrade: bool,
    /// `--if-committed` (the service): only from a committed boot of the committed image.
    pub if_committed: bool,
    /// Whether this boot runs the committed image (no trial running, the running image the good
    /// one), as the CLI observed the boot state and the running root.
    pub committed: bool,
}

/// Whether this boot runs the committed image: the boot state records a committed image (no
/// trial), `hn-root.img` is that image, and the running system booted it (`booted`, from the
/// kernel command line GRUB wrote; `None` when it does not say).
pub fn boot_is_committed(
    state: &crate::bootstate::StateSeen,
    current: Option<crate::uuid::FsUuid>,
    booted: Option<crate::uuid::FsUuid>,
) -> bool {
    match (state, current) {
        (
            crate::bootstate::StateSeen::Valid(crate::bootstate::BootState::Committed {
                good, ..
            }),
            Some(cur),
        ) => *good == cur && booted.is_none_or(|b| b == cur),
        _ => false,
    }
}

/// What the ESP holds, as the CLI observed it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct EspSeen<'a> {
    /// The loader at `\EFI\BOOT\BOOTX64.EFI`.
    pub loader: Loader<'a>,
    /// The boot-state file's format version (`None`: no readable boot-state file).
    pub state_format: Option<u16>,
    /// Whether the ESP's loader is byte for byte the image this update would write.
    pub identical: bool,
    /// Whether the ESP's loader carries an Authenticode signature (Secure Boot).
    pub signed: bool,
}

/// Why the loader is not replaced.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum UpdateRefusal {
    /// The new loader does not read the ESP's boot-state format: the boot would lose its
    /// memory (a trial, the good image).
    CannotReadState {
        /// The format on the ESP.
        format: u16,
        /// What the new loader reads.
        reads: (u16, u16),
    },
    /// The new loader is older than the ESP's.
    Downgrade {
        /// The ESP's.
        from: Version,
        /// The new one's.
        to: Version,
    },
    /// `--if-committed` on a boot that is not committed (a trial): the running image may still
    /// be rolled back, and with it the loader it carries.
    NotCommitted,
    /// The file at the loader's path is not a PE image (or its record cannot be read): hnroot
    /// does not replace what it cannot identify.
    UnreadableLoader,
    /// The ESP's loader is signed for Secure Boot and the new one is not: with Secure Boot on,
    /// the firmware would refuse to start it and the server would not boot.
    WouldBeUnsigned,
    /// The ESP's loader boots `hn-root.img` and the new one would not (the seal's key is not
    /// among those it would carry, or it would require sealed images and `hn-root.img` is not
    /// sealed): the server would find nothing to boot.
    WouldStrand,
    /// A loader signed for Secure Boot that would boot unsealed images: hnroot's GRUB verifies
    /// a kernel and initramfs only through the seal (it is built without shim's verifier), so
    /// under Secure Boot it must require sealed images.
    SignedWithoutSeals,
    /// The image's presigned loader ([`Presigned`]) carries no signature.
    PresignedUnsigned,
    /// The presigned loader's version record is not the one of the kit this system carries:
    /// it was built from another hnroot.
    PresignedOtherBuild,
    /// The presigned loader's memdisk (`grub.cfg`, the fleet's files, the trusted keys) is not
    /// the one this server's loader must carry: the update would drop or change a setting.
    PresignedOtherSettings,
    /// The presigned loader is signed by no certificate that signed the ESP's loader: the
    /// firmware might refuse it.
    PresignedOtherSigner,
}

/// Where the loader an update writes comes from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Source {
    /// Built here from the kit (signed here when a key is given).
    Built,
    /// The image's presigned loader ([`Presigned`], judged by [`judge_presigned`]).
    Presigned,
}

/// Which loader an update writes: the image's presigned one when the ESP's loader is signed,
/// no signing key is given and the image carries one (a loader built here would be unsigned,
/// [`UpdateRefusal::WouldBeUnsigned`]: the presigned one is the only one the firmware could
/// start); else one built here. A key given always builds (the operator signs); an unsigned
/// ESP loader is replaced by one built here, with every setting it carries kept.
pub fn source(esp_signed: bool, key_given: bool, presigned_present: bool) -> Source {
    if esp_signed && !key_given && presigned_present {
        Source::Presigned
    } else {
        Source::Built
    }
}

/// What the CLI saw of a loader signed by the publisher and shipped in the image
/// (`hnroot bootloader presign`; the update of a Secure Boot server, where no signing key is):
/// compared with the loader it would build for this server and with the ESP's.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Presigned {
    /// It carries an Authenticode signature.
    pub signed: bool,
    /// Its version record is the kit's, byte for byte.
    pub same_record: bool,
    /// Its memdisk is byte for byte the one of the loader the update would build (the images'
    /// fleet files and keys, and what it keeps of the ESP's loader).
    pub same_memdisk: bool,
    /// Its signature carries a certificate the ESP's loader's carries ([`same_signer`]).
    pub same_signer: bool,
}

/// Whether the presigned loader may stand in for the one this server would build and sign
/// itself: signed, of this hnroot, with this server's settings, by the ESP's signer. Then
/// [`judge_update`] judges it as any signed loader.
pub fn judge_presigned(p: Presigned) -> Result<(), UpdateRefusal> {
    if !p.signed {
        Err(UpdateRefusal::PresignedUnsigned)
    } else if !p.same_record {
        Err(UpdateRefusal::PresignedOtherBuild)
    } else if !p.same_memdisk {
        Err(UpdateRefusal::PresignedOtherSettings)
    } else if !p.same_signer {
        Err(UpdateRefusal::PresignedOtherSigner)
    } else {
        Ok(())
    }
}

/// Whether a new loader is signed for Secure Boot, and whether it requires sealed images.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Signing {
    /// No Authenticode signature.
    Unsigned,
    /// Signed (`sbsign`); `require_sealed`: its memdisk holds the require-sealed marker.
    Signed {
        /// Only sealed images boot.
        require_sealed: bool,
    },
}

impl Signing {
    /// A signed loader must require sealed images: the chain of trust under Secure Boot runs
    /// firmware → loader → seal → kernel, initramfs, root; an unsealed image's kernel would
    /// start unverified.
    pub fn check(self) -> Result<(), UpdateRefusal> {
        match self {
            Signing::Signed {
                require_sealed: false,
            } => Err(UpdateRefusal::SignedWithoutSeals),
            _ => Ok(()),
        }
    }
}

impl UpdateRefusal {
    /// A stable one-word name for scripts and tests.
    pub const fn code(&self) -> &'static str {
        match self {
            UpdateRefusal::CannotReadState { .. } => "cannot-read-state",
            UpdateRefusal::Downgrade { .. } => "downgrade",
            UpdateRefusal::NotCommitted => "not-committed",
            UpdateRefusal::UnreadableLoader => "unreadable-loader",
            UpdateRefusal::WouldBeUnsigned => "would-be-unsigned",
            UpdateRefusal::SignedWithoutSeals => "signed-without-seals",
            UpdateRefusal::WouldStrand => "would-strand",
            UpdateRefusal::PresignedUnsigned => "presigned-unsigned",
            UpdateRefusal::PresignedOtherBuild => "presigned-other-build",
            UpdateRefusal::PresignedOtherSettings => "presigned-other-settings",
            UpdateRefusal::PresignedOtherSigner => "presigned-other-signer",
        }
    }
}

impl core::error::Error for UpdateRefusal {}

impl fmt::Display for UpdateRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpdateRefusal::CannotReadState { format, reads } => write!(
                f,
                "the ESP's boot state is format {format}; the new loader reads formats {} to {}: \
                 it would boot without the trial or the good image recorded there",
                reads.0, reads.1
            ),
            UpdateRefusal::Downgrade { from, to } => write!(
                f,
                "the ESP's loader is hnroot {from}, the new one hnroot {to}: a downgrade \
                 (--allow-downgrade to do it anyway)"
            ),
            UpdateRefusal::NotCommitted => f.write_str(
                "this boot is not committed (a trial is running, or the running image is not \
                 the one marked good): the loader is updated only after mark-good",
            ),
            UpdateRefusal::UnreadableLoader => f.write_str(
                "the file at \\EFI\\BOOT\\BOOTX64.EFI is not a PE image hnroot can read: not \
                 replacing what hnroot cannot identify (hnroot install --esp writes a new one)",
            ),
            UpdateRefusal::WouldBeUnsigned => f.write_str(
                "the ESP's loader is signed for Secure Boot and the new one is not: the firmware \
                 would refuse to start it (sign it: --sign-key KEY --sign-cert CERT, or ship the \
                 loader `hnroot bootloader presign` signed in the image)",
            ),
            UpdateRefusal::PresignedUnsigned => f.write_str(
                "the image's presigned loader carries no signature (make it with `hnroot \
                 bootloader presign --sign-key KEY --sign-cert CERT`)",
            ),
            UpdateRefusal::PresignedOtherBuild => f.write_str(
                "the image's presigned loader was built from another hnroot than the loader kit \
                 this system carries (its version record differs): presign again with this \
                 image's kit",
            ),
            UpdateRefusal::PresignedOtherSettings => f.write_str(
                "the image's presigned loader carries other settings than this server's loader \
                 must (grub.cfg, the fleet's files in /etc/hnroot/loader/, the trusted keys in \
                 /etc/hnroot/keys, or a setting the ESP's loader has and the images do not \
                 state): put the server's settings in the image's /etc/hnroot/loader/ and \
                 presign again",
            ),
            UpdateRefusal::PresignedOtherSigner => f.write_str(
                "the image's presigned loader is signed by no certificate that signed the ESP's \
                 loader: the firmware might refuse it and the server would not boot; presign \
                 with the key whose certificate the firmware's db holds for the ESP's loader",
            ),
            UpdateRefusal::WouldStrand => f.write_str(
                "the ESP's loader boots hn-root.img and the new one would not (its seal's key is \
                 not among the keys it would carry, or it would require sealed images): the \
                 server would find nothing to boot; keep the publisher's key in /etc/hnroot/keys \
                 (and require-sealed in /etc/hnroot/loader/) of the image",
            ),
            UpdateRefusal::SignedWithoutSeals => f.write_str(
                "a loader signed for Secure Boot must require sealed images (it verifies kernels \
                 and initramfs images through their seals only): add --require-sealed, or keep \
                 require-sealed in /etc/hnroot/loader/",
            ),
        }
    }
}

/// What the update does.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum UpdateKind {
    /// The ESP's loader is the one the update would write.
    UpToDate,
    /// No loader at the path: written there (through the same steps).
    Install,
    /// A loader of an hnroot before the record.
    FromUnrecorded,
    /// A newer hnroot's loader.
    Upgrade,
    /// The same hnroot version, another build (its GRUB, its configuration or fleet parts).
    Rebuild,
    /// An older one, with `--allow-downgrade`.
    Downgrade,
}

impl UpdateKind {
    /// A stable name.
    pub const fn code(self) -> &'static str {
        match self {
            UpdateKind::UpToDate => "up-to-date",
            UpdateKind::Install => "install",
            UpdateKind::FromUnrecorded => "from-unrecorded",
            UpdateKind::Upgrade => "upgrade",
            UpdateKind::Rebuild => "rebuild",
            UpdateKind::Downgrade => "downgrade",
        }
    }
}

/// Whether `hn-root.img` boots under the ESP's loader and under the new one: the CLI observes
/// hostpart under each loader's seal policy (its trusted keys, whether it requires seals).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CommittedBoots {
    /// Under the ESP's loader.
    pub now: bool,
    /// Under the new one.
    pub after: bool,
}

impl CommittedBoots {
    /// Booted alike by both (or no hostpart to look at).
    pub const ALIKE: CommittedBoots = CommittedBoots {
        now: true,
        after: true,
    };
}

/// Whether the ESP's loader may be replaced by `new` (signed for Secure Boot or not, as
/// `signing` says; `committed`: whether each loader boots `hn-root.img`), and how.
pub fn judge_update(
    esp: &EspSeen<'_>,
    new: &Record<'_>,
    signing: Signing,
    committed: CommittedBoots,
    request: &UpdateRequest,
) -> Result<UpdateKind, UpdateRefusal> {
    if request.if_committed && !request.committed {
        return Err(UpdateRefusal::NotCommitted);
    }
    signing.check()?;
    if committed.now && !committed.after && !esp.identical {
        return Err(UpdateRefusal::WouldStrand);
    }
    if esp.signed && signing == Signing::Unsigned && !esp.identical {
        return Err(UpdateRefusal::WouldBeUnsigned);
    }
    if let Some(format) = esp.state_format {
        if !new.reads(format) {
            return Err(UpdateRefusal::CannotReadState {
                format,
                reads: new.reads,
            });
        }
    }
    if esp.identical {
        return Ok(UpdateKind::UpToDate);
    }
    match esp.loader {
        Loader::Absent => Ok(UpdateKind::Install),
        Loader::Unreadable => Err(UpdateRefusal::UnreadableLoader),
        Loader::Unrecorded => Ok(UpdateKind::FromUnrecorded),
        Loader::Recorded(old) if new.hnroot > old.hnroot => Ok(UpdateKind::Upgrade),
        Loader::Recorded(old) if new.hnroot == old.hnroot => Ok(UpdateKind::Rebuild),
        Loader::Recorded(old) if request.allow_downgrade => {
            let _ = old;
            Ok(UpdateKind::Downgrade)
        }
        Loader::Recorded(old) => Err(UpdateRefusal::Downgrade {
            from: old.hnroot,
            to: new.hnroot,
        }),
    }
}

/// The settings a loader carries in its memdisk besides GRUB and the trusted keys: what an
/// update may have to carry over from the loader it replaces.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Settings {
    /// The require-sealed marker: only sealed images boot.
    pub require_sealed: bool,
    /// A counting file the core reads (tries, K, the waits).
    pub counting: bool,
    /// A menu-timeout file the core reads ([`crate::menu`]).
    pub menu_timeout: bool,
}

/// What a rebuilt loader takes over from the ESP's (`esp`) because the images' loader
/// directory (`images`) does not state it: what `hnroot install --require-sealed` or
/// `--boot-limit ...` or `--menu-timeout` built in stays through every update. The images' own
/// counting and menu-timeout files win over the ESP's. Require-sealed is never dropped by an update: one that dropped it would
/// boot unsealed images from then on, without anyone having asked (`hnroot install --esp`
/// without `--require-sealed` rebuilds the loader without it, on purpose).
pub fn carry_over(images: Settings, esp: Settings) -> Settings {
    Settings {
        require_sealed: esp.require_sealed && !images.require_sealed,
        counting: esp.counting && !images.counting,
        menu_timeout: esp.menu_timeout && !images.menu_timeout,
    }
}

/// One step of a loader update, in order (see the module's argument).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LoaderStep {
    /// Remove `hnroot-new.efi` and `hnroot-previous.efi` (never a boot path).
    ClearLeftovers,
    /// Write the new image as `hnroot-new.efi`, `fsync`, `syncfs`.
    WriteNew,
    /// Read it back from the disk and compare it with the image built.
    VerifyNew,
    /// Exchange `hnroot-new.efi` and `BOOTX64.EFI` (`RENAME_EXCHANGE`), `syncfs`.
    Exchange,
    /// Read `BOOTX64.EFI` back and compare it with the image built.
    VerifyInPlace,
    /// Rename the old loader, now `hnroot-new.efi`, to `hnroot-previous.efi`, `syncfs`.
    KeepPrevious,
}

/// The steps of an update (none when it is up to date).
pub fn update_steps(kind: UpdateKind) -> &'static [LoaderStep] {
    const ALL: [LoaderStep; 6] = [
        LoaderStep::ClearLeftovers,
        LoaderStep::WriteNew,
        LoaderStep::VerifyNew,
        LoaderStep::Exchange,
        LoaderStep::VerifyInPlace,
        LoaderStep::KeepPrevious,
    ];
    // No loader there yet: after the exchange the new loader is at the path and the other
    // name holds nothing, so there is nothing to keep.
    const INSTALL: [LoaderStep; 5] = [
        LoaderStep::ClearLeftovers,
        LoaderStep::WriteNew,
        LoaderStep::VerifyNew,
        LoaderStep::Exchange,
        LoaderStep::VerifyInPlace,
    ];
    match kind {
        UpdateKind::UpToDate => &[],
        UpdateKind::Install => &INSTALL,
        _ => &ALL,
    }
}

impl fmt::Display for LoaderStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LoaderStep::ClearLeftovers => {
                "remove what an earlier update left (hnroot-new.efi, hnroot-previous.efi)"
            }
            LoaderStep::WriteNew => {
                "write the new loader as \\EFI\\BOOT\\hnroot-new.efi and flush it"
            }
            LoaderStep::VerifyNew => "read hnroot-new.efi back from the disk and compare",
            LoaderStep::Exchange => {
                "exchange hnroot-new.efi and BOOTX64.EFI (two directory entries rewritten in place)"
            }
            LoaderStep::VerifyInPlace => "read BOOTX64.EFI back from the disk and compare",
            LoaderStep::KeepPrevious => "keep the old loader as hnroot-previous.efi",
        })
    }
}

impl LoaderStep {
    /// A stable name.
    pub const fn code(self) -> &'static str {
        match self {
            LoaderStep::ClearLeftovers => "clear-leftovers",
            LoaderStep::WriteNew => "write-new",
            LoaderStep::VerifyNew => "verify-new",
            LoaderStep::Exchange => "exchange",
            LoaderStep::VerifyInPlace => "verify-in-place",
            LoaderStep::KeepPrevious => "keep-previous",
        }
    }
}

/// What to do when a step fails with an error (a crash needs nothing: see the argument).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LoaderAfterFailure {
    /// `BOOTX64.EFI` is the old loader: remove `hnroot-new.efi` (best effort) and stop.
    RemoveNew,
    /// The exchange happened but `BOOTX64.EFI` does not read back as the new image: exchange
    /// again (the old loader is still whole under `hnroot-new.efi`), then stop.
    ExchangeBack,
    /// The new loader is in place and verified; only the old one's name is left: stop, the
    /// next update removes it.
    Stop,
}

/// The answer to `step` failing.
pub const fn after_failure(step: LoaderStep) -> LoaderAfterFailure {
    match step {
        LoaderStep::ClearLeftovers
        | LoaderStep::WriteNew
        | LoaderStep::VerifyNew
        | LoaderStep::Exchange => LoaderAfterFailure::RemoveNew,
        LoaderStep::VerifyInPlace => LoaderAfterFailure::ExchangeBack,
        LoaderStep::KeepPrevious => LoaderAfterFailure::Stop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_keeps_what_the_images_do_not_state() {
        let s = |bits: u8| Settings {
            require_sealed: bits & 1 != 0,
            counting: bits & 2 != 0,
            menu_timeout: bits & 4 != 0,
        };
        for images in (0..8).map(s) {
            for esp in (0..8).map(s) {
                let carried = carry_over(images, esp);
                // What the new loader ends up with: the images' settings or the carried ones.
                assert_eq!(
                    images.require_sealed || carried.require_sealed,
                    images.require_sealed || esp.require_sealed
                );
                assert_eq!(
                    images.counting || carried.counting,
                    images.counting || esp.counting
                );
                assert_eq!(
                    images.menu_timeout || carried.menu_timeout,
                    images.menu_timeout || esp.menu_timeout
                );
                // Nothing is carried that the images state themselves.
                assert!(!(carried.require_sealed && images.require_sealed));
                assert!(!(carried.counting && images.counting));
                assert!(!(carried.menu_timeout && images.menu_timeout));
            }
        }
        assert_eq!(carry_over(s(0), s(7)), s(7));
        assert_eq!(carry_over(s(2), s(7)), s(5));
        assert_eq!(carry_over(s(4), s(7)), s(3));
        assert_eq!(carry_over(s(7), s(0)), s(0));
    }
    use std::string::ToString;

    const V010: Version = Version {
        major: 0,
        minor: 1,
        patch: 0,
    };
    const V020: Version = Version {
        major: 0,
        minor: 2,
        patch: 0,
    };

    fn record(v: Version) -> Record<'static> {
        Record::current(v, "2.12-9+deb13u2")
    }

    fn esp(loader: Loader<'_>) -> EspSeen<'_> {
        EspSeen {
            loader,
            state_format: Some(1),
            identical: false,
            signed: false,
        }
    }

    const ANY: UpdateRequest = UpdateRequest {
        allow_downgrade: false,
        if_committed: false,
        committed: false,
    };

    #[test]
    fn a_record_round_trips_and_ignores_padding_and_unknown_lines() {
        let r = record(V020);
        let mut buf = [0u8; 256];
        let n = r.encode(&mut buf).unwrap();
        assert_eq!(parse_record(&buf).unwrap(), r);
        assert_eq!(parse_record(&buf[..n]).unwrap(), r);
        let text = core::str::from_utf8(&buf[..n]).unwrap();
        assert!(text.starts_with("hnroot-loader 1\nhnroot 0.2.0\ngrub 2.12-9+deb13u2\n"));
        let later = "hnroot-loader 1\nhnroot 1.2.3\nnew-field x\ngrub g\nbootstate-reads 1-2\nbootstate-writes 2\n";
        let p = parse_record(later.as_bytes()).unwrap();
        assert_eq!(
            (p.hnroot.to_string().as_str(), p.reads, p.writes),
            ("1.2.3", (1, 2), 2)
        );
        assert!(p.reads(2) && !p.reads(3));
        let mut tiny = [0u8; 10];
        assert_eq!(r.encode(&mut tiny), Err(RecordError::TooLong));
    }

    #[test]
    fn bad_records_name_what_is_wrong() {
        assert_eq!(parse_record(b"MZ"), Err(RecordError::NotARecord));
        assert_eq!(
            parse_record(b"hnroot-loader 2\n"),
            Err(RecordError::Format(2))
        );
        assert_eq!(
            parse_record(b"hnroot-loader 1\nhnroot 1.2\n"),
            Err(RecordError::Field("hnroot"))
        );
        assert_eq!(
            parse_record(b"hnroot-loader 1\nhnroot 1.2.3\ngrub g\nbootstate-reads 2-1\n"),
            Err(RecordError::Field("bootstate-reads"))
        );
        assert_eq!(parse_record(&[0xff, 0xfe]), Err(RecordError::NotText));
        assert_eq!(
            parse_record(&[b'a'; RECORD_MAX + 1]),
            Err(RecordError::TooLong)
        );
    }

    #[test]
    fn versions_order_numerically() {
        assert!(Version::parse("0.10.0").unwrap() > Version::parse("0.9.9").unwrap());
        assert_eq!(Version::parse("1.2.3-rc1"), Version::parse("1.2.3"));
        assert_eq!(Version::parse("1.2"), None);
        assert_eq!(Version::parse("1.2.3.4"), None);
    }

    #[test]
    fn newer_compatible_loaders_replace_older_ones() {
        let new = record(V020);
        let old = record(V010);
        assert_eq!(
            judge_update(
                &esp(Loader::Recorded(old)),
                &new,
                Signing::Unsigned,
                CommittedBoots::ALIKE,
                &ANY
            ),
            Ok(UpdateKind::Upgrade)
        );
        assert_eq!(
            judge_update(
                &esp(Loader::Recorded(new)),
                &new,
                Signing::Unsigned,
                CommittedBoots::ALIKE,
                &ANY
            ),
            Ok(UpdateKind::Rebuild)
        );
        assert_eq!(
            judge_update(
                &esp(Loader::Unrecorded),
                &new,
                Signing::Unsigned,
                CommittedBoots::ALIKE,
                &ANY
            ),
            Ok(UpdateKind::FromUnrecorded)
        );
        assert_eq!(
            judge_update(
                &esp(Loader::Absent),
                &new,
                Signing::Unsigned,
                CommittedBoots::ALIKE,
                &ANY
            ),
            Ok(UpdateKind::Install)
        );
        let same = EspSeen {
            identical: true,
            ..esp(Loader::Recorded(new))
        };
        assert_eq!(
            judge_update(&same, &new, Signing::Unsigned, CommittedBoots::ALIKE, &ANY),
            Ok(UpdateKind::UpToDate)
        );
        assert!(update_steps(UpdateKind::UpToDate).is_empty());
    }

    #[test]
    fn a_signed_loader_is_never_replaced_by_an_unsigned_one() {
        let new = record(V020);
        let signed = EspSeen {
            signed: true,
            ..esp(Loader::Recorded(record(V010)))
        };
        assert_eq!(
            judge_update(
                &signed,
                &new,
                Signing::Unsigned,
                CommittedBoots::ALIKE,
                &ANY
            ),
            Err(UpdateRefusal::WouldBeUnsigned)
        );
        let sealed = Signing::Signed {
            require_sealed: true,
        };
        assert_eq!(
            judge_update(&signed, &new, sealed, CommittedBoots::ALIKE, &ANY),
            Ok(UpdateKind::Upgrade)
        );
        // Unsigned to signed is an update like any other (turning Secure Boot on).
        assert_eq!(
            judge_update(
                &esp(Loader::Recorded(record(V010))),
                &new,
                sealed,
                CommittedBoots::ALIKE,
                &ANY
            ),
            Ok(UpdateKind::Upgrade)
        );
        // A signed loader that would boot unsealed images is never built.
        let unsealed = Signing::Signed {
            require_sealed: false,
        };
        assert_eq!(
            judge_update(
                &esp(Loader::Absent),
                &new,
                unsealed,
                CommittedBoots::ALIKE,
                &ANY
            ),
            Err(UpdateRefusal::SignedWithoutSeals)
        );
    }

    #[test]
    fn a_loader_that_would_not_boot_the_committed_image_is_refused() {
        let new = record(V020);
        let old = esp(Loader::Recorded(record(V010)));
        let strand = CommittedBoots {
            now: true,
            after: false,
        };
        assert_eq!(
            judge_update(&old, &new, Signing::Unsigned, strand, &ANY),
            Err(UpdateRefusal::WouldStrand)
        );
        // What does not boot now is no reason to keep the old loader.
        let neither = CommittedBoots {
            now: false,
            after: false,
        };
        assert_eq!(
            judge_update(&old, &new, Signing::Unsigned, neither, &ANY),
            Ok(UpdateKind::Upgrade)
        );
    }

    #[test]
    fn downgrades_need_the_flag() {
        let new = record(V010);
        let old = record(V020);
        assert_eq!(
            judge_update(
                &esp(Loader::Recorded(old)),
                &new,
                Signing::Unsigned,
                CommittedBoots::ALIKE,
                &ANY
            ),
            Err(UpdateRefusal::Downgrade {
                from: V020,
                to: V010
            })
        );
        let allow = UpdateRequest {
            allow_downgrade: true,
            ..ANY
        };
        assert_eq!(
            judge_update(
                &esp(Loader::Recorded(old)),
                &new,
                Signing::Unsigned,
                CommittedBoots::ALIKE,
                &allow
            ),
            Ok(UpdateKind::Downgrade)
        );
    }

    #[test]
    fn a_loader_that_cannot_read_the_state_is_refused_even_downgrading() {
        let new = Record {
            reads: (2, 3),
            ..record(V020)
        };
        let allow = UpdateRequest {
            allow_downgrade: true,
            ..ANY
        };
        for loader in [
            Loader::Absent,
            Loader::Unrecorded,
            Loader::Recorded(record(V010)),
        ] {
            assert_eq!(
                judge_update(
                    &esp(loader),
                    &new,
                    Signing::Unsigned,
                    CommittedBoots::ALIKE,
                    &allow
                ),
                Err(UpdateRefusal::CannotReadState {
                    format: 1,
                    reads: (2, 3)
                })
            );
        }
        let no_state = EspSeen {
            state_format: None,
            ..esp(Loader::Unrecorded)
        };
        assert_eq!(
            judge_update(
                &no_state,
                &new,
                Signing::Unsigned,
                CommittedBoots::ALIKE,
                &allow
            ),
            Ok(UpdateKind::FromUnrecorded)
        );
    }

    #[test]
    fn the_service_waits_for_a_committed_boot_and_unknown_files_are_left_alone() {
        let new = record(V020);
        let service = UpdateRequest {
            if_committed: true,
            ..ANY
        };
        assert_eq!(
            judge_update(
                &esp(Loader::Unrecorded),
                &new,
                Signing::Unsigned,
                CommittedBoots::ALIKE,
                &service
            ),
            Err(UpdateRefusal::NotCommitted)
        );
        let committed = UpdateRequest {
            committed: true,
            ..service
        };
        assert_eq!(
            judge_update(
                &esp(Loader::Unrecorded),
                &new,
                Signing::Unsigned,
                CommittedBoots::ALIKE,
                &committed
            ),
            Ok(UpdateKind::FromUnrecorded)
        );
        assert_eq!(
            judge_update(
                &esp(Loader::Unreadable),
                &new,
                Signing::Unsigned,
                CommittedBoots::ALIKE,
                &ANY
            )
            .map_err(|e| e.code()),
            Err("unreadable-loader")
        );
    }

    #[test]
    fn the_boot_path_changes_only_by_the_exchange_and_failures_never_leave_it_unverified() {
        for kind in [
            UpdateKind::Upgrade,
            UpdateKind::Install,
            UpdateKind::Downgrade,
        ] {
            let steps = update_steps(kind);
            let exchange = steps
                .iter()
                .position(|s| *s == LoaderStep::Exchange)
                .unwrap();
            // The new loader is verified on the disk before the exchange, and again after.
            assert!(steps[..exchange].contains(&LoaderStep::VerifyNew));
            assert_eq!(steps.get(exchange + 1), Some(&LoaderStep::VerifyInPlace));
            for (i, step) in steps.iter().enumerate() {
                let answer = after_failure(*step);
                if i <= exchange {
                    assert_eq!(answer, LoaderAfterFailure::RemoveNew, "{step:?}");
                }
            }
        }
        assert_eq!(
            after_failure(LoaderStep::VerifyInPlace),
            LoaderAfterFailure::ExchangeBack
        );
    }

    /// Where the test images' PE header starts.
    const PE_AT: usize = 0x80;

    /// 1 KiB with a DOS header pointing at a PE header of `sections` sections and a 0xf0-byte
    /// optional header (zeroed), as GRUB's mkimage lays them out.
    fn pe_headers(sections: u16) -> std::vec::Vec<u8> {
        let mut img = std::vec![0u8; 0x400];
        img[0..2].copy_from_slice(b"MZ");
        img[0x3c..0x40].copy_from_slice(&(PE_AT as u32).to_le_bytes());
        img[PE_AT..PE_AT + 4].copy_from_slice(b"PE\0\0");
        let coff = PE_AT + 4;
        img[coff + 2..coff + 4].copy_from_slice(&sections.to_le_bytes());
        img[coff + 16..coff + 18].copy_from_slice(&0xf0u16.to_le_bytes());
        img
    }

    /// A PE image laid out as GRUB's mkimage and our section writer lay them out.
    #[test]
    fn sections_are_found_and_truncated_images_refused() {
        let mut img = pe_headers(2);
        let coff = PE_AT + 4;
        let table = coff + 20 + 0xf0;
        let mut put = |i: usize, name: &[u8; 8], at: u32, len: u32| {
            let h = table + i * 40;
            img[h..h + 8].copy_from_slice(name);
            img[h + 8..h + 12].copy_from_slice(&len.to_le_bytes());
            img[h + 16..h + 20].copy_from_slice(&len.to_le_bytes());
            img[h + 20..h + 24].copy_from_slice(&at.to_le_bytes());
        };
        put(0, b".text\0\0\0", 0x200, 0x10);
        put(1, &SECTION_NAME, 0x300, 5);
        img[0x300..0x305].copy_from_slice(b"hello");
        assert_eq!(
            find_section(&img, &SECTION_NAME).unwrap(),
            Some(b"hello".as_slice())
        );
        assert_eq!(find_section(&img, b".sbat\0\0\0").unwrap(), None);
        assert_eq!(identify(Some(&img)), Loader::Unreadable);
        assert_eq!(identify(None), Loader::Absent);
        assert_eq!(
            find_section(&img[..0x302], &SECTION_NAME),
            Err(PeError::Truncated)
        );
        assert_eq!(
            find_section(&img[..0x100], &SECTION_NAME),
            Err(PeError::Truncated)
        );
        assert_eq!(find_section(b"ELF", &SECTION_NAME), Err(PeError::NotPe));
        let mut many = img.clone();
        many[coff + 2..coff + 4].copy_from_slice(&200u16.to_le_bytes());
        assert_eq!(
            find_section(&many, &SECTION_NAME),
            Err(PeError::TooManySections(200))
        );
    }

    /// One DER element (definite length, short or long form).
    #[allow(clippy::arithmetic_side_effects)]
    fn tlv(tag: u8, contents: &[u8]) -> std::vec::Vec<u8> {
        let mut v = std::vec![tag];
        match contents.len() {
            n @ 0..=0x7f => v.push(n as u8),
            n @ 0x80..=0xff => v.extend_from_slice(&[0x81, n as u8]),
            n => v.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
        }
        v.extend_from_slice(contents);
        v
    }

    /// PKCS#7 SignedData (a `ContentInfo`) with these certificates' contents.
    fn signed_data(certificates: &[&[u8]]) -> std::vec::Vec<u8> {
        let mut certs = std::vec::Vec::new();
        for c in certificates {
            certs.extend_from_slice(&tlv(DER_SEQUENCE, c));
        }
        let mut body = tlv(DER_INTEGER, &[1]);
        body.extend_from_slice(&tlv(DER_SET, &[]));
        body.extend_from_slice(&tlv(DER_SEQUENCE, &tlv(DER_OID, &[0x2b, 6, 1])));
        if !certificates.is_empty() {
            body.extend_from_slice(&tlv(DER_CONTEXT_0, &certs));
        }
        body.extend_from_slice(&tlv(DER_SET, &[]));
        let mut info = tlv(DER_OID, OID_SIGNED_DATA);
        info.extend_from_slice(&tlv(DER_CONTEXT_0, &tlv(DER_SEQUENCE, &body)));
        tlv(DER_SEQUENCE, &info)
    }

    /// A PE32+ image with these WIN_CERTIFICATE entries (type, contents) in its certificate
    /// table, as `sbsign` appends it after the sections.
    #[allow(clippy::arithmetic_side_effects)]
    fn signed_pe(entries: &[(u16, &[u8])]) -> std::vec::Vec<u8> {
        let mut img = pe_headers(1);
        let opt = PE_AT + 4 + 20;
        img[opt..opt + 2].copy_from_slice(&OPT_MAGIC_PE32_PLUS.to_le_bytes());
        img[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes());
        let mut table = std::vec::Vec::new();
        for (kind, contents) in entries {
            let len = (WIN_CERTIFICATE_HEADER + contents.len()) as u32;
            table.extend_from_slice(&len.to_le_bytes());
            table.extend_from_slice(&0x0200u16.to_le_bytes());
            table.extend_from_slice(&kind.to_le_bytes());
            table.extend_from_slice(contents);
            while table.len() % 8 != 0 {
                table.push(0);
            }
        }
        if !table.is_empty() {
            let dir = opt + OPT_DATA_DIRECTORIES + CERTIFICATE_TABLE * 8;
            let at = img.len() as u32;
            img[dir..dir + 4].copy_from_slice(&at.to_le_bytes());
            img[dir + 4..dir + 8].copy_from_slice(&(table.len() as u32).to_le_bytes());
            img.extend_from_slice(&table);
        }
        img
    }

    #[test]
    #[allow(clippy::arithmetic_side_effects)]
    fn the_signers_certificates_are_read_from_the_certificate_table() {
        let (a, b, c) = (&[0x11u8; 300][..], &[0x22u8; 5][..], &[0x33u8; 40][..]);
        let esp = signed_pe(&[(WIN_CERT_TYPE_PKCS_SIGNED_DATA, &signed_data(&[a, b]))]);
        let mut out = [&[][..]; MAX_SIGNATURE_CERTIFICATES];
        assert_eq!(signature_certificates(&esp, &mut out), Ok(2));
        assert_eq!((out[0], out[1]), (a, b));
        assert_eq!(authenticode_signed(&esp), Ok(true));
        // Signed by a's certificate again, in a second entry after another type's: the same
        // signer. Signed by c's only: another.
        let again = signed_pe(&[
            (0x0001, b"x509 entry"),
            (WIN_CERT_TYPE_PKCS_SIGNED_DATA, &signed_data(&[c, a])),
        ]);
        assert_eq!(same_signer(&esp, &again), Ok(true));
        let other = signed_pe(&[(WIN_CERT_TYPE_PKCS_SIGNED_DATA, &signed_data(&[c]))]);
        assert_eq!(same_signer(&esp, &other), Ok(false));
        // Unsigned images, and a signature without certificates, share no signer.
        let unsigned = signed_pe(&[]);
        assert_eq!(authenticode_signed(&unsigned), Ok(false));
        let mut none = [&[][..]; MAX_SIGNATURE_CERTIFICATES];
        assert_eq!(signature_certificates(&unsigned, &mut none), Ok(0));
        assert_eq!(same_signer(&unsigned, &unsigned), Ok(false));
        let bare = signed_pe(&[(WIN_CERT_TYPE_PKCS_SIGNED_DATA, &signed_data(&[]))]);
        assert_eq!(same_signer(&bare, &esp), Ok(false));
        // What is not PKCS#7 SignedData in DER is refused, never read as certificates.
        let mut wrong_oid = signed_data(&[a]);
        let at = wrong_oid
            .windows(OID_SIGNED_DATA.len())
            .position(|w| w == OID_SIGNED_DATA)
            .unwrap();
        wrong_oid[at + 8] = 1;
        for bad in [
            &wrong_oid[..],
            &signed_data(&[a])[..40],
            b"\x30\x80\x00\x00".as_slice(),
            b"\x1f\x01\x00".as_slice(),
        ] {
            let img = signed_pe(&[(WIN_CERT_TYPE_PKCS_SIGNED_DATA, bad)]);
            let mut out = [&[][..]; MAX_SIGNATURE_CERTIFICATES];
            assert_eq!(
                signature_certificates(&img, &mut out),
                Err(PeError::BadSignature)
            );
        }
        // A table that runs past the file.
        let cut = &esp[..esp.len() - 8];
        assert_eq!(authenticode_signed(cut), Err(PeError::Truncated));
        // Whatever the bytes of an entry, reading it never panics.
        for len in 0..64 {
            for seed in 0..16u8 {
                let bytes: std::vec::Vec<u8> = (0..len)
                    .map(|i| (i as u8).wrapping_mul(37).wrapping_add(seed) | (seed & 0x30))
                    .collect();
                let img = signed_pe(&[(WIN_CERT_TYPE_PKCS_SIGNED_DATA, &bytes)]);
                let mut out = [&[][..]; MAX_SIGNATURE_CERTIFICATES];
                let _ = signature_certificates(&img, &mut out);
            }
        }
    }

    #[test]
    fn the_presigned_loader_is_used_only_where_nothing_else_could_be_signed() {
        for esp_signed in [false, true] {
            for key_given in [false, true] {
                for present in [false, true] {
                    let want = if esp_signed && !key_given && present {
                        Source::Presigned
                    } else {
                        Source::Built
                    };
                    assert_eq!(source(esp_signed, key_given, present), want);
                }
            }
        }
    }

    #[test]
    fn a_presigned_loader_stands_in_only_when_signed_alike_and_built_alike() {
        let ok = Presigned {
            signed: true,
            same_record: true,
            same_memdisk: true,
            same_signer: true,
        };
        assert_eq!(judge_presigned(ok), Ok(()));
        for (p, code) in [
            (
                Presigned {
                    signed: false,
                    same_signer: false,
                    ..ok
                },
                "presigned-unsigned",
            ),
            (
                Presigned {
                    same_record: false,
                    ..ok
                },
                "presigned-other-build",
            ),
            (
                Presigned {
                    same_memdisk: false,
                    same_signer: false,
                    ..ok
                },
                "presigned-other-settings",
            ),
            (
                Presigned {
                    same_signer: false,
                    ..ok
                },
                "presigned-other-signer",
            ),
        ] {
            assert_eq!(judge_presigned(p).map_err(|r| r.code()), Err(code), "{p:?}");
        }
    }

    #[test]
    fn the_state_format_and_a_committed_boot_are_read_as_the_service_needs() {
        use crate::bootstate::{new_block, BootState, StateSeen, Trial, Tries};
        use crate::uuid::FsUuid;
        let a = FsUuid::parse("aaaaaaaa-0000-4000-8000-00000000000a").unwrap();
        let b = FsUuid::parse("bbbbbbbb-0000-4000-8000-00000000000b").unwrap();
        let committed = BootState::committed(a);
        // A new file with nothing counted is format 1, which every loader reads.
        assert_eq!(bootstate::format_seen(&new_block(&committed)), Some(1));
        let mut newer = new_block(&committed);
        newer[8..10].copy_from_slice(&7u16.to_le_bytes());
        assert_eq!(bootstate::format_seen(&newer), Some(7));
        assert_eq!(bootstate::format_seen(&[0u8; 1024]), None);
        let seen = StateSeen::Valid(committed);
        assert!(boot_is_committed(&seen, Some(a), Some(a)));
        assert!(boot_is_committed(&seen, Some(a), None));
        assert!(
            !boot_is_committed(&seen, Some(a), Some(b)),
            "booted another image"
        );
        assert!(
            !boot_is_committed(&seen, Some(b), None),
            "hn-root.img is not the good one"
        );
        assert!(!boot_is_committed(&StateSeen::Absent, Some(a), None));
        let trial = StateSeen::Valid(BootState::Trial(Trial {
            image: a,
            tries: Tries::new(2, 3).unwrap(),
            good: Some(b),
        }));
        assert!(
            !boot_is_committed(&trial, Some(a), Some(a)),
            "a trial is not committed"
        );
    }
}
