//! The early-boot sequence, in the order every hnroot driver follows — observe, ask the core,
//! carry out what it returns, and on a failure ask the core again:
//!
//! 1. read the command line; load the disk drivers ([`crate::drivers`]);
//! 2. find and mount hostpart ([`crate::devices`]); mount the ESP read-only and read the boot
//!    state;
//! 3. observe hostpart (every image judged by the core, as GRUB judged it);
//! 4. ask the core for the plan, and carry it out with the shared executor
//!    (`hnroot_linux::exec`): renames, sync, checkpoint, boot state, and the mount of the
//!    image GRUB booted, checked by filesystem UUID;
//! 5. when a step fails, ask the core (`after_step_failure`): boot the image where it lies
//!    (a hostpart or boot-state step failed: the image is fine) or treat the image as failed
//!    (`after_failure`: record it and reboot into another image, or stop);
//! 6. check the image's init before anything irreversible;
//! 7. project this host's identity into the new root (`hnroot_core::identity`: the host state
//!    on hostpart observed, the core's identity plan carried out by the same executor; a first
//!    boot creates the machine ID and the hostname); a failed step is logged and the boot goes
//!    on;
//! 8. keep hostpart reachable in the new root.
//!
//! Every step logs one line. It stops before `switch_root`, so PID 1 and the initramfs-tools
//! and dracut `mount-root` share it, and tests run it against temporary directories and real
//! loop devices.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hnroot_core::bootstate::{BootState, StateSeen};
use hnroot_core::cmdline::{self, BootParams};
use hnroot_core::decide::{Config, ReasonCode};
use hnroot_core::history;
use hnroot_core::hostname::Sources;
use hnroot_core::identity;
use hnroot_core::layout;
use hnroot_core::name::ImageName;
use hnroot_core::observe::Observation;
use hnroot_core::plan::{after_step_failure, plan, AfterStepFailure, Plan};
use hnroot_core::probe::{FsOutcome, FsType};
use hnroot_core::uuid::FsUuid;
use hnroot_core::verdict::Verdict;
use hnroot_linux::blockdev::{Found, Roots};
use hnroot_linux::bootstate_file;
use hnroot_linux::exec::{BootStateStore, Executor, IdentityReport, RootMounter, StepReport};
use hnroot_linux::history_file;
use hnroot_linux::host_state;
use hnroot_linux::hostpart::{Hostpart, HostpartView};
use hnroot_linux::image::Inspect;
use hnroot_linux::loopdev;
use hnroot_linux::mounts;
use hnroot_linux::probe::Device;

use crate::devices::{self, describe_found};
use crate::drivers::Drivers;
use crate::newroot;
use crate::{error, info, warn};

/// Where things are; PID 1 uses [`Env::initramfs`], tests use temporary directories.
#[derive(Clone, Debug)]
pub struct Env {
    /// sysfs and `/dev`.
    pub roots: Roots,
    /// Where hostpart is mounted first (`/hostpart` in the initramfs).
    pub hostpart_mnt: PathBuf,
    /// Where the ESP is mounted to read and write the boot state.
    pub esp_mnt: PathBuf,
    /// Where the image is mounted (`/newroot`, or initramfs-tools' `${rootmnt}`).
    pub newroot: PathBuf,
    /// Scratch space for looking inside XFS and btrfs images (`/run/hnroot`).
    pub scratch: PathBuf,
    /// `/lib/modules/<release>` in the initramfs, if modules are to be loaded.
    pub modules_dir: Option<PathBuf>,
    /// The list of modules to load.
    pub modules_list: PathBuf,
    /// sysfs (`/sys`): where a new server's DMI serial and MAC addresses are read.
    pub sys: PathBuf,
    /// Pause between scans while waiting for a device.
    pub poll: Duration,
    /// Longest wait for the ESP once hostpart is there (it is usually on the same disk).
    pub esp_wait: Duration,
    /// For tests: stop before this plan step, as a power cut would (nothing after it runs,
    /// nothing is cleaned up). `None` in every real boot.
    pub stop_before_step: Option<usize>,
}

