//! The core's judgements a C driver needs besides the decision: whether an image file boots
//! (`hnroot_image_verdict`), which of several same-labelled devices to use
//! (`hnroot_choose_device`), how many tries a text names (`hnroot_parse_tries`), and a label safe to print
//! (`hnroot_label_text`). The driver reads; these decide and word.

use core::fmt::Write as _;

use hnroot_core::cmdline::parse_tries;
use hnroot_core::device::{choose, Candidate, Choice, ChosenBy, MAX_CANDIDATES};
use hnroot_core::probe::{FsOutcome, ProbeStep};
use hnroot_core::uuid::PartUuid;
use hnroot_core::verdict::{
    self, BootFileProblem, BootFiles, Entry, ImageFacts, MissingBootFiles, Probe, SealFact, Verdict,
};

use crate::decision::{HNROOT_IMAGE_ABSENT, HNROOT_IMAGE_BOOTABLE, HNROOT_IMAGE_NOT_BOOTABLE};
use crate::probe::{fs_prober, fs_type_to_u8, hnroot_fs_info, hnroot_fs_probe};
use crate::text::Line;
use crate::{
    hnroot_image_seen, hnroot_result, hnroot_uuid, require, try_ref, try_slice, write_out,
};

/// `hnroot_image_facts.entry`: no such name in hostpart's top directory.
pub const HNROOT_ENTRY_ABSENT: u8 = 0;
/// A file (GRUB opens it, following a symbolic link as its drivers do); `length` is set.
pub const HNROOT_ENTRY_FILE: u8 = 1;
/// The name itself is a directory (as the listing says).
pub const HNROOT_ENTRY_DIRECTORY: u8 = 2;
// 3 was HNROOT_ENTRY_SPECIAL (a device node, FIFO or socket), retired: GRUB's drivers cannot
// tell one from a link that leads nowhere, so both are HNROOT_ENTRY_UNOPENABLE. Never reused.
/// The name is there and is not a directory, but does not open as a regular file (a device
/// node, FIFO or socket, a link that does not lead to a regular file inside hostpart).
pub const HNROOT_ENTRY_UNOPENABLE: u8 = 4;

/// `hnroot_image_facts.probe`: the prober was not run.
pub const HNROOT_PROBE_NOT_RUN: u8 = 0;
/// Reading the file for the prober failed.
pub const HNROOT_PROBE_READ_ERROR: u8 = 1;
/// The prober answered (pass it to `hnroot_image_verdict`).
pub const HNROOT_PROBE_DONE: u8 = 2;

/// `hnroot_image_facts.boot_files`: not looked at.
pub const HNROOT_BOOT_FILES_NOT_CHECKED: u8 = 0;
/// `boot/kernel` and `boot/initramfs` are both regular files with at least one byte (the
/// core's rule for boot files, `hnroot_core::verdict::boot_file`).
pub const HNROOT_BOOT_FILES_PRESENT: u8 = 1;
/// `boot/kernel` is missing (or does not open as a regular file with at least one byte).
pub const HNROOT_BOOT_FILES_NO_KERNEL: u8 = 2;
/// `boot/initramfs` is missing (or does not open as a regular file with at least one byte).
pub const HNROOT_BOOT_FILES_NO_INITRAMFS: u8 = 3;
/// Both are missing.
pub const HNROOT_BOOT_FILES_NEITHER: u8 = 4;
/// The filesystem could not be read far enough to tell.
pub const HNROOT_BOOT_FILES_UNREADABLE: u8 = 5;
/// The driver for the filesystem (GRUB's module) is not available.
pub const HNROOT_BOOT_FILES_NO_DRIVER: u8 = 6;
/// The driver reads the file as another filesystem than the prober.
pub const HNROOT_BOOT_FILES_DRIVER_DISAGREES: u8 = 7;

