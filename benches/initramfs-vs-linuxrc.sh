#!/usr/bin/env bash
# benches/initramfs-vs-linuxrc.sh: how long the early boot takes, kernel start -> switch_root
# -> the real init, with hnroot-init as /init (cargo xtask initramfs) against the busybox-sh
# prototype linuxrc (initramfs/linuxrc.sh, the seed's approach) doing the same steps: load the
# same modules, find hostpart, mount it, attach the image read-only, check its UUID, mount it,
# keep hostpart, switch_root. Both boot in QEMU (TCG, OVMF, GRUB, the cached Debian kernel) from
# the same root image on the same hostpart; only GRUB's initrd line differs; every boot starts
# from the same disk (-snapshot). Boots alternate between the two programs.
#
# Figures are the guest's own clock: the kernel's timestamp on "Run /init as init process" and
# the uptime the test init prints first after switch_root, so the host's load (TCG, shared
# cores) matters less than host time would. Prints each boot, the medians, the ratio
# hnroot-init / linuxrc (goal <= 0.7) and the initramfs sizes with and without modules.
#
#   benches/initramfs-vs-linuxrc.sh                 # 5 boots each (~7 min)
#   BOOTS=3 benches/initramfs-vs-linuxrc.sh --cmdline quiet
#
# Timings are printed, never asserted: this is a benchmark, not a test. Runs one QEMU at a
# time; needs what `cargo xtask deps` installs.
set -euo pipefail
cd "$(dirname "$0")/.."
BOOTS=${BOOTS:-5}
exec cargo xtask bench-initramfs --boots "$BOOTS" "$@"
