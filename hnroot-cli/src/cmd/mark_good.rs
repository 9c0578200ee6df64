//! `hnroot mark-good`: record the running `hn-root.img` as good, which ends its trial. The core
//! plans it (`commands::mark_good`: one boot-state write, or none when the state already says
//! so; refused when the running system did not boot `hn-root.img`); the shared executor writes
//! it, under the operator commands' lock.

use std::process::ExitCode;

use anyhow::{bail, Result};
use hnroot_core::cmdline;
use hnroot_core::commands;
use hnroot_core::decide::decide;
use hnroot_core::history::Operator;
use hnroot_core::name::ImageName;
use hnroot_core::plan::seen_after;
use hnroot_linux::esp::EspError;
use hnroot_linux::exec::{Executor, StepError};

use crate::locate::{self, Location};
use crate::{say, warn};

/// Options of `hnroot mark-good`.
#[derive(clap::Args, Debug)]
pub struct MarkGoodArgs {
    #[command(flatten)]
    loc: Location,
    /// Directory of trusted minisign public keys (*.pub): a sealed image's version is read
    /// from its seal, verified with them, to raise the version floor.
    #[arg(long, value_name = "DIR", default_value = crate::cmd::stage::KEYS_DIR)]
    keys: std::path::PathBuf,
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
    match why {
        Some(why @ hnroot_linux::bootstate_file::BootStateFileError::Io { .. }) => bail!(
            "{why}; nothing was recorded: this healthy boot is not recorded, and GRUB, which \
             cannot read the file either, boots without counting until it can (`hnroot status` \
             says NOT COUNTED); repair the ESP's filesystem (fsck) or its disk, then `hnroot \
             bootstate init --force`"
        ),
        Some(why) => bail!("{why}; nothing was recorded"),
        None => {}
    }
    let counting = locate::loader_settings(&file).counting;
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
        .map_err(|f| match f.error {
            StepError::BootState(EspError::NotWritable { .. }) => anyhow::anyhow!(
                "{f}: this healthy boot is not recorded; GRUB goes on counting this image's \
                 boots (it writes the ESP's sectors itself), and after its boot limit treats \
                 it as unhealthy (rule 9): make the ESP writable (`blockdev --setrw`, or the \
                 device's write protection) and run `hnroot mark-good` again"
            ),
            _ => anyhow::anyhow!("{}: nothing was recorded", f),
        })?;
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
    raise_floor(&hostpart, &args.keys);
    say!("hnroot: next boot: {}", decide(&after, &counting));
    Ok(())
}

/// The committed `hn-root.img`'s sealed version becomes the floor when it is newer (or the
/// first): written after the commit, and again by every later `mark-good` of the same image
/// until it is in place, so a power cut between the two only delays it. Never lowered; an
/// unsealed image leaves the floor as it is. A failure is reported, never fatal: the commit
/// stands.
fn raise_floor(hostpart: &hnroot_linux::hostpart::Hostpart, keys_dir: &std::path::Path) {
    use hnroot_core::seal::SealSeen;
    use hnroot_linux::seal as facts;
    let keys: Vec<_> = facts::load_keys(keys_dir)
        .map(|(k, _)| k.into_iter().map(|(_, k)| k).collect())
        .unwrap_or_default();
    let seen = hostpart
        .open_image(ImageName::Current)
        .map_err(|e| e.to_string())
        .and_then(|f| {
            let outcome = facts::probe(&f).map_err(|e| e.to_string())?;
            facts::judge_file(&f, &outcome, &keys).map_err(|e| e.to_string())
        });
    let manifest = match seen {
        Ok(SealSeen::Sealed { manifest, .. }) => manifest,
        Ok(SealSeen::Unsealed) => return,
        Ok(other) => {
            warn!(
                "hnroot: hn-root.img's seal does not hold ({}): the version floor is left as it is",
                facts::describe(&other)
            );
            return;
        }
        Err(e) => {
            warn!("hnroot: hn-root.img's seal could not be read ({e}): the version floor is left as it is");
            return;
        }
    };
    let floor = facts::read_floor(hostpart);
    let Some(new) = hnroot_core::floor::raised(&floor, &manifest.version) else {
        if floor == hnroot_core::floor::FloorSeen::Unreadable {
            warn!(
                "hnroot: the version floor ({}) cannot be read: left as it is, not raised to {}",
                hnroot_core::floor::FLOOR_PATH,
                manifest.version
            );
        }
        return;
    };
    match facts::write_floor(hostpart, &new) {
        Ok(()) => say!(
            "hnroot: version floor raised to {new}{}",
            floor
                .version()
                .map(|v| format!(" (was {v})"))
                .unwrap_or_default()
        ),
        Err(e) => warn!(
            "hnroot: the version floor could not be raised to {new} ({e}); the next `hnroot \
             mark-good` tries again"
        ),
    }
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