/// What a driver found out about one image name.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct hnroot_image_facts {
    /// `HNROOT_ENTRY_*`.
    pub entry: u8,
    /// `HNROOT_PROBE_*`.
    pub probe: u8,
    /// `HNROOT_BOOT_FILES_*`.
    pub boot_files: u8,
    /// For `HNROOT_ENTRY_FILE`: the file's own length in bytes (GRUB's `grub_file_size`, not
    /// the loopback disk's size, which is rounded up to whole sectors).
    pub length: u64,
    /// `HNROOT_SEAL_*` (`hnroot_seal_judge`'s `kind`, or the problem of a boot file whose hash
    /// did not match); 0 (`HNROOT_SEAL_NOT_CHECKED`): the plain verdict.
    pub seal: u8,
    /// For `HNROOT_SEAL_BROKEN`: the problem's number (`hnroot_seal.problem`).
    pub seal_problem: u8,
    /// 1: an unsealed image is not bootable (`hnroot install --require-sealed`).
    pub require_sealed: u8,
    /// For `HNROOT_SEAL_SEALED`: the seal's dm-verity root hash (`hnroot_seal.root_hash`),
    /// handed on in `hnroot_image_seen` for the kernel command line.
    pub root_hash: [u8; 32],
}

/// The prober's answer, if `probe` holds a finished prober (a finished prober answers the
/// same at every step).
///
/// # Safety
/// `probe` must be NULL or point to a `hnroot_fs_probe`.
pub(crate) unsafe fn outcome_of(probe: *mut hnroot_fs_probe) -> Result<FsOutcome, hnroot_result> {
    // SAFETY: caller contract.
    match unsafe { fs_prober(probe) }?.step() {
        ProbeStep::Done(outcome) => Ok(outcome),
        ProbeStep::Read(_) => Err(hnroot_result::HNROOT_RESULT_PROBE_STATE),
    }
}

fn entry_from_c(facts: &hnroot_image_facts) -> Result<Entry, hnroot_result> {
    Ok(match facts.entry {
        HNROOT_ENTRY_ABSENT => Entry::Absent,
        HNROOT_ENTRY_FILE => Entry::File {
            length: facts.length,
        },
        HNROOT_ENTRY_DIRECTORY => Entry::Directory,
        HNROOT_ENTRY_UNOPENABLE => Entry::Unopenable,
        _ => return Err(hnroot_result::HNROOT_RESULT_INVALID_ARGUMENT),
    })
}

fn boot_files_from_c(b: u8) -> Result<BootFiles, hnroot_result> {
    Ok(match b {
        HNROOT_BOOT_FILES_NOT_CHECKED => BootFiles::NotChecked,
        HNROOT_BOOT_FILES_PRESENT => BootFiles::Present,
        // GRUB's open of a boot file either gives a regular file with bytes in it or fails,
        // without saying why in a way that holds across its drivers: missing, as far as it
        // can tell (the Linux drivers tell the other cases apart, with the same code).
        HNROOT_BOOT_FILES_NO_KERNEL => {
            BootFiles::Missing(MissingBootFiles::Kernel(BootFileProblem::Absent))
        }
        HNROOT_BOOT_FILES_NO_INITRAMFS => {
            BootFiles::Missing(MissingBootFiles::Initramfs(BootFileProblem::Absent))
        }
        HNROOT_BOOT_FILES_NEITHER => BootFiles::Missing(MissingBootFiles::Both {
            kernel: BootFileProblem::Absent,
            initramfs: BootFileProblem::Absent,
        }),
        HNROOT_BOOT_FILES_UNREADABLE => BootFiles::Unreadable,
        HNROOT_BOOT_FILES_NO_DRIVER => BootFiles::NoDriver,
        HNROOT_BOOT_FILES_DRIVER_DISAGREES => BootFiles::DriverDisagrees,
        _ => return Err(hnroot_result::HNROOT_RESULT_INVALID_ARGUMENT),
    })
}

