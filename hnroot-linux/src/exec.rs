//! The one executor: it carries out the steps of a plan `hnroot-core` made — for a boot in the
//! initramfs, for `hnroot stage`, `revert` and `mark-good` in the CLI — on hostpart (through
//! [`Hostpart`], relative to its directory descriptor), on the boot-state file, and through the
//! driver's own hands for what only it can do (mount the new root, read a stage's source). It
//! decides nothing: a step either succeeds, saying how, or fails, saying why, and the caller
//! asks the core what a failure means (`plan::after_step_failure`,
//! `commands::after_stage_failure`).
//!
//! The calling order, for every driver:
//!
//! ```text
//! observe (Hostpart::observe, boot state) -> plan (hnroot-core) -> Executor::run -> on a failed
//! step, ask the core what next -> carry that out
//! ```
//!
//! The identity plan of a boot (`hnroot_core::identity`, after the root is mounted) goes
//! through [`Executor::project`]: every step runs, a failed one is reported and the next runs,
//! because a projection never fails the image.

use std::fs::File;
use std::io;
use std::path::Path;

use hnroot_core::commands::StageFault;
use hnroot_core::identity;
use hnroot_core::name::ImageName;
use hnroot_core::plan::{ChangePlan, ChangeStep};
use hnroot_core::uuid::FsUuid;
use hnroot_core::verdict::Verdict;

pub use crate::esp::BootStateStore;
use crate::esp::EspError;
use crate::hostpart::{Hostpart, HostpartError};
use crate::image::{self, Inspect};
use crate::mounts::SysError;

/// Mounts an image as the new root (the initramfs).
pub trait RootMounter {
    /// Mount `image` of `hostpart`, which must have filesystem UUID `uuid`; say how.
    fn mount(
        &mut self,
        hostpart: &Hostpart,
        image: ImageName,
        uuid: FsUuid,
    ) -> Result<String, MountError>;
}

/// Why the booted image could not be mounted as the new root.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The image file could not be opened.
    #[error(transparent)]
    Open(#[from] HostpartError),
    /// A loop device could not be attached, or looked at.
    #[error("{image}: {what}: {source}")]
    Device {
        /// The image.
        image: ImageName,
        /// What was being done (`attach to a loop device`, `probe /dev/loop0`).
        what: String,
        /// The error.
        source: io::Error,
    },
    /// The loop device holds another filesystem than the one GRUB booted.
    #[error(
        "{image} on {node} has filesystem UUID {}, but GRUB booted {booted}: refusing to mount a \
         different image than the kernel came from",
        found.map_or_else(|| "none".to_owned(), |u| u.to_string())
    )]
    NotTheImage {
        /// The image.
        image: ImageName,
        /// The loop device.
        node: std::path::PathBuf,
        /// The UUID found there.
        found: Option<FsUuid>,
        /// The UUID GRUB booted.
        booted: FsUuid,
    },
    /// The loop device holds no filesystem the probes recognise (as they judged it).
    #[error("{image} on {node}: {found}")]
    NoFilesystem {
        /// The image.
        image: ImageName,
        /// The loop device.
        node: std::path::PathBuf,
        /// What the probes said.
        found: String,
    },
    /// The loader passed a root hash (`hnroot.roothash=`) and the image's seal does not give
    /// a dm-verity mapping with it: not mounted unverified.
    #[error(
        "{image}: the loader passed a dm-verity root hash and its seal does not hold for it: \
         {error}; refusing to mount it unverified"
    )]
    Seal {
        /// The image.
        image: ImageName,
        /// Why (the core's judgement).
        error: hnroot_core::seal::SealError,
    },
    /// A mount failed.
    #[error(transparent)]
    Mount(#[from] SysError),
}

/// The source of a stage (the CLI): a local file or a URL, with its signature.
pub trait Stager {
    /// The partial file's name in hostpart's top directory (`layout::PARTIAL_PREFIX` ...),
    /// the same for the same source, so an interrupted stage resumes.
    fn partial_name(&self) -> &str;
    /// Append the source's bytes from byte `have` on to `partial` (which already holds the
    /// first `have` bytes, checked by the stager as it sees fit), checking the signature over
    /// the whole as it goes. Says what it did.
    fn fill(&mut self, partial: &mut File, have: u64) -> Result<String, SourceError>;
    /// Whether the whole copy matches the signature (after `fill`).
    fn verify(&mut self) -> Result<String, SourceError>;
}

