//! The early-boot sequence, in order: read the command line, load modules, find and mount
//! hostpart, read the boot state from the ESP, ask the core for the plan, carry it out (renames,
//! sync, checkpoint, boot state), attach and check the image, mount it as the new root, and keep
//! hostpart and `/data0` reachable in it. Every step logs one line. It stops before
//! `switch_root`, so PID 1 and the initramfs-tools `mountroot` share it, and tests run it
//! against temporary directories and real loop devices.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hnroot_core::bootstate::StateSeen;
use hnroot_core::cmdline::{self, BootParams, DeviceSpec};
use hnroot_core::decide::Config;
use hnroot_core::name::ImageName;
use hnroot_core::observe::Observation;
use hnroot_core::plan::{plan, Booted, Plan, Step};
use hnroot_core::probe::{FsOutcome, FsType};
use hnroot_core::uuid::FsUuid;
use hnroot_linux::blockdev::{self, FindError, Found, Roots};
use hnroot_linux::bootstate_file;
use hnroot_linux::hostpart::Hostpart;
use hnroot_linux::probe::Device;

use crate::mounts;
use crate::{error, info, kmod, loopdev, warn};

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
    /// `/lib/modules/<release>` in the initramfs, if modules are to be loaded.
    pub modules_dir: Option<PathBuf>,
    /// The list of modules to load.
    pub modules_list: PathBuf,
    /// Pause between scans while waiting for a device.
    pub poll: Duration,
    /// Longest wait for the ESP once hostpart is there (it is usually on the same disk).
    pub esp_wait: Duration,
    /// For tests: stop right after this many plan steps, as a power cut would (nothing after
    /// it runs, nothing is cleaned up). `None` in every real boot.
    pub stop_after_step: Option<usize>,
}

impl Env {
    /// The layout inside hnroot's own initramfs.
    pub fn initramfs(release: &str) -> Env {
        Env {
            roots: Roots::default(),
            hostpart_mnt: PathBuf::from("/hostpart"),
            esp_mnt: PathBuf::from("/run/hnroot/esp"),
            newroot: PathBuf::from("/newroot"),
            modules_dir: Some(PathBuf::from("/lib/modules").join(release)),
            modules_list: PathBuf::from("/etc/hnroot/modules"),
            poll: Duration::from_millis(50),
            esp_wait: Duration::from_secs(5),
            stop_after_step: None,
        }
    }
}

/// A mounted new root, ready for `switch_root`.
#[derive(Debug)]
pub struct Prepared {
    /// The init to exec in it.
    pub init: String,
    /// The image mounted, and its UUID.
    pub mounted: (ImageName, FsUuid),
}

/// What the fallback needs to choose another image: the observation after the failure, and
/// the UUID that failed.
#[derive(Debug)]
pub struct FallbackContext {
    /// hostpart and boot state as seen after the failure.
    pub obs: Observation,
    /// The image GRUB booted.
    pub failed: FsUuid,
    /// Tries per trial (`hnroot.tries=`).
    pub config: Config,
    /// The ESP mount point, if it is mounted (to write the boot state).
    pub esp: Option<PathBuf>,
}

/// A fatal error: what was looked for and found, and what the fallback can use.
#[derive(Debug)]
pub struct Failure {
    /// One line for the console.
    pub message: String,
    /// Present once hostpart is mounted and the booted image is known.
    pub fallback: Option<Box<FallbackContext>>,
}

impl Failure {
    fn plain(message: String) -> Failure {
        Failure {
            message,
            fallback: None,
        }
    }
}

/// Wait for the device `spec` names, at most `timeout`. Ambiguity fails at once: waiting will
/// not make it go away.
fn wait_for(
    env: &Env,
    what: &str,
    spec: &DeviceSpec<'_>,
    pin: Option<hnroot_core::PartUuid>,
    timeout: Duration,
) -> Result<(Found, Duration), FindError> {
    let start = Instant::now();
    loop {
        match blockdev::find_in(&env.roots, spec, pin) {
            Ok(found) => return Ok((found, start.elapsed())),
            Err(FindError::NotFound { .. }) if start.elapsed() < timeout => {
                std::thread::sleep(env.poll);
            }
            Err(e) => {
                if matches!(e, FindError::NotFound { .. }) {
                    error!(
                        "{what}: gave up after {:.1} s",
                        start.elapsed().as_secs_f32()
                    );
                }
                return Err(e);
            }
        }
    }
}