/// Whether the driver must look for the image's boot files: `HNROOT_RESULT_OK` with `*fs_type`
/// (`HNROOT_FS_TYPE_*`, the driver to open them with) when everything found so far is fine,
/// `HNROOT_RESULT_DONE` when the verdict no longer depends on them. `probe` is the finished
/// prober run on the file (its device size the file's length).
///
/// # Safety
/// Pointers must be NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn hnroot_image_needs_boot_files(
    facts: *const hnroot_image_facts,
    probe: *mut hnroot_fs_probe,
    fs_type: *mut u8,
) -> hnroot_result {
    let facts = try_ref!(facts);
    let entry = match entry_from_c(facts) {
        Ok(e) => e,
        Err(e) => return e,
    };
    if facts.probe != HNROOT_PROBE_DONE {
        return hnroot_result::HNROOT_RESULT_DONE;
    }
    // SAFETY: caller contract.
    let outcome = match unsafe { outcome_of(probe) } {
        Ok(o) => o,
        Err(e) => return e,
    };
    match verdict::needs_boot_files(entry, &outcome) {
        // SAFETY: caller contract.
        Some(t) => unsafe { write_out(fs_type, fs_type_to_u8(t)) },
        None => hnroot_result::HNROOT_RESULT_DONE,
    }
}

/// The verdict on one image name: `*seen` (absent, unreadable, or readable with its UUID: the
/// observation `hnroot_decide` takes) and a NUL-terminated line for the console, e.g. `ext4
/// UUID=... (33554432 bytes)` or `unreadable (truncated): its ext4 filesystem spans ...`
/// (the word in parentheses is a stable code); 512 bytes always suffice. `probe` may be NULL
/// unless `facts->probe` is `HNROOT_PROBE_DONE`.
///
/// # Safety
/// Pointers must be NULL or valid; `text` for `text_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn hnroot_image_verdict(
    facts: *const hnroot_image_facts,
    probe: *mut hnroot_fs_probe,
    seen: *mut hnroot_image_seen,
    text: *mut u8,
    text_len: usize,
) -> hnroot_result {
    let facts = try_ref!(facts);
    require!(seen, text);
    let (entry, boot_files) = match (entry_from_c(facts), boot_files_from_c(facts.boot_files)) {
        (Ok(e), Ok(b)) => (e, b),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let outcome;
    let probe_fact = match facts.probe {
        HNROOT_PROBE_NOT_RUN => Probe::NotRun,
        HNROOT_PROBE_READ_ERROR => Probe::ReadError,
        HNROOT_PROBE_DONE => {
            // SAFETY: caller contract.
            outcome = match unsafe { outcome_of(probe) } {
                Ok(o) => o,
                Err(e) => return e,
            };
            Probe::Done(&outcome)
        }
        _ => return hnroot_result::HNROOT_RESULT_INVALID_ARGUMENT,
    };
    let seal = match crate::seal::seal_fact_from_c(facts.seal, facts.seal_problem) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let v = verdict::judge_sealed(
        &ImageFacts {
            entry,
            probe: probe_fact,
            boot_files,
        },
        seal,
        facts.require_sealed != 0,
    );
    let mut line = Line::<512>::new();
    match &v {
        Verdict::Refused(r) => {
            let _ = write!(line, "not bootable ({}): {r}", r.code());
        }
        other => {
            let _ = write!(line, "{other}");
        }
    }
    // SAFETY: caller contract.
    let r = unsafe { line.copy_to_c(text, text_len) };
    if r != hnroot_result::HNROOT_RESULT_OK {
        return r;
    }
    let out = match v {
        Verdict::Absent => hnroot_image_seen {
            kind: HNROOT_IMAGE_ABSENT,
            ..hnroot_image_seen::default()
        },
        // A bootable image whose seal held carries its root hash to the command line.
        Verdict::Bootable(b) => hnroot_image_seen {
            kind: HNROOT_IMAGE_BOOTABLE,
            uuid: hnroot_uuid::from_core(Some(b.uuid)),
            sealed: seal == SealFact::Sealed,
            root_hash: match seal {
                SealFact::Sealed => facts.root_hash,
                _ => [0; 32],
            },
        },
        Verdict::Refused(_) => hnroot_image_seen {
            kind: HNROOT_IMAGE_NOT_BOOTABLE,
            ..hnroot_image_seen::default()
        },
    };
    // SAFETY: checked non-NULL; caller contract.
    unsafe { write_out(seen, out) }
}

/// One device that matched a label, for `hnroot_choose_device`.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct hnroot_candidate {
    /// It carries the PARTUUID pin.
    pub pinned: bool,
    /// It lies on the disk the boot loader started from.
    pub on_boot_disk: bool,
}

