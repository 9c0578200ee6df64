//! hnroot's test harness as a library of parts, one module per job; the system-test suites
//! (`tests/`, package `hnroot-system-tests`) and `cargo xtask` are built on it. It builds and
//! boots throw-away disks, kernels, initramfs and GRUB images under `target/hnroot-build/`; it
//! never touches the host's boot setup, its packages or its disks.
//!
//! | module           | job                                                                   |
//! |------------------|-----------------------------------------------------------------------|
//! | [`buildenv`]     | the build cache, running host tools                                   |
//! | [`apt`]          | Debian packages and sources through a private apt configuration        |
//! | [`blkid_corpus`] | util-linux's blkid test corpus, the probes' reference                  |
//! | [`kernel`]       | Debian's kernel, fetched once; which modules a boot needs             |
//! | [`cpio`]         | newc archives written in memory                                       |
//! | [`busybox`]      | the host's static busybox                                             |
//! | [`initramfs`]    | hnroot's standalone initramfs (`hnroot-init` as `/init`)              |
//! | [`linuxrc`]      | the busybox-sh baseline initramfs `bench-initramfs` measures against   |
//! | [`release`]      | the Debian releases supported, and each one's pinned GRUB build       |
//! | [`grubmod`]      | `hnroot.mod` built against each release's Debian GRUB source          |
//! | [`grubbin`]      | a release's Debian GRUB (modules, `grub-mkstandalone`) for images      |
//! | [`relax`]        | GOT-relative relocations made direct, for GRUB's module loader        |
//! | [`grubimage`]    | `BOOTX64.EFI`: Debian's GRUB with `hnroot.mod` and a `grub.cfg`       |
//! | [`disk`]         | root images, hostpart, the ESP and the GPT disk around them           |
//! | [`signing`]      | the test images' publisher: a minisign key pair and signatures        |
//! | [`bootparts`]    | the cached kernel, initramfs, GRUB image, CLI and test images          |
//! | [`qemu`]         | one QEMU under OVMF with its serial console captured                  |
//! | [`console`]      | boots read off the serial console                                     |
//! | [`inspect`]      | a disk read offline after QEMU stopped                                |
//! | [`linuxview`]    | a disk's hostpart as hnroot-linux observes it (read-only loop mount)  |
//! | [`server`]       | a simulated server's disk, its hostpart offline, its host state, tree edits |
//! | [`http`]         | a file server on the host's loopback for guests on QEMU's user network |
//! | [`nginx`]        | Debian's nginx on the host's loopback (Range requests, an access log)  |
//! | [`ganesha`]      | an NFSv4 export on the host's loopback (NFS-Ganesha, user space)       |

#![deny(missing_docs)]

pub mod apt;
pub mod blkid_corpus;
pub mod bootparts;
pub mod buildenv;
pub mod busybox;
pub mod console;
pub mod deb;
pub mod debian;
pub use hnroot_install::cpio;
pub mod disk;
pub mod ganesha;
pub mod grubbin;
pub mod grubimage;
pub mod grubmod;
pub mod http;
pub mod initramfs;
pub mod inspect;
pub mod kernel;
pub mod linuxrc;
pub mod linuxview;
pub mod nginx;
pub mod qemu;
pub mod relax;
pub mod release;
pub mod server;
pub mod signing;
