//! The loader's readers over arbitrary bytes: the PE section finder and the version record
//! parser never panic; a record that parses encodes back to a record that parses to the same.

#![no_main]

use hnroot_core::loader::{self, RECORD_MAX};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = loader::identify(Some(data));
    if let Ok(Some(section)) = loader::find_section(data, &loader::SECTION_NAME) {
        let _ = loader::parse_record(section);
    }
    if let Ok(record) = loader::parse_record(data) {
        let mut out = [0u8; RECORD_MAX + 256];
        let n = record.encode(&mut out).expect("a parsed record fits");
        assert_eq!(loader::parse_record(&out[..n]), Ok(record));
    }
});