/// Why a stage's source could not be copied or verified.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Reading the source or writing the partial file failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, on what.
        what: String,
        /// The error.
        source: io::Error,
    },
    /// Hostpart failed reading or writing the partial file (its storage, or its filesystem
    /// gone read-only): which of the partial file's bytes reached the disk is unknown.
    #[error("{what}: {source}")]
    Partial {
        /// What was being done to the partial file.
        what: String,
        /// The error.
        source: io::Error,
    },
    /// The source ended before the length it promised.
    #[error("{name} ended after {at} of the {total} bytes it said it has")]
    Short {
        /// The source, or the file read back.
        name: String,
        /// Bytes it gave.
        at: u64,
        /// Bytes it promised.
        total: u64,
    },
    /// The source could not be opened at the offset asked (a refused range, a server error):
    /// the whole chain of why, in words.
    #[error("{0}")]
    Delivery(String),
    /// The signature's key cannot check it (its algorithm or form).
    #[error("{0}")]
    Verifier(String),
    /// The signature does not match what was copied.
    #[error(
        "the copy and its signature do not match ({0}): the image, or the trusted comment in its \
         signature, differs from what was signed (damaged in transit or on disk, or tampered \
         with); it is removed"
    )]
    Mismatch(String),
    /// The thread hashing the copy stopped or panicked.
    #[error("the hashing thread {0} (a bug in hnroot)")]
    Hasher(&'static str),
    /// The thread writing the copy stopped without an error of its own or panicked.
    #[error("the writing thread {0} (a bug in hnroot)")]
    Writer(&'static str),
}

impl SourceError {
    /// An I/O error while doing `what` (reading the source).
    pub fn io(what: impl Into<String>, source: io::Error) -> SourceError {
        SourceError::Io {
            what: what.into(),
            source,
        }
    }

    /// An I/O error of hostpart while doing `what` to the partial file.
    pub fn partial(what: impl Into<String>, source: io::Error) -> SourceError {
        SourceError::Partial {
            what: what.into(),
            source,
        }
    }
}

/// Why a step failed: its kind, typed, so that no caller reads a message to decide.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The executor stopped before this step on request (a test's simulated power cut).
    #[error("stopped here on request (a simulated power cut)")]
    Stopped,
    /// An operation on hostpart failed.
    #[error(transparent)]
    Hostpart(#[from] HostpartError),
    /// Writing the boot state failed.
    #[error(transparent)]
    BootState(#[from] EspError),
    /// No boot-state store was given.
    #[error("no boot-state file to write (the ESP is not available)")]
    NoBootState,
    /// Mounting the new root failed.
    #[error(transparent)]
    Mount(Box<MountError>),
    /// This driver mounts no root.
    #[error("this driver mounts no root")]
    NoMounter,
    /// The stage's source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A copy step without a source.
    #[error("a stage without a source")]
    NoSource,
    /// The partial file could not be synced or found.
    #[error("{name}: {what}")]
    Partial {
        /// The partial file's name.
        name: String,
        /// What happened.
        what: String,
    },
    /// The verified copy is not what the source was: another UUID, or not bootable.
    #[error("the copy is {0}")]
    Copy(String),
    /// Syncing the partial file to hostpart's disk failed.
    #[error("{name}: fsync: {source}")]
    PartialSync {
        /// The partial file's name.
        name: String,
        /// The error.
        source: io::Error,
    },
}

impl StepError {
    /// Where the error came from, for the core's judgement of the partial file
    /// (`commands::after_stage_failure`).
    pub fn stage_fault(&self) -> StageFault {
        match self {
            StepError::Source(SourceError::Partial { .. }) | StepError::PartialSync { .. } => {
                StageFault::PartialStorage
            }
            _ => StageFault::Elsewhere,
        }
    }
}

/// A step that failed. The steps before it in the plan succeeded ([`StepFailed::done`]).
#[derive(Debug)]
pub struct StepFailed {
    /// Its index in the plan (0-based).
    pub index: usize,
    /// The step.
    pub step: ChangeStep,
    /// Why.
    pub error: StepError,
}

impl StepFailed {
    /// What the run wrote before the failure: the steps of `plan` (the plan that was run)
    /// before the failed one.
    pub fn done<'p>(&self, plan: &'p ChangePlan) -> &'p [ChangeStep] {
        plan.steps.get(..self.index).unwrap_or(&plan.steps)
    }
}

impl std::fmt::Display for StepFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "step {} ({}): {}", self.index + 1, self.step, self.error)
    }
}

impl std::error::Error for StepFailed {}

impl From<MountError> for StepError {
    fn from(e: MountError) -> StepError {
        StepError::Mount(Box::new(e))
    }
}

