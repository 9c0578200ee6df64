//! The hostname sanitiser over arbitrary text (a DMI serial, `hnroot.hostname=`): never
//! panics; whatever it makes is a hostname the parser accepts as it is, and sanitising that
//! again changes nothing.

#![no_main]

use hnroot_core::hostname::{self, Hostname};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = Hostname::parse(&text);
    let _ = hostname::serial_is_usable(&text);
    if let Some(name) = hostname::sanitize(&text) {
        assert_eq!(Hostname::parse(name.as_str()), Ok(name), "{text:?}");
        assert_eq!(hostname::sanitize(name.as_str()), Some(name));
        assert!(name.as_str().len() <= 63, "{name}");
    }
});
