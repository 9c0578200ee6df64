//! The bootloader decision and the boot-state codec over the C ABI.

use core::fmt::Write as _;

use hnroot_core::bootstate::{Block, BlockError, BootState, StateFile, StateSeen, Trial, Tries};
use hnroot_core::decide::{decide, Config, Decision, Reason, ReasonCode};
use hnroot_core::name::ImageName;
use hnroot_core::observe::{ImageSeen, Observation};

use crate::text::Line;
use crate::{hnroot_result, hnroot_uuid, try_ref, try_slice, write_out, HNROOT_BOOTSTATE_LEN};

/// `hnroot_image_seen.kind`: no such file.
pub const HNROOT_IMAGE_ABSENT: u8 = 0;
/// `hnroot_image_seen.kind`: the file exists but is not a readable filesystem.
pub const HNROOT_IMAGE_UNREADABLE: u8 = 1;
/// `hnroot_image_seen.kind`: a readable filesystem; `uuid` holds its UUID.
pub const HNROOT_IMAGE_READABLE: u8 = 2;

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
/// `system-revert` without a readable old image.
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
};

/// Tries a new image gets when `hnroot_observation.tries` is 0 (the core's default).
pub const HNROOT_DEFAULT_TRIES: u8 = 3;
const _: () = assert!(HNROOT_DEFAULT_TRIES == hnroot_core::bootstate::DEFAULT_TRIES);
/// Most tries `hnroot_observation.tries` may ask for; larger values are clamped to it.
pub const HNROOT_MAX_TRIES: u8 = 100;
const _: () = assert!(HNROOT_MAX_TRIES == hnroot_core::bootstate::MAX_TRIES);

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
    /// `HNROOT_IMAGE_ABSENT`, `HNROOT_IMAGE_UNREADABLE` or `HNROOT_IMAGE_READABLE`.
    pub kind: u8,
    /// The filesystem UUID when readable.
    pub uuid: hnroot_uuid,
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
    /// Other readable images, best first.
    pub fallbacks: [u8; 4],
    /// Their UUIDs.
    pub fallback_uuids: [hnroot_uuid; 4],
    /// `Notes` bits of the core (see `hnroot_core::decide::Notes`).
    pub notes: u32,
    /// The boot state to write before booting (`kind == HNROOT_STATE_NONE`: none).
    pub write: hnroot_bootstate,
    /// What the boot-state block held: 0 absent, 1 corrupt, 2 valid.
    pub state_seen: u8,
}

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
            HNROOT_IMAGE_UNREADABLE => ImageSeen::Unreadable,
            HNROOT_IMAGE_READABLE => match seen.uuid.to_core()? {
                Some(uuid) => ImageSeen::Readable(uuid),
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
        Some(BootState::Committed { good }) => hnroot_bootstate {
            kind: HNROOT_STATE_COMMITTED,
            good: hnroot_uuid::from_core(Some(good)),
            ..hnroot_bootstate::default()
        },
        Some(BootState::Trial(t)) => hnroot_bootstate {
            kind: HNROOT_STATE_TRIAL,
            tries_left: t.tries.left(),
            tries_total: t.tries.total(),
            image: hnroot_uuid::from_core(Some(t.image)),
            good: hnroot_uuid::from_core(t.good),
        },
    }
}

