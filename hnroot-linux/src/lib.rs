//! hnroot's Linux-side drivers, shared by the `hnroot` CLI and the initramfs program: they do
//! the I/O (block devices, image files, the boot-state file) that `hnroot-core` never does, and
//! hand what they saw to the core.
//!
//! * [`probe`]: runs the core's filesystem and partition-table probers over a device or image.
//! * [`blockdev`]: lists `/sys/class/block` and finds the device a `LABEL=`/`UUID=`/
//!   `PARTLABEL=`/`PARTUUID=` spec names.
//! * [`hostpart`]: observes hostpart's image files for the core and carries out a plan's
//!   renames, marker removal, directory sync and checkpoint.
//! * [`bootstate_file`]: reads and rewrites the boot-state file on the ESP in place.

pub mod blockdev;
pub mod bootstate_file;
pub mod hostpart;
pub mod probe;
