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

#![no_std]
#![deny(unsafe_op_in_unsafe_fn, missing_docs)]
#![allow(non_camel_case_types)]

mod decision;
mod probe;
mod text;

pub use decision::*;
pub use probe::*;

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
