//! The initramfs's plan: from what it sees on hostpart (after the kernel replayed the journal)
//! and what GRUB says it booted, the ordered steps that commit the switch and mount the root.
//!
//! The plan is built so that executing any prefix of it, losing power, and deciding again (GRUB,
//! then this module) is always safe; the exhaustive model test checks exactly that. The rules:
//!
//! * The image GRUB booted is found by filesystem UUID, wherever it lies now, and only that
//!   image is mounted. GRUB does not replay journals, so its file names may be one switch behind.
//! * **Update** (the booted image is `hn-root-new.img`): `hn-root.img` becomes `hn-root-old.img`
//!   when it is the image last marked good (or when there is no bootable old image); otherwise
//!   the old image is the only known-good image and must stay, and `hn-root.img` is set aside as
//!   `hn-root-cancelled.img`. Then `hn-root-new.img` becomes `hn-root.img`.
//! * **Revert** (booted `hn-root-old.img`, `system-revert` present): the boot state first records
//!   the old image as good; then a staged `hn-root-new.img` becomes `hn-root-cancelled.img`,
//!   `hn-root.img` becomes `hn-root-broken.img`, the old image becomes `hn-root.img`, and the
//!   marker is removed (last, so a crash repeats the revert).
//! * **Rollback** (booted the rollback target of an exhausted trial): the failed image becomes
//!   `hn-root-broken.img`, an uncommitted `hn-root.img` is set aside as `hn-root-cancelled.img`,
//!   the booted image becomes `hn-root.img`, and only then is it recorded as good (a crash before
//!   that leaves the exhausted trial in force).
//! * **Revert refused** (booted `hn-root.img`, marker present, no bootable old image): the marker
//!   is removed (so it cannot revert a later update by surprise) and a staged image is cancelled.
//!   When an old image *is* readable here but GRUB did not see it, the marker is left for the
//!   next boot.
//! * **Recovery** (booted `hn-root-old.img` because `hn-root.img` is missing): the old image
//!   becomes `hn-root.img`. When `hn-root.img` exists but GRUB could not use it, nothing is
//!   renamed: a file we cannot read is never moved or replaced.
//!
//! Renames into `hn-root.img` never replace (`RENAME_NOREPLACE`); renames into the holding names
//! (`-old`, `-broken`, `-cancelled`) replace what was there, which by construction is never the
//! only image known good. Every plan that changes hostpart syncs the directory and checkpoints the
//! filesystem before it writes the boot state and mounts.

use core::fmt;

use heapless::Vec;

use crate::bootstate::{BootState, StateSeen, Trial, Tries, Unhealthy};
use crate::decide::{decide, Config, Decision};
use crate::name::ImageName;
use crate::observe::{ImageSeen, Observation};
use crate::uuid::FsUuid;

/// What GRUB says it booted (from the kernel command line).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Booted {
    /// The file name GRUB loop-mounted.
    pub name: ImageName,
    /// The filesystem UUID GRUB read from it.
    pub uuid: FsUuid,
}

/// One step of a plan.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ChangeStep {
    /// Rename `from` to `to` in hostpart's top directory. `replace: false` must fail if `to`
    /// exists (`RENAME_NOREPLACE`).
    Rename {
        /// Source.
        from: ImageName,
        /// Destination.
        to: ImageName,
        /// Whether an existing destination is replaced.
        replace: bool,
    },
    /// Remove `system-revert`.
    RemoveRevertMarker,
    /// Create `system-revert` (an empty file), unless it exists.
    CreateRevertMarker,
    /// Create (exclusively, never through a link) or resume the stage's partial file on
    /// hostpart and fill it from the source, verifying the source's signature in the same
    /// pass; then `fsync` it. The source is the executor's.
    CopyToPartial,
    /// Check the complete partial file: its signature verified, and the image verdict
    /// bootable with this UUID.
    VerifyPartial {
        /// The UUID the source had when it was checked.
        uuid: FsUuid,
    },
    /// Rename the partial file to `to` (`hn-root-new.img` for a stage, `hn-root.img` for the
    /// first image of an install); `replace: false` fails if one exists.
    PublishPartial {
        /// The name it gets.
        to: ImageName,
        /// Whether an existing file of that name is replaced.
        replace: bool,
    },
    /// `fsync` hostpart's top directory.
    SyncDir,
    /// Make the changes visible to GRUB, which does not replay journals: `syncfs` plus
    /// `FIFREEZE`/`FITHAW` on ext4 and XFS, a committed transaction on btrfs.
    Checkpoint,
    /// Write this boot state to the boot-state block on the ESP (and sync it).
    WriteBootState(BootState),
    /// Loop-mount `image` read-only as the new root after checking its filesystem UUID is `uuid`.
    Mount {
        /// File to mount.
        image: ImageName,
        /// UUID it must have.
        uuid: FsUuid,
    },
}