/// The filesystem type to mount, from what the probes found.
fn mount_type(found: &Found) -> Option<FsType> {
    found.fs.as_ref().map(|f| f.fs_type)
}

fn describe_found(found: &Found) -> String {
    let mut s = format!("{}", found.node.display());
    let mut extra = Vec::new();
    if let Some(fs) = &found.fs {
        extra.push(fs.fs_type.as_str().to_owned());
        if let Some(label) = &fs.label {
            extra.push(format!(
                "LABEL={}",
                String::from_utf8_lossy(label.as_bytes())
            ));
        }
    }
    if let Some(partuuid) = found.part.as_ref().and_then(|p| p.partuuid) {
        extra.push(format!("PARTUUID={partuuid}"));
    }
    if !extra.is_empty() {
        s.push_str(&format!(" ({})", extra.join(", ")));
    }
    s
}

/// Kernel modules: everything on the wanted list except filesystem drivers at start (block
/// devices, loop); each filesystem driver only when a filesystem of its type is about to be
/// mounted, since the probes need no driver. btrfs alone costs seconds at load time (its RAID6
/// code benchmarks itself), which an ext4 hostpart never pays.
struct Drivers {
    modules: Option<kmod::Modules>,
    /// Filesystem drivers on the wanted list, loaded on demand.
    deferred: Vec<String>,
}

/// Module names that drive a filesystem (and their code pages).
fn is_fs_driver(name: &str) -> bool {
    matches!(
        name,
        "ext4" | "ext3" | "ext2" | "btrfs" | "xfs" | "vfat" | "fat" | "msdos"
    ) || name.starts_with("nls_")
}

/// The modules a filesystem type needs to be mounted (FAT: the driver and the code pages its
/// default mount options use).
fn fs_modules(t: FsType) -> &'static [&'static str] {
    match t {
        FsType::Ext2 | FsType::Ext3 | FsType::Ext4 | FsType::Ext4dev => &["ext4"],
        FsType::Btrfs => &["btrfs"],
        FsType::Xfs => &["xfs"],
        FsType::Vfat => &[
            "vfat",
            "nls_cp437",
            "nls_ascii",
            "nls_iso8859_1",
            "nls_utf8",
        ],
        FsType::Jbd => &[],
    }
}

fn log_loaded(what: &str, loaded: &[kmod::Loaded], errors: Vec<kmod::KmodError>, start: Instant) {
    let inserted: Vec<&str> = loaded
        .iter()
        .filter_map(|l| match l {
            kmod::Loaded::Inserted(n) => Some(n.as_str()),
            kmod::Loaded::Present(_) => None,
        })
        .collect();
    info!(
        "modules: loaded {} {what}({}) in {:.2} s, {} already present",
        inserted.len(),
        inserted.join(" "),
        start.elapsed().as_secs_f32(),
        loaded.len() - inserted.len()
    );
    for e in errors {
        warn!("modules: {e}; continuing (what it drives may not appear or mount)");
    }
}

impl Drivers {
    fn none() -> Drivers {
        Drivers {
            modules: None,
            deferred: Vec::new(),
        }
    }

    /// Index the initramfs's modules and load all but the filesystem drivers.
    fn start(env: &Env) -> Drivers {
        let Some(dir) = &env.modules_dir else {
            return Drivers::none();
        };
        if !dir.is_dir() {
            info!(
                "modules: none in this initramfs for this kernel ({}): relying on built-in drivers",
                dir.display()
            );
            return Drivers::none();
        }
        let wanted = match kmod::read_wanted(&env.modules_list) {
            Ok(w) => w,
            Err(e) => {
                warn!(
                    "modules: cannot read {}: {e}; loading none",
                    env.modules_list.display()
                );
                return Drivers::none();
            }
        };
        let modules = match kmod::Modules::open(dir) {
            Ok(m) => m,
            Err(e) => {
                warn!("modules: {e}; loading none");
                return Drivers::none();
            }
        };
        let (deferred, now): (Vec<String>, Vec<String>) = wanted
            .into_iter()
            .partition(|n| is_fs_driver(&kmod::module_name(n)));
        let start = Instant::now();
        let (loaded, errors) = modules.load(&now);
        log_loaded("", &loaded, errors, start);
        let deferred = deferred.iter().map(|n| kmod::module_name(n)).collect();
        Drivers {
            modules: Some(modules),
            deferred,
        }
    }

