//! Images made at test time by the real tools (mkfs.vfat, fatlabel, mkfs.ext2/3/4, e2label,
//! tune2fs, mkfs.btrfs, mkfs.xfs, sgdisk, sfdisk), probed by hnroot and by `blkid -p -o
//! export` (filesystems, PTTYPE, PTUUID) and `sfdisk -J` (partition entries), compared field
//! by field (`blkid -d`: raw bytes). Image files only: no loop devices, no root needed.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use hnroot_core::probe::{FsOutcome, PartitionKind};
use hnroot_core::PartUuid;
use hnroot_linux::probe::{Device, TableKind};

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A sparse file of `mib` MiB.
    fn image(&self, name: &str, mib: u64) -> PathBuf {
        let path = self.dir.path().join(name);
        let f = File::create(&path).unwrap();
        f.set_len(mib << 20).unwrap();
        path
    }
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// blkid's export value escaping: a backslash before some characters.
fn unescape(v: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut bytes = v.bytes();
    while let Some(b) = bytes.next() {
        if b == b'\\' {
            if let Some(n) = bytes.next() {
                out.push(n);
            }
        } else {
            out.push(b);
        }
    }
    out
}

/// What `blkid -p -o export` says about `len` bytes at `offset` (whole file if `None`):
/// `Err(())` for "ambivalent result" (exit status 8).
fn blkid(path: &Path, range: Option<(u64, u64)>) -> Result<BTreeMap<String, Vec<u8>>, ()> {
    let mut cmd = Command::new("blkid");
    // -d: bytes as they are (no M-x notation), only the export escapes remain.
    cmd.args(["-p", "-d", "-o", "export"]);
    if let Some((offset, size)) = range {
        cmd.args(["-O", &offset.to_string(), "-S", &size.to_string()]);
    }
    let out = cmd.arg(path).output().expect("run blkid");
    if out.status.code() == Some(8) {
        return Err(());
    }
    Ok(out
        .stdout
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let line = std::str::from_utf8(line).ok()?;
            let (k, v) = line.split_once('=')?;
            Some((k.to_string(), unescape(v)))
        })
        .collect())
}

/// Compare hnroot's filesystem outcome with blkid's, field by field.
fn same_fs(case: &str, ours: &FsOutcome, theirs: &Result<BTreeMap<String, Vec<u8>>, ()>) {
    let theirs = match theirs {
        Err(()) => {
            assert!(
                matches!(ours, FsOutcome::Ambivalent(_)),
                "{case}: blkid says ambivalent, we say {ours:?}"
            );
            return;
        }
        Ok(t) => t,
    };
    let want = |k: &str| theirs.get(k).cloned();
    let info = match ours {
        FsOutcome::Found(i) => i,
        other => {
            assert_eq!(
                want("TYPE"),
                None,
                "{case}: we say {other:?}, blkid {theirs:?}"
            );
            return;
        }
    };
    let got_type = info.fs_type.as_str().as_bytes().to_vec();
    assert_eq!(want("TYPE"), Some(got_type), "{case}: TYPE");
    assert_eq!(
        want("LABEL"),
        info.label.as_ref().map(|l| l.as_bytes().to_vec()),
        "{case}: LABEL"
    );
    assert_eq!(
        want("LABEL_FATBOOT"),
        info.label_fatboot.as_ref().map(|l| l.as_bytes().to_vec()),
        "{case}: LABEL_FATBOOT"
    );
    assert_eq!(
        want("UUID"),
        info.uuid.map(|u| u.to_string().into_bytes()),
        "{case}: UUID"
    );
    println!("{case}: {ours:?} == blkid");
}

/// Probe a whole image both ways and compare; returns our outcome.
fn check_image(case: &str, path: &Path) -> FsOutcome {
    let mut dev = Device::open(path).unwrap();
    let ours = dev.probe_fs(0, dev.size()).unwrap();
    same_fs(case, &ours, &blkid(path, None));
    ours
}

fn label_of(out: &FsOutcome) -> Option<Vec<u8>> {
    out.info()
        .and_then(|i| i.label.as_ref())
        .map(|l| l.as_bytes().to_vec())
}