/// Most candidates `hnroot_choose_device` compares.
pub const HNROOT_MAX_CANDIDATES: usize = 16;
const _: () = assert!(HNROOT_MAX_CANDIDATES == MAX_CANDIDATES);

/// `hnroot_choice.kind`: use `index`, the only candidate.
pub const HNROOT_CHOSEN_ONLY: u8 = 0;
/// Use `index`, the one with the pin.
pub const HNROOT_CHOSEN_PIN: u8 = 1;
/// Use `index`, the one on the boot disk.
pub const HNROOT_CHOSEN_BOOT_DISK: u8 = 2;
/// No candidate.
pub const HNROOT_CHOICE_NONE: u8 = 3;
/// Several and none stands out: refuse.
pub const HNROOT_CHOICE_AMBIGUOUS: u8 = 4;
/// More than `HNROOT_MAX_CANDIDATES`: refuse.
pub const HNROOT_CHOICE_TOO_MANY: u8 = 5;

/// The choice.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct hnroot_choice {
    /// `HNROOT_CHOSEN_*` or `HNROOT_CHOICE_*`.
    pub kind: u8,
    /// For `HNROOT_CHOSEN_*`: index into the candidates.
    pub index: u32,
}

/// Choose among `candidates` (`len` kept, `count` matched in all, which may be more): the
/// rule of `hnroot_core::device`. `text` receives why, NUL-terminated (256 bytes suffice).
///
/// # Safety
/// `candidates` must be valid for `len` entries (NULL when `len` is 0); other pointers valid.
#[no_mangle]
pub unsafe extern "C" fn hnroot_choose_device(
    candidates: *const hnroot_candidate,
    len: usize,
    count: usize,
    out: *mut hnroot_choice,
    text: *mut u8,
    text_len: usize,
) -> hnroot_result {
    require!(out, text);
    if candidates.is_null() && len > 0 {
        return hnroot_result::HNROOT_RESULT_NULL_ARGUMENT;
    }
    let mut kept = [Candidate::default(); MAX_CANDIDATES];
    let given = len.min(MAX_CANDIDATES);
    for (i, slot) in kept.iter_mut().enumerate().take(given) {
        // SAFETY: `i < len` entries are valid by the caller's contract.
        let c = unsafe { candidates.add(i).read() };
        *slot = Candidate {
            pinned: c.pinned,
            on_boot_disk: c.on_boot_disk,
        };
    }
    let choice = if len > MAX_CANDIDATES {
        Choice::TooMany {
            count: count.max(len),
        }
    } else {
        choose(kept.get(..given).unwrap_or(&[]), count)
    };
    let mut line = Line::<256>::new();
    let _ = write!(line, "{choice}");
    // SAFETY: caller contract.
    let r = unsafe { line.copy_to_c(text, text_len) };
    if r != hnroot_result::HNROOT_RESULT_OK {
        return r;
    }
    let c = match choice {
        Choice::Chosen { index, by } => hnroot_choice {
            kind: match by {
                ChosenBy::Only => HNROOT_CHOSEN_ONLY,
                ChosenBy::Pin => HNROOT_CHOSEN_PIN,
                ChosenBy::BootDisk => HNROOT_CHOSEN_BOOT_DISK,
            },
            index: u32::try_from(index).unwrap_or(u32::MAX),
        },
        Choice::NoneFound => hnroot_choice {
            kind: HNROOT_CHOICE_NONE,
            index: 0,
        },
        Choice::Ambiguous { .. } => hnroot_choice {
            kind: HNROOT_CHOICE_AMBIGUOUS,
            index: 0,
        },
        Choice::TooMany { .. } => hnroot_choice {
            kind: HNROOT_CHOICE_TOO_MANY,
            index: 0,
        },
    };
    // SAFETY: checked non-NULL; caller contract.
    unsafe { write_out(out, c) }
}