impl fmt::Display for ChangeStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeStep::Rename {
                from,
                to,
                replace: true,
            } => write!(f, "rename {from} -> {to}"),
            ChangeStep::Rename {
                from,
                to,
                replace: false,
            } => {
                write!(f, "rename {from} -> {to} (no replace)")
            }
            ChangeStep::RemoveRevertMarker => f.write_str("remove system-revert"),
            ChangeStep::CreateRevertMarker => f.write_str("create system-revert"),
            ChangeStep::CopyToPartial => {
                f.write_str("copy the image to a partial file on hostpart")
            }
            ChangeStep::VerifyPartial { uuid } => {
                write!(
                    f,
                    "verify the partial file (signature, UUID {uuid}, bootable)"
                )
            }
            ChangeStep::PublishPartial { to, replace: false } => {
                write!(f, "rename the partial file -> {to} (no replace)")
            }
            ChangeStep::PublishPartial { to, replace: true } => {
                write!(f, "rename the partial file -> {to}")
            }
            ChangeStep::SyncDir => f.write_str("sync hostpart directory"),
            ChangeStep::Checkpoint => f.write_str("checkpoint hostpart"),
            ChangeStep::WriteBootState(state) => write!(f, "write boot state: {state}"),
            ChangeStep::Mount { image, uuid } => write!(f, "mount {image} (UUID {uuid}) as root"),
        }
    }
}

impl ChangeStep {
    /// Whether the step changes hostpart's top directory (and so needs a directory sync and a
    /// checkpoint before GRUB can rely on it).
    pub const fn changes_hostpart(&self) -> bool {
        matches!(
            self,
            ChangeStep::Rename { .. }
                | ChangeStep::RemoveRevertMarker
                | ChangeStep::CreateRevertMarker
                | ChangeStep::PublishPartial { .. }
        )
    }

    /// A stable one-word name for JSON.
    pub const fn code(&self) -> &'static str {
        match self {
            ChangeStep::Rename { replace: true, .. } => "rename",
            ChangeStep::Rename { replace: false, .. } => "rename-noreplace",
            ChangeStep::RemoveRevertMarker => "remove-revert-marker",
            ChangeStep::CreateRevertMarker => "create-revert-marker",
            ChangeStep::CopyToPartial => "copy-to-partial",
            ChangeStep::VerifyPartial { .. } => "verify-partial",
            ChangeStep::PublishPartial { .. } => "publish-partial",
            ChangeStep::SyncDir => "sync-dir",
            ChangeStep::Checkpoint => "checkpoint",
            ChangeStep::WriteBootState(_) => "write-boot-state",
            ChangeStep::Mount { .. } => "mount",
        }
    }
}

crate::codes::stable_codes! {
    /// What kind of change the plan carries out: a boot's (normal to as-is) or an operator
    /// command's. The number is the history file's (0 there means no plan).
    pub enum PlanKind {
        /// Mount `hn-root.img`; at most marker housekeeping.
        Normal = 1 => "normal",
        /// Make the staged image current.
        Update = 2 => "update",
        /// Make the old image current after `system-revert`.
        Revert = 3 => "revert",
        /// Make the rollback target current after an exhausted trial.
        Rollback = 4 => "rollback",
        /// Promote `hn-root-old.img` because `hn-root.img` is missing.
        Promote = 5 => "promote",
        /// Mount what GRUB booted where it lies; rename nothing.
        AsIs = 6 => "as-is",
        /// `hnroot stage`: copy an image to `hn-root-new.img`.
        Stage = 7 => "stage",
        /// `hnroot revert`: ask for a revert on the next boot.
        RequestRevert = 8 => "request-revert",
        /// `hnroot mark-good`: record the running image as good.
        MarkGood = 9 => "mark-good",
        /// `hnroot install`: copy the first image to an empty hostpart as `hn-root.img`.
        Install = 10 => "install",
    }
}

