//! The filesystem prober over arbitrary bytes taken as a device image, driven through its
//! step/feed loop like a real driver. The first byte picks the device size the prober is told:
//! the image's own length, or a larger one (reads past the end come back short). Then a search
//! for what the finished probe found (its label, its UUID) is run again with the early stop a
//! search makes (`may_find`): it must never give up on the device.

#![no_main]

use hnroot_core::probe::{FsInfo, FsOutcome, FsProber, ProbeStep, MAX_FS_READS, MAX_READ};
use libfuzzer_sys::fuzz_target;

/// Drive a prober over `image` told it is `size` bytes; `wanted`: give up (`None`) where
/// `may_find` says so.
fn drive(image: &[u8], size: u64, wanted: Option<&dyn Fn(&FsInfo) -> bool>) -> Option<FsOutcome> {
    let mut prober = FsProber::new(size);
    let mut reads = 0u32;
    loop {
        match prober.step() {
            ProbeStep::Read(_) if wanted.is_some_and(|w| !prober.may_find(w)) => return None,
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
            ProbeStep::Done(outcome) => return Some(outcome),
        }
    }
}

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
    let Some(outcome) = drive(image, size, None) else {
        unreachable!("a probe without a search always finishes");
    };
    let Some(info) = outcome.info() else {
        return;
    };
    if let Some(label) = &info.label {
        let by_label = |i: &FsInfo| i.is_labelled(label.as_bytes());
        assert_eq!(
            drive(image, size, Some(&by_label)).as_ref(),
            Some(&outcome),
            "a search by its label gave up"
        );
    }
    if let Some(uuid) = info.uuid {
        let by_uuid = |i: &FsInfo| i.uuid == Some(uuid);
        assert_eq!(
            drive(image, size, Some(&by_uuid)).as_ref(),
            Some(&outcome),
            "a search by its UUID gave up"
        );
    }
});
