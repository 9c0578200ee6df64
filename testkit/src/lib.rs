//! hnroot's test harness as a library of parts, one module per job; the system-test suites
//! (`tests/`, package `hnroot-system-tests`) and `cargo xtask` are built on it. It builds and
//! boots throw-away disks, kernels, initramfs and GRUB images under `target/hnroot-build/`; it
//! never touches the host's boot setup, its packages or its disks.
//!
//! | module           | job                                                                   |
//! |------------------|-----------------------------------------------------------------------|
//! | [`buildenv`], [`apt`], [`release`], [`grub`], [`grubmod`], [`relax`], [`deb`] | the product's own build (`hnroot-build`), re-exported: the cache and host tools, apt, the releases, hnroot's GRUB, `hnroot.mod` and the loader kit, the package |
//! | [`blkid_corpus`] | util-linux's blkid test corpus, the probes' reference                  |
//! | [`kernel`]       | Debian's kernel, fetched once; which modules a boot needs             |
//! | [`cpio`]         | newc archives written in memory                                       |
//! | [`busybox`]      | the host's static busybox                                             |
//! | [`initramfs`]    | hnroot's standalone initramfs (`hnroot-init` as `/init`)              |
//! | [`linuxrc`]      | the busybox-sh baseline initramfs `bench-initramfs` measures against   |
//! | [`grubimage`]    | `BOOTX64.EFI` from the loader kit: hnroot's GRUB with a `grub.cfg`     |
//! | [`disk`]         | root images, hostpart, the ESP and the GPT disk around them           |
//! | [`signing`]      | the test images' publisher: a minisign key pair and signatures        |
//! | [`bootparts`]    | the cached kernel, initramfs, GRUB image, CLI and test images          |
//! | [`previous`]     | the previous hnroot, built from a pinned older commit (the loader's compatibility tests) |
//! | [`qemu`]         | one QEMU under OVMF with its serial console captured                  |
//! | [`secureboot`]   | the test operator's Secure Boot key and an OVMF store that trusts it   |
//! | [`console`]      | boots read off the serial console                                     |
//! | [`inspect`]      | a disk read offline after QEMU stopped                                |
//! | [`linuxview`]    | a disk's hostpart as hnroot-linux observes it (read-only loop mount)  |
//! | [`server`]       | a simulated server's disk, its hostpart offline, its host state, tree edits |
//! | [`http`]         | a file server on the host's loopback for guests on QEMU's user network |
//! | [`nginx`]        | Debian's nginx on the host's loopback (Range requests, an access log)  |
//! | [`ganesha`]      | an NFSv4 export on the host's loopback (NFS-Ganesha, user space)       |

#![deny(missing_docs)]

pub use hnroot_build::{apt, buildenv, deb, grub, grubmod, relax, release};
pub mod blkid_corpus;
pub mod bootparts;
pub mod busybox;
pub mod console;
pub mod debian;
pub use hnroot_install::cpio;
pub mod disk;
pub mod ganesha;
pub mod grubimage;
pub mod http;
pub mod initramfs;
pub mod inspect;
pub mod kernel;
pub mod linuxrc;
pub mod linuxview;
pub mod nginx;
pub mod previous;
pub mod qemu;
pub mod secureboot;
pub mod server;
pub mod signing;