impl Env {
    /// The layout inside hnroot's own initramfs.
    pub fn initramfs(release: &str) -> Env {
        Env {
            roots: Roots::default(),
            hostpart_mnt: PathBuf::from(layout::HOSTPART_MOUNT),
            esp_mnt: PathBuf::from("/run/hnroot/esp"),
            newroot: PathBuf::from("/newroot"),
            scratch: PathBuf::from("/run/hnroot"),
            modules_dir: Some(PathBuf::from("/lib/modules").join(release)),
            modules_list: PathBuf::from("/etc/hnroot/modules"),
            sys: PathBuf::from("/sys"),
            poll: Duration::from_millis(50),
            esp_wait: Duration::from_secs(5),
            stop_before_step: None,
        }
    }

    fn inspect(&self) -> Inspect {
        Inspect {
            dev: self.roots.dev.clone(),
            scratch: self.scratch.clone(),
        }
    }
}

/// A mounted new root, ready for `switch_root`.
#[derive(Debug)]
pub struct Prepared {
    /// The init to exec in it (as named; it resolves inside the image).
    pub init: String,
    /// The image mounted, and its UUID.
    pub mounted: (ImageName, FsUuid),
}

/// What the after-failure handling needs to choose another image: the observation after the failure, and
/// the UUID that failed.
#[derive(Debug)]
pub struct FailedBoot {
    /// hostpart and boot state as seen after the failure.
    pub obs: Observation,
    /// The image GRUB booted.
    pub failed: FsUuid,
    /// Tries per trial (`hnroot.tries=`).
    pub config: Config,
    /// The ESP mount point, if it is mounted (to write the boot state).
    pub esp: Option<PathBuf>,
    /// hostpart's mount point (to record the failure in the history).
    pub hostpart: PathBuf,
    /// The image GRUB booted, and why.
    pub booted: Option<ImageName>,
    /// GRUB's reason.
    pub reason: ReasonCode,
}

/// A fatal error: what was looked for and found, and what the after-failure handling can use.
#[derive(Debug)]
pub struct Failure {
    /// One line for the console.
    pub message: String,
    /// Present once hostpart is mounted and the booted image is known.
    pub failed_boot: Option<Box<FailedBoot>>,
}

impl Failure {
    fn plain(message: String) -> Failure {
        Failure {
            message,
            failed_boot: None,
        }
    }
}

fn mount_hostpart(
    env: &Env,
    drivers: &mut Drivers,
    params: &BootParams<'_>,
    found: &Found,
) -> Result<(), Failure> {
    let fs = match found.fs.as_ref().map(|f| f.fs_type) {
        Some(t @ (FsType::Ext4 | FsType::Ext3 | FsType::Ext2 | FsType::Btrfs | FsType::Xfs)) => t,
        Some(other) => {
            return Err(Failure::plain(format!(
                "hostpart {} holds {}: hnroot needs ext4, btrfs or XFS there (GRUB must read it and the initramfs must checkpoint it)",
                found.node.display(),
                other.as_str()
            )))
        }
        None => {
            return Err(Failure::plain(format!(
                "hostpart {} holds no filesystem the probes recognise",
                found.node.display()
            )))
        }
    };
    drivers.for_fs(fs);
    mounts::mkdir_p(&env.hostpart_mnt).map_err(|e| Failure::plain(e.to_string()))?;
    mounts::mount(
        &found.node,
        &env.hostpart_mnt,
        Some(fs.as_str()),
        libc::MS_NOSUID | libc::MS_NODEV,
        params.hostpart_options,
    )
    .map_err(|e| Failure::plain(format!("hostpart: {e}")))?;
    info!(
        "mounted hostpart {} rw at {}{}",
        describe_found(found),
        env.hostpart_mnt.display(),
        params
            .hostpart_options
            .map(|o| format!(" with {o}"))
            .unwrap_or_default()
    );
    Ok(())
}

