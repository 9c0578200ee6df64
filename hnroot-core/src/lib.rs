//! # hnroot-core
//!
//! The decision core of hnroot: which root image to boot, how to commit a switch between images
//! so that a power cut at any moment is harmless, the boot-state block both sides share, the
//! kernel command line, and the probes that find partitions by label. It is `no_std`, allocates
//! nothing, contains no `unsafe`, performs no I/O and cannot panic: GRUB (through `hnroot-ffi`),
//! the initramfs and the `hnroot` CLI observe the world, hand the observation in, and carry out
//! what comes back.
//!
//! ## The driver contract
//!
//! Every driver (GRUB's `hnroot.mod` through `hnroot-ffi`, `hnroot-init`, the `hnroot` CLI)
//! calls the core in one order and judges nothing itself. At boot: **observe** (hostpart's images
//! through [`verdict`], the boot-state block, the revert marker, into an [`Observation`]) →
//! **decide** ([`decide()`]: which image, with which command line, and the boot-state block to
//! write) → **write state** (the block, before anything is loaded) → **boot**. In Linux every
//! change to hostpart has the same shape: **plan** ([`plan()`] for the boot-time switch,
//! [`commands::stage`], [`commands::revert`], [`commands::mark_good`]: a list of [`ChangeStep`]s) →
//! **execute** (`hnroot_linux::exec`, one step at a time, the only code that writes) → **after
//! failure** ([`plan::after_step_failure`], [`after_failure()`]: reboot into which image, or
//! stop). The CLI's `explain` prints the same plan the executor would run. A driver that needs a
//! judgement the core does not offer is a gap in the core, not a place for a second copy.
//!
//! Who does each step, module by module:
//!
//! | step | GRUB (`grub-module/`) | `hnroot-init` (`initramfs/src/`) | `hnroot` CLI (`hnroot-cli/src/`) |
//! |------|------------------------|----------------------------------|----------------------------------|
//! | find hostpart and the ESP | `device.c` (labels via [`probe`], [`device::choose`]) | `params` (the command line), `drivers` (kernel modules), `hostpart`, `esp` | `locate` |
//! | observe | `observe.c` ([`verdict`] per image), `bootstate.c` | `hostpart`, `esp` (the boot state) | `hnroot_linux::hostpart`, `locate` |
//! | decide / plan | `hnroot.c` (`hnroot select`, `hnroot status`) → [`decide()`] | `switch` → [`plan()`] | `cmd::*` → [`commands`], [`plan()`] for `explain`; `cmd::reboot` → [`decide()`], [`reboot::kexec_boot`], [`bootline::compose_for`] (GRUB's decision and line, for a kexec) |
//! | carry out | `hnroot.c`: write the block, set `hnroot_*` variables for `grub.cfg` | `switch` (the executor), `rootmount` (the image as the new root), `newroot` | `cmd::*` through `hnroot_linux::exec`; `cmd::reboot` through `hnroot_linux::kexec` (load, write the block, `systemctl kexec`; [`reboot::KexecStep::after_failure`]) |
//! | host identity | — | `identity` ([`identity::plan`]) | `cmd::host` |
//! | record | the boot-state block | `record` (history), `layers` (stale writable layers) | `cmd::history`, `cmd::metrics` |
//! | after failure | the fallback entry ([`Decision`]'s fallback) | `after_failure` ([`after_failure()`]) | exit status and message |
//!
//! ## The files
//!
//! On the partition labelled `hostpart`, top directory:
//!
//! | file                    | role                                                            |
//! |-------------------------|-----------------------------------------------------------------|
//! | `hn-root.img`           | the current root image                                          |
//! | `hn-root-new.img`       | a staged update, booted directly on the next boot               |
//! | `hn-root-old.img`       | the image that was current before the last update               |
//! | `hn-root-broken.img`    | the image a revert or automatic rollback moved away from        |
//! | `hn-root-cancelled.img` | an update that never became committed (see below)               |
//! | `system-revert`         | asks for a revert on the next boot                              |
//!
//! Images are identified by their **filesystem UUID**, never by name alone: GRUB passes the UUID
//! of what it booted to the initramfs, which mounts exactly that image wherever it now lies.
//!
//! ## The rules
//!
//! 1. **One boot per update.** A staged `hn-root-new.img` boots directly; the initramfs then
//!    makes it `hn-root.img`, and the previous current becomes `hn-root-old.img`.
//! 2. **Trial.** The first boots of a new image are a trial of `N` tries (default 3) recorded in
//!    the boot-state block; each GRUB boot of the trial image consumes one; `hnroot mark-good`
//!    commits it. A trial that runs out of tries rolls back automatically to `hn-root-old.img`,
//!    keeping the failed image as `hn-root-broken.img`, exactly like a manual revert.
//! 3. **Revert.** `system-revert` with `hn-root-old.img` present boots the old image, makes it
//!    current, keeps the reverted-from image as `hn-root-broken.img` and removes the marker. A
//!    revert also cancels a staged `hn-root-new.img`: it does not boot; the initramfs renames it
//!    `hn-root-cancelled.img` (rename it back to stage it again).
//! 4. **Revert without an old image** boots the current image, says so on the console and in the
//!    kernel log, and removes the marker so it cannot fire later by surprise. No loop.
//! 5. **Never stranded.** A missing or unbootable `hn-root.img` falls back to the first readable
//!    of `hn-root-old.img`, `hn-root-cancelled.img`, `hn-root-new.img`, `hn-root-broken.img` —
//!    the broken image only when nothing else can boot.
//! 6. **The last-known-good image is kept.** No step deletes or overwrites the image last marked
//!    good while it is the only committed image: an update whose current image is not known good
//!    sets that image aside as `hn-root-cancelled.img` rather than replacing `hn-root-old.img`.
//! 7. **Identity is the filesystem UUID**, so a rename seen by one side and not the other (GRUB
//!    does not replay journals) cannot make the initramfs mount a different image than the kernel
//!    GRUB loaded. A staged image with the UUID of the current or old image is refused.
//! 8. **Crash safety.** Every intermediate state of a switch is a valid input to the decision, so
//!    "decide again after reboot" is the recovery procedure. A corrupt boot-state block puts
//!    `hn-root.img` on trial again rather than trusting it blindly.
//!
//! 9. **Every boot counts until it is healthy.** GRUB counts every boot in the boot state (a
//!    trial's in its tries, any other in the count of boots since the last healthy one), before
//!    the kernel loads; `hnroot mark-good` (after `boot-complete.target`) resets it. After `K`
//!    (default 3) boots of the committed `hn-root.img` that never reached healthy, GRUB boots
//!    the other committed image, `hn-root-old.img`, where it lies, and says why; after `K` more
//!    (or at once without one) every further boot waits first, the wait growing to a cap
//!    (rule 7 of [`decide`](mod@decide)), so the machine never spins while no image comes up
//!    and heals by itself when the cause goes away. Nothing is renamed or deleted by this.
//!
//! Each rule has a named test in `tests/rules.rs`; `tests/model.rs` checks every combination of
//! files, boot states and crash points, `tests/liveness.rs` that from every state, with any
//! step failing, the boots end healthy, stopped, or waiting — never an unbounded run of failed
//! boots while a committed image that works is there.
//!
//! ## Modules
//!
//! * [`loader`]: the boot loader's version record and its update on the ESP.
//! * [`decide`](mod@decide): GRUB's decision. * [`plan`](mod@plan): the initramfs's steps.
//! * [`bootstate`]: the boot-state block and its codec. * [`cmdline`]: kernel parameters.
//! * [`commands`]: the operator's changes (`stage`, `revert`, `mark-good`) as plans.
//! * [`probe`]: filesystem and partition-table probes (labels, UUIDs) that agree with blkid.
//! * [`delta`]: the chunk index a stage fetches only what changed by.
//! * [`verdict`]: whether an image file boots. * [`device`]: which of several same-labelled
//!   devices to use. * [`layout`]: labels, paths and names on disk. * [`loopdev`]: the
//!   block size of the loop device an image is attached to, and whether direct I/O can work.
//! * [`identity`]: each host's own state on hostpart, projected into the image at every boot
//!   and created on a server's first boot ([`hostname`], [`machineid`]); [`hostsync`]: its
//!   copy in a shared repository; [`sysprep`]: what makes an image host-specific, removed
//!   before it is published.

