//! The seal of an image for a C driver (GRUB's `hnroot.mod`): `hnroot_seal_judge` judges the
//! last block of an image file against the loader's trusted keys, `hnroot_seal_check_file`
//! compares a boot file's SHA-256 (computed as the driver read it) with the manifest's. The
//! driver reads; these decide. The result goes into `hnroot_image_facts.seal` for the verdict.

use hnroot_core::minisig::PublicKey;
use hnroot_core::seal::{self, BootFile, SealFacts, SealSeen, SEAL_BLOCK_LEN};
use hnroot_core::verdict::SealFact;

use crate::probe::hnroot_fs_probe;
use crate::{hnroot_result, require, try_ref, try_slice, write_out};

/// `hnroot_image_facts.seal`: the driver does not check seals (the plain verdict).
pub const HNROOT_SEAL_NOT_CHECKED: u8 = 0;
/// No seal block at the end of the file.
pub const HNROOT_SEAL_UNSEALED: u8 = 1;
/// The seal holds.
pub const HNROOT_SEAL_SEALED: u8 = 2;
/// The seal does not hold; `problem` says why (`hnroot_core::seal::SealProblem`'s number).
pub const HNROOT_SEAL_BROKEN: u8 = 3;

/// The bytes at the end of an image file that hold its seal (the manifest and signature),
/// passed whole to `hnroot_seal_judge`.
pub const HNROOT_SEAL_BLOCK_LEN: usize = 4096;
// A literal for cbindgen; the core's number, checked at compile time.
const _: () = assert!(HNROOT_SEAL_BLOCK_LEN == SEAL_BLOCK_LEN);

/// The most trusted keys a loader holds.
pub const HNROOT_SEAL_MAX_KEYS: usize = 16;
// A literal for cbindgen; the core's number, checked at compile time.
const _: () = assert!(HNROOT_SEAL_MAX_KEYS == hnroot_core::minisig::MAX_TRUSTED_KEYS);

/// One image's seal as judged.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct hnroot_seal {
    /// `HNROOT_SEAL_*`.
    pub kind: u8,
    /// For `HNROOT_SEAL_BROKEN`: the problem's stable number.
    pub problem: u8,
    /// For `HNROOT_SEAL_SEALED`: the signed version, NUL-terminated.
    pub version: [u8; 65],
    /// For `HNROOT_SEAL_SEALED`: the dm-verity root hash (for `hnroot_image_facts.root_hash`,
    /// and from there the kernel command line).
    pub root_hash: [u8; 32],
    /// For `HNROOT_SEAL_SEALED`: SHA-256 of `/boot/kernel` the manifest states.
    pub kernel_sha256: [u8; 32],
    /// For `HNROOT_SEAL_SEALED`: SHA-256 of `/boot/initramfs` the manifest states.
    pub initramfs_sha256: [u8; 32],
}

impl Default for hnroot_seal {
    fn default() -> hnroot_seal {
        hnroot_seal {
            kind: HNROOT_SEAL_NOT_CHECKED,
            problem: 0,
            version: [0; 65],
            root_hash: [0; 32],
            kernel_sha256: [0; 32],
            initramfs_sha256: [0; 32],
        }
    }
}

/// The core's seal fact for what C put into `hnroot_image_facts.seal` and `.seal_problem`.
pub(crate) fn seal_fact_from_c(kind: u8, problem: u8) -> Result<SealFact, hnroot_result> {
    Ok(match kind {
        HNROOT_SEAL_NOT_CHECKED => SealFact::NotChecked,
        HNROOT_SEAL_UNSEALED => SealFact::Unsealed,
        HNROOT_SEAL_SEALED => SealFact::Sealed,
        HNROOT_SEAL_BROKEN => SealFact::Broken(
            seal::SealProblem::from_number(problem)
                .ok_or(hnroot_result::HNROOT_RESULT_INVALID_ARGUMENT)?,
        ),
        _ => return Err(hnroot_result::HNROOT_RESULT_INVALID_ARGUMENT),
    })
}

fn copy_text(dst: &mut [u8; 65], text: &[u8]) {
    for (d, s) in dst.iter_mut().zip(text.iter().take(64)) {
        *d = *s;
    }
}

