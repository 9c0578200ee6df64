//! The bootloader's decision: from what GRUB saw on hostpart and in the boot-state block, which
//! image to boot, why, what to fall back to, and which boot state to write before booting.
//!
//! The rules, in the order they are applied:
//!
//! 1. **Revert.** `system-revert` with a bootable `hn-root-old.img` boots the old image. A revert
//!    request also cancels a staged `hn-root-new.img`: it is not booted (the initramfs renames it
//!    `hn-root-cancelled.img`). Without a bootable old image the request is refused, loudly, and
//!    the rules below run with the staged image still cancelled.
//! 2. **Update.** A bootable `hn-root-new.img` boots directly, as the first try of a trial of
//!    [`Config::tries`] boots (or the next try, if the boot state already counts one for it).
//!    It is refused when its UUID equals that of `hn-root.img` or `hn-root-old.img` (identity
//!    would be ambiguous) or when it has used all its tries.
//! 3. **Trial.** While the boot state records `hn-root.img` (or a staged image) on trial, every
//!    boot of it consumes one try. When none is left, the next boot rolls back to the image that
//!    was good before the trial: the recorded good image if it is `hn-root.img` or
//!    `hn-root-old.img`, else `hn-root-old.img` for a failed `hn-root.img`, `hn-root.img` for a
//!    failed staged image. With nothing to roll back to, the trial image keeps booting.
//! 4. **Unvetted current.** When the boot state is corrupt, or records neither `hn-root.img` as
//!    good nor as the trial image (it was replaced by hand, or a rollback was interrupted),
//!    `hn-root.img` goes on trial until `hnroot mark-good`, keeping the recorded good image (if
//!    any) as the rollback target. With no boot state at all there is nothing to count with: it
//!    boots normally and the log says so.
//! 5. **Normal.** `hn-root.img` boots.
//! 6. **Recovery.** When `hn-root.img` is missing or not bootable: the first bootable of
//!    `hn-root-old.img`, `hn-root-cancelled.img`, a refused `hn-root-new.img`,
//!    `hn-root-broken.img` — the broken image only when nothing else can boot.
//!
//! GRUB writes the returned boot state before it loads the kernel; it writes nothing on a
//! normal boot.

use core::fmt;

use heapless::Vec;

use crate::bootstate::{BootState, StateSeen, Trial, Tries, DEFAULT_TRIES};
use crate::name::ImageName;
use crate::observe::Observation;
use crate::uuid::FsUuid;

/// Settings GRUB passes to the decision.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Config {
    /// Boots a new image gets before it is rolled back, unless marked good (clamped to
    /// `1..=MAX_TRIES`).
    pub tries: u8,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tries: DEFAULT_TRIES,
        }
    }
}

/// Why `hn-root.img` is not booted in a recovery.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum CurrentProblem {
    /// No `hn-root.img`.
    Missing,
    /// `hn-root.img` exists but is not bootable.
    NotBootable,
}

/// Why an image was chosen.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Reason {
    /// `hn-root.img`, committed.
    Normal,
    /// The staged `hn-root-new.img`: try `attempt` of `of`.
    Update {
        /// 1-based.
        attempt: u8,
        /// Tries in all.
        of: u8,
    },
    /// `hn-root.img` on trial: try `attempt` of `of`.
    Trial {
        /// 1-based.
        attempt: u8,
        /// Tries in all.
        of: u8,
    },
    /// `system-revert` asked for `hn-root-old.img`.
    ManualRevert,
    /// `system-revert` was present but there is no bootable `hn-root-old.img`.
    RevertRefused,
    /// The image on trial (`failed`) used all its tries.
    AutomaticRollback {
        /// Where the failed image lies: `hn-root.img` or `hn-root-new.img`.
        failed: ImageName,
    },
    /// `hn-root.img` used all its tries and there is nothing to roll back to.
    TrialExhausted,
    /// `hn-root.img` cannot be booted.
    Recovery {
        /// Why.
        current: CurrentProblem,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Normal => f.write_str("normal"),
            Reason::Update { attempt, of } => write!(f, "update, trial {attempt} of {of}"),
            Reason::Trial { attempt, of } => write!(f, "trial {attempt} of {of}"),
            Reason::ManualRevert => f.write_str("manual revert: system-revert present"),
            Reason::RevertRefused => f.write_str(
                "system-revert present but there is no bootable hn-root-old.img to revert to",
            ),
            Reason::AutomaticRollback { failed } => {
                write!(
                    f,
                    "automatic rollback: {failed} used all its tries without mark-good"
                )
            }
            Reason::TrialExhausted => f.write_str(
                "trial exhausted without mark-good, but there is no bootable image to roll back to",
            ),
            Reason::Recovery {
                current: CurrentProblem::Missing,
            } => f.write_str("recovery: hn-root.img is missing"),
            Reason::Recovery {
                current: CurrentProblem::NotBootable,
            } => f.write_str("recovery: hn-root.img is not bootable"),
        }
    }
}

