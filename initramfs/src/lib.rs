//! # hnroot-init
//!
//! The initramfs half of hnroot: a static program that runs in early boot, asks `hnroot-core`
//! for the plan, and does the I/O: commits the image switch on hostpart, loop-mounts the image
//! GRUB booted (checked by filesystem UUID) as the new root, keeps hostpart reachable at
//! `/hostpart` and `/data0`, and switches root. As PID 1 it never exits: on a fatal error it
//! says what it looked for and found, then follows the core's fallback (reboot into another
//! image after recording the failure), or stops on purpose (emergency shell if there is one).
//!
//! * [`boot`]: the sequence, up to a mounted new root.
//! * [`fallback`]: what PID 1 does when the sequence fails.
//! * [`switch_root`]: the switch itself.
//! * [`kmod`], [`loopdev`], [`mounts`], [`log`]: the system calls around them.

pub mod boot;
pub mod fallback;
pub mod kmod;
pub mod log;
pub mod loopdev;
pub mod mounts;
pub mod switch_root;
