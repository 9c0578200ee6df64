//! The kernel command-line parser over arbitrary text: never panics, and anything it accepts as
//! the booted image is one of the five image names with a UUID that prints back to a string
//! that parses to the same UUID.

#![no_main]

use hnroot_core::cmdline;
use hnroot_core::name::ImageName;
use hnroot_core::uuid::FsUuid;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let p = cmdline::parse(text);
    if let Some(b) = p.booted {
        assert!(ImageName::ALL.contains(&b.name));
        assert_eq!(FsUuid::parse(&b.uuid.to_string()), Ok(b.uuid));
    }
    if let Some(init) = p.init {
        assert!(init.starts_with('/') && !init.split('/').any(|c| c == ".."));
    }
    if let Some(opts) = p.hostpart_options {
        assert!(cmdline::valid_options(opts));
    }
});
