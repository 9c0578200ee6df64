//! `find` over a fake `/sys/class/block` (the kernel's layout: class entries are symlinks
//! into `devices/`, a partition's directory sits inside its disk's) whose device nodes are
//! image files made by mkfs and sgdisk: exactly one match is found; none or two are errors
//! that name what was seen; a PARTUUID pin decides between two.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{symlink, FileExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use hnroot_core::cmdline::DeviceSpec;
use hnroot_core::device::ChosenBy;
use hnroot_core::PartUuid;
use hnroot_linux::blockdev::{find_in, list, FindError, Hints, Roots};
use hnroot_linux::probe::Device;

const MIB: u64 = 1 << 20;

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn image(path: &Path, mib: u64) {
    File::create(path).unwrap().set_len(mib * MIB).unwrap();
}

struct FakeMachine {
    _dir: tempfile::TempDir,
    roots: Roots,
    devices: PathBuf,
}

impl FakeMachine {
    fn new() -> FakeMachine {
        let dir = tempfile::tempdir().unwrap();
        let sys = dir.path().join("sys");
        let roots = Roots {
            sys_class_block: sys.join("class/block"),
            dev: dir.path().join("dev"),
        };
        fs::create_dir_all(&roots.sys_class_block).unwrap();
        fs::create_dir_all(&roots.dev).unwrap();
        FakeMachine {
            devices: sys.join("devices/virtual/block"),
            _dir: dir,
            roots,
        }
    }

    /// A disk (or, with `part = Some((disk, number, start))`, a partition) whose node is
    /// `node` (moved into /dev).
    fn add(&self, name: &str, node: &Path, part: Option<(&str, u32, u64)>) {
        let size = fs::metadata(node).unwrap().len();
        let dir = match part {
            Some((disk, number, start)) => {
                let d = self.devices.join(disk).join(name);
                fs::create_dir_all(&d).unwrap();
                fs::write(d.join("partition"), format!("{number}\n")).unwrap();
                fs::write(d.join("start"), format!("{}\n", start / 512)).unwrap();
                d
            }
            None => {
                let d = self.devices.join(name);
                fs::create_dir_all(&d).unwrap();
                d
            }
        };
        fs::write(dir.join("size"), format!("{}\n", size / 512)).unwrap();
        symlink(&dir, self.roots.sys_class_block.join(name)).unwrap();
        if size > 0 {
            fs::rename(node, self.roots.dev.join(name)).unwrap();
        }
    }
}

/// vda: GPT, 1 = vfat EFI-BOOT ("EFI system"), 2 = ext4 hostpart ("hostpart");
/// vdb: whole-disk ext4 "data"; loop0: unattached (size 0).
fn machine() -> (FakeMachine, PartUuid) {
    let m = FakeMachine::new();
    let work = m.roots.dev.parent().unwrap().join("work");
    fs::create_dir_all(&work).unwrap();
    let disk = work.join("vda");
    image(&disk, 100);
    run(
        "sgdisk",
        &[
            "-n",
            "1:2048:+32M",
            "-c",
            "1:EFI system",
            "-n",
            "2:0:+60M",
            "-c",
            "2:hostpart",
            disk.to_str().unwrap(),
        ],
    );
    let p1 = work.join("vda1");
    image(&p1, 32);
    run("mkfs.vfat", &["-n", "EFI-BOOT", p1.to_str().unwrap()]);
    let p2 = work.join("vda2");
    image(&p2, 60);
    run(
        "mkfs.ext4",
        &["-q", "-F", "-L", "hostpart", p2.to_str().unwrap()],
    );
    let out = OpenOptions::new().write(true).open(&disk).unwrap();
    out.write_all_at(&fs::read(&p1).unwrap(), MIB).unwrap();
    out.write_all_at(&fs::read(&p2).unwrap(), 33 * MIB).unwrap();
    let table = Device::open(&disk).unwrap().probe_table().unwrap().unwrap();
    let partuuid = table.partitions[1].partuuid.unwrap();
    m.add("vda", &disk, None);
    m.add("vda1", &p1, Some(("vda", 1, MIB)));
    m.add("vda2", &p2, Some(("vda", 2, 33 * MIB)));
    let vdb = work.join("vdb");
    image(&vdb, 16);
    run(
        "mkfs.ext4",
        &["-q", "-F", "-L", "data", vdb.to_str().unwrap()],
    );
    m.add("vdb", &vdb, None);
    let loop0 = work.join("loop0");
    image(&loop0, 0);
    m.add("loop0", &loop0, None);
    (m, partuuid)
}

fn spec(text: &str) -> DeviceSpec<'_> {
    DeviceSpec::parse(text).unwrap()
}

