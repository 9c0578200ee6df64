//! `test_ffi.c` run by `cargo test`: its images made with real tools (mkfs.ext4, mkfs.vfat,
//! sgdisk, sfdisk), its `main` called in this process (the build script compiled it with `cc`
//! against the committed `hnroot.h`), and every one of its checks required to pass.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// The ext4 image's UUID (`mkfs.ext4 -U`), label `hostpart`.
const EXT4_UUID: &str = "0fc63daf-8483-4772-8e79-3d69d8477de4";
/// The FAT image's volume id (`mkfs.vfat -i`) and how blkid prints it; label `EFI-BOOT`.
const VFAT_ID: (&str, &str) = ("1234ABCD", "1234-ABCD");
/// PARTUUIDs of the GPT disk's two partitions (`sgdisk -u`).
const GPT_PARTUUIDS: [&str; 2] = [
    "11111111-2222-3333-4444-555555555555",
    "a0b1c2d3-e4f5-4607-8819-2a3b4c5d6e7f",
];
/// The MBR disk's identifier (sfdisk's label-id); its PARTUUIDs are `<id>-01`, `<id>-02`.
const MBR_DISK_ID: &str = "1234abcd";
/// Size of every image (FAT16 at this size).
const IMAGE_SIZE: u64 = 8 * 1024 * 1024;

fn blank(path: &Path) {
    fs::File::create(path)
        .and_then(|f| f.set_len(IMAGE_SIZE))
        .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
}

/// Run `cmd` (feeding it `input`), panicking with its output when it fails or is not installed.
fn run(cmd: &mut Command, input: Option<&str>) {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {what}: {e} (`cargo xtask deps` installs the image tools)")
        });
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_check_of_test_ffi_c_passes() {
    let dir = tempfile::tempdir().unwrap();
    let ext4 = dir.path().join("ext4.img");
    blank(&ext4);
    run(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "hostpart", "-U", EXT4_UUID])
            .arg(&ext4),
        None,
    );
    let vfat = dir.path().join("vfat.img");
    blank(&vfat);
    run(
        Command::new("mkfs.vfat")
            .args(["-n", "EFI-BOOT", "-i", VFAT_ID.0])
            .arg(&vfat),
        None,
    );
    let gpt = dir.path().join("gpt.img");
    blank(&gpt);
    run(
        Command::new("sgdisk")
            .args(["-n", "1:2048:+1M", "-c", "1:EFI-BOOT"])
            .arg(format!("-u=1:{}", GPT_PARTUUIDS[0]))
            .args(["-n", "2:0:0", "-c", "2:hostpart"])
            .arg(format!("-u=2:{}", GPT_PARTUUIDS[1]))
            .arg(&gpt),
        None,
    );
    let mbr = dir.path().join("mbr.img");
    blank(&mbr);
    run(
        Command::new("sfdisk")
            .args(["--quiet", "--no-reread", "--no-tell-kernel"])
            .arg(&mbr),
        Some(&format!(
            "label: dos\nlabel-id: 0x{MBR_DISK_ID}\nstart=2048, size=2048, type=83\n\
             start=4096, type=83\n"
        )),
    );
    let path = |p: &Path| p.to_str().expect("a UTF-8 temporary path").to_owned();
    let args = [
        path(&ext4),
        EXT4_UUID.to_owned(),
        path(&vfat),
        VFAT_ID.1.to_owned(),
        path(&gpt),
        GPT_PARTUUIDS[0].to_owned(),
        GPT_PARTUUIDS[1].to_owned(),
        path(&mbr),
        MBR_DISK_ID.to_owned(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let report = hnroot_ffi_ctest::run_c_program(&args);
    // test_ffi.c printed each failed check on stderr, which the test harness shows.
    assert_eq!(
        report.failed, 0,
        "test_ffi.c: {} check(s) failed: {report:?}",
        report.failed
    );
    assert_eq!(report.status, 0, "test_ffi.c's main returned {report:?}");
    // Well over two hundred checks today; a run that checked next to nothing is a broken
    // harness, not a pass.
    assert!(
        report.passed >= 200,
        "test_ffi.c ran only {} checks: {report:?}",
        report.passed
    );
}
