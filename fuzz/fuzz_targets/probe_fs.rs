//! The filesystem prober over arbitrary bytes taken as a device image, driven through its
//! step/feed loop like a real driver. The first byte picks the device size the prober is told:
//! the image's own length, or a larger one (reads past the end come back short).

#![no_main]

use hnroot_core::probe::{FsProber, ProbeStep, MAX_FS_READS, MAX_READ};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, image)) = data.split_first() else {
        return;
    };
    let size = match mode % 4 {
        0 => image.len() as u64,
        1 => (image.len() as u64).saturating_mul(2),
        2 => u64::MAX,
        _ => 4 << 20,
    };
    let mut prober = FsProber::new(size);
    let mut reads = 0u32;
    loop {
        match prober.step() {
            ProbeStep::Read(r) => {
                reads += 1;
                assert!(reads <= MAX_FS_READS, "the prober does not finish");
                assert!(r.len > 0 && r.len <= MAX_READ);
                let start = usize::try_from(r.offset)
                    .unwrap_or(usize::MAX)
                    .min(image.len());
                let end = start.saturating_add(r.len).min(image.len());
                prober.feed(&image[start..end]);
            }
            ProbeStep::Done(_) => break,
        }
    }
});
