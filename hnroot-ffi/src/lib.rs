//! # hnroot-ffi
//!
//! `hnroot-core` over a C ABI, for the GRUB module (and any other C caller). The header
//! `include/hnroot.h` is generated from this file by cbindgen (`cargo xtask header`); the
//! build fails when it is stale.
//!
//! Conventions (after rustls-ffi):
//! * every function returns an [`hnroot_result`]; its numbers are fixed and never reused;
//! * every pointer argument is NULL-checked (`HNROOT_RESULT_NULL_ARGUMENT`);
//! * out-parameters are written only when the call returns `HNROOT_RESULT_OK`;
//! * nothing is allocated: callers own every buffer, the library keeps no state.
//!
//! The crate is `no_std`. Built as a static library for GRUB (`x86_64-unknown-none`) it needs the
//! embedding program to provide `void hnroot_ffi_abort(void)`, called only if the core panics,
//! which it is built not to do (`--features panic-handler`).
//!
//! The C caller follows the core's driver contract (`hnroot_core`, "The driver contract"):
//! observe (`hnroot_image_verdict`, `hnroot_fs_probe_*`, `hnroot_choose_device`) → decide
//! (`hnroot_decide`) → write the boot-state block it returns → boot.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn, missing_docs)]
#![allow(non_camel_case_types)]

mod decision;
mod probe;
mod seal;
mod text;
mod verdict;

pub use decision::*;
pub use probe::*;
pub use seal::*;
pub use verdict::*;

use hnroot_core::uuid::FsUuid;

/// Result of every hnroot function. Numbers are stable and never reused.
#[repr(u32)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum hnroot_result {
    /// Success: out-parameters were written.
    HNROOT_RESULT_OK = 0,
    /// A required pointer was NULL. Nothing was written.
    HNROOT_RESULT_NULL_ARGUMENT = 1,
    /// A caller buffer is too small. Nothing was written.
    HNROOT_RESULT_BUFFER_TOO_SHORT = 2,
    /// An enum-valued byte or a length was out of range. Nothing was written.
    HNROOT_RESULT_INVALID_ARGUMENT = 3,
    /// The boot-state block is not [`HNROOT_BOOTSTATE_LEN`] bytes: not ours, never written.
    HNROOT_RESULT_BOOTSTATE_SIZE = 4,
    /// The decision has no boot state to write.
    HNROOT_RESULT_NOTHING_TO_WRITE = 5,
    /// The prober wants a read: `offset`/`len` were written.
    HNROOT_RESULT_NEED_READ = 6,
    /// The prober is done: call the matching `_result` function.
    HNROOT_RESULT_DONE = 7,
    /// The prober was not waiting for data, or was handed more than it asked for.
    HNROOT_RESULT_PROBE_STATE = 8,
    /// The boot-state sequence number is exhausted (2^64 writes).
    HNROOT_RESULT_BOOTSTATE_SEQUENCE = 9,
    /// Data does not match its checksum (a GPT entry array and its CRC32).
    HNROOT_RESULT_CHECKSUM = 10,
    /// The boot-state copy a write would replace was written by a newer hnroot: not written.
    HNROOT_RESULT_BOOTSTATE_NEWER = 11,
}

/// What `r` means, as a static NUL-terminated sentence (never NULL: an unknown number gets
/// "unknown result"). The library owns the text, so every caller says the same thing.
#[no_mangle]
pub extern "C" fn hnroot_result_text(r: hnroot_result) -> *const u8 {
    result_text(r as u32).as_ptr().cast()
}

