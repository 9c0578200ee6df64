//! The bootloader decision and the boot-state codec over the C ABI.

use core::fmt::Write as _;

use hnroot_core::bootstate::{
    Block, BlockError, BootState, StateFile, StateSeen, Trial, Tries, Unhealthy,
};
use hnroot_core::decide::{decide, Config, Decision, Reason, ReasonCode, Unwritten};
use hnroot_core::name::ImageName;
use hnroot_core::observe::{ImageSeen, Observation};

use hnroot_core::bootline::{self, ArgsFile, BootParts, Composed};
use hnroot_core::cmdline::BootVia;
use hnroot_core::plan::Booted;

use crate::text::Line;
use crate::{
    hnroot_result, hnroot_uuid, require, try_mut, try_ref, try_slice, write_out,
    HNROOT_BOOTSTATE_LEN,
};

/// `hnroot_image_seen.kind`: no such file.
pub const HNROOT_IMAGE_ABSENT: u8 = 0;
/// `hnroot_image_seen.kind`: the file exists but is not bootable.
pub const HNROOT_IMAGE_NOT_BOOTABLE: u8 = 1;
/// `hnroot_image_seen.kind`: a bootable image; `uuid` holds its filesystem UUID.
pub const HNROOT_IMAGE_BOOTABLE: u8 = 2;

/// Image numbers (index of `hnroot_observation.images`): `hn-root.img`.
pub const HNROOT_IMAGE_CURRENT: u8 = 0;
/// `hn-root-old.img`.
pub const HNROOT_IMAGE_OLD: u8 = 1;
/// `hn-root-new.img`.
pub const HNROOT_IMAGE_NEW: u8 = 2;
/// `hn-root-cancelled.img`.
pub const HNROOT_IMAGE_CANCELLED: u8 = 3;
/// `hn-root-broken.img`.
pub const HNROOT_IMAGE_BROKEN: u8 = 4;
/// Number of image names.
pub const HNROOT_IMAGE_COUNT: usize = 5;

// `hnroot_decision.reason` and `hnroot_reason_code`: the numbers of `hnroot_core::ReasonCode`,
// which the history file stores; each constant is checked against it at compile time. Retired:
// before the numbers were the history file's, 0 meant nothing-bootable and recovery was split
// into 8 (hn-root.img missing) and 9 (unreadable); the message says which.
/// Not known (never a decision).
pub const HNROOT_REASON_UNKNOWN: u8 = 0;
/// Normal boot of `hn-root.img`.
pub const HNROOT_REASON_NORMAL: u8 = 1;
/// Staged update, `attempt` of `of`.
pub const HNROOT_REASON_UPDATE: u8 = 2;
/// `hn-root.img` on trial, `attempt` of `of`.
pub const HNROOT_REASON_TRIAL: u8 = 3;
/// `system-revert`.
pub const HNROOT_REASON_MANUAL_REVERT: u8 = 4;
/// `system-revert` without a bootable old image.
pub const HNROOT_REASON_REVERT_REFUSED: u8 = 5;
/// Trial exhausted; `failed` says where the failed image lies.
pub const HNROOT_REASON_AUTOMATIC_ROLLBACK: u8 = 6;
/// Trial exhausted with nothing to roll back to.
pub const HNROOT_REASON_TRIAL_EXHAUSTED: u8 = 7;
/// `hn-root.img` missing or unreadable: another image boots.
pub const HNROOT_REASON_RECOVERY: u8 = 8;
/// No image is bootable: nothing else in the decision is set.
pub const HNROOT_REASON_NOTHING_BOOTABLE: u8 = 9;
/// Not a decision: the reason on the command line of GRUB's next menu entry, booted when the
/// chosen image's kernel could not be loaded.
pub const HNROOT_REASON_NEXT_IMAGE: u8 = 10;
/// The committed `hn-root.img` booted `boots` times without reaching healthy: `hn-root-old.img`
/// boots where it lies.
pub const HNROOT_REASON_UNHEALTHY_FALLBACK: u8 = 11;
/// Every committed image failed: this attempt waits `wait` seconds first.
pub const HNROOT_REASON_BACKOFF: u8 = 12;
const _: () = {
    use hnroot_core::ReasonCode as R;
    assert!(HNROOT_REASON_UNKNOWN == R::Unknown.number());
    assert!(HNROOT_REASON_NORMAL == R::Normal.number());
    assert!(HNROOT_REASON_UPDATE == R::Update.number());
    assert!(HNROOT_REASON_TRIAL == R::Trial.number());
    assert!(HNROOT_REASON_MANUAL_REVERT == R::ManualRevert.number());
    assert!(HNROOT_REASON_REVERT_REFUSED == R::RevertRefused.number());
    assert!(HNROOT_REASON_AUTOMATIC_ROLLBACK == R::AutomaticRollback.number());
    assert!(HNROOT_REASON_TRIAL_EXHAUSTED == R::TrialExhausted.number());
    assert!(HNROOT_REASON_RECOVERY == R::Recovery.number());
    assert!(HNROOT_REASON_NOTHING_BOOTABLE == R::NothingBootable.number());
    assert!(HNROOT_REASON_NEXT_IMAGE == R::NextImage.number());
    assert!(HNROOT_REASON_UNHEALTHY_FALLBACK == R::UnhealthyFallback.number());
    assert!(HNROOT_REASON_BACKOFF == R::Backoff.number());
};

/// Tries a new image gets when `hnroot_observation.tries` is 0 (the core's default).
pub const HNROOT_DEFAULT_TRIES: u8 = 3;
const _: () = assert!(HNROOT_DEFAULT_TRIES == hnroot_core::bootstate::DEFAULT_TRIES);
/// Most tries `hnroot_observation.tries` may ask for; larger values are clamped to it.
pub const HNROOT_MAX_TRIES: u8 = 100;
const _: () = assert!(HNROOT_MAX_TRIES == hnroot_core::bootstate::MAX_TRIES);
/// Boots of a committed image without reaching healthy before the other committed image boots,
/// when `hnroot_observation.boot_limit` is 0 (the core's default).
pub const HNROOT_DEFAULT_BOOT_LIMIT: u8 = 3;
const _: () = assert!(HNROOT_DEFAULT_BOOT_LIMIT == hnroot_core::bootstate::DEFAULT_BOOT_LIMIT);
/// Seconds of the first wait when `hnroot_observation.wait_first` is 0.
pub const HNROOT_DEFAULT_WAIT_FIRST: u32 = 60;
const _: () = assert!(HNROOT_DEFAULT_WAIT_FIRST == hnroot_core::decide::DEFAULT_WAIT_FIRST);
/// Seconds of the longest wait when `hnroot_observation.wait_max` is 0.
pub const HNROOT_DEFAULT_WAIT_MAX: u32 = 1800;
const _: () = assert!(HNROOT_DEFAULT_WAIT_MAX == hnroot_core::decide::DEFAULT_WAIT_MAX);

/// `hnroot_bootstate.kind`: nothing to write.
pub const HNROOT_STATE_NONE: u8 = 0;
/// Committed: `good` holds the good image.
pub const HNROOT_STATE_COMMITTED: u8 = 1;
/// Trial of `image` with `tries_left` of `tries_total`; `good` may be `HNROOT_UUID_NONE`.
pub const HNROOT_STATE_TRIAL: u8 = 2;

