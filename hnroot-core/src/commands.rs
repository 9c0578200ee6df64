//! The operator's commands as plans: `hnroot mark-good`, `hnroot stage` and `hnroot revert`
//! decide here, from an observation, whether they may run and which steps they take; the CLI
//! carries the steps out with the same executor as the initramfs, so the crash model covers
//! them and `hnroot explain` can show them.

use core::fmt;

use crate::bootstate::{BootState, StateSeen};
use crate::decide::{decide, Config, Decision, Reason};
use crate::name::ImageName;
use crate::observe::Observation;
use crate::plan::{Booted, ChangePlan, ChangeStep, PlanKind, Steps};
use crate::uuid::FsUuid;

/// Why `mark-good` refuses.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MarkGoodError {
    /// `hn-root.img` is not bootable.
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
            MarkGoodError::NoCurrent => {
                f.write_str("hn-root.img is missing or not a bootable image: nothing to mark good")
            }
            MarkGoodError::NotRunningCurrent { current, booted } => write!(
                f,
                "the running system booted the image with UUID {booted}, but hn-root.img has UUID \
                 {current}: refusing to mark an image good that is not running"
            ),
        }
    }
}

fn steps(list: &[ChangeStep]) -> Steps {
    let mut out = Steps::new();
    for step in list {
        // Operator plans have at most 5 steps, MAX_STEPS is 10.
        let _ = out.push(*step);
    }
    out
}

/// The plan of `mark-good`: record `hn-root.img` as good with no unhealthy boot counted, or
/// nothing when the boot state already says so. `booted` is what the kernel command line says
/// the running system booted (`None` on an unpinned boot: then `hn-root.img` is trusted as
/// running).
///
/// The one healthy boot of another image it accepts is GRUB's fallback to the other committed
/// image (`hn-root-old.img` booted where it lies while the boot state is committed to
/// `hn-root.img`, [`Reason::UnhealthyFallback`] or [`Reason::Backoff`]): the machine reached
/// healthy, so the count of unhealthy boots starts again from zero, and nothing else changes
/// (`hn-root.img` stays the committed image, tried first at the next boot; `hnroot revert`
/// makes the old image current for good).
pub fn mark_good(obs: &Observation, booted: Option<Booted>) -> Result<ChangePlan, MarkGoodError> {
    let current = obs
        .bootable(ImageName::Current)
        .ok_or(MarkGoodError::NoCurrent)?;
    let good = match booted {
        Some(booted) if booted.uuid != current => {
            let fallback = obs.bootable(ImageName::Old) == Some(booted.uuid)
                && obs.boot_state().is_some_and(|s| s.is_committed_to(current));
            if !fallback {
                return Err(MarkGoodError::NotRunningCurrent {
                    current,
                    booted: booted.uuid,
                });
            }
            current
        }
        _ => current,
    };
    let committed = BootState::committed(good);
    let list: &[ChangeStep] = if obs.state == StateSeen::Valid(committed) {
        &[]
    } else {
        &[ChangeStep::WriteBootState(committed)]
    };
    Ok(ChangePlan {
        kind: PlanKind::MarkGood,
        steps: steps(list),
        notes: Default::default(),
    })
}

/// What `hnroot health-failed` does when a health check of the running system failed (systemd's
/// `boot-complete.target` was not reached).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum HealthAction {
    /// The running image is on trial: reboot, so that GRUB counts the try and, once the tries
    /// are used up, rolls back to the good image.
    Reboot {
        /// The image on trial.
        image: FsUuid,
        /// Tries GRUB has left for it.
        tries_left: u8,
    },
    /// Not a trial (a committed image, a recovery or as-is boot): rebooting would change
    /// nothing but could loop; the failure is only reported.
    Stay,
}

/// What to do about a failed health check. `booted` is what the kernel command line says the
/// running system booted (`None` on an unpinned boot: then `hn-root.img` is taken as running).
pub fn health_failed(obs: &Observation, booted: Option<Booted>) -> HealthAction {
    let Some(trial) = obs.trial() else {
        return HealthAction::Stay;
    };
    let running = booted
        .map(|b| b.uuid)
        .or_else(|| obs.bootable(ImageName::Current));
    if running == Some(trial.image) && obs.bootable(ImageName::Current) == Some(trial.image) {
        HealthAction::Reboot {
            image: trial.image,
            tries_left: trial.tries.left(),
        }
    } else {
        HealthAction::Stay
    }
}