/// Judges an image's seal: `block` is the file's last 4096 bytes (NULL when the file is
/// shorter), `file_len` the file's length, `probe` the finished prober run on it (its UUID and
/// size), `keys` the loader's trusted keys (`.pub` files one after another; NULL or empty: no
/// key, so a sealed image's key is unknown). Writes `*out` on `HNROOT_RESULT_OK` only. A key
/// list that does not read is `HNROOT_RESULT_INVALID_ARGUMENT` (the loader was assembled
/// wrong: say so, judge nothing).
///
/// # Safety
/// Pointers must be NULL or valid; `block` for 4096 bytes, `keys` for `keys_len`.
#[no_mangle]
pub unsafe extern "C" fn hnroot_seal_judge(
    probe: *mut hnroot_fs_probe,
    file_len: u64,
    block: *const u8,
    keys: *const u8,
    keys_len: usize,
    out: *mut hnroot_seal,
) -> hnroot_result {
    require!(probe, out);
    let block = if block.is_null() {
        None
    } else {
        Some(try_slice!(block, SEAL_BLOCK_LEN))
    };
    let key_text: &[u8] = if keys.is_null() {
        &[]
    } else {
        try_slice!(keys, keys_len)
    };
    let mut key_list = [PublicKey {
        key_id: [0; 8],
        key: [0; 32],
    }; HNROOT_SEAL_MAX_KEYS];
    let n = match PublicKey::parse_list(key_text, &mut key_list) {
        Ok(n) => n,
        Err(_) => return hnroot_result::HNROOT_RESULT_INVALID_ARGUMENT,
    };
    // SAFETY: caller contract.
    let outcome = match unsafe { crate::verdict::outcome_of(probe) } {
        Ok(o) => o,
        Err(e) => return e,
    };
    let info = outcome.info();
    let seen = match info.and_then(|i| i.uuid.map(|u| (u, i.size))) {
        None => SealSeen::Unsealed,
        Some((fs_uuid, size)) => seal::judge(
            &SealFacts {
                file_len,
                last_block: block,
                fs_uuid,
                fs_bytes: size.unwrap_or(u64::MAX),
            },
            key_list.get(..n).unwrap_or_default(),
        ),
    };
    let mut result = hnroot_seal::default();
    match &seen {
        SealSeen::Unsealed => result.kind = HNROOT_SEAL_UNSEALED,
        SealSeen::Broken(e) => {
            result.kind = HNROOT_SEAL_BROKEN;
            result.problem = e.problem.number();
        }
        SealSeen::Sealed { manifest, .. } => {
            result.kind = HNROOT_SEAL_SEALED;
            copy_text(&mut result.version, manifest.version.as_bytes());
            result.root_hash = manifest.verity.root_hash;
            result.kernel_sha256 = manifest.kernel_sha256;
            result.initramfs_sha256 = manifest.initramfs_sha256;
        }
    }
    // SAFETY: checked non-NULL; caller contract.
    unsafe { write_out(out, result) }
}

/// `which` for `hnroot_seal_check_file`: `/boot/kernel`.
pub const HNROOT_BOOT_FILE_KERNEL: u8 = 1;
/// `/boot/initramfs`.
pub const HNROOT_BOOT_FILE_INITRAMFS: u8 = 2;

/// Whether a boot file's SHA-256, computed as the driver read it, is the one the seal states:
/// `HNROOT_RESULT_OK` with `*matches` 1 or 0 (0: the image must not boot; the problem number
/// for the record in `*problem`).
///
/// # Safety
/// Pointers must be NULL or valid; `sha256` for 32 bytes.
#[no_mangle]
pub unsafe extern "C" fn hnroot_seal_check_file(
    seal: *const hnroot_seal,
    which: u8,
    sha256: *const u8,
    matches: *mut u8,
    problem: *mut u8,
) -> hnroot_result {
    let seal = try_ref!(seal);
    require!(matches, problem);
    let digest = try_slice!(sha256, 32);
    if seal.kind != HNROOT_SEAL_SEALED {
        return hnroot_result::HNROOT_RESULT_INVALID_ARGUMENT;
    }
    let (file, expected) = match which {
        HNROOT_BOOT_FILE_KERNEL => (BootFile::Kernel, seal.kernel_sha256),
        HNROOT_BOOT_FILE_INITRAMFS => (BootFile::Initramfs, seal.initramfs_sha256),
        _ => return hnroot_result::HNROOT_RESULT_INVALID_ARGUMENT,
    };
    let mut got = [0u8; 32];
    got.copy_from_slice(digest);
    let (ok, code) = match seal::check_boot_digest(file, &expected, &got) {
        Ok(()) => (1, 0),
        Err(e) => (0, e.problem.number()),
    };
    // SAFETY: checked non-NULL; caller contract.
    let r = unsafe { write_out(problem, code) };
    if r != hnroot_result::HNROOT_RESULT_OK {
        return r;
    }
    // SAFETY: checked non-NULL; caller contract.
    unsafe { write_out(matches, ok) }
}