/// How one image file was seen.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct hnroot_image_seen {
    /// `HNROOT_IMAGE_ABSENT`, `HNROOT_IMAGE_NOT_BOOTABLE` or `HNROOT_IMAGE_BOOTABLE`.
    pub kind: u8,
    /// The filesystem UUID when readable.
    pub uuid: hnroot_uuid,
    /// A bootable image whose seal held (`hnroot_image_facts.seal` `HNROOT_SEAL_SEALED`).
    pub sealed: bool,
    /// With `sealed`: its dm-verity root hash, put on its kernel command line.
    pub root_hash: [u8; 32],
}

/// What GRUB saw on hostpart.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct hnroot_observation {
    /// Indexed by `HNROOT_IMAGE_*`.
    pub images: [hnroot_image_seen; HNROOT_IMAGE_COUNT],
    /// `system-revert` exists.
    pub revert_requested: bool,
    /// Tries a new image gets; 0 means the default (3).
    pub tries: u8,
    /// K, boots of the committed image without reaching healthy before the other committed
    /// image boots; 0 means the default (3).
    pub boot_limit: u8,
    /// Seconds of the first wait once every committed image failed; 0 means the default (60).
    pub wait_first: u32,
    /// Seconds of the longest wait; 0 means the default (1800).
    pub wait_max: u32,
}

/// A boot state, as the decision wants it written.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct hnroot_bootstate {
    /// `HNROOT_STATE_NONE`, `HNROOT_STATE_COMMITTED` or `HNROOT_STATE_TRIAL`.
    pub kind: u8,
    /// Trial: tries left.
    pub tries_left: u8,
    /// Trial: tries in all.
    pub tries_total: u8,
    /// Trial: the image on trial.
    pub image: hnroot_uuid,
    /// The image last marked good, if known.
    pub good: hnroot_uuid,
    /// Committed: boots since the last healthy one. Trial: boots that were not its tries.
    pub unhealthy: u8,
}

/// The decision.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct hnroot_decision {
    /// `HNROOT_REASON_*`; `HNROOT_REASON_NOTHING_BOOTABLE` means nothing else is set.
    pub reason: u8,
    /// The image to boot (`HNROOT_IMAGE_*`).
    pub image: u8,
    /// Its filesystem UUID (for `hnroot.uuid=`).
    pub uuid: hnroot_uuid,
    /// Update/trial: this boot's try (1-based).
    pub attempt: u8,
    /// Update/trial: tries in all.
    pub of: u8,
    /// Rollback: where the failed image lies (`HNROOT_IMAGE_CURRENT` or `HNROOT_IMAGE_NEW`).
    pub failed: u8,
    /// Number of valid entries in `fallbacks`.
    pub fallback_count: u8,
    /// Other bootable images, best first.
    pub fallbacks: [u8; 4],
    /// Their UUIDs.
    pub fallback_uuids: [hnroot_uuid; 4],
    /// `DecisionNotes` bits of the core (see `hnroot_core::decide::DecisionNotes`).
    pub notes: u32,
    /// The boot state to write before booting (`kind == HNROOT_STATE_NONE`: none).
    pub write: hnroot_bootstate,
    /// What the boot-state block held: 0 absent, 1 corrupt, 2 valid.
    pub state_seen: u8,
    /// What to do when `write` cannot be written: `HNROOT_UNWRITTEN_*`.
    pub unwritten: u8,
    /// Unhealthy fallback or backoff: the boots counted without reaching healthy.
    pub boots: u8,
    /// Seconds to wait (showing what was seen) before loading the kernel; 0: none.
    pub wait: u32,
}

/// `hnroot_decision.unwritten`: nothing boots (nothing to write either).
pub const HNROOT_UNWRITTEN_NONE: u8 = 0;
/// Boot the chosen image all the same, this try not counted, and say so.
pub const HNROOT_UNWRITTEN_BOOT_UNCOUNTED: u8 = 1;

pub(crate) fn image_from_u8(image: u8) -> Result<ImageName, hnroot_result> {
    ImageName::ALL
        .get(usize::from(image))
        .copied()
        .ok_or(hnroot_result::HNROOT_RESULT_INVALID_ARGUMENT)
}

fn image_to_u8(image: ImageName) -> u8 {
    // At most 5 names: always fits.
    u8::try_from(image.index()).unwrap_or(u8::MAX)
}

fn observation_from_c(
    c: &hnroot_observation,
    state: StateSeen,
) -> Result<Observation, hnroot_result> {
    let mut obs = Observation {
        state,
        revert_requested: c.revert_requested,
        ..Observation::default()
    };
    for (name, seen) in ImageName::ALL.into_iter().zip(c.images.iter()) {
        let seen = match seen.kind {
            HNROOT_IMAGE_ABSENT => ImageSeen::Absent,
            HNROOT_IMAGE_NOT_BOOTABLE => ImageSeen::NotBootable,
            HNROOT_IMAGE_BOOTABLE => match seen.uuid.to_core()? {
                Some(uuid) => ImageSeen::Bootable(uuid),
                None => return Err(hnroot_result::HNROOT_RESULT_INVALID_ARGUMENT),
            },
            _ => return Err(hnroot_result::HNROOT_RESULT_INVALID_ARGUMENT),
        };
        obs.set(name, seen);
    }
    Ok(obs)
}

fn bootstate_to_c(state: Option<BootState>) -> hnroot_bootstate {
    match state {
        None => hnroot_bootstate::default(),
        Some(BootState::Committed { good, unhealthy }) => hnroot_bootstate {
            kind: HNROOT_STATE_COMMITTED,
            good: hnroot_uuid::from_core(Some(good)),
            unhealthy: unhealthy.boots(),
            ..hnroot_bootstate::default()
        },
        Some(BootState::Trial(t)) => hnroot_bootstate {
            kind: HNROOT_STATE_TRIAL,
            tries_left: t.tries.left(),
            tries_total: t.tries.total(),
            image: hnroot_uuid::from_core(Some(t.image)),
            good: hnroot_uuid::from_core(t.good),
            unhealthy: t.tries.others().boots(),
        },
    }
}

fn bootstate_from_c(c: &hnroot_bootstate) -> Result<Option<BootState>, hnroot_result> {
    let invalid = hnroot_result::HNROOT_RESULT_INVALID_ARGUMENT;
    match c.kind {
        HNROOT_STATE_NONE => Ok(None),
        HNROOT_STATE_COMMITTED => Ok(Some(BootState::Committed {
            good: c.good.to_core()?.ok_or(invalid)?,
            unhealthy: Unhealthy::new(c.unhealthy),
        })),
        HNROOT_STATE_TRIAL => Ok(Some(BootState::Trial(Trial {
            image: c.image.to_core()?.ok_or(invalid)?,
            tries: Tries::new(c.tries_left, c.tries_total)
                .ok_or(invalid)?
                .with_others(Unhealthy::new(c.unhealthy)),
            good: c.good.to_core()?,
        }))),
        _ => Err(invalid),
    }
}

