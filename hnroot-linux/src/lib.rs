//! hnroot's Linux-side drivers, shared by the `hnroot` CLI and the initramfs program: they do
//! the I/O (block devices, image files, the boot-state file) that `hnroot-core` never does, and
//! hand what they saw to the core.
