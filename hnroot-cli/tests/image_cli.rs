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

/// The binary under test with `SOURCE_DATE_EPOCH` set.
fn hnroot_at_epoch(epoch: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hnroot"))
        .env("SOURCE_DATE_EPOCH", epoch)
        .args(args)
        .output()
        .unwrap()
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
    for (fs, uuid) in [
        ("ext4", "3f0e3a52-61c4-4c3e-8f0a-5b2b9e1c4a20"),
        ("btrfs", "3f0e3a52-61c4-4c3e-8f0a-5b2b9e1c4a21"),
        ("xfs", "3f0e3a52-61c4-4c3e-8f0a-5b2b9e1c4a22"),
    ] {
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
            "--uuid",
            uuid,
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
        assert_eq!(
            run(&[
                "blkid",
                "-p",
                "-s",
                "UUID",
                "-o",
                "value",
                out.to_str().unwrap()
            ])
            .trim(),
            uuid,
            "{fs}: --uuid"
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
            // The health checks' deadline and the hardware watchdog (issue 24).
            let timeout = std::fs::read_to_string(
                mnt.join("etc/systemd/system/boot-complete.target.d/hnroot-health-timeout.conf"),
            )
            .unwrap();
            assert!(timeout.contains("\nJobTimeoutSec=15min\n"), "{timeout}");
            let watchdog =
                std::fs::read_to_string(mnt.join("etc/systemd/system.conf.d/hnroot-watchdog.conf"))
                    .unwrap();
            assert!(
                watchdog.contains("\nRuntimeWatchdogSec=1min\n"),
                "{watchdog}"
            );
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

/// Every file under `dir` with its contents and metadata, links as links.
fn snapshot(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                stack.push(p.clone());
                "dir".to_owned()
            } else {
                format!("{:?}", std::fs::read(&p).unwrap())
            };
            out.push(format!(
                "{} {:o} {} {} {what}",
                p.display(),
                m.mode(),
                m.ino(),
                m.mtime()
            ));
        }
    }
    out.sort();
    out
}