impl Reason {
    /// Its stable code (JSON, GRUB variables, the kernel command line, the history).
    pub const fn code(&self) -> ReasonCode {
        match self {
            Reason::Normal => ReasonCode::Normal,
            Reason::Update { .. } => ReasonCode::Update,
            Reason::Trial { .. } => ReasonCode::Trial,
            Reason::ManualRevert => ReasonCode::ManualRevert,
            Reason::RevertRefused => ReasonCode::RevertRefused,
            Reason::AutomaticRollback { .. } => ReasonCode::AutomaticRollback,
            Reason::TrialExhausted => ReasonCode::TrialExhausted,
            Reason::Recovery { .. } => ReasonCode::Recovery,
        }
    }
}

crate::codes::stable_codes! {
    /// Why an image was booted, as one word: every [`Reason`]'s code, the decision that nothing
    /// is bootable, and GRUB's second menu entry (the next image after the chosen one's kernel
    /// could not be loaded). The number is the history file's and the FFI's; the word is on
    /// the kernel command line (`hnroot.reason=`), in GRUB's `hnroot_reason` and in JSON.
    pub enum ReasonCode {
        /// Not known (a boot without `hnroot.reason=`, an operator command).
        Unknown = 0 => "unknown",
        /// [`Reason::Normal`].
        Normal = 1 => "normal",
        /// [`Reason::Update`].
        Update = 2 => "update",
        /// [`Reason::Trial`].
        Trial = 3 => "trial",
        /// [`Reason::ManualRevert`].
        ManualRevert = 4 => "manual-revert",
        /// [`Reason::RevertRefused`].
        RevertRefused = 5 => "revert-refused",
        /// [`Reason::AutomaticRollback`].
        AutomaticRollback = 6 => "automatic-rollback",
        /// [`Reason::TrialExhausted`].
        TrialExhausted = 7 => "trial-exhausted",
        /// [`Reason::Recovery`].
        Recovery = 8 => "recovery",
        /// [`Decision::NothingBootable`].
        NothingBootable = 9 => "nothing-bootable",
        /// GRUB's next menu entry: the chosen image's kernel could not be loaded.
        NextImage = 10 => "next-image",
    }
}

crate::codes::notes! {
    /// Things the decision noticed and worked around; each is one sentence in the boot log.
    pub struct DecisionNotes: u32 {
        /// No boot-state block (no file, or never written): no trial counting until one exists.
        const STATE_ABSENT = 1 << 0 => ("state-absent", "no boot state recorded: trial counting is off until one is written");
        /// Both copies of the boot-state block are invalid.
        const STATE_CORRUPT = 1 << 1 => ("state-corrupt", "boot state corrupt (both copies invalid): hn-root.img is on trial until marked good");
        /// `system-revert` present, no bootable `hn-root-old.img`.
        const REVERT_REFUSED = 1 << 2 => ("revert-refused", "revert refused: no bootable hn-root-old.img");
        /// `hn-root-new.img` exists but is not bootable.
        const NEW_NOT_BOOTABLE = 1 << 3 => ("new-unreadable", "hn-root-new.img ignored: not bootable");
        /// `hn-root-new.img` has the UUID of `hn-root.img` or `hn-root-old.img`.
        const NEW_DUPLICATE_UUID = 1 << 4 => ("new-duplicate-uuid", "hn-root-new.img ignored: same filesystem UUID as hn-root.img or hn-root-old.img (give each image its own UUID)");
        /// `hn-root-new.img` used all its tries before it was ever applied.
        const NEW_FAILED_TRIAL = 1 << 5 => ("new-failed-trial", "hn-root-new.img ignored: it used all its tries");
        /// `hn-root-new.img` is cancelled by the revert request.
        const NEW_CANCELLED = 1 << 6 => ("new-cancelled", "hn-root-new.img cancelled by system-revert");
        /// The boot state names a trial image that is neither `hn-root.img` nor staged.
        const STALE_TRIAL = 1 << 7 => ("stale-trial", "boot state names a trial image that is no longer hn-root.img or hn-root-new.img; ignored");
        /// `hn-root.img` is neither the image recorded as good nor the one on trial (replaced
        /// by hand, or an interrupted rollback): it goes on trial.
        const UNVETTED_CURRENT = 1 << 8 => ("unvetted-current", "hn-root.img is not the image recorded as good: it is on trial until marked good");
    }
}