#[test]
fn fat() {
    let s = Scratch::new();
    let fat16 = s.image("fat16.img", 64);
    run("mkfs.vfat", &["-n", "EFI-BOOT", arg(&fat16)]);
    assert_eq!(
        check_image("fat16", &fat16)
            .info()
            .unwrap()
            .fs_type
            .as_str(),
        "vfat"
    );

    let fat32 = s.image("fat32.img", 64);
    run("mkfs.vfat", &["-F", "32", "-n", "ABCDEFGHIJK", arg(&fat32)]);
    assert_eq!(
        label_of(&check_image("fat32 11-char label", &fat32)),
        Some(b"ABCDEFGHIJK".to_vec())
    );

    let lower = s.image("lower.img", 64);
    run("mkfs.vfat", &["-n", "my boot 1", arg(&lower)]);
    assert_eq!(
        label_of(&check_image("lower case and spaces", &lower)),
        Some(b"my boot 1".to_vec())
    );

    run("fatlabel", &[arg(&fat16), "relabeled"]);
    assert_eq!(
        label_of(&check_image("fatlabel relabel", &fat16)),
        Some(b"relabeled".to_vec())
    );
    run("fatlabel", &[arg(&fat32), "NEW 32"]);
    check_image("fatlabel FAT32", &fat32);
    run("fatlabel", &["-r", arg(&fat32)]);
    check_image("fatlabel -r FAT32", &fat32);

    let none = s.image("none.img", 64);
    run("mkfs.vfat", &[arg(&none)]);
    assert_eq!(label_of(&check_image("no label", &none)), None);

    // A floppy: FAT12 on a device libblkid calls tiny.
    let floppy = s.dir.path().join("floppy.img");
    run("mkfs.vfat", &["-C", arg(&floppy), "1440", "-n", "FLOPPY"]);
    check_image("floppy FAT12", &floppy);
}

#[test]
fn ext() {
    let s = Scratch::new();
    let ext4 = s.image("ext4.img", 32);
    run(
        "mkfs.ext4",
        &["-q", "-F", "-L", "0123456789abcdef", arg(&ext4)],
    );
    assert_eq!(
        label_of(&check_image("ext4 16-byte label", &ext4)),
        Some(b"0123456789abcdef".to_vec())
    );
    run("e2label", &[arg(&ext4), "hôstpart✓"]);
    assert_eq!(
        label_of(&check_image("ext4 UTF-8 label (e2label)", &ext4)),
        Some("hôstpart✓".as_bytes().to_vec())
    );
    run("tune2fs", &["-E", "test_fs", arg(&ext4)]);
    assert_eq!(
        check_image("ext4dev (test_fs)", &ext4)
            .info()
            .unwrap()
            .fs_type
            .as_str(),
        "ext4dev"
    );

    let ext2 = s.image("ext2.img", 16);
    run("mkfs.ext2", &["-q", "-F", "-L", "two", arg(&ext2)]);
    check_image("ext2", &ext2);
    run("tune2fs", &["-E", "test_fs", arg(&ext2)]);
    assert!(matches!(
        check_image("ext2 + test_fs", &ext2),
        FsOutcome::Ambivalent(_)
    ));

    let ext3 = s.image("ext3.img", 16);
    run("mkfs.ext3", &["-q", "-F", "-L", "three", arg(&ext3)]);
    check_image("ext3", &ext3);

    // ext4 without a journal is still ext4 (features ext3 lacks).
    let nojournal = s.image("nojournal.img", 16);
    run(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-O",
            "^has_journal",
            "-L",
            "nj",
            arg(&nojournal),
        ],
    );
    check_image("ext4 without journal", &nojournal);
}

#[test]
fn btrfs_and_xfs() {
    let s = Scratch::new();
    let b = s.image("btrfs.img", 128);
    run(
        "mkfs.btrfs",
        &["-q", "-f", "-L", "hôstpart ✓ btrfs", arg(&b)],
    );
    assert_eq!(
        label_of(&check_image("btrfs UTF-8 label", &b)),
        Some("hôstpart ✓ btrfs".as_bytes().to_vec())
    );
    // The longest label mkfs.btrfs takes (btrfs-progs 6.2 keeps 254 bytes of it).
    let long = "L".repeat(255);
    run("mkfs.btrfs", &["-q", "-f", "-L", &long, arg(&b)]);
    let kept = label_of(&check_image("btrfs longest label", &b)).unwrap();
    assert!(
        kept.len() >= 254 && long.as_bytes().starts_with(&kept),
        "{}",
        kept.len()
    );

    let x = s.image("xfs.img", 320);
    run("mkfs.xfs", &["-q", "-f", "-L", "abcdefghijkl", arg(&x)]);
    assert_eq!(
        label_of(&check_image("xfs v5 12-char label", &x)),
        Some(b"abcdefghijkl".to_vec())
    );
    run(
        "mkfs.xfs",
        &["-q", "-f", "-m", "crc=0", "-L", "xfsv4", arg(&x)],
    );
    check_image("xfs v4", &x);
}

