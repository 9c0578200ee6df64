#!/usr/bin/env bash
# benches/delta.sh: what a delta stage (issue 27) fetches and costs against a whole download,
# on real Debian images made by `hnroot image build` from mmdebstrap trees, per filesystem.
#
#   v1  the test kit's cached Debian tree (`debian-tree`: bookworm, systemd, Debian's kernel,
#       the fleet's server extras), copied;
#   v2  v1 with one package added ($ADD, default `tree`, installed with dpkg -i in a chroot);
#   v3  v2 with a newer kernel package (the newest linux-image-<abi>-amd64 of bookworm and
#       bookworm-security, when newer than v1's; its postinst makes the initrd), or no v3 when
#       the archive has none newer.
#
# Each tree becomes an image (`hnroot image build --fs FS --uuid U_n`, SOURCE_DATE_EPOCH one day
# apart per version, hnroot's own initramfs with this checkout's hnroot-init), signed
# (minisign) and published with its chunk index (`hnroot publish`), served by nginx on
# 127.0.0.1. Then, for v1 -> v2 and v2 -> v3:
#   * delta stage: a hostpart holding the previous image(s) stages the next from the index;
#     bytes fetched (the stage's own count, and nginx's access log) / the image's size;
#   * whole stage: an empty hostpart stages the same image from a directory without an index
#     (today's whole download);
#   * the same image compressed whole with zstd -3 (what a compressed download would move);
# wall time and CPU time (user + system) of each stage. Page cache: left warm (a shared
# machine), so both stages read their sources from memory: loopback speed, as the goal says.
#
# Printed, never asserted. Needs root (chroot, loop devices), network to deb.debian.org (the
# packages for v2 and v3; the tree itself comes from the test kit's cache when it is there) and
# about 10 GiB free in $WORK (default /var/tmp): three trees, and per filesystem three images,
# two published copies and the staged ones (each filesystem's files are removed before the
# next).
#
#   benches/delta.sh                    # FS="ext4 btrfs xfs" ADD=tree
#   FS=ext4 ADD=jq benches/delta.sh
#   KEEP_TREES=/var/tmp/trees benches/delta.sh   # keep v1..v3 there, and reuse them next time
#   CHUNK_AVG="64 16 64 16" benches/delta.sh  # each step staged (twice) from indexes of `hnroot publish
#                                       # --chunk-avg 64` and `--chunk-avg 16` (KiB), side by side
#   HNROOT_BIN=/old/hnroot benches/delta.sh  # publish and stage with another build (to compare)
set -euo pipefail

FS=${FS:-"ext4 btrfs xfs"}
ADD=${ADD:-tree}
CHUNK_AVG=${CHUNK_AVG:-default} # KiB, one or more; default: hnroot publish's own
WORK=${WORK:-/var/tmp}
SUITE=bookworm
cd "$(dirname "$0")/.."