/// The ESP mounted read-only, and the boot state in it as the core judges what is there.
/// Without an ESP the state is absent and nothing will be written.
fn read_boot_state(
    env: &Env,
    drivers: &mut Drivers,
    params: &BootParams<'_>,
) -> (StateSeen, Option<PathBuf>) {
    let found = match devices::find_esp(&env.roots, env.poll, params, env.esp_wait) {
        Ok(found) => found,
        Err(e) => {
            warn!("boot state: ESP not available ({e}); deciding without it and writing nothing");
            return (StateSeen::Absent, None);
        }
    };
    // The boot-state file must keep its blocks when rewritten, so GRUB can write it in place:
    // FAT (the ESP) or ext2/3/4, never a copy-on-write filesystem.
    let fs = match found.fs.as_ref().map(|f| f.fs_type) {
        Some(t @ (FsType::Vfat | FsType::Ext2 | FsType::Ext3 | FsType::Ext4)) => t,
        _ => {
            warn!(
                "boot state: {} is neither FAT nor ext2/3/4: GRUB cannot rewrite a file there in place; not using it",
                describe_found(&found)
            );
            return (StateSeen::Absent, None);
        }
    };
    drivers.for_fs(fs);
    if let Err(e) = mounts::mkdir_p(&env.esp_mnt).and_then(|()| {
        mounts::mount(
            &found.node,
            &env.esp_mnt,
            Some(fs.as_str()),
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            None,
        )
    }) {
        warn!("boot state: {e}; deciding without it and writing nothing");
        return (StateSeen::Absent, None);
    }
    let file = env.esp_mnt.join(layout::BOOTSTATE_PATH);
    let (state, why) = bootstate_file::seen(&file);
    match (&state, why) {
        (StateSeen::Valid(s), _) => info!(
            "boot state: {s} (from {} {})",
            found.node.display(),
            layout::BOOTSTATE_PATH
        ),
        (StateSeen::Absent, _) => info!("boot state: none recorded in {}", found.node.display()),
        (StateSeen::Corrupt, Some(why)) => {
            warn!("boot state: {why}: deciding as for a corrupt one")
        }
        (StateSeen::Corrupt, None) => warn!("boot state: corrupt in {}", found.node.display()),
    }
    (state, Some(env.esp_mnt.clone()))
}

/// The boot state on the ESP mounted at `esp`: remounted read-write for the write only.
#[derive(Debug)]
pub struct EspState<'a>(pub Option<&'a Path>);

impl BootStateStore for EspState<'_> {
    fn write(&mut self, state: &BootState) -> Result<(), String> {
        write_boot_state(self.0, state)
    }
}

/// Write the boot state on the ESP mounted at `esp`, remounting it read-write for the write.
pub fn write_boot_state(esp: Option<&Path>, state: &BootState) -> Result<(), String> {
    let Some(esp) = esp else {
        return Err("the ESP is not mounted".into());
    };
    mounts::remount(esp, libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC)
        .map_err(|e| e.to_string())?;
    let result =
        bootstate_file::write(&esp.join(layout::BOOTSTATE_PATH), state).map_err(|e| e.to_string());
    if let Err(e) = mounts::remount(
        esp,
        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
    ) {
        warn!("boot state: {e}");
    }
    result
}

/// Mounts the booted image as the new root: attached to a loop device, its UUID checked on the
/// loop device, then either mounted read-only at the image mount point with a writable overlay
/// over it whose upper layer is the image's own directory on hostpart (the default; see
/// `hnroot_core::overlay`), or, with `hnroot.rw`, mounted read-write at the new root itself.
struct ImageMounter<'a> {
    env: &'a Env,
    drivers: &'a mut Drivers,
    rw: bool,
    mounted: Option<(ImageName, FsUuid)>,
}