impl PlanKind {
    /// Whether carrying it out makes another image `hn-root.img` (a switch of the root image).
    pub const fn switches_image(self) -> bool {
        matches!(
            self,
            PlanKind::Update | PlanKind::Revert | PlanKind::Rollback | PlanKind::Promote
        )
    }
}

crate::codes::notes! {
    /// What the plan noticed; each is one sentence in the boot log.
    pub struct PlanNotes: u32 {
        /// GRUB booted the image under an older name: it saw hostpart before the last switch
        /// reached the disk.
        const GRUB_VIEW_STALE = 1 << 0 => ("grub-view-stale", "GRUB saw hostpart before the last switch was checkpointed; mounting the booted image by UUID");
        /// `system-revert` present and an old image is readable, but GRUB booted hn-root.img:
        /// the revert happens on the next boot.
        const REVERT_DEFERRED = 1 << 1 => ("revert-deferred", "system-revert present but GRUB did not see hn-root-old.img: the revert happens on the next boot");
        /// `system-revert` present without a bootable old image: marker removed.
        const REVERT_REFUSED = 1 << 2 => ("revert-refused", "system-revert removed: there is no bootable hn-root-old.img to revert to");
        /// `hn-root.img` exists but GRUB could not boot it; left untouched.
        const CURRENT_KEPT = 1 << 3 => ("current-kept", "hn-root.img exists but GRUB could not boot it: left untouched, fix or remove it");
        /// Booted `hn-root-cancelled.img` or `hn-root-broken.img`: nothing else could boot.
        const LAST_RESORT = 1 << 4 => ("last-resort", "booted a cancelled or broken image because nothing else could boot");
        /// No `hnroot.image=`/`hnroot.uuid=` on the command line: `hn-root.img` is mounted
        /// without an identity check and nothing is renamed.
        const UNPINNED = 1 << 5 => ("unpinned", "no hnroot.image=/hnroot.uuid= on the kernel command line: mounting hn-root.img without an identity check, renaming nothing");
    }
}

/// A plan as one line of stable `key=value` words for logs and tests:
/// `plan=update steps=5 mount=hn-root.img uuid=... notes=-`.
#[derive(Clone, Copy, Debug)]
pub struct PlanRecord<'a>(&'a ChangePlan);

impl fmt::Display for PlanRecord<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.0;
        write!(f, "plan={} steps={}", p.kind.code(), p.steps.len())?;
        match p.mount() {
            Some((image, uuid)) => write!(f, " mount={image} uuid={uuid}")?,
            None => f.write_str(" mount=- uuid=-")?,
        }
        f.write_str(" notes=")?;
        crate::codes::write_codes(f, p.notes.codes())
    }
}

/// Most steps any plan has (revert: 3 renames, remove, sync, checkpoint, write, mount).
pub const MAX_STEPS: usize = 10;

/// Ordered steps.
pub type Steps = Vec<ChangeStep, MAX_STEPS>;

/// A plan: the initramfs's for a boot, or an operator command's.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ChangePlan {
    /// What kind of boot (or command) this is.
    pub kind: PlanKind,
    /// In order; for a boot the last one is always [`ChangeStep::Mount`].
    pub steps: Steps,
    /// What the plan noticed.
    pub notes: PlanNotes,
}

impl ChangePlan {
    /// The same plan from step `index` on (what is left after a step before it).
    pub fn from_step(&self, index: usize) -> ChangePlan {
        let mut steps = Steps::new();
        for step in self.steps.iter().skip(index) {
            // No more steps than the plan had.
            let _ = steps.push(*step);
        }
        ChangePlan { steps, ..*self }
    }

