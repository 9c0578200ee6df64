//! `hnroot install`: from a bare disk to an hnroot disk, or (`--esp DIR`) only the ESP's part on
//! an existing layout. The driver's contract as everywhere: observe (the disk, the image and its
//! signature, the loader kit: hnroot's own GRUB with the module built for it), ask the core
//! (`install::disk_layout`, `install::install_steps`, `commands::first_image`), print the plan,
//! and carry it out step by step, saying what each step did. Everything that could refuse is
//! checked before the first byte is written; `--dry-run` stops there.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use hnroot_core::bootstate::StateSeen;
use hnroot_core::commands::{self, StageRequest};
use hnroot_core::install::{
    self, DiskLayout, HostpartFs, InstallRequest, InstallStep, ESP_DEFAULT, MIB,
};
use hnroot_core::layout;
use hnroot_core::name::ImageName;
use hnroot_core::uuid::FsUuid;
use hnroot_install::{disk, esp, grub};
use hnroot_linux::exec::{run_steps, OnFailure};
use hnroot_linux::hostpart::Hostpart;
use hnroot_linux::mounts;

use crate::cmd::stage::{Checked, SignatureArgs};
use crate::progress::Progress;
use crate::{say, warn};

/// Options of `hnroot install`.
#[derive(clap::Args, Debug)]
pub struct InstallArgs {
    /// The whole disk to make an hnroot disk (destroys everything on it).
    #[arg(
        long,
        value_name = "DEVICE",
        conflicts_with = "esp",
        required_unless_present = "esp"
    )]
    disk: Option<PathBuf>,
    /// Only the ESP's part, on an existing layout: GRUB with hnroot.mod into the ESP mounted at
    /// DIR, and the boot-state file recording hostpart's hn-root.img as good.
    #[arg(long, value_name = "DIR")]
    esp: Option<PathBuf>,
    /// With --esp: hostpart's top directory.
    #[arg(long, value_name = "DIR", default_value = layout::HOSTPART_MOUNT)]
    hostpart: PathBuf,
    /// The first image: a path or an http(s) URL; signed like an image to stage.
    #[arg(long, value_name = "FILE|URL", required_unless_present = "esp")]
    image: Option<String>,
    #[command(flatten)]
    sig: SignatureArgs,
    /// hostpart's filesystem: ext4, btrfs or xfs.
    #[arg(long, value_name = "FS", default_value = "ext4", value_parser = parse_fs)]
    hostpart_fs: HostpartFs,
    /// The ESP's size in MiB (at least 128).
    #[arg(long, value_name = "MIB", default_value_t = ESP_DEFAULT / MIB)]
    esp_size: u64,
    /// Go ahead and destroy everything on the disk.
    #[arg(long)]
    yes: bool,
    /// Print the plan and write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Do not register a firmware boot entry (the disk still boots by the removable-media
    /// path \EFI\BOOT\BOOTX64.EFI).
    #[arg(long)]
    no_boot_entry: bool,
    /// The loader kit: hnroot's GRUB (its modules with hnroot.mod, its grub-mkimage),
    /// grub.cfg, SBAT metadata and the version record.
    #[arg(long, value_name = "DIR", default_value = grub::KIT_DIR)]
    kit: PathBuf,
    /// The fleet's files built into the loader (`(memdisk)/hnroot/NAME`), when the directory
    /// exists.
    #[arg(long, value_name = "DIR", default_value = crate::cmd::bootloader::FLEET_DIR)]
    fleet: PathBuf,
    /// Build into the loader that only sealed images boot (`(memdisk)/hnroot/require-sealed`;
    /// no loader update drops it).
    #[arg(long)]
    require_sealed: bool,
    #[command(flatten)]
    counting: crate::cmd::bootloader::CountingArgs,
    #[command(flatten)]
    menu: crate::cmd::bootloader::MenuArgs,
    #[command(flatten)]
    sign: crate::cmd::bootloader::SignArgs,
}