/// Standard output of a tool, for the figures it prints.
fn output(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?} failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The number after `key` (and any of ` :=\t`) on the line starting with `key`.
fn figure(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| {
            rest.trim_start_matches([' ', ':', '=', '\t'])
                .split_whitespace()
                .next()
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `{key}` figure in:\n{text}"))
}

/// The filesystem's size as its own tools report it: the extent hnroot compares with the
/// device (or image file) size to tell a truncated copy.
fn size_by_tool(fs: &str, path: &Path) -> u64 {
    let p = arg(path);
    match fs {
        "ext" => {
            let h = output("dumpe2fs", &["-h", p]);
            figure(&h, "Block count") * figure(&h, "Block size")
        }
        "xfs" => {
            let h = output(
                "xfs_db",
                &["-r", "-c", "sb 0", "-c", "p dblocks blocksize", p],
            );
            figure(&h, "dblocks") * figure(&h, "blocksize")
        }
        "btrfs" => figure(
            &output("btrfs", &["inspect-internal", "dump-super", p]),
            "dev_item.total_bytes",
        ),
        "vfat" => {
            let h = output("minfo", &["-i", p, "::"]);
            let small = figure(&h, "small size");
            let sectors = if small == 0 {
                figure(&h, "big size")
            } else {
                small
            };
            sectors * figure(&h, "sector size")
        }
        _ => unreachable!("{fs}"),
    }
}

#[test]
fn sizes_agree_with_the_tools_and_a_cut_copy_says_what_is_missing() {
    let s = Scratch::new();
    let cases: [(&str, &str, u64, &[&str]); 6] = [
        ("ext4, 4 KiB blocks", "ext", 32, &["mkfs.ext4", "-q", "-F"]),
        (
            "ext2, 1 KiB blocks",
            "ext",
            16,
            &["mkfs.ext2", "-q", "-F", "-b", "1024"],
        ),
        ("xfs", "xfs", 320, &["mkfs.xfs", "-q", "-f"]),
        ("btrfs", "btrfs", 128, &["mkfs.btrfs", "-q", "-f"]),
        ("FAT16", "vfat", 64, &["mkfs.vfat"]),
        ("FAT32", "vfat", 64, &["mkfs.vfat", "-F", "32"]),
    ];
    for (case, fs, mib, mkfs) in cases {
        let path = s.image(&format!("{case}.img"), mib);
        let mut args = mkfs[1..].to_vec();
        args.push(arg(&path));
        run(mkfs[0], &args);
        let whole = check_image(case, &path);
        let info = whole.info().unwrap();
        let size = size_by_tool(fs, &path);
        assert_eq!(info.size, Some(size), "{case}");
        assert!(size <= mib << 20, "{case}: {size} on a {mib} MiB file");
        assert_eq!(info.missing_bytes(mib << 20), None, "{case}");

        // The same filesystem with its last 64 KiB cut off, as an interrupted copy leaves it:
        // blkid (and so hnroot's probe) still reports it whole; the size tells it apart.
        let cut = (mib << 20) - 65536;
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let short = check_image(&format!("{case}, cut short"), &path);
        let info = short.info().unwrap();
        assert_eq!(info.size, Some(size), "{case}");
        assert_eq!(
            info.missing_bytes(cut),
            Some(size - cut).filter(|&m| m > 0),
            "{case}"
        );
        if fs != "vfat" {
            // mkfs.ext*, mkfs.xfs and mkfs.btrfs use the whole file.
            assert_eq!(info.missing_bytes(cut), Some(65536), "{case}");
        }
    }
}

#[test]
fn stale_superblocks_are_ambivalent_like_blkid() {
    let s = Scratch::new();
    // btrfs, then the first 32 KiB of an ext4 image written over it: the btrfs superblock at
    // 64 KiB stays.
    let b = s.image("btrfs.img", 128);
    run("mkfs.btrfs", &["-q", "-f", "-L", "old", arg(&b)]);
    let e = s.image("ext4.img", 8);
    run("mkfs.ext4", &["-q", "-F", "-L", "new", arg(&e)]);
    let head = std::fs::read(&e).unwrap();
    let out = OpenOptions::new().write(true).open(&b).unwrap();
    out.write_all_at(&head[..32 * 1024], 0).unwrap();
    assert!(matches!(
        check_image("ext4 over btrfs", &b),
        FsOutcome::Ambivalent(_)
    ));

    // ext4, then only a FAT boot sector written over it.
    let e = s.image("ext4b.img", 64);
    run("mkfs.ext4", &["-q", "-F", "-L", "old", arg(&e)]);
    let v = s.image("vfat.img", 64);
    run("mkfs.vfat", &["-n", "NEW", arg(&v)]);
    let boot = std::fs::read(&v).unwrap();
    let out = OpenOptions::new().write(true).open(&e).unwrap();
    out.write_all_at(&boot[..512], 0).unwrap();
    assert!(matches!(
        check_image("FAT boot sector over ext4", &e),
        FsOutcome::Ambivalent(_)
    ));

    // Every mkfs here wipes the old signatures: the new filesystem alone.
    let w = s.image("wiped.img", 320);
    run("mkfs.ext4", &["-q", "-F", "-L", "old", arg(&w)]);
    run("mkfs.xfs", &["-q", "-f", "-L", "new", arg(&w)]);
    assert_eq!(
        label_of(&check_image("xfs over ext4 (wiped)", &w)),
        Some(b"new".to_vec())
    );
}

/// `sfdisk -J` partitions: number, start, size (sectors), type, uuid, name.
fn sfdisk(path: &Path) -> (String, Vec<BTreeMap<String, String>>) {
    let out = Command::new("sfdisk")
        .arg("-J")
        .arg(path)
        .output()
        .expect("run sfdisk");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = &v["partitiontable"];
    let parts = t["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let node = p["node"].as_str().unwrap();
            let number: String = node
                .chars()
                .rev()
                .take_while(char::is_ascii_digit)
                .collect();
            let mut m = BTreeMap::new();
            m.insert("number".into(), number.chars().rev().collect());
            for k in ["start", "size"] {
                m.insert(k.into(), p[k].to_string());
            }
            for k in ["type", "uuid", "name"] {
                if let Some(s) = p[k].as_str() {
                    m.insert(k.into(), s.to_lowercase());
                }
            }
            m
        })
        .collect();
    (t["label"].as_str().unwrap().to_string(), parts)
}

