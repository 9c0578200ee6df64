//! `hnroot bootstate init`: create the preallocated boot-state file on the ESP, recording the
//! bootable `hn-root.img` as good. `--force` replaces a file that is there (a wrong size, a
//! newer format), through a new file and a rename.

use std::process::ExitCode;

use anyhow::{Context, Result};
use hnroot_core::bootstate::{BootState, StateSeen};
use hnroot_core::cmdline;
use hnroot_core::name::ImageName;
use hnroot_linux::bootstate_file;
use hnroot_linux::fsat::InRoot;

use crate::place::{self, Location};
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
    let hostpart = place::open_hostpart(&args.loc)?;
    let _lock = hostpart.lock()?;
    let view = hostpart.observe()?;
    let current = view
        .observation(StateSeen::Absent)
        .readable(ImageName::Current)
        .context("hn-root.img is missing or not a bootable image: nothing to record as good")?;
    let cmdline_text = place::running_cmdline();
    let params = cmdline::parse(&cmdline_text);
    let file = place::locate_state(&args.loc, &params, true)?;
    // Its directory is made (on the ESP: `hnroot/`) and the file created through the file
    // layer: a link at its name is replaced, never written through.
    let absolute = std::env::current_dir()
        .context("the current directory")?
        .join(&file.path);
    let rel = absolute
        .strip_prefix("/")
        .unwrap_or(&absolute)
        .to_str()
        .with_context(|| format!("{} is not UTF-8", file.path.display()))?;
    let (dir_rel, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let dir = InRoot::open(std::path::Path::new("/"))
        .and_then(|root| root.make_dir(dir_rel))
        .with_context(|| format!("create the directory of {}", file.path.display()))?;
    let state = BootState::Committed { good: current };
    bootstate_file::create_in(&dir, name, &file.path, &state, args.force)?;
    say!("hnroot: created {}: {state}", file.path.display());
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
