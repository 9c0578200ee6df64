//! The core's filesystem and partition-table probers over the C ABI. The caller owns the
//! prober's storage (`struct hnroot_fs_probe`, `struct hnroot_pt_probe`: opaque, fixed size),
//! does every read the prober asks for, and hands the bytes back. Nothing is allocated.
//!
//! ```c
//! struct hnroot_fs_probe p;
//! uint64_t off; uint32_t len;
//! hnroot_fs_probe_init (&p, size);
//! while (hnroot_fs_probe_step (&p, &off, &len) == HNROOT_RESULT_NEED_READ)
//!   hnroot_fs_probe_feed (&p, buf, read_at (off, len, buf));   /* buf: HNROOT_PROBE_MAX_READ */
//! hnroot_fs_probe_result (&p, &info);
//! ```

use core::mem::{align_of, size_of};

use hnroot_core::probe::{
    FsOutcome, FsProber, FsType, Label, Partition, ProbeStep, Prober, PtOutcome, PtProber,
    LABEL_CAPACITY, MAX_FS_READS, MAX_PT_READS, MAX_READ,
};
use hnroot_core::uuid::PartUuid;

use crate::text::Line;
use crate::{hnroot_result, hnroot_uuid, require, try_mut, try_slice};

/// Largest read a prober asks for: size the read buffer with it.
pub const HNROOT_PROBE_MAX_READ: u32 = 65536;
const _: () = assert!(HNROOT_PROBE_MAX_READ as usize == MAX_READ);

/// Longest label in bytes (btrfs); `hnroot_fs_info.label` holds this plus a NUL.
pub const HNROOT_LABEL_MAX: usize = 256;
const _: () = assert!(HNROOT_LABEL_MAX == LABEL_CAPACITY);

/// Size of the label and name buffers (`HNROOT_LABEL_MAX` bytes and a NUL). A named constant,
/// not `HNROOT_LABEL_MAX + 1`, because cbindgen turns a struct with an array length it cannot
/// evaluate into an opaque declaration C cannot use.
pub const HNROOT_LABEL_BUF_LEN: usize = 257;
const _: () = assert!(HNROOT_LABEL_BUF_LEN == HNROOT_LABEL_MAX + 1);

/// Most `HNROOT_RESULT_NEED_READ` steps a filesystem prober asks for before it is done: bound
/// the caller's step/feed loop with it.
pub const HNROOT_FS_PROBE_MAX_READS: u32 = 897;
const _: () = assert!(HNROOT_FS_PROBE_MAX_READS == MAX_FS_READS);

/// Most `HNROOT_RESULT_NEED_READ` steps a partition-table prober asks for.
pub const HNROOT_PT_PROBE_MAX_READS: u32 = 34;
const _: () = assert!(HNROOT_PT_PROBE_MAX_READS == MAX_PT_READS);

const FS_MAGIC: u64 = 0x686e_7266_7370_7231; // "hnrfspr1"
const PT_MAGIC: u64 = 0x686e_7270_7470_7231; // "hnrptpr1"

/// Storage for a filesystem prober; initialise with `hnroot_fs_probe_init`.
#[repr(C)]
#[derive(Debug)]
pub struct hnroot_fs_probe {
    /// Set by init; any other value means "not initialised".
    pub magic: u64,
    /// The prober.
    pub opaque: [u64; 128],
}

/// Storage for a partition-table prober; initialise with `hnroot_pt_probe_init`.
#[repr(C)]
#[derive(Debug)]
pub struct hnroot_pt_probe {
    /// Set by init; any other value means "not initialised".
    pub magic: u64,
    /// The prober.
    pub opaque: [u64; 16],
}

const _: () = assert!(size_of::<FsProber>() <= size_of::<[u64; 128]>());
const _: () = assert!(align_of::<FsProber>() <= align_of::<u64>());
const _: () = assert!(size_of::<PtProber>() <= size_of::<[u64; 16]>());
const _: () = assert!(align_of::<PtProber>() <= align_of::<u64>());

/// `hnroot_fs_info.outcome`: no filesystem hnroot knows.
pub const HNROOT_FS_UNKNOWN: u8 = 0;
/// Exactly one filesystem; the other fields are set.
pub const HNROOT_FS_FOUND: u8 = 1;
/// More than one valid superblock: blkid's "ambivalent result"; never matches a label.
pub const HNROOT_FS_AMBIVALENT: u8 = 2;
/// A RAID member, LVM volume or encrypted volume.
pub const HNROOT_FS_OTHER: u8 = 3;