/// Compare hnroot's partition table with blkid (PTTYPE, PTUUID) and sfdisk (entries); and
/// each partition's filesystem with blkid at its offset.
fn check_disk(case: &str, path: &Path, sfdisk_view: &[BTreeMap<String, String>]) -> TableKind {
    let mut dev = Device::open(path).unwrap();
    let report = dev.probe_disk().unwrap();
    let table = report
        .table
        .as_ref()
        .unwrap_or_else(|| panic!("{case}: no table"));
    let whole = blkid(path, None).unwrap();
    assert_eq!(
        whole.get("PTTYPE").cloned(),
        Some(table.kind.as_str().as_bytes().to_vec()),
        "{case}: PTTYPE"
    );
    assert_eq!(
        whole.get("PTUUID").cloned(),
        table.kind.ptuuid().map(String::into_bytes),
        "{case}: PTUUID"
    );
    let ours: Vec<BTreeMap<String, String>> = report
        .partitions
        .iter()
        .map(|(p, _)| {
            let mut m = BTreeMap::new();
            m.insert("number".into(), p.number.to_string());
            m.insert("start".into(), (p.start / 512).to_string());
            m.insert("size".into(), (p.size / 512).to_string());
            match p.kind {
                PartitionKind::Gpt { type_guid, .. } => {
                    m.insert("type".into(), PartUuid::Gpt(type_guid).to_string());
                    if let Some(u) = p.partuuid {
                        m.insert("uuid".into(), u.to_string());
                    }
                }
                PartitionKind::Mbr { sys_type, .. } => {
                    m.insert("type".into(), format!("{sys_type:x}"));
                }
            }
            if let Some(n) = &p.name {
                m.insert("name".into(), n.as_str().unwrap().to_lowercase());
            }
            m
        })
        .collect();
    assert_eq!(ours, sfdisk_view, "{case}: partitions");
    for (p, fs) in &report.partitions {
        if p.kind.is_mbr_extended() {
            continue;
        }
        let theirs = blkid(path, Some((p.start, p.size)));
        same_fs(&format!("{case} partition {}", p.number), fs, &theirs);
    }
    table.kind
}

