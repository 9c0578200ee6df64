#!/bin/bash
# hnroot's dracut module: boots a root file system that is an image file on hostpart, with the
# distribution's own dracut initrd (udev, its disk drivers, LVM/RAID/LUKS if installed) and
# `hnroot-init mount-root` in place of the usual root mount. The dracut twin of hnroot's
# initramfs-tools hook and script (packaging/initramfs-tools/), calling the same program.
#
# Installed as /usr/lib/dracut/modules.d/90hnroot/ with the files beside this one; included in
# every initrd dracut builds while it is installed. It acts only when the kernel command line
# asks for hnroot (hnroot.image= or boot=hnroot, which GRUB's hnroot.mod passes), so the same
# initrd still boots a normal root=.
#
#   systemd in the initrd (dracut's systemd module, Debian's default when systemd is installed):
#     hnroot-sysroot.service mounts the image at /sysroot before initrd-root-fs.target.
#   dracut's shell init (without the systemd module): the mount hook mount-hnroot.sh does.
#
#   HNROOT_INIT   where hnroot-init is on the build machine (default /usr/lib/hnroot/hnroot-init)

# called by dracut
check() {
    # Always included once installed, like the initramfs-tools hook: a missing hnroot-init is
    # reported by install(), which fails the build rather than leaving hnroot out silently.
    return 0
}

# called by dracut
depends() {
    echo base
    return 0
}

# called by dracut
installkernel() {
    # loop: hnroot-init attaches the image through /dev/loop-control (hnroot-mount-root loads
    # the driver first). The filesystems hostpart and the images can hold (ext4, btrfs, XFS),
    # overlayfs for the image's writable layer, and vfat with the code page and character sets
    # FAT's defaults need for the ESP with the boot state. They load on demand when hnroot-init
    # mounts them; dracut adds their dependencies. hostonly='': also in host-only initrds, whose
    # host (a build machine, a chroot) need not use any of them. Built-in drivers are skipped.
    hostonly='' instmods loop ext4 btrfs xfs overlay vfat nls_cp437 nls_ascii nls_iso8859-1 nls_utf8
}

# called by dracut
install() {
    local hnroot_init="${HNROOT_INIT:-/usr/lib/hnroot/hnroot-init}"
    if [[ ! -f $dracutsysrootdir$hnroot_init || ! -x $dracutsysrootdir$hnroot_init ]]; then
        dfatal "hnroot: no executable hnroot-init at $dracutsysrootdir$hnroot_init; install it there (or set HNROOT_INIT) and run dracut again, or remove $moddir"
        exit 1
    fi
    # The static binary; inst_binary would also bring a dynamic one's libraries.
    if ! inst_binary "$hnroot_init" /usr/sbin/hnroot-init; then
        dfatal "hnroot: cannot copy $hnroot_init into the initrd at /usr/sbin/hnroot-init"
        exit 1
    fi
    inst_multiple modprobe udevadm
    inst_simple "$moddir/hnroot-lib.sh" /lib/hnroot-lib.sh
    inst_script "$moddir/hnroot-mount-root.sh" /bin/hnroot-mount-root
    inst_hook cmdline 90 "$moddir/parse-hnroot.sh"
    inst_hook emergency 50 "$moddir/hnroot-emergency.sh"
    if dracut_module_included "systemd"; then
        inst_simple "$moddir/hnroot-sysroot.service" "$systemdsystemunitdir/hnroot-sysroot.service"
        $SYSTEMCTL -q --root "$initdir" add-requires initrd-root-fs.target hnroot-sysroot.service
    else
        inst_hook mount 10 "$moddir/mount-hnroot.sh"
    fi
}