fn parse_fs(s: &str) -> Result<HostpartFs, String> {
    HostpartFs::parse(s).ok_or_else(|| format!("{s}: hostpart is ext4, btrfs or xfs"))
}

/// The loader, built from the kit before anything is written.
struct GrubParts {
    kit: grub::LoaderKit,
    image: Vec<u8>,
}

fn grub_parts(args: &InstallArgs) -> Result<GrubParts> {
    let kit = grub::LoaderKit::at(&args.kit)
        .map_err(|e| anyhow::anyhow!("{e:#}; nothing was written"))?;
    let fleet =
        crate::cmd::bootloader::loader_fleet(&args.fleet, &args.sig.keys, args.require_sealed)?;
    let (fleet, counting) = args.counting.apply(fleet)?;
    say!(
        "hnroot: the loader counts with {counting} (loader updates keep it; a `{}` file in the \
         images' {}/ replaces it)",
        hnroot_core::counting::FILE_NAME,
        crate::cmd::bootloader::FLEET_DIR
    );
    let (fleet, menu) = args.menu.apply(fleet)?;
    say!(
        "hnroot: in the loader {menu} (loader updates keep it; a `{}` file in the images' {}/ \
         replaces it)",
        hnroot_core::menu::FILE_NAME,
        crate::cmd::bootloader::FLEET_DIR
    );
    if let Err(r) = args.sign.signing(&fleet).check() {
        anyhow::bail!("{r} [{}]; nothing was written", r.code());
    }
    let image = crate::cmd::bootloader::build_candidate(&kit, &fleet, args.sign.key().as_ref())
        .map_err(|e| anyhow::anyhow!("building the loader: {e:#}; nothing was written"))?;
    Ok(GrubParts { kit, image })
}

/// A filesystem mounted for the install, unmounted (after a sync) when dropped.
struct Mounted {
    dir: tempfile::TempDir,
}

