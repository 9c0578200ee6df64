//! A writable layer that already exists on a full hostpart: the kernel's overlayfs mounts it,
//! but read-only, when it cannot make its work directory (`work/work`), and says so only in the
//! kernel log. `mounts::is_read_only` is how hnroot-init tells (and then says it on the
//! console). The upper filesystem here is a tmpfs with a handful of inodes, filled, so that the
//! mkdir fails with `ENOSPC` as on a full ext4 hostpart. Needs root (mount); without it the
//! test says so and returns.

use std::path::Path;

use hnroot_linux::mounts;

fn umount(at: &Path) {
    // Lazily, so that a failed assertion still leaves nothing mounted behind.
    let _ = mounts::umount(at, libc::MNT_DETACH);
}

#[test]
fn an_existing_layer_on_a_full_filesystem_is_mounted_read_only_and_told() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: needs root (mount)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (upperfs, lower, root) = (
        dir.path().join("hostpart"),
        dir.path().join("lower"),
        dir.path().join("root"),
    );
    for d in [&upperfs, &lower, &root] {
        std::fs::create_dir(d).unwrap();
    }
    mounts::mount(
        Path::new("tmpfs"),
        &upperfs,
        Some("tmpfs"),
        0,
        Some("size=1m,nr_inodes=32"),
    )
    .unwrap();
    let result = std::panic::catch_unwind(|| {
        // A layer from earlier boots: its upper directory with a file, its work directory.
        let (upper, work) = (upperfs.join("upper"), upperfs.join("work"));
        std::fs::create_dir(&upper).unwrap();
        std::fs::create_dir(&work).unwrap();
        std::fs::write(upper.join("kept"), b"from an earlier boot\n").unwrap();
        std::fs::write(lower.join("image-file"), b"the image's\n").unwrap();
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        );
        // The mount call hnroot-init makes.
        let mount = || {
            mounts::mount(
                Path::new("overlay"),
                &root,
                Some("overlay"),
                0,
                Some(&options),
            )
            .unwrap()
        };
        // With room: read-write.
        mount();
        assert!(!mounts::is_read_only(&root).unwrap());
        umount(&root);
        // Full: every inode taken (overlayfs removed and made work/work above; make it fail
        // now).
        std::fs::remove_dir_all(work.join("work")).ok();
        let mut n = 0;
        while std::fs::write(upperfs.join(format!("fill{n}")), b"").is_ok() {
            n += 1;
            assert!(n < 64, "the tmpfs's inode limit did not hold");
        }
        assert!(
            std::fs::create_dir(work.join("probe")).is_err(),
            "the filesystem is not full"
        );
        // It succeeds, read-only, the layer's files there.
        mount();
        let ro = mounts::is_read_only(&root).unwrap();
        let kept = std::fs::read(root.join("kept")).unwrap();
        let image = std::fs::read(root.join("image-file")).unwrap();
        let write = std::fs::write(root.join("new"), b"x");
        umount(&root);
        assert!(
            ro,
            "overlayfs on a full upper filesystem should be read-only"
        );
        assert_eq!(kept, b"from an earlier boot\n");
        assert_eq!(image, b"the image's\n");
        assert_eq!(
            write.unwrap_err().raw_os_error(),
            Some(libc::EROFS),
            "writes fail as on a read-only filesystem"
        );
        // Not a mount point at all: statvfs still answers (the directory's filesystem).
        assert!(!mounts::is_read_only(dir.path()).unwrap());
        assert!(mounts::is_read_only(&dir.path().join("missing")).is_err());
    });
    umount(&upperfs);
    result.unwrap();
}
