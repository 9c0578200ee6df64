#!/usr/bin/env bash
# benches/find-vs-blkid.sh: how long finding a device by label takes, whole process against
# whole process, side by side: `hnroot find LABEL=x` against `blkid -c /dev/null -L x` and
# busybox `findfs LABEL=x`, all without a cache, as at boot. (`-c /dev/null` alone does not stop
# `blkid -L` from reading the system cache /run/blkid/blkid.tab and probing only the device it
# names there; the script sets BLKID_FILE=/dev/null so that blkid probes every device, as in an
# initramfs, where there is no cache file.)
#
# Makes N (default 64) filesystem images of mixed types (vfat, ext4, xfs, btrfs; one of them
# labelled x), attaches them to loop devices (needs root; loop devices it did not attach are
# left alone), checks that the three tools find the same device, then times each with
# hyperfine over RUNS runs (default 50) and prints the ratios hnroot / blkid (goal: at most 0.5)
# and hnroot / findfs (goal: at most 1.0; findfs checks no checksums, hnroot still verifies
# every one it reads), on the mean and on the median (on a shared machine a few runs that wait
# for a CPU move the mean). hnroot is the static musl binary the package and the initramfs
# ship (as busybox is static): `cargo build --release --target x86_64-unknown-linux-musl`.
# Without root (or loop devices) it falls back to image files: hnroot looks at a fake sysfs
# tree whose nodes are the images, against `blkid -p` over the same files; findfs cannot run
# on files and is left out.
#
#   benches/find-vs-blkid.sh              # N=64 RUNS=50
#   N=16 RUNS=20 benches/find-vs-blkid.sh
#
# Timings are printed, never asserted: this is a benchmark, not a test.
set -euo pipefail

N=${N:-64}
RUNS=${RUNS:-50}
TARGET=${TARGET:-x}
cd "$(dirname "$0")/.."

for tool in hyperfine mkfs.vfat mkfs.ext4 mkfs.xfs mkfs.btrfs blkid python3 musl-gcc; do
    command -v "$tool" >/dev/null || { echo "find-vs-blkid: $tool is missing (cargo xtask deps)" >&2; exit 1; }
done

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
CC_x86_64_unknown_linux_musl=musl-gcc cargo build --quiet --release --target x86_64-unknown-linux-musl -p hnroot-cli
HNROOT=$CARGO_TARGET_DIR/x86_64-unknown-linux-musl/release/hnroot

work=$(mktemp -d /tmp/hnroot-find-bench.XXXXXX)
attached=()
cleanup() {
    for dev in "${attached[@]}"; do
        losetup -d "$dev" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

echo "find-vs-blkid: making $N images in $work"
target_index=$((N / 2))
for i in $(seq 0 $((N - 1))); do
    img=$work/img$i
    label=bench$i
    [ "$i" -eq "$target_index" ] && label=$TARGET
    case $((i % 4)) in
        0) truncate -s 32M "$img"; mkfs.vfat -n "${label:0:11}" "$img" >/dev/null ;;
        1) truncate -s 32M "$img"; mkfs.ext4 -q -F -L "$label" "$img" ;;
        2) truncate -s 300M "$img"; mkfs.xfs -q -f -L "${label:0:12}" "$img" ;;
        3) truncate -s 128M "$img"; mkfs.btrfs -q -f -L "$label" "$img" >/dev/null ;;
    esac
done

# The images' writeback done before any timing (it would otherwise compete with the runs).
sync

# No blkid cache (see above). hnroot and busybox keep none.
export BLKID_FILE=/dev/null

mode=files
if [ "$(id -u)" -eq 0 ] && losetup --find >/dev/null 2>&1; then
    mode=loop
    for i in $(seq 0 $((N - 1))); do
        attached+=("$(losetup --find --show --read-only "$work/img$i")")
    done
    udevadm settle 2>/dev/null || true
fi

if [ "$mode" = loop ]; then
    want=${attached[$target_index]}
    got_hnroot=$("$HNROOT" find "LABEL=$TARGET")
    got_blkid=$(blkid -c /dev/null -L "$TARGET")
    commands=("$HNROOT find LABEL=$TARGET" "blkid -c /dev/null -L $TARGET")
    names=(hnroot blkid)
    if command -v busybox >/dev/null; then
        got_findfs=$(busybox findfs "LABEL=$TARGET")
        [ "$got_findfs" = "$want" ] || { echo "busybox findfs found '$got_findfs', expected $want" >&2; exit 1; }
        commands+=("busybox findfs LABEL=$TARGET")
        names+=(findfs)
    fi
    devices=$(ls /sys/class/block | wc -l)
else
    # A fake sysfs tree whose device nodes are the image files.
    sys=$work/sys/class/block
    mkdir -p "$sys" "$work/dev"
    for i in $(seq 0 $((N - 1))); do
        mkdir -p "$work/devices/img$i"
        echo $(( $(stat -c %s "$work/img$i") / 512 )) > "$work/devices/img$i/size"
        ln -s "$work/devices/img$i" "$sys/img$i"
        ln -s "$work/img$i" "$work/dev/img$i"
    done
    want=$work/dev/img$target_index
    got_hnroot=$("$HNROOT" find "LABEL=$TARGET" --sys-class-block "$sys" --dev "$work/dev")
    got_blkid=$want
    blkid -p -o value -s LABEL "$work/dev/img$target_index" | grep -qx "$TARGET"
    files=$(for i in $(seq 0 $((N - 1))); do printf '%s ' "$work/img$i"; done)
    commands=("$HNROOT find LABEL=$TARGET --sys-class-block $sys --dev $work/dev" "blkid -p -c /dev/null $files")
    names=(hnroot blkid)
    devices=$N
fi
[ "$got_hnroot" = "$want" ] || { echo "hnroot found '$got_hnroot', expected $want" >&2; exit 1; }
[ "$got_blkid" = "$want" ] || { echo "blkid found '$got_blkid', expected $want" >&2; exit 1; }
echo "find-vs-blkid: all agree: LABEL=$TARGET is $want ($mode mode, $devices block devices)"

hyperfine --warmup 5 --runs "$RUNS" -N --export-json "$work/times.json" "${commands[@]}"

python3 - "$work/times.json" "${names[@]}" <<'EOF'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
names = sys.argv[2:]
mean = {n: r["mean"] for n, r in zip(names, results)}
median = {n: r["median"] for n, r in zip(names, results)}
cpu = {n: r["user"] + r["system"] for n, r in zip(names, results)}
for n in names:
    print(f"{n:8} mean {mean[n] * 1000:8.2f} ms   median {median[n] * 1000:8.2f} ms   CPU {cpu[n] * 1000:6.2f} ms")
for other, goal in (("blkid", 0.5), ("findfs", 1.0)):
    if other in mean:
        print(f"ratio hnroot/{other}: mean {mean['hnroot'] / mean[other]:.3f}, median "
              f"{median['hnroot'] / median[other]:.3f} (goal <= {goal})")
EOF
