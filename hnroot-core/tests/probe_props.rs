//! The probers never panic and always finish within their read bounds, whatever the bytes:
//! random bytes, real images (made by mkfs and sgdisk at test time) with random bytes changed,
//! cut short, or behind a device size that lies.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use hnroot_core::probe::{
    probe_fs_image, probe_pt_image, FsOutcome, FsProber, ProbeStep, PtOutcome, PtProber,
    MAX_FS_READS, MAX_PT_READS, MAX_READ,
};
use proptest::prelude::*;

/// The first bytes of real images kept for mutation.
const KEEP: usize = 1 << 20;

/// A real image: its first [`KEEP`] bytes and its true size.
fn make(name: &str, mib: u64, cmds: &[&[&str]]) -> (Vec<u8>, u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::File::create(&path)
        .unwrap()
        .set_len(mib << 20)
        .unwrap();
    for cmd in cmds {
        let (tool, args) = cmd.split_first().unwrap();
        let out = Command::new(tool)
            .args(args.iter().map(|a| {
                if *a == "IMG" {
                    path.as_os_str()
                } else {
                    Path::new(a).as_os_str()
                }
            }))
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(KEEP);
    (bytes, mib << 20)
}

/// Real images, each with its expected outcome type name.
/// (expected type, (first bytes, true size)).
type Base = (&'static str, (Vec<u8>, u64));

fn bases() -> &'static [Base] {
    static BASES: OnceLock<Vec<Base>> = OnceLock::new();
    BASES.get_or_init(|| {
        vec![
            (
                "vfat",
                make("fat16", 2, &[&["mkfs.vfat", "-n", "EFI-BOOT", "IMG"]]),
            ),
            (
                "vfat",
                make(
                    "fat32",
                    40,
                    &[&["mkfs.vfat", "-F", "32", "-s", "1", "-n", "F32", "IMG"]],
                ),
            ),
            (
                "ext4",
                make(
                    "ext4",
                    8,
                    &[&["mkfs.ext4", "-q", "-F", "-L", "hostpart", "IMG"]],
                ),
            ),
            (
                "xfs",
                make("xfs", 320, &[&["mkfs.xfs", "-q", "-f", "-L", "x", "IMG"]]),
            ),
            (
                "btrfs",
                make(
                    "btrfs",
                    128,
                    &[&["mkfs.btrfs", "-q", "-f", "-L", "b", "IMG"]],
                ),
            ),
            (
                "gpt",
                make(
                    "gpt",
                    4,
                    &[&["sgdisk", "-n", "1:2048:4095", "-c", "1:hostpart", "IMG"]],
                ),
            ),
        ]
    })
}

/// Drive an FsProber that believes the device has `size` bytes over `image`.
fn fs_with_size(image: &[u8], size: u64) -> (FsOutcome, u32) {
    let mut p = FsProber::new(size);
    let mut reads = 0u32;
    loop {
        match p.step() {
            ProbeStep::Read(r) => {
                reads += 1;
                assert!(reads <= MAX_FS_READS, "more than {MAX_FS_READS} reads");
                assert!(r.len > 0 && r.len <= MAX_READ, "{r:?}");
                let start = usize::try_from(r.offset)
                    .unwrap_or(usize::MAX)
                    .min(image.len());
                let end = start.saturating_add(r.len).min(image.len());
                p.feed(&image[start..end]);
            }
            ProbeStep::Done(o) => return (o, reads),
        }
    }
}

fn pt_with_size(image: &[u8], size: u64, ssz: u32) -> PtOutcome {
    let mut p = PtProber::new(size, ssz);
    let mut reads = 0u32;
    loop {
        match p.step() {
            ProbeStep::Read(r) => {
                reads += 1;
                assert!(reads <= MAX_PT_READS, "more than {MAX_PT_READS} reads");
                assert!(r.len > 0 && r.len <= MAX_READ, "{r:?}");
                let start = usize::try_from(r.offset)
                    .unwrap_or(usize::MAX)
                    .min(image.len());
                let end = start.saturating_add(r.len).min(image.len());
                p.feed(&image[start..end]);
            }
            ProbeStep::Done(o) => return o,
        }
    }
}

/// Every partition of a table iterates without panicking.
fn walk_partitions(image: &[u8], out: &PtOutcome) {
    match out {
        PtOutcome::Gpt(t) => {
            let (off, len) = t.entries();
            let start = usize::try_from(off).unwrap_or(usize::MAX).min(image.len());
            let end = start.saturating_add(len).min(image.len());
            if let Ok(parts) = t.partitions(&image[start..end]) {
                assert!(parts.count() <= 8192);
            }
        }
        PtOutcome::Mbr(t) => {
            assert!(t.primaries().count() <= 4);
            if let Some(mut w) = t.logical() {
                for _ in 0..10_000 {
                    match w.step() {
                        ProbeStep::Read(r) => {
                            let start = usize::try_from(r.offset)
                                .unwrap_or(usize::MAX)
                                .min(image.len());
                            let end = start.saturating_add(r.len).min(image.len());
                            w.feed(&image[start..end]);
                        }
                        ProbeStep::Done(Some(_)) => {}
                        ProbeStep::Done(None) => return,
                    }
                }
                panic!("EBR walk did not end");
            }
        }
        PtOutcome::ProtectiveMbrOnly | PtOutcome::None => {}
    }
}

#[test]
fn the_unmutated_bases_are_recognised() {
    for (want, (image, size)) in bases() {
        let fs = fs_with_size(image, *size).0;
        let pt = pt_with_size(image, *size, 512);
        match (*want, &fs, &pt) {
            ("gpt", FsOutcome::Unknown, PtOutcome::Gpt(_)) => {}
            (t, FsOutcome::Found(i), _) if i.fs_type.as_str() == t => {}
            _ => panic!("{want}: {fs:?} {pt:?}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(image in proptest::collection::vec(any::<u8>(), 0..70_000), ssz in prop_oneof![Just(512u32), Just(4096), any::<u32>()]) {
        let (_, reads) = probe_fs_image(&image);
        prop_assert!(reads <= MAX_FS_READS);
        let _ = probe_pt_image(&image, 512);
        let pt = pt_with_size(&image, image.len() as u64, ssz);
        walk_partitions(&image, &pt);
    }

    #[test]
    fn mutated_real_images(
        which in 0usize..6,
        flips in proptest::collection::vec((0usize..(128 * 1024), any::<u8>()), 1..24),
        cut in prop_oneof![Just(usize::MAX), 0usize..KEEP],
        lie in prop_oneof![Just(None), any::<u64>().prop_map(Some), (0u64..(1 << 22)).prop_map(Some)],
    ) {
        let (_, (base, true_size)) = &bases()[which];
        let mut image = base.clone();
        for (at, b) in flips {
            if let Some(slot) = image.get_mut(at) {
                *slot = b;
            }
        }
        image.truncate(cut);
        let size = lie.unwrap_or(if cut == usize::MAX { *true_size } else { image.len() as u64 });
        let (_, reads) = fs_with_size(&image, size);
        prop_assert!(reads <= MAX_FS_READS);
        for ssz in [512, 4096] {
            let pt = pt_with_size(&image, size, ssz);
            walk_partitions(&image, &pt);
        }
    }
}
