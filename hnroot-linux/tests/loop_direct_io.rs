//! `loopdev::attach` asks every loop device for direct I/O and falls back to buffered I/O where
//! the backing filesystem refuses it, saying which it got (`LoopIo`), as the kernel reports it
//! (`/sys/block/loopN/loop/dio`). Backing files on real filesystems mounted for the test: ext4
//! (made by mkfs.ext4, on a loop device: direct I/O), ramfs (no direct I/O in any kernel: the
//! fallback), tmpfs (direct I/O since Linux 6.6, buffered before). Each device reads back the
//! bytes of its file. On a hostpart of a 4Kn disk (a loop device of 4096-byte sectors), each
//! image gets a loop device of a block size it mounts from: 4096 with direct I/O for ext4, 512
//! buffered for an XFS of 512-byte sectors. Needs root (mount, loop devices); without it each
//! test says so and returns.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use hnroot_linux::loopdev::{self, LoopIo};

mod support;
use support::{can_run, run};

/// A filesystem mounted at a fresh directory, unmounted (lazily) when dropped.
struct Mounted {
    at: PathBuf,
    _dir: tempfile::TempDir,
}

impl Mounted {
    fn new(fstype: &str, source: &str, options: &[&str]) -> Mounted {
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().join("mnt");
        std::fs::create_dir(&at).unwrap();
        let mut argv = vec!["mount", "-t", fstype];
        argv.extend_from_slice(options);
        argv.push(source);
        argv.push(at.to_str().unwrap());
        run(&argv);
        Mounted { at, _dir: dir }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

/// 4 MiB of a pattern no two sectors share, at `path`.
fn pattern_file(path: &Path) -> Vec<u8> {
    let bytes: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i / 512).wrapping_mul(31).wrapping_add(i % 251) as u8)
        .collect();
    std::fs::write(path, &bytes).unwrap();
    bytes
}

/// What the kernel says of the device's direct I/O (`/sys/block/loopN/loop/dio`).
fn sysfs_dio(node: &Path) -> String {
    let name = node.file_name().unwrap().to_str().unwrap();
    std::fs::read_to_string(format!("/sys/block/{name}/loop/dio"))
        .unwrap()
        .trim()
        .to_owned()
}

/// Attach `path` read-only, check the device reads back its bytes and agrees with sysfs, and
/// return what it says of its I/O.
fn attach_and_read(path: &Path, bytes: &[u8]) -> LoopIo {
    let file = File::open(path).unwrap();
    let lo = loopdev::attach(Path::new("/dev"), &file, "hnroot-dio-test", false).unwrap();
    let want = match lo.io {
        LoopIo::Direct => "1",
        LoopIo::Buffered(_) => "0",
    };
    assert_eq!(
        sysfs_dio(&lo.node),
        want,
        "{}: attach said {:?}, the kernel says otherwise",
        lo.node.display(),
        lo.io
    );
    let mut got = Vec::new();
    File::open(&lo.node).unwrap().read_to_end(&mut got).unwrap();
    assert!(
        got == bytes,
        "{} does not read back {}",
        lo.node.display(),
        path.display()
    );
    // Read-only: a write through the device is refused.
    let rw = std::fs::OpenOptions::new().write(true).open(&lo.node);
    assert!(
        rw.is_err() || rw.unwrap().write_at(b"x", 0).is_err(),
        "{} took a write",
        lo.node.display()
    );
    lo.io
}

/// (major, minor) of the running kernel.
fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[test]
fn a_file_on_ext4_gets_direct_io() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fs_image = dir.path().join("ext4.fs");
    File::create(&fs_image).unwrap().set_len(32 << 20).unwrap();
    run(&["mkfs.ext4", "-q", "-F", fs_image.to_str().unwrap()]);
    let ext4 = Mounted::new("ext4", fs_image.to_str().unwrap(), &["-o", "loop"]);
    let path = ext4.at.join("image");
    let bytes = pattern_file(&path);
    assert_eq!(attach_and_read(&path, &bytes), LoopIo::Direct);
}

#[test]
fn a_file_on_ramfs_falls_back_to_buffered_io_and_says_why() {
    if !can_run() {
        return;
    }
    let ramfs = Mounted::new("ramfs", "hnroot-dio-test", &[]);
    let path = ramfs.at.join("image");
    let bytes = pattern_file(&path);
    let io = attach_and_read(&path, &bytes);
    let LoopIo::Buffered(why) = &io else {
        panic!("ramfs cannot do direct I/O, yet the loop device says {io:?}");
    };
    assert_eq!(io.code(), "buffered");
    assert!(why.contains("direct I/O"), "{why}");
    assert!(
        io.to_string().contains("cached twice"),
        "the report says what it costs: {io}"
    );
}

