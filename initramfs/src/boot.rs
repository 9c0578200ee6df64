//! The early-boot sequence, one job per module, in the order every hnroot driver follows —
//! observe, ask the core, carry out what it returns, and on a failure ask the core again:
//!
//! 1. [`params`](crate::params): the command line, read once;
//! 2. [`drivers`](crate::drivers): the disk drivers (filesystem drivers when needed);
//! 3. [`hostpart`](crate::hostpart): hostpart found and mounted;
//! 4. [`esp`](crate::esp): the ESP mounted read-only and the boot state read, once;
//! 5. hostpart observed, once (every image judged by the core, as GRUB judged it);
//! 6. [`switch`](crate::switch): the core's plan carried out by the shared executor
//!    (`hnroot_linux::exec`), the image mounted by [`rootmount`](crate::rootmount), a failed
//!    step answered by the core;
//! 7. [`newroot`](crate::newroot): the image's init checked before anything irreversible;
//! 8. [`identity`](crate::identity): this host's identity projected into the new root;
//! 9. [`record`](crate::record): the boot in the history;
//! 10. [`layers`](crate::layers): writable layers of images that are gone removed;
//! 11. [`newroot`](crate::newroot): hostpart kept reachable in the new root.
//!
//! Every step logs one line. It stops before `switch_root`, so PID 1 and the initramfs-tools
//! and dracut `mount-root` share it, and tests run it against temporary directories and real
//! loop devices. A failure says what failed and, once hostpart is mounted and the booted image
//! known, carries what [`crate::after_failure`] needs to choose another image.

use std::path::PathBuf;
use std::time::Duration;

use hnroot_core::decide::{Config, ReasonCode};
use hnroot_core::layout;
use hnroot_core::name::ImageName;
use hnroot_core::observe::Observation;
use hnroot_core::plan::PlanError;
use hnroot_core::probe::FsType;
use hnroot_core::uuid::FsUuid;
use hnroot_linux::blockdev::{FindError, Roots};
use hnroot_linux::esp::StateFile;
use hnroot_linux::exec::StepFailed;
use hnroot_linux::hostpart::HostpartError;
use hnroot_linux::image::Inspect;
use hnroot_linux::mounts::{self, SysError};

