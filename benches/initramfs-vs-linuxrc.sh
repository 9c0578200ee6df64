#!/usr/bin/env bash
# benches/initramfs-vs-linuxrc.sh: how long the early boot takes, kernel start -> switch_root
# -> the real init, with hnroot-init as /init (cargo xtask initramfs) against the busybox-sh
# prototype linuxrc (benches/linuxrc.sh, the seed's approach) doing the same steps: load the
# same modules, find hostpart, mount it, attach the image read-only, check its UUID, mount it,
# keep hostpart, switch_root. Both boot in QEMU (TCG, OVMF, Debian's GRUB with hnroot.mod, the
# cached Debian kernel), each from its own root image, alike but for /boot/initramfs, on a disk
# built the same way: hnroot-init through the production grub-module/grub.cfg, the linuxrc
# through a few lines of grub.cfg passing hnroot.hostpart=LABEL=hostpart (busybox's findfs cannot
# resolve the production PARTUUID=; tests/src/bin/bench-initramfs.rs says more). Every boot
# starts from the same disk (-snapshot). Boots alternate between the two programs.
#
# Figures are the guest's own clock: the kernel's timestamp on "Run /init as init process" and
# the uptime the test init prints first after switch_root. Two rounds:
#   1. the guest clock follows the host's (realistic, I/O included, but under TCG the host's
#      load still shows): BOOTS boots each (default 5);
#   2. the guest clock counts instructions (QEMU -icount shift=ICOUNT_SHIFT, default 3: 8 ns
#      per instruction): host load no longer matters and one boot repeats the next to the
#      millisecond; ICOUNT_BOOTS boots each (default 2; 0 skips the round).
# Each round prints every boot, the medians, the ratio hnroot-init / linuxrc (goal <= 0.7),
# hnroot-init's own module-loading time, and the initramfs sizes with and without modules.
#
#   benches/initramfs-vs-linuxrc.sh                      # ~4 + ~3 min
#   BOOTS=3 ICOUNT_BOOTS=0 benches/initramfs-vs-linuxrc.sh
#   benches/initramfs-vs-linuxrc.sh --hnroot-without btrfs   # what on-demand fs drivers give
#
# Arguments go to both rounds (`cargo xtask bench-initramfs --help`). Timings are printed,
# never asserted: this is a benchmark, not a test. One QEMU at a time; needs what
# `cargo xtask deps` installs.
set -euo pipefail
cd "$(dirname "$0")/.."
BOOTS=${BOOTS:-5}
ICOUNT_BOOTS=${ICOUNT_BOOTS:-2}
ICOUNT_SHIFT=${ICOUNT_SHIFT:-3}
cargo xtask bench-initramfs --boots "$BOOTS" "$@"
if [ "$ICOUNT_BOOTS" -gt 0 ]; then
    cargo xtask bench-initramfs --boots "$ICOUNT_BOOTS" --icount "$ICOUNT_SHIFT" "$@"
fi