#[test]
fn a_file_on_tmpfs_gets_what_the_kernel_can_do() {
    if !can_run() {
        return;
    }
    let tmpfs = Mounted::new("tmpfs", "hnroot-dio-test", &["-o", "size=16m"]);
    let path = tmpfs.at.join("image");
    let bytes = pattern_file(&path);
    let io = attach_and_read(&path, &bytes);
    // tmpfs accepts O_DIRECT since Linux 6.6 ("tmpfs: trivial support for direct IO").
    if kernel_version() >= (6, 6) {
        assert_eq!(io, LoopIo::Direct);
    } else {
        assert!(matches!(io, LoopIo::Buffered(_)), "{io:?}");
    }
}

/// A loop device of 4096-byte sectors over a file (`losetup --sector-size 4096`): a disk as a
/// 4Kn drive presents itself. Detached when dropped.
struct Disk4k {
    node: String,
    _dir: tempfile::TempDir,
}

impl Disk4k {
    fn new(mib: u64) -> Disk4k {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("disk");
        File::create(&file).unwrap().set_len(mib << 20).unwrap();
        let out = Command::new("losetup")
            .args(["--find", "--show", "--sector-size", "4096"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let node = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        Disk4k { node, _dir: dir }
    }
}

impl Drop for Disk4k {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.node]).status();
    }
}

/// The loop device's logical block size, as the kernel says.
fn sysfs_block_size(node: &Path) -> String {
    let name = node.file_name().unwrap().to_str().unwrap();
    std::fs::read_to_string(format!("/sys/block/{name}/queue/logical_block_size"))
        .unwrap()
        .trim()
        .to_owned()
}

/// Attach the filesystem image `path` read-only and mount it: what the device's I/O and block
/// size are, and whether the image mounted (the kernel's complaint if not).
fn attach_and_mount(path: &Path, fstype: &str) -> (LoopIo, String, Result<(), String>) {
    let file = File::open(path).unwrap();
    let lo = loopdev::attach(Path::new("/dev"), &file, "hnroot-4kn-test", false).unwrap();
    let block = sysfs_block_size(&lo.node);
    let want = if lo.io == LoopIo::Direct { "1" } else { "0" };
    assert_eq!(sysfs_dio(&lo.node), want, "{:?}", lo.io);
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("mount")
        .args(["-t", fstype, "-o", "ro"])
        .arg(&lo.node)
        .arg(dir.path())
        .output()
        .unwrap();
    let mounted = if out.status.success() {
        let _ = Command::new("umount").arg(dir.path()).status();
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    };
    (lo.io, block, mounted)
}

/// hostpart on a 4Kn disk: direct I/O on its files needs 4096-byte blocks. An ext4 image (4 KiB
/// blocks) gets a 4096-byte loop device with direct I/O; an XFS image made with 512-byte
/// sectors gets 512 and buffered I/O, saying why, and mounts (left to the kernel, Linux 6.18
/// gives a loop device asked for direct I/O 4096-byte blocks, which that XFS refuses: "device
/// supports 4096 byte sectors (not 512)").
#[test]
fn a_4kn_hostpart_gets_loop_devices_its_images_mount_from() {
    if !can_run() {
        return;
    }
    let disk = Disk4k::new(1024);
    run(&["mkfs.ext4", "-q", "-F", &disk.node]);
    let hostpart = Mounted::new("ext4", &disk.node, &[]);

    let ext4 = hostpart.at.join("ext4.img");
    File::create(&ext4).unwrap().set_len(64 << 20).unwrap();
    run(&[
        "mkfs.ext4",
        "-q",
        "-F",
        "-b",
        "4096",
        ext4.to_str().unwrap(),
    ]);
    let (io, block, mounted) = attach_and_mount(&ext4, "ext4");
    assert_eq!(
        (io, block.as_str(), mounted),
        (LoopIo::Direct, "4096", Ok(()))
    );

    let xfs = hostpart.at.join("xfs.img");
    File::create(&xfs).unwrap().set_len(320 << 20).unwrap();
    run(&[
        "mkfs.xfs",
        "-q",
        "-f",
        "-s",
        "size=512",
        xfs.to_str().unwrap(),
    ]);
    let (io, block, mounted) = attach_and_mount(&xfs, "xfs");
    assert_eq!(block, "512");
    assert_eq!(mounted, Ok(()), "the XFS of 512-byte sectors must mount");
    let LoopIo::Buffered(why) = &io else {
        panic!("512-byte blocks on a 4Kn disk cannot do direct I/O, yet: {io:?}");
    };
    assert!(
        why.contains("needs 4096-byte blocks") && why.contains("works in 512-byte units"),
        "the record says why: {why}"
    );
}
