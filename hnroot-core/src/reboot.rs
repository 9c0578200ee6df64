//! `hnroot reboot`: the next boot started from the running system with `kexec_file_load`, the
//! firmware and GRUB skipped, or through the firmware. The image a kexec starts is the boot
//! loader's own decision ([`decide()`](crate::decide::decide)) on the same observation, its
//! command line the loader's ([`crate::bootline::compose_for`], with `hnroot.via=kexec`), and
//! the boot state it writes before the jump the one GRUB writes before it loads a kernel: a
//! trial try is counted exactly as a firmware boot counts it. This module judges whether a
//! kexec may carry the decision out and what a failure at each step leaves; it never loads a
//! kernel or writes a file.
//!
//! The steps, in order ([`KexecStep`]), and what a failure at each leaves:
//!
//! 1. **Load** the chosen image's `/boot/kernel` and `/boot/initramfs` (opened read-only) with
//!    the command line: nothing has been written; the boot state is unchanged.
//! 2. **Write the boot state** the decision returns (when it returns one): the write goes into
//!    the copy that does not hold the newest record, so a failed write leaves the boot state as
//!    it was; the loaded kernel is unloaded.
//! 3. **Hand over** to the service manager (`systemctl kexec`, or the kernel's kexec reboot
//!    when no service manager runs): if it cannot start, the boot state's previous bytes are
//!    written back and the kernel unloaded.
//!
//! Every failure before the jump ends in a firmware reboot with the boot state as it was, and
//! the reason is said ([`FirmwareWhy`]). Once the jump is made, a kernel that never reaches the
//! initramfs leaves its try counted, exactly as after a firmware boot: the next boot (the
//! firmware's, after `panic=`) decides from the boot state as usual.

use crate::bootstate::BootState;
use crate::decide::{Decision, Reason};
use crate::plan::Booted;

crate::codes::stable_codes! {
    /// How the operator asked to reboot (`hnroot reboot --auto|--kexec|--firmware`).
    pub enum Method {
        /// A kexec when the running kernel can and the chosen kernel loads, else the firmware
        /// (said as a note).
        Auto = 1 => "auto",
        /// A kexec; any reason it cannot be done is a warning, and the reboot goes through the
        /// firmware all the same.
        Kexec = 2 => "kexec",
        /// Through the firmware (and GRUB).
        Firmware = 3 => "firmware",
    }
}

crate::codes::stable_codes! {
    /// Why a reboot goes through the firmware rather than by kexec.
    pub enum FirmwareWhy {
        /// `--firmware` was asked for.
        Asked = 1 => "asked",
        /// The loader's decision is that nothing is bootable: GRUB's rescue entry is where the
        /// machine should stop.
        NothingBootable = 2 => "nothing-bootable",
        /// The running kernel has no `kexec_file_load` (not built in, disabled by
        /// `kexec_load_disabled`, or not permitted).
        NoKexec = 3 => "no-kexec",
        /// The loader on the ESP could not be read for its default kernel arguments.
        LoaderDefaults = 4 => "loader-defaults",
        /// The chosen image, or its kernel or initramfs, could not be opened read-only.
        ImageUnreadable = 5 => "image-unreadable",
        /// The running kernel refused to load the chosen kernel (not a kernel, or a signature
        /// it refuses under lockdown).
        KernelRefused = 6 => "kernel-refused",
        /// The boot state could not be written.
        StateUnwritable = 7 => "state-unwritable",
        /// The service manager could not be asked to kexec.
        HandoverFailed = 8 => "handover-failed",
        /// hostpart or the boot state could not be observed: what a kexec should start is not
        /// known, GRUB will decide.
        Unobserved = 9 => "unobserved",
    }
}

impl FirmwareWhy {
    /// One sentence for the operator (the driver adds what it saw: the errno, the path).
    pub const fn sentence(self) -> &'static str {
        match self {
            FirmwareWhy::Asked => "a firmware reboot was asked for",
            FirmwareWhy::NothingBootable => {
                "the boot loader would find nothing bootable: GRUB's rescue entry shows why"
            }
            FirmwareWhy::NoKexec => {
                "the running kernel cannot load another kernel (kexec_file_load)"
            }
            FirmwareWhy::LoaderDefaults => {
                "the loader's default kernel arguments cannot be read from the ESP"
            }
            FirmwareWhy::ImageUnreadable => {
                "the chosen image's /boot/kernel or /boot/initramfs cannot be opened"
            }
            FirmwareWhy::KernelRefused => "the running kernel refused to load the chosen kernel",
            FirmwareWhy::StateUnwritable => "the boot state cannot be written",
            FirmwareWhy::HandoverFailed => "the service manager cannot be asked to kexec",
            FirmwareWhy::Unobserved => "hostpart or the boot state cannot be read: GRUB decides",
        }
    }

    /// Whether it is worth a warning: what was asked (`--kexec`, or `--auto` with a kexec
    /// that should have worked) did not happen. `--firmware` and `--auto` on a kernel without
    /// kexec are only noted.
    pub const fn warns(self, method: Method) -> bool {
        !matches!(
            (self, method),
            (FirmwareWhy::Asked, _) | (FirmwareWhy::NoKexec, Method::Auto)
        )
    }
}

/// What a kexec boots: the loader's choice, why, and the boot state to write before the jump.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct KexecBoot {
    /// The image and its UUID (`hnroot.image=`, `hnroot.uuid=`).
    pub booted: Booted,
    /// The decision's reason (`hnroot.reason=`).
    pub reason: Reason,
    /// The boot state GRUB would write before loading this kernel.
    pub write: Option<BootState>,
}