#[test]
fn exactly_one_match_by_every_kind_of_spec() {
    let (m, partuuid) = machine();
    let names: Vec<String> = list(&m.roots)
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(
        names,
        ["vda", "vda1", "vda2", "vdb"],
        "loop0 (size 0) is left out"
    );

    let found = find_in(&m.roots, &spec("LABEL=hostpart"), &Hints::default()).unwrap();
    assert_eq!(found.name, "vda2");
    assert_eq!(found.node, m.roots.dev.join("vda2"));
    assert_eq!(found.chosen_by, None, "the only one");
    assert_eq!(found.devices, 4);
    let uuid = found.fs.unwrap().uuid.unwrap().to_string();

    assert_eq!(
        find_in(&m.roots, &spec("LABEL=EFI-BOOT"), &Hints::default())
            .unwrap()
            .name,
        "vda1"
    );
    assert_eq!(
        find_in(&m.roots, &spec("LABEL=data"), &Hints::default())
            .unwrap()
            .name,
        "vdb"
    );
    let by_uuid = format!("UUID={}", uuid.to_uppercase());
    assert_eq!(
        find_in(&m.roots, &spec(&by_uuid), &Hints::default())
            .unwrap()
            .name,
        "vda2"
    );
    let by_partlabel = find_in(&m.roots, &spec("PARTLABEL=hostpart"), &Hints::default()).unwrap();
    assert_eq!(by_partlabel.name, "vda2");
    assert_eq!(by_partlabel.part.unwrap().partuuid, Some(partuuid));
    let by_partuuid = format!("PARTUUID={partuuid}");
    let found = find_in(&m.roots, &spec(&by_partuuid), &Hints::default()).unwrap();
    assert_eq!(found.name, "vda2");
    assert_eq!(
        found.fs.map(|f| f.fs_type.as_str()),
        Some("ext4"),
        "found by its table entry, then probed in full"
    );
    // Labels are compared byte for byte, as blkid does.
    assert!(find_in(&m.roots, &spec("LABEL=HOSTPART"), &Hints::default()).is_err());
}

#[test]
fn nothing_found_lists_what_was_seen() {
    let (m, _) = machine();
    let err = find_in(&m.roots, &spec("LABEL=missing"), &Hints::default()).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, FindError::NotFound { count: 4, .. }),
        "{err:?}"
    );
    assert!(
        text.starts_with("no filesystem labelled 'missing' among 4 block devices ("),
        "{text}"
    );
    assert!(text.contains("vda no filesystem"), "{text}");
    assert!(text.contains("vda1 vfat 'EFI-BOOT'"), "{text}");
    assert!(text.contains("vda2 ext4 'hostpart'"), "{text}");
    assert!(text.contains("vdb ext4 'data'"), "{text}");
    assert!(text.ends_with("nothing was selected"), "{text}");
}

#[test]
fn two_matches_are_an_error_unless_a_pin_decides() {
    let (m, partuuid) = machine();
    let work = m.roots.dev.parent().unwrap().join("work");
    let vdc = work.join("vdc");
    image(&vdc, 16);
    run(
        "mkfs.ext4",
        &["-q", "-F", "-L", "hostpart", vdc.to_str().unwrap()],
    );
    m.add("vdc", &vdc, None);

    let err = find_in(&m.roots, &spec("LABEL=hostpart"), &Hints::default()).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, FindError::Ambiguous { count: 2, .. }),
        "{err:?}"
    );
    assert!(text.contains("vda2 ext4 'hostpart'"), "{text}");
    assert!(text.contains(&format!("PARTUUID={partuuid}")), "{text}");
    assert!(text.contains("vdc ext4 'hostpart'"), "{text}");
    assert!(text.contains("refusing to guess"), "{text}");

    let pinned = Hints {
        pin: Some(partuuid),
        boot_disk_of: None,
    };
    let found = find_in(&m.roots, &spec("LABEL=hostpart"), &pinned).unwrap();
    assert_eq!(found.name, "vda2");
    assert_eq!(found.chosen_by, Some(ChosenBy::Pin));

    let other = PartUuid::parse("00000000-0000-0000-0000-000000000001").unwrap();
    let wrong_pin = Hints {
        pin: Some(other),
        boot_disk_of: None,
    };
    let err = find_in(&m.roots, &spec("LABEL=hostpart"), &wrong_pin).unwrap_err();
    assert!(
        matches!(err, FindError::Ambiguous { count: 2, .. }),
        "{err:?}"
    );

    // The ESP's disk decides when nothing is pinned (GRUB's boot-disk rule).
    let esp = find_in(&m.roots, &spec("LABEL=EFI-BOOT"), &Hints::default()).unwrap();
    let esp_partuuid = esp.part.and_then(|p| p.partuuid);
    let esp_partuuid = match esp_partuuid {
        Some(p) => p,
        None => {
            let mut scan = hnroot_linux::blockdev::Scan::run(&m.roots).unwrap();
            scan.all_part_entries(&m.roots);
            scan.devices
                .iter()
                .find(|s| s.dev.name == "vda1")
                .and_then(|s| s.part.as_ref())
                .and_then(|p| p.partuuid)
                .unwrap()
        }
    };
    let boot_disk = Hints {
        pin: None,
        boot_disk_of: Some(esp_partuuid),
    };
    let found = find_in(&m.roots, &spec("LABEL=hostpart"), &boot_disk).unwrap();
    assert_eq!(found.name, "vda2", "on the ESP's disk, vda");
    assert_eq!(found.chosen_by, Some(ChosenBy::BootDisk));
}