    /// A plan that only mounts `image` (its UUID `uuid`) where it lies.
    pub fn mount_only(&self, image: ImageName, uuid: FsUuid) -> ChangePlan {
        let mut steps = Steps::new();
        // One step always fits.
        let _ = steps.push(ChangeStep::Mount { image, uuid });
        ChangePlan { steps, ..*self }
    }

    /// The plan as one line of stable `key=value` words.
    pub fn record(&self) -> PlanRecord<'_> {
        PlanRecord(self)
    }

    /// The image and UUID the plan mounts.
    pub fn mount(&self) -> Option<(ImageName, FsUuid)> {
        self.steps.iter().find_map(|s| match s {
            ChangeStep::Mount { image, uuid } => Some((*image, *uuid)),
            _ => None,
        })
    }
}

/// What a driver would see on hostpart and in the boot state after `done` steps (a prefix of a
/// plan) succeeded, when it saw `obs` before them: how the executor's caller knows what it
/// wrote without looking again. A rename moves what was seen under one name to the other
/// (replacing what was there), the marker steps set or clear the marker, a boot-state write
/// is seen as written, a published partial file is seen with the UUID its verification step
/// checked. Copies, syncs, checkpoints and mounts change nothing a decision looks at.
pub fn seen_after(obs: &Observation, done: &[ChangeStep]) -> Observation {
    let mut seen = *obs;
    let mut verified = None;
    for step in done {
        match *step {
            ChangeStep::Rename { from, to, .. } => {
                let moved = seen.image(from);
                seen.set(to, moved);
                seen.set(from, ImageSeen::Absent);
            }
            ChangeStep::RemoveRevertMarker => seen.revert_requested = false,
            ChangeStep::CreateRevertMarker => seen.revert_requested = true,
            ChangeStep::WriteBootState(state) => seen.state = StateSeen::Valid(state),
            ChangeStep::VerifyPartial { uuid } => verified = Some(uuid),
            ChangeStep::PublishPartial { to, .. } => seen.set(
                to,
                verified.map_or(ImageSeen::NotBootable, ImageSeen::Bootable),
            ),
            ChangeStep::CopyToPartial
            | ChangeStep::SyncDir
            | ChangeStep::Checkpoint
            | ChangeStep::Mount { .. } => {}
        }
    }
    seen
}

/// Why there is no plan: the initramfs cannot mount what GRUB booted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PlanError {
    /// No readable image on hostpart has the UUID GRUB booted.
    BootedImageMissing {
        /// What GRUB said it booted.
        booted: Booted,
    },
    /// Unpinned boot and `hn-root.img` is not readable.
    NoCurrentImage,
}

impl core::error::Error for PlanError {}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::BootedImageMissing { booted } => write!(
                f,
                "GRUB booted {} with filesystem UUID {}, but no bootable image on hostpart has that UUID",
                booted.name, booted.uuid
            ),
            PlanError::NoCurrentImage => f.write_str(
                "no hnroot.image= on the kernel command line and hn-root.img is not bootable",
            ),
        }
    }
}

/// Where to look for the booted image, after the name GRUB used.
const SEARCH_ORDER: [ImageName; 5] = [
    ImageName::Current,
    ImageName::New,
    ImageName::Old,
    ImageName::Cancelled,
    ImageName::Broken,
];

/// Plan the initramfs's work. `booted` is `None` when the command line does not say.
pub fn plan(obs: &Observation, booted: Option<Booted>) -> Result<ChangePlan, PlanError> {
    let Some(booted) = booted else {
        let uuid = obs
            .bootable(ImageName::Current)
            .ok_or(PlanError::NoCurrentImage)?;
        let mut b = Builder::new(PlanKind::AsIs);
        b.notes |= PlanNotes::UNPINNED;
        return Ok(b.finish(ImageName::Current, uuid));
    };
    let at = locate(obs, booted).ok_or(PlanError::BootedImageMissing { booted })?;
    let uuid = booted.uuid;
    let mut b = Builder::new(PlanKind::AsIs);
    if at != booted.name {
        b.notes |= PlanNotes::GRUB_VIEW_STALE;
    }
    let at = match (at, booted.name) {
        (ImageName::New, _) => update(&mut b, obs),
        (ImageName::Current, ImageName::Current) => current(&mut b, obs, uuid),
        (ImageName::Current, ImageName::Old) => finish_switch(&mut b, obs, uuid),
        (ImageName::Old, ImageName::Old) => old(&mut b, obs, uuid),
        (ImageName::Cancelled | ImageName::Broken, _) => {
            b.notes |= PlanNotes::LAST_RESORT;
            at
        }
        (at, _) => at,
    };
    Ok(b.finish(at, uuid))
}

