#!/bin/sh
# mount hook (dracut's shell init, without systemd): sourced by /init, possibly several times,
# until $NEWROOT is mounted. Runs hnroot-mount-root; a failure opens dracut's emergency shell
# with hnroot-init's FATAL line (leaving it tries again), at most HNROOT_ATTEMPTS times in all,
# then dracut's die (no shell unless rd.shell; the kernel's panic= then reboots).

type getarg > /dev/null 2>&1 || . /lib/dracut-lib.sh
. /lib/hnroot-lib.sh

if hnroot_wanted && ! ismounted "$NEWROOT"; then
    hnroot_attempt=$((${hnroot_attempt:-0} + 1))
    if ! NEWROOT="$NEWROOT" /bin/hnroot-mount-root; then
        hnroot_failure="$(cat "$HNROOT_FAILURE" 2> /dev/null)"
        [ -n "$hnroot_failure" ] || hnroot_failure="hnroot: hnroot-mount-root failed"
        if [ "$hnroot_attempt" -ge "$HNROOT_ATTEMPTS" ]; then
            die "$hnroot_failure. Giving up after $hnroot_attempt attempts: no root file system is mounted."
        fi
        emergency_shell -n hnroot "$hnroot_failure. Fix it in this shell and leave it (exit) to try again (attempt $hnroot_attempt of $HNROOT_ATTEMPTS failed)."
    fi
fi