/// A tree copied out of a system whose /boot, /etc and some of their directories are links to
/// where that system kept them (`victim`, a path that exists on the build machine too), with
/// absolute links and relative ones that climb out at several depths: the build follows each
/// inside the tree, and the build machine's files at those paths are never touched.
#[test]
fn the_trees_links_never_lead_the_build_outside_the_tree() {
    if !can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("srv/victim");
    let v = victim.strip_prefix("/").unwrap();
    // The build machine's own files at the paths the tree's links name.
    for d in ["boot", "etc/systemd/system", "systemd/system", "sbin"] {
        std::fs::create_dir_all(victim.join(d)).unwrap();
    }
    std::fs::write(victim.join("boot/kernel"), b"the build machine's kernel").unwrap();
    std::fs::write(victim.join("boot/vmlinuz-6.1.0-99-amd64"), b"its vmlinuz").unwrap();
    std::fs::write(victim.join("etc/fstab"), b"/dev/vda1 / ext4 defaults 0 1\n").unwrap();
    std::fs::write(victim.join("sbin/hnroot"), b"the build machine's hnroot").unwrap();
    let before = snapshot(&victim);

    let root = dir.path().join("tree");
    tree(&root);
    // /boot and /etc are absolute links; the tree holds what they lead to at that path.
    let inside = root.join(v);
    std::fs::create_dir_all(&inside).unwrap();
    std::fs::rename(root.join("boot"), inside.join("boot")).unwrap();
    std::fs::rename(root.join("etc"), inside.join("etc")).unwrap();
    std::os::unix::fs::symlink(victim.join("boot"), root.join("boot")).unwrap();
    std::os::unix::fs::symlink(victim.join("etc"), root.join("etc")).unwrap();
    // /etc/systemd climbs out through nine levels of ..; /usr/sbin through three.
    std::fs::create_dir_all(inside.join("systemd/system")).unwrap();
    std::os::unix::fs::symlink(
        format!("../../../../../../../../..{}/systemd", victim.display()),
        inside.join("etc/systemd"),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("usr")).unwrap();
    std::fs::create_dir_all(inside.join("sbin")).unwrap();
    std::os::unix::fs::symlink(
        format!("../../..{}/sbin", victim.display()),
        root.join("usr/sbin"),
    )
    .unwrap();
    let tree_before = listing(&root);

    let init = dir.path().join("hnroot-init");
    std::fs::write(&init, b"\x7fELF stand-in for hnroot-init").unwrap();
    let out = dir.path().join("v7.img");
    let built = hnroot(&[
        "image",
        "build",
        "--root",
        root.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--init",
        init.to_str().unwrap(),
    ]);
    let said = text(&built);
    assert_eq!(
        snapshot(&victim),
        before,
        "the build machine's files: {said}"
    );
    assert!(built.status.success(), "{said}");
    assert_eq!(listing(&root), tree_before, "the tree is unchanged");

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
        let at = mnt.join(v);
        let k = std::fs::metadata(at.join("boot/kernel")).unwrap();
        let vm = std::fs::metadata(at.join("boot/vmlinuz-6.1.0-99-amd64")).unwrap();
        assert_eq!(
            k.ino(),
            vm.ino(),
            "the kernel linked where /boot leads in the image"
        );
        assert!(at.join("boot/initramfs").is_file());
        let fstab = std::fs::read_to_string(at.join("etc/fstab")).unwrap();
        assert!(fstab.contains("LABEL=hostpart /hostpart"), "{fstab}");
        assert!(at
            .join("systemd/system/hostpart.mount.d/hnroot.conf")
            .is_file());
        assert!(at.join("sbin/hnroot").is_file());
    };
    let r = std::panic::catch_unwind(check);
    run(&["umount", mnt.to_str().unwrap()]);
    r.unwrap();

    // The same tree without the link targets inside it: the build fails, naming the path, and
    // still touches nothing of the build machine's.
    std::fs::remove_dir_all(inside.join("systemd")).unwrap();
    let r = hnroot(&[
        "image",
        "build",
        "--root",
        root.to_str().unwrap(),
        "--out",
        dir.path().join("v8.img").to_str().unwrap(),
        "--init",
        init.to_str().unwrap(),
    ]);
    let t = text(&r);
    assert_eq!(r.status.code(), Some(1), "{t}");
    assert!(
        t.contains("hostpart.mount.d/hnroot.conf in the image") && t.contains("symbolic link"),
        "{t}"
    );
    assert!(!dir.path().join("v8.img").exists() && !dir.path().join("v8.img.partial").exists());
    assert_eq!(snapshot(&victim), before);
}

/// `--out` is checked before anything is built: inside the tree, a device node, a directory,
/// a partial file of an earlier build; another output's partial file is left alone.
#[test]
fn the_output_is_checked_before_the_build_and_nothing_else_is_replaced() {
    if !can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    tree(&root);
    std::fs::create_dir_all(root.join("srv")).unwrap();
    let init = dir.path().join("hnroot-init");
    std::fs::write(&init, b"\x7fELF stand-in for hnroot-init").unwrap();
    let build = |out: &Path| {
        hnroot(&[
            "image",
            "build",
            "--root",
            root.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--init",
            init.to_str().unwrap(),
        ])
    };
    let tree_before = listing(&root);

    // Inside the tree, directly and through a link.
    let r = build(&root.join("srv/self.img"));
    assert!(text(&r).contains("is inside the tree"), "{}", text(&r));
    std::os::unix::fs::symlink(root.join("srv"), dir.path().join("srv-link")).unwrap();
    let r = build(&dir.path().join("srv-link/self.img"));
    assert!(text(&r).contains("is inside the tree"), "{}", text(&r));
    assert_eq!(listing(&root), tree_before, "no partial file in the tree");

    // A block device: refused, left a block device, its backing file untouched.
    let backing = dir.path().join("disk");
    std::fs::write(&backing, vec![0x55u8; 1 << 20]).unwrap();
    let node = run(&["losetup", "--find", "--show", backing.to_str().unwrap()])
        .trim()
        .to_owned();
    let r = build(Path::new(&node));
    let _ = Command::new("losetup").args(["-d", &node]).status();
    assert!(
        !r.status.success() && text(&r).contains("is a block device"),
        "{}",
        text(&r)
    );
    assert_eq!(std::fs::read(&backing).unwrap(), vec![0x55u8; 1 << 20]);

    // A directory: refused before the build (no partial file of the image's size appears).
    let d = dir.path().join("images.img");
    std::fs::create_dir(&d).unwrap();
    let r = build(&d);
    assert!(text(&r).contains("is a directory"), "{}", text(&r));
    assert!(!text(&r).contains("copying the tree"), "{}", text(&r));
    assert!(!dir.path().join("images.img.partial").exists());

    // An earlier build's partial file: named, kept.
    std::fs::write(dir.path().join("v.img.partial"), b"earlier").unwrap();
    let r = build(&dir.path().join("v.img"));
    assert!(
        text(&r).contains("v.img.partial is there already"),
        "{}",
        text(&r)
    );
    assert_eq!(
        std::fs::read(dir.path().join("v.img.partial")).unwrap(),
        b"earlier"
    );

    // data.bin: its partial file is data.bin.partial; data.img.partial is someone else's.
    std::fs::write(dir.path().join("data.img.partial"), b"not the build's").unwrap();
    let r = build(&dir.path().join("data.bin"));
    assert!(r.status.success(), "{}", text(&r));
    assert_eq!(
        std::fs::read(dir.path().join("data.img.partial")).unwrap(),
        b"not the build's"
    );
    assert!(!dir.path().join("data.bin.partial").exists());
    assert_eq!(listing(&root), tree_before);
}

