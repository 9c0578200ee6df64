//! The partition-table prober over arbitrary bytes taken as a disk image, driven through its
//! step/feed loop, then every partition listed: GPT entries from the caller's buffer, MBR
//! primaries and the extended boot record chain. The first byte picks the sector size, the
//! device size the prober is told, and which signatures to stamp in.

#![no_main]

use hnroot_core::probe::{ProbeStep, PtOutcome, PtProber, MAX_PT_READS, MAX_READ};
use libfuzzer_sys::fuzz_target;

fn slice(image: &[u8], offset: u64, len: usize) -> &[u8] {
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(image.len());
    let end = start.saturating_add(len).min(image.len());
    &image[start..end]
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, image)) = data.split_first() else {
        return;
    };
    // Bits 3 and 4 stamp the MBR signature and the GPT signature in, so that the fuzzer
    // spends its time behind the magic checks.
    let mut owned = image.to_vec();
    if mode & 0x08 != 0 && owned.len() >= 512 {
        owned[510] = 0x55;
        owned[511] = 0xaa;
    }
    if mode & 0x10 != 0 && owned.len() >= 520 {
        owned[512..520].copy_from_slice(b"EFI PART");
    }
    let image = &owned[..];
    let sector_size = if mode & 1 == 0 { 512 } else { 4096 };
    let size = match (mode >> 1) % 3 {
        0 => image.len() as u64,
        1 => 8 << 20,
        _ => u64::MAX,
    };
    let mut prober = PtProber::new(size, sector_size);
    let mut reads = 0u32;
    let outcome = loop {
        match prober.step() {
            ProbeStep::Read(r) => {
                reads += 1;
                assert!(reads <= MAX_PT_READS, "the prober does not finish");
                assert!(r.len > 0 && r.len <= MAX_READ);
                prober.feed(slice(image, r.offset, r.len));
            }
            ProbeStep::Done(o) => break o,
        }
    };
    match outcome {
        PtOutcome::Gpt(t) => {
            let (offset, len) = t.entries();
            if let Ok(parts) = t.partitions(slice(image, offset, len)) {
                for p in parts {
                    let _ = (p.start, p.size, p.name.map(|n| n.as_str().is_some()));
                }
            }
        }
        PtOutcome::Mbr(t) => {
            let _ = t.primaries().count();
            if let Some(mut walker) = t.logical() {
                let mut steps = 0u32;
                loop {
                    steps += 1;
                    assert!(steps < 10_000, "the EBR walk does not end");
                    match walker.step() {
                        ProbeStep::Read(r) => walker.feed(slice(image, r.offset, r.len)),
                        ProbeStep::Done(Some(_)) => {}
                        ProbeStep::Done(None) => break,
                    }
                }
            }
        }
        PtOutcome::ProtectiveMbrOnly | PtOutcome::None => {}
    }
});