/// `hnroot_fs_info.fs_type`, in the order of `hnroot_core::probe::FsType::ALL`; name with
/// `hnroot_fs_type_name`.
pub const HNROOT_FS_TYPE_VFAT: u8 = 0;
/// XFS.
pub const HNROOT_FS_TYPE_XFS: u8 = 1;
/// ext4dev.
pub const HNROOT_FS_TYPE_EXT4DEV: u8 = 2;
/// ext4.
pub const HNROOT_FS_TYPE_EXT4: u8 = 3;
/// ext3.
pub const HNROOT_FS_TYPE_EXT3: u8 = 4;
/// ext2.
pub const HNROOT_FS_TYPE_EXT2: u8 = 5;
/// An ext3/4 external journal.
pub const HNROOT_FS_TYPE_JBD: u8 = 6;
/// btrfs.
pub const HNROOT_FS_TYPE_BTRFS: u8 = 7;

/// What a filesystem probe found.
#[repr(C)]
#[derive(Debug)]
pub struct hnroot_fs_info {
    /// `HNROOT_FS_*`.
    pub outcome: u8,
    /// `HNROOT_FS_TYPE_*` when found.
    pub fs_type: u8,
    /// The filesystem UUID (`HNROOT_UUID_NONE` if it has none).
    pub uuid: hnroot_uuid,
    /// Whether there is a label.
    pub has_label: bool,
    /// Bytes in `label`, before its NUL.
    pub label_len: u16,
    /// The label's raw bytes as blkid reports them, NUL-terminated.
    pub label: [u8; HNROOT_LABEL_BUF_LEN],
    /// Whether there is a FAT boot-sector label (`LABEL_FATBOOT`).
    pub has_label_fatboot: bool,
    /// Bytes in `label_fatboot`, before its NUL.
    pub label_fatboot_len: u16,
    /// The boot-sector label, NUL-terminated.
    pub label_fatboot: [u8; HNROOT_LABEL_BUF_LEN],
    /// When found: bytes the filesystem says it spans from the start of the device (0 when it
    /// does not say).
    pub fs_size: u64,
    /// When found: bytes of the filesystem beyond the end of the device given to
    /// `hnroot_fs_probe_init` (0 when it fits). Not 0 means a truncated copy: blkid still
    /// reports it, but it cannot be mounted or booted.
    pub missing_bytes: u64,
}

/// `hnroot_pt_info.kind`: no partition table hnroot knows.
pub const HNROOT_PT_NONE: u8 = 0;
/// GPT: read `entries_len` bytes at `entries_offset`, pass them to `hnroot_pt_partition`.
pub const HNROOT_PT_GPT: u8 = 1;
/// MBR (primary partitions through `hnroot_pt_partition`).
pub const HNROOT_PT_MBR: u8 = 2;
/// A protective MBR whose GPT headers are both damaged: no partitions.
pub const HNROOT_PT_PMBR: u8 = 3;

/// What a partition-table probe found.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct hnroot_pt_info {
    /// `HNROOT_PT_*`.
    pub kind: u8,
    /// GPT: the backup header was used.
    pub from_backup: bool,
    /// GPT: where the entry array is, in bytes.
    pub entries_offset: u64,
    /// GPT: its length in bytes.
    pub entries_len: u32,
}

/// One partition.
#[repr(C)]
#[derive(Debug)]
pub struct hnroot_partition {
    /// Partition number (`sda<number>`; GRUB's `(hd0,gpt<number>)`).
    pub number: u32,
    /// Start in bytes.
    pub start: u64,
    /// Size in bytes.
    pub size: u64,
    /// The PARTUUID as blkid prints it, NUL-terminated; empty if there is none.
    pub partuuid: [u8; 40],
    /// Bytes in `name`, before its NUL.
    pub name_len: u16,
    /// `PARTLABEL` (GPT name as UTF-8), NUL-terminated.
    pub name: [u8; HNROOT_LABEL_BUF_LEN],
}

/// # Safety
/// `p` must be NULL or point to a `hnroot_fs_probe`.
pub(crate) unsafe fn fs_prober<'a>(
    p: *mut hnroot_fs_probe,
) -> Result<&'a mut FsProber, hnroot_result> {
    // SAFETY: caller contract: NULL or valid.
    let p = unsafe { p.as_mut() }.ok_or(hnroot_result::HNROOT_RESULT_NULL_ARGUMENT)?;
    if p.magic != FS_MAGIC {
        return Err(hnroot_result::HNROOT_RESULT_PROBE_STATE);
    }
    // SAFETY: magic is set only by `hnroot_fs_probe_init`, which wrote a FsProber at the
    // start of `opaque` (size and alignment checked at compile time).
    Ok(unsafe { &mut *p.opaque.as_mut_ptr().cast::<FsProber>() })
}

