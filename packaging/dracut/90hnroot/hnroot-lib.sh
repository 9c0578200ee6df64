#!/bin/sh
# Shared by hnroot's dracut hooks and hnroot-mount-root (sourced after dracut-lib.sh).

HNROOT_RUNDIR=/run/hnroot
# hnroot-init's lines (its standard error), readable after the switch: /run moves into the root.
HNROOT_LOG="${HNROOT_RUNDIR}/mount-root.log"
# One line: why the last attempt failed (for the emergency shell).
HNROOT_FAILURE="${HNROOT_RUNDIR}/failure"
# Attempts in shell mode before dracut's die (leaving the emergency shell retries).
HNROOT_ATTEMPTS=3

# Does the kernel command line ask for hnroot? GRUB's hnroot.mod passes both.
hnroot_wanted() {
    getarg hnroot.image= > /dev/null && return 0
    [ "$(getarg boot=)" = hnroot ]
}
