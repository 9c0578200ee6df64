#!/bin/sh
# hnroot prototype linuxrc: the seed's approach in busybox sh, kept as the baseline that
# `hnroot-init` is measured against, and as the proof of the boot chain before it exists.
#
# It runs as /init of a cpio initramfs built by `cargo xtask` (busybox-static + the kernel
# modules listed in /etc/hnroot/modules, in load order). It loads the modules, waits (bounded)
# for the filesystem labelled hostpart, mounts it at /hostpart, attaches the image GRUB booted
# read-only on a loop device, mounts it at /newroot, moves /hostpart, /dev, /proc, /sys, /run
# under it and switch_roots into the image's init. It never renames anything: committing an
# update is hnroot-init's job.
#
# Kernel command line (all optional):
#   hnroot.image=NAME        image file on hostpart (default hn-root.img)
#   hnroot.uuid=UUID         ext4 UUID GRUB saw in the image; a mismatch is fatal
#   hnroot.hostpart=LABEL=L  hostpart by label (default LABEL=hostpart); UUID=U also works
#   hnroot.wait=SECONDS      how long to wait for hostpart (default 10, at most 120)
#   hnroot.fatal=shell       on a fatal error start a shell instead of rebooting
#   init=PATH                init inside the image (default /sbin/init)
#
# Every step prints one "linuxrc: ..." line on the console; a fatal error prints what was
# looked for and what was found, then reboots after 10 s (panic=... style), never spins.

PATH=/sbin:/bin
export PATH

mount -t devtmpfs -o mode=0755,nosuid devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1

mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run

uptime_s() {
    read -r up _ </proc/uptime
    echo "$up"
}

log() {
    echo "linuxrc: $*"
}

fatal() {
    echo "linuxrc: FATAL: $*"
    echo "linuxrc: block devices (/proc/partitions):"
    cat /proc/partitions
    case "$fatal_mode" in
    shell)
        echo "linuxrc: hnroot.fatal=shell: starting a shell; leave it to reboot"
        sh
        ;;
    *)
        echo "linuxrc: rebooting in 10 s (hnroot.fatal=shell gives a shell instead)"
        sleep 10
        ;;
    esac
    reboot -f
    # reboot -f does not return; if it ever does, stop here on purpose instead of exiting PID 1.
    while :; do sleep 3600; done
}

image=hn-root.img
want_uuid=
hostpart_spec=LABEL=hostpart
wait_s=10
fatal_mode=reboot
new_init=/sbin/init
for arg in $(cat /proc/cmdline); do
    case "$arg" in
    hnroot.image=*) image=${arg#hnroot.image=} ;;
    hnroot.uuid=*) want_uuid=${arg#hnroot.uuid=} ;;
    hnroot.hostpart=*) hostpart_spec=${arg#hnroot.hostpart=} ;;
    hnroot.wait=*) wait_s=${arg#hnroot.wait=} ;;
    hnroot.fatal=*) fatal_mode=${arg#hnroot.fatal=} ;;
    init=*) new_init=${arg#init=} ;;
    esac
done
case "$wait_s" in
'' | *[!0-9]*) wait_s=10 ;;
esac
[ "$wait_s" -gt 120 ] && wait_s=120
case "$image" in
'' | */* | . | ..) fatal "hnroot.image='$image' is not a plain file name on hostpart" ;;
esac

log "start at uptime=$(uptime_s) image=$image hostpart=$hostpart_spec kernel=$(uname -r)"

# 1. Modules, in the order xtask resolved from modules.dep and modules.softdep.
loaded=0
failed=0
if [ -f /etc/hnroot/modules ]; then
    while read -r ko; do
        [ -n "$ko" ] || continue
        if insmod "/lib/modules/$(uname -r)/$ko" 2>/tmp/insmod.err; then
            loaded=$((loaded + 1))
        elif grep -q 'File exists' /tmp/insmod.err; then
            :
        else
            failed=$((failed + 1))
            log "insmod $ko failed: $(cat /tmp/insmod.err); continuing"
        fi
    done </etc/hnroot/modules
fi
log "modules: $loaded loaded, $failed failed"

# 2. Wait (bounded) for hostpart.
tries=$((wait_s * 10))
dev=
while [ "$tries" -gt 0 ]; do
    dev=$(findfs "$hostpart_spec" 2>/dev/null) && [ -b "$dev" ] && break
    dev=
    tries=$((tries - 1))
    usleep 100000
done
[ -n "$dev" ] || fatal "no filesystem with $hostpart_spec after ${wait_s} s; is the disk driver in /etc/hnroot/modules?"
log "hostpart is $dev ($hostpart_spec) at uptime=$(uptime_s)"

# 3. Mount hostpart read-write.
mkdir -p /hostpart /newroot
mount -o rw "$dev" /hostpart || fatal "cannot mount $dev ($hostpart_spec) at /hostpart (filesystems: $(grep -v nodev /proc/filesystems | tr -s '\t\n' '  '))"
log "mounted hostpart $dev at /hostpart rw ($(grep " /hostpart " /proc/mounts | cut -d' ' -f3))"

# 4. Attach the image read-only and mount it as the new root.
[ -f "/hostpart/$image" ] || fatal "no image file /hostpart/$image; hostpart holds: $(ls /hostpart | tr '\n' ' ')"
loopdev=$(losetup -f) || fatal "no free loop device (is loop.ko loaded?)"
losetup -r "$loopdev" "/hostpart/$image" || fatal "losetup -r $loopdev /hostpart/$image failed"
if [ -n "$want_uuid" ]; then
    got_uuid=$(hexdump -s 1128 -n 16 -e '4/1 "%02x" "-" 2/1 "%02x" "-" 2/1 "%02x" "-" 2/1 "%02x" "-" 6/1 "%02x" "\n"' "$loopdev")
    [ "$got_uuid" = "$want_uuid" ] || fatal "/hostpart/$image has ext4 UUID '$got_uuid', GRUB booted '$want_uuid'; refusing to mix kernel and root"
fi
mount -t ext4 -o ro "$loopdev" /newroot || fatal "cannot mount $loopdev (/hostpart/$image) read-only as ext4 at /newroot"
log "mounted /hostpart/$image via $loopdev at /newroot ro uuid=${want_uuid:-unchecked}"

# 5. Keep hostpart and the API filesystems reachable under the new root.
for m in hostpart dev proc sys run; do
    [ -d "/newroot/$m" ] || fatal "the image has no /$m directory to move /$m onto"
done
[ -x "/newroot$new_init" ] || fatal "the image has no executable $new_init"
mount --move /hostpart /newroot/hostpart || fatal "mount --move /hostpart /newroot/hostpart failed"
for m in dev proc sys run; do
    mount --move "/$m" "/newroot/$m" || fatal "mount --move /$m /newroot/$m failed"
done

# 6. switch_root: deletes the initramfs contents, chroots, execs the image's init.
read -r up _ </newroot/proc/uptime
echo "linuxrc: switch_root to /newroot $new_init at uptime=$up"
exec switch_root /newroot "$new_init"