use crate::drivers::Drivers;
use crate::newroot::{self, NoInit};
use crate::switch::{self, NotSwitched};
use crate::{esp, hostpart, identity, layers, params, record};
use crate::{info, warn};

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

    pub(crate) fn inspect(&self) -> Inspect {
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

/// Why the sequence stopped.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// hostpart was not found (or several were, and the core chose none).
    #[error("hostpart: {0}")]
    Find(#[from] FindError),
    /// hostpart holds a filesystem it may not be.
    #[error(
        "hostpart {} holds {}: hnroot needs ext4, btrfs or XFS there (GRUB must read it and the \
         initramfs must checkpoint it)",
        device.display(),
        found.as_ref().map_or("no filesystem the probes recognise", FsType::as_str)
    )]
    HostpartFs {
        /// The device.
        device: PathBuf,
        /// What it holds.
        found: Option<FsType>,
    },
    /// Mounting hostpart failed.
    #[error("hostpart: {0}")]
    Mount(#[from] SysError),
    /// hostpart's top directory could not be opened or looked at.
    #[error(transparent)]
    Hostpart(#[from] HostpartError),
    /// The core has no plan for what GRUB booted.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A step of the plan failed.
    #[error(transparent)]
    Step(Box<StepFailed>),
    /// The plan ran and mounted nothing (a plan without a mount: a bug).
    #[error("the plan mounted nothing")]
    NothingMounted,
    /// The image's init is not there.
    #[error("the image cannot be started: {}", .0 .0)]
    Init(NoInit),
}

/// What the after-failure handling needs to choose another image: what hostpart and the boot
/// state hold after the failure, and the UUID that failed.
#[derive(Debug)]
pub struct FailedBoot {
    /// hostpart and boot state after the failure.
    pub obs: Observation,
    /// The image GRUB booted.
    pub failed: FsUuid,
    /// Tries per trial (`hnroot.tries=`).
    pub config: Config,
    /// The boot-state file on the ESP, if it is mounted (to record the failure).
    pub esp: Option<StateFile>,
    /// hostpart's mount point (to record the failure in the history).
    pub hostpart: PathBuf,
    /// The image GRUB booted, under the name it booted it.
    pub booted: Option<ImageName>,
    /// GRUB's reason.
    pub reason: ReasonCode,
}

/// A fatal error: why, and what the after-failure handling can use.
#[derive(Debug)]
pub struct Failure {
    /// Why.
    pub error: BootError,
    /// Present once hostpart is mounted and the booted image is known.
    pub failed_boot: Option<Box<FailedBoot>>,
}

impl Failure {
    /// One line for the console.
    pub fn message(&self) -> String {
        self.error.to_string()
    }
}

impl From<StepFailed> for BootError {
    fn from(failed: StepFailed) -> BootError {
        BootError::Step(Box::new(failed))
    }
}

impl From<BootError> for Failure {
    fn from(error: BootError) -> Failure {
        Failure {
            error,
            failed_boot: None,
        }
    }
}

/// Run the sequence up to a mounted new root.
pub fn prepare(env: &Env, cmdline_text: &str) -> Result<Prepared, Failure> {
    let (params, config) = params::read(cmdline_text);
    let mut drivers = Drivers::start(env.modules_dir.as_ref(), &env.modules_list);
    let hostpart = hostpart::mount(env, &mut drivers, &params)?;
    let (mut esp, state) = esp::read(env, &mut drivers, &params);
    let view = hostpart.observe().map_err(BootError::Hostpart)?;
    switch::log_view(&view);
    hostpart::say_space(&hostpart);
    let obs = view.observation(state);
    let failed_boot = |error, seen, failed: Option<FsUuid>, esp| Failure {
        error,
        failed_boot: failed.map(|failed| {
            Box::new(FailedBoot {
                obs: seen,
                failed,
                config,
                esp,
                hostpart: hostpart.path().to_owned(),
                booted: params.booted.map(|b| b.name),
                reason: params.reason.unwrap_or(ReasonCode::Unknown),
            })
        }),
    };
    let switched = match switch::run(
        env,
        &mut drivers,
        &hostpart,
        &mut esp,
        &obs,
        &params,
        &config,
    ) {
        Ok(switched) => switched,
        Err(NotSwitched {
            error,
            seen,
            failed,
        }) => return Err(failed_boot(error, seen, failed, esp)),
    };
    match newroot::check_init(&env.newroot, params.init_path()) {
        Ok(resolved) => info!("init {} ({resolved}) is there", params.init_path()),
        Err(e) => {
            let _ = mounts::umount(&env.newroot, libc::MNT_DETACH);
            let failed = Some(switched.mounted.1);
            return Err(failed_boot(BootError::Init(e), switched.seen, failed, esp));
        }
    }
    identity::project(env, &hostpart, &params);
    record::boot(&hostpart, state, &switched, &params);
    layers::remove_stale(&hostpart, &switched.seen);
    drop(esp);
    drop(hostpart);
    newroot::keep_hostpart(&env.newroot, &env.hostpart_mnt);
    Ok(Prepared {
        init: params.init_path().to_owned(),
        mounted: switched.mounted,
    })
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
    // A sealed image's dm-verity device, so that a retry can map it again (busy while a lazy
    // unmount above still holds it: then the retry's mount fails and says so).
    if let Ok(Some(_)) = hnroot_linux::dm::status(&env.roots.dev, hnroot_linux::dm::ROOT_NAME) {
        match hnroot_linux::dm::remove(&env.roots.dev, hnroot_linux::dm::ROOT_NAME) {
            Ok(()) => info!("removed {}", hnroot_linux::dm::ROOT_NAME),
            Err(e) => warn!("{e}"),
        }
    }
}
