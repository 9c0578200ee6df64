//! `hnroot reboot [--auto | --kexec | --firmware]`: reboot into the image the boot loader would
//! choose, by kexec (the firmware and GRUB skipped) or through the firmware. The choice is
//! GRUB's own: the core's `decide` on the same observation (images, boot state, revert marker),
//! the command line composed by the core from the same parts (`bootline::compose_for`: the
//! loader's defaults read from the loader on the ESP, the image's and the host's arguments,
//! with `hnroot.via=kexec`), the boot state written as GRUB writes it before loading a kernel
//! (a trial try counted before the jump). The steps and what a failure at each leaves are the
//! core's (`hnroot_core::reboot`): every failure before the jump ends in a firmware reboot with
//! the boot state as it was, and says why.

use std::process::{Command, ExitCode};

use anyhow::Result;
use hnroot_core::bootline::{self, ArgsFile, LOADER_DEFAULTS};
use hnroot_core::cmdline::{self, BootParams, BootVia};
use hnroot_core::decide::{decide, Config, Decision};
use hnroot_core::layout;
use hnroot_core::memdisk;
use hnroot_core::reboot::{self, FirmwareWhy, KexecBoot, KexecStep, Method};
use hnroot_linux::esp::{self, StateFile};
use hnroot_linux::esp_loader::EspBoot;
use hnroot_linux::hostpart::{Hostpart, HostpartView};
use hnroot_linux::kexec::{self, KexecError};

use crate::cmd::status::tries_arg;
use crate::locate::{self, Location};
use crate::{say, warn};

/// Options of `hnroot reboot`.
#[derive(clap::Args, Debug)]
pub struct RebootArgs {
    #[command(flatten)]
    loc: Location,
    /// Boot the next image by kexec; anything that prevents it is a warning, and the reboot
    /// goes through the firmware with the boot state as it was.
    #[arg(long, conflicts_with_all = ["firmware", "auto"])]
    kexec: bool,
    /// Reboot through the firmware (and GRUB).
    #[arg(long, conflicts_with = "auto")]
    firmware: bool,
    /// (The default.) Kexec when the running kernel can and the chosen kernel loads, else
    /// through the firmware.
    #[arg(long)]
    auto: bool,
    /// Tries a new image gets, as GRUB's `hnroot select --tries` (1 to 100) [default: the
    /// ESP's loader's, from its counting settings, else 3].
    #[arg(long, value_parser = tries_arg)]
    tries: Option<u8>,
    /// Say what would be done: load nothing, write nothing, do not reboot (exit 0 for a kexec,
    /// 3 for a firmware reboot).
    #[arg(long)]
    dry_run: bool,
}

impl RebootArgs {
    fn method(&self) -> Method {
        if self.kexec {
            Method::Kexec
        } else if self.firmware {
            Method::Firmware
        } else {
            Method::Auto
        }
    }
}

/// What a kexec would start: the core's choice and the whole command line.
#[derive(Debug, Clone)]
pub struct KexecPlan {
    /// The image, why, and the boot state to write first.
    pub boot: KexecBoot,
    /// The whole kernel command line.
    pub cmdline: String,
    /// What composing it used and refused (`args=... refused=...`).
    pub args_record: String,
    /// Where the defaults came from.
    pub defaults_from: String,
    /// The refused arguments as sentences (empty when none was refused).
    pub refusals: String,
}

/// Why not a kexec: the core's reason and what was seen.
pub type NoKexec = (FirmwareWhy, String);

/// The fleet's default arguments in the loader's memdisk (`None`: the loader carries none), and
/// where they were looked for.
fn fleet_defaults(state: Option<&StateFile>) -> Result<(Option<Vec<u8>>, String), NoKexec> {
    let no = |what: String| (FirmwareWhy::LoaderDefaults, what);
    let root = state
        .and_then(locate::esp_root)
        .ok_or_else(|| no("the ESP was not found".to_owned()))?;
    let boot =
        EspBoot::open(&root, false).map_err(|e| no(format!("{}/EFI/BOOT: {e}", root.display())))?;
    let path = boot.loader_path();
    let image = boot
        .read_loader()
        .map_err(|e| no(format!("{}: {e}", path.display())))?
        .ok_or_else(|| no(format!("no loader at {}", path.display())))?;
    match memdisk::file(&image, layout::FLEET_ARGS_MEMDISK_PATH) {
        Ok(Some(bytes)) => Ok((
            Some(bytes.to_vec()),
            format!(
                "the fleet's, (memdisk)/{} in {}",
                layout::FLEET_ARGS_MEMDISK_PATH,
                path.display()
            ),
        )),
        Ok(None) => Ok((
            None,
            format!(
                "the loader's built-in \"{LOADER_DEFAULTS}\" ({} carries no fleet file)",
                path.display()
            ),
        )),
        Err(e) => Err(no(format!("{}: {e}", path.display()))),
    }
}

