//! The menu-timeout file over arbitrary bytes (the fleet's `/etc/hnroot/loader/menu-timeout`,
//! built into the loader and read by GRUB through `hnroot_menu_timeout_read`): never panics;
//! what it accepts is in range, and the text written for it reads back as the same countdown.

#![no_main]

use hnroot_core::menu::{parse, Text, MAX_SECONDS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(seconds) = parse(data) {
        assert!(seconds <= MAX_SECONDS, "{seconds}");
        assert_eq!(parse(Text(seconds).to_string().as_bytes()), Ok(seconds));
    }
});