/// One executed step of a plan whose steps are `S` (the core's plan steps by default, identity
/// steps, install steps, sync actions), for the log.
#[derive(Debug, Clone, Copy)]
pub struct StepReport<'a, S = ChangeStep> {
    /// Its index (0-based).
    pub index: usize,
    /// Steps in the plan.
    pub total: usize,
    /// The step.
    pub step: &'a S,
    /// How it went (`ok`, what a checkpoint did, ...) or why it failed.
    pub outcome: Result<&'a str, &'a str>,
}

/// What a run does after a failed step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Stop: the steps after it are not run (a plan of hostpart changes, an install).
    Stop,
    /// Report it and run the next (an identity projection, a sync: each step stands alone).
    GoOn,
}

/// The one loop every plan of steps runs through, whoever carries the steps out: each step in
/// order through `one`, each reported to `log` with its index, what it did or why it failed.
/// Returns the failed steps with their index (at most one with [`OnFailure::Stop`]).
pub fn run_steps<S, E: std::fmt::Display>(
    steps: &[S],
    on_failure: OnFailure,
    mut one: impl FnMut(&S) -> Result<String, E>,
    mut log: impl FnMut(StepReport<'_, S>),
) -> Vec<(usize, E)> {
    let total = steps.len();
    let mut failed = Vec::new();
    for (index, step) in steps.iter().enumerate() {
        let result = one(step);
        let why = result.as_ref().err().map(ToString::to_string);
        log(StepReport {
            index,
            total,
            step,
            outcome: match (&result, &why) {
                (Ok(how), _) => Ok(how.as_str()),
                (Err(_), Some(why)) => Err(why.as_str()),
                (Err(_), None) => Err(""),
            },
        });
        if let Err(e) = result {
            failed.push((index, e));
            if on_failure == OnFailure::Stop {
                break;
            }
        }
    }
    failed
}

/// Carries out plans on one hostpart.
pub struct Executor<'a> {
    hostpart: &'a Hostpart,
    boot_state: Option<&'a mut dyn BootStateStore>,
    mounter: Option<&'a mut dyn RootMounter>,
    stager: Option<&'a mut dyn Stager>,
    inspect: Inspect,
    newroot: Option<&'a Path>,
    /// For tests: stop before this step, as a power cut would (nothing after it runs).
    pub stop_before: Option<usize>,
}

/// A step of an identity plan that failed (the steps after it ran all the same).
#[derive(Debug)]
pub struct IdentityFailed {
    /// Its index in the plan (0-based).
    pub index: usize,
    /// The step, in words.
    pub step: String,
    /// Its stable code.
    pub code: &'static str,
    /// Why.
    pub error: crate::host_state::ProjectError,
}

impl std::fmt::Debug for Executor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("hostpart", &self.hostpart.path())
            .field("stop_before", &self.stop_before)
            .finish_non_exhaustive()
    }
}

impl<'a> Executor<'a> {
    /// An executor for `hostpart`; give it what the plans it runs need.
    pub fn new(hostpart: &'a Hostpart) -> Executor<'a> {
        Executor {
            hostpart,
            boot_state: None,
            mounter: None,
            stager: None,
            inspect: Inspect::default(),
            newroot: None,
            stop_before: None,
        }
    }

    /// The new root the identity steps project into (mounted, before `switch_root`).
    pub fn newroot(mut self, root: &'a Path) -> Self {
        self.newroot = Some(root);
        self
    }

    /// Run every step of an identity plan in order, reporting each to `log`; a failed step is
    /// reported, returned, and the next one runs.
    pub fn project(
        &mut self,
        plan: &identity::IdentityPlan<'_>,
        log: impl FnMut(StepReport<'_, identity::IdentityStep<'_>>),
    ) -> Vec<IdentityFailed> {
        let (hostpart, newroot) = (self.hostpart, self.newroot);
        run_steps(
            &plan.steps,
            OnFailure::GoOn,
            |step| crate::host_state::carry_out(hostpart, newroot, step),
            log,
        )
        .into_iter()
        .map(|(index, error)| {
            let step = plan.steps.get(index);
            IdentityFailed {
                index,
                step: step.map(ToString::to_string).unwrap_or_default(),
                code: step.map_or("-", identity::IdentityStep::code),
                error,
            }
        })
        .collect()
    }

    /// Where `WriteBootState` writes.
    pub fn boot_state(mut self, store: &'a mut dyn BootStateStore) -> Self {
        self.boot_state = Some(store);
        self
    }

    /// Who carries out `Mount`.
    pub fn mounter(mut self, mounter: &'a mut dyn RootMounter) -> Self {
        self.mounter = Some(mounter);
        self
    }

    /// The source of `CopyToPartial`.
    pub fn stager(mut self, stager: &'a mut dyn Stager) -> Self {
        self.stager = Some(stager);
        self
    }

    /// Where to look inside a verified partial file (XFS, btrfs).
    pub fn inspect(mut self, inspect: Inspect) -> Self {
        self.inspect = inspect;
        self
    }

    /// Run `plan` in order, reporting each step to `log`; stop at the first failure. Returns
    /// what it wrote: the steps that succeeded, the whole plan (after a failure,
    /// [`StepFailed::done`]); with the core's `plan::seen_after` the caller knows what hostpart
    /// and the boot state now hold without looking again. With [`Executor::stop_before`] the
    /// run ends before that step as a power cut would, unreported.
    // The failure names the step and why (a path, an errno): 128 bytes on the rare path.
    #[allow(clippy::result_large_err)]
    pub fn run<'p>(
        &mut self,
        plan: &'p ChangePlan,
        log: impl FnMut(StepReport<'_>),
    ) -> Result<&'p [ChangeStep], StepFailed> {
        let end = self
            .stop_before
            .map_or(plan.steps.len(), |n| n.min(plan.steps.len()));
        let steps = plan.steps.get(..end).unwrap_or(&[]);
        let failed = run_steps(steps, OnFailure::Stop, |step| self.step(step), log);
        let failure = match failed.into_iter().next() {
            Some((index, error)) => Some((index, error)),
            None if end < plan.steps.len() => Some((end, StepError::Stopped)),
            None => None,
        };
        match failure {
            None => Ok(&plan.steps),
            Some((index, error)) => Err(StepFailed {
                index,
                // `index` is a step's of this plan: before `end`, or `end` below its length.
                step: plan.steps[index],
                error,
            }),
        }
    }

