//! The switch: the core's plan for the image GRUB booted, carried out by the shared executor
//! (renames, sync, checkpoint, boot state, the mount of the new root); on a failed step the
//! core's answer (`after_step_failure`): go on without the boot-state write, boot the image
//! where it lies now, or the image failed. What hostpart and the boot state hold afterwards is
//! the core's prediction from the steps that succeeded (`plan::seen_after`): hostpart is looked
//! at once per boot.

use hnroot_core::cmdline::BootParams;
use hnroot_core::decide::Config;
use hnroot_core::name::ImageName;
use hnroot_core::observe::Observation;
use hnroot_core::plan::{
    after_step_failure, plan, seen_after, AfterStepFailure, ChangePlan, ChangeStep,
};
use hnroot_core::uuid::FsUuid;
use hnroot_core::verdict::Verdict;
use hnroot_linux::esp::StateFile;
use hnroot_linux::exec::{Executor, StepError, StepReport};
use hnroot_linux::hostpart::{Hostpart, HostpartView};

use crate::boot::{BootError, Env};
use crate::drivers::Drivers;
use crate::rootmount::ImageMounter;
use crate::{error, info, warn};

/// A switch carried out: the plan, the image mounted as the new root, and what hostpart and the
/// boot state hold now.
#[derive(Debug)]
pub struct Switched {
    /// The plan as the core made it (the history records its kind).
    pub plan: ChangePlan,
    /// The image mounted, and its UUID.
    pub mounted: (ImageName, FsUuid),
    /// hostpart and the boot state after the steps that succeeded.
    pub seen: Observation,
}

/// A switch that failed: why, what hostpart and the boot state hold now, and whether the image
/// GRUB booted is to be counted as failed (`None`: nothing to fall back from).
#[derive(Debug)]
pub struct NotSwitched {
    /// Why.
    pub error: BootError,
    /// hostpart and the boot state after the steps that succeeded.
    pub seen: Observation,
    /// The image that failed, when the core says to treat it so.
    pub failed: Option<FsUuid>,
}

/// Log every image's verdict and the revert marker, as GRUB judged them.
pub fn log_view(view: &HostpartView) {
    for name in ImageName::ALL {
        match view.image(name).map(|j| &j.verdict) {
            None | Some(Verdict::Absent) => {}
            Some(v @ Verdict::Bootable(_)) => info!("hostpart: {name}: {v}"),
            Some(Verdict::Refused(r)) => {
                warn!("hostpart: {name}: not bootable ({}): {r}", r.code())
            }
        }
    }
    if view.revert_requested {
        info!("hostpart: system-revert present");
    }
}

fn log_step(r: StepReport<'_>) {
    let n = r.index + 1;
    match r.outcome {
        Ok(how) => info!("step {n}/{}: {}: {how}", r.total, r.step),
        Err(e) => error!("step {n}/{}: {}: FAILED: {e}", r.total, r.step),
    }
}

/// Plan the switch for what GRUB booted and carry it out.
// The failure carries what hostpart now holds (an observation) for the fallback: the rare path.
#[allow(clippy::result_large_err)]
pub fn run(
    env: &Env,
    drivers: &mut Drivers,
    hostpart: &Hostpart,
    esp: &mut Option<StateFile>,
    obs: &Observation,
    params: &BootParams<'_>,
    config: &Config,
) -> Result<Switched, NotSwitched> {
    let booted = params
        .booted
        .map(|b| b.uuid)
        .or(obs.bootable(ImageName::Current));
    let the_plan = plan(obs, params.booted).map_err(|e| NotSwitched {
        error: e.into(),
        seen: *obs,
        failed: booted,
    })?;
    info!(
        "plan: {} ({} steps){}",
        the_plan.kind.code(),
        the_plan.steps.len(),
        if the_plan.notes.is_empty() {
            String::new()
        } else {
            format!(": {}", the_plan.notes)
        }
    );
    info!("record: {}", the_plan.record());
    let mut mounter = ImageMounter {
        env,
        drivers,
        rw: params.image_rw,
        root_hash: params.root_hash,
        mounted: None,
    };
    let mut executor = Executor::new(hostpart)
        .boot_state(esp)
        .mounter(&mut mounter);
    executor.stop_before = env.stop_before_step;
    let mut done: Vec<ChangeStep> = Vec::new();
    let mut to_run = the_plan.clone();
    loop {
        let failed = match executor.run(&to_run, log_step) {
            Ok(ran) => {
                done.extend_from_slice(ran);
                break;
            }
            Err(failed) => failed,
        };
        done.extend_from_slice(failed.done(&to_run));
        let now = seen_after(obs, &done);
        let not_switched = |error: BootError, failed| NotSwitched {
            error,
            seen: now,
            failed,
        };
        if matches!(failed.error, StepError::Stopped) {
            return Err(not_switched(failed.into(), None));
        }
        let Some(uuid) = booted else {
            return Err(not_switched(failed.into(), None));
        };
        match after_step_failure(&now, uuid, &failed.step, config) {
            AfterStepFailure::Continue => {
                warn!(
                    "not recorded: {}; every state is valid without it, the boot goes on",
                    failed.error
                );
                to_run = to_run.from_step(failed.index + 1);
            }
            AfterStepFailure::MountAsIs { image, uuid } => {
                warn!(
                    "after the failed step the image is still fine: booting {image} (UUID {uuid}) where it lies now; the plan resumes at a later boot"
                );
                to_run = to_run.mount_only(image, uuid);
            }
            AfterStepFailure::ImageFailed(_) => {
                return Err(not_switched(failed.into(), Some(uuid)));
            }
        }
        info!("record: {}", to_run.record());
    }
    drop(executor);
    let seen = seen_after(obs, &done);
    match mounter.mounted {
        Some(mounted) => Ok(Switched {
            plan: the_plan,
            mounted,
            seen,
        }),
        None => Err(NotSwitched {
            error: BootError::NothingMounted,
            seen,
            failed: None,
        }),
    }
}
