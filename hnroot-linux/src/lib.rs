//! hnroot's Linux-side drivers, shared by the `hnroot` CLI and the initramfs program: they do
//! the I/O (block devices, image files, hostpart, the boot-state file) that `hnroot-core` never
//! does, hand what they saw to the core, and carry out what it returns.
//! The calling order is the core's driver contract (`hnroot_core`, "The driver contract"):
//! observe → decide → write state → boot; plan → execute → after failure.
//!
//! * [`probe`]: runs the core's filesystem and partition-table probers over a device or image.
//! * [`blockdev`]: lists `/sys/class/block` and finds the device a `LABEL=`/`UUID=`/
//!   `PARTLABEL=`/`PARTUUID=` spec names, choosing among several as the core says.
//! * [`image`]: gathers the facts of an image file the way GRUB does, for the core's verdict.
//! * [`hostpart`]: hostpart's top directory, held open: observation and the operations steps
//!   need, all relative to its descriptor.
//! * [`exec`]: the one executor of plan steps, for the initramfs and the CLI.
//! * [`host_state`]: the host state on hostpart (each server's identity), its observation and
//!   the identity steps; [`fsat`]: file operations through held descriptors that never follow
//!   a link, and paths resolved inside another root.
//! * [`sysprep`]: what makes an image one host's, removed from or found in a root tree.
//! * [`esp`]: the ESP found, checked and mounted, and the boot state in it read and written;
//!   [`bootstate_file`]: reads and rewrites the boot-state file in place;
//!   [`esp_loader`]: the boot loader on the ESP, read and replaced by the core's steps.
//! * [`seal`]: a sealed image's facts (its last block, its boot files' SHA-256), the trusted
//!   keys, and the version floor on hostpart, for `hnroot_core::seal` and `hnroot_core::floor`.
//! * [`mounts`], [`loopdev`]: mount(2) and loop devices, with errors that say what they did;
//!   [`dm`]: the device-mapper device a sealed image is verified through (dm-verity).
//! * [`kexec`]: an image's kernel and initramfs loaded by `kexec_file_load` (`hnroot reboot`).

pub mod blockdev;
pub mod bootstate_file;
pub mod dm;
pub mod esp;
pub mod esp_loader;
pub mod exec;
pub mod fsat;
pub mod history_file;
pub mod host_state;
pub mod hostpart;
pub mod image;
pub mod kexec;
pub mod loopdev;
pub mod mounts;
pub mod probe;
pub mod seal;
pub mod sysprep;