for tool in minisign nginx zstd apt-get dpkg chroot python3 mkfs.ext4 mkfs.btrfs mkfs.xfs debugfs; do
    command -v "$tool" >/dev/null || { echo "delta: $tool is missing (cargo xtask deps)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "delta: needs root (chroot, loop devices)" >&2; exit 1; }

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --quiet --release -p hnroot-cli -p hnroot-init -p hnroot-testkit --bin hnroot --bin hnroot-init --bin debian-tree
HNROOT=${HNROOT_BIN:-$CARGO_TARGET_DIR/release/hnroot}
INIT=$CARGO_TARGET_DIR/release/hnroot-init
tree=$("$CARGO_TARGET_DIR/release/debian-tree" --suite "$SUITE" --extra nfs-common,python3,netbase | cut -d' ' -f1)

work=$(mktemp -d "$WORK/hnroot-delta-bench.XXXXXX")
chmod 755 "$work" # nginx's workers read what it serves
trees=${KEEP_TREES:-$work}
mkdir -p "$trees"
mounted=()
nginx_pid=
cleanup() {
    [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null || true
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount "${mounted[$i]}" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
calc() { python3 -c "print($1)"; }
say() { echo "delta: $*" >&2; }

# --- The trees ------------------------------------------------------------------------------
make_trees() {
say "v1: a copy of $tree"
cp -a --one-file-system "$tree" "$trees/v1"
rm -f "$trees/v1/.hnroot-tree"

# A private apt configuration (the machine's own lists are left alone) to fetch the packages.
apt=$work/apt
mkdir -p "$apt/lists/partial" "$apt/archives/partial" "$apt/cache" "$apt/parts" "$apt/debs"
cat > "$apt/sources.list" <<EOF
deb http://deb.debian.org/debian $SUITE main
deb http://deb.debian.org/debian-security $SUITE-security main
EOF
APT=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=$apt/parts"
     -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache"
     -o "Dir::Cache::Archives=$apt/archives" -o "APT::Sandbox::User=root")
apt-get "${APT[@]}" -qq update
(cd "$apt/debs" && apt-get "${APT[@]}" -qq download "$ADD")

in_chroot() { # tree, command...: with /proc, /sys and /dev, as a package's scripts expect
    local t=$1; shift
    mount -t proc proc "$t/proc"; mounted+=("$t/proc")
    mount -t sysfs sysfs "$t/sys"; mounted+=("$t/sys")
    mount --bind /dev "$t/dev"; mounted+=("$t/dev")
    local rc=0
    chroot "$t" "$@" || rc=$?
    umount "$t/dev" "$t/sys" "$t/proc"
    mounted=("${mounted[@]:0:${#mounted[@]}-3}")
    return $rc
}

say "v2: v1 + $ADD"
cp -a "$trees/v1" "$trees/v2"
deb=$(ls "$apt/debs"/"${ADD}"_*.deb)
cp "$deb" "$trees/v2/tmp/"
in_chroot "$trees/v2" dpkg -i "/tmp/$(basename "$deb")" >/dev/null
rm -f "$trees/v2/tmp/$(basename "$deb")"

current=$(ls "$trees/v1/boot" | sed -n 's/^vmlinuz-//p' | sort -V | tail -1)
newest=$(apt-cache "${APT[@]}" pkgnames linux-image-6 | grep -E '^linux-image-[0-9.]+-[0-9]+-amd64$' \
    | sed 's/^linux-image-//' | sort -V | tail -1)
versions=(v1 v2)
if [ -n "$newest" ] && [ "$(printf '%s\n%s\n' "$current" "$newest" | sort -V | tail -1)" != "$current" ]; then
    say "v3: v2 + linux-image-$newest (v1 has $current)"
    (cd "$apt/debs" && apt-get "${APT[@]}" -qq download "linux-image-$newest")
    cp -a "$trees/v2" "$trees/v3"
    kdeb=$(ls "$apt/debs"/linux-image-"$newest"_*.deb)
    cp "$kdeb" "$trees/v3/tmp/"
    in_chroot "$trees/v3" dpkg -i "/tmp/$(basename "$kdeb")" >/dev/null
    rm -f "$trees/v3/tmp/$(basename "$kdeb")"
    versions+=(v3)
else
    say "no kernel newer than $current in $SUITE or $SUITE-security: no v3"
fi
rm -rf "$apt"
}
if [ -d "$trees/v1" ] && [ -d "$trees/v2" ]; then
    say "the trees kept in $trees"
    versions=(v1 v2)
    [ -d "$trees/v3" ] && versions+=(v3)
    newest=$(ls "$trees/${versions[-1]}/boot" | sed -n 's/^vmlinuz-//p' | sort -V | tail -1)
else
    make_trees
fi
for v in "${versions[@]}"; do
    say "$v: $(du -s --block-size=1M "$trees/$v" | cut -f1) MiB, kernel $(ls "$trees/$v/boot" | sed -n 's/^vmlinuz-//p' | sort -V | tail -1)"
done

# --- Keys and the web server ----------------------------------------------------------------
mkdir -p "$work/keys" "$work/served"
minisign -G -W -f -p "$work/keys/bench.pub" -s "$work/bench.key" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/nginx/tmp"
cat > "$work/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 64; }
http {
  log_format bench '\$status \$body_bytes_sent "\$request" \$http_range';
  access_log $work/nginx/access.log bench;
  client_body_temp_path $work/nginx/tmp/body;
  proxy_temp_path $work/nginx/tmp/proxy;
  fastcgi_temp_path $work/nginx/tmp/fastcgi;
  uwsgi_temp_path $work/nginx/tmp/uwsgi;
  scgi_temp_path $work/nginx/tmp/scgi;
  default_type application/octet-stream;
  sendfile on;
  server { listen 127.0.0.1:$port; root $work/served; }
}
EOF
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" </dev/null >/dev/null 2>"$work/nginx/stderr" &
nginx_pid=$!
for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),0.3)" 2>/dev/null && break
    kill -0 "$nginx_pid" 2>/dev/null || { cat "$work/nginx/stderr" >&2; exit 1; }
    sleep 0.1