impl ImageMounter<'_> {
    /// Where the read-only image sits under the overlay (`/run/hnroot/image`; moved with
    /// `/run` into the running system, where it shows the image as published).
    fn lower(&self) -> PathBuf {
        self.env.scratch.join("image")
    }

    /// The overlay over the mounted image at the new root. On failure the image is still
    /// mounted at [`Self::lower`].
    fn mount_overlay(&mut self, hostpart: &Hostpart, uuid: FsUuid) -> Result<String, String> {
        let (upper, work) = hostpart.overlay_layer(uuid).map_err(|e| e.to_string())?;
        self.drivers.for_overlay();
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            self.lower().display(),
            upper.display(),
            work.display()
        );
        mounts::mount(
            Path::new("overlay"),
            &self.env.newroot,
            Some("overlay"),
            0,
            Some(&options),
        )
        .map_err(|e| e.to_string())?;
        Ok(format!("writable layer {}", upper.display()))
    }
}

impl RootMounter for ImageMounter<'_> {
    fn mount(
        &mut self,
        hostpart: &Hostpart,
        image: ImageName,
        uuid: FsUuid,
    ) -> Result<String, String> {
        let file = if self.rw {
            hostpart.open_image_rw(image)
        } else {
            hostpart.open_image(image)
        }
        .map_err(|e| e.to_string())?;
        let size = file.metadata().map_err(|e| format!("{image}: {e}"))?.len();
        let lo = loopdev::attach(&self.env.roots.dev, &file, image.file_name(), self.rw)
            .map_err(|e| format!("attach {image} to a loop device: {e}"))?;
        let mode = if self.rw { "read-write" } else { "read-only" };
        info!("attached {image} to {} {mode}", lo.node.display());
        let outcome = Device::open(&lo.node)
            .and_then(|mut d| d.probe_fs(0, size))
            .map_err(|e| format!("probe {}: {e}", lo.node.display()))?;
        let info = match outcome {
            FsOutcome::Found(info) if info.uuid == Some(uuid) => info,
            FsOutcome::Found(info) => {
                return Err(format!(
                    "{image} on {} has filesystem UUID {}, but GRUB booted {uuid}: refusing to mount a different image than the kernel came from",
                    lo.node.display(),
                    info.uuid.map(|u| u.to_string()).unwrap_or_else(|| "none".into())
                ))
            }
            other => return Err(format!("{image} on {}: {other:?}", lo.node.display())),
        };
        self.drivers.for_fs(info.fs_type);
        mounts::mkdir_p(&self.env.newroot).map_err(|e| e.to_string())?;
        let fs = info.fs_type.as_str();
        if self.rw {
            mounts::mount(&lo.node, &self.env.newroot, Some(fs), 0, None)
                .map_err(|e| e.to_string())?;
            self.mounted = Some((image, uuid));
            return Ok(format!(
                "mounted {} ({fs}, UUID={uuid}) read-write at {} (hnroot.rw: the image itself changes)",
                lo.node.display(),
                self.env.newroot.display()
            ));
        }
        let lower = self.lower();
        mounts::mkdir_p(&lower).map_err(|e| e.to_string())?;
        mounts::mount(&lo.node, &lower, Some(fs), libc::MS_RDONLY, None)
            .map_err(|e| e.to_string())?;
        let how = match self.mount_overlay(hostpart, uuid) {
            Ok(layer) => layer,
            Err(e) => {
                // The image is fine: boot it read-only rather than count it as failed.
                warn!(
                    "overlay over {image}: {e}; booting the image read-only without a writable layer (what needs to write will fail; the image is not counted as failed for this)"
                );
                mounts::move_mount(&lower, &self.env.newroot).map_err(|e| e.to_string())?;
                "no writable layer".to_owned()
            }
        };
        self.mounted = Some((image, uuid));
        Ok(format!(
            "mounted {} ({fs}, UUID={uuid}) read-only at {}, root at {} ({how})",
            lo.node.display(),
            lower.display(),
            self.env.newroot.display()
        ))
    }
}

