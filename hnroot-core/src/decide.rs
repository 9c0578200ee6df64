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
//! 7. **Every boot counts until it is healthy.** While the boot state is committed, every boot
//!    GRUB makes adds one to its count of unhealthy boots ([`Unhealthy`]), written before the
//!    kernel loads; `hnroot mark-good` (once `boot-complete.target` is reached) sets it back to
//!    zero. After [`Config::boot_limit`] (K) counted boots of the committed `hn-root.img`, GRUB
//!    boots the other committed image, a bootable `hn-root-old.img`, where it lies
//!    ([`Reason::UnhealthyFallback`]; nothing is renamed by this alone); after K more, or at once
//!    when there is no old image, both have failed and every further boot waits first
//!    ([`Boot::wait`], [`Reason::Backoff`]): [`Config::wait_first`] seconds, doubled at each
//!    further boot up to [`Config::wait_max`], alternating between the two images, so a cause
//!    that goes away (a storage dependency down) heals by itself and one that does not costs a
//!    boot per wait instead of a boot loop. Any other boot of a recorded state (a recovery, a
//!    refused revert, a rollback or another boot while a trial is recorded: the trial keeps
//!    its own count of those, [`Tries::others`]) is counted the same way and waits once K are
//!    counted; a trial's tries are counted by its tries (rules 2 and 3).
//!
//! GRUB writes the returned boot state before it loads the kernel. With no boot state at all
//! (no file, or one never written) nothing is counted, and the log says so.

use core::fmt;

use heapless::Vec;

use crate::bootstate::{
    BootState, StateSeen, Trial, Tries, Unhealthy, DEFAULT_BOOT_LIMIT, DEFAULT_TRIES,
    MAX_BOOT_LIMIT,
};
use crate::name::ImageName;
use crate::observe::Observation;
use crate::uuid::FsUuid;

/// Settings GRUB passes to the decision.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Config {
    /// Boots a new image gets before it is rolled back, unless marked good (clamped to
    /// `1..=MAX_TRIES`).
    pub tries: u8,
    /// K: counted boots of the committed `hn-root.img` without reaching healthy before GRUB
    /// boots `hn-root-old.img` instead, and as many of that before every boot waits (clamped
    /// to `1..=MAX_BOOT_LIMIT`).
    pub boot_limit: u8,
    /// Seconds GRUB waits before the first boot once every committed image has failed K boots.
    pub wait_first: u32,
    /// The longest wait: each further boot waits twice as long as the one before, up to this.
    pub wait_max: u32,
}

/// The first wait when nothing else is configured: one minute.
pub const DEFAULT_WAIT_FIRST: u32 = 60;
/// The longest wait when nothing else is configured: half an hour.
pub const DEFAULT_WAIT_MAX: u32 = 1800;

impl Default for Config {
    fn default() -> Self {
        Config {
            tries: DEFAULT_TRIES,
            boot_limit: DEFAULT_BOOT_LIMIT,
            wait_first: DEFAULT_WAIT_FIRST,
            wait_max: DEFAULT_WAIT_MAX,
        }
    }
}

impl Config {
    /// K as used: clamped into `1..=MAX_BOOT_LIMIT`.
    pub const fn limit(&self) -> u8 {
        if self.boot_limit == 0 {
            1
        } else if self.boot_limit > MAX_BOOT_LIMIT {
            MAX_BOOT_LIMIT
        } else {
            self.boot_limit
        }
    }