impl Mounted {
    fn new(node: &Path, fs: &str) -> Result<Mounted> {
        let dir = tempfile::Builder::new()
            .prefix("hnroot-install-")
            .tempdir_in(if Path::new("/run").is_dir() {
                Path::new("/run")
            } else {
                Path::new("/tmp")
            })
            .context("cannot make a temporary mount point")?;
        mounts::mount(
            node,
            dir.path(),
            Some(fs),
            libc::MS_NOSUID | libc::MS_NODEV,
            None,
        )
        .with_context(|| format!("cannot mount {}", node.display()))?;
        Ok(Mounted { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // SAFETY: sync has no preconditions.
        unsafe { libc::sync() };
        if let Err(e) = mounts::umount(self.dir.path(), 0) {
            warn!("hnroot: {e}");
        }
    }
}

fn step_line(n: usize, total: usize, step: &InstallStep, what: &str) {
    say!("hnroot: step {n}/{total}: {step}: {what}");
}

fn layout_lines(disk: &disk::Disk, layout: &DiskLayout) {
    say!(
        "hnroot: {} ({} MiB, {}-byte sectors): partition 1 ESP {} MiB at {} MiB, partition 2 \
         hostpart {} MiB at {} MiB",
        disk.node.display(),
        disk.facts.size / MIB,
        disk.facts.logical_sector,
        layout.esp.size / MIB,
        layout.esp.start / MIB,
        layout.hostpart.size / MIB,
        layout.hostpart.start / MIB
    );
}

/// Whether a firmware boot entry is made, and if not, why not.
fn boot_entry(args: &InstallArgs, disk: Option<&disk::Disk>) -> Result<(), &'static str> {
    if args.no_boot_entry {
        return Err("--no-boot-entry");
    }
    if !esp::efivars_present() {
        return Err("this system was not booted by UEFI (no /sys/firmware/efi/efivars)");
    }
    match disk {
        Some(d) if d.name.starts_with("loop") => {
            Err("the disk is a loop device: the firmware cannot boot from it")
        }
        None => Err("--esp: the boot entry of the running system's disk is left as it is"),
        Some(_) => Ok(()),
    }
}

fn install_disk(args: &InstallArgs, node: &Path, image: &str) -> Result<()> {
    let disk = disk::observe(node)?;
    let checked = Checked::open(image, &args.sig)?;
    let request = InstallRequest {
        image_size: checked.source.len(),
        esp_size: args.esp_size.saturating_mul(MIB),
        confirmed: args.yes,
        dry_run: args.dry_run,
    };
    let layout = install::disk_layout(&disk.facts, &request).map_err(|refusal| {
        let by = disk
            .used_by
            .as_deref()
            .map(|b| format!(" ({b})"))
            .unwrap_or_default();
        anyhow::anyhow!(
            "{}{by}: {refusal} [{}]; nothing was written",
            disk.node.display(),
            refusal.code()
        )
    })?;
    let parts = grub_parts(args)?;
    let register = boot_entry(args, Some(&disk));
    let steps: Vec<InstallStep> =
        install::install_steps(Some(args.hostpart_fs), register.is_ok()).collect();
    say!(
        "hnroot: installing onto {}: image {} ({} MiB, UUID {}{}), hnroot's GRUB {} with hnroot.mod",
        disk.node.display(),
        checked.source.name(),
        checked.source.len() >> 20,
        checked.bootable.uuid,
        checked
            .version
            .as_deref()
            .map(|v| format!(", version {v}"))
            .unwrap_or_default(),
        parts.kit.grub_version
    );
    layout_lines(&disk, &layout);
    for (i, step) in steps.iter().enumerate() {
        say!("hnroot: plan {}/{}: {step}", i + 1, steps.len());
    }
    if let Err(why) = register {
        say!("hnroot: no firmware boot entry: {why}");
    }
    if args.dry_run {
        say!("hnroot: --dry-run: nothing was written");
        return Ok(());
    }
    let mut run = DiskInstall {
        disk: &disk,
        layout: &layout,
        checked: &checked,
        parts: &parts,
        hostpart_mount: None,
        esp_part: None,
    };
    carry_out(&steps, |step| run.step(step))?;
    drop(run);
    say!(
        "hnroot: {} is an hnroot disk: it boots hn-root.img (UUID {}) through hnroot's GRUB {}",
        disk.node.display(),
        checked.bootable.uuid,
        parts.kit.grub_version
    );
    Ok(())
}

/// Run the install's steps through the one step loop, saying what each did; stop at the first
/// failure, naming the step.
fn carry_out(steps: &[InstallStep], one: impl FnMut(&InstallStep) -> Result<String>) -> Result<()> {
    let failed = run_steps(steps, OnFailure::Stop, one, |r| {
        if let Ok(what) = r.outcome {
            step_line(r.index + 1, r.total, r.step, what);
        }
    });
    match failed.into_iter().next() {
        None => Ok(()),
        Some((index, e)) => Err(e.context(format!(
            "step {}/{}: {}",
            index + 1,
            steps.len(),
            steps[index]
        ))),
    }
}

/// An install onto a whole disk, step by step: what the steps made so far (hostpart mounted,
/// the ESP's partition) for the steps after them.
struct DiskInstall<'a> {
    disk: &'a disk::Disk,
    layout: &'a DiskLayout,
    checked: &'a Checked,
    parts: &'a GrubParts,
    hostpart_mount: Option<Mounted>,
    // The ESP is written with mtools, never mounted: install works where the running kernel
    // has no FAT driver.
    esp_part: Option<PathBuf>,
}

