#!/bin/sh
# cmdline hook: with hnroot on the command line the root is hnroot's, and there is no root=.
# dracut's shell init stops without a root= it knows (rootok); under systemd,
# hnroot-sysroot.service mounts /sysroot and no root= is needed either.

type getarg > /dev/null 2>&1 || . /lib/dracut-lib.sh
. /lib/hnroot-lib.sh

if hnroot_wanted; then
    [ -z "$root" ] && root=hnroot
    rootok=1
    info "hnroot: the root is $(getarg hnroot.image=) on hostpart; hnroot-init mounts it"
fi