/// A decision as one line of `key=value` words with stable values, for logs and tests:
/// `reason=update image=hn-root-new.img uuid=... try=1/3 fallbacks=hn-root.img
/// notes=state-absent write=trial`. (The human line is [`Decision`]'s `Display`.)
#[derive(Clone, Copy, Debug)]
pub struct DecisionRecord<'a>(&'a Decision);

impl fmt::Display for DecisionRecord<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Decision::Boot(b) = self.0 else {
            write!(
                f,
                "reason={} image=- uuid=- try=- fallbacks=- notes=",
                ReasonCode::NothingBootable
            )?;
            crate::codes::write_codes(f, self.0.notes().codes())?;
            return f.write_str(" write=-");
        };
        write!(
            f,
            "reason={} image={} uuid={} try=",
            b.reason.code(),
            b.image,
            b.uuid
        )?;
        match b.reason {
            Reason::Update { attempt, of } | Reason::Trial { attempt, of } => {
                write!(f, "{attempt}/{of}")?
            }
            _ => f.write_str("-")?,
        }
        f.write_str(" fallbacks=")?;
        crate::codes::write_codes(f, b.fallbacks.iter().map(|(n, _)| n.file_name()))?;
        f.write_str(" notes=")?;
        crate::codes::write_codes(f, b.notes.codes())?;
        f.write_str(match b.write {
            None => " write=-",
            Some(BootState::Committed { .. }) => " write=committed",
            Some(BootState::Trial(_)) => " write=trial",
        })
    }
}

/// Images to try if the chosen one cannot be loaded, best first.
pub type Fallbacks = Vec<(ImageName, FsUuid), 4>;

/// A bootable choice.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Boot {
    /// The file GRUB loop-mounts.
    pub image: ImageName,
    /// Its filesystem UUID, passed to the initramfs so it mounts exactly this image.
    pub uuid: FsUuid,
    /// Why.
    pub reason: Reason,
    /// Other bootable images, best first; never a failed or cancelled image.
    pub fallbacks: Fallbacks,
    /// The boot state GRUB writes before loading the kernel.
    pub write: Option<BootState>,
    /// What the decision noticed.
    pub notes: DecisionNotes,
}

/// What the bootloader does when it cannot write the boot state a boot returns (a read-only or
/// damaged ESP, a file whose blocks it cannot follow).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Unwritten {
    /// Boot the chosen image all the same, this try not counted, and say so: stopping would
    /// strand a server over its boot-state file, while the image itself is fine; counting
    /// resumes once the file can be written.
    BootUncounted,
}

impl Boot {
    /// What to do when [`Boot::write`] cannot be written.
    pub const fn if_unwritten(&self) -> Unwritten {
        Unwritten::BootUncounted
    }
}

/// The decision.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Decision {
    /// Boot this.
    Boot(Boot),
    /// No image file is bootable: GRUB stops at its menu (rescue entry).
    NothingBootable {
        /// What the decision noticed.
        notes: DecisionNotes,
    },
}

impl Decision {
    /// The decision as one line of stable `key=value` words.
    pub fn record(&self) -> DecisionRecord<'_> {
        DecisionRecord(self)
    }

    /// The boot, if any.
    pub fn boot(&self) -> Option<&Boot> {
        match self {
            Decision::Boot(boot) => Some(boot),
            Decision::NothingBootable { .. } => None,
        }
    }

    /// Why, as one word ([`ReasonCode::NothingBootable`] when nothing boots).
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Decision::Boot(boot) => boot.reason.code(),
            Decision::NothingBootable { .. } => ReasonCode::NothingBootable,
        }
    }

    /// What the decision noticed.
    pub fn notes(&self) -> DecisionNotes {
        match self {
            Decision::Boot(boot) => boot.notes,
            Decision::NothingBootable { notes } => *notes,
        }
    }
}

impl fmt::Display for Decision {
    /// One line: `booting hn-root-new.img (update, trial 1 of 3); fallback hn-root.img`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Boot(boot) => {
                write!(f, "booting {} ({})", boot.image, boot.reason)?;
                let mut names = boot.fallbacks.iter().map(|(name, _)| name);
                if let Some(first) = names.next() {
                    let word = if boot.fallbacks.len() > 1 {
                        "fallbacks"
                    } else {
                        "fallback"
                    };
                    write!(f, "; {word} {first}")?;
                    for name in names {
                        write!(f, ", {name}")?;
                    }
                } else {
                    f.write_str("; no fallback")?;
                }
            }
            Decision::NothingBootable { .. } => f.write_str(
                "nothing bootable: none of hn-root.img, hn-root-old.img, hn-root-new.img, \
                 hn-root-cancelled.img, hn-root-broken.img is bootable",
            )?,
        }
        let notes = self.notes();
        if !notes.is_empty() {
            write!(f, "; {notes}")?;
        }
        Ok(())
    }
}