/// What `hnroot stage` knows before it writes a byte.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct StageRequest {
    /// The source image's UUID (its verdict was bootable).
    pub uuid: FsUuid,
    /// Bytes the copy needs on hostpart (what a resumed partial file already holds is not
    /// counted again).
    pub needed: u64,
    /// Bytes free on hostpart.
    pub free: u64,
    /// `--replace`: an already staged `hn-root-new.img` may be replaced.
    pub replace: bool,
    /// `--force`: stage even while a trial runs.
    pub force: bool,
}

/// Why an image may not be staged.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StageError {
    /// The image has the UUID of an image already on hostpart: hnroot tells images apart by
    /// UUID.
    DuplicateUuid {
        /// Which file already has it.
        existing: ImageName,
        /// The UUID.
        uuid: FsUuid,
    },
    /// An image is staged already.
    AlreadyStaged,
    /// An image is on trial: staging now would supersede it before it was judged.
    TrialRunning {
        /// The image on trial.
        image: FsUuid,
        /// Boots it has left.
        tries_left: u8,
    },
    /// `hnroot install` puts the first image on an empty hostpart only.
    NotEmpty {
        /// An image already there.
        existing: ImageName,
    },
    /// Not enough room on hostpart.
    NoSpace {
        /// Bytes needed.
        needed: u64,
        /// Bytes free.
        free: u64,
    },
}

impl StageError {
    /// A stable name for JSON and tests.
    pub const fn code(&self) -> &'static str {
        match self {
            StageError::DuplicateUuid { .. } => "duplicate-uuid",
            StageError::AlreadyStaged => "already-staged",
            StageError::TrialRunning { .. } => "trial-running",
            StageError::NotEmpty { .. } => "hostpart-not-empty",
            StageError::NoSpace { .. } => "no-space",
        }
    }
}

impl core::error::Error for StageError {}

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StageError::DuplicateUuid { existing, uuid } => write!(
                f,
                "the image has filesystem UUID {uuid}, the same as {existing}: hnroot tells images \
                 apart by UUID (give it a new one, e.g. tune2fs -U random, before staging); \
                 nothing was written"
            ),
            StageError::AlreadyStaged => f.write_str(
                "hn-root-new.img is already staged: pass --replace to replace it; nothing was \
                 written",
            ),
            StageError::TrialRunning { image, tries_left } => write!(
                f,
                "the image with UUID {image} is on trial ({tries_left} boots left) and not yet \
                 marked good: staging now would supersede it untested; run `hnroot mark-good` \
                 or wait for the trial, or pass --force; nothing was written"
            ),
            StageError::NotEmpty { existing } => write!(
                f,
                "hostpart already holds {existing}: the first image goes onto an empty hostpart \
                 only (on an hnroot disk, use hnroot stage); nothing was written"
            ),
            StageError::NoSpace { needed, free } => write!(
                f,
                "hostpart has {} MiB free, the image needs {} MiB: free space first (old \
                 images, partial files, data/); nothing was written",
                free >> 20,
                needed.div_ceil(1 << 20)
            ),
        }
    }
}

