//! What the operator's commands (`hnroot mark-good`, `hnroot stage`) may do, decided from an
//! observation. The CLI carries it out.

use core::fmt;

use crate::bootstate::{BootState, StateSeen};
use crate::name::ImageName;
use crate::observe::Observation;
use crate::plan::Booted;
use crate::uuid::FsUuid;

/// Why `mark-good` refuses.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MarkGoodError {
    /// `hn-root.img` is not a readable filesystem.
    NoCurrent,
    /// The running system did not boot `hn-root.img` (a recovery or as-is boot): marking the
    /// file good would vouch for an image nobody ran.
    NotRunningCurrent {
        /// UUID of `hn-root.img`.
        current: FsUuid,
        /// UUID the running system booted.
        booted: FsUuid,
    },
}

impl core::error::Error for MarkGoodError {}

impl fmt::Display for MarkGoodError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MarkGoodError::NoCurrent => f.write_str(
                "hn-root.img is missing or not a readable filesystem: nothing to mark good",
            ),
            MarkGoodError::NotRunningCurrent { current, booted } => write!(
                f,
                "the running system booted the image with UUID {booted}, but hn-root.img has UUID \
                 {current}: refusing to mark an image good that is not running"
            ),
        }
    }
}

/// The boot state `mark-good` writes, or `None` when it already says so. `booted` is what the
/// kernel command line says the running system booted (`None` on an unpinned boot: then
/// `hn-root.img` is trusted as running).
pub fn mark_good(
    obs: &Observation,
    booted: Option<Booted>,
) -> Result<Option<BootState>, MarkGoodError> {
    let current = obs
        .readable(ImageName::Current)
        .ok_or(MarkGoodError::NoCurrent)?;
    if let Some(booted) = booted {
        if booted.uuid != current {
            return Err(MarkGoodError::NotRunningCurrent {
                current,
                booted: booted.uuid,
            });
        }
    }
    let committed = BootState::Committed { good: current };
    if obs.state == StateSeen::Valid(committed) {
        return Ok(None);
    }
    Ok(Some(committed))
}

/// Why an image may not be staged.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StageError {
    /// The image has the UUID of an image already on hostpart that must stay distinguishable.
    DuplicateUuid {
        /// Which file already has it.
        existing: ImageName,
        /// The UUID.
        uuid: FsUuid,
    },
}

impl core::error::Error for StageError {}

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StageError::DuplicateUuid { existing, uuid } => write!(
                f,
                "the image has filesystem UUID {uuid}, the same as {existing}: hnroot tells images \
                 apart by UUID (give it a new one, e.g. tune2fs -U random, before staging)"
            ),
        }
    }
}

/// Whether an image with filesystem UUID `uuid` may be staged as `hn-root-new.img`.
pub fn check_stage(obs: &Observation, uuid: FsUuid) -> Result<(), StageError> {
    for existing in [ImageName::Current, ImageName::Old] {
        if obs.readable(existing) == Some(uuid) {
            return Err(StageError::DuplicateUuid { existing, uuid });
        }
    }
    Ok(())
}