/// Booted the staged image: it becomes `hn-root.img`; `hn-root.img` becomes
/// `hn-root-old.img`, or `hn-root-cancelled.img` when the old image is the only one known good.
/// Returns where the booted image lies afterwards.
fn update(b: &mut Builder, obs: &Observation) -> ImageName {
    b.kind = PlanKind::Update;
    let good = obs.good();
    if let Some(current) = Some(obs.image(ImageName::Current)).filter(|c| c.is_present()) {
        let may_replace_old = match obs.image(ImageName::Old) {
            ImageSeen::Absent | ImageSeen::NotBootable => true,
            ImageSeen::Bootable(old) => {
                good.is_some() && current.uuid() == good && Some(old) != good
            }
        };
        let to = if may_replace_old {
            ImageName::Old
        } else {
            ImageName::Cancelled
        };
        b.rename(ImageName::Current, to, true);
    }
    b.rename(ImageName::New, ImageName::Current, false);
    ImageName::Current
}

/// Booted `hn-root.img` under its name: marker housekeeping, or a staged image that failed
/// every try set aside.
fn current(b: &mut Builder, obs: &Observation, uuid: FsUuid) -> ImageName {
    b.kind = PlanKind::Normal;
    if obs.revert_requested {
        if obs.bootable(ImageName::Old).is_some() {
            b.notes |= PlanNotes::REVERT_DEFERRED;
        } else {
            b.notes |= PlanNotes::REVERT_REFUSED;
            if obs.image(ImageName::New).is_present() {
                b.rename(ImageName::New, ImageName::Cancelled, true);
            }
            b.push(ChangeStep::RemoveRevertMarker);
        }
    } else if let Some(t) = exhausted_trial(obs).filter(|t| t.image != uuid) {
        // GRUB rolled back from a staged image that failed every try.
        if obs.bootable(ImageName::New) == Some(t.image) {
            b.kind = PlanKind::Rollback;
            b.rename(ImageName::New, ImageName::Broken, true);
            if obs.good() == Some(uuid) {
                b.record_good_after_checkpoint(obs, uuid);
            }
        }
    }
    ImageName::Current
}

/// Booted `hn-root-old.img`, which is `hn-root.img` by now: a revert, rollback or promotion
/// whose renames already happened; finish it.
fn finish_switch(b: &mut Builder, obs: &Observation, uuid: FsUuid) -> ImageName {
    if obs.revert_requested {
        b.kind = PlanKind::Revert;
        b.record_good_now(obs, uuid);
        if obs.image(ImageName::New).is_present() {
            b.rename(ImageName::New, ImageName::Cancelled, true);
        }
        b.push(ChangeStep::RemoveRevertMarker);
    } else {
        b.kind = PlanKind::Rollback;
        b.record_good_after_checkpoint(obs, uuid);
    }
    ImageName::Current
}

