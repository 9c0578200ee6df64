//! `cargo xtask disk`: build one scenario disk by hand, rootless (GPT; the ESP with GRUB,
//! hnroot.mod and the boot state; hostpart with test images), from the same boot parts and disk
//! builder as the scenarios, and print how to boot it in QEMU. It builds a file; it boots
//! nothing.

use std::fs;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use hnroot_core::name::ImageName;
use hnroot_system_tests::story::IMAGES;
use hnroot_testkit::bootparts::{BootParts, DiskContents, ImageContent, StateInit};
use hnroot_testkit::qemu;
use hnroot_testkit::release::Debian;
use hnroot_testkit::{
    buildenv,
    disk::{self, HostFs},
};

/// `cargo xtask disk`.
#[derive(Debug, Parser)]
#[command(
    name = "disk",
    about = "Build a scenario disk (rootless): GPT, ESP with GRUB + hnroot.mod and the boot \
             state, hostpart (ext4 or btrfs) with test images; print how to boot it."
)]
struct Args {
    /// Where to write the disk image (raw, GPT).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value = "ext4")]
    hostpart_fs: HostFs,
    /// Version of the test image placed as hn-root.img (v1, v2, v3-bad, v4-nokernel,
    /// v5-noinit), or `none`.
    #[arg(long, default_value = "v1")]
    current: String,
    /// Version placed as hn-root-new.img (a staged update).
    #[arg(long)]
    new: Option<String>,
    /// Version placed as hn-root-old.img.
    #[arg(long)]
    old: Option<String>,
    /// Put `system-revert` on hostpart.
    #[arg(long)]
    revert: bool,
    /// The boot-state file: `committed` (hn-root.img recorded good), `blank` (preallocated,
    /// never written) or `missing`.
    #[arg(long, default_value = "committed")]
    state: String,
    /// Versions copied to data/e2e/<version>.img, for `hnroot stage` in the guest.
    #[arg(long)]
    stage_source: Vec<String>,
    /// The Debian release whose GRUB and kernel the disk boots (12 or 13).
    #[arg(long, default_value_t = Debian::NEWEST)]
    debian: Debian,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let images = IMAGES;
    let parts = BootParts::build(args.debian, images)?;
    let known = |v: &str| -> Result<&'static str> {
        images
            .iter()
            .find(|d| d.version == v)
            .map(|d| d.version)
            .ok_or_else(|| {
                anyhow!(
                    "no test image {v:?}; there are {}",
                    images
                        .iter()
                        .map(|d| d.version)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    };
    let mut list = Vec::new();
    let current = (args.current != "none")
        .then(|| known(&args.current))
        .transpose()?;
    if let Some(v) = current {
        list.push((ImageName::Current, ImageContent::Image(v)));
    }
    if let Some(v) = &args.new {
        list.push((ImageName::New, ImageContent::Image(known(v)?)));
    }
    if let Some(v) = &args.old {
        list.push((ImageName::Old, ImageContent::Image(known(v)?)));
    }
    let state = match (args.state.as_str(), current) {
        ("committed", Some(v)) => StateInit::Committed(v),
        ("committed", None) => bail!("--state committed needs an hn-root.img (--current)"),
        ("blank", _) => StateInit::Bytes(vec![0; hnroot_core::bootstate::BLOCK_LEN]),
        ("missing", _) => StateInit::Missing,
        (other, _) => bail!("--state {other:?}: expected committed, blank or missing"),
    };
    let name = args
        .out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "disk".into());
    let spec = DiskContents {
        name,
        fs: args.hostpart_fs,
        label: disk::HOSTPART_LABEL.to_string(),
        images: list,
        revert_marker: args.revert,
        state,
        stage_sources: args
            .stage_source
            .iter()
            .map(|v| known(v))
            .collect::<Result<_>>()?,
        actions: Vec::new(),
        immutable: Vec::new(),
        loader: None,
        hostpart_files: Vec::new(),
    };
    let work = buildenv::build_root().join("disk-command");
    let built = parts.disk(&spec, &work)?;
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    fs::rename(&built.path, &args.out)
        .or_else(|_| disk::copy_disk(&built.path, &args.out))
        .with_context(|| format!("cannot move the disk to {}", args.out.display()))?;
    println!(
        "{}: ESP {} (LBA {}, PARTUUID {}), hostpart {} {} (LBA {}, PARTUUID {})",
        args.out.display(),
        disk::ESP_LABEL,
        built.esp.first_lba,
        built.esp.partuuid,
        args.hostpart_fs,
        disk::HOSTPART_LABEL,
        built.hostpart.first_lba,
        built.hostpart.partuuid
    );
    for (name, content) in &spec.images {
        if let ImageContent::Image(v) = content {
            println!(
                "  {:<20} {v} (ext4 UUID {})",
                name.file_name(),
                parts.image(v)?.fs.uuid
            );
        }
    }
    println!("boot it (serial console on the terminal; Ctrl-A X quits):");
    println!("  cp {} /tmp/OVMF_VARS.fd", qemu::OVMF_VARS);
    println!(
        "  qemu-system-x86_64 -accel tcg -machine q35 -m 1024 -nographic \\\n    \
         -drive if=pflash,format=raw,readonly=on,file={} \\\n    \
         -drive if=pflash,format=raw,file=/tmp/OVMF_VARS.fd \\\n    \
         -drive file={},format=raw,if=virtio",
        qemu::OVMF_CODE,
        args.out.display()
    );
    Ok(())
}

/// The README's commands run without options: every default must parse (clap turns a
/// `default_value_t` into text and parses it back, which once failed for `--debian`).
#[cfg(test)]
mod default_args {
    use clap::Parser;

    #[test]
    fn the_defaults_parse() {
        let args = super::Args::try_parse_from(["disk", "--out", "disk.img"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(args.debian, hnroot_testkit::release::Debian::NEWEST);
    }
}
