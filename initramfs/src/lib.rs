//! # hnroot-init
//!
//! The initramfs half of hnroot: a static program that runs in early boot, asks `hnroot-core`
//! for the plan, and has `hnroot-linux`'s executor carry it out: commits the image switch on
//! hostpart, loop-mounts the image GRUB booted (checked by filesystem UUID) as the new root,
//! keeps hostpart reachable at `/hostpart` and `/data0`, and switches root. As PID 1 it never
//! exits: on a fatal error it says what it looked for and found, then does what the core's
//! `after_failure` returns (reboot into another image after recording the failure), or stops on purpose for
//! a bounded time (an emergency shell once if there is one) and reboots to decide again.
//!
//! The driver contract, as every hnroot driver follows it: observe (hostpart, boot state) ->
//! ask the core (plan) -> execute (`hnroot_linux::exec`) -> on a failed step, ask the core
//! (`after_step_failure`, `after_failure`) -> carry that out.
//!
//! * [`boot`]: the sequence, up to a mounted new root, one call per job:
//!   [`params`], [`drivers`] (kernel modules), [`hostpart`], [`esp`] (the boot state),
//!   [`switch`] (the plan, carried out; [`rootmount`] mounts the image), [`newroot`] (the
//!   image's init, and hostpart inside the new root), [`identity`], [`record`] (the history),
//!   [`layers`] (writable layers of images that are gone).
//! * [`after_failure`]: what PID 1 does when the sequence fails.
//! * [`switch_root`]: the switch itself. * [`kmod`], [`log`]: module loading and logging.

pub mod after_failure;
pub mod boot;
pub mod drivers;
pub mod esp;
pub mod hostpart;
pub mod identity;
pub mod kmod;
pub mod layers;
pub mod log;
pub mod newroot;
pub mod params;
pub mod record;
pub mod rootmount;
pub mod switch;
pub mod switch_root;