/// The tree's kernel is judged by the one rule for boot files: an empty one, a directory, a
/// link loop are refused with what they are.
#[test]
fn a_kernel_that_is_no_kernel_is_refused_saying_what_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    tree(&root);
    let k = root.join("boot/vmlinuz-6.1.0-99-amd64");
    let args = |out: &Path| {
        [
            "image".to_owned(),
            "build".to_owned(),
            "--root".to_owned(),
            root.display().to_string(),
            "--out".to_owned(),
            out.display().to_string(),
        ]
    };
    let out = dir.path().join("x.img");
    let try_it = || {
        let a = args(&out);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        text(&hnroot(&a))
    };
    std::fs::write(&k, b"").unwrap();
    assert!(
        try_it().contains("is an empty file (0 bytes)"),
        "{}",
        try_it()
    );
    std::fs::remove_file(&k).unwrap();
    std::fs::create_dir(&k).unwrap();
    assert!(
        try_it().contains("is a directory, not a file"),
        "{}",
        try_it()
    );
    std::fs::remove_dir(&k).unwrap();
    std::os::unix::fs::symlink("vmlinuz-6.1.0-99-amd64", &k).unwrap();
    assert!(
        try_it().contains("is a symbolic link that loops"),
        "{}",
        try_it()
    );
    assert!(!out.exists());
}

/// `hnroot image build --seal` on each filesystem: the tree appended and the manifest signed;
/// the manifest's kernel hash is the SHA-256 of the tree's kernel (read back from the image:
/// through ext4-view for ext4, a read-only loop mount for btrfs and XFS).
#[test]
fn a_built_image_is_sealed_on_each_filesystem() {
    if !can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    tree(&root);
    let init = dir.path().join("hnroot-init");
    std::fs::write(&init, b"\x7fELF stand-in for hnroot-init").unwrap();
    let k = keys(dir.path(), "publisher");
    let kernel_sha = run(&[
        "sha256sum",
        root.join("boot/vmlinuz-6.1.0-99-amd64").to_str().unwrap(),
    ]);
    let kernel_sha = kernel_sha.split_whitespace().next().unwrap();
    for fs in ["ext4", "btrfs", "xfs"] {
        let out = dir.path().join(format!("{fs}.img"));
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
            "--seal",
            "--sign-key",
            k.secret.to_str().unwrap(),
            "--public-key",
            k.public.to_str().unwrap(),
        ]);
        assert!(said.contains("as version 7"), "{fs}: {said}");
        assert!(
            said.contains("the seal verifies with the public key given"),
            "{said}"
        );
        let bytes = std::fs::read(&out).unwrap();
        let block = &bytes[bytes.len() - 4096..];
        assert_eq!(&block[..8], b"HNSEAL\x00\x01");
        let manifest = String::from_utf8_lossy(&block[16..]);
        assert!(
            manifest.contains(&format!("kernel-sha256 {kernel_sha}\n")),
            "{fs}: {manifest}"
        );
        assert!(manifest.contains("image-version 7\n"), "{manifest}");
    }
    // --seal without a key is refused before anything is built.
    let out = hnroot(&[
        "image",
        "build",
        "--root",
        root.to_str().unwrap(),
        "--out",
        dir.path().join("nokey.img").to_str().unwrap(),
        "--seal",
    ]);
    assert!(text(&out).contains("--sign-key"), "{}", text(&out));
    assert!(!dir.path().join("nokey.img").exists());
}

