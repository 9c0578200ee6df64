//! `hnroot sysprep IMAGE`: remove one host's identity from an image before it is published,
//! like virt-sysprep (the image is changed in place; a directory tree works too). The core's
//! list (`hnroot_core::sysprep`) says what: the machine ID emptied, SSH host keys, the hostname,
//! DHCP leases, persistent network interface names, logs, shell histories, configuration
//! management certificates and certname, random seeds. Each action is reported; afterwards the
//! image is checked for anything host-specific left (the same check `hnroot image build` and
//! `hnroot stage` warn with).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use hnroot_install::sysprep;
use serde_json::json;

use crate::{say, warn};

/// Options of `hnroot sysprep`.
#[derive(clap::Args, Debug)]
pub struct SysprepArgs {
    /// The image file (loop-mounted read-write; needs root), or a directory tree.
    image: PathBuf,
    /// Only list what would be done; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn run(args: &SysprepArgs) -> Result<bool> {
    let report = sysprep::sysprep(&args.image, args.dry_run)?;
    let failed = report.done.iter().filter(|d| d.outcome.is_err()).count();
    if args.json {
        let v = json!({
            "image": args.image.display().to_string(),
            "dry_run": args.dry_run,
            "actions": report.done.iter().map(|d| json!({
                "what": d.what, "path": d.path, "action": d.action,
                "ok": d.outcome.is_ok(),
                "text": match &d.outcome { Ok(s) => s.clone(), Err(e) => e.to_string() },
            })).collect::<Vec<_>>(),
            "leftovers": report.leftovers.iter().map(|l| json!({ "what": l.what, "path": l.path })).collect::<Vec<_>>(),
        });
        say!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        for d in &report.done {
            match &d.outcome {
                Ok(s) => say!("hnroot: {} ({}): {s}", d.path, d.what),
                Err(e) => warn!("hnroot: {} ({}): FAILED: {e}", d.path, d.what),
            }
        }
        if report.done.is_empty() {
            say!(
                "hnroot: nothing to do: {} holds nothing sysprep removes",
                args.image.display()
            );
        }
        if args.dry_run {
            say!(
                "hnroot: dry run: {} action(s) listed, nothing changed",
                report.done.len()
            );
        } else if report.leftovers.is_empty() {
            say!(
                "hnroot: {}: {} action(s), {failed} failed; checked: nothing host-specific is left",
                args.image.display(),
                report.done.len()
            );
        }
        if !args.dry_run {
            for line in sysprep::warnings(&report.leftovers) {
                warn!("hnroot: {line}");
            }
        }
    }
    Ok(args.dry_run || (failed == 0 && report.leftovers.is_empty()))
}

/// `hnroot sysprep`.
pub fn sysprep_cmd(args: &SysprepArgs) -> ExitCode {
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            warn!("hnroot: sysprep: {e:#}");
            ExitCode::from(2)
        }
    }
}
