//! Builds what hnroot ships, for the package build (`cargo xtask deb`, `cargo xtask
//! grub-module`) and for the test harness, which boots exactly these parts (`hnroot-testkit`
//! uses this crate). Everything it makes lands under `target/hnroot-build/`; it never installs
//! anything on the build machine and never changes its apt sources.
//!
//! | module        | job                                                                      |
//! |---------------|--------------------------------------------------------------------------|
//! | [`buildenv`]  | the build cache, running host tools, cache locks                         |
//! | [`apt`]       | Debian packages and sources through a private apt configuration, pool files checked by SHA-256 |
//! | [`release`]   | the Debian releases supported, and the one pinned GRUB build             |
//! | [`grub`]      | hnroot's GRUB built from Debian's `grub2` source: modules and a static `grub-mkimage` |
//! | [`relax`]     | GOT-relative relocations made direct, for GRUB's module loader           |
//! | [`grubmod`]   | `hnroot.mod` built against that GRUB, and the loader kit the package ships |
//! | [`binaries`]  | the static `hnroot` and `hnroot-init`                                     |
//! | [`deb`]       | the Debian package                                                       |

#![deny(missing_docs)]

pub mod apt;
pub mod binaries;
pub mod buildenv;
pub mod deb;
pub mod grub;
pub mod grubmod;
pub mod relax;
pub mod release;