fn result_text(r: u32) -> &'static core::ffi::CStr {
    use hnroot_result::*;
    // The number, not the enum, is matched: C may pass any value.
    match r {
        x if x == HNROOT_RESULT_OK as u32 => c"ok",
        x if x == HNROOT_RESULT_NULL_ARGUMENT as u32 => c"a required pointer was NULL",
        x if x == HNROOT_RESULT_BUFFER_TOO_SHORT as u32 => c"the output buffer is too short",
        x if x == HNROOT_RESULT_INVALID_ARGUMENT as u32 => c"an argument is out of range",
        x if x == HNROOT_RESULT_BOOTSTATE_SIZE as u32 => {
            c"the boot-state file does not have the size hnroot gives it (1024 bytes)"
        }
        x if x == HNROOT_RESULT_NOTHING_TO_WRITE as u32 => c"there is no boot state to write",
        x if x == HNROOT_RESULT_NEED_READ as u32 => c"the prober needs a read",
        x if x == HNROOT_RESULT_DONE as u32 => c"done",
        x if x == HNROOT_RESULT_PROBE_STATE as u32 => {
            c"the prober was not initialised, or was not waiting for data"
        }
        x if x == HNROOT_RESULT_BOOTSTATE_SEQUENCE as u32 => {
            c"the boot-state sequence number is exhausted"
        }
        x if x == HNROOT_RESULT_CHECKSUM as u32 => c"data does not match its checksum",
        x if x == HNROOT_RESULT_BOOTSTATE_NEWER as u32 => {
            c"the boot state was written by a newer hnroot; this one does not overwrite it"
        }
        _ => c"unknown result",
    }
}

/// Size of the boot-state file in bytes.
pub const HNROOT_BOOTSTATE_LEN: usize = 1024;
const _: () = assert!(HNROOT_BOOTSTATE_LEN == hnroot_core::bootstate::BLOCK_LEN);

/// `hnroot_uuid.kind`: no UUID.
pub const HNROOT_UUID_NONE: u8 = 0;
/// `hnroot_uuid.kind`: 128-bit UUID (ext4, XFS, btrfs, GPT), all 16 bytes used.
pub const HNROOT_UUID_128: u8 = 1;
/// `hnroot_uuid.kind`: FAT volume id, `bytes[0..4]` in display order.
pub const HNROOT_UUID_FAT: u8 = 2;

/// A filesystem UUID.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct hnroot_uuid {
    /// `HNROOT_UUID_NONE`, `HNROOT_UUID_128` or `HNROOT_UUID_FAT`.
    pub kind: u8,
    /// The bytes; unused ones are zero.
    pub bytes: [u8; 16],
}

impl hnroot_uuid {
    /// From the core's type.
    pub fn from_core(uuid: Option<FsUuid>) -> hnroot_uuid {
        let mut out = hnroot_uuid::default();
        match uuid {
            None => {}
            Some(FsUuid::Uuid(b)) => {
                out.kind = HNROOT_UUID_128;
                out.bytes = b;
            }
            Some(FsUuid::VolumeId(b)) => {
                out.kind = HNROOT_UUID_FAT;
                if let Some(dst) = out.bytes.get_mut(..4) {
                    dst.copy_from_slice(&b);
                }
            }
        }
        out
    }

    /// To the core's type; `Err` for an unknown kind.
    pub fn to_core(&self) -> Result<Option<FsUuid>, hnroot_result> {
        match self.kind {
            HNROOT_UUID_NONE => Ok(None),
            HNROOT_UUID_128 => Ok(Some(FsUuid::Uuid(self.bytes))),
            HNROOT_UUID_FAT => {
                let [a, b, c, d, ..] = self.bytes;
                Ok(Some(FsUuid::VolumeId([a, b, c, d])))
            }
            _ => Err(hnroot_result::HNROOT_RESULT_INVALID_ARGUMENT),
        }
    }
}

/// Write `uuid` in blkid's textual form, NUL-terminated, into `buf` (at least 37 bytes is always
/// enough). An empty string for `HNROOT_UUID_NONE`.
///
/// # Safety
/// `uuid` must point to a valid `hnroot_uuid`; `buf` to `buf_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn hnroot_uuid_format(
    uuid: *const hnroot_uuid,
    buf: *mut u8,
    buf_len: usize,
) -> hnroot_result {
    // SAFETY: the caller guarantees `uuid` is NULL or valid.
    let Some(uuid) = (unsafe { uuid.as_ref() }) else {
        return hnroot_result::HNROOT_RESULT_NULL_ARGUMENT;
    };
    let core = match uuid.to_core() {
        Ok(core) => core,
        Err(e) => return e,
    };
    let mut line = text::Line::<40>::new();
    if let Some(core) = core {
        let _ = core::fmt::Write::write_fmt(&mut line, format_args!("{core}"));
    }
    // SAFETY: the caller guarantees `buf` is NULL or `buf_len` writable bytes.
    unsafe { line.copy_to_c(buf, buf_len) }
}