done

served_bytes() { awk '{s += $2} END {print s + 0}' "$work/nginx/access.log"; }

# stage NAME URL HOSTPART: stage URL onto HOSTPART; prints "fetched reused wall cpu"
stage() {
    local name=$1 url=$2 hp=$3
    : > "$work/nginx/access.log"
    rm -f "$hp/bootstate"
    # Nothing of the builds or the last stage still being written back to the disk.
    sync
    # A server's boot state: its image committed (an empty hostpart has none yet).
    if [ -e "$hp/hn-root.img" ]; then
        "$HNROOT" bootstate init --hostpart "$hp" --bootstate "$hp/bootstate" >/dev/null
    fi
    local TIMEFORMAT='%R %U %S'
    { time "$HNROOT" stage --json --hostpart "$hp" --bootstate "$hp/bootstate" \
        --keys "$work/keys" --timeout 60 "$url" > "$work/$name.json" 2>"$work/$name.err"; } \
        2> "$work/$name.time" || { say "stage $url failed:"; cat "$work/$name.err" >&2; return 1; }
    python3 - "$work/$name.json" "$work/$name.time" "$(served_bytes)" <<'EOF'
import json, sys
last = [json.loads(l) for l in open(sys.argv[1]) if l.strip()][-1]
wall, user, sys_ = (float(x) for x in open(sys.argv[2]).read().split())
print(last.get("bytes_fetched", 0), last.get("bytes_reused", 0), sys.argv[3], wall, user + sys_)
EOF
}