fn decision_to_c(decision: &Decision, state: StateSeen) -> hnroot_decision {
    let mut out = hnroot_decision {
        notes: decision.notes().bits(),
        state_seen: match state {
            StateSeen::Absent => 0,
            StateSeen::Corrupt => 1,
            StateSeen::Valid(_) => 2,
        },
        ..hnroot_decision::default()
    };
    out.reason = decision.reason_code().number();
    let Some(boot) = decision.boot() else {
        return out;
    };
    out.image = image_to_u8(boot.image);
    out.uuid = hnroot_uuid::from_core(Some(boot.uuid));
    out.unwritten = match boot.if_unwritten() {
        Unwritten::BootUncounted => HNROOT_UNWRITTEN_BOOT_UNCOUNTED,
    };
    match boot.reason {
        Reason::Update { attempt, of } | Reason::Trial { attempt, of } => {
            (out.attempt, out.of) = (attempt, of);
        }
        Reason::AutomaticRollback { failed } => out.failed = image_to_u8(failed),
        Reason::UnhealthyFallback { boots } | Reason::Backoff { boots } => out.boots = boots,
        _ => {}
    }
    out.wait = boot.wait;
    for (i, (name, uuid)) in boot.fallbacks.iter().enumerate() {
        if let (Some(slot), Some(uuid_slot)) =
            (out.fallbacks.get_mut(i), out.fallback_uuids.get_mut(i))
        {
            *slot = image_to_u8(*name);
            *uuid_slot = hnroot_uuid::from_core(Some(*uuid));
            out.fallback_count = out.fallback_count.saturating_add(1);
        }
    }
    out.write = bootstate_to_c(boot.write);
    out
}

/// The decision's settings from what the driver was told (0: the core's default).
fn config_from_c(obs: &hnroot_observation) -> Config {
    let default = Config::default();
    let or = |value: u32, default: u32| if value == 0 { default } else { value };
    Config {
        tries: if obs.tries == 0 {
            default.tries
        } else {
            obs.tries
        },
        boot_limit: if obs.boot_limit == 0 {
            default.boot_limit
        } else {
            obs.boot_limit
        },
        wait_first: or(obs.wait_first, default.wait_first),
        wait_max: or(obs.wait_max, default.wait_max),
    }
}

/// The stable one-word name of `HNROOT_REASON_*` (`unknown`, `normal`, `update`, `trial`,
/// `manual-revert`, `revert-refused`, `automatic-rollback`, `trial-exhausted`, `recovery`,
/// `nothing-bootable`, `next-image`) as a static NUL-terminated string; NULL for any other
/// number.
#[no_mangle]
pub extern "C" fn hnroot_reason_code(reason: u8) -> *const u8 {
    match ReasonCode::from_number(reason) {
        Some(code) => code.c_code().as_ptr().cast(),
        None => core::ptr::null(),
    }
}

/// `state_file` of `hnroot_decide`: no boot-state file.
pub const HNROOT_STATE_FILE_ABSENT: u8 = 0;
/// Something is at the path but cannot be read as a file (a directory, a read error).
pub const HNROOT_STATE_FILE_UNREADABLE: u8 = 1;
/// The file was read: `state_block`/`state_len` hold its bytes.
pub const HNROOT_STATE_FILE_READ: u8 = 2;

/// `hnroot_args.kind`: no such file; nothing is added.
pub const HNROOT_ARGS_ABSENT: u8 = 0;
/// Something is there that cannot be read as a file: nothing is added, and it is said.
pub const HNROOT_ARGS_UNREADABLE: u8 = 1;
/// Read: `bytes`/`len` hold what was read (at most `HNROOT_ARGS_FILE_MAX` + 1 bytes need be
/// read: a longer file is refused whole).
pub const HNROOT_ARGS_READ: u8 = 2;
/// Most bytes of an arguments file used.
pub const HNROOT_ARGS_FILE_MAX: usize = 1024;
const _: () = assert!(HNROOT_ARGS_FILE_MAX == bootline::MAX_ARGS_FILE_LEN);
/// Longest whole kernel command line `hnroot_decide` writes, with its NUL.
pub const HNROOT_CMDLINE_LEN: usize = 1793;
const _: () = assert!(HNROOT_CMDLINE_LEN == bootline::MAX_LINE_LEN + 1);
/// Enough for `hnroot_decide`'s message and record.
pub const HNROOT_TEXT_LEN: usize = 2048;

/// What a driver found at one source of kernel arguments.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct hnroot_args {
    /// `HNROOT_ARGS_*`.
    pub kind: u8,
    /// With `HNROOT_ARGS_READ`: the bytes read (`len` of them); else ignored.
    pub bytes: *const u8,
    /// Their number.
    pub len: usize,
}

/// What a boot's kernel command line is made of besides the decision.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct hnroot_boot_parts {
    /// hostpart's PARTUUID as NUL-terminated text; NULL or "" when it has none (the
    /// initramfs then looks for its label).
    pub hostpart_partuuid: *const u8,
    /// The ESP's, likewise.
    pub esp_partuuid: *const u8,
    /// The loader's built-in default arguments (`hnroot select --defaults`).
    pub defaults: hnroot_args,
    /// The fleet's default arguments (`(memdisk)/hnroot/kernel-args`, `--defaults-file`): when
    /// there, they replace the built-in ones.
    pub fleet_defaults: hnroot_args,
    /// The host's (`data/host/kernel-args` on hostpart).
    pub host: hnroot_args,
    /// Each image's (`usr/lib/hnroot/kernel-args` inside it), indexed by `HNROOT_IMAGE_*`.
    pub images: [hnroot_args; HNROOT_IMAGE_COUNT],
}

/// A caller's buffer for a NUL-terminated text.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct hnroot_buffer {
    /// Where to write.
    pub bytes: *mut u8,
    /// How many bytes may be written, the NUL included.
    pub len: usize,
}

/// The texts of a decision, each written NUL-terminated into its caller's buffer.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct hnroot_decision_text {
    /// One line for people, e.g. `booting hn-root-new.img (update, trial 1 of 3); fallback
    /// hn-root.img`, and what was refused of the kernel arguments.
    pub message: hnroot_buffer,
    /// The decision as stable `key=value` words, e.g. `reason=update image=hn-root-new.img
    /// uuid=... try=1/3 fallbacks=hn-root.img notes=- write=trial args=defaults refused=-`.
    pub record: hnroot_buffer,
    /// The whole kernel command line for the chosen image (empty when nothing boots).
    pub cmdline: hnroot_buffer,
    /// The whole kernel command line for the first fallback, booted by GRUB's next menu entry
    /// when the chosen image's kernel cannot be loaded (empty when there is none).
    pub fallback_cmdline: hnroot_buffer,
}

/// What one source of arguments is, for the core.
///
/// # Safety
/// `a.bytes` must be valid for `a.len` bytes when `a.kind` is `HNROOT_ARGS_READ`.
unsafe fn args_from_c<'a>(a: &hnroot_args) -> Result<ArgsFile<'a>, hnroot_result> {
    match a.kind {
        HNROOT_ARGS_ABSENT => Ok(ArgsFile::Absent),
        HNROOT_ARGS_UNREADABLE => Ok(ArgsFile::Unreadable),
        HNROOT_ARGS_READ if a.bytes.is_null() => Err(hnroot_result::HNROOT_RESULT_NULL_ARGUMENT),
        // SAFETY: non-NULL, `len` bytes by the caller's contract.
        HNROOT_ARGS_READ => Ok(ArgsFile::Text(unsafe {
            core::slice::from_raw_parts(a.bytes, a.len)
        })),
        _ => Err(hnroot_result::HNROOT_RESULT_INVALID_ARGUMENT),
    }
}

