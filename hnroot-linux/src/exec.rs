//! The one executor: it carries out the steps of a plan `hnroot-core` made — for a boot in the
//! initramfs, for `hnroot stage`, `revert` and `mark-good` in the CLI — on hostpart (through
//! [`Hostpart`], relative to its directory descriptor), on the boot-state file, and through the
//! driver's own hands for what only it can do (mount the new root, read a stage's source). It
//! decides nothing: a step either succeeds, saying how, or fails, saying why, and the caller
//! asks the core what a failure means (`plan::after_step_failure`,
//! `operator::after_stage_failure`).
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

use std::path::Path;

use hnroot_core::bootstate::BootState;
use hnroot_core::identity;
use hnroot_core::name::ImageName;
use hnroot_core::plan::{Plan, Step};
use hnroot_core::uuid::FsUuid;
use hnroot_core::verdict::Verdict;

use crate::hostpart::Hostpart;
use crate::image::{self, Inspect};

/// Where the boot state is written.
pub trait BootStateStore {
    /// Write `state` (in place, synced, read back).
    fn write(&mut self, state: &BootState) -> Result<(), String>;
}

/// Mounts an image as the new root (the initramfs).
pub trait RootMounter {
    /// Mount `image` of `hostpart`, which must have filesystem UUID `uuid`.
    fn mount(
        &mut self,
        hostpart: &Hostpart,
        image: ImageName,
        uuid: FsUuid,
    ) -> Result<String, String>;
}

/// The source of a stage (the CLI): a local file or a URL, with its signature.
pub trait Stager {
    /// The partial file's name in hostpart's top directory (`layout::PARTIAL_PREFIX` ...),
    /// the same for the same source, so an interrupted stage resumes.
    fn partial_name(&self) -> &str;
    /// Append the source's bytes from byte `have` on to `partial` (which already holds the
    /// first `have` bytes, checked by the stager as it sees fit), checking the signature over
    /// the whole as it goes. Says what it did.
    fn fill(&mut self, partial: &mut File, have: u64) -> Result<String, String>;
    /// Whether the whole copy matches the signature (after `fill`).
    fn verify(&mut self) -> Result<String, String>;
}

/// A step that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailed {
    /// Its index in the plan (0-based).
    pub index: usize,
    /// The step.
    pub step: Step,
    /// Why, in words.
    pub error: String,
}

impl std::fmt::Display for StepFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "step {} ({}): {}", self.index + 1, self.step, self.error)
    }
}

/// One executed step, for the log.
#[derive(Debug, Clone, Copy)]
pub struct StepReport<'a> {
    /// Its index (0-based).
    pub index: usize,
    /// Steps in the plan.
    pub total: usize,
    /// The step.
    pub step: &'a Step,
    /// How it went (`ok`, what a checkpoint did, ...) or why it failed.
    pub outcome: Result<&'a str, &'a str>,
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

/// One executed step of an identity plan, for the log.
#[derive(Debug, Clone, Copy)]
pub struct IdentityReport<'a> {
    /// Its index (0-based).
    pub index: usize,
    /// Steps in the plan.
    pub total: usize,
    /// The step.
    pub step: &'a identity::Step<'a>,
    /// What it did, or why it failed.
    pub outcome: Result<&'a str, &'a str>,
}