/// Booted `hn-root-old.img` where it lies: a revert, a rollback from a failed trial, the
/// promotion of the old image when `hn-root.img` is missing, or nothing (`hn-root.img` is
/// there but GRUB could not use it: never moved; or it is bootable and GRUB fell back from it
/// after its unhealthy boots).
fn old(b: &mut Builder, obs: &Observation, uuid: FsUuid) -> ImageName {
    let present = |name: ImageName| obs.image(name).is_present();
    let failed = exhausted_trial(obs)
        .filter(|t| t.image != uuid)
        .and_then(|t| obs.find(t.image, &[ImageName::Current, ImageName::New]));
    if obs.revert_requested {
        b.kind = PlanKind::Revert;
        // Recorded first: until the marker is gone a crash repeats the revert, and the
        // image about to become hn-root-broken.img must not stay recorded as good.
        b.record_good_now(obs, uuid);
        if present(ImageName::New) {
            b.rename(ImageName::New, ImageName::Cancelled, true);
        }
        if present(ImageName::Current) {
            b.rename(ImageName::Current, ImageName::Broken, true);
        }
        b.rename(ImageName::Old, ImageName::Current, false);
        b.push(ChangeStep::RemoveRevertMarker);
    } else if let Some(failed) = failed {
        b.kind = PlanKind::Rollback;
        // An uncommitted hn-root.img is set aside first: after any prefix, GRUB still
        // sees either the exhausted trial or no hn-root.img, and boots the old image.
        if failed != ImageName::Current && present(ImageName::Current) {
            b.rename(ImageName::Current, ImageName::Cancelled, true);
        }
        b.rename(failed, ImageName::Broken, true);
        b.rename(ImageName::Old, ImageName::Current, false);
        // Recorded last: until the failed image is moved away, the exhausted trial must
        // stay recorded or a crash would let it boot as committed.
        b.record_good_after_checkpoint(obs, uuid);
    } else if !present(ImageName::Current) {
        b.kind = PlanKind::Promote;
        b.rename(ImageName::Old, ImageName::Current, false);
        b.record_good_after_checkpoint(obs, uuid);
    } else if obs.bootable(ImageName::Current).is_none() {
        b.notes |= PlanNotes::CURRENT_KEPT;
    }
    // Otherwise GRUB booted the old image because the committed hn-root.img never became
    // healthy (rule 7 of the decision): it is mounted where it lies, nothing renamed.
    if b.changes_hostpart {
        ImageName::Current
    } else {
        ImageName::Old
    }
}

/// The file that holds the booted UUID: the name GRUB used if it still does, else the first in
/// [`SEARCH_ORDER`].
fn locate(obs: &Observation, booted: Booted) -> Option<ImageName> {
    if obs.bootable(booted.name) == Some(booted.uuid) {
        return Some(booted.name);
    }
    obs.find(booted.uuid, &SEARCH_ORDER)
}

/// The recorded trial when it has no tries left.
fn exhausted_trial(obs: &Observation) -> Option<Trial> {
    obs.trial().copied().filter(|t| t.tries.left() == 0)
}

/// The state that commits `uuid` during its own boot (this boot counted as not yet healthy),
/// `None` when the boot state is committed to it already (its count kept).
fn committing(obs: &Observation, uuid: FsUuid) -> Option<BootState> {
    match obs.boot_state() {
        Some(state) if state.is_committed_to(uuid) => None,
        _ => Some(BootState::Committed {
            good: uuid,
            unhealthy: Unhealthy::THIS_BOOT,
        }),
    }
}

struct Builder {
    kind: PlanKind,
    steps: Steps,
    notes: PlanNotes,
    /// Boot state to write after the checkpoint.
    write_state: Option<BootState>,
    changes_hostpart: bool,
}

impl Builder {
    fn new(kind: PlanKind) -> Builder {
        Builder {
            kind,
            steps: Steps::new(),
            notes: PlanNotes::empty(),
            write_state: None,
            changes_hostpart: false,
        }
    }

    fn push(&mut self, step: ChangeStep) {
        self.changes_hostpart |= step.changes_hostpart();
        // MAX_STEPS is the longest plan `plan` builds (a revert); the model test checks every
        // plan fits, so this push cannot fail.
        let _ = self.steps.push(step);
    }

    fn rename(&mut self, from: ImageName, to: ImageName, replace: bool) {
        self.push(ChangeStep::Rename { from, to, replace });
    }

    /// Record the booted image as good as the next step, unless the boot state already says so.
    /// This boot is counted as not yet healthy (rule 7 of [`crate::decide`]).
    fn record_good_now(&mut self, obs: &Observation, uuid: FsUuid) {
        if let Some(committed) = committing(obs, uuid) {
            self.push(ChangeStep::WriteBootState(committed));
        }
    }

    /// Record the booted image as good after hostpart is checkpointed, unless the boot state
    /// already says so.
    fn record_good_after_checkpoint(&mut self, obs: &Observation, uuid: FsUuid) {
        if let Some(committed) = committing(obs, uuid) {
            self.write_state = Some(committed);
        }
    }