epoch=1733011200 # 2024-12-01, one day more per version
rows=()
for fs in $FS; do
    d=$work/$fs
    mkdir -p "$d/built" "$work/served/$fs/whole"
    n=0
    for v in "${versions[@]}"; do
        n=$((n + 1))
        img=$d/built/$v.img
        local_uuid=$(printf '%08x-0000-4000-8000-%012x' $((0x27000000 + n)) "$n")
        local_epoch=$((epoch + 86400 * (n - 1)))
        TIMEFORMAT='%R %U %S'
        { time SOURCE_DATE_EPOCH=$local_epoch "$HNROOT" image build --root "$trees/$v" --out "$img" \
            --fs "$fs" --uuid "$local_uuid" --init "$INIT" >"$d/$v.log" 2>&1; } 2> "$d/$v.build"
        minisign -S -s "$work/bench.key" -m "$img" -t "bench $v" >/dev/null
        if [ "$v" != v1 ]; then
            for avg in $(printf '%s\n' $CHUNK_AVG | sort -u); do
                opt=()
                [ "$avg" = default ] || opt=(--chunk-avg "$avg")
                # The image and its signature linked in (publish then writes only the index).
                mkdir -p "$work/served/$fs/delta-$avg"
                ln -f "$img" "$work/served/$fs/delta-$avg/$v.img"
                ln -f "$img.minisig" "$work/served/$fs/delta-$avg/$v.img.minisig"
                "$HNROOT" publish "$work/served/$fs/delta-$avg/$v.img" --out "$work/served/$fs/delta-$avg" \
                    --sign-key "$work/bench.key" "${opt[@]}" >/dev/null
            done
            ln -f "$img" "$work/served/$fs/whole/$v.img"
            ln -f "$img.minisig" "$work/served/$fs/whole/$v.img.minisig"
        fi
        say "$fs $v: built in $(cut -d' ' -f1 "$d/$v.build") s, $(stat -c %s "$img") bytes"
    done
    # Delta stages: v1 -> v2 with v1 on hostpart; v2 -> v3 with v2 committed and v1 the old one.
    mkdir -p "$d/hp"
    mv "$d/built/v1.img" "$d/hp/hn-root.img"
    for ((i = 1; i < ${#versions[@]}; i++)); do
        to=${versions[$i]} from=${versions[$((i - 1))]}
        size=$(stat -c %s "$work/served/$fs/whole/$to.img")
        zst=$(zstd -q -3 -T0 -c "$work/served/$fs/whole/$to.img" | wc -c)
        mkdir -p "$d/empty"
        read -r _ _ wserved wwall wcpu < <(stage "whole-$fs-$to" "http://127.0.0.1:$port/$fs/whole/$to.img" "$d/empty")
        rm -rf "$d/empty"
        runs=($CHUNK_AVG)
        for ((r = 0; r < ${#runs[@]}; r++)); do
            avg=${runs[$r]}
            idx=$(stat -c %s "$work/served/$fs/delta-$avg/$to.img.hnidx")
            read -r dfetch dreuse dserved dwall dcpu < <(stage "delta-$fs-$to-$r" "http://127.0.0.1:$port/$fs/delta-$avg/$to.img" "$d/hp")
            look=$(python3 -c 'import json,sys; print(next((e["seconds_looking"] for e in map(json.loads, open(sys.argv[1])) if e.get("event") == "delta" and "seconds_looking" in e), "-"))' "$work/delta-$fs-$to-$r.json")
            rows+=("$fs $from->$to $avg $size $idx $dfetch $dserved $dreuse $zst $wserved $dwall $dcpu $wwall $wcpu $look")
            # The next index's stage starts from the same hostpart.
            [ $((r + 1)) = ${#runs[@]} ] || rm -f "$d/hp/hn-root-new.img"
        done
        # The server commits it: the staged image becomes hn-root.img, the previous one old.
        rm -f "$d/hp/hn-root-old.img"
        mv "$d/hp/hn-root.img" "$d/hp/hn-root-old.img"
        mv "$d/hp/hn-root-new.img" "$d/hp/hn-root.img"
    done
    rm -rf "$d" "$work/served/$fs"
done

echo
v3_note=
[ "${#versions[@]}" = 3 ] && v3_note=", v3 = v2 + linux-image-$newest"
echo "delta.sh: $(date -u +%F), $SUITE, v2 = v1 + $ADD$v3_note; $HNROOT; load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-5s %-7s %5s %9s %7s %15s %15s %11s %15s %11s %7s %11s %6s\n' fs step "chunk" "image MiB" "index" "delta fetched" "(nginx sent)" "reused MiB" "zstd -3 whole" "delta s/cpu" "(seeds)" "whole s/cpu" "ratio"
for r in "${rows[@]}"; do
    read -r fs step avg size idx dfetch dserved dreuse zst wserved dwall dcpu wwall wcpu look <<< "$r"
    printf '%-5s %-7s %5s %9d %7s %8d MiB %4.1f%% %8d MiB %11d %8d MiB %4.1f%% %5.1f/%-5.1f %7s %5.1f/%-5.1f %6.2f\n' \
        "$fs" "$step" "$avg" $((size >> 20)) "$(calc "f'{$idx/$size*100:.2f}%'")" $((dfetch >> 20)) \
        "$(calc "$dfetch/$size*100")" $((dserved >> 20)) $((dreuse >> 20)) $((zst >> 20)) \
        "$(calc "$zst/$size*100")" "$dwall" "$dcpu" "$(calc "f'{float(\"$look\"):.1f}s'" 2>/dev/null || echo -)" "$wwall" "$wcpu" "$(calc "$dwall/$wwall")"
done
echo "(chunk: the index's average chunk in KiB; delta fetched: the stage's bytes_fetched / image"
echo " size; nginx sent: body bytes of its access log during the delta stage, index and signatures"
echo " included; (seeds): the delta stage's time finding chunks in the images on hostpart, where"
echo " the stage says it; whole: the same image staged from a directory without an index, nginx"
echo " sent $((${wserved:-0} >> 20)) MiB for the last one; ratio: delta wall / whole wall)"
