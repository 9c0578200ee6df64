//! What hnroot's system-test suites share. The suites are this package's binaries
//! (`src/bin/`: `grub-test`, `e2e`, `initramfs-tools-test`, `demo`, `bench-initramfs`, and the
//! `disk` command), each run by `cargo xtask <name>`; [`story`] holds the test images every
//! scenario draws from and the checks of one boot against what the rules say must happen.

pub mod story;