impl DiskInstall<'_> {
    fn step(&mut self, step: &InstallStep) -> Result<String> {
        Ok(match *step {
            InstallStep::PartitionDisk => {
                disk::partition(self.disk, self.layout)?;
                "GPT written".to_owned()
            }
            InstallStep::MakeEspFs => {
                let part = disk::partition_node(self.disk, 1)?;
                disk::make_esp(&part)?;
                let made = format!("{} made", part.display());
                self.esp_part = Some(part);
                made
            }
            InstallStep::MakeHostpartFs(fs) => {
                let part = disk::partition_node(self.disk, 2)?;
                disk::make_hostpart(&part, fs)?;
                self.hostpart_mount = Some(Mounted::new(&part, fs.as_str())?);
                format!("{} made and mounted", part.display())
            }
            InstallStep::CopyFirstImage => self.copy_first_image()?,
            InstallStep::MakeDataDir => {
                let hostpart = self.hostpart()?;
                hostpart.make_dirs(layout::RECORDS_DIR)?;
                let uuid = self.checked.bootable.uuid;
                crate::cmd::history::record(
                    &hostpart,
                    hnroot_core::history::Operator::Installed,
                    Some(ImageName::Current),
                    Some(uuid),
                    Some(uuid),
                );
                // The first image is committed from the start: a sealed one sets the floor.
                let floor = match &self.checked.seal {
                    hnroot_core::seal::SealSeen::Sealed { manifest, .. } => {
                        hnroot_linux::seal::write_floor(&hostpart, &manifest.version)?;
                        format!("; version floor {}", manifest.version)
                    }
                    _ => String::new(),
                };
                format!(
                    "{} and {} created{floor}",
                    layout::DATA_DIR,
                    layout::RECORDS_DIR
                )
            }
            InstallStep::InstallGrub => write_grub(self.parts, Esp::Fat(self.esp()?))?,
            InstallStep::CreateBootState => {
                esp::ensure_boot_state_fat(self.esp()?, self.checked.bootable.uuid)?
            }
            InstallStep::RegisterBootEntry => esp::register_boot_entry(&self.disk.node, 1)?,
        })
    }

    fn hostpart(&self) -> Result<Hostpart> {
        let dir = self
            .hostpart_mount
            .as_ref()
            .context("hostpart is not mounted")?;
        Ok(Hostpart::open(dir.path())?)
    }

    fn esp(&self) -> Result<&Path> {
        self.esp_part.as_deref().context("the ESP was not made")
    }

    fn copy_first_image(&self) -> Result<String> {
        let hostpart = self.hostpart()?;
        let _lock = hostpart.lock()?;
        let view = hostpart.observe()?;
        let obs = view.observation(StateSeen::Absent);
        let checked = self.checked;
        let have = checked.resumable(&view);
        let plan = commands::first_image(
            &obs,
            &StageRequest {
                uuid: checked.bootable.uuid,
                needed: checked.source.len().saturating_sub(have),
                free: hostpart.free_bytes()?,
                replace: false,
                force: false,
            },
        )?;
        let progress = Progress::new(false);
        checked.announce(&progress, ImageName::Current.file_name(), have);
        // The boot state is written by its own step, on the ESP.
        let mut no_state = NoBootState;
        checked.copy(&hostpart, &plan, &mut no_state, &progress)?;
        Ok("hn-root.img in place".to_owned())
    }
}