/// What a reboot asked for as `method` does with the loader's `decision`: a kexec of what it
/// chose, or a firmware reboot and why.
pub fn kexec_boot(method: Method, decision: &Decision) -> Result<KexecBoot, FirmwareWhy> {
    if method == Method::Firmware {
        return Err(FirmwareWhy::Asked);
    }
    let boot = decision.boot().ok_or(FirmwareWhy::NothingBootable)?;
    Ok(KexecBoot {
        booted: Booted {
            name: boot.image,
            uuid: boot.uuid,
        },
        reason: boot.reason,
        write: boot.write,
    })
}

crate::codes::stable_codes! {
    /// The steps of a kexec, in order.
    pub enum KexecStep {
        /// `kexec_file_load` of the image's kernel and initramfs with the command line.
        Load = 1 => "load",
        /// The boot state written.
        WriteState = 2 => "write-state",
        /// `systemctl kexec` (or the kernel's kexec reboot without a service manager).
        Handover = 3 => "handover",
    }
}

/// What to undo after a failure at a step, before the firmware reboot.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Undo {
    /// Unload the loaded kernel (`kexec_file_load` with `KEXEC_FILE_UNLOAD`).
    pub unload: bool,
    /// Write the boot state's previous bytes back.
    pub restore_state: bool,
    /// Why the reboot goes through the firmware.
    pub why: FirmwareWhy,
}

impl KexecStep {
    /// What a failure at this step leaves to undo (see the module's list).
    pub const fn after_failure(self, state_written: bool) -> Undo {
        match self {
            KexecStep::Load => Undo {
                unload: false,
                restore_state: false,
                why: FirmwareWhy::KernelRefused,
            },
            KexecStep::WriteState => Undo {
                unload: true,
                restore_state: false,
                why: FirmwareWhy::StateUnwritable,
            },
            KexecStep::Handover => Undo {
                unload: true,
                restore_state: state_written,
                why: FirmwareWhy::HandoverFailed,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstate::{StateSeen, Trial, Tries};
    use crate::decide::{decide, Config};
    use crate::name::ImageName;
    use crate::observe::{ImageSeen, Observation};
    use crate::uuid::FsUuid;

    const V1: FsUuid = FsUuid::Uuid([1; 16]);
    const V2: FsUuid = FsUuid::Uuid([2; 16]);

    fn seen(current: Option<FsUuid>, new: Option<FsUuid>, state: StateSeen) -> Observation {
        let mut o = Observation {
            state,
            ..Observation::default()
        };
        if let Some(u) = current {
            o.images[ImageName::Current.index()] = ImageSeen::Bootable(u);
        }
        if let Some(u) = new {
            o.images[ImageName::New.index()] = ImageSeen::Bootable(u);
        }
        o
    }

    #[test]
    fn a_kexec_boots_what_grub_would_and_counts_the_try_as_grub_does() {
        let committed = StateSeen::Valid(BootState::committed(V1));
        let d = decide(&seen(Some(V1), Some(V2), committed), &Config::default());
        let k = kexec_boot(Method::Kexec, &d).unwrap();
        let b = d.boot().unwrap();
        assert_eq!(k.booted.name, ImageName::New);
        assert_eq!(k.booted.uuid, V2);
        assert_eq!(k.reason, b.reason);
        assert_eq!(k.write, b.write);
        assert!(matches!(
            k.write,
            Some(BootState::Trial(Trial { image: V2, .. }))
        ));
        // The last try of a trial: the rollback GRUB would make is the one a kexec makes.
        let last = StateSeen::Valid(BootState::Trial(Trial {
            image: V2,
            tries: Tries::new(0, 3).unwrap(),
            good: Some(V1),
        }));
        let mut o = seen(Some(V2), None, last);
        o.images[ImageName::Old.index()] = ImageSeen::Bootable(V1);
        let d = decide(&o, &Config::default());
        let k = kexec_boot(Method::Auto, &d).unwrap();
        assert_eq!(k.booted.name, ImageName::Old);
        assert_eq!(k.reason, d.boot().unwrap().reason);
    }

    #[test]
    fn firmware_when_asked_or_when_nothing_boots() {
        let d = decide(&seen(Some(V1), None, StateSeen::Absent), &Config::default());
        assert_eq!(kexec_boot(Method::Firmware, &d), Err(FirmwareWhy::Asked));
        let none = decide(&seen(None, None, StateSeen::Absent), &Config::default());
        assert_eq!(
            kexec_boot(Method::Kexec, &none),
            Err(FirmwareWhy::NothingBootable)
        );
        assert!(!FirmwareWhy::NoKexec.warns(Method::Auto));
        assert!(FirmwareWhy::NoKexec.warns(Method::Kexec));
        assert!(FirmwareWhy::KernelRefused.warns(Method::Auto));
    }

    #[test]
    fn a_failure_before_the_jump_leaves_the_state_as_it_was() {
        assert_eq!(
            KexecStep::Load.after_failure(false),
            Undo {
                unload: false,
                restore_state: false,
                why: FirmwareWhy::KernelRefused
            }
        );
        assert!(!KexecStep::WriteState.after_failure(false).restore_state);
        assert!(KexecStep::WriteState.after_failure(false).unload);
        assert!(KexecStep::Handover.after_failure(true).restore_state);
        assert!(!KexecStep::Handover.after_failure(false).restore_state);
    }
}