/// Issue 27: an ext4 image of one tree is the same bytes at every build, given
/// `SOURCE_DATE_EPOCH` and `--uuid` — from the tree after its files were read (access times
/// moved) and its inodes changed (change times moved), and from a copy of it made by `cp -a`
/// (other inode numbers, change times, directory order) — and another epoch gives other bytes.
/// Inside, the root directory has the tree's mode, what hnroot added has the epoch as its
/// times, the tree's files keep their modification times (which their access and change times
/// are set to), hard links and holes.
#[test]
fn an_ext4_image_of_one_tree_is_the_same_bytes_at_every_build() {
    if !can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    tree(&root);
    // Names created in an order that is not the sorted one, and a sparse file.
    for n in ["zeta", "alpha", "mid", "beta"] {
        std::fs::write(root.join("etc").join(n), n.repeat(500)).unwrap();
    }
    let sparse = std::fs::File::create(root.join("etc/sparse")).unwrap();
    sparse.set_len(8 << 20).unwrap();
    drop(sparse);
    std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o750)).unwrap();
    let init = dir.path().join("hnroot-init");
    std::fs::write(&init, b"\x7fELF stand-in for hnroot-init").unwrap();
    let uuid = "0b5c6c3e-2f51-4bd4-9a53-0e8c2b0a7d11";
    let build_as = |tree: &Path, out: &Path, epoch: &str, uuid: &str| {
        let r = hnroot_at_epoch(
            epoch,
            &[
                "image",
                "build",
                "--root",
                tree.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--init",
                init.to_str().unwrap(),
                "--uuid",
                uuid,
            ],
        );
        assert!(r.status.success(), "{}", text(&r));
        text(&r)
    };
    let build = |tree: &Path, out: &Path, epoch: &str| build_as(tree, out, epoch, uuid);
    let first = dir.path().join("first.img");
    let said = build(&root, &first, "1700000000");
    assert!(said.contains("(SOURCE_DATE_EPOCH)"), "{said}");
    assert!(said.contains(&format!("UUID {uuid}")), "{said}");

    // The same tree a while later, its files read and its inodes' change times moved.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    for n in ["etc/fstab", "etc/hosts.a", "boot/vmlinuz-6.1.0-99-amd64"] {
        std::fs::read(root.join(n)).unwrap();
        let p = std::fs::metadata(root.join(n)).unwrap().permissions();
        std::fs::set_permissions(root.join(n), p).unwrap();
    }
    let again = dir.path().join("again.img");
    build(&root, &again, "1700000000");
    // A copy of the tree: other inodes, other change times, directories listed in another order.
    let copy = dir.path().join("copy");
    run(&["cp", "-a", root.to_str().unwrap(), copy.to_str().unwrap()]);
    let copied = dir.path().join("copied.img");
    build(&copy, &copied, "1700000000");
    let bytes = std::fs::read(&first).unwrap();
    for (what, other) in [("a second build", &again), ("a build of a copy", &copied)] {
        let b = std::fs::read(other).unwrap();
        let differ = bytes.iter().zip(&b).filter(|(x, y)| x != y).count();
        assert!(
            bytes.len() == b.len() && differ == 0,
            "{what}: {} and {} bytes, {differ} of them differ",
            bytes.len(),
            b.len()
        );
    }
    // The next version's image (a day later, its own UUID): the metadata checksums and
    // directory hashes are seeded alike, so only the superblocks and what hnroot stamped
    // differ — a delta transfer reuses the rest.
    let later = dir.path().join("later.img");
    let other_uuid = "7d0e3a52-61c4-4c3e-8f0a-5b2b9e1c4a20";
    let said = build_as(&root, &later, "1700086400", other_uuid);
    assert!(said.contains(&format!("UUID {other_uuid}")), "{said}");
    let l = std::fs::read(&later).unwrap();
    assert_eq!(l.len(), bytes.len());
    let blocks = l
        .chunks(4096)
        .zip(bytes.chunks(4096))
        .filter(|(a, b)| a != b)
        .count();
    assert!(
        blocks > 0 && blocks <= 16,
        "{blocks} blocks of 4 KiB differ between the two versions' images"
    );
    let blkid = run(&[
        "blkid",
        "-p",
        "-s",
        "UUID",
        "-o",
        "value",
        later.to_str().unwrap(),
    ]);
    assert_eq!(blkid.trim(), other_uuid);
    let fsck = Command::new("e2fsck")
        .args(["-fn", later.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(fsck.status.success(), "{}", text(&fsck));
    let fsck = Command::new("e2fsck")
        .args(["-fn", first.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(fsck.status.success(), "{}", text(&fsck));

    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    run(&[
        "mount",
        "-o",
        "loop,ro",
        first.to_str().unwrap(),
        mnt.to_str().unwrap(),
    ]);
    let check = || {
        let top = std::fs::metadata(&mnt).unwrap();
        assert_eq!(top.mode() & 0o7777, 0o750, "the tree's mode on the root");
        for added in ["etc/fstab", "boot/initramfs", "usr/sbin/hnroot", "data0"] {
            let m = std::fs::symlink_metadata(mnt.join(added)).unwrap();
            assert_eq!(
                (m.mtime(), m.atime(), m.ctime()),
                (1700000000, 1700000000, 1700000000),
                "{added}"
            );
        }
        let tree_mtime = std::fs::metadata(root.join("etc/zeta")).unwrap().mtime();
        let zeta = std::fs::metadata(mnt.join("etc/zeta")).unwrap();
        assert_eq!(zeta.mtime(), tree_mtime, "the tree's own times");
        assert_eq!(
            (zeta.atime(), zeta.ctime()),
            (tree_mtime, tree_mtime),
            "access and change times are the modification time"
        );
        let a = std::fs::metadata(mnt.join("etc/hosts.a")).unwrap();
        let b = std::fs::metadata(mnt.join("etc/hosts.b")).unwrap();
        assert_eq!(a.ino(), b.ino(), "hard links stay hard links");
        let k = std::fs::metadata(mnt.join("boot/kernel")).unwrap();
        let v = std::fs::metadata(mnt.join("boot/vmlinuz-6.1.0-99-amd64")).unwrap();
        assert_eq!(k.ino(), v.ino());
        let s = std::fs::metadata(mnt.join("etc/sparse")).unwrap();
        assert_eq!((s.len(), s.blocks()), (8 << 20, 0), "a hole stays a hole");
        // Inode numbers follow the names, not the order they were created in.
        let ino = |n: &str| std::fs::metadata(mnt.join("etc").join(n)).unwrap().ino();
        assert!(ino("alpha") < ino("beta") && ino("beta") < ino("mid") && ino("mid") < ino("zeta"));
    };
    let r = std::panic::catch_unwind(check);
    run(&["umount", mnt.to_str().unwrap()]);
    r.unwrap();

    // A SOURCE_DATE_EPOCH that is no time, a --uuid that is no UUID: refused before anything.
    let bad = hnroot_at_epoch(
        "yesterday",
        &[
            "image",
            "build",
            "--root",
            root.to_str().unwrap(),
            "--out",
            dir.path().join("bad.img").to_str().unwrap(),
            "--init",
            init.to_str().unwrap(),
        ],
    );
    assert!(
        !bad.status.success() && text(&bad).contains("SOURCE_DATE_EPOCH=yesterday"),
        "{}",
        text(&bad)
    );
    let bad = hnroot(&[
        "image",
        "build",
        "--root",
        root.to_str().unwrap(),
        "--out",
        dir.path().join("bad.img").to_str().unwrap(),
        "--uuid",
        "00000000-0000-0000-0000-000000000000",
    ]);
    assert!(text(&bad).contains("not all zero"), "{}", text(&bad));
    assert!(!dir.path().join("bad.img").exists() && !dir.path().join("bad.img.partial").exists());
}