    /// Load what mounting a `t` filesystem needs, if this initramfs has it and it is not
    /// loaded yet.
    fn for_fs(&mut self, t: FsType) {
        let Some(modules) = &self.modules else { return };
        let wanted: Vec<String> = fs_modules(t)
            .iter()
            .filter(|m| self.deferred.iter().any(|d| d == *m) && modules.has(m))
            .map(|m| (*m).to_owned())
            .collect();
        if wanted.is_empty() {
            return;
        }
        self.deferred.retain(|d| !wanted.contains(d));
        let start = Instant::now();
        let (loaded, errors) = modules.load(&wanted);
        log_loaded(&format!("for {} ", t.as_str()), &loaded, errors, start);
    }
}

/// Find hostpart: the spec on the command line (GRUB pins `PARTUUID=`), then `LABEL=hostpart`
/// with that pin as a tie-breaker.
fn find_hostpart(env: &Env, params: &BootParams<'_>) -> Result<Found, Failure> {
    let spec = params.hostpart_spec();
    let timeout = Duration::from_secs(u64::from(params.timeout()));
    let pin = match spec {
        DeviceSpec::PartUuid(p) => Some(p),
        _ => None,
    };
    info!(
        "hostpart: looking for {} (up to {} s)",
        blockdev::describe(&spec),
        params.timeout()
    );
    match wait_for(env, "hostpart", &spec, pin, timeout) {
        Ok((found, took)) => {
            info!(
                "hostpart: found {} after {:.1} s",
                describe_found(&found),
                took.as_secs_f32()
            );
            Ok(found)
        }
        Err(FindError::NotFound { .. }) if pin.is_some() => {
            let label = DeviceSpec::Label(cmdline::DEFAULT_HOSTPART_LABEL);
            warn!("hostpart: {spec} not found; trying {label}");
            match blockdev::find_in(&env.roots, &label, pin) {
                Ok(found) => {
                    warn!(
                        "hostpart: using {} found by label, not by the PARTUUID GRUB passed",
                        describe_found(&found)
                    );
                    Ok(found)
                }
                Err(e) => Err(Failure::plain(format!("hostpart: {e}"))),
            }
        }
        Err(e) => Err(Failure::plain(format!("hostpart: {e}"))),
    }
}

