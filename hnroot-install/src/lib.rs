//! Making hnroot disks and images, for the `hnroot` CLI (`hnroot install`, `hnroot image
//! build`) and for the system tests, which build their disks with this same code so that what
//! is tested is what is installed.
//!
//! * [`grub`]: GRUB's one EFI image with `hnroot.mod`, `grub.cfg`, SBAT and the version record
//!   built in, from the loader kit (hnroot's own GRUB) the package ships; [`pe`] adds the
//!   record's section, [`tar`] writes the memdisk.
//! * [`esp`]: the ESP's part of an install: the boot loader, the boot-state file, a firmware
//!   boot entry.
//! * [`disk`]: a whole disk: what holds it, its GPT, its filesystems.
//! * [`image`]: a root image from a directory tree; [`e2repro`] writes it as ext4, byte for
//!   byte the same at every build of one tree.
//! * [`sysprep`]: one host's identity removed from an image, and the check for it.
//! * [`initramfs`] (with [`cpio`] and [`modules`]): hnroot's own initramfs for a kernel.
//! * [`tool`]: running the system's tools (mkfs, sgdisk, ...), failures naming the command.
//!
//! What may be done, and in which steps, is `hnroot_core::install`'s to say.
//! This crate observes the disk (`disk::observe`), asks the core for the install's steps and
//! carries them out: the core's driver contract (`hnroot_core`, "The driver contract").

pub mod cpio;
pub mod disk;
pub mod e2repro;
pub mod esp;
pub mod grub;
pub mod image;
pub mod initramfs;
pub mod modules;
pub mod pe;
pub mod seal;
pub mod sysprep;
pub mod tar;
pub mod tool;
