//! The CLI's mount of the ESP for the moment (`StateFile::mount_temporary`) and systemd's mount
//! of the same ESP at `/boot/loader` (fstab: read-write) live side by side, in either order: a
//! mount made while the other stands succeeds, hnroot's mount point is read-only but for its
//! own write, and that write never makes the other mount read-only. A FAT made by mkfs.vfat on
//! a loop device (ext4, which the boot-state file may also live on, where the running kernel
//! has no vfat loaded: the rule is the kernel's for every filesystem on a block device); the other
//! mount made by mount(8) with the fstab line's options. Needs root (mount, loop devices);
//! without it each test says so and returns.

use std::path::{Path, PathBuf};
use std::process::Command;

use hnroot_core::bootstate::{BootState, StateSeen, Trial, Tries};
use hnroot_core::probe::FsOutcome;
use hnroot_core::uuid::FsUuid;
use hnroot_linux::blockdev::Found;
use hnroot_linux::bootstate_file;
use hnroot_linux::esp::StateFile;
use hnroot_linux::probe::Device;

mod support;
use support::{can_run, run};

const A: FsUuid = FsUuid::Uuid([0xa; 16]);
const B: FsUuid = FsUuid::Uuid([0xb; 16]);

/// An ESP on a loop device, detached when dropped.
struct Esp {
    node: PathBuf,
    dir: tempfile::TempDir,
    /// `vfat`, or `ext4` where the kernel has no vfat.
    fs: &'static str,
}

impl Esp {
    fn new() -> Esp {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("esp.img");
        std::fs::File::create(&file)
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
        let path = file.to_str().unwrap();
        let known = std::fs::read_to_string("/proc/filesystems").unwrap();
        let fs = if known.lines().any(|l| l.ends_with("\tvfat")) {
            run(&["mkfs.vfat", "-n", "EFI-BOOT", path]);
            "vfat"
        } else {
            eprintln!("this kernel has no vfat: the ESP is ext4");
            run(&["mkfs.ext4", "-q", "-L", "EFI-BOOT", path]);
            "ext4"
        };
        let node = PathBuf::from(run(&["losetup", "--find", "--show", path]));
        Esp { node, dir, fs }
    }

    /// The device as `blockdev::find` reports it.
    fn found(&self) -> Found {
        let mut device = Device::open(&self.node).unwrap();
        let size = device.size();
        let FsOutcome::Found(info) = device.probe_fs(0, size).unwrap() else {
            panic!("{}: no FAT found by the probe", self.node.display());
        };
        Found {
            name: self.node.file_name().unwrap().to_str().unwrap().to_owned(),
            node: self.node.clone(),
            fs: Some(info),
            part: None,
            chosen_by: None,
            devices: 1,
            reads: 0,
        }
    }

    /// Mount it at a fresh directory as systemd mounts `/boot/loader` from hnroot's fstab line
    /// (`vfat umask=0077`, read-write), or read-only (`ro`).
    fn mount_as_fstab(&self, name: &str, ro: bool) -> Other {
        let at = self.dir.path().join(name);
        std::fs::create_dir(&at).unwrap();
        let options = match (self.fs, ro) {
            ("vfat", false) => "umask=0077",
            ("vfat", true) => "umask=0077,ro",
            (_, false) => "defaults",
            (_, true) => "ro",
        };
        let (node, at_str) = (self.node.to_str().unwrap(), at.to_str().unwrap());
        run(&["mount", "-t", self.fs, "-o", options, node, at_str]);
        Other { at }
    }
}

impl Drop for Esp {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.node).status();
    }
}

/// The other mount (systemd's), unmounted when dropped.
struct Other {
    at: PathBuf,
}

impl Drop for Other {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.at).status();
    }
}

/// Whether a file can be made in `dir` (and is removed again).
fn writable(dir: &Path) -> bool {
    let probe = dir.join("probe");
    let made = std::fs::write(&probe, b"x").is_ok();
    let _ = std::fs::remove_file(&probe);
    made
}

fn trial() -> BootState {
    BootState::Trial(Trial {
        image: B,
        tries: Tries::new(2, 3).unwrap(),
        good: Some(A),
    })
}

/// hnroot's mount first, systemd's while it stands: both succeed, the write goes through
/// hnroot's mount alone, and systemd's stays writable through it and after.
#[test]
fn systemd_mounts_the_esp_while_the_cli_has_it_mounted() {
    if !can_run() {
        return;
    }
    let esp = Esp::new();
    let base = tempfile::tempdir().unwrap();
    let state = StateFile::mount_temporary(&esp.found(), base.path()).unwrap();
    let own = state.mounted_at().unwrap().to_owned();
    state.create(&BootState::committed(A), false).unwrap();
    assert!(
        !writable(&own),
        "hnroot's mount point is read-only but for its writes"
    );

    // Before the fix: EBUSY ("Can't mount, would change RO state"), boot-loader.mount failed.
    let other = esp.mount_as_fstab("boot-loader", false);
    assert!(
        writable(&other.at),
        "systemd's mount is read-write as fstab asks"
    );

    state.write(&trial()).unwrap();
    assert!(
        writable(&other.at),
        "hnroot's write left systemd's mount read-write"
    );
    assert!(
        !writable(&own),
        "hnroot's mount point is read-only again after the write"
    );
    let seen = bootstate_file::seen(&other.at.join("hnroot/bootstate")).0;
    assert_eq!(
        seen,
        StateSeen::Valid(trial()),
        "the write is seen through both"
    );

    drop(state);
    assert!(!own.exists(), "hnroot's mount point is gone with its mount");
    assert!(
        writable(&other.at),
        "systemd's mount outlives hnroot's, read-write"
    );
}

/// systemd's mount first (read-write), hnroot's while it stands: hnroot's mount succeeds (it
/// asked for a read-only superblock before, which the kernel refuses), its write leaves
/// systemd's mount writable.
#[test]
fn the_cli_mounts_the_esp_while_systemd_has_it_mounted() {
    if !can_run() {
        return;
    }
    let esp = Esp::new();
    let other = esp.mount_as_fstab("boot-loader", false);
    let base = tempfile::tempdir().unwrap();
    let state = StateFile::mount_temporary(&esp.found(), base.path()).unwrap();
    let own = state.mounted_at().unwrap().to_owned();
    assert!(!writable(&own), "hnroot's mount point is read-only");
    state.create(&BootState::committed(A), false).unwrap();
    state.write(&trial()).unwrap();
    assert!(
        !writable(&own),
        "hnroot's mount point is read-only again after the write"
    );
    assert!(
        writable(&other.at),
        "hnroot's writes left systemd's mount read-write"
    );
    drop(state);
    assert!(writable(&other.at));
}

/// An ESP mounted read-only elsewhere: hnroot's mount for the moment is read-only as that one
/// (a read-write superblock is refused) and reads the boot state.
#[test]
fn an_esp_mounted_read_only_elsewhere_is_still_read() {
    if !can_run() {
        return;
    }
    let esp = Esp::new();
    {
        let base = tempfile::tempdir().unwrap();
        let state = StateFile::mount_temporary(&esp.found(), base.path()).unwrap();
        state.create(&BootState::committed(A), false).unwrap();
    }
    let other = esp.mount_as_fstab("read-only", true);
    let base = tempfile::tempdir().unwrap();
    let state = StateFile::mount_temporary(&esp.found(), base.path()).unwrap();
    assert_eq!(state.read().0, StateSeen::Valid(BootState::committed(A)));
    assert!(!writable(&other.at) && !writable(state.mounted_at().unwrap()));
}
