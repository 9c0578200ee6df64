//! `hnroot revert`: ask for a revert to `hn-root-old.img` on the next boot. The core plans it
//! (`commands::revert`: create `system-revert`, sync, checkpoint so GRUB sees it; refused when
//! the next boot could not revert); the shared executor carries it out, under the operator
//! commands' lock.

use std::process::ExitCode;

use anyhow::Result;
use hnroot_core::cmdline;
use hnroot_core::commands;
use hnroot_core::decide::decide;
use hnroot_core::history::Operator;
use hnroot_core::name::ImageName;
use hnroot_linux::exec::Executor;

use crate::locate::{self, Location};
use crate::{say, warn};

/// Options of `hnroot revert`.
#[derive(clap::Args, Debug)]
pub struct RevertArgs {
    #[command(flatten)]
    loc: Location,
}

fn run(args: &RevertArgs) -> Result<()> {
    let cmdline_text = locate::running_cmdline();
    let params = cmdline::parse(&cmdline_text);
    let hostpart = locate::open_hostpart(&args.loc)?;
    let _lock = hostpart.lock()?;
    let view = hostpart.observe()?;
    let (state, _) = locate::read_state(&args.loc, &params);
    // As the ESP's loader counts.
    let counting = locate::locate_state(&args.loc, &params)
        .map(|f| locate::loader_settings(&f).counting)
        .unwrap_or_default();
    let obs = view.observation(state);
    let plan = commands::revert(&obs, &counting)?;
    if plan.steps.is_empty() {
        say!("hnroot: system-revert is already there");
    }
    let done = Executor::new(&hostpart)
        .run(&plan, |r| {
            if let Ok(how) = r.outcome {
                say!("hnroot: {}: {how}", r.step);
            }
        })
        .map_err(|f| anyhow::anyhow!("{f}"))?;
    let after = hnroot_core::plan::seen_after(&obs, done);
    if !plan.steps.is_empty() {
        crate::cmd::history::record(
            &hostpart,
            Operator::RevertRequested,
            Some(ImageName::Old),
            after.bootable(ImageName::Old),
            after.good(),
        );
    }
    say!(
        "hnroot: revert requested; next boot: {}",
        decide(&after, &counting)
    );
    Ok(())
}

/// `hnroot revert`.
pub fn revert(args: &RevertArgs) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            warn!("hnroot: {e:#}");
            ExitCode::from(1)
        }
    }
}