/// # Safety
/// `p` must be NULL or point to a `hnroot_pt_probe`.
unsafe fn pt_prober<'a>(p: *mut hnroot_pt_probe) -> Result<&'a mut PtProber, hnroot_result> {
    // SAFETY: caller contract: NULL or valid.
    let p = unsafe { p.as_mut() }.ok_or(hnroot_result::HNROOT_RESULT_NULL_ARGUMENT)?;
    if p.magic != PT_MAGIC {
        return Err(hnroot_result::HNROOT_RESULT_PROBE_STATE);
    }
    // SAFETY: as in `fs_prober`.
    Ok(unsafe { &mut *p.opaque.as_mut_ptr().cast::<PtProber>() })
}

/// The body of the `_step` functions: the read a prober wants into `*offset`/`*len`.
///
/// # Safety
/// `offset` and `len` must be NULL or valid.
unsafe fn step_out<P: Prober>(
    prober: Result<&mut P, hnroot_result>,
    offset: *mut u64,
    len: *mut u32,
) -> hnroot_result {
    require!(offset, len);
    let prober = match prober {
        Ok(prober) => prober,
        Err(e) => return e,
    };
    match prober.step() {
        ProbeStep::Read(r) => {
            // SAFETY: both checked non-NULL above; valid by the caller's contract.
            unsafe {
                offset.write(r.offset);
                len.write(u32::try_from(r.len).unwrap_or(HNROOT_PROBE_MAX_READ));
            }
            hnroot_result::HNROOT_RESULT_NEED_READ
        }
        ProbeStep::Done(_) => hnroot_result::HNROOT_RESULT_DONE,
    }
}

/// The body of the `_feed` functions.
///
/// # Safety
/// `data` must be valid for `data_len` bytes (it may be NULL when `data_len` is 0).
unsafe fn feed_in<P: Prober>(
    prober: Result<&mut P, hnroot_result>,
    data: *const u8,
    data_len: usize,
) -> hnroot_result {
    let prober = match prober {
        Ok(prober) => prober,
        Err(e) => return e,
    };
    // SAFETY: caller contract.
    match unsafe { fed_bytes(prober.step(), data, data_len) } {
        Ok(bytes) => {
            prober.feed(bytes);
            hnroot_result::HNROOT_RESULT_OK
        }
        Err(e) => e,
    }
}

/// Start probing a device (or partition) of `device_size` bytes for a filesystem.
///
/// # Safety
/// `p` must be NULL or point to writable storage for a `hnroot_fs_probe`.
#[no_mangle]
pub unsafe extern "C" fn hnroot_fs_probe_init(
    p: *mut hnroot_fs_probe,
    device_size: u64,
) -> hnroot_result {
    let p = try_mut!(p);
    // SAFETY: `opaque` is large and aligned enough (checked at compile time); FsProber has no
    // drop glue that matters (fixed-size buffers of bytes), so overwriting is fine.
    unsafe {
        p.opaque
            .as_mut_ptr()
            .cast::<FsProber>()
            .write(FsProber::new(device_size))
    };
    p.magic = FS_MAGIC;
    hnroot_result::HNROOT_RESULT_OK
}

/// What the prober needs: `HNROOT_RESULT_NEED_READ` with `*offset`/`*len` set (read those bytes
/// of the device, then `hnroot_fs_probe_feed`), or `HNROOT_RESULT_DONE`.
///
/// # Safety
/// Pointers must be NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn hnroot_fs_probe_step(
    p: *mut hnroot_fs_probe,
    offset: *mut u64,
    len: *mut u32,
) -> hnroot_result {
    // SAFETY: caller contract.
    unsafe { step_out(fs_prober(p), offset, len) }
}

/// Hand in the bytes read for the last `NEED_READ` (fewer at the end of the device, or none if
/// the read failed). `HNROOT_RESULT_PROBE_STATE` if no read was pending or more bytes than asked
/// were given (nothing is consumed then).
///
/// # Safety
/// `data` must be valid for `data_len` bytes (it may be NULL when `data_len` is 0).
#[no_mangle]
pub unsafe extern "C" fn hnroot_fs_probe_feed(
    p: *mut hnroot_fs_probe,
    data: *const u8,
    data_len: usize,
) -> hnroot_result {
    // SAFETY: caller contract.
    unsafe { feed_in(fs_prober(p), data, data_len) }
}

/// The bytes handed to a `_feed` function, checked against the read the prober asked for:
/// `PROBE_STATE` when none is pending or more bytes than asked were given.
///
/// # Safety
/// `data` must be valid for `data_len` bytes (it may be NULL when `data_len` is 0).
unsafe fn fed_bytes<'a, T>(
    step: ProbeStep<T>,
    data: *const u8,
    data_len: usize,
) -> Result<&'a [u8], hnroot_result> {
    let ProbeStep::Read(asked) = step else {
        return Err(hnroot_result::HNROOT_RESULT_PROBE_STATE);
    };
    if data_len > asked.len || (data.is_null() && data_len > 0) {
        return Err(hnroot_result::HNROOT_RESULT_PROBE_STATE);
    }
    if data_len == 0 {
        return Ok(&[]);
    }
    // SAFETY: non-NULL and valid for `data_len` bytes (caller contract).
    Ok(unsafe { core::slice::from_raw_parts(data, data_len) })
}