/// A step of an identity plan that failed (the steps after it ran all the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityFailed {
    /// Its index in the plan (0-based).
    pub index: usize,
    /// The step, in words.
    pub step: String,
    /// Its stable code.
    pub code: &'static str,
    /// Why.
    pub error: String,
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
        plan: &identity::Plan<'_>,
        mut log: impl FnMut(IdentityReport<'_>),
    ) -> Vec<IdentityFailed> {
        let total = plan.steps.len();
        let mut failed = Vec::new();
        for (index, step) in plan.steps.iter().enumerate() {
            let result = crate::host_state::carry_out(self.hostpart, self.newroot, step);
            log(IdentityReport {
                index,
                total,
                step,
                outcome: result.as_deref().map_err(String::as_str),
            });
            if let Err(error) = result {
                failed.push(IdentityFailed {
                    index,
                    step: step.to_string(),
                    code: step.code(),
                    error,
                });
            }
        }
        failed
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

    /// Run `plan` in order, reporting each step to `log`; stop at the first failure.
    pub fn run(
        &mut self,
        plan: &Plan,
        mut log: impl FnMut(StepReport<'_>),
    ) -> Result<(), StepFailed> {
        let total = plan.steps.len();
        for (index, step) in plan.steps.iter().enumerate() {
            if self.stop_before == Some(index) {
                return Err(StepFailed {
                    index,
                    step: *step,
                    error: "stopped here on request (a simulated power cut)".into(),
                });
            }
            let result = self.step(step);
            log(StepReport {
                index,
                total,
                step,
                outcome: result.as_deref().map_err(String::as_str),
            });
            if let Err(error) = result {
                return Err(StepFailed {
                    index,
                    step: *step,
                    error,
                });
            }
        }
        Ok(())
    }

    fn step(&mut self, step: &Step) -> Result<String, String> {
        let hp = self.hostpart;
        let ok = |r: Result<(), crate::hostpart::HostpartError>| {
            r.map(|()| "ok".to_owned()).map_err(|e| e.to_string())
        };
        match *step {
            Step::Rename { from, to, replace } => {
                ok(hp.rename(from.file_name(), to.file_name(), replace))
            }
            Step::RemoveRevertMarker => ok(hp.remove_marker()),
            Step::CreateRevertMarker => ok(hp.create_marker()),
            Step::SyncDir => ok(hp.sync_dir()),
            Step::Checkpoint => hp
                .checkpoint()
                .map(str::to_owned)
                .map_err(|e| e.to_string()),
            Step::WriteBootState(state) => match self.boot_state.as_deref_mut() {
                Some(store) => store.write(&state).map(|()| "ok".to_owned()),
                None => Err("no boot-state file to write (the ESP is not available)".into()),
            },
            Step::Mount { image, uuid } => match self.mounter.as_deref_mut() {
                Some(m) => m.mount(hp, image, uuid),
                None => Err("this driver mounts no root".into()),
            },
            Step::CopyToPartial => {
                let stager = self
                    .stager
                    .as_deref_mut()
                    .ok_or("a stage without a source")?;
                let name = stager.partial_name().to_owned();
                let (mut file, have) = match hp.reopen_partial(&name).map_err(|e| e.to_string())? {
                    Some(file) => {
                        let have = file.metadata().map_err(|e| e.to_string())?.len();
                        (file, have)
                    }
                    None => (
                        hp.create_exclusive(&name, 0o600)
                            .map_err(|e| e.to_string())?,
                        0,
                    ),
                };
                let how = stager.fill(&mut file, have)?;
                file.sync_all().map_err(|e| format!("fsync {name}: {e}"))?;
                Ok(how)
            }
            Step::VerifyPartial { uuid } => {
                let stager = self
                    .stager
                    .as_deref_mut()
                    .ok_or("a stage without a source")?;
                let signed = stager.verify()?;
                let name = stager.partial_name().to_owned();
                let file = hp
                    .reopen_partial(&name)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("{name} vanished"))?;
                match image::judge_file(&file, &self.inspect).verdict {
                    Verdict::Bootable(b) if b.uuid == uuid => Ok(format!("{signed}; bootable")),
                    Verdict::Bootable(b) => Err(format!(
                        "the copy has filesystem UUID {}, the source had {uuid}",
                        b.uuid
                    )),
                    other => Err(format!("the copy is {other}")),
                }
            }
            Step::PublishPartial { to, replace } => {
                let stager = self
                    .stager
                    .as_deref_mut()
                    .ok_or("a stage without a source")?;
                let name = stager.partial_name().to_owned();
                ok(hp.rename(&name, to.file_name(), replace))
            }
        }
    }
}

/// The boot-state file at a path, written in place (the CLI, on a mounted ESP).
#[derive(Debug)]
pub struct StateAtPath(pub std::path::PathBuf);

impl BootStateStore for StateAtPath {
    fn write(&mut self, state: &BootState) -> Result<(), String> {
        crate::bootstate_file::write(&self.0, state).map_err(|e| e.to_string())
    }
}
