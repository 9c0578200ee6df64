//! `hnroot mark-good`: record the running `hn-root.img` as good, which ends its trial. The core
//! plans it (`commands::mark_good`: one boot-state write, or none when the state already says
//! so; refused when the running system did not boot `hn-root.img`); the shared executor writes
//! it, under the operator commands' lock.

use std::process::ExitCode;

use anyhow::{bail, Result};
use hnroot_core::cmdline;
use hnroot_core::commands;
use hnroot_core::decide::{decide, Config};
use hnroot_core::history::Operator;
use hnroot_core::name::ImageName;
use hnroot_core::plan::seen_after;
use hnroot_linux::exec::Executor;

use crate::locate::{self, Location};
use crate::{say, warn};

/// Options of `hnroot mark-good`.
#[derive(clap::Args, Debug)]
pub struct MarkGoodArgs {
    #[command(flatten)]
    loc: Location,
}

fn run(args: &MarkGoodArgs) -> Result<()> {
    let cmdline_text = locate::running_cmdline();
    let params = cmdline::parse(&cmdline_text);
    let hostpart = locate::open_hostpart(&args.loc)?;
    let _lock = hostpart.lock()?;
    let view = hostpart.observe()?;
    let mut file = locate::locate_state(&args.loc, &params)?;
    if !file.path().exists() {
        bail!(
            "looked for the boot-state file at {}; there is none, so nothing records trials on \
             this machine: create it with `hnroot bootstate init`",
            file.path().display()
        );
    }
    let (state, why) = file.read();
    if let Some(why) = why {
        bail!("{why}; nothing was recorded");
    }
    let obs = view.observation(state);
    let plan = commands::mark_good(&obs, params.booted)?;
    if plan.steps.is_empty() {
        say!("hnroot: hn-root.img is already recorded as good; nothing written");
    }
    let done = Executor::new(&hostpart)
        .boot_state(&mut file)
        .run(&plan, |r| {
            if let Ok(how) = r.outcome {
                say!("hnroot: {}: {how}", r.step);
            }
        })
        .map_err(|f| anyhow::anyhow!("{}: nothing was recorded", f))?;
    let after = seen_after(&obs, done);
    if !plan.steps.is_empty() {
        let current = after.bootable(ImageName::Current);
        crate::cmd::history::record(
            &hostpart,
            Operator::MarkedGood,
            Some(ImageName::Current),
            current,
            current,
        );
    }
    say!("hnroot: next boot: {}", decide(&after, &Config::default()));
    Ok(())
}

/// `hnroot mark-good`.
pub fn mark_good(args: &MarkGoodArgs) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            warn!("hnroot: {e:#}");
            ExitCode::from(1)
        }
    }
}
