#!/usr/bin/env bash
# benches/stage-vs-cp.sh: what `hnroot stage` costs against what an operator would do by hand,
# side by side on the same files: `hnroot stage` of a signed SIZE image (copy, minisign
# verification streamed over the same pass, the verdict, publication, checkpoint) against
# `cp` followed by `sha256sum` of the copy, and against a plain read of the source (`cat >
# /dev/null`, the floor). Then the reflink case: source and hostpart on one btrfs, where stage
# shares the extents and still reads every byte to verify them.
#
# The image is ext4 filled with random data (a full image: no zero blocks for stage to leave
# as holes, which would flatter it). Page cache: dropped before every run (`echo 3 >
# /proc/sys/vm/drop_caches`), so every run reads from the disk, as a stage of a freshly
# published image does. Needs root (loop devices, drop_caches) and about 3 x SIZE of free space
# in $WORK (default /var/tmp).
#
#   benches/stage-vs-cp.sh               # SIZE=4G RUNS=3
#   SIZE=1G RUNS=1 benches/stage-vs-cp.sh
#
# Goals: stage <= 0.6 x (cp + sha256sum) and reflink stage <= 0.05 x (issue 12); stage <= 1.2 x
# `cp` + `sync` alone, the write floor (issue 28: the copy, the BLAKE2b pass and the writeback
# overlap). A refused or failed stage stops the benchmark. Printed, never asserted: this is a
# benchmark, not a test. On a shared machine the ratios move with its load (stage needs about
# 1.7 s of CPU per GiB, 1 s of it the BLAKE2b pass on one core; cp + sync about 0.4 s): the
# load average is printed with the figures.
set -euo pipefail

SIZE=${SIZE:-4G}
RUNS=${RUNS:-3}
WORK=${WORK:-/var/tmp}
cd "$(dirname "$0")/.."