    fn source(&mut self) -> Result<&mut (dyn Stager + 'a), StepError> {
        self.stager.as_deref_mut().ok_or(StepError::NoSource)
    }

    fn step(&mut self, step: &ChangeStep) -> Result<String, StepError> {
        let hp = self.hostpart;
        let ok =
            |r: Result<(), HostpartError>| r.map(|()| "ok".to_owned()).map_err(StepError::from);
        match *step {
            ChangeStep::Rename { from, to, replace } => {
                ok(hp.rename(from.file_name(), to.file_name(), replace))
            }
            ChangeStep::RemoveRevertMarker => ok(hp.remove_marker()),
            ChangeStep::CreateRevertMarker => ok(hp.create_marker()),
            ChangeStep::SyncDir => ok(hp.sync_dir()),
            ChangeStep::Checkpoint => Ok(hp.checkpoint()?.to_owned()),
            ChangeStep::WriteBootState(state) => match self.boot_state.as_deref_mut() {
                Some(store) => {
                    store.write(&state)?;
                    Ok("ok".to_owned())
                }
                None => Err(StepError::NoBootState),
            },
            ChangeStep::Mount { image, uuid } => match self.mounter.as_deref_mut() {
                Some(m) => Ok(m.mount(hp, image, uuid)?),
                None => Err(StepError::NoMounter),
            },
            ChangeStep::CopyToPartial => {
                let stager = self.source()?;
                let name = stager.partial_name().to_owned();
                let (mut file, have) = match hp.reopen_partial(&name)? {
                    Some(file) => {
                        let have = file
                            .metadata()
                            .map_err(|e| StepError::Partial {
                                name: name.clone(),
                                what: format!("stat: {e}"),
                            })?
                            .len();
                        (file, have)
                    }
                    None => (hp.create_exclusive(&name, 0o600)?, 0),
                };
                let how = stager.fill(&mut file, have)?;
                file.sync_all()
                    .map_err(|source| StepError::PartialSync { name, source })?;
                Ok(how)
            }
            ChangeStep::VerifyPartial { uuid } => {
                let inspect = self.inspect.clone();
                let stager = self.source()?;
                let signed = stager.verify()?;
                let name = stager.partial_name().to_owned();
                let file = hp
                    .reopen_partial(&name)?
                    .ok_or_else(|| StepError::Partial {
                        name: name.clone(),
                        what: "vanished".into(),
                    })?;
                match image::judge_file(&file, &inspect).verdict {
                    Verdict::Bootable(b) if b.uuid == uuid => Ok(format!("{signed}; bootable")),
                    Verdict::Bootable(b) => Err(StepError::Copy(format!(
                        "of filesystem UUID {}, the source had {uuid}",
                        b.uuid
                    ))),
                    other => Err(StepError::Copy(other.to_string())),
                }
            }
            ChangeStep::PublishPartial { to, replace } => {
                let name = self.source()?.partial_name().to_owned();
                ok(hp.rename(&name, to.file_name(), replace))
            }
        }
    }
}