fn mount_hostpart(
    env: &Env,
    drivers: &mut Drivers,
    params: &BootParams<'_>,
    found: &Found,
) -> Result<(), Failure> {
    let fs = match mount_type(found) {
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

/// Mount the ESP read-only and read the boot state; on any problem, the state is absent and
/// nothing will be written.
fn read_boot_state(
    env: &Env,
    drivers: &mut Drivers,
    params: &BootParams<'_>,
) -> (StateSeen, Option<PathBuf>) {
    let spec = params.esp_spec();
    let found = match wait_for(env, "ESP", &spec, None, env.esp_wait) {
        Ok((found, _)) => found,
        Err(e) => {
            warn!("boot state: ESP not available ({e}); deciding without it and writing nothing");
            return (StateSeen::Absent, None);
        }
    };
    // The boot-state file must keep its blocks when rewritten, so GRUB can write it in place:
    // FAT (the ESP) or ext2/3/4, never a copy-on-write filesystem.
    let fs = match mount_type(&found) {
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
    let file = env.esp_mnt.join(bootstate_file::ESP_RELATIVE_PATH);
    match bootstate_file::seen(&file) {
        Ok(state) => {
            match &state {
                StateSeen::Valid(s) => info!(
                    "boot state: {s} (from {} {})",
                    found.node.display(),
                    bootstate_file::ESP_RELATIVE_PATH
                ),
                StateSeen::Absent => info!("boot state: none recorded in {}", found.node.display()),
                StateSeen::Corrupt => warn!("boot state: corrupt in {}", found.node.display()),
            }
            (state, Some(env.esp_mnt.clone()))
        }
        Err(e) => {
            warn!("boot state: {e}; deciding without it");
            (StateSeen::Absent, Some(env.esp_mnt.clone()))
        }
    }
}

/// Write the boot state: remount the ESP read-write for the write only.
pub fn write_boot_state(esp: Option<&Path>, state: &hnroot_core::BootState) -> Result<(), String> {
    let Some(esp) = esp else {
        return Err("the ESP is not mounted".into());
    };
    mounts::remount(esp, libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC)
        .map_err(|e| e.to_string())?;
    let result = bootstate_file::write(&esp.join(bootstate_file::ESP_RELATIVE_PATH), state)
        .map_err(|e| e.to_string());
    if let Err(e) = mounts::remount(
        esp,
        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
    ) {
        warn!("boot state: {e}");
    }
    result
}

/// Attach the image, check its UUID on the loop device, mount it at the new root.
fn mount_image(
    env: &Env,
    drivers: &mut Drivers,
    params: &BootParams<'_>,
    hostpart: &Hostpart,
    image: ImageName,
    uuid: FsUuid,
) -> Result<(), String> {
    let (file, size) = match hostpart.open_image(image) {
        Ok(Some(f)) => f,
        Ok(None) => return Err(format!("{image} vanished")),
        Err(refused) => return Err(format!("{image}: {}", refused.why)),
    };
    let lo = loopdev::attach(&env.roots.dev, &file, image.file_name(), params.image_rw)
        .map_err(|e| format!("attach {image} to a loop device: {e}"))?;
    let mode = if params.image_rw {
        "read-write"
    } else {
        "read-only"
    };
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
        other => {
            let what = match other {
                FsOutcome::Ambivalent(types) => format!("ambiguous superblocks ({types})"),
                FsOutcome::Other(t) => format!("a {t} volume"),
                _ => "no filesystem the probes know".to_owned(),
            };
            return Err(format!("{image} on {}: {what}", lo.node.display()));
        }
    };
    drivers.for_fs(info.fs_type);
    mounts::mkdir_p(&env.newroot).map_err(|e| e.to_string())?;
    let flags = if params.image_rw { 0 } else { libc::MS_RDONLY };
    mounts::mount(
        &lo.node,
        &env.newroot,
        Some(info.fs_type.as_str()),
        flags,
        None,
    )
    .map_err(|e| e.to_string())?;
    info!(
        "mounted {} ({}, UUID={uuid}) {} at {}",
        lo.node.display(),
        info.fs_type.as_str(),
        if params.image_rw { "rw" } else { "ro" },
        env.newroot.display()
    );
    Ok(())
}

/// Keep hostpart reachable at `<newroot>/hostpart` and make `/data0` resolve to its `data/`.
fn keep_hostpart(env: &Env) {
    let target = env.newroot.join("hostpart");
    if !target.is_dir() {
        error!(
            "the image has no /hostpart directory: hostpart stays mounted but out of reach after switch_root (add /hostpart to the image)"
        );
        return;
    }
    match mounts::move_mount(&env.hostpart_mnt, &target) {
        Ok(()) => info!("moved hostpart to {}", target.display()),
        Err(e) => {
            error!("{e}: hostpart will not be reachable in the new root");
            return;
        }
    }
    let data = target.join("data");
    if !data.is_dir() {
        match std::fs::create_dir(&data) {
            Ok(()) => info!("created {}", data.display()),
            Err(e) => warn!("cannot create {}: {e}", data.display()),
        }
    }
    let data0 = env.newroot.join("data0");
    match std::fs::symlink_metadata(&data0) {
        Ok(m) if m.file_type().is_symlink() => match std::fs::read_link(&data0) {
            Ok(t) if t == Path::new("/hostpart/data") => {
                info!("/data0 -> /hostpart/data (symlink in the image)")
            }
            Ok(t) => warn!(
                "/data0 in the image points to {}, not /hostpart/data",
                t.display()
            ),
            Err(e) => warn!("cannot read the /data0 link: {e}"),
        },
        Ok(m) if m.is_dir() => match mounts::bind(&data, &data0) {
            Ok(()) => info!("bind-mounted /hostpart/data on /data0"),
            Err(e) => warn!("{e}: /data0 is an empty directory"),
        },
        _ => warn!("the image has no /data0: add a symlink /data0 -> /hostpart/data"),
    }
}

fn fallback_context(
    hostpart: &Hostpart,
    state: StateSeen,
    failed: FsUuid,
    config: Config,
    esp: Option<PathBuf>,
) -> FallbackContext {
    let obs = match hostpart.observe() {
        Ok(seen) => seen.observation(state),
        Err(e) => {
            warn!("cannot look at hostpart again ({e}): the fallback sees nothing");
            Observation {
                state,
                ..Observation::default()
            }
        }
    };
    FallbackContext {
        obs,
        failed,
        config,
        esp,
    }
}

/// Undo the mounts a failed [`prepare`] may have left, so that a retry (initramfs-tools calls
/// `mount-root` again after its panic shell) starts clean. Lazy unmounts: the image's loop
/// device can keep hostpart busy.
pub fn unwind(env: &Env) {
    let targets = [
        env.newroot.join("hostpart"),
        env.newroot.clone(),
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
    let mut drivers = Drivers::start(env);

    let found = find_hostpart(env, &params)?;
    mount_hostpart(env, &mut drivers, &params, &found)?;
    let hostpart = Hostpart::open(&env.hostpart_mnt).map_err(|e| Failure::plain(e.to_string()))?;
    let (state, esp) = read_boot_state(env, &mut drivers, &params);

    let seen = hostpart
        .observe()
        .map_err(|e| Failure::plain(e.to_string()))?;
    for name in ImageName::ALL {
        match seen.image(name) {
            hnroot_linux::hostpart::ImageFile::Absent => {}
            hnroot_linux::hostpart::ImageFile::Readable {
                fs_type,
                uuid,
                size,
                ..
            } => {
                info!(
                    "hostpart: {name}: {} UUID={uuid} ({} MiB)",
                    fs_type.as_str(),
                    size >> 20
                )
            }
            hnroot_linux::hostpart::ImageFile::Unreadable { why, .. } => {
                warn!("hostpart: {name}: unusable: {why}")
            }
        }
    }
    if seen.revert_requested {
        info!("hostpart: system-revert present");
    }
    let obs = seen.observation(state);
    let failure = |message: String, failed: Option<FsUuid>| Failure {
        message,
        fallback: failed
            .map(|f| Box::new(fallback_context(&hostpart, state, f, config, esp.clone()))),
    };
    let the_plan: Plan = plan(&obs, params.booted)
        .map_err(|e| failure(e.to_string(), params.booted.map(|b: Booted| b.uuid)))?;
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

    let total = the_plan.steps.len();
    let mut mounted = None;
    for (i, step) in the_plan.steps.iter().enumerate() {
        let n = i + 1;
        if env.stop_after_step == Some(i) {
            return Err(Failure::plain(format!(
                "stopped before step {n}/{total} ({step}) on request"
            )));
        }
        let result: Result<String, String> = match *step {
            Step::Rename { from, to, replace } => hostpart
                .rename(from, to, replace)
                .map(|()| "ok".to_owned())
                .map_err(|e| e.to_string()),
            Step::RemoveRevertMarker => hostpart
                .remove_revert_marker()
                .map(|()| "ok".to_owned())
                .map_err(|e| e.to_string()),
            Step::SyncDir => hostpart
                .sync_dir()
                .map(|()| "ok".to_owned())
                .map_err(|e| e.to_string()),
            Step::Checkpoint => hostpart
                .checkpoint()
                .map(str::to_owned)
                .map_err(|e| e.to_string()),
            Step::WriteBootState(s) => match write_boot_state(esp.as_deref(), &s) {
                Ok(()) => Ok("ok".to_owned()),
                // Not fatal: the core keeps every intermediate state valid without it.
                Err(e) => Ok(format!("NOT recorded ({e})")),
            },
            Step::Mount { image, uuid } => {
                mount_image(env, &mut drivers, &params, &hostpart, image, uuid).map(|()| {
                    mounted = Some((image, uuid));
                    "ok".to_owned()
                })
            }
        };
        match result {
            Ok(how) => info!("step {n}/{total}: {step}: {how}"),
            Err(e) => {
                error!("step {n}/{total}: {step}: FAILED: {e}");
                let booted = params
                    .booted
                    .map(|b| b.uuid)
                    .or(obs.readable(ImageName::Current));
                return Err(failure(format!("{step}: {e}"), booted));
            }
        }
    }
    let Some(mounted) = mounted else {
        return Err(Failure::plain("the plan mounted nothing".into()));
    };
    if esp.is_some() {
        if let Err(e) = mounts::umount(&env.esp_mnt, 0) {
            warn!("{e}");
        }
    }
    drop(hostpart);
    keep_hostpart(env);
    Ok(Prepared {
        init: params.init_path().to_owned(),
        mounted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_filesystem_type_names_only_deferred_drivers() {
        for t in FsType::ALL {
            for m in fs_modules(t) {
                assert!(is_fs_driver(m), "{m} for {t} would never be deferred");
            }
        }
        assert!(
            !is_fs_driver("loop") && !is_fs_driver("virtio_blk") && !is_fs_driver("crc32c_generic")
        );
        assert_eq!(
            fs_modules(FsType::Ext3),
            ["ext4"],
            "ext2/3 are served by the ext4 driver"
        );
    }
}