/// Decide what GRUB boots. Pure: the same observation always gives the same decision.
pub fn decide(obs: &Observation, config: &Config) -> Decision {
    let mut d = Decider {
        obs,
        notes: DecisionNotes::empty(),
        excluded: [false; 5],
    };
    d.decide(config)
}

struct Decider<'a> {
    obs: &'a Observation,
    notes: DecisionNotes,
    /// Images never offered as fallbacks: failed trial images and cancelled staged images.
    excluded: [bool; 5],
}

impl Decider<'_> {
    fn exclude(&mut self, name: ImageName) {
        if let Some(slot) = self.excluded.get_mut(name.index()) {
            *slot = true;
        }
    }

    fn is_excluded(&self, name: ImageName) -> bool {
        self.excluded.get(name.index()).copied().unwrap_or(true)
    }

    fn decide(&mut self, config: &Config) -> Decision {
        match self.obs.state {
            StateSeen::Absent => self.notes |= DecisionNotes::STATE_ABSENT,
            StateSeen::Corrupt => self.notes |= DecisionNotes::STATE_CORRUPT,
            StateSeen::Valid(_) => {}
        }
        if let Some(d) = self.revert() {
            return d;
        }
        let failed_new = match self.update(config) {
            Ok(d) => return d,
            Err(failed_new) => failed_new,
        };
        if let Some(d) = self.trial(failed_new) {
            return d;
        }
        match self.obs.bootable(ImageName::Current) {
            Some(current) => self.current(current, config),
            None => self.recovery(),
        }
    }

    /// Rule 1: `system-revert` boots a bootable old image; either way it cancels a staged
    /// image.
    fn revert(&mut self) -> Option<Decision> {
        let obs = self.obs;
        if !obs.revert_requested {
            return None;
        }
        if obs.image(ImageName::New).is_present() {
            self.notes |= DecisionNotes::NEW_CANCELLED;
            self.exclude(ImageName::New);
        }
        if let Some(old) = obs.bootable(ImageName::Old) {
            return Some(self.boot(ImageName::Old, old, Reason::ManualRevert, None));
        }
        self.notes |= DecisionNotes::REVERT_REFUSED;
        None
    }

    /// Rule 2: a readable staged image boots as a try of its trial. `Err` carries its UUID when
    /// it used all its tries (the trial rule rolls back from it), `None` when nothing is
    /// staged or it cannot be.
    fn update(&mut self, config: &Config) -> Result<Decision, Option<FsUuid>> {
        let obs = self.obs;
        if obs.revert_requested {
            return Err(None);
        }
        let new = match obs.image(ImageName::New) {
            crate::observe::ImageSeen::Bootable(new) => new,
            crate::observe::ImageSeen::NotBootable => {
                self.notes |= DecisionNotes::NEW_NOT_BOOTABLE;
                return Err(None);
            }
            crate::observe::ImageSeen::Absent => return Err(None),
        };
        if Some(new) == obs.bootable(ImageName::Current)
            || Some(new) == obs.bootable(ImageName::Old)
        {
            self.notes |= DecisionNotes::NEW_DUPLICATE_UUID;
            self.exclude(ImageName::New);
            return Err(None);
        }
        let continuing = obs.trial().copied().filter(|t| t.image == new);
        let tries = continuing.map_or(Tries::fresh(config.tries), |t| t.tries);
        let Some((attempt, rest)) = tries.consume() else {
            self.notes |= DecisionNotes::NEW_FAILED_TRIAL;
            self.exclude(ImageName::New);
            return Err(Some(new));
        };
        let good = continuing.map_or(obs.good(), |t| t.good);
        let write = BootState::Trial(Trial {
            image: new,
            tries: rest,
            good,
        });
        let reason = Reason::Update {
            attempt,
            of: rest.total(),
        };
        Ok(self.boot(ImageName::New, new, reason, Some(write)))
    }

    /// Rule 3: every boot of the image on trial consumes a try; a trial out of tries rolls
    /// back (from `hn-root.img`, or from the staged image `failed_new`).
    fn trial(&mut self, failed_new: Option<FsUuid>) -> Option<Decision> {
        let obs = self.obs;
        let trial = obs.trial().copied();
        if let (Some(t), Some(current)) = (trial, obs.bootable(ImageName::Current)) {
            if t.image == current {
                if let Some((attempt, rest)) = t.tries.consume() {
                    let write = BootState::Trial(Trial { tries: rest, ..t });
                    let reason = Reason::Trial {
                        attempt,
                        of: rest.total(),
                    };
                    return Some(self.boot(ImageName::Current, current, reason, Some(write)));
                }
                self.exclude(ImageName::Current);
                if let Some((name, uuid)) = self.rollback_target(ImageName::Current, current) {
                    let reason = Reason::AutomaticRollback {
                        failed: ImageName::Current,
                    };
                    return Some(self.boot(name, uuid, reason, None));
                }
                return Some(self.boot(ImageName::Current, current, Reason::TrialExhausted, None));
            }
        }
        if let Some(failed) = failed_new {
            if let Some((name, uuid)) = self.rollback_target(ImageName::New, failed) {
                let reason = Reason::AutomaticRollback {
                    failed: ImageName::New,
                };
                return Some(self.boot(name, uuid, reason, None));
            }
        }
        if let Some(t) = trial {
            if obs
                .find(t.image, &[ImageName::Current, ImageName::New])
                .is_none()
            {
                self.notes |= DecisionNotes::STALE_TRIAL;
            }
        }
        None
    }

    /// Rules 4 and 5: `hn-root.img` boots, on trial again when the boot state does not vouch
    /// for it.
    fn current(&mut self, current: FsUuid, config: &Config) -> Decision {
        let obs = self.obs;
        let vetted = match &obs.state {
            StateSeen::Absent => true,
            StateSeen::Corrupt => false,
            StateSeen::Valid(state) => state.good() == Some(current),
        };
        if !vetted {
            if obs.state != StateSeen::Corrupt {
                self.notes |= DecisionNotes::UNVETTED_CURRENT;
            }
            if let Some((attempt, rest)) = Tries::fresh(config.tries).consume() {
                let write = BootState::Trial(Trial {
                    image: current,
                    tries: rest,
                    good: obs.good(),
                });
                let reason = Reason::Trial {
                    attempt,
                    of: rest.total(),
                };
                return self.boot(ImageName::Current, current, reason, Some(write));
            }
        }
        let reason = if self.notes.contains(DecisionNotes::REVERT_REFUSED) {
            Reason::RevertRefused
        } else {
            Reason::Normal
        };
        self.boot(ImageName::Current, current, reason, None)
    }

    /// Rule 6: without a readable `hn-root.img`, the first bootable of the others.
    fn recovery(&mut self) -> Decision {
        let obs = self.obs;
        let problem = if obs.image(ImageName::Current).is_present() {
            CurrentProblem::NotBootable
        } else {
            CurrentProblem::Missing
        };
        for name in [
            ImageName::Old,
            ImageName::Cancelled,
            ImageName::New,
            ImageName::Broken,
        ] {
            if let Some(uuid) = obs.bootable(name) {
                return self.boot(name, uuid, Reason::Recovery { current: problem }, None);
            }
        }
        Decision::NothingBootable { notes: self.notes }
    }

    /// The image to roll back to when the trial image at `failed` (with UUID `failed_uuid`)
    /// has used all its tries.
    fn rollback_target(
        &self,
        failed: ImageName,
        failed_uuid: FsUuid,
    ) -> Option<(ImageName, FsUuid)> {
        let candidates = [ImageName::Current, ImageName::Old];
        let usable = |name: ImageName| {
            self.obs
                .bootable(name)
                .filter(|&uuid| name != failed && uuid != failed_uuid)
                .map(|uuid| (name, uuid))
        };
        if let Some(good) = self.obs.good() {
            if let Some(found) = candidates
                .into_iter()
                .filter_map(usable)
                .find(|(_, u)| *u == good)
            {
                return Some(found);
            }
        }
        [ImageName::Old, ImageName::Current]
            .into_iter()
            .find_map(usable)
    }

    fn boot(
        &self,
        image: ImageName,
        uuid: FsUuid,
        reason: Reason,
        write: Option<BootState>,
    ) -> Decision {
        let mut fallbacks = Fallbacks::new();
        for name in ImageName::FALLBACK_ORDER {
            if name == image || self.is_excluded(name) {
                continue;
            }
            if let Some(other) = self.obs.bootable(name) {
                if other != uuid && fallbacks.iter().all(|(_, u)| *u != other) {
                    // Capacity is 4 and at most 4 names differ from `image`: never full here.
                    let _ = fallbacks.push((name, other));
                }
            }
        }
        Decision::Boot(Boot {
            image,
            uuid,
            reason,
            fallbacks,
            write,
            notes: self.notes,
        })
    }
}