fn log_view(view: &HostpartView) {
    for name in ImageName::ALL {
        match view.image(name).map(|j| &j.verdict) {
            None | Some(Verdict::Absent) => {}
            Some(v @ Verdict::Bootable(_)) => info!("hostpart: {name}: {v}"),
            Some(Verdict::Refused(r)) => warn!("hostpart: {name}: unreadable ({}): {r}", r.code()),
        }
    }
    if view.revert_requested {
        info!("hostpart: system-revert present");
    }
}

fn log_step(r: StepReport<'_>) {
    let n = r.index + 1;
    match r.outcome {
        Ok(how) => info!("step {n}/{}: {}: {how}", r.total, r.step),
        Err(e) => error!("step {n}/{}: {}: FAILED: {e}", r.total, r.step),
    }
}

#[allow(clippy::too_many_arguments)]
fn failed_boot(
    hostpart: &Hostpart,
    state: StateSeen,
    failed: FsUuid,
    config: Config,
    esp: Option<PathBuf>,
    booted: Option<ImageName>,
    reason: ReasonCode,
) -> FailedBoot {
    let obs = match hostpart.observe() {
        Ok(view) => view.observation(state),
        Err(e) => {
            warn!("cannot look at hostpart again ({e}): after the failure nothing is seen");
            Observation {
                state,
                ..Observation::default()
            }
        }
    };
    FailedBoot {
        obs,
        failed,
        config,
        esp,
        hostpart: hostpart.path().to_owned(),
        booted,
        reason,
    }
}

/// Undo the mounts a failed [`prepare`] may have left, so that a retry (initramfs-tools calls
/// `mount-root` again after its panic shell) starts clean. Lazy unmounts: the image's loop
/// device can keep hostpart busy.
pub fn unwind(env: &Env) {
    let targets = [
        env.newroot.join("hostpart"),
        env.newroot.clone(),
        env.scratch.join("image"),
        env.esp_mnt.clone(),
        env.hostpart_mnt.clone(),
    ];
    for target in targets {
        if mounts::is_mount_point(&target) {
            match mounts::umount(&target, libc::MNT_DETACH) {
                Ok(()) => info!("unmounted {}", target.display()),
                Err(e) => warn!("{e}"),
            }
        }
    }
}

/// The state the boot state file holds now (after the plan wrote what it wrote).
fn current_state(esp: Option<&Path>, before: StateSeen) -> StateSeen {
    match esp {
        Some(esp) => bootstate_file::seen(&esp.join(layout::BOOTSTATE_PATH)).0,
        None => before,
    }
}

/// Append this boot to the switch history, after the boots GRUB counted that never reached an
/// initramfs (seen from the tries the boot state lost since the last record). Never fatal.
fn record_boot(
    hostpart: &Hostpart,
    grub_state: StateSeen,
    now: StateSeen,
    params: &BootParams<'_>,
    plan: &Plan,
    mounted: (ImageName, FsUuid),
) {
    let previous = history_file::read(hostpart)
        .map(|(records, _)| {
            records
                .into_iter()
                .rev()
                .find(|r| matches!(r.event, history::Event::Boot | history::Event::Missed))
        })
        .unwrap_or(None);
    let this = history::Record::boot(
        history_file::now(),
        params.reason.unwrap_or(ReasonCode::Unknown),
        plan.kind,
        params.booted.map(|b| b.name),
        mounted,
        grub_state,
        now,
    );
    for record in this.missed_before(previous.as_ref()) {
        match history_file::append(hostpart, record) {
            Ok(r) => warn!("history: {r}: GRUB booted it but it never reached the initramfs"),
            Err(e) => warn!("history: cannot record a missed boot: {e}"),
        }
    }
    match history_file::append(hostpart, this) {
        Ok(r) => info!("history: {r}"),
        Err(e) => warn!(
            "history: cannot record this boot in {}: {e}",
            layout::HISTORY_PATH
        ),
    }
}