/// What a kexec asked for as `method` would start from this observation, or why the reboot
/// goes through the firmware. Loads nothing and writes nothing (`hnroot explain` shows it).
pub fn kexec_plan(
    method: Method,
    decision: &Decision,
    view: &HostpartView,
    params: &BootParams<'_>,
    state: Option<&StateFile>,
    tries: u8,
) -> Result<KexecPlan, NoKexec> {
    let boot = reboot::kexec_boot(method, decision).map_err(|why| (why, String::new()))?;
    kexec::available().map_err(|e| (FirmwareWhy::NoKexec, e))?;
    let (fleet, defaults_from) = fleet_defaults(state)?;
    let fleet = fleet.as_deref().map_or(ArgsFile::Absent, |b| {
        if b.len() > bootline::MAX_ARGS_FILE_LEN {
            ArgsFile::TooLong
        } else {
            ArgsFile::Text(b)
        }
    });
    let defaults = bootline::defaults(fleet, ArgsFile::Text(LOADER_DEFAULTS.as_bytes()));
    // hostpart's and the ESP's PARTUUIDs as GRUB passed them to this boot (GRUB reads them
    // from the same partitions); without them the initramfs looks for the labels, as after a
    // GRUB boot of a partition without a PARTUUID.
    let parts = view.boot_parts(
        esp::partuuid_of(params.hostpart),
        esp::partuuid_of(params.esp),
        defaults,
    );
    let mut cmdline = String::new();
    let composed = bootline::compose_for(
        &mut cmdline,
        boot.booted,
        boot.reason.code(),
        BootVia::Kexec,
        &parts,
        tries,
    )
    .map_err(|_| {
        (
            FirmwareWhy::KernelRefused,
            "the command line could not be composed".to_owned(),
        )
    })?;
    let args_record = composed.record().to_string();
    let refusals = composed.to_string();
    Ok(KexecPlan {
        boot,
        cmdline,
        args_record,
        defaults_from,
        refusals,
    })
}

/// What the core says a failed kexec load is.
fn load_failure(e: &KexecError) -> FirmwareWhy {
    match e {
        KexecError::Unsupported(_) => FirmwareWhy::NoKexec,
        KexecError::Refused(_) | KexecError::Cmdline => KexecStep::Load.after_failure(false).why,
        KexecError::Open { .. }
        | KexecError::Changed { .. }
        | KexecError::Mount { .. }
        | KexecError::BootFile { .. } => FirmwareWhy::ImageUnreadable,
    }
}

/// Carry the kexec out, step by step (`Ok` once the service manager has the kexec job); on a
/// failure, undo what the core says and return why.
fn kexec(hostpart: &Hostpart, state: Option<&StateFile>, plan: &KexecPlan) -> Result<(), NoKexec> {
    let name = plan.boot.booted.name.file_name();
    if let Err(e) = kexec::load_image(
        hostpart.dir(),
        name,
        plan.boot.booted.uuid,
        &plan.cmdline,
        hostpart.inspect(),
    ) {
        return Err((load_failure(&e), e.to_string()));
    }
    say!("hnroot: reboot: loaded {name}'s /boot/kernel and /boot/initramfs for a kexec");
    let mut previous = None;
    if let Some(w) = plan.boot.write {
        let written = state
            .ok_or_else(|| "the boot-state file was not found".to_owned())
            .and_then(|s| {
                previous = s.bytes().map_err(|e| e.to_string())?;
                s.write(&w).map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            return Err(undo(
                KexecStep::WriteState,
                false,
                state,
                previous.as_deref(),
                e,
            ));
        }
        say!("hnroot: reboot: boot state recorded as GRUB records it: {w}");
    }
    let reason = plan.boot.reason;
    say!("hnroot: reboot: starting {name} by kexec ({reason}), the firmware and GRUB skipped");
    let failed = if kexec::service_manager_runs() {
        match Command::new("systemctl").arg("kexec").status() {
            Ok(s) if s.success() => return Ok(()),
            Ok(s) => format!("systemctl kexec: {s}"),
            Err(e) => format!("cannot start systemctl kexec: {e}"),
        }
    } else {
        format!("reboot(LINUX_REBOOT_CMD_KEXEC): {}", kexec::jump())
    };
    Err(undo(
        KexecStep::Handover,
        plan.boot.write.is_some(),
        state,
        previous.as_deref(),
        failed,
    ))
}

/// Undo after a failure at `step`, as the core says, and say why the firmware reboots.
fn undo(
    step: KexecStep,
    written: bool,
    state: Option<&StateFile>,
    previous: Option<&[u8]>,
    failure: String,
) -> NoKexec {
    let u = step.after_failure(written);
    let mut what = failure;
    if u.unload {
        if let Err(e) = kexec::unload() {
            what.push_str(&format!("; unloading the kernel failed too: {e}"));
        }
    }
    if u.restore_state {
        let restored = match (state, previous) {
            (Some(s), Some(bytes)) => s.restore(bytes).map_err(|e| e.to_string()),
            _ => Err("the previous bytes were not read".to_owned()),
        };
        match restored {
            Ok(()) => what.push_str("; the boot state is put back as it was"),
            Err(e) => what.push_str(&format!(
                "; PUTTING THE BOOT STATE BACK FAILED ({e}): this try stays counted"
            )),
        }
    }
    (u.why, what)
}

/// Reboot through the firmware: `systemctl reboot` under systemd, else the kernel's reboot.
fn firmware_reboot() -> ExitCode {
    if kexec::service_manager_runs() {
        return match Command::new("systemctl").arg("reboot").status() {
            Ok(s) if s.success() => ExitCode::SUCCESS,
            Ok(s) => {
                warn!("hnroot: systemctl reboot failed ({s}): reboot by hand");
                ExitCode::from(2)
            }
            Err(e) => {
                warn!("hnroot: cannot start systemctl reboot ({e}): reboot by hand");
                ExitCode::from(2)
            }
        };
    }
    let e = kexec::firmware_reboot();
    warn!("hnroot: reboot(RB_AUTOBOOT) failed ({e}): reboot by hand");
    ExitCode::from(2)
}

fn say_firmware(method: Method, (why, detail): &NoKexec) {
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    };
    let line = format!(
        "hnroot: reboot: through the firmware ({}): {}{detail}",
        why.code(),
        why.sentence()
    );
    if why.warns(method) {
        warn!("{line}");
    } else {
        say!("{line}");
    }
}

