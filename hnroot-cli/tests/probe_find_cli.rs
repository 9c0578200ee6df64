//! The `hnroot probe` and `hnroot find` commands as a user runs them: JSON keys named like
//! blkid's, the found device's path on stdout, exit status 2 with a reason when a spec names
//! no device or more than one.

use std::fs::{self, File};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Output};

fn hnroot(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hnroot"))
        .args(args)
        .output()
        .unwrap()
}

fn tool(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sparse(path: &Path, mib: u64) {
    File::create(path).unwrap().set_len(mib << 20).unwrap();
}

#[test]
fn probe_json_uses_blkid_names() {
    let dir = tempfile::tempdir().unwrap();
    let fat = dir.path().join("fat.img");
    sparse(&fat, 64);
    tool("mkfs.vfat", &["-n", "EFI-BOOT", fat.to_str().unwrap()]);
    let disk = dir.path().join("disk.img");
    sparse(&disk, 8);
    tool(
        "sgdisk",
        &[
            "-n",
            "1:2048:4095",
            "-c",
            "1:hôstpart",
            disk.to_str().unwrap(),
        ],
    );

    let out = hnroot(&[
        "probe",
        "--json",
        fat.to_str().unwrap(),
        disk.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = &v[0];
    assert_eq!(f["type"], "vfat");
    assert_eq!(f["label"], "EFI-BOOT");
    assert_eq!(f["label_fatboot"], "EFI-BOOT");
    assert_eq!(f["uuid"].as_str().unwrap().len(), 9);
    let d = &v[1];
    assert_eq!(d["pttype"], "gpt");
    let p = &d["partitions"][0];
    assert_eq!(p["number"], 1);
    assert_eq!(p["offset"], 2048 * 512);
    assert_eq!(p["size"], 2048 * 512);
    assert_eq!(p["partlabel"], "hôstpart");
    assert_eq!(p["partuuid"].as_str().unwrap().len(), 36);

    let text = hnroot(&["probe", fat.to_str().unwrap()]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("TYPE=\"vfat\" LABEL=\"EFI-BOOT\""), "{text}");

    assert!(f.get("missing_bytes").is_none(), "{f}");

    // An image cut short: blkid's tags as for the whole one, and what is missing.
    let cut = dir.path().join("cut.img");
    sparse(&cut, 16);
    tool(
        "mkfs.ext4",
        &["-q", "-F", "-L", "root", cut.to_str().unwrap()],
    );
    File::options()
        .write(true)
        .open(&cut)
        .unwrap()
        .set_len(15 << 20)
        .unwrap();
    let out = hnroot(&["probe", "--json", cut.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&v[0]["type"], &v[0]["label"]),
        (&"ext4".into(), &"root".into())
    );
    assert_eq!(v[0]["missing_bytes"], 1 << 20);
    let text = hnroot(&["probe", cut.to_str().unwrap()]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains(
            "(truncated: the filesystem spans 16777216 bytes, 1048576 of them are missing)"
        ),
        "{text}"
    );

    let missing = hnroot(&["probe", "/nonexistent/disk.img"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/disk.img"));
}

#[test]
fn find_prints_the_device_or_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let class = dir.path().join("sys/class/block");
    let devices = dir.path().join("sys/devices/virtual/block");
    let dev = dir.path().join("dev");
    fs::create_dir_all(&class).unwrap();
    fs::create_dir_all(&dev).unwrap();
    for (name, label) in [
        ("vda", "hostpart"),
        ("vdb", "other"),
        ("vdc", "twin"),
        ("vdd", "twin"),
    ] {
        let node = dev.join(name);
        sparse(&node, 16);
        tool(
            "mkfs.ext4",
            &["-q", "-F", "-L", label, node.to_str().unwrap()],
        );
        let d = devices.join(name);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("size"), format!("{}\n", 16 * 2048)).unwrap();
        symlink(&d, class.join(name)).unwrap();
    }
    let roots = [
        "--sys-class-block",
        class.to_str().unwrap(),
        "--dev",
        dev.to_str().unwrap(),
    ];
    let find = |spec: &str| {
        let mut args = vec!["find", spec];
        args.extend_from_slice(&roots);
        hnroot(&args)
    };

    let ok = find("LABEL=hostpart");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        String::from_utf8(ok.stdout).unwrap().trim(),
        dev.join("vda").to_str().unwrap()
    );

    let none = find("LABEL=nothing");
    assert_eq!(none.status.code(), Some(2));
    let err = String::from_utf8(none.stderr).unwrap();
    assert!(
        err.contains("no filesystem labelled 'nothing' among 4 block devices"),
        "{err}"
    );
    assert!(none.stdout.is_empty());

    let two = find("LABEL=twin");
    assert_eq!(two.status.code(), Some(2));
    let err = String::from_utf8(two.stderr).unwrap();
    assert!(
        err.contains("vdc ext4 'twin'") && err.contains("vdd ext4 'twin'"),
        "{err}"
    );

    let bad = find("LABLE=x");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a device spec"));
}
