//! `cargo xtask c-ffi-test`: compile `hnroot-ffi/tests/c/test_ffi.c` against the committed
//! header `hnroot-ffi/include/hnroot.h`, link it with hnroot-ffi built as a host static library,
//! make the images its prober checks run on with real tools (mkfs.ext4, mkfs.vfat, sgdisk,
//! sfdisk), run it, and fail unless it reports every check passed. It never regenerates the
//! header (`cargo xtask header --check` does the staleness check).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use hnroot_testkit::buildenv;

use crate::deps;

/// The ext4 image's UUID (`mkfs.ext4 -U`), label `hostpart`.
const EXT4_UUID: &str = "0fc63daf-8483-4772-8e79-3d69d8477de4";
/// The FAT image's volume id (`mkfs.vfat -i`) as blkid prints it, label `EFI-BOOT`.
const VFAT_ID: (&str, &str) = ("1234ABCD", "1234-ABCD");
/// PARTUUIDs of the GPT disk's two partitions (`sgdisk -u`).
const GPT_PARTUUIDS: [&str; 2] = [
    "11111111-2222-3333-4444-555555555555",
    "a0b1c2d3-e4f5-4607-8819-2a3b4c5d6e7f",
];
/// The MBR disk's identifier (`sfdisk` label-id); its PARTUUIDs are `<id>-01`, `<id>-02`.
const MBR_DISK_ID: &str = "1234abcd";
/// Size of every image (the FAT one is FAT16 at this size).
const IMAGE_SIZE: u64 = 8 * 1024 * 1024;

/// A zero-filled file of [`IMAGE_SIZE`] bytes at `path`.
fn blank(path: &Path) -> Result<()> {
    let _ = fs::remove_file(path);
    fs::File::create(path)
        .and_then(|f| f.set_len(IMAGE_SIZE))
        .with_context(|| format!("creating {}", path.display()))
}

/// The test program's arguments: the images, made fresh in `dir`, and what they hold.
fn make_images(dir: &Path) -> Result<Vec<String>> {
    let ext4 = dir.join("ext4.img");
    blank(&ext4)?;
    buildenv::run(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "hostpart", "-U", EXT4_UUID])
            .arg(&ext4),
    )?;
    let vfat = dir.join("vfat.img");
    blank(&vfat)?;
    buildenv::run(
        Command::new("mkfs.vfat")
            .args(["-n", "EFI-BOOT", "-i", VFAT_ID.0])
            .arg(&vfat),
    )?;
    let gpt = dir.join("gpt.img");
    blank(&gpt)?;
    buildenv::run(
        Command::new("sgdisk")
            .args(["-n", "1:2048:+1M", "-c", "1:EFI-BOOT"])
            .arg(format!("-u=1:{}", GPT_PARTUUIDS[0]))
            .args(["-n", "2:0:0", "-c", "2:hostpart"])
            .arg(format!("-u=2:{}", GPT_PARTUUIDS[1]))
            .arg(&gpt),
    )?;
    let mbr = dir.join("mbr.img");
    blank(&mbr)?;
    let script = format!(
        "label: dos\nlabel-id: 0x{MBR_DISK_ID}\nstart=2048, size=2048, type=83\n\
         start=4096, type=83\n"
    );
    let mut sfdisk = Command::new("sfdisk")
        .args(["--quiet", "--no-reread", "--no-tell-kernel"])
        .arg(&mbr)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running sfdisk")?;
    if let Some(mut stdin) = sfdisk.stdin.take() {
        std::io::Write::write_all(&mut stdin, script.as_bytes())?;
    }
    let out = sfdisk.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "sfdisk could not write the MBR test disk {} ({}): {}",
            mbr.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let path = |p: &Path| p.display().to_string();
    Ok(vec![
        path(&ext4),
        EXT4_UUID.to_owned(),
        path(&vfat),
        VFAT_ID.1.to_owned(),
        path(&gpt),
        GPT_PARTUUIDS[0].to_owned(),
        GPT_PARTUUIDS[1].to_owned(),
        path(&mbr),
        MBR_DISK_ID.to_owned(),
    ])
}

/// Build the host staticlib (release profile: LTO, panic=abort) and return its path.
fn host_staticlib() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    buildenv::step(
        "hnroot-ffi host staticlib",
        &[
            &cargo,
            "rustc",
            "-p",
            "hnroot-ffi",
            "--release",
            "--features",
            "panic-handler",
            "--crate-type",
            "staticlib",
        ],
    )?;
    let lib = buildenv::target_dir()
        .join("release")
        .join("libhnroot_ffi.a");
    if !lib.exists() {
        bail!("cargo built hnroot-ffi but {} is missing", lib.display());
    }
    Ok(lib)
}

/// Compile, link and run the C test program.
pub fn run() -> Result<()> {
    deps::ensure()?;
    let lib = host_staticlib()?;
    let root = buildenv::workspace_root();
    let source = root.join("hnroot-ffi/tests/c/test_ffi.c");
    let out_dir = buildenv::build_root().join("c-ffi-test");
    std::fs::create_dir_all(&out_dir)?;
    let exe = out_dir.join("test_ffi");
    buildenv::run(
        Command::new("gcc")
            .args([
                "-std=c11",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-Wmissing-prototypes",
                "-Wstrict-prototypes",
                "-O1",
                "-I",
            ])
            .arg(root.join("hnroot-ffi/include"))
            .arg(&source)
            .arg(&lib)
            .arg("-o")
            .arg(&exe),
    )
    .context("compiling test_ffi.c against hnroot.h")?;
    let images = make_images(&out_dir)?;
    let out = Command::new(&exe)
        .args(&images)
        .output()
        .with_context(|| format!("running {}", exe.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprint!("{stderr}");
    println!("c-ffi-test: {}", stdout.trim());
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.ends_with("failed"))
        .context("test_ffi printed no 'N passed, M failed' line")?;
    let passed: usize = summary
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .context("unreadable summary line")?;
    if !out.status.success() || !summary.ends_with(" 0 failed") || passed == 0 {
        bail!(
            "the C FFI test failed ({}): {summary}\n{stderr}",
            out.status
        );
    }
    Ok(())
}
