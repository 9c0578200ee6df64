//! `hnroot image build` on a small tree made here (a kernel file, depmod's index files, an
//! init, os-release): the image is a fresh filesystem holding the tree and what hnroot adds,
//! the tree is left exactly as it was, and a tree without a kernel is refused by name. The
//! build of a real Debian tree and its boot are the distro suite's.

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use support::*;

fn run(argv: &[&str]) -> String {
    let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tree(root: &Path) {
    let release = "6.1.0-99-amd64";
    let m = root.join(format!("lib/modules/{release}"));
    std::fs::create_dir_all(&m).unwrap();
    for f in [
        "modules.dep",
        "modules.softdep",
        "modules.alias",
        "modules.builtin",
        "modules.builtin.modinfo",
    ] {
        std::fs::write(m.join(f), b"").unwrap();
    }
    std::fs::create_dir_all(root.join("boot")).unwrap();
    std::fs::write(
        root.join(format!("boot/vmlinuz-{release}")),
        vec![0x4d; 4096],
    )
    .unwrap();
    std::fs::write(root.join("boot/vmlinuz-6.1.0-9-amd64"), b"older").unwrap();
    std::os::unix::fs::symlink(format!("boot/vmlinuz-{release}"), root.join("vmlinuz")).unwrap();
    std::fs::create_dir_all(root.join("sbin")).unwrap();
    std::fs::write(root.join("sbin/init"), b"#!/bin/sh\n").unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(
        root.join("etc/os-release"),
        "PRETTY_NAME=\"t\"\nIMAGE_ID=fleet\nIMAGE_VERSION=7\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/fstab"),
        "/dev/sda1 / ext4 errors=remount-ro 0 1\n/dev/sdb1 /srv xfs defaults 0 2\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/hosts.a"), b"hard").unwrap();
    std::fs::hard_link(root.join("etc/hosts.a"), root.join("etc/hosts.b")).unwrap();
}

/// Every path of the tree with its type, size, mode and modification time.
fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            out.push(format!(
                "{} {:o} {} {}",
                e.path().display(),
                m.mode(),
                m.size(),
                m.mtime()
            ));
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_tree_becomes_an_image_and_stays_as_it_was() {
    if !can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    tree(&root);
    let before = listing(&root);
    let init = dir.path().join("hnroot-init");
    std::fs::write(&init, b"\x7fELF stand-in for hnroot-init").unwrap();
    let out = dir.path().join("v7.img");
    for fs in ["ext4", "btrfs", "xfs"] {
        let said = ok(&[
            "image",
            "build",
            "--root",
            root.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--fs",
            fs,
            "--init",
            init.to_str().unwrap(),
        ]);
        assert!(said.contains("kernel 6.1.0-99-amd64"), "{said}");
        assert!(said.contains("version fleet 7"), "{said}");
        assert!(said.contains("hnroot's own"), "{said}");
        assert!(said.contains("commented out `/dev/sda1 / ext4"), "{said}");
        assert_eq!(
            run(&[
                "blkid",
                "-p",
                "-s",
                "TYPE",
                "-o",
                "value",
                out.to_str().unwrap()
            ])
            .trim(),
            fs
        );
        assert!(!dir.path().join("v7.img.partial").exists());

        let mnt = dir.path().join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        run(&[
            "mount",
            "-o",
            "loop,ro",
            out.to_str().unwrap(),
            mnt.to_str().unwrap(),
        ]);
        let check = || {
            let k = std::fs::metadata(mnt.join("boot/kernel")).unwrap();
            let v = std::fs::metadata(mnt.join("boot/vmlinuz-6.1.0-99-amd64")).unwrap();
            assert_eq!(
                k.ino(),
                v.ino(),
                "boot/kernel is the newest kernel, hard-linked"
            );
            let initramfs = std::fs::read(mnt.join("boot/initramfs")).unwrap();
            assert_eq!(&initramfs[..4], &[0x28, 0xb5, 0x2f, 0xfd], "a zstd archive");
            assert!(mnt.join("hostpart").is_dir() && mnt.join("boot/loader").is_dir());
            assert_eq!(
                std::fs::read_link(mnt.join("data0")).unwrap(),
                Path::new("/hostpart/data")
            );
            let fstab = std::fs::read_to_string(mnt.join("etc/fstab")).unwrap();
            assert!(
                fstab.contains("# (hnroot image build) /dev/sda1 / ext4"),
                "{fstab}"
            );
            assert!(
                fstab.contains("\n/dev/sdb1 /srv xfs"),
                "other lines are kept: {fstab}"
            );
            assert!(
                fstab.contains("LABEL=hostpart /hostpart")
                    && fstab.contains("LABEL=EFI-BOOT /boot/loader vfat"),
                "{fstab}"
            );
            let dropin = std::fs::read_to_string(
                mnt.join("etc/systemd/system/hostpart.mount.d/hnroot.conf"),
            )
            .unwrap();
            assert!(dropin.contains("\nDefaultDependencies=no\n"), "{dropin}");
            assert!(mnt.join("usr/sbin/hnroot").is_file());
            assert_eq!(
                std::fs::read_link(
                    mnt.join("etc/systemd/system/multi-user.target.wants/hnroot-mark-good.service")
                )
                .unwrap(),
                Path::new("/usr/lib/systemd/system/hnroot-mark-good.service")
            );
            let a = std::fs::metadata(mnt.join("etc/hosts.a")).unwrap();
            let b = std::fs::metadata(mnt.join("etc/hosts.b")).unwrap();
            assert_eq!(a.ino(), b.ino(), "hard links stay hard links");
        };
        let r = std::panic::catch_unwind(check);
        run(&["umount", mnt.to_str().unwrap()]);
        r.unwrap();
    }
    assert_eq!(listing(&root), before, "the tree is unchanged");

    // Two builds of one tree are two images: fresh UUIDs.
    let other = dir.path().join("again.img");
    ok(&[
        "image",
        "build",
        "--root",
        root.to_str().unwrap(),
        "--out",
        other.to_str().unwrap(),
        "--init",
        init.to_str().unwrap(),
    ]);
    let uuid = |p: &Path| {
        run(&[
            "blkid",
            "-p",
            "-s",
            "UUID",
            "-o",
            "value",
            p.to_str().unwrap(),
        ])
    };
    ok(&[
        "image",
        "build",
        "--root",
        root.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--init",
        init.to_str().unwrap(),
    ]);
    assert_ne!(uuid(&other), uuid(&out));
}