/// The parts for the core: the PARTUUIDs, every source of arguments, and the root hash of each
/// bootable image whose seal held (from `obs`).
///
/// # Safety
/// As [`hnroot_decide`]'s `parts`.
unsafe fn parts_from_c<'a>(
    p: &hnroot_boot_parts,
    obs: &hnroot_observation,
) -> Result<BootParts<'a>, hnroot_result> {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        let mut images = [ArgsFile::Absent; HNROOT_IMAGE_COUNT];
        for (slot, a) in images.iter_mut().zip(p.images.iter()) {
            *slot = args_from_c(a)?;
        }
        Ok(BootParts {
            hostpart: crate::verdict::partuuid_arg(p.hostpart_partuuid)?,
            esp: crate::verdict::partuuid_arg(p.esp_partuuid)?,
            images,
            defaults: bootline::defaults(
                args_from_c(&p.fleet_defaults)?,
                args_from_c(&p.defaults)?,
            ),
            host: args_from_c(&p.host)?,
            root_hashes: obs.images.map(|seen| {
                (seen.kind == HNROOT_IMAGE_BOOTABLE && seen.sealed).then_some(seen.root_hash)
            }),
        })
    }
}

/// A text a decision writes.
type Text<'t> = &'t dyn Fn(&mut dyn core::fmt::Write) -> core::fmt::Result;

/// Whether `text` fits in `buf` with its NUL.
fn fits(buf: &hnroot_buffer, text: Text<'_>) -> bool {
    let mut measure = Measure(0);
    text(&mut measure).is_ok() && measure.0 < buf.len
}

/// Write `text`, which [`fits`], into `buf`, NUL-terminated.
///
/// # Safety
/// `buf.bytes` must be non-NULL and valid for `buf.len` bytes.
unsafe fn write_text(buf: &hnroot_buffer, text: Text<'_>) {
    // SAFETY: `buf.len` writable bytes (caller contract), more than the text needs.
    let out = unsafe { core::slice::from_raw_parts_mut(buf.bytes, buf.len) };
    let mut w = Fill { out, at: 0 };
    let _ = text(&mut w);
    let end = w.at;
    if let Some(nul) = w.out.get_mut(end) {
        *nul = 0;
    }
}

/// Counts the bytes a text has.
struct Measure(usize);

impl core::fmt::Write for Measure {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0 = self.0.saturating_add(s.len());
        Ok(())
    }
}

/// Writes a text measured to fit.
struct Fill<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl core::fmt::Write for Fill<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.at.saturating_add(s.len());
        let dst = self.out.get_mut(self.at..end).ok_or(core::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.at = end;
        Ok(())
    }
}

/// The whole line GRUB boots `image` (UUID `uuid`) with for `reason`, and what composing it
/// noticed: the core's one composition, started by the loader.
fn line_for<'a>(
    w: &mut dyn core::fmt::Write,
    image: ImageName,
    uuid: hnroot_core::uuid::FsUuid,
    reason: ReasonCode,
    parts: &BootParts<'a>,
    tries: u8,
) -> Result<Composed<'a>, core::fmt::Error> {
    let booted = Booted { name: image, uuid };
    bootline::compose_for(w, booted, reason, BootVia::Loader, parts, tries)
}

/// Write the message, the record and both command lines of `decision` into `text`'s buffers,
/// or nothing when one does not fit.
///
/// # Safety
/// Every buffer of `text` non-NULL and valid for its length.
unsafe fn write_decision_text(
    text: &hnroot_decision_text,
    decision: &Decision,
    parts: &BootParts<'_>,
    tries: u8,
) -> hnroot_result {
    let boot = decision.boot();
    let fallback = boot.and_then(|b| b.fallbacks.first().copied());
    // The chosen image's line, composed once to learn what it noticed (for the record).
    let composed = boot.and_then(|b| {
        line_for(
            &mut Measure(0),
            b.image,
            b.uuid,
            b.reason.code(),
            parts,
            tries,
        )
        .ok()
    });
    let message = |w: &mut dyn core::fmt::Write| -> core::fmt::Result {
        write!(w, "{decision}")?;
        match &composed {
            Some(c) if !c.refused.is_empty() || !c.unusable.is_empty() => write!(w, "; {c}"),
            _ => Ok(()),
        }
    };
    let record = |w: &mut dyn core::fmt::Write| -> core::fmt::Result {
        write!(w, "{}", decision.record())?;
        match &composed {
            Some(c) => write!(w, " {}", c.record()),
            None => w.write_str(" args=- refused=-"),
        }
    };
    let cmdline = |w: &mut dyn core::fmt::Write| -> core::fmt::Result {
        match boot {
            Some(b) => line_for(w, b.image, b.uuid, b.reason.code(), parts, tries).map(drop),
            None => Ok(()),
        }
    };
    let fallback_cmdline = |w: &mut dyn core::fmt::Write| -> core::fmt::Result {
        match fallback {
            Some((image, uuid)) => {
                line_for(w, image, uuid, ReasonCode::NextImage, parts, tries).map(drop)
            }
            None => Ok(()),
        }
    };
    let texts: [(&hnroot_buffer, Text<'_>); 4] = [
        (&text.message, &message),
        (&text.record, &record),
        (&text.cmdline, &cmdline),
        (&text.fallback_cmdline, &fallback_cmdline),
    ];
    // Everything is checked to fit before anything is written.
    if !texts.iter().all(|(buf, text)| fits(buf, *text)) {
        return hnroot_result::HNROOT_RESULT_BUFFER_TOO_SHORT;
    }
    for (buf, text) in texts {
        // SAFETY: non-NULL and valid (caller contract), and it fits.
        unsafe { write_text(buf, text) };
    }
    hnroot_result::HNROOT_RESULT_OK
}

/// Decide what to boot and compose the kernel command lines of the chosen image and its first
/// fallback. Pure: reads its inputs, writes nothing but `out` and the texts, and those only on
/// success.
///
/// * `obs`: what GRUB saw; required.
/// * `state_file`: `HNROOT_STATE_FILE_*`, what was at the boot-state path; with
///   `HNROOT_STATE_FILE_READ`, `state_block`/`state_len` are the bytes read (a file of the wrong
///   size counts as corrupt, as an unreadable one does).
/// * `parts`: the PARTUUIDs and the extra kernel arguments; required.
/// * `out`: the decision; required.
/// * `text`: where the message, the record and the two command lines go; required, each buffer
///   non-NULL. `HNROOT_TEXT_LEN` bytes always suffice for the message and the record,
///   `HNROOT_CMDLINE_LEN` for a command line.
///
/// Returns `HNROOT_RESULT_OK`, or an error and writes nothing.
///
/// # Safety
/// Pointers must be NULL or valid for the stated lengths; outputs must not alias the inputs.
#[no_mangle]
pub unsafe extern "C" fn hnroot_decide(
    obs: *const hnroot_observation,
    state_file: u8,
    state_block: *const u8,
    state_len: usize,
    parts: *const hnroot_boot_parts,
    out: *mut hnroot_decision,
    text: *const hnroot_decision_text,
) -> hnroot_result {
    let obs = try_ref!(obs);
    let parts = try_ref!(parts);
    let text = try_ref!(text);
    require!(
        out,
        text.message.bytes,
        text.record.bytes,
        text.cmdline.bytes,
        text.fallback_cmdline.bytes
    );
    let file = match state_file {
        HNROOT_STATE_FILE_ABSENT => StateFile::Absent,
        HNROOT_STATE_FILE_UNREADABLE => StateFile::Unreadable,
        HNROOT_STATE_FILE_READ => StateFile::Bytes(try_slice!(state_block, state_len)),
        _ => return hnroot_result::HNROOT_RESULT_INVALID_ARGUMENT,
    };
    let state = file.seen();
    let observation = match observation_from_c(obs, state) {
        Ok(o) => o,
        Err(e) => return e,
    };
    // SAFETY: the caller's contract for `parts`.
    let where_ = match unsafe { parts_from_c(parts, obs) } {
        Ok(w) => w,
        Err(e) => return e,
    };
    let config = config_from_c(obs);
    let decision = decide(&observation, &config);
    // SAFETY: the buffers are non-NULL (checked) and valid by the caller's contract.
    let written = unsafe { write_decision_text(text, &decision, &where_, config.tries) };
    if written != hnroot_result::HNROOT_RESULT_OK {
        return written;
    }
    // SAFETY: non-NULL (checked); the caller's contract.
    unsafe { write_out(out, decision_to_c(&decision, state)) }
}

/// Encode `state` into `block` (the boot-state file as read, `HNROOT_BOOTSTATE_LEN` bytes) in
/// the copy that does not hold the newest valid record. On success `*offset`/`*len` say which
/// bytes changed (one 512-byte sector): write exactly those back to disk.
///
/// Returns `HNROOT_RESULT_NOTHING_TO_WRITE` for `HNROOT_STATE_NONE`, `HNROOT_RESULT_BOOTSTATE_SIZE`
/// when `block_len` is wrong; `block` is then unchanged.
///
/// # Safety
/// `block` must be NULL or `block_len` writable bytes; the others NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn hnroot_bootstate_encode(
    block: *mut u8,
    block_len: usize,
    state: *const hnroot_bootstate,
    offset: *mut u32,
    len: *mut u32,
) -> hnroot_result {
    let state = try_ref!(state);
    require!(block, offset, len);
    let state = match bootstate_from_c(state) {
        Ok(Some(s)) => s,
        Ok(None) => return hnroot_result::HNROOT_RESULT_NOTHING_TO_WRITE,
        Err(e) => return e,
    };
    if block_len != HNROOT_BOOTSTATE_LEN {
        return hnroot_result::HNROOT_RESULT_BOOTSTATE_SIZE;
    }
    // SAFETY: `block` is non-NULL with `block_len` writable bytes (caller contract).
    let bytes = unsafe { core::slice::from_raw_parts_mut(block, block_len) };
    match Block::encode_into(bytes, &state) {
        Ok(range) => {
            // SAFETY: both non-NULL and valid (caller contract). Values are below 1024.
            unsafe {
                offset.write(u32::try_from(range.start).unwrap_or(0));
                len.write(u32::try_from(range.len()).unwrap_or(0));
            }
            hnroot_result::HNROOT_RESULT_OK
        }
        Err(BlockError::Size { .. }) => hnroot_result::HNROOT_RESULT_BOOTSTATE_SIZE,
        Err(BlockError::SequenceExhausted) => hnroot_result::HNROOT_RESULT_BOOTSTATE_SEQUENCE,
        Err(BlockError::NewerFormat { .. }) => hnroot_result::HNROOT_RESULT_BOOTSTATE_NEWER,
    }
}