fn copy_label(
    label: Option<&Label>,
    has: &mut bool,
    len: &mut u16,
    out: &mut [u8; HNROOT_LABEL_BUF_LEN],
) {
    *out = [0; HNROOT_LABEL_BUF_LEN];
    if let Some(label) = label {
        let bytes = label.as_bytes();
        let n = bytes.len().min(HNROOT_LABEL_MAX);
        if let (Some(dst), Some(src)) = (out.get_mut(..n), bytes.get(..n)) {
            dst.copy_from_slice(src);
        }
        *has = true;
        *len = u16::try_from(n).unwrap_or(0);
    }
}

pub(crate) fn fs_type_to_u8(t: FsType) -> u8 {
    FsType::ALL
        .iter()
        .position(|&x| x == t)
        .and_then(|i| u8::try_from(i).ok())
        .unwrap_or(u8::MAX)
}

/// Whether the finished prober found one filesystem labelled `label` (`label_len` bytes):
/// blkid's `LABEL=`, byte for byte, the core's rule (`FsOutcome::is_labelled`), by which GRUB
/// and Linux both find hostpart and the ESP. `*out` is written only on success;
/// `HNROOT_RESULT_PROBE_STATE` before the prober is done.
///
/// # Safety
/// Pointers must be NULL or valid; `label` for `label_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn hnroot_fs_labelled(
    p: *mut hnroot_fs_probe,
    label: *const u8,
    label_len: usize,
    out: *mut bool,
) -> hnroot_result {
    // SAFETY: caller contract.
    let prober = match unsafe { fs_prober(p) } {
        Ok(prober) => prober,
        Err(e) => return e,
    };
    let wanted = try_slice!(label, label_len);
    require!(out);
    let ProbeStep::Done(outcome) = prober.step() else {
        return hnroot_result::HNROOT_RESULT_PROBE_STATE;
    };
    // SAFETY: checked non-NULL; caller contract.
    unsafe { crate::write_out(out, outcome.is_labelled(wanted)) }
}

/// The answer, once `hnroot_fs_probe_step` returned `HNROOT_RESULT_DONE`
/// (`HNROOT_RESULT_PROBE_STATE` before that; `*out` is then untouched).
///
/// # Safety
/// Pointers must be NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn hnroot_fs_probe_result(
    p: *mut hnroot_fs_probe,
    out: *mut hnroot_fs_info,
) -> hnroot_result {
    // SAFETY: caller contract.
    let prober = match unsafe { fs_prober(p) } {
        Ok(prober) => prober,
        Err(e) => return e,
    };
    require!(out);
    let ProbeStep::Done(outcome) = prober.step() else {
        return hnroot_result::HNROOT_RESULT_PROBE_STATE;
    };
    // Built whole, then written: the caller's storage may be uninitialised, so no reference
    // to it is ever formed.
    let mut info = hnroot_fs_info {
        outcome: HNROOT_FS_UNKNOWN,
        fs_type: 0,
        uuid: hnroot_uuid::default(),
        has_label: false,
        label_len: 0,
        label: [0; HNROOT_LABEL_BUF_LEN],
        has_label_fatboot: false,
        label_fatboot_len: 0,
        label_fatboot: [0; HNROOT_LABEL_BUF_LEN],
        fs_size: 0,
        missing_bytes: 0,
    };
    info.outcome = match &outcome {
        FsOutcome::Found(found) => {
            info.fs_type = fs_type_to_u8(found.fs_type);
            info.uuid = hnroot_uuid::from_core(found.uuid);
            info.fs_size = found.size.unwrap_or(0);
            info.missing_bytes = found.missing_bytes(prober.device_size()).unwrap_or(0);
            copy_label(
                found.label.as_ref(),
                &mut info.has_label,
                &mut info.label_len,
                &mut info.label,
            );
            copy_label(
                found.label_fatboot.as_ref(),
                &mut info.has_label_fatboot,
                &mut info.label_fatboot_len,
                &mut info.label_fatboot,
            );
            HNROOT_FS_FOUND
        }
        FsOutcome::Unknown => HNROOT_FS_UNKNOWN,
        FsOutcome::Ambivalent(_) => HNROOT_FS_AMBIVALENT,
        FsOutcome::Other(_) => HNROOT_FS_OTHER,
    };
    // SAFETY: checked non-NULL; caller contract.
    unsafe { crate::write_out(out, info) }
}