#[test]
fn refusals_name_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    std::fs::create_dir_all(root.join("boot")).unwrap();
    let out = dir.path().join("x.img");
    let args = [
        "image",
        "build",
        "--root",
        root.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let r = hnroot(&args);
    assert_eq!(r.status.code(), Some(1));
    assert!(
        text(&r).contains("looked for a kernel in") && text(&r).contains("vmlinuz-<release>"),
        "{}",
        text(&r)
    );
    tree(&root);
    let mut tree_mode = args.to_vec();
    tree_mode.extend(["--initramfs", "tree"]);
    let r = hnroot(&tree_mode);
    assert!(
        text(&r).contains("no boot/initrd.img-6.1.0-99-amd64"),
        "{}",
        text(&r)
    );
    let mut no_init = args.to_vec();
    no_init.extend(["--init", "/nonexistent/hnroot-init"]);
    let r = hnroot(&no_init);
    assert!(
        text(&r).contains("looked for hnroot-init at /nonexistent/hnroot-init"),
        "{}",
        text(&r)
    );
    let mut small = args.to_vec();
    small.extend(["--size", "1M", "--init", "/proc/self/exe"]);
    let r = hnroot(&small);
    assert!(
        text(&r).contains("--size 1 MiB is too small"),
        "{}",
        text(&r)
    );
    assert!(!out.exists(), "no image from a refused build");
}

#[test]
fn a_tree_with_a_hosts_identity_is_built_with_a_warning_and_sysprep_clears_it() {
    if !can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    tree(&root);
    // What a build host leaves in a tree: its name, and keys from openssh-server's postinst.
    std::fs::write(root.join("etc/hostname"), "build-host\n").unwrap();
    std::fs::create_dir_all(root.join("etc/ssh")).unwrap();
    std::fs::write(root.join("etc/ssh/ssh_host_ed25519_key"), "private").unwrap();
    let init = dir.path().join("hnroot-init");
    std::fs::write(&init, b"\x7fELF stand-in for hnroot-init").unwrap();
    let img = dir.path().join("v7.img");
    let img_s = img.to_str().unwrap();
    let out = hnroot(&[
        "image",
        "build",
        "--root",
        root.to_str().unwrap(),
        "--out",
        img_s,
        "--init",
        init.to_str().unwrap(),
    ]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("warning: the image holds 2 host-specific file(s)")
            && said.contains("/etc/hostname (hostname)")
            && said.contains("/etc/ssh/ssh_host_ed25519_key (SSH host keys)")
            && said.contains("hnroot sysprep"),
        "{said}"
    );
    assert!(
        root.join("etc/ssh/ssh_host_ed25519_key").is_file(),
        "the tree is left as it was"
    );
    ok(&["sysprep", img_s]);
    let again = json(&["sysprep", "--dry-run", "--json", img_s]);
    assert_eq!(again["leftovers"].as_array().unwrap().len(), 0, "{again}");
}