    fn finish(mut self, image: ImageName, uuid: FsUuid) -> ChangePlan {
        if self.changes_hostpart {
            self.push(ChangeStep::SyncDir);
            self.push(ChangeStep::Checkpoint);
        }
        if let Some(state) = self.write_state {
            self.push(ChangeStep::WriteBootState(state));
        }
        self.push(ChangeStep::Mount { image, uuid });
        ChangePlan {
            kind: self.kind,
            steps: self.steps,
            notes: self.notes,
        }
    }
}

/// What the initramfs does when a step of its plan fails.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AfterStepFailure {
    /// The step only wrote the boot state, which every state of the plan is valid without:
    /// go on with the next step.
    Continue,
    /// The step changed hostpart, and what the plan did before it is a valid state (every
    /// prefix of a plan is): stop the plan and boot the image GRUB booted from where it lies
    /// now. Nothing is wrong with the image, so it is not counted as failed
    /// (which could roll back to an image that fails on the same step, and again); the trial,
    /// if any, goes on, and the next boot decides again.
    MountAsIs {
        /// Where the booted image lies now.
        image: ImageName,
        /// Its UUID.
        uuid: FsUuid,
    },
    /// The booted image itself failed (it was not found, or could not be mounted): see
    /// [`after_failure`].
    ImageFailed(AfterFailure),
}

/// The step `failed` of a plan for the booted image `booted` failed; `obs` is hostpart as seen
/// again after the failure (with the boot state as it now is).
pub fn after_step_failure(
    obs: &Observation,
    booted: FsUuid,
    failed: &ChangeStep,
    config: &Config,
) -> AfterStepFailure {
    if matches!(failed, ChangeStep::WriteBootState(_)) {
        return AfterStepFailure::Continue;
    }
    if !matches!(failed, ChangeStep::Mount { .. }) {
        if let Some(image) = obs.find(booted, &SEARCH_ORDER) {
            return AfterStepFailure::MountAsIs {
                image,
                uuid: booted,
            };
        }
    }
    AfterStepFailure::ImageFailed(after_failure(obs, booted, config))
}

/// What the initramfs does when it cannot mount what GRUB booted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AfterFailure {
    /// Write `write` (marking the booted image as failed), sync, and reboot: GRUB will then boot
    /// `next`, a different image.
    Reboot {
        /// Boot state to write before rebooting.
        write: BootState,
        /// What GRUB will boot next, as predicted by [`decide`] on this side's view.
        next: ImageName,
        /// Its UUID.
        next_uuid: FsUuid,
    },
    /// Nothing hnroot can do automatically would boot a different image: stop (emergency shell
    /// or an intentional freeze) and say why; never loop.
    Stop,
}

/// The booted image (UUID `failed`) could not be found or mounted. Mark it failed in the boot
/// state and predict what GRUB would boot next; reboot only if that is a different image, and
/// only if the record of the failure does not erase another image's failed trial: the boot
/// state holds one trial, and forgetting that an image at `hn-root.img` or `hn-root-new.img`
/// already used all its tries would give it fresh ones, and the boots would cycle between two
/// failing images for ever. Then, and when nothing else would boot, stop.
pub fn after_failure(obs: &Observation, failed: FsUuid, config: &Config) -> AfterFailure {
    let erases_failed_trial = obs.trial().is_some_and(|t| {
        t.tries.left() == 0
            && t.image != failed
            && obs
                .find(t.image, &[ImageName::Current, ImageName::New])
                .is_some()
    });
    if erases_failed_trial {
        return AfterFailure::Stop;
    }
    let good = obs.good().filter(|&g| g != failed);
    let write = BootState::Trial(Trial {
        image: failed,
        tries: Tries::fresh(config.tries).exhausted(),
        good,
    });
    let next_view = Observation {
        state: StateSeen::Valid(write),
        ..*obs
    };
    match decide(&next_view, config) {
        Decision::Boot(next) if next.uuid != failed => AfterFailure::Reboot {
            write,
            next: next.image,
            next_uuid: next.uuid,
        },
        _ => AfterFailure::Stop,
    }
}
