//! The counting file over arbitrary bytes (the fleet's `/etc/hnroot/loader/counting`, built
//! into the loader and read by GRUB through `hnroot_counting_read`): never panics; what it
//! accepts is in range, and the text written for it reads back as the same settings.

#![no_main]

use hnroot_core::bootstate::{MAX_BOOT_LIMIT, MAX_TRIES};
use hnroot_core::counting::{parse, Text, MAX_WAIT};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = parse(data) {
        assert!((1..=MAX_TRIES).contains(&c.tries), "{c:?}");
        assert!((1..=MAX_BOOT_LIMIT).contains(&c.boot_limit), "{c:?}");
        assert!((1..=MAX_WAIT).contains(&c.wait_first), "{c:?}");
        assert!((1..=MAX_WAIT).contains(&c.wait_max), "{c:?}");
        assert_eq!(parse(Text(&c).to_string().as_bytes()), Ok(c));
    }
});