/// blkid's `TYPE=` for `HNROOT_FS_TYPE_*`, as a static NUL-terminated string; NULL for any other
/// number.
#[no_mangle]
pub extern "C" fn hnroot_fs_type_name(fs_type: u8) -> *const u8 {
    match FsType::ALL.get(usize::from(fs_type)) {
        Some(FsType::Vfat) => c"vfat".as_ptr().cast(),
        Some(FsType::Xfs) => c"xfs".as_ptr().cast(),
        Some(FsType::Ext4dev) => c"ext4dev".as_ptr().cast(),
        Some(FsType::Ext4) => c"ext4".as_ptr().cast(),
        Some(FsType::Ext3) => c"ext3".as_ptr().cast(),
        Some(FsType::Ext2) => c"ext2".as_ptr().cast(),
        Some(FsType::Jbd) => c"jbd".as_ptr().cast(),
        Some(FsType::Btrfs) => c"btrfs".as_ptr().cast(),
        None => core::ptr::null(),
    }
}

/// Start probing a whole disk of `device_size` bytes with logical sectors of `sector_size`
/// bytes for a partition table.
///
/// # Safety
/// `p` must be NULL or point to writable storage for a `hnroot_pt_probe`.
#[no_mangle]
pub unsafe extern "C" fn hnroot_pt_probe_init(
    p: *mut hnroot_pt_probe,
    device_size: u64,
    sector_size: u32,
) -> hnroot_result {
    let p = try_mut!(p);
    // SAFETY: size and alignment checked at compile time; PtProber is Copy.
    unsafe {
        p.opaque
            .as_mut_ptr()
            .cast::<PtProber>()
            .write(PtProber::new(device_size, sector_size))
    };
    p.magic = PT_MAGIC;
    hnroot_result::HNROOT_RESULT_OK
}

/// As `hnroot_fs_probe_step`.
///
/// # Safety
/// Pointers must be NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn hnroot_pt_probe_step(
    p: *mut hnroot_pt_probe,
    offset: *mut u64,
    len: *mut u32,
) -> hnroot_result {
    // SAFETY: caller contract.
    unsafe { step_out(pt_prober(p), offset, len) }
}

/// As `hnroot_fs_probe_feed`.
///
/// # Safety
/// `data` must be valid for `data_len` bytes (it may be NULL when `data_len` is 0).
#[no_mangle]
pub unsafe extern "C" fn hnroot_pt_probe_feed(
    p: *mut hnroot_pt_probe,
    data: *const u8,
    data_len: usize,
) -> hnroot_result {
    // SAFETY: caller contract.
    unsafe { feed_in(pt_prober(p), data, data_len) }
}

fn pt_outcome(prober: &mut PtProber) -> Option<PtOutcome> {
    match prober.step() {
        ProbeStep::Done(outcome) => Some(outcome),
        ProbeStep::Read(_) => None,
    }
}

/// The table, once `hnroot_pt_probe_step` returned `HNROOT_RESULT_DONE`.
///
/// # Safety
/// Pointers must be NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn hnroot_pt_probe_result(
    p: *mut hnroot_pt_probe,
    out: *mut hnroot_pt_info,
) -> hnroot_result {
    // SAFETY: caller contract.
    let prober = match unsafe { pt_prober(p) } {
        Ok(prober) => prober,
        Err(e) => return e,
    };
    require!(out);
    let Some(outcome) = pt_outcome(prober) else {
        return hnroot_result::HNROOT_RESULT_PROBE_STATE;
    };
    let info = match outcome {
        PtOutcome::Gpt(t) => {
            let (offset, len) = t.entries();
            hnroot_pt_info {
                kind: HNROOT_PT_GPT,
                from_backup: t.from_backup(),
                entries_offset: offset,
                entries_len: u32::try_from(len).unwrap_or(0),
            }
        }
        PtOutcome::Mbr(_) => hnroot_pt_info {
            kind: HNROOT_PT_MBR,
            ..hnroot_pt_info::default()
        },
        PtOutcome::ProtectiveMbrOnly => hnroot_pt_info {
            kind: HNROOT_PT_PMBR,
            ..hnroot_pt_info::default()
        },
        PtOutcome::None => hnroot_pt_info::default(),
    };
    // SAFETY: non-NULL and valid (caller contract).
    unsafe { out.write(info) };
    hnroot_result::HNROOT_RESULT_OK
}

