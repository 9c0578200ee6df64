//! `hnroot bootstate init`: create the preallocated boot-state file on the ESP, recording the
//! bootable `hn-root.img` as good. `--force` replaces a file that is there (a wrong size, a
//! newer format), through a new file and a rename.

use std::process::ExitCode;

use anyhow::{Context, Result};
use hnroot_core::bootstate::{BootState, StateSeen};
use hnroot_core::cmdline;
use hnroot_core::name::ImageName;

use crate::locate::{self, Location};
use crate::{say, warn};

/// Options of `hnroot bootstate init`.
#[derive(clap::Args, Debug)]
pub struct InitArgs {
    #[command(flatten)]
    loc: Location,
    /// Replace a boot-state file that is already there.
    #[arg(long)]
    force: bool,
}

fn run(args: &InitArgs) -> Result<()> {
    let hostpart = locate::open_hostpart(&args.loc)?;
    let _lock = hostpart.lock()?;
    let view = hostpart.observe()?;
    let current = view
        .observation(StateSeen::Absent)
        .bootable(ImageName::Current)
        .context("hn-root.img is missing or not a bootable image: nothing to record as good")?;
    let cmdline_text = locate::running_cmdline();
    let params = cmdline::parse(&cmdline_text);
    let file = locate::locate_state(&args.loc, &params)?;
    let state = BootState::committed(current);
    file.create(&state, args.force)?;
    say!("hnroot: created {}: {state}", file.path().display());
    Ok(())
}

/// `hnroot bootstate init`.
pub fn init(args: &InitArgs) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            warn!("hnroot: {e:#}");
            ExitCode::from(1)
        }
    }
}