/// The plan of `hnroot stage`, or why it may not run.
pub fn stage(obs: &Observation, request: &StageRequest) -> Result<ChangePlan, StageError> {
    for existing in ImageName::ALL {
        if existing == ImageName::New && request.replace {
            continue;
        }
        if obs.bootable(existing) == Some(request.uuid) {
            return Err(StageError::DuplicateUuid {
                existing,
                uuid: request.uuid,
            });
        }
    }
    if obs.image(ImageName::New).is_present() && !request.replace {
        return Err(StageError::AlreadyStaged);
    }
    if let Some(t) = obs.trial() {
        let on_hostpart = obs
            .find(t.image, &[ImageName::Current, ImageName::New])
            .is_some();
        if on_hostpart && t.tries.left() > 0 && !request.force {
            return Err(StageError::TrialRunning {
                image: t.image,
                tries_left: t.tries.left(),
            });
        }
    }
    if request.needed > request.free {
        return Err(StageError::NoSpace {
            needed: request.needed,
            free: request.free,
        });
    }
    Ok(ChangePlan {
        kind: PlanKind::Stage,
        steps: steps(&[
            ChangeStep::CopyToPartial,
            ChangeStep::VerifyPartial { uuid: request.uuid },
            ChangeStep::PublishPartial {
                to: ImageName::New,
                replace: request.replace,
            },
            ChangeStep::SyncDir,
            ChangeStep::Checkpoint,
        ]),
        notes: Default::default(),
    })
}

/// The plan of `hnroot install`'s copy of the first image: `hn-root.img` on an empty hostpart,
/// through the same copy, verification and publication as a stage (`replace` and `force` of
/// the request do not apply).
pub fn first_image(obs: &Observation, request: &StageRequest) -> Result<ChangePlan, StageError> {
    if let Some(existing) = ImageName::ALL
        .into_iter()
        .find(|&n| obs.image(n).is_present())
    {
        return Err(StageError::NotEmpty { existing });
    }
    if request.needed > request.free {
        return Err(StageError::NoSpace {
            needed: request.needed,
            free: request.free,
        });
    }
    Ok(ChangePlan {
        kind: PlanKind::Install,
        steps: steps(&[
            ChangeStep::CopyToPartial,
            ChangeStep::VerifyPartial { uuid: request.uuid },
            ChangeStep::PublishPartial {
                to: ImageName::Current,
                replace: false,
            },
            ChangeStep::SyncDir,
            ChangeStep::Checkpoint,
        ]),
        notes: Default::default(),
    })
}

/// What becomes of the stage's partial file when a step of the stage fails.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PartialFate {
    /// Keep it: the same stage resumes from it (the copy was interrupted, or the verified copy
    /// could not be renamed).
    Keep,
    /// Remove it: its bytes do not match the signature, or hostpart's storage failed under
    /// it, so nothing of it may be reused.
    Remove,
    /// There is none any more (it was published; only the sync or checkpoint failed).
    Published,
}

/// Where the error of a failed stage step came from, as the driver saw it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StageFault {
    /// Hostpart's storage failed a write, a read or a sync of the partial file (an I/O error
    /// from the disk, a filesystem gone read-only after one): which of the partial file's
    /// bytes are on the disk is unknown.
    PartialStorage,
    /// Anything else: the source stopped (a cut connection, a short read, a server error), the
    /// copy does not match, a rename or a sync of hostpart's directory failed.
    Elsewhere,
}

/// The step `failed` of a stage's plan failed with `fault`: what becomes of its partial file.
/// Whatever the answer, no `hn-root-new.img` comes of a failed stage before its publication
/// step. A copy that hostpart's storage failed under is not resumed: its bytes are unknown, and
/// resuming onto a failing disk would only fail again after the whole download.
pub fn after_stage_failure(failed: &ChangeStep, fault: StageFault) -> PartialFate {
    match (failed, fault) {
        (ChangeStep::VerifyPartial { .. }, _) => PartialFate::Remove,
        (ChangeStep::SyncDir | ChangeStep::Checkpoint, _) => PartialFate::Published,
        (ChangeStep::CopyToPartial, StageFault::PartialStorage) => PartialFate::Remove,
        _ => PartialFate::Keep,
    }
}

/// Why `hnroot revert` refuses.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RevertError {
    /// No readable `hn-root-old.img`: the next boot would refuse the revert.
    NoOldImage,
}

impl core::error::Error for RevertError {}

impl fmt::Display for RevertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RevertError::NoOldImage => f.write_str(
                "there is no bootable hn-root-old.img to revert to: system-revert not created \
                 (the next boot would only remove it)",
            ),
        }
    }
}