/// A PARTUUID given as NUL-terminated text, or none for NULL or "".
///
/// # Safety
/// `text` must be NULL or a NUL-terminated string.
pub(crate) unsafe fn partuuid_arg(text: *const u8) -> Result<Option<PartUuid>, hnroot_result> {
    if text.is_null() {
        return Ok(None);
    }
    // SAFETY: caller contract: NUL-terminated.
    let s = unsafe { core::ffi::CStr::from_ptr(text.cast()) };
    let s = s
        .to_str()
        .map_err(|_| hnroot_result::HNROOT_RESULT_INVALID_ARGUMENT)?;
    if s.is_empty() {
        return Ok(None);
    }
    PartUuid::parse(s)
        .map(Some)
        .map_err(|_| hnroot_result::HNROOT_RESULT_INVALID_ARGUMENT)
}

/// Parse a number of tries (GRUB's `--tries N`): decimal digits only, 1 to 100, the same parser
/// as `hnroot.tries=`. `HNROOT_RESULT_INVALID_ARGUMENT` for anything else (`3x`, `0`, `101`).
///
/// # Safety
/// `text` must be valid for `text_len` bytes; `out` valid.
#[no_mangle]
pub unsafe extern "C" fn hnroot_parse_tries(
    text: *const u8,
    text_len: usize,
    out: *mut u8,
) -> hnroot_result {
    let bytes = try_slice!(text, text_len);
    match core::str::from_utf8(bytes).ok().map(parse_tries) {
        // SAFETY: caller contract.
        Some(Ok(n)) => unsafe { write_out(out, n) },
        _ => hnroot_result::HNROOT_RESULT_INVALID_ARGUMENT,
    }
}