fn bootstate_from_c(c: &hnroot_bootstate) -> Result<Option<BootState>, hnroot_result> {
    let invalid = hnroot_result::HNROOT_RESULT_INVALID_ARGUMENT;
    match c.kind {
        HNROOT_STATE_NONE => Ok(None),
        HNROOT_STATE_COMMITTED => Ok(Some(BootState::Committed {
            good: c.good.to_core()?.ok_or(invalid)?,
        })),
        HNROOT_STATE_TRIAL => Ok(Some(BootState::Trial(Trial {
            image: c.image.to_core()?.ok_or(invalid)?,
            tries: Tries::new(c.tries_left, c.tries_total).ok_or(invalid)?,
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
    match boot.reason {
        Reason::Update { attempt, of } | Reason::Trial { attempt, of } => {
            (out.attempt, out.of) = (attempt, of);
        }
        Reason::AutomaticRollback { failed } => out.failed = image_to_u8(failed),
        _ => {}
    }
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

/// Decide what to boot. Pure: reads `obs` and the boot-state file, writes nothing but `out`,
/// `message` and `record`.
///
/// * `obs`: what GRUB saw; required.
/// * `state_file`: `HNROOT_STATE_FILE_*`, what was at the boot-state path; with
///   `HNROOT_STATE_FILE_READ`, `state_block`/`state_len` are the bytes read (a file of the wrong
///   size counts as corrupt, as an unreadable one does).
/// * `out`: the decision; required.
/// * `message`/`message_len`: one NUL-terminated line for people, e.g.
///   `booting hn-root-new.img (update, trial 1 of 3); fallback hn-root.img`.
/// * `record`/`record_len`: the same decision as stable `key=value` words, e.g.
///   `reason=update image=hn-root-new.img uuid=... try=1/3 fallbacks=hn-root.img notes=-
///   write=trial`.
///
/// 1024 bytes always suffice for either. Returns `HNROOT_RESULT_OK`, or an error and writes
/// nothing.
///
/// # Safety
/// Pointers must be NULL or valid for the stated lengths; outputs must not alias the inputs.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn hnroot_decide(
    obs: *const hnroot_observation,
    state_file: u8,
    state_block: *const u8,
    state_len: usize,
    out: *mut hnroot_decision,
    message: *mut u8,
    message_len: usize,
    record: *mut u8,
    record_len: usize,
) -> hnroot_result {
    let obs = try_ref!(obs);
    if out.is_null() || message.is_null() || record.is_null() {
        return hnroot_result::HNROOT_RESULT_NULL_ARGUMENT;
    }
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
    let config = Config {
        tries: if obs.tries == 0 {
            Config::default().tries
        } else {
            obs.tries
        },
    };
    let decision = decide(&observation, &config);
    let mut line = Line::<1024>::new();
    let _ = write!(line, "{decision}");
    let mut words = Line::<1024>::new();
    let _ = write!(words, "{}", decision.record());
    if line.len() >= message_len || words.len() >= record_len {
        return hnroot_result::HNROOT_RESULT_BUFFER_TOO_SHORT;
    }
    // SAFETY: non-NULL, lengths checked above, the caller guarantees the buffers.
    unsafe {
        let _ = line.copy_to_c(message, message_len);
        let _ = words.copy_to_c(record, record_len);
        write_out(out, decision_to_c(&decision, state))
    }
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
    // SAFETY: caller contract: NULL or valid.
    let Some(state) = (unsafe { state.as_ref() }) else {
        return hnroot_result::HNROOT_RESULT_NULL_ARGUMENT;
    };
    if block.is_null() || offset.is_null() || len.is_null() {
        return hnroot_result::HNROOT_RESULT_NULL_ARGUMENT;
    }
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
    if message.is_null() {
        return hnroot_result::HNROOT_RESULT_NULL_ARGUMENT;
    }
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
            kind: HNROOT_IMAGE_READABLE,
            uuid: hnroot_uuid::from_core(Some(uuid)),
        }
    }

    fn decide_c(
        obs: &hnroot_observation,
        block: Option<&[u8]>,
    ) -> (hnroot_result, hnroot_decision, std::string::String) {
        let mut out = hnroot_decision::default();
        let mut msg = [0u8; 1024];
        let mut rec = [0u8; 1024];
        let (kind, ptr, len) = block
            .map_or((HNROOT_STATE_FILE_ABSENT, core::ptr::null(), 0), |b| {
                (HNROOT_STATE_FILE_READ, b.as_ptr(), b.len())
            });
        let r = unsafe {
            hnroot_decide(
                obs,
                kind,
                ptr,
                len,
                &mut out,
                msg.as_mut_ptr(),
                msg.len(),
                rec.as_mut_ptr(),
                rec.len(),
            )
        };
        let end = msg.iter().position(|&b| b == 0).unwrap_or(0);
        (
            r,
            out,
            std::string::String::from_utf8_lossy(&msg[..end]).into_owned(),
        )
    }

    #[test]
    fn update_through_the_c_abi_and_encode_the_trial() {
        let mut obs = hnroot_observation::default();
        obs.images[usize::from(HNROOT_IMAGE_CURRENT)] = readable(A);
        obs.images[usize::from(HNROOT_IMAGE_NEW)] = readable(B);
        let mut block = new_block(&BootState::Committed { good: A });
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
        let block = new_block(&BootState::Committed { good: A });
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
            kind: HNROOT_IMAGE_READABLE,
            uuid: hnroot_uuid::default(),
        };
        assert_eq!(
            decide_c(&obs, None).0,
            hnroot_result::HNROOT_RESULT_INVALID_ARGUMENT
        );
        obs.images[0] = readable(A);
        let mut out = hnroot_decision::default();
        let mut short = [0u8; 8];
        let mut rec = [0u8; 1024];
        let r = unsafe {
            hnroot_decide(
                &obs,
                HNROOT_STATE_FILE_ABSENT,
                core::ptr::null(),
                0,
                &mut out,
                short.as_mut_ptr(),
                short.len(),
                rec.as_mut_ptr(),
                rec.len(),
            )
        };
        assert_eq!(r, hnroot_result::HNROOT_RESULT_BUFFER_TOO_SHORT);
        assert_eq!(out, hnroot_decision::default());
        assert_eq!(short, [0u8; 8], "nothing written");
        let r = unsafe {
            hnroot_decide(
                core::ptr::null(),
                HNROOT_STATE_FILE_ABSENT,
                core::ptr::null(),
                0,
                &mut out,
                short.as_mut_ptr(),
                8,
                rec.as_mut_ptr(),
                rec.len(),
            )
        };
        assert_eq!(r, hnroot_result::HNROOT_RESULT_NULL_ARGUMENT);
        let mut msg = [0u8; 1024];
        let r = unsafe {
            hnroot_decide(
                &obs,
                HNROOT_STATE_FILE_READ,
                core::ptr::null(),
                0,
                &mut out,
                msg.as_mut_ptr(),
                msg.len(),
                rec.as_mut_ptr(),
                rec.len(),
            )
        };
        assert_eq!(
            r,
            hnroot_result::HNROOT_RESULT_NULL_ARGUMENT,
            "a read file needs its bytes"
        );
        let r = unsafe {
            hnroot_decide(
                &obs,
                7,
                core::ptr::null(),
                0,
                &mut out,
                msg.as_mut_ptr(),
                msg.len(),
                rec.as_mut_ptr(),
                rec.len(),
            )
        };
        assert_eq!(r, hnroot_result::HNROOT_RESULT_INVALID_ARGUMENT);
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
        let (mut msg, mut rec) = ([0u8; 1024], [0u8; 1024]);
        let r = unsafe {
            hnroot_decide(
                &obs,
                HNROOT_STATE_FILE_UNREADABLE,
                core::ptr::null(),
                0,
                &mut out,
                msg.as_mut_ptr(),
                msg.len(),
                rec.as_mut_ptr(),
                rec.len(),
            )
        };
        assert_eq!(r, hnroot_result::HNROOT_RESULT_OK);
        assert_eq!(out.state_seen, 1);
        let rec = core::ffi::CStr::from_bytes_until_nul(&rec)
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(
            rec,
            std::format!(
                "reason=trial image=hn-root.img uuid={A} try=1/3 fallbacks=- notes=state-corrupt \
                 write=trial"
            )
        );
    }
}