/// Remove the writable layers of images no longer on hostpart (after the plan: an update's
/// rename may just have replaced one). Never fatal.
fn remove_stale_overlays(hostpart: &Hostpart) {
    let images: Vec<FsUuid> = match hostpart.observe() {
        Ok(view) => {
            let obs = view.observation(StateSeen::Absent);
            ImageName::ALL
                .iter()
                .filter_map(|&n| obs.readable(n))
                .collect()
        }
        Err(e) => {
            warn!("writable layers: cannot look at hostpart ({e}); removing none");
            return;
        }
    };
    match hostpart.remove_stale_overlays(&images) {
        Ok(done) => done
            .iter()
            .for_each(|line| info!("writable layers: {line}")),
        Err(e) => warn!("writable layers: {e}; removing none"),
    }
}

fn log_identity_step(r: IdentityReport<'_>) {
    let n = r.index + 1;
    match r.outcome {
        Ok(how) => info!("identity step {n}/{}: {}: {how}", r.total, r.step),
        Err(e) => warn!(
            "identity step {n}/{}: {}: FAILED: {e} (the boot goes on)",
            r.total, r.step
        ),
    }
}

/// Project this host's identity (the host state on hostpart) into the new root, creating it on
/// a first boot: observe, ask the core, carry the plan out with the shared executor. Never
/// fatal: what fails is logged and the image boots with what it carries itself.
fn project_identity(env: &Env, hostpart: &Hostpart, params: &BootParams<'_>) {
    let observed = match host_state::observe(hostpart) {
        Ok(o) => o,
        Err(e) => {
            warn!(
                "identity: cannot look at {} ({e}): nothing projected, the image's own identity stands",
                layout::HOST_DIR
            );
            return;
        }
    };
    let files = observed.file_names();
    let host = observed.seen(&files);
    let root = host_state::observe_root(&env.newroot);
    let names = host_state::name_sources(&env.sys);
    let macs = names.mac_refs();
    let sources = Sources {
        parameter: params.hostname,
        dmi_serial: names.dmi_serial.as_deref(),
        macs: &macs,
    };
    let urandom = env.roots.dev.join("urandom");
    let random = match host_state::random_bytes(&urandom) {
        Ok(b) => Some(b),
        Err(e) => {
            warn!("identity: cannot read {}: {e}", urandom.display());
            None
        }
    };
    let plan = identity::plan(&host, &root, &sources, random);
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
        .project(&plan, log_identity_step);
    if !failed.is_empty() {
        warn!(
            "identity: {} of {} steps failed ({}); the boot goes on",
            failed.len(),
            plan.steps.len(),
            failed.iter().map(|f| f.code).collect::<Vec<_>>().join(",")
        );
    }
}