/// The label of `info` (its `LABEL=`) safe to print on a console: control characters, quotes,
/// backslashes and bytes that are not UTF-8 as `\xNN`; NUL-terminated into `buf` (4 * 256 + 1
/// bytes always suffice). An empty string when there is no label.
///
/// # Safety
/// Pointers must be NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn hnroot_label_text(
    info: *const hnroot_fs_info,
    buf: *mut u8,
    buf_len: usize,
) -> hnroot_result {
    let info = try_ref!(info);
    require!(buf);
    let mut line = Line::<1025>::new();
    if info.has_label {
        let len = usize::from(info.label_len).min(info.label.len());
        if let Some(label) = info
            .label
            .get(..len)
            .and_then(hnroot_core::probe::Label::from_bytes)
        {
            let _ = write!(line, "{label}");
        }
    }
    // SAFETY: caller contract.
    unsafe { line.copy_to_c(buf, buf_len) }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::probe::{hnroot_fs_probe_feed, hnroot_fs_probe_init, hnroot_fs_probe_step};
    use hnroot_core::probe::{FsInfo, FsType};
    use std::string::String;

    /// A prober run over an in-memory ext4 superblock saying the filesystem spans `fs_len`.
    fn probe_ext4(fs_len: u64, file_len: u64) -> hnroot_fs_probe {
        let mut image = std::vec![0u8; 64 * 1024];
        // A minimal ext4 superblock at 1024: magic, blocks count, 1 KiB blocks, a UUID and
        // the extents feature.
        let sb = 1024;
        image[sb + 4..sb + 8].copy_from_slice(&u32::try_from(fs_len / 1024).unwrap().to_le_bytes());
        image[sb + 0x38..sb + 0x3a].copy_from_slice(&0xEF53u16.to_le_bytes());
        image[sb + 0x4c..sb + 0x50].copy_from_slice(&1u32.to_le_bytes()); // rev level
        image[sb + 0x60..sb + 0x64].copy_from_slice(&0x0040u32.to_le_bytes()); // extents
        image[sb + 0x68..sb + 0x78].copy_from_slice(&[7u8; 16]);
        let mut p = hnroot_fs_probe {
            magic: 0,
            opaque: [0; 128],
        };
        assert_eq!(
            unsafe { hnroot_fs_probe_init(&mut p, file_len) },
            hnroot_result::HNROOT_RESULT_OK
        );
        let (mut off, mut len) = (0u64, 0u32);
        while unsafe { hnroot_fs_probe_step(&mut p, &mut off, &mut len) }
            == hnroot_result::HNROOT_RESULT_NEED_READ
        {
            let start = (off as usize).min(image.len()).min(file_len as usize);
            let end = (start + len as usize)
                .min(image.len())
                .min(file_len as usize);
            unsafe { hnroot_fs_probe_feed(&mut p, image[start..end].as_ptr(), end - start) };
        }
        p
    }

    fn verdict(facts: &hnroot_image_facts, p: &mut hnroot_fs_probe) -> (hnroot_image_seen, String) {
        let mut seen = hnroot_image_seen {
            kind: 9,
            ..hnroot_image_seen::default()
        };
        let mut text = [0u8; 512];
        let r = unsafe { hnroot_image_verdict(facts, p, &mut seen, text.as_mut_ptr(), text.len()) };
        assert_eq!(r, hnroot_result::HNROOT_RESULT_OK);
        let t = core::ffi::CStr::from_bytes_until_nul(&text)
            .unwrap()
            .to_str()
            .unwrap()
            .into();
        (seen, t)
    }

    #[test]
    fn the_verdict_through_the_c_abi_matches_the_core() {
        // Sanity: the hand-made superblock is an ext4 filesystem to the core.
        let mut p = probe_ext4(1 << 20, 1 << 20);
        let outcome = unsafe { outcome_of(&mut p) }.unwrap();
        assert!(
            matches!(
                outcome,
                FsOutcome::Found(FsInfo {
                    fs_type: FsType::Ext4,
                    ..
                })
            ),
            "{outcome:?}"
        );

        let mut facts = hnroot_image_facts {
            entry: HNROOT_ENTRY_FILE,
            probe: HNROOT_PROBE_DONE,
            boot_files: HNROOT_BOOT_FILES_NOT_CHECKED,
            length: 1 << 20,
            ..Default::default()
        };
        let mut t = 99u8;
        assert_eq!(
            unsafe { hnroot_image_needs_boot_files(&facts, &mut p, &mut t) },
            hnroot_result::HNROOT_RESULT_OK
        );
        assert_eq!(t, crate::HNROOT_FS_TYPE_EXT4);
        facts.boot_files = HNROOT_BOOT_FILES_PRESENT;
        let (seen, text) = verdict(&facts, &mut p);
        assert_eq!(seen.kind, HNROOT_IMAGE_BOOTABLE);
        assert_eq!(seen.uuid.bytes, [7u8; 16]);
        assert!(text.starts_with("ext4 UUID=07070707-"), "{text}");
        facts.boot_files = HNROOT_BOOT_FILES_NO_INITRAMFS;
        let (seen, text) = verdict(&facts, &mut p);
        assert_eq!(seen.kind, HNROOT_IMAGE_NOT_BOOTABLE);
        assert!(
            text.starts_with("not bootable (missing-boot-files): no boot/initramfs"),
            "{text}"
        );

        // A copy 100 bytes short: GRUB's loopback would round it up; the facts carry the file's
        // own length.
        let mut cut = probe_ext4(1 << 20, (1 << 20) - 100);
        facts.length = (1 << 20) - 100;
        facts.boot_files = HNROOT_BOOT_FILES_PRESENT;
        assert_eq!(
            unsafe { hnroot_image_needs_boot_files(&facts, &mut cut, &mut t) },
            hnroot_result::HNROOT_RESULT_DONE
        );
        let (seen, text) = verdict(&facts, &mut cut);
        assert_eq!(seen.kind, HNROOT_IMAGE_NOT_BOOTABLE);
        assert!(text.starts_with("not bootable (truncated)"), "{text}");

        let dir = hnroot_image_facts {
            entry: HNROOT_ENTRY_DIRECTORY,
            ..hnroot_image_facts::default()
        };
        let mut seen = hnroot_image_seen::default();
        let mut text = [0u8; 512];
        let r = unsafe {
            hnroot_image_verdict(
                &dir,
                core::ptr::null_mut(),
                &mut seen,
                text.as_mut_ptr(),
                512,
            )
        };
        assert_eq!(r, hnroot_result::HNROOT_RESULT_OK);
        assert_eq!(seen.kind, HNROOT_IMAGE_NOT_BOOTABLE);
        // 3 (HNROOT_ENTRY_SPECIAL) is retired, never reused: refused like any unknown entry.
        for entry in [3, 42] {
            let bad = hnroot_image_facts {
                entry,
                ..hnroot_image_facts::default()
            };
            let r = unsafe {
                hnroot_image_verdict(
                    &bad,
                    core::ptr::null_mut(),
                    &mut seen,
                    text.as_mut_ptr(),
                    512,
                )
            };
            assert_eq!(r, hnroot_result::HNROOT_RESULT_INVALID_ARGUMENT, "{entry}");
        }
        let unopenable = hnroot_image_facts {
            entry: HNROOT_ENTRY_UNOPENABLE,
            ..hnroot_image_facts::default()
        };
        let r = unsafe {
            hnroot_image_verdict(
                &unopenable,
                core::ptr::null_mut(),
                &mut seen,
                text.as_mut_ptr(),
                512,
            )
        };
        assert_eq!(r, hnroot_result::HNROOT_RESULT_OK);
        assert_eq!(seen.kind, HNROOT_IMAGE_NOT_BOOTABLE);
        let t = core::ffi::CStr::from_bytes_until_nul(&text).unwrap();
        assert!(
            t.to_str()
                .unwrap()
                .starts_with("not bootable (unopenable): "),
            "{t:?}"
        );
    }

    #[test]
    fn device_choice_and_tries() {
        let c = [
            hnroot_candidate {
                pinned: false,
                on_boot_disk: false,
            },
            hnroot_candidate {
                pinned: false,
                on_boot_disk: true,
            },
        ];
        let mut out = hnroot_choice::default();
        let mut text = [0u8; 256];
        let r = unsafe { hnroot_choose_device(c.as_ptr(), 2, 2, &mut out, text.as_mut_ptr(), 256) };
        assert_eq!(r, hnroot_result::HNROOT_RESULT_OK);
        assert_eq!((out.kind, out.index), (HNROOT_CHOSEN_BOOT_DISK, 1));
        let r = unsafe { hnroot_choose_device(c.as_ptr(), 1, 3, &mut out, text.as_mut_ptr(), 256) };
        assert_eq!(r, hnroot_result::HNROOT_RESULT_OK);
        assert_eq!(out.kind, HNROOT_CHOICE_TOO_MANY);

        let mut n = 0u8;
        assert_eq!(
            unsafe { hnroot_parse_tries(b"7".as_ptr(), 1, &mut n) },
            hnroot_result::HNROOT_RESULT_OK
        );
        assert_eq!(n, 7);
        for bad in [&b"3x"[..], b"0", b"101", b""] {
            assert_eq!(
                unsafe { hnroot_parse_tries(bad.as_ptr(), bad.len(), &mut n) },
                hnroot_result::HNROOT_RESULT_INVALID_ARGUMENT,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn every_result_has_its_own_text() {
        let mut seen = std::collections::BTreeSet::new();
        for r in 0..=11u32 {
            let t = crate::result_text(r).to_str().unwrap();
            assert_ne!(t, "unknown result", "{r}");
            assert!(seen.insert(t), "{r}: {t} twice");
        }
        assert_eq!(crate::result_text(12).to_str().unwrap(), "unknown result");
    }
}
