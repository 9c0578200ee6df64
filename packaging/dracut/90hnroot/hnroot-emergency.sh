#!/bin/sh
# emergency hook: under systemd, says why hnroot could not mount the root right above the
# emergency shell's prompt (in shell mode the mount hook passes the same line to
# emergency_shell itself).

type getarg > /dev/null 2>&1 || . /lib/dracut-lib.sh
. /lib/hnroot-lib.sh

if [ -n "$DRACUT_SYSTEMD" ] && [ -s "$HNROOT_FAILURE" ]; then
    warn "$(cat "$HNROOT_FAILURE")"
    warn "hnroot: fix it in this shell and leave it (exit): systemd then tries hnroot-sysroot.service again"
fi
