//! This host's identity projected into the new root: the host state on hostpart observed, the
//! core's identity plan (`hnroot_core::identity`) carried out by the shared executor; a first
//! boot creates the machine ID and the hostname. Never fatal: a failed step is logged and the
//! image boots with what it carries itself.

use hnroot_core::cmdline::BootParams;
use hnroot_core::identity;
use hnroot_core::layout;
use hnroot_linux::exec::{Executor, StepReport};
use hnroot_linux::host_state;
use hnroot_linux::hostpart::Hostpart;

use crate::boot::Env;
use crate::{info, warn};

fn log_step(r: StepReport<'_, identity::IdentityStep<'_>>) {
    let n = r.index + 1;
    match r.outcome {
        Ok(how) => info!("identity step {n}/{}: {}: {how}", r.total, r.step),
        Err(e) => warn!(
            "identity step {n}/{}: {}: FAILED: {e} (the boot goes on)",
            r.total, r.step
        ),
    }
}

/// Observe, ask the core, carry the plan out.
pub fn project(env: &Env, hostpart: &Hostpart, params: &BootParams<'_>) {
    let gathered =
        host_state::Inputs::gather(hostpart, Some(&env.newroot), &env.sys, &env.roots.dev);
    let inputs = match gathered {
        Ok(inputs) => inputs,
        Err(e) => {
            warn!(
                "identity: cannot look at {} ({e}): nothing projected, the image's own identity stands",
                layout::HOST_DIR
            );
            return;
        }
    };
    if let Some(e) = &inputs.random_error {
        warn!("identity: {e}");
    }
    inputs.with_plan(params.hostname, |plan| carry_out(env, hostpart, plan));
}

fn carry_out(env: &Env, hostpart: &Hostpart, plan: &identity::IdentityPlan<'_>) {
    // Not a `record:` line: that is the switch plan's, whose steps the suites count.
    info!("identity: {}", plan.record());
    for note in plan.notes.sentences() {
        info!("identity: {note}");
    }
    for r in &plan.refused {
        warn!(
            "identity: not projected: {}",
            host_state::describe_refused(r)
        );
    }
    let failed = Executor::new(hostpart)
        .newroot(&env.newroot)
        .project(plan, log_step);
    if !failed.is_empty() {
        warn!(
            "identity: {} of {} steps failed ({}); the boot goes on",
            failed.len(),
            plan.steps.len(),
            failed.iter().map(|f| f.code).collect::<Vec<_>>().join(",")
        );
    }
}