for tool in minisign mkfs.ext4 mkfs.btrfs sha256sum losetup python3; do
    command -v "$tool" >/dev/null || { echo "stage-vs-cp: $tool is missing (cargo xtask deps)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "stage-vs-cp: needs root (loop devices, drop_caches)" >&2; exit 1; }

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --quiet --release -p hnroot-cli
HNROOT=$CARGO_TARGET_DIR/release/hnroot

work=$(mktemp -d "$WORK/hnroot-stage-bench.XXXXXX")
mounted=()
cleanup() {
    for m in "${mounted[@]}"; do umount "$m" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

bytes=$(python3 -c "import sys; s=sys.argv[1]; u={'K':10,'M':20,'G':30}; print(int(s[:-1])<<u[s[-1]] if s[-1] in u else int(s))" "$SIZE")
mib=$((bytes >> 20))
echo "stage-vs-cp: a $mib MiB ext4 image of random data in $work"
mkdir -p "$work/tree/boot" "$work/hostpart" "$work/keys"
echo kernel > "$work/tree/boot/kernel"
echo initramfs > "$work/tree/boot/initramfs"
# Random contents filling the image, leaving room for ext4's metadata.
head -c $(( (mib - mib / 16 - 64) << 20 )) /dev/urandom > "$work/tree/bulk"
mkfs.ext4 -q -F -d "$work/tree" "$work/image.img" "${mib}M"
rm -rf "$work/tree"
minisign -G -W -f -p "$work/keys/bench.pub" -s "$work/bench.key" >/dev/null
minisign -S -s "$work/bench.key" -m "$work/image.img" -t "bench" >/dev/null

# hostpart: an ext4 filesystem of its own (as on a server), 3 x the image.
truncate -s $((3 * mib + 256))M "$work/hostpart.fs"
mkfs.ext4 -q -F -L hostpart "$work/hostpart.fs"
mount -o loop "$work/hostpart.fs" "$work/hostpart"
mounted+=("$work/hostpart")
state=$work/bootstate

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
now() { date +%s.%N; }
calc() { python3 -c "print($1)"; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

time_stage() {
    rm -f "$2"/hn-root*.img
    # A committed hn-root.img is not needed to stage: an empty hostpart takes hn-root-new.img.
    drop
    local t0; t0=$(now)
    # A refused or failed stage is a broken benchmark, not a fast run. Its CPU time (user +
    # system) goes to $work/cpu: on a loaded machine the wall time is mostly waiting for a CPU.
    local TIMEFORMAT='%U %S'
    { time "$HNROOT" stage "$1" --hostpart "$2" --bootstate "$state" --keys "$work/keys" >/dev/null 2>&1; } 2> "$work/cpu.raw" || return 1
    awk '{print $1 + $2}' "$work/cpu.raw" > "$work/cpu"
    calc "$(now) - $t0"
}

time_cp_sha() {
    rm -f "$2/copy.img"
    drop
    local t0; t0=$(now)
    cp "$1" "$2/copy.img"
    sync
    sha256sum "$2/copy.img" >/dev/null
    calc "$(now) - $t0"
}

# The write floor: the copy alone, made durable.
time_cp() {
    rm -f "$2/copy.img"
    drop
    local t0; t0=$(now)
    cp "$1" "$2/copy.img"
    sync
    calc "$(now) - $t0"
}

time_read() {
    drop
    local t0; t0=$(now)
    cat "$1" > /dev/null
    calc "$(now) - $t0"
}

stage=(); cpsha=(); plain=(); cponly=(); cpu=()
for i in $(seq "$RUNS"); do
    t=$(time_stage "$work/image.img" "$work/hostpart") || { echo "stage-vs-cp: hnroot stage failed" >&2; exit 1; }
    stage+=("$t")
    cpu+=("$(cat "$work/cpu")")
    cpsha+=("$(time_cp_sha "$work/image.img" "$work/hostpart")")
    cponly+=("$(time_cp "$work/image.img" "$work/hostpart")")
    plain+=("$(time_read "$work/image.img")")
    echo "  run $i: stage ${stage[-1]} s (CPU ${cpu[-1]} s), cp + sha256sum ${cpsha[-1]} s, cp + sync ${cponly[-1]} s, read ${plain[-1]} s (load $(cut -d' ' -f1 /proc/loadavg))"
done
rm -f "$work/hostpart/copy.img" "$work/hostpart"/hn-root*.img
s=$(printf '%s\n' "${stage[@]}" | median)
c=$(printf '%s\n' "${cpsha[@]}" | median)
r=$(printf '%s\n' "${plain[@]}" | median)
w=$(printf '%s\n' "${cponly[@]}" | median)
echo
echo "page cache dropped before every run; medians of $RUNS runs; $mib MiB"
printf '  %-34s %8.2f s\n' "read (cat > /dev/null)" "$r"
printf '  %-34s %8.2f s\n' "cp + sync (the write floor)" "$w"
printf '  %-34s %8.2f s\n' "cp + sync + sha256sum" "$c"
printf '  %-34s %8.2f s\n' "hnroot stage (copy + verify)" "$s"
printf '  %-34s %8.2f s\n' "  its CPU time (user + system)" "$(printf '%s\n' "${cpu[@]}" | median)"
printf '  ratio stage / (cp + sha256sum)     %8.2f   (goal <= 0.6)\n' "$(calc "$s / $c")"
printf '  ratio stage / read                 %8.2f\n' "$(calc "$s / $r")"
printf '  ratio stage / (cp + sync)          %8.2f   (goal <= 1.2)\n' "$(calc "$s / $w")"
echo "  load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs"

# Reflink: the image and hostpart on one btrfs.
umount "$work/hostpart"; mounted=()
truncate -s $((3 * mib + 512))M "$work/btrfs.fs"
mkfs.btrfs -q -f -L hostpart "$work/btrfs.fs" >/dev/null
mkdir -p "$work/b"
mount -o loop "$work/btrfs.fs" "$work/b"
mounted+=("$work/b")
mkdir -p "$work/b/hostpart" "$work/b/images"
cp "$work/image.img" "$work/image.img.minisig" "$work/b/images/"
sync
rflink=(); bcpsha=()
for i in $(seq "$RUNS"); do
    t=$(time_stage "$work/b/images/image.img" "$work/b/hostpart") || { echo "stage-vs-cp: hnroot stage (reflink) failed" >&2; exit 1; }
    rflink+=("$t")
    bcpsha+=("$(time_cp_sha "$work/b/images/image.img" "$work/b/hostpart")")
done
f=$(printf '%s\n' "${rflink[@]}" | median)
b=$(printf '%s\n' "${bcpsha[@]}" | median)
echo
echo "btrfs, source and hostpart on one filesystem (stage reflinks, then reads every byte to verify)"
printf '  %-34s %8.2f s\n' "cp + sync + sha256sum" "$b"
printf '  %-34s %8.2f s\n' "hnroot stage (reflink + verify)" "$f"
printf '  ratio reflink stage / (cp + sha)   %8.2f   (goal <= 0.05: not reachable while every\n' "$(calc "$f / $b")"
echo "                                               byte is hashed; the floor is one read)"