/// Describe the boot-state block in one NUL-terminated line (`trial of <uuid> (2 of 3 tries
/// left, good <uuid>)`, `absent`, `corrupt: copy 0 ...`), for `hnroot status` in GRUB.
///
/// # Safety
/// `block` must be NULL (no file) or `block_len` readable bytes; `message` `message_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn hnroot_bootstate_describe(
    block: *const u8,
    block_len: usize,
    message: *mut u8,
    message_len: usize,
) -> hnroot_result {
    require!(message);
    let mut line = Line::<512>::new();
    if block.is_null() {
        let _ = write!(line, "absent (no boot-state file)");
    } else {
        // SAFETY: caller contract: `block_len` readable bytes.
        let bytes = unsafe { core::slice::from_raw_parts(block, block_len) };
        match Block::decode(bytes) {
            Err(e) => {
                let _ = write!(line, "unusable: {e}");
            }
            Ok(decoded) => match (decoded.seen(), decoded.newest()) {
                (StateSeen::Valid(state), Some((copy, record))) => {
                    let _ = write!(line, "{state} [copy {copy}, sequence {}]", record.sequence);
                }
                (StateSeen::Absent, _) => {
                    let _ = write!(line, "empty (never written)");
                }
                _ => {
                    let [a, b] = decoded.copies;
                    let show = |r: Result<_, hnroot_core::bootstate::CopyError>| r.err();
                    let _ = match (show(a), show(b)) {
                        (Some(a), Some(b)) => write!(line, "corrupt: copy 0 {a}; copy 1 {b}"),
                        _ => write!(line, "corrupt"),
                    };
                }
            },
        }
    }
    // SAFETY: `message` non-NULL, `message_len` writable bytes (caller contract).
    unsafe { line.copy_to_c(message, message_len) }
}

/// Read the fleet's counting file (`hnroot select --counting-file`, the loader's
/// `(memdisk)/hnroot/counting`) into `obs`'s settings (`tries`, `boot_limit`, `wait_first`,
/// `wait_max`; see `hnroot_core::counting`), and write one NUL-terminated line for the console
/// into `message`: the settings the file names, or why it was refused and that the built-in
/// defaults count instead (a damaged file never keeps a server from booting). An absent file
/// changes nothing and writes an empty line.
///
/// # Safety
/// `file` must point to a valid `hnroot_args` (its bytes as `hnroot_decide`'s argument files);
/// `obs` to a writable observation; `message` to `message_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn hnroot_counting_read(
    file: *const hnroot_args,
    obs: *mut hnroot_observation,
    message: *mut u8,
    message_len: usize,
) -> hnroot_result {
    require!(message);
    let file = try_ref!(file);
    let obs = try_mut!(obs);
    // SAFETY: caller contract: a valid argument file.
    let text = match unsafe { args_from_c(file) } {
        Ok(t) => t,
        Err(e) => return e,
    };
    let mut line = Line::<256>::new();
    let mut settings = None;
    match text {
        ArgsFile::Absent => {}
        ArgsFile::Unreadable | ArgsFile::TooLong => {
            let _ = write!(line, "counting file unreadable: counting with the defaults");
        }
        ArgsFile::Text(bytes) => match hnroot_core::counting::parse(bytes) {
            Ok(c) => {
                let _ = write!(line, "counting: {}", hnroot_core::counting::Summary(&c));
                settings = Some(c);
            }
            Err(e) => {
                let _ = write!(
                    line,
                    "counting file refused ({e}): counting with the defaults"
                );
            }
        },
    }
    // SAFETY: `message` non-NULL, `message_len` writable bytes (caller contract).
    let written = unsafe { line.copy_to_c(message, message_len) };
    if written != hnroot_result::HNROOT_RESULT_OK {
        return written;
    }
    if let Some(c) = settings {
        obs.tries = c.tries;
        obs.boot_limit = c.boot_limit;
        obs.wait_first = c.wait_first;
        obs.wait_max = c.wait_max;
    }
    hnroot_result::HNROOT_RESULT_OK
}