#![no_std]
#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    missing_docs
)]

#[cfg(test)]
extern crate std;

pub mod bootline;
pub mod bootstate;
pub mod cmdline;
pub mod codes;
pub mod commands;
pub mod counting;
pub mod decide;
pub mod delta;
pub mod device;
pub mod floor;
pub mod history;
pub mod hostname;
pub mod hostsync;
pub mod identity;
pub mod imagebuild;
pub mod install;
pub mod layout;
pub mod loader;
pub mod loopdev;
pub mod machineid;
pub mod memdisk;
pub mod menu;
pub mod minisig;
pub mod name;
pub mod observe;
pub mod overlay;
pub mod plan;
pub mod probe;
pub mod reboot;
pub mod seal;
pub mod space;
pub mod sysprep;
pub mod uuid;
pub mod verdict;
pub mod version;

pub use bootstate::{BootState, StateSeen, Trial, Tries};
pub use decide::{decide, Boot, Config, Decision, DecisionNotes, Reason, ReasonCode};
pub use layout::REVERT_MARKER;
pub use name::ImageName;
pub use observe::{ImageSeen, Observation};
pub use plan::{
    after_failure, plan, AfterFailure, Booted, ChangePlan, ChangeStep, PlanError, PlanKind,
};
pub use uuid::{FsUuid, PartUuid};
