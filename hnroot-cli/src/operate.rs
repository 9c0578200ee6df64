//! The operator's actions: `mark-good`, `stage`, `revert`, `bootstate init`. Each asks the core
//! whether the action is allowed, carries it out with the same crash-safe protocol as the
//! initramfs (write, fsync, rename, fsync the directory, checkpoint so GRUB sees it), and says
//! what the next boot will do.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use hnroot_core::bootstate::{BootState, StateSeen};
use hnroot_core::cmdline;
use hnroot_core::decide::{decide, Config};
use hnroot_core::name::{ImageName, REVERT_MARKER};
use hnroot_core::operator::{check_stage, mark_good};
use hnroot_linux::bootstate_file;
use hnroot_linux::hostpart::{self, Hostpart, ImageFile};

use crate::machine::{self, Location};

/// Options of `hnroot mark-good` and `hnroot revert`.
#[derive(clap::Args, Debug)]
pub struct PlainArgs {
    #[command(flatten)]
    loc: Location,
}

/// Options of `hnroot stage`.
#[derive(clap::Args, Debug)]
pub struct StageArgs {
    #[command(flatten)]
    loc: Location,
    /// The image file to stage (copied to hostpart as hn-root-new.img).
    image: PathBuf,
    /// Replace an image already staged.
    #[arg(long)]
    replace: bool,
}

/// Options of `hnroot bootstate init`.
#[derive(clap::Args, Debug)]
pub struct InitArgs {
    #[command(flatten)]
    loc: Location,
}

fn report(result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hnroot: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn next_boot(hostpart: &Hostpart, state: StateSeen) -> Result<String> {
    let seen = hostpart.observe()?;
    Ok(decide(&seen.observation(state), &Config::default()).to_string())
}

/// `hnroot mark-good`: commit the running image if it is `hn-root.img`.
pub fn mark_good_cmd(args: &PlainArgs) -> ExitCode {
    report((|| {
        let text = machine::running_cmdline();
        let params = cmdline::parse(&text);
        let (hostpart, seen) = machine::observe_hostpart(&args.loc)?;
        let file = machine::locate_state(&args.loc, &params, true)?;
        if !file.path.exists() {
            bail!(
                "no boot-state file at {}: nothing records trials on this machine (create it with `hnroot bootstate init`)",
                file.path.display()
            );
        }
        let state = bootstate_file::seen(&file.path)?;
        match mark_good(&seen.observation(state), params.booted)? {
            None => println!("hnroot: hn-root.img is already recorded as good; nothing written"),
            Some(new) => {
                bootstate_file::write(&file.path, &new)?;
                println!("hnroot: marked hn-root.img good: {new}");
            }
        }
        let state = bootstate_file::seen(&file.path)?;
        println!("hnroot: next boot: {}", next_boot(&hostpart, state)?);
        Ok(())
    })())
}

/// Probe an image file: its filesystem UUID, or why it cannot be staged (the judgement GRUB
/// and hnroot-init apply to hostpart's images).
fn probe_image(path: &Path) -> Result<hnroot_core::FsUuid> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("open {} (symbolic links are refused)", path.display()))?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    match hostpart::classify(file, path, meta.len()) {
        ImageFile::Readable { uuid, .. } => Ok(uuid),
        ImageFile::Unreadable { why, .. } => bail!("{}: {why}", path.display()),
        ImageFile::Absent => bail!("{} vanished while it was probed", path.display()),
    }
}

/// `hnroot stage FILE`: copy an image to hostpart as `hn-root-new.img`, crash-safely.
pub fn stage(args: &StageArgs) -> ExitCode {
    report((|| {
        let (hostpart, seen) = machine::observe_hostpart(&args.loc)?;
        let text = machine::running_cmdline();
        let params = cmdline::parse(&text);
        let (state, _) = machine::read_state(&args.loc, &params);
        let uuid = probe_image(&args.image)?;
        check_stage(&seen.observation(state), uuid)?;
        if seen.image(ImageName::New).seen().is_present() && !args.replace {
            bail!("hn-root-new.img is already staged; pass --replace to replace it");
        }
        let partial = args.loc.hostpart.join(".hn-root-new.img.partial");
        std::fs::copy(&args.image, &partial)
            .with_context(|| format!("copy {} to {}", args.image.display(), partial.display()))?;
        File::open(&partial)
            .and_then(|f| f.sync_all())
            .context("sync the copy")?;
        let copied = probe_image(&partial)?;
        if copied != uuid {
            let _ = std::fs::remove_file(&partial);
            bail!("the copy reads back with UUID {copied}, not {uuid}: not staged");
        }
        std::fs::rename(&partial, args.loc.hostpart.join(ImageName::New.file_name()))
            .context("rename into place")?;
        hostpart.sync_dir()?;
        let how = hostpart.checkpoint()?;
        println!(
            "hnroot: staged {} as hn-root-new.img (UUID {uuid}); hostpart checkpointed ({how})",
            args.image.display()
        );
        println!("hnroot: next boot: {}", next_boot(&hostpart, state)?);
        Ok(())
    })())
}

/// `hnroot revert`: ask for a revert on the next boot.
pub fn revert(args: &PlainArgs) -> ExitCode {
    report((|| {
        let (hostpart, _) = machine::observe_hostpart(&args.loc)?;
        let marker = args.loc.hostpart.join(REVERT_MARKER);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&marker)
        {
            Ok(f) => f.sync_all()?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                println!("hnroot: {REVERT_MARKER} already present")
            }
            Err(e) => return Err(e).with_context(|| format!("create {}", marker.display())),
        }
        hostpart.sync_dir()?;
        hostpart.checkpoint()?;
        let text = machine::running_cmdline();
        let params = cmdline::parse(&text);
        let (state, _) = machine::read_state(&args.loc, &params);
        println!(
            "hnroot: revert requested; next boot: {}",
            next_boot(&hostpart, state)?
        );
        Ok(())
    })())
}

/// `hnroot bootstate init`: create the boot-state file recording `hn-root.img` as good.
pub fn bootstate_init(args: &InitArgs) -> ExitCode {
    report((|| {
        let (_, seen) = machine::observe_hostpart(&args.loc)?;
        let current = seen
            .observation(StateSeen::Absent)
            .readable(ImageName::Current)
            .context(
                "hn-root.img is missing or not a readable filesystem: nothing to record as good",
            )?;
        let text = machine::running_cmdline();
        let params = cmdline::parse(&text);
        let file = machine::locate_state(&args.loc, &params, true)?;
        if let Some(dir) = file.path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        let state = BootState::Committed { good: current };
        bootstate_file::create(&file.path, &state)?;
        println!("hnroot: created {}: {state}", file.path.display());
        Ok(())
    })())
}