/// Where the ESP is: mounted at a directory, or a FAT device written with mtools.
enum Esp<'a> {
    Dir(&'a Path),
    Fat(&'a Path),
}

/// GRUB's image (built before the first write) written to the ESP.
fn write_grub(parts: &GrubParts, esp: Esp<'_>) -> Result<String> {
    let work = tempfile::tempdir().context("cannot make a scratch directory")?;
    let efi = work.path().join("BOOTX64.EFI");
    std::fs::write(&efi, &parts.image)
        .with_context(|| format!("cannot write {}", efi.display()))?;
    match esp {
        // A mounted ESP gets the loader through the update's steps (never a moment without a
        // whole loader at the boot path, whatever was there).
        Esp::Dir(dir) => {
            let boot = hnroot_linux::esp_loader::EspBoot::open(dir, true)
                .with_context(|| format!("opening the ESP at {}", dir.display()))?;
            let kind = if boot.read_loader()?.is_some() {
                hnroot_core::loader::UpdateKind::FromUnrecorded
            } else {
                hnroot_core::loader::UpdateKind::Install
            };
            boot.run(
                hnroot_core::loader::update_steps(kind),
                &parts.image,
                |_, _, _| {},
            )
            .map_err(|f| anyhow::anyhow!("{f}"))?;
            Ok(format!(
                "{} ({} KiB) written",
                boot.loader_path().display(),
                parts.image.len().div_ceil(1024)
            ))
        }
        Esp::Fat(dev) => esp::write_boot_loader_fat(dev, &efi),
    }
}

/// The install's copy writes no boot state (its own step does, on the ESP).
struct NoBootState;

impl hnroot_linux::exec::BootStateStore for NoBootState {
    fn write(
        &mut self,
        _state: &hnroot_core::bootstate::BootState,
    ) -> Result<(), hnroot_linux::esp::EspError> {
        // The install's plan has no boot-state step; its own step writes the file.
        Err(hnroot_linux::esp::EspError::Unavailable)
    }
}

fn install_esp(args: &InstallArgs, esp_dir: &Path) -> Result<()> {
    let meta = std::fs::metadata(esp_dir).with_context(|| {
        format!(
            "looked for the ESP at {}; it is not there",
            esp_dir.display()
        )
    })?;
    if !meta.is_dir() {
        bail!("{} is not a directory (the mounted ESP)", esp_dir.display());
    }
    let hostpart = Hostpart::open(&args.hostpart).with_context(|| {
        format!(
            "looked for hostpart at {} (its hn-root.img is recorded as good); pass --hostpart DIR",
            args.hostpart.display()
        )
    })?;
    let view = hostpart.observe()?;
    let good: FsUuid = view
        .observation(StateSeen::Absent)
        .bootable(ImageName::Current)
        .with_context(|| {
            format!(
                "{}/hn-root.img is missing or not a bootable image: GRUB would have nothing to \
                 boot; nothing was written",
                args.hostpart.display()
            )
        })?;
    let parts = grub_parts(args)?;
    let register = boot_entry(args, None);
    let steps: Vec<InstallStep> = install::install_steps(None, register.is_ok()).collect();
    say!(
        "hnroot: installing hnroot's GRUB {} with hnroot.mod into the ESP at {}; hostpart {} boots \
         hn-root.img (UUID {good})",
        parts.kit.grub_version,
        esp_dir.display(),
        args.hostpart.display()
    );
    for (i, step) in steps.iter().enumerate() {
        say!("hnroot: plan {}/{}: {step}", i + 1, steps.len());
    }
    if let Err(why) = register {
        say!("hnroot: no firmware boot entry: {why}");
    }
    if args.dry_run {
        say!("hnroot: --dry-run: nothing was written");
        return Ok(());
    }
    carry_out(&steps, |step| match step {
        InstallStep::InstallGrub => write_grub(&parts, Esp::Dir(esp_dir)),
        InstallStep::CreateBootState => Ok(esp::ensure_boot_state(esp_dir, good)?),
        other => bail!("{other} is not a step of an ESP install (a bug in hnroot)"),
    })
}

/// `hnroot install`.
pub fn install(args: &InstallArgs) -> ExitCode {
    let result = match (&args.disk, &args.esp, &args.image) {
        (Some(disk), None, Some(image)) => install_disk(args, disk, image),
        (None, Some(esp), _) => install_esp(args, esp),
        _ => Err(anyhow::anyhow!(
            "pass --disk DEVICE --image FILE, or --esp DIR (see hnroot install --help)"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            warn!("hnroot: install: {e:#}");
            ExitCode::from(1)
        }
    }
}