/// The plan of `hnroot revert`: create `system-revert` and make it visible to GRUB; nothing
/// when it is already there; refused when the next boot could not revert.
pub fn revert(obs: &Observation, config: &Config) -> Result<ChangePlan, RevertError> {
    let with_marker = Observation {
        revert_requested: true,
        ..*obs
    };
    match decide(&with_marker, config) {
        Decision::Boot(b) if b.reason == Reason::ManualRevert => {}
        _ => return Err(RevertError::NoOldImage),
    }
    let list: &[ChangeStep] = if obs.revert_requested {
        &[]
    } else {
        &[
            ChangeStep::CreateRevertMarker,
            ChangeStep::SyncDir,
            ChangeStep::Checkpoint,
        ]
    };
    Ok(ChangePlan {
        kind: PlanKind::RequestRevert,
        steps: steps(list),
        notes: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstate::{Trial, Tries};
    use crate::observe::ImageSeen;

    const A: FsUuid = FsUuid::Uuid([0xa; 16]);
    const B: FsUuid = FsUuid::Uuid([0xb; 16]);

    fn request(uuid: FsUuid) -> StageRequest {
        StageRequest {
            uuid,
            needed: 100,
            free: 1000,
            replace: false,
            force: false,
        }
    }

    #[test]
    fn a_partial_file_is_resumed_only_when_hostpart_did_not_fail_under_it() {
        let copy = ChangeStep::CopyToPartial;
        let verify = ChangeStep::VerifyPartial { uuid: B };
        let publish = ChangeStep::PublishPartial {
            to: ImageName::New,
            replace: false,
        };
        for (step, fault, fate) in [
            (copy, StageFault::Elsewhere, PartialFate::Keep),
            (copy, StageFault::PartialStorage, PartialFate::Remove),
            (verify, StageFault::Elsewhere, PartialFate::Remove),
            (verify, StageFault::PartialStorage, PartialFate::Remove),
            (publish, StageFault::Elsewhere, PartialFate::Keep),
            (
                ChangeStep::SyncDir,
                StageFault::Elsewhere,
                PartialFate::Published,
            ),
            (
                ChangeStep::Checkpoint,
                StageFault::PartialStorage,
                PartialFate::Published,
            ),
        ] {
            assert_eq!(
                after_stage_failure(&step, fault),
                fate,
                "{step:?} {fault:?}"
            );
        }
    }

    #[test]
    fn stage_checks_before_a_byte_is_written() {
        let obs = Observation::default().with(ImageName::Current, ImageSeen::Bootable(A));
        let p = stage(&obs, &request(B)).unwrap();
        assert_eq!(p.kind, PlanKind::Stage);
        // After the whole stage, the driver knows hn-root-new.img holds B without looking.
        assert_eq!(
            crate::plan::seen_after(&obs, &p.steps),
            obs.with(ImageName::New, ImageSeen::Bootable(B))
        );
        assert_eq!(p.steps.len(), 5);
        assert_eq!(
            stage(&obs, &request(A)).unwrap_err().code(),
            "duplicate-uuid"
        );
        let no_room = StageRequest {
            needed: 2000,
            ..request(B)
        };
        assert_eq!(stage(&obs, &no_room).unwrap_err().code(), "no-space");
        let staged = obs.with(ImageName::New, ImageSeen::NotBootable);
        assert_eq!(
            stage(&staged, &request(B)).unwrap_err().code(),
            "already-staged"
        );
        let replace = StageRequest {
            replace: true,
            ..request(B)
        };
        assert!(stage(&staged, &replace).is_ok());
        let broken = obs.with(ImageName::Broken, ImageSeen::Bootable(B));
        assert_eq!(
            stage(&broken, &request(B)).unwrap_err(),
            StageError::DuplicateUuid {
                existing: ImageName::Broken,
                uuid: B
            },
            "no other image on hostpart may have the UUID"
        );
    }

    #[test]
    fn the_first_image_goes_onto_an_empty_hostpart_as_current() {
        let empty = Observation::default();
        let p = first_image(&empty, &request(A)).unwrap();
        assert_eq!(p.kind, PlanKind::Install);
        assert!(p.steps.contains(&ChangeStep::PublishPartial {
            to: ImageName::Current,
            replace: false
        }));
        assert_eq!(p.steps.first(), Some(&ChangeStep::CopyToPartial));
        for name in ImageName::ALL {
            let taken = empty.with(name, ImageSeen::NotBootable);
            assert_eq!(
                first_image(&taken, &request(A)),
                Err(StageError::NotEmpty { existing: name }),
                "{name}"
            );
        }
        let no_room = StageRequest {
            needed: 2000,
            ..request(A)
        };
        assert_eq!(
            first_image(&empty, &no_room).unwrap_err().code(),
            "no-space"
        );
    }

    #[test]
    fn a_failed_health_check_reboots_a_trial_only() {
        let trial = Observation {
            state: StateSeen::Valid(BootState::Trial(Trial {
                image: A,
                tries: Tries::new(1, 3).unwrap(),
                good: Some(B),
            })),
            ..Observation::default()
        }
        .with(ImageName::Current, ImageSeen::Bootable(A))
        .with(ImageName::Old, ImageSeen::Bootable(B));
        let booted_a = Booted {
            name: ImageName::Current,
            uuid: A,
        };
        assert_eq!(
            health_failed(&trial, Some(booted_a)),
            HealthAction::Reboot {
                image: A,
                tries_left: 1
            }
        );
        assert_eq!(
            health_failed(&trial, None),
            HealthAction::Reboot {
                image: A,
                tries_left: 1
            }
        );
        let booted_old = Booted {
            name: ImageName::Old,
            uuid: B,
        };
        assert_eq!(
            health_failed(&trial, Some(booted_old)),
            HealthAction::Stay,
            "the running system is not the image on trial"
        );
        let committed = Observation {
            state: StateSeen::Valid(BootState::committed(A)),
            ..trial
        };
        assert_eq!(
            health_failed(&committed, Some(booted_a)),
            HealthAction::Stay
        );
        let corrupt = Observation {
            state: StateSeen::Corrupt,
            ..trial
        };
        assert_eq!(health_failed(&corrupt, Some(booted_a)), HealthAction::Stay);
    }

    #[test]
    fn stage_waits_for_a_running_trial_unless_forced() {
        let obs = Observation {
            state: StateSeen::Valid(BootState::Trial(Trial {
                image: A,
                tries: Tries::new(2, 3).unwrap(),
                good: None,
            })),
            ..Observation::default()
        }
        .with(ImageName::Current, ImageSeen::Bootable(A));
        assert_eq!(
            stage(&obs, &request(B)).unwrap_err().code(),
            "trial-running"
        );
        let forced = StageRequest {
            force: true,
            ..request(B)
        };
        assert!(stage(&obs, &forced).is_ok());
    }

    #[test]
    fn revert_only_when_the_next_boot_would_revert() {
        let cfg = Config::default();
        let without_old = Observation::default().with(ImageName::Current, ImageSeen::Bootable(A));
        assert_eq!(revert(&without_old, &cfg), Err(RevertError::NoOldImage));
        let with_old = without_old.with(ImageName::Old, ImageSeen::Bootable(B));
        let p = revert(&with_old, &cfg).unwrap();
        assert_eq!(p.steps.first(), Some(&ChangeStep::CreateRevertMarker));
        let requested = Observation {
            revert_requested: true,
            ..with_old
        };
        assert!(revert(&requested, &cfg).unwrap().steps.is_empty());
    }

    #[test]
    fn mark_good_plans_one_write_or_none() {
        let obs = Observation::default().with(ImageName::Current, ImageSeen::Bootable(A));
        let p = mark_good(&obs, None).unwrap();
        assert_eq!(
            p.steps.as_slice(),
            &[ChangeStep::WriteBootState(BootState::committed(A))]
        );
        let done = Observation {
            state: StateSeen::Valid(BootState::committed(A)),
            ..obs
        };
        assert!(mark_good(&done, None).unwrap().steps.is_empty());
        let other = Booted {
            name: ImageName::Old,
            uuid: B,
        };
        assert!(matches!(
            mark_good(&obs, Some(other)),
            Err(MarkGoodError::NotRunningCurrent { .. })
        ));
    }
}