/// Run the sequence up to a mounted new root.
pub fn prepare(env: &Env, cmdline_text: &str) -> Result<Prepared, Failure> {
    let params = cmdline::parse(cmdline_text);
    for e in &params.errors {
        warn!("cmdline: {e}");
    }
    if params.more_errors > 0 {
        warn!("cmdline: {} more refused parameters", params.more_errors);
    }
    match params.booted {
        Some(b) => info!(
            "cmdline: GRUB booted {} (UUID {}), hostpart {}",
            b.name,
            b.uuid,
            params.hostpart_spec()
        ),
        None => warn!(
            "cmdline: no hnroot.image=/hnroot.uuid=: booting hn-root.img without an identity check"
        ),
    }
    let config = Config {
        tries: params.tries.unwrap_or(Config::default().tries),
    };
    let mut drivers = Drivers::start(env.modules_dir.as_ref(), &env.modules_list);

    let found = devices::find_hostpart(&env.roots, env.poll, &params).map_err(Failure::plain)?;
    mount_hostpart(env, &mut drivers, &params, &found)?;
    let hostpart = Hostpart::open(&env.hostpart_mnt)
        .map_err(|e| Failure::plain(e.to_string()))?
        .with_inspect(env.inspect());
    let (state, esp) = read_boot_state(env, &mut drivers, &params);

    let view = hostpart
        .observe()
        .map_err(|e| Failure::plain(e.to_string()))?;
    log_view(&view);
    let obs = view.observation(state);
    let booted_uuid = params
        .booted
        .map(|b| b.uuid)
        .or(obs.readable(ImageName::Current));
    let reason = params.reason.unwrap_or(ReasonCode::Unknown);
    let failure = |message: String, failed: Option<FsUuid>| Failure {
        message,
        failed_boot: failed.map(|f| {
            Box::new(failed_boot(
                &hostpart,
                current_state(esp.as_deref(), state),
                f,
                config,
                esp.clone(),
                params.booted.map(|b| b.name),
                reason,
            ))
        }),
    };
    let the_plan: Plan =
        plan(&obs, params.booted).map_err(|e| failure(e.to_string(), booted_uuid))?;
    info!(
        "plan: {} ({} steps){}",
        the_plan.kind.code(),
        the_plan.steps.len(),
        if the_plan.notes.is_empty() {
            String::new()
        } else {
            format!(": {}", the_plan.notes)
        }
    );
    info!("record: {}", the_plan.record());

    let mut store = EspState(esp.as_deref());
    let mut mounter = ImageMounter {
        env,
        drivers: &mut drivers,
        rw: params.image_rw,
        mounted: None,
    };
    let mut executor = Executor::new(&hostpart)
        .boot_state(&mut store)
        .mounter(&mut mounter);
    executor.stop_before = env.stop_before_step;
    let mut to_run = the_plan.clone();
    while let Err(failed) = executor.run(&to_run, log_step) {
        if env.stop_before_step.is_some() && failed.error.contains("simulated power cut") {
            return Err(Failure::plain(failed.to_string()));
        }
        let Some(uuid) = booted_uuid else {
            return Err(Failure::plain(failed.to_string()));
        };
        let now = hostpart
            .observe()
            .map(|v| v.observation(current_state(esp.as_deref(), state)))
            .unwrap_or(obs);
        match after_step_failure(&now, uuid, &failed.step, &config) {
            AfterStepFailure::Continue => {
                warn!(
                    "not recorded: {}; every state is valid without it, the boot goes on",
                    failed.error
                );
                to_run = to_run.from_step(failed.index + 1);
                info!("record: {}", to_run.record());
            }
            AfterStepFailure::MountAsIs { image, uuid } => {
                warn!(
                    "after the failed step the image is still fine: booting {image} (UUID {uuid}) where it lies now; the plan resumes at a later boot"
                );
                to_run = to_run.mount_only(image, uuid);
                info!("record: {}", to_run.record());
            }
            AfterStepFailure::ImageFailed(_) => {
                drop(executor);
                return Err(failure(failed.to_string(), Some(uuid)));
            }
        }
    }
    drop(executor);
    let Some(mounted) = mounter.mounted else {
        return Err(Failure::plain("the plan mounted nothing".into()));
    };
    match newroot::check_init(&env.newroot, params.init_path()) {
        Ok(resolved) => info!("init {} ({resolved}) is there", params.init_path()),
        Err(e) => {
            let _ = mounts::umount(&env.newroot, libc::MNT_DETACH);
            return Err(failure(
                format!("the image cannot be started: {}", e.0),
                Some(mounted.1),
            ));
        }
    }
    project_identity(env, &hostpart, &params);
    record_boot(
        &hostpart,
        state,
        current_state(esp.as_deref(), state),
        &params,
        &the_plan,
        mounted,
    );
    remove_stale_overlays(&hostpart);
    if esp.is_some() {
        if let Err(e) = mounts::umount(&env.esp_mnt, 0) {
            warn!("{e}");
        }
    }
    drop(hostpart);
    newroot::keep_hostpart(&env.newroot, &env.hostpart_mnt);
    Ok(Prepared {
        init: params.init_path().to_owned(),
        mounted,
    })
}