#[test]
fn gpt_names_uuids_and_backup() {
    let s = Scratch::new();
    let disk = s.image("gpt.img", 256);
    let max_name = "abcdefghijklmnopqrstuvwxyz0123456789";
    run(
        "sgdisk",
        &[
            "-n",
            "1:2048:+64M",
            "-t",
            "1:ef00",
            "-c",
            "1:EFI system",
            "-n",
            "2:0:+64M",
            "-c",
            "2:hôstpart ✓",
            "-n",
            "3:0:+16M",
            "-c",
            &format!("3:{max_name}"),
            "-n",
            "4:0:0",
            "-c",
            "4:hostpart",
            arg(&disk),
        ],
    );
    // Filesystems inside partitions 1 and 4.
    let p1 = s.image("p1.img", 64);
    run("mkfs.vfat", &["-n", "EFI-BOOT", arg(&p1)]);
    let p4 = s.image("p4.img", 100);
    run("mkfs.ext4", &["-q", "-F", "-L", "hostpart", arg(&p4)]);
    let out = OpenOptions::new().write(true).open(&disk).unwrap();
    out.write_all_at(&std::fs::read(&p1).unwrap(), 2048 * 512)
        .unwrap();
    let p4_start = (2048 + 2 * 64 * 2048 + 16 * 2048) * 512;
    let ext = std::fs::read(&p4).unwrap();
    out.write_all_at(&ext[..4 << 20], p4_start).unwrap();
    drop(out);

    let (label, parts) = sfdisk(&disk);
    assert_eq!(label, "gpt");
    let names: Vec<&str> = parts
        .iter()
        .filter_map(|p| p.get("name").map(String::as_str))
        .collect();
    assert_eq!(names, ["efi system", "hôstpart ✓", max_name, "hostpart"]);
    let kind = check_disk("gpt", &disk, &parts);
    assert!(matches!(
        kind,
        TableKind::Gpt {
            from_backup: false,
            ..
        }
    ));

    // Zero the primary header: blkid and hnroot fall back to the backup at the last LBA.
    let out = OpenOptions::new().write(true).open(&disk).unwrap();
    out.write_all_at(&[0u8; 512], 512).unwrap();
    drop(out);
    let kind = check_disk("backup-only gpt", &disk, &parts);
    assert!(matches!(
        kind,
        TableKind::Gpt {
            from_backup: true,
            ..
        }
    ));
}

#[test]
fn mbr_with_logical_partitions() {
    let s = Scratch::new();
    let disk = s.image("mbr.img", 64);
    let name = disk.file_name().unwrap().to_str().unwrap().to_string();
    let script = format!(
        "label: dos\nlabel-id: 0x1234abcd\n\
         {name}1 : start=2048, size=20480, type=83\n\
         {name}2 : start=22528, size=40960, type=5\n\
         {name}5 : start=24576, size=8192, type=83\n\
         {name}6 : start=34816, size=8192, type=c\n"
    );
    let mut child = Command::new("sfdisk")
        .args(["-q", arg(&disk)])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), script.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    let p5 = s.image("p5.img", 4);
    run("mkfs.vfat", &["-n", "LOGICAL5", arg(&p5)]);
    let out = OpenOptions::new().write(true).open(&disk).unwrap();
    out.write_all_at(&std::fs::read(&p5).unwrap(), 24576 * 512)
        .unwrap();
    drop(out);
    let (label, parts) = sfdisk(&disk);
    assert_eq!(label, "dos");
    let kind = check_disk("mbr", &disk, &parts);
    assert_eq!(
        kind,
        TableKind::Mbr {
            disk_id: Some(0x1234_abcd)
        }
    );
    let mut dev = Device::open(&disk).unwrap();
    let report = dev.probe_disk().unwrap();
    let (p5, fs) = &report.partitions[2];
    assert_eq!(p5.partuuid.unwrap().to_string(), "1234abcd-05");
    assert_eq!(label_of(fs), Some(b"LOGICAL5".to_vec()));
}