#[test]
fn a_missing_sysfs_is_an_error_that_says_so() {
    let roots = Roots {
        sys_class_block: PathBuf::from("/nonexistent/sys/class/block"),
        dev: PathBuf::from("/dev"),
    };
    let err = find_in(&roots, &spec("LABEL=x"), &Hints::default()).unwrap_err();
    assert!(matches!(err, FindError::List(_)), "{err:?}");
    assert!(err.to_string().contains("is sysfs mounted?"), "{err}");
}

/// An MD metadata 1.0 superblock at the end of `path` (as `mdadm --metadata=1.0` writes it, as
/// far as blkid looks): the device is then a RAID member, whatever its head holds.
fn make_raid_member(path: &Path) {
    let size = fs::metadata(path).unwrap().len();
    let offset = (size & !0xfff) - 0x2000;
    let mut sb = [0u8; 256];
    sb[0..4].copy_from_slice(&0xa92b_4efc_u32.to_le_bytes());
    sb[4..8].copy_from_slice(&1u32.to_le_bytes());
    sb[144..152].copy_from_slice(&(offset >> 9).to_le_bytes());
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .write_all_at(&sb, offset)
        .unwrap();
}

#[test]
fn a_search_reads_only_what_its_answer_needs() {
    let m = FakeMachine::new();
    let work = m.roots.dev.parent().unwrap().join("work");
    fs::create_dir_all(&work).unwrap();
    // Twelve ext4 filesystems (enough to be probed by several threads), one labelled `wanted`,
    // and a RAID member whose head holds an ext4 filesystem labelled `twin`.
    let mut names = Vec::new();
    for i in 0..12 {
        let name = format!("vd{}", (b'a' + i) as char);
        let path = work.join(&name);
        image(&path, 4);
        let label = if i == 5 {
            "wanted".to_owned()
        } else {
            format!("d{i}")
        };
        run(
            "mkfs.ext4",
            &["-q", "-F", "-L", &label, path.to_str().unwrap()],
        );
        m.add(&name, &path, None);
        names.push(name);
    }
    let raid = work.join("md-member");
    image(&raid, 4);
    run(
        "mkfs.ext4",
        &["-q", "-F", "-L", "twin", raid.to_str().unwrap()],
    );
    make_raid_member(&raid);
    m.add("vdz", &raid, None);
    let devices = names.len() as u64 + 1;

    let full = hnroot_linux::blockdev::Scan::run(&m.roots).unwrap();
    assert_eq!(
        full.reads,
        2 * devices,
        "a full probe: the head (with the btrfs superblock) and the end (RAID signatures)"
    );
    let found = find_in(&m.roots, &spec("LABEL=wanted"), &Hints::default()).unwrap();
    assert_eq!(found.name, "vdf");
    assert_eq!(
        found.reads,
        devices + 1,
        "one read per device, and the end of the one whose label matched"
    );

    // The head of the RAID member matches; its end says what it is: not found, and the
    // message (every device probed in full) says so.
    let err = find_in(&m.roots, &spec("LABEL=twin"), &Hints::default()).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, FindError::NotFound { count: 13, .. }),
        "{err:?}"
    );
    assert!(text.contains("vdz linux_raid_member"), "{text}");
    assert!(text.contains("vdf ext4 'wanted'"), "{text}");
    assert!(!text.contains("not probed"), "{text}");
    let member = Device::open(&m.roots.dev.join("vdz"))
        .unwrap()
        .probe_fs(0, 4 * MIB)
        .unwrap();
    assert!(
        matches!(member, hnroot_core::probe::FsOutcome::Other(_)),
        "the core's full probe agrees: {member:?}"
    );
}