/// The `index`-th partition (0-based, in table order) of the table the prober found. For a GPT
/// pass the entry array (`entries_len` bytes read at `entries_offset`; its CRC is checked
/// again); for an MBR `entries` may be NULL (primary partitions only). Returns
/// `HNROOT_RESULT_DONE` past the last partition, `HNROOT_RESULT_CHECKSUM` when the entry array
/// does not match its CRC.
///
/// # Safety
/// Pointers must be NULL or valid; `entries` for `entries_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn hnroot_pt_partition(
    p: *mut hnroot_pt_probe,
    entries: *const u8,
    entries_len: usize,
    index: u32,
    out: *mut hnroot_partition,
) -> hnroot_result {
    // SAFETY: caller contract.
    let prober = match unsafe { pt_prober(p) } {
        Ok(prober) => prober,
        Err(e) => return e,
    };
    require!(out);
    let Some(outcome) = pt_outcome(prober) else {
        return hnroot_result::HNROOT_RESULT_PROBE_STATE;
    };
    let index = usize::try_from(index).unwrap_or(usize::MAX);
    let part: Option<Partition> = match outcome {
        PtOutcome::Gpt(table) => {
            if entries.is_null() {
                return hnroot_result::HNROOT_RESULT_NULL_ARGUMENT;
            }
            // SAFETY: non-NULL and valid for `entries_len` bytes (caller contract).
            let bytes = unsafe { core::slice::from_raw_parts(entries, entries_len) };
            match table.partitions(bytes) {
                Ok(mut parts) => parts.nth(index),
                Err(_) => return hnroot_result::HNROOT_RESULT_CHECKSUM,
            }
        }
        PtOutcome::Mbr(table) => table.primaries().nth(index),
        PtOutcome::ProtectiveMbrOnly | PtOutcome::None => None,
    };
    let Some(part) = part else {
        return hnroot_result::HNROOT_RESULT_DONE;
    };
    let mut partuuid = [0u8; 40];
    if let Some(u) = part.partuuid {
        let mut line = Line::<40>::new();
        let _ = core::fmt::Write::write_fmt(&mut line, format_args!("{u}"));
        // SAFETY: a local buffer of 40 bytes; a PARTUUID is at most 36 characters.
        let _ = unsafe { line.copy_to_c(partuuid.as_mut_ptr(), partuuid.len()) };
    }
    let mut name = [0u8; HNROOT_LABEL_BUF_LEN];
    let mut has = false;
    let mut name_len = 0;
    copy_label(part.name.as_ref(), &mut has, &mut name_len, &mut name);
    // SAFETY: non-NULL and valid (caller contract).
    unsafe {
        out.write(hnroot_partition {
            number: part.number,
            start: part.start,
            size: part.size,
            partuuid,
            name_len,
            name,
        })
    };
    hnroot_result::HNROOT_RESULT_OK
}