    /// The wait before the `nth` boot (0-based) after every committed image failed:
    /// `wait_first` doubled `nth` times, at most `wait_max` (and never less than `wait_first`
    /// when that is larger).
    pub const fn wait(&self, nth: u8) -> u32 {
        let max = if self.wait_max < self.wait_first {
            self.wait_first
        } else {
            self.wait_max
        };
        let mut wait = self.wait_first;
        let mut i = 0;
        while i < nth && wait < max {
            wait = wait.saturating_mul(2);
            i = i.saturating_add(1);
        }
        if wait > max {
            max
        } else {
            wait
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
    /// The committed `hn-root.img` booted `boots` times without reaching healthy: the other
    /// committed image, `hn-root-old.img`, boots where it lies.
    UnhealthyFallback {
        /// Boots counted since the last healthy one.
        boots: u8,
    },
    /// Every committed image failed its boots: this attempt waits first ([`Boot::wait`]).
    Backoff {
        /// Boots counted since the last healthy one.
        boots: u8,
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
            Reason::UnhealthyFallback { boots } => write!(
                f,
                "hn-root.img booted {boots} times without reaching healthy (no mark-good): \
                 trying hn-root-old.img, nothing renamed"
            ),
            Reason::Backoff { boots } => write!(
                f,
                "{boots} boots without reaching healthy, every committed image tried: waiting \
                 before this attempt"
            ),
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
            Reason::UnhealthyFallback { .. } => ReasonCode::UnhealthyFallback,
            Reason::Backoff { .. } => ReasonCode::Backoff,
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
        /// [`Reason::UnhealthyFallback`].
        UnhealthyFallback = 11 => "unhealthy-fallback",
        /// [`Reason::Backoff`].
        Backoff = 12 => "backoff",
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
        /// `system-revert` present, but the boots since the last healthy one reached the limit
        /// (the old image does not come up, and the marker could not be removed): `hn-root.img`
        /// boots until one is healthy.
        const REVERT_UNHEALTHY = 1 << 9 => ("revert-unhealthy", "system-revert present but the last boots never reached healthy: booting hn-root.img until one does");
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
        })?;
        if let Some(BootState::Committed { unhealthy, .. }) = b.write {
            write!(f, " unhealthy={}", unhealthy.boots())?;
        }
        if b.wait > 0 {
            write!(f, " wait={}", b.wait)?;
        }
        Ok(())
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
    /// Seconds GRUB waits (showing what it saw) before it loads the kernel; 0: none.
    pub wait: u32,
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
                if boot.wait > 0 {
                    write!(f, "waiting {} s, then ", boot.wait)?;
                }
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
    let decision = d.decide(config);
    count(obs, config, decision)
}

/// Rule 7 for every other boot of a recorded state (a recovery, a refused revert, a rollback
/// or any boot while a trial is recorded that is not one of its tries): count it, and wait once
/// K are counted. (The normal boot of the committed `hn-root.img` has set its own count and
/// wait already; a trial's tries write their own state.)
fn count(obs: &Observation, config: &Config, decision: Decision) -> Decision {
    let Decision::Boot(mut boot) = decision else {
        return decision;
    };
    if boot.write.is_some() {
        return Decision::Boot(boot);
    }
    match obs.state {
        StateSeen::Valid(state) => {
            let counted = state.counted_boots().boots();
            if counted >= config.limit() && boot.wait == 0 {
                boot.wait = config.wait(counted.saturating_sub(config.limit()));
            }
            boot.write = Some(state.count_boot());
        }
        // Nothing to count on: the image booted instead goes on trial (as rule 4 puts
        // `hn-root.img` on trial), this boot counted, so a corrupt block is replaced at once.
        StateSeen::Corrupt => {
            let tries = Tries::fresh(config.tries).with_others(Unhealthy::THIS_BOOT);
            boot.write = Some(BootState::Trial(Trial {
                image: boot.uuid,
                tries,
                good: None,
            }));
        }
        StateSeen::Absent => {}
    }
    Decision::Boot(boot)
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
        if let Some(d) = self.revert(config) {
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
    /// image. Once K boots are counted without reaching healthy (the old image fails and the
    /// marker stays), `hn-root.img` boots instead until one is healthy (rule 7).
    fn revert(&mut self, config: &Config) -> Option<Decision> {
        let obs = self.obs;
        if !obs.revert_requested {
            return None;
        }
        if obs.image(ImageName::New).is_present() {
            self.notes |= DecisionNotes::NEW_CANCELLED;
            self.exclude(ImageName::New);
        }
        let counted = obs.boot_state().map_or(0, |s| s.counted_boots().boots());
        if counted >= config.limit() && obs.bootable(ImageName::Current).is_some() {
            self.notes |= DecisionNotes::REVERT_UNHEALTHY;
            return None;
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
        if self.notes.contains(DecisionNotes::REVERT_REFUSED) {
            return self.boot(ImageName::Current, current, Reason::RevertRefused, None);
        }
        match obs.boot_state() {
            Some(state) if state.good() == Some(current) => self.committed(current, state, config),
            _ => self.boot(ImageName::Current, current, Reason::Normal, None),
        }
    }

    /// Rule 7: `hn-root.img` (UUID `current`), the image `state` records as good, after the
    /// boots `state` counts that never reached healthy. The other committed image is a
    /// bootable `hn-root-old.img` that is not the image of a recorded trial.
    fn committed(&self, current: FsUuid, state: &BootState, config: &Config) -> Decision {
        let write = Some(state.count_boot());
        let boots = state.counted_boots().boots();
        let limit = config.limit();
        if boots < limit {
            return self.boot(ImageName::Current, current, Reason::Normal, write);
        }
        let on_trial = state.trial().map(|t| t.image);
        let old = self
            .obs
            .bootable(ImageName::Old)
            .filter(|&o| o != current && Some(o) != on_trial);
        let stall_from = match old {
            Some(_) => limit.saturating_mul(2),
            None => limit,
        };
        if let Some(old) = old.filter(|_| boots < stall_from) {
            let reason = Reason::UnhealthyFallback { boots };
            return self.boot(ImageName::Old, old, reason, write);
        }
        let nth = boots.saturating_sub(stall_from);
        let (name, uuid) = match old {
            Some(old) if nth % 2 == 1 => (ImageName::Old, old),
            _ => (ImageName::Current, current),
        };
        match self.boot(name, uuid, Reason::Backoff { boots }, write) {
            Decision::Boot(boot) => Decision::Boot(Boot {
                wait: config.wait(nth),
                ..boot
            }),
            nothing => nothing,
        }
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
            wait: 0,
            notes: self.notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_settings_are_clamped() {
        let c = Config::default();
        let waits: [u32; 8] = core::array::from_fn(|n| c.wait(n as u8));
        assert_eq!(waits, [60, 120, 240, 480, 960, 1800, 1800, 1800]);
        assert_eq!(c.wait(u8::MAX), 1800);
        // A cap below the first wait: the first wait, always.
        let odd = Config {
            wait_first: 100,
            wait_max: 10,
            ..c
        };
        assert_eq!((odd.wait(0), odd.wait(9)), (100, 100));
        // Doubling never overflows.
        let huge = Config {
            wait_first: u32::MAX - 1,
            wait_max: u32::MAX,
            ..c
        };
        assert_eq!(huge.wait(3), u32::MAX);
        let k = |boot_limit| Config { boot_limit, ..c }.limit();
        assert_eq!((k(0), k(3), k(200)), (1, 3, MAX_BOOT_LIMIT));
    }
}