/// The file name of image `image` (0 `hn-root.img`, 1 `hn-root-old.img`, 2 `hn-root-new.img`,
/// 3 `hn-root-cancelled.img`, 4 `hn-root-broken.img`) as a static NUL-terminated string, or NULL
/// for any other number. The string is never freed.
#[no_mangle]
pub extern "C" fn hnroot_image_file_name(image: u8) -> *const u8 {
    match decision::image_from_u8(image) {
        Ok(name) => text::c_name(name).as_ptr(),
        Err(_) => core::ptr::null(),
    }
}

/// `*out = value` without forming a reference to `*out` (the caller's storage may be
/// uninitialised); `HNROOT_RESULT_NULL_ARGUMENT` for a NULL `out`.
///
/// # Safety
/// `out` must be NULL or valid for writes of a `T`.
pub(crate) unsafe fn write_out<T>(out: *mut T, value: T) -> hnroot_result {
    if out.is_null() {
        return hnroot_result::HNROOT_RESULT_NULL_ARGUMENT;
    }
    // SAFETY: non-NULL and valid for writes (caller contract); `write` does not read or drop
    // what was there.
    unsafe { out.write(value) };
    hnroot_result::HNROOT_RESULT_OK
}

/// A reference from a pointer the caller promises is NULL or valid, or return
/// `HNROOT_RESULT_NULL_ARGUMENT` from the calling function.
macro_rules! try_ref {
    ($p:expr) => {
        // SAFETY: every public function's contract: pointers are NULL or valid.
        match unsafe { $p.as_ref() } {
            Some(r) => r,
            None => return $crate::hnroot_result::HNROOT_RESULT_NULL_ARGUMENT,
        }
    };
}
pub(crate) use try_ref;

/// Return `HNROOT_RESULT_NULL_ARGUMENT` from the calling function if any of the pointers is NULL
/// (out-pointers and buffers, which are written, never read: no reference is formed, their
/// storage may be uninitialised).
macro_rules! require {
    ($($p:expr),+ $(,)?) => {
        if false $(|| $p.is_null())+ {
            return $crate::hnroot_result::HNROOT_RESULT_NULL_ARGUMENT;
        }
    };
}
pub(crate) use require;

/// A mutable reference from a pointer the caller promises is NULL or valid, or return
/// `HNROOT_RESULT_NULL_ARGUMENT` from the calling function.
macro_rules! try_mut {
    ($p:expr) => {
        // SAFETY: every public function's contract: pointers are NULL or valid.
        match unsafe { $p.as_mut() } {
            Some(r) => r,
            None => return $crate::hnroot_result::HNROOT_RESULT_NULL_ARGUMENT,
        }
    };
}
pub(crate) use try_mut;

/// A byte slice from a pointer and a length the caller promises are NULL or valid, or return
/// `HNROOT_RESULT_NULL_ARGUMENT` from the calling function.
macro_rules! try_slice {
    ($p:expr, $len:expr) => {{
        let (p, len): (*const u8, usize) = ($p, $len);
        if p.is_null() {
            return $crate::hnroot_result::HNROOT_RESULT_NULL_ARGUMENT;
        }
        // SAFETY: non-NULL, and valid for `len` bytes by the contract.
        unsafe { core::slice::from_raw_parts(p, len) }
    }};
}
pub(crate) use try_slice;

#[cfg(feature = "panic-handler")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    extern "C" {
        /// Provided by the embedding program (the GRUB module calls `grub_fatal`).
        fn hnroot_ffi_abort() -> !;
    }
    // SAFETY: the embedding program defines this function; it does not return.
    unsafe { hnroot_ffi_abort() }
}