/// `hnroot reboot`.
pub fn reboot(args: &RebootArgs) -> ExitCode {
    reboot_as(&args.loc, args.method(), args.tries, args.dry_run)
}

/// Reboot as `method` says into what the boot loader would choose (`hnroot reboot`, and
/// `hnroot health-failed --reboot`): any failure before the jump reboots through the firmware.
/// `tries`: `None` for the loader's.
pub fn reboot_as(loc: &Location, method: Method, tries: Option<u8>, dry_run: bool) -> ExitCode {
    match run(loc, method, tries, dry_run) {
        Ok(code) => code,
        Err(e) => {
            warn!("hnroot: {e:#}");
            if dry_run {
                return ExitCode::from(2);
            }
            say_firmware(method, &(FirmwareWhy::Unobserved, format!("{e:#}")));
            firmware_reboot()
        }
    }
}

fn run(loc: &Location, method: Method, tries: Option<u8>, dry_run: bool) -> Result<ExitCode> {
    let cmdline_text = locate::running_cmdline();
    let params = cmdline::parse(&cmdline_text);
    let hostpart = locate::open_hostpart(loc)?;
    // One look at the ESP for the whole command (read, written, put back through the same
    // mount).
    // Without the boot-state file the decision GRUB makes is not known here: GRUB decides.
    let state_file = match locate::locate_state(loc, &params) {
        Ok(f) => f,
        Err(e) => {
            say_firmware(method, &(FirmwareWhy::Unobserved, format!("{e:#}")));
            return Ok(if dry_run {
                ExitCode::from(3)
            } else {
                firmware_reboot()
            });
        }
    };
    // The images as the loader judges them: under its seal policy, so that a kexec never
    // starts an image GRUB would refuse (a broken seal, a kernel changed after sealing).
    // Counted as the loader counts (its tries, K and waits).
    let (view, loader) = locate::observe_as_loader(&hostpart, Some(&state_file))?;
    let config = Config {
        tries: tries.unwrap_or(loader.counting.tries),
        ..loader.counting
    };
    let tries = config.tries;
    let state = state_file.read().0;
    let state_file = Some(state_file);
    let decision = decide(&view.observation(state), &config);
    say!("hnroot: reboot: the boot loader would boot: {decision}");
    let plan = kexec_plan(
        method,
        &decision,
        &view,
        &params,
        state_file.as_ref(),
        tries,
    );
    let no = match plan {
        Ok(p) if dry_run => {
            say!(
                "hnroot: reboot: would start {} by kexec with: {}",
                p.boot.booted.name,
                p.cmdline
            );
            say!("hnroot: reboot: defaults: {}", p.defaults_from);
            if let Some(w) = p.boot.write {
                say!("hnroot: reboot: would record first: {w}");
            }
            return Ok(ExitCode::SUCCESS);
        }
        Ok(p) => {
            if !p.refusals.is_empty() {
                warn!("hnroot: reboot: {}", p.refusals);
            }
            match kexec(&hostpart, state_file.as_ref(), &p) {
                // `systemctl kexec` has the job: the services stop, then the jump.
                Ok(()) => return Ok(ExitCode::SUCCESS),
                Err(no) => no,
            }
        }
        Err(no) => no,
    };
    say_firmware(method, &no);
    if dry_run {
        return Ok(ExitCode::from(3));
    }
    Ok(firmware_reboot())
}
