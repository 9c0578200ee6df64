#!/bin/sh
# hnroot-mount-root: mounts the image GRUB booted at $NEWROOT (/sysroot) with
# `hnroot-init mount-root`, in both of dracut's modes: run by hnroot-sysroot.service under
# systemd, by the mount hook mount-hnroot.sh under dracut's shell init.
#
# hnroot-init finds hostpart (hnroot.hostpart=, PARTUUID pinned by GRUB, LABEL=hostpart),
# commits a pending image switch, attaches the image (hnroot.image=, hnroot.uuid=) read-only on
# a loop device, checks its filesystem UUID, mounts it with its writable layer at $NEWROOT and
# moves hostpart to $NEWROOT/hostpart. It writes one line per step to the kernel log (lifting
# /dev/kmsg's rate limit while it runs, so the console shows every line unless `quiet`) and to
# its standard error, kept in /run/hnroot/mount-root.log. If another image would boot, a
# failure reboots into it from inside hnroot-init; if it returns non-zero, this script writes
# the reason (hnroot-init's FATAL line) to /run/hnroot/failure and to standard error, and exits
# with hnroot-init's status: the caller turns that into dracut's emergency handling.

type getarg > /dev/null 2>&1 || . /lib/dracut-lib.sh
. /lib/hnroot-lib.sh

NEWROOT="${NEWROOT:-/sysroot}"
if [ -n "$DRACUT_SYSTEMD" ]; then
    hnroot_mode=systemd
else
    hnroot_mode=shell
fi

# The line to show for a failed attempt: hnroot-init's last "hnroot: FATAL: " line, else its
# last "hnroot: " line, else its last line (the script's own header lines start with '#').
hnroot_reason() {
    hnroot_fatal=
    hnroot_last_hnroot=
    hnroot_last=
    if [ -r "$HNROOT_LOG" ]; then
        while IFS= read -r hnroot_line || [ -n "$hnroot_line" ]; do
            case "$hnroot_line" in
                "" | "#"*) continue ;;
                "hnroot: FATAL: "*) hnroot_fatal="$hnroot_line" ;;
                "hnroot: "*) hnroot_last_hnroot="$hnroot_line" ;;
            esac
            hnroot_last="$hnroot_line"
        done < "$HNROOT_LOG"
    fi
    if [ -n "$hnroot_fatal" ]; then
        echo "$hnroot_fatal"
    elif [ -n "$hnroot_last_hnroot" ]; then
        echo "$hnroot_last_hnroot"
    elif [ -n "$hnroot_last" ]; then
        echo "hnroot: $hnroot_last"
    else
        echo "hnroot: hnroot-init printed nothing"
    fi
}

hnroot_fail() {
    echo "$1" > "$HNROOT_FAILURE"
    echo "$1" >&2
    exit "$2"
}

mkdir -p "$HNROOT_RUNDIR"
rm -f -- "$HNROOT_FAILURE"
if ! command -v hnroot-init > /dev/null 2>&1; then
    hnroot_fail "hnroot: hnroot-init is not in this initrd (PATH=$PATH): dracut's hnroot module did not install it; install hnroot-init as /usr/lib/hnroot/hnroot-init and run dracut --force" 1
fi

# /dev/loop-control exists only once the loop driver is loaded (built in: nothing to do).
modprobe -q loop || warn "hnroot: modprobe loop failed; hnroot-init will say whether it can attach the image"
# Let udev finish what it has (disk drivers, RAID, LVM): initramfs-tools' wait_for_udev 10.
# hnroot-init then waits for hostpart itself (hnroot.timeout=, 30 s by default).
udevadm settle --timeout=10 > /dev/null 2>&1 || :

echo "# dracut ($hnroot_mode mode): hnroot-init mount-root $NEWROOT" > "$HNROOT_LOG"
hnroot-init mount-root "$NEWROOT" 2>> "$HNROOT_LOG"
hnroot_status=$?
if [ "$hnroot_status" -eq 0 ]; then
    exit 0
fi
hnroot_fail "$(hnroot_reason) (hnroot-init mount-root $NEWROOT exited with status $hnroot_status; its log is $HNROOT_LOG)" "$hnroot_status"