/// Read the fleet's menu-timeout file (`hnroot select --menu-timeout-file`, the loader's
/// `(memdisk)/hnroot/menu-timeout`; see `hnroot_core::menu`) into `*seconds`: the countdown it
/// names, or the default (2 s) when the file is absent, unreadable or refused; and
/// write one NUL-terminated line for the console into `message`: why a file was refused and
/// that the default countdown holds (a damaged file never keeps a server from booting). An
/// absent or accepted file writes an empty line.
///
/// # Safety
/// `file` must point to a valid `hnroot_args`; `seconds` to a writable `uint32_t`; `message` to
/// `message_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn hnroot_menu_timeout_read(
    file: *const hnroot_args,
    seconds: *mut u32,
    message: *mut u8,
    message_len: usize,
) -> hnroot_result {
    require!(message);
    let file = try_ref!(file);
    let seconds = try_mut!(seconds);
    // SAFETY: caller contract: a valid argument file.
    let text = match unsafe { args_from_c(file) } {
        Ok(t) => t,
        Err(e) => return e,
    };
    let default = hnroot_core::menu::DEFAULT_SECONDS;
    let mut line = Line::<256>::new();
    let chosen = match text {
        ArgsFile::Absent => default,
        ArgsFile::Unreadable | ArgsFile::TooLong => {
            let _ = write!(
                line,
                "menu-timeout file unreadable: the menu waits {default} s"
            );
            default
        }
        ArgsFile::Text(bytes) => hnroot_core::menu::parse(bytes).unwrap_or_else(|e| {
            let _ = write!(
                line,
                "menu-timeout file refused ({e}): the menu waits {default} s"
            );
            default
        }),
    };
    // SAFETY: `message` non-NULL, `message_len` writable bytes (caller contract).
    let written = unsafe { line.copy_to_c(message, message_len) };
    if written != hnroot_result::HNROOT_RESULT_OK {
        return written;
    }
    *seconds = u32::from(chosen);
    hnroot_result::HNROOT_RESULT_OK
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use hnroot_core::bootstate::new_block;
    use hnroot_core::uuid::FsUuid;

    const A: FsUuid = FsUuid::Uuid([0xa; 16]);
    const B: FsUuid = FsUuid::Uuid([0xb; 16]);

    fn readable(uuid: FsUuid) -> hnroot_image_seen {
        hnroot_image_seen {
            kind: HNROOT_IMAGE_BOOTABLE,
            uuid: hnroot_uuid::from_core(Some(uuid)),
            ..hnroot_image_seen::default()
        }
    }

    #[test]
    fn the_counting_file_sets_the_settings_or_is_refused_leaving_them() {
        let read = |text: &[u8]| {
            let file = hnroot_args {
                kind: HNROOT_ARGS_READ,
                bytes: text.as_ptr(),
                len: text.len(),
            };
            let mut obs = hnroot_observation::default();
            let mut msg = [0u8; 256];
            // SAFETY: valid pointers and lengths.
            let r = unsafe { hnroot_counting_read(&file, &mut obs, msg.as_mut_ptr(), msg.len()) };
            assert_eq!(r, hnroot_result::HNROOT_RESULT_OK);
            let end = msg.iter().position(|b| *b == 0).unwrap();
            (
                obs,
                std::string::String::from_utf8(msg[..end].to_vec()).unwrap(),
            )
        };
        let (obs, said) = read(b"boot-limit=2\ntries=5\n");
        assert_eq!(
            (obs.tries, obs.boot_limit, obs.wait_first, obs.wait_max),
            (5, 2, 60, 1800)
        );
        assert_eq!(
            said,
            "counting: tries 5, boot limit 2, waits 60 s doubling to 1800 s"
        );
        let (obs, said) = read(b"boot-limit=0\n");
        assert_eq!(obs, hnroot_observation::default());
        assert_eq!(
            said,
            "counting file refused (line 1: boot-limit must be a whole number from 1 to 100): \
             counting with the defaults"
        );
        let absent = hnroot_args {
            kind: HNROOT_ARGS_ABSENT,
            bytes: core::ptr::null(),
            len: 0,
        };
        let mut obs = hnroot_observation::default();
        let mut msg = [1u8; 8];
        // SAFETY: valid pointers and lengths.
        let r = unsafe { hnroot_counting_read(&absent, &mut obs, msg.as_mut_ptr(), msg.len()) };
        assert_eq!((r, msg[0]), (hnroot_result::HNROOT_RESULT_OK, 0));
    }

    #[test]
    fn the_menu_timeout_file_sets_the_countdown_or_is_refused_for_the_default() {
        let read = |kind, text: &[u8]| {
            let file = hnroot_args {
                kind,
                bytes: text.as_ptr(),
                len: text.len(),
            };
            let mut seconds = u32::MAX;
            let mut msg = [1u8; 256];
            // SAFETY: valid pointers and lengths.
            let r = unsafe {
                hnroot_menu_timeout_read(&file, &mut seconds, msg.as_mut_ptr(), msg.len())
            };
            assert_eq!(r, hnroot_result::HNROOT_RESULT_OK);
            (seconds, text_of(&msg))
        };
        assert_eq!(
            read(HNROOT_ARGS_READ, b"# fleet\n0\n"),
            (0, std::string::String::new())
        );
        assert_eq!(
            read(HNROOT_ARGS_READ, b"15"),
            (15, std::string::String::new())
        );
        assert_eq!(
            read(HNROOT_ARGS_ABSENT, b""),
            (2, std::string::String::new())
        );
        assert_eq!(
            read(HNROOT_ARGS_READ, b"2 s\n"),
            (
                2,
                "menu-timeout file refused (line 1: expected a whole number of seconds from 0 \
                 to 600): the menu waits 2 s"
                    .into()
            )
        );
        assert_eq!(
            read(HNROOT_ARGS_UNREADABLE, b""),
            (2, "menu-timeout file unreadable: the menu waits 2 s".into())
        );
        let file = hnroot_args {
            kind: HNROOT_ARGS_ABSENT,
            bytes: core::ptr::null(),
            len: 0,
        };
        let mut msg = [0u8; 8];
        // SAFETY: a NULL `seconds` is refused before anything is written.
        let r = unsafe {
            hnroot_menu_timeout_read(&file, core::ptr::null_mut(), msg.as_mut_ptr(), msg.len())
        };
        assert_eq!(r, hnroot_result::HNROOT_RESULT_NULL_ARGUMENT);
    }

    const NO_ARGS: hnroot_args = hnroot_args {
        kind: HNROOT_ARGS_ABSENT,
        bytes: core::ptr::null(),
        len: 0,
    };

    fn parts() -> hnroot_boot_parts {
        hnroot_boot_parts {
            hostpart_partuuid: c"0fc63daf-8483-4772-8e79-3d69d8477de4".as_ptr().cast(),
            esp_partuuid: core::ptr::null(),
            defaults: NO_ARGS,
            fleet_defaults: NO_ARGS,
            host: NO_ARGS,
            images: [NO_ARGS; HNROOT_IMAGE_COUNT],
        }
    }

    fn text_of(buf: &[u8]) -> std::string::String {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(0);
        std::string::String::from_utf8_lossy(&buf[..end]).into_owned()
    }

    /// `hnroot_decide`'s outputs: the result, the decision, and the message, record and both
    /// command lines as text.
    struct Decided {
        r: hnroot_result,
        d: hnroot_decision,
        message: std::string::String,
        record: std::string::String,
        cmdline: std::string::String,
        fallback: std::string::String,
    }

    fn decide_with(
        obs: &hnroot_observation,
        block: Option<&[u8]>,
        parts: &hnroot_boot_parts,
    ) -> Decided {
        let mut out = hnroot_decision::default();
        let mut bufs = [[0u8; HNROOT_TEXT_LEN]; 4];
        let [m, r, c, f] = &mut bufs;
        let buf = |b: &mut [u8; HNROOT_TEXT_LEN]| hnroot_buffer {
            bytes: b.as_mut_ptr(),
            len: b.len(),
        };
        let text = hnroot_decision_text {
            message: buf(m),
            record: buf(r),
            cmdline: buf(c),
            fallback_cmdline: buf(f),
        };
        let (kind, ptr, len) = block
            .map_or((HNROOT_STATE_FILE_ABSENT, core::ptr::null(), 0), |b| {
                (HNROOT_STATE_FILE_READ, b.as_ptr(), b.len())
            });
        let result = unsafe { hnroot_decide(obs, kind, ptr, len, parts, &mut out, &text) };
        Decided {
            r: result,
            d: out,
            message: text_of(&bufs[0]),
            record: text_of(&bufs[1]),
            cmdline: text_of(&bufs[2]),
            fallback: text_of(&bufs[3]),
        }
    }

    fn decide_c(
        obs: &hnroot_observation,
        block: Option<&[u8]>,
    ) -> (hnroot_result, hnroot_decision, std::string::String) {
        let d = decide_with(obs, block, &parts());
        (d.r, d.d, d.message)
    }

    #[test]
    fn a_sealed_images_root_hash_goes_on_its_line_and_no_other() {
        let mut obs = hnroot_observation::default();
        obs.images[usize::from(HNROOT_IMAGE_CURRENT)] = readable(A);
        let mut sealed = readable(B);
        sealed.sealed = true;
        sealed.root_hash = [0x5e; 32];
        obs.images[usize::from(HNROOT_IMAGE_NEW)] = sealed;
        let block = new_block(&BootState::committed(A));
        let d = decide_with(&obs, Some(&block), &parts());
        assert_eq!(d.r, hnroot_result::HNROOT_RESULT_OK);
        let parsed = hnroot_core::cmdline::parse(&d.cmdline);
        assert_eq!(parsed.booted.unwrap().name, ImageName::New);
        assert_eq!(parsed.root_hash, Some([0x5e; 32]), "{}", d.cmdline);
        let fallback = hnroot_core::cmdline::parse(&d.fallback);
        assert_eq!(fallback.root_hash, None, "{}", d.fallback);
        // A root hash without `sealed` is not one (the driver's buffer, not a seal).
        obs.images[usize::from(HNROOT_IMAGE_NEW)].sealed = false;
        let d = decide_with(&obs, Some(&block), &parts());
        assert_eq!(hnroot_core::cmdline::parse(&d.cmdline).root_hash, None);
    }

    #[test]
    fn the_command_lines_of_the_image_and_its_fallback_are_composed_by_the_core() {
        let mut obs = hnroot_observation::default();
        obs.images[usize::from(HNROOT_IMAGE_CURRENT)] = readable(A);
        obs.images[usize::from(HNROOT_IMAGE_NEW)] = readable(B);
        let block = new_block(&BootState::committed(A));
        let defaults = b"console=ttyS0 panic=10";
        let image = b"console=ttyS1,115200 init=/bin/sh";
        let host = b"hnroot-test=1";
        let read = |b: &[u8]| hnroot_args {
            kind: HNROOT_ARGS_READ,
            bytes: b.as_ptr(),
            len: b.len(),
        };
        let mut p = parts();
        p.defaults = read(defaults);
        p.host = read(host);
        p.images[usize::from(HNROOT_IMAGE_NEW)] = read(image);
        let d = decide_with(&obs, Some(&block), &p);
        assert_eq!(d.r, hnroot_result::HNROOT_RESULT_OK);
        let parsed = hnroot_core::cmdline::parse(&d.cmdline);
        assert!(parsed.errors.is_empty(), "{}", d.cmdline);
        assert_eq!(parsed.booted.unwrap().name, ImageName::New);
        assert_eq!(parsed.reason, Some(ReasonCode::Update));
        assert_eq!(
            parsed.init, None,
            "the image's init= is refused: {}",
            d.cmdline
        );
        assert!(
            d.cmdline
                .ends_with("boot=hnroot panic=10 console=ttyS1,115200 hnroot-test=1"),
            "{}",
            d.cmdline
        );
        assert!(
            d.record
                .ends_with(" args=defaults,image,host refused=image:init"),
            "{}",
            d.record
        );
        assert!(
            d.message.contains("kernel argument init= from the image"),
            "{}",
            d.message
        );
        // The fallback (hn-root.img) has no file of its own: the defaults and the host's.
        let parsed = hnroot_core::cmdline::parse(&d.fallback);
        assert_eq!(parsed.booted.unwrap().name, ImageName::Current);
        assert_eq!(parsed.reason, Some(ReasonCode::NextImage), "{}", d.fallback);
        assert!(
            d.fallback
                .ends_with("boot=hnroot console=ttyS0 panic=10 hnroot-test=1"),
            "{}",
            d.fallback
        );
        // The fleet's defaults, built into the loader, replace its built-in ones.
        let fleet = b"console=ttyS1,115200";
        let mut with_fleet = p;
        with_fleet.fleet_defaults = read(fleet);
        let d = decide_with(&obs, Some(&block), &with_fleet);
        assert!(
            d.fallback
                .ends_with("boot=hnroot console=ttyS1,115200 hnroot-test=1"),
            "{}",
            d.fallback
        );
        // A PARTUUID that is not one is refused before anything is written.
        let mut bad = p;
        bad.hostpart_partuuid = c"not-a-uuid".as_ptr().cast();
        let d = decide_with(&obs, Some(&block), &bad);
        assert_eq!(d.r, hnroot_result::HNROOT_RESULT_INVALID_ARGUMENT);
        assert_eq!((d.message.as_str(), d.cmdline.as_str()), ("", ""));
        // Nothing bootable: no command lines.
        let d = decide_with(&hnroot_observation::default(), None, &parts());
        assert_eq!(d.d.reason, HNROOT_REASON_NOTHING_BOOTABLE);
        assert_eq!((d.cmdline.as_str(), d.fallback.as_str()), ("", ""));
        assert!(
            d.record.starts_with("reason=nothing-bootable"),
            "{}",
            d.record
        );
    }

    #[test]
    fn update_through_the_c_abi_and_encode_the_trial() {
        let mut obs = hnroot_observation::default();
        obs.images[usize::from(HNROOT_IMAGE_CURRENT)] = readable(A);
        obs.images[usize::from(HNROOT_IMAGE_NEW)] = readable(B);
        let mut block = new_block(&BootState::committed(A));
        let (r, d, msg) = decide_c(&obs, Some(&block));
        assert_eq!(r, hnroot_result::HNROOT_RESULT_OK);
        assert_eq!(
            msg,
            "booting hn-root-new.img (update, trial 1 of 3); fallback hn-root.img"
        );
        assert_eq!(
            (d.reason, d.image, d.attempt, d.of),
            (HNROOT_REASON_UPDATE, HNROOT_IMAGE_NEW, 1, 3)
        );
        assert_eq!(
            (d.fallback_count, d.fallbacks[0]),
            (1, HNROOT_IMAGE_CURRENT)
        );
        assert_eq!(d.write.kind, HNROOT_STATE_TRIAL);
        let (mut off, mut len) = (0u32, 0u32);
        let r = unsafe {
            hnroot_bootstate_encode(
                block.as_mut_ptr(),
                block.len(),
                &d.write,
                &mut off,
                &mut len,
            )
        };
        assert_eq!((r, off, len), (hnroot_result::HNROOT_RESULT_OK, 512, 512));
        let seen = Block::decode(&block).unwrap().seen();
        assert_eq!(
            seen,
            StateSeen::Valid(BootState::Trial(Trial {
                image: B,
                tries: Tries::new(2, 3).unwrap(),
                good: Some(A)
            }))
        );
    }

    #[test]
    fn reason_codes_are_the_cores() {
        for &code in ReasonCode::ALL {
            let c = unsafe { core::ffi::CStr::from_ptr(hnroot_reason_code(code.number()).cast()) };
            assert_eq!(c.to_str().unwrap(), code.code());
        }
        assert!(hnroot_reason_code(ReasonCode::ALL.len() as u8).is_null());
        assert!(hnroot_reason_code(99).is_null());
    }

    #[test]
    fn default_and_max_tries_are_what_the_decision_uses() {
        let mut obs = hnroot_observation::default();
        obs.images[usize::from(HNROOT_IMAGE_CURRENT)] = readable(A);
        obs.images[usize::from(HNROOT_IMAGE_NEW)] = readable(B);
        let block = new_block(&BootState::committed(A));
        for (asked, used) in [
            (0, HNROOT_DEFAULT_TRIES),
            (5, 5),
            (HNROOT_MAX_TRIES, HNROOT_MAX_TRIES),
            (HNROOT_MAX_TRIES + 1, HNROOT_MAX_TRIES),
        ] {
            obs.tries = asked;
            let (r, d, _) = decide_c(&obs, Some(&block));
            assert_eq!(r, hnroot_result::HNROOT_RESULT_OK);
            assert_eq!(
                (d.reason, d.of),
                (HNROOT_REASON_UPDATE, used),
                "tries {asked}"
            );
            assert_eq!(d.write.tries_total, used);
        }
    }

    #[test]
    fn bad_arguments_write_nothing() {
        let mut obs = hnroot_observation::default();
        obs.images[0].kind = 9;
        let (r, d, _) = decide_c(&obs, None);
        assert_eq!(r, hnroot_result::HNROOT_RESULT_INVALID_ARGUMENT);
        assert_eq!(d, hnroot_decision::default());
        obs.images[0] = hnroot_image_seen {
            kind: HNROOT_IMAGE_BOOTABLE,
            ..hnroot_image_seen::default()
        };
        assert_eq!(
            decide_c(&obs, None).0,
            hnroot_result::HNROOT_RESULT_INVALID_ARGUMENT
        );
        obs.images[0] = readable(A);
        // A message buffer too short: nothing is written, not even the other texts.
        let mut out = hnroot_decision::default();
        let (mut short, mut rec, mut line, mut fb) = ([0u8; 8], [0u8; 1024], [0u8; 2048], [0u8; 8]);
        let text = hnroot_decision_text {
            message: hnroot_buffer {
                bytes: short.as_mut_ptr(),
                len: short.len(),
            },
            record: hnroot_buffer {
                bytes: rec.as_mut_ptr(),
                len: rec.len(),
            },
            cmdline: hnroot_buffer {
                bytes: line.as_mut_ptr(),
                len: line.len(),
            },
            fallback_cmdline: hnroot_buffer {
                bytes: fb.as_mut_ptr(),
                len: fb.len(),
            },
        };
        let p = parts();
        let call = |obs: *const hnroot_observation,
                    kind: u8,
                    parts: *const hnroot_boot_parts,
                    out: &mut hnroot_decision,
                    text: *const hnroot_decision_text| unsafe {
            hnroot_decide(obs, kind, core::ptr::null(), 0, parts, out, text)
        };
        let r = call(&obs, HNROOT_STATE_FILE_ABSENT, &p, &mut out, &text);
        assert_eq!(r, hnroot_result::HNROOT_RESULT_BUFFER_TOO_SHORT);
        assert_eq!(out, hnroot_decision::default());
        assert_eq!(
            (short, rec[0], line[0]),
            ([0u8; 8], 0, 0),
            "nothing written"
        );
        for (o, k, pp, t) in [
            (
                core::ptr::null(),
                HNROOT_STATE_FILE_ABSENT,
                &p as *const _,
                &text as *const _,
            ),
            (
                &obs as *const _,
                HNROOT_STATE_FILE_ABSENT,
                core::ptr::null(),
                &text,
            ),
            (&obs, HNROOT_STATE_FILE_ABSENT, &p, core::ptr::null()),
            // A read file needs its bytes.
            (&obs, HNROOT_STATE_FILE_READ, &p, &text),
        ] {
            assert_eq!(
                call(o, k, pp, &mut out, t),
                hnroot_result::HNROOT_RESULT_NULL_ARGUMENT
            );
        }
        let no_buffer = hnroot_decision_text {
            cmdline: hnroot_buffer {
                bytes: core::ptr::null_mut(),
                len: 100,
            },
            ..text
        };
        let r = call(&obs, HNROOT_STATE_FILE_ABSENT, &p, &mut out, &no_buffer);
        assert_eq!(r, hnroot_result::HNROOT_RESULT_NULL_ARGUMENT);
        assert_eq!(
            call(&obs, 7, &p, &mut out, &text),
            hnroot_result::HNROOT_RESULT_INVALID_ARGUMENT
        );
        let mut bad_kind = parts();
        bad_kind.images[2].kind = 9;
        assert_eq!(
            call(&obs, HNROOT_STATE_FILE_ABSENT, &bad_kind, &mut out, &text),
            hnroot_result::HNROOT_RESULT_INVALID_ARGUMENT
        );
    }

    #[test]
    fn wrong_sized_block_is_corrupt_and_never_encoded() {
        let mut obs = hnroot_observation::default();
        obs.images[0] = readable(A);
        let mut block = [0u8; 100];
        let (r, d, msg) = decide_c(&obs, Some(&block));
        assert_eq!(r, hnroot_result::HNROOT_RESULT_OK);
        assert_eq!(d.state_seen, 1);
        assert!(msg.contains("boot state corrupt"), "{msg}");
        let (mut off, mut len) = (7u32, 7u32);
        let r = unsafe {
            hnroot_bootstate_encode(
                block.as_mut_ptr(),
                block.len(),
                &d.write,
                &mut off,
                &mut len,
            )
        };
        assert_eq!(
            (r, off, len),
            (hnroot_result::HNROOT_RESULT_BOOTSTATE_SIZE, 7, 7)
        );
        assert_eq!(block, [0u8; 100]);
    }

    #[test]
    fn an_unreadable_state_file_is_corrupt_and_the_record_says_so() {
        let mut obs = hnroot_observation::default();
        obs.images[0] = readable(A);
        let mut out = hnroot_decision::default();
        let mut bufs = [[0u8; HNROOT_TEXT_LEN]; 4];
        let [m, r, c, f] = &mut bufs;
        let text = hnroot_decision_text {
            message: hnroot_buffer {
                bytes: m.as_mut_ptr(),
                len: m.len(),
            },
            record: hnroot_buffer {
                bytes: r.as_mut_ptr(),
                len: r.len(),
            },
            cmdline: hnroot_buffer {
                bytes: c.as_mut_ptr(),
                len: c.len(),
            },
            fallback_cmdline: hnroot_buffer {
                bytes: f.as_mut_ptr(),
                len: f.len(),
            },
        };
        let result = unsafe {
            hnroot_decide(
                &obs,
                HNROOT_STATE_FILE_UNREADABLE,
                core::ptr::null(),
                0,
                &parts(),
                &mut out,
                &text,
            )
        };
        assert_eq!(result, hnroot_result::HNROOT_RESULT_OK);
        assert_eq!(out.state_seen, 1);
        assert_eq!(
            text_of(&bufs[1]),
            std::format!(
                "reason=trial image=hn-root.img uuid={A} try=1/3 fallbacks=- notes=state-corrupt \
                 write=trial args=- refused=-"
            )
        );
    }
}