/// Parse a textual PARTUUID (GPT GUID or MBR `xxxxxxxx-nn`) only to check it; `HNROOT_RESULT_OK`
/// if valid. For GRUB to validate `--hostpart-partuuid` before comparing strings.
///
/// # Safety
/// `text` must be NULL or valid for `text_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn hnroot_partuuid_check(text: *const u8, text_len: usize) -> hnroot_result {
    require!(text);
    // SAFETY: caller contract.
    let bytes = unsafe { core::slice::from_raw_parts(text, text_len) };
    match core::str::from_utf8(bytes).ok().map(PartUuid::parse) {
        Some(Ok(_)) => hnroot_result::HNROOT_RESULT_OK,
        _ => hnroot_result::HNROOT_RESULT_INVALID_ARGUMENT,
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn fs_probe(image: &[u8]) -> hnroot_fs_info {
        let mut p = hnroot_fs_probe {
            magic: 0,
            opaque: [0; 128],
        };
        assert_eq!(
            unsafe { hnroot_fs_probe_init(&mut p, image.len() as u64) },
            hnroot_result::HNROOT_RESULT_OK
        );
        let (mut off, mut len) = (0u64, 0u32);
        let mut reads = 0;
        while unsafe { hnroot_fs_probe_step(&mut p, &mut off, &mut len) }
            == hnroot_result::HNROOT_RESULT_NEED_READ
        {
            reads += 1;
            assert!(reads <= HNROOT_FS_PROBE_MAX_READS);
            let start = (off as usize).min(image.len());
            let end = (start + len as usize).min(image.len());
            let r =
                unsafe { hnroot_fs_probe_feed(&mut p, image[start..end].as_ptr(), end - start) };
            assert_eq!(r, hnroot_result::HNROOT_RESULT_OK);
        }
        let mut info: hnroot_fs_info = unsafe { core::mem::zeroed() };
        assert_eq!(
            unsafe { hnroot_fs_probe_result(&mut p, &mut info) },
            hnroot_result::HNROOT_RESULT_OK
        );
        info
    }

    fn mkfs(args: &[&str], size: &str) -> Vec<u8> {
        static N: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, core::sync::atomic::Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(std::format!("hnroot-ffi-probe-{}-{n}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let status = std::process::Command::new("truncate")
            .args(["-s", size])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success());
        let status = std::process::Command::new(args[0])
            .args(&args[1..])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success(), "{args:?}");
        let bytes = std::fs::read(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        bytes
    }

    #[test]
    fn probes_an_ext4_image_made_by_mkfs() {
        let image = mkfs(
            &[
                "mkfs.ext4",
                "-q",
                "-F",
                "-L",
                "hostpart",
                "-U",
                "0fc63daf-8483-4772-8e79-3d69d8477de4",
            ],
            "8M",
        );
        let info = fs_probe(&image);
        assert_eq!(info.outcome, HNROOT_FS_FOUND);
        assert_eq!(info.fs_type, HNROOT_FS_TYPE_EXT4);
        assert!(info.has_label);
        assert_eq!(&info.label[..9], b"hostpart\0");
        assert_eq!(info.label_len, 8);
        let mut text = [0u8; 40];
        assert_eq!(
            unsafe { crate::hnroot_uuid_format(&info.uuid, text.as_mut_ptr(), text.len()) },
            hnroot_result::HNROOT_RESULT_OK
        );
        assert_eq!(&text[..37], b"0fc63daf-8483-4772-8e79-3d69d8477de4\0");
        assert_eq!((info.fs_size, info.missing_bytes), (8 << 20, 0));
        // The same filesystem cut short by 1 MiB: still found (as blkid does), with what is
        // missing said.
        let cut = fs_probe(&image[..7 << 20]);
        assert_eq!(
            (cut.outcome, cut.fs_type),
            (HNROOT_FS_FOUND, HNROOT_FS_TYPE_EXT4)
        );
        assert_eq!((cut.fs_size, cut.missing_bytes), (8 << 20, 1 << 20));
        let name = hnroot_fs_type_name(info.fs_type);
        assert_eq!(
            unsafe { core::ffi::CStr::from_ptr(name.cast()) }
                .to_str()
                .unwrap(),
            "ext4"
        );
        assert!(hnroot_fs_type_name(200).is_null());
    }

    #[test]
    fn c_layout_uses_the_named_lengths() {
        // The header declares these arrays with HNROOT_LABEL_BUF_LEN; a C caller sizes its
        // own copies with it.
        let info: hnroot_fs_info = unsafe { core::mem::zeroed() };
        assert_eq!(info.label.len(), HNROOT_LABEL_MAX + 1);
        assert_eq!(info.label_fatboot.len(), HNROOT_LABEL_BUF_LEN);
        let part: hnroot_partition = unsafe { core::mem::zeroed() };
        assert_eq!(part.name.len(), HNROOT_LABEL_BUF_LEN);
        // The C caller's loop bound: a FAT32 root directory chain is the longest walk, and
        // the prober's own count never passes the bound handed to C.
        let image = mkfs(&["mkfs.vfat", "-F", "32", "-n", "EFI-BOOT"], "40M");
        let mut p = hnroot_fs_probe {
            magic: 0,
            opaque: [0; 128],
        };
        unsafe { hnroot_fs_probe_init(&mut p, image.len() as u64) };
        let (mut off, mut len) = (0u64, 0u32);
        let mut reads = 0u32;
        while unsafe { hnroot_fs_probe_step(&mut p, &mut off, &mut len) }
            == hnroot_result::HNROOT_RESULT_NEED_READ
        {
            reads += 1;
            assert!(reads <= HNROOT_FS_PROBE_MAX_READS);
            assert!(len <= HNROOT_PROBE_MAX_READ);
            let s = off as usize;
            let e = (s + len as usize).min(image.len());
            unsafe { hnroot_fs_probe_feed(&mut p, image[s..e].as_ptr(), e - s) };
        }
        let mut info: hnroot_fs_info = unsafe { core::mem::zeroed() };
        unsafe { hnroot_fs_probe_result(&mut p, &mut info) };
        assert_eq!(
            (info.outcome, info.fs_type),
            (HNROOT_FS_FOUND, HNROOT_FS_TYPE_VFAT)
        );
        assert_eq!(&info.label[..9], b"EFI-BOOT\0");
        assert!(reads >= 1);
    }

    #[test]
    fn garbage_is_unknown_and_misuse_is_refused() {
        let info = fs_probe(&[0x5au8; 300_000]);
        assert_eq!((info.outcome, info.has_label), (HNROOT_FS_UNKNOWN, false));
        let mut p = hnroot_fs_probe {
            magic: 0,
            opaque: [0; 128],
        };
        let (mut off, mut len) = (0u64, 0u32);
        assert_eq!(
            unsafe { hnroot_fs_probe_step(&mut p, &mut off, &mut len) },
            hnroot_result::HNROOT_RESULT_PROBE_STATE
        );
        unsafe { hnroot_fs_probe_init(&mut p, 1 << 20) };
        assert_eq!(
            unsafe { hnroot_fs_probe_step(&mut p, &mut off, &mut len) },
            hnroot_result::HNROOT_RESULT_NEED_READ
        );
        let too_much = std::vec![0u8; len as usize + 1];
        assert_eq!(
            unsafe { hnroot_fs_probe_feed(&mut p, too_much.as_ptr(), too_much.len()) },
            hnroot_result::HNROOT_RESULT_PROBE_STATE
        );
        let mut info: hnroot_fs_info = unsafe { core::mem::zeroed() };
        info.outcome = 77;
        assert_eq!(
            unsafe { hnroot_fs_probe_result(&mut p, &mut info) },
            hnroot_result::HNROOT_RESULT_PROBE_STATE
        );
        assert_eq!(info.outcome, 77, "untouched before DONE");
        assert_eq!(
            unsafe { hnroot_fs_probe_step(core::ptr::null_mut(), &mut off, &mut len) },
            hnroot_result::HNROOT_RESULT_NULL_ARGUMENT
        );
    }

    #[test]
    fn gpt_partitions_with_names_and_partuuids() {
        let path = std::env::temp_dir().join(std::format!("hnroot-ffi-gpt-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        assert!(std::process::Command::new("truncate")
            .args(["-s", "8M"])
            .arg(&path)
            .status()
            .unwrap()
            .success());
        let status = std::process::Command::new("sgdisk")
            .args([
                "-n",
                "1:2048:+1M",
                "-c",
                "1:EFI-BOOT",
                "-u",
                "1:11111111-2222-3333-4444-555555555555",
            ])
            .args(["-n", "2:0:0", "-c", "2:hostpart"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(status.status.success());
        let disk = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let mut p = hnroot_pt_probe {
            magic: 0,
            opaque: [0; 16],
        };
        unsafe { hnroot_pt_probe_init(&mut p, disk.len() as u64, 512) };
        let (mut off, mut len) = (0u64, 0u32);
        while unsafe { hnroot_pt_probe_step(&mut p, &mut off, &mut len) }
            == hnroot_result::HNROOT_RESULT_NEED_READ
        {
            let s = off as usize;
            let e = (s + len as usize).min(disk.len());
            unsafe { hnroot_pt_probe_feed(&mut p, disk[s..e].as_ptr(), e - s) };
        }
        let mut info = hnroot_pt_info::default();
        assert_eq!(
            unsafe { hnroot_pt_probe_result(&mut p, &mut info) },
            hnroot_result::HNROOT_RESULT_OK
        );
        assert_eq!(info.kind, HNROOT_PT_GPT);
        let entries = &disk[info.entries_offset as usize..][..info.entries_len as usize];
        let mut part: hnroot_partition = unsafe { core::mem::zeroed() };
        assert_eq!(
            unsafe { hnroot_pt_partition(&mut p, entries.as_ptr(), entries.len(), 0, &mut part) },
            hnroot_result::HNROOT_RESULT_OK
        );
        assert_eq!((part.number, part.start), (1, 2048 * 512));
        assert_eq!(
            &part.partuuid[..37],
            b"11111111-2222-3333-4444-555555555555\0"
        );
        assert_eq!(&part.name[..9], b"EFI-BOOT\0");
        assert_eq!(
            unsafe { hnroot_pt_partition(&mut p, entries.as_ptr(), entries.len(), 1, &mut part) },
            hnroot_result::HNROOT_RESULT_OK
        );
        assert_eq!(&part.name[..9], b"hostpart\0");
        assert_eq!(
            unsafe { hnroot_pt_partition(&mut p, entries.as_ptr(), entries.len(), 2, &mut part) },
            hnroot_result::HNROOT_RESULT_DONE
        );
        let mut damaged = entries.to_vec();
        damaged[0] ^= 1;
        assert_eq!(
            unsafe { hnroot_pt_partition(&mut p, damaged.as_ptr(), damaged.len(), 0, &mut part) },
            hnroot_result::HNROOT_RESULT_CHECKSUM,
            "a CRC mismatch has its own result"
        );
        let good = b"11111111-2222-3333-4444-555555555555";
        assert_eq!(
            unsafe { hnroot_partuuid_check(good.as_ptr(), good.len()) },
            hnroot_result::HNROOT_RESULT_OK
        );
        assert_eq!(
            unsafe { hnroot_partuuid_check(b"../x".as_ptr(), 4) },
            hnroot_result::HNROOT_RESULT_INVALID_ARGUMENT
        );
    }
}
