//! The loader's readers over arbitrary bytes: the PE section finder, the version record parser,
//! the Authenticode certificates' reader (the certificate table, PKCS#7 in DER) and the memdisk
//! reader (the `mods` section's objects, the ustar archive) never panic; a certificate read lies
//! inside the image; a record
//! that parses encodes back to a record that parses to the same; a file the memdisk yields lies
//! inside the image.

#![no_main]

use hnroot_core::loader::{self, RECORD_MAX};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = loader::identify(Some(data));
    for path in [hnroot_core::layout::FLEET_ARGS_MEMDISK_PATH, "boot/grub/grub.cfg"] {
        if let Ok(Some(file)) = hnroot_core::memdisk::file(data, path) {
            let inside = data.as_ptr_range();
            assert!(inside.start <= file.as_ptr() && file.as_ptr_range().end <= inside.end);
        }
        let _ = hnroot_core::memdisk::tar_file(data, path);
    }
    let mut certificates = [&[][..]; loader::MAX_SIGNATURE_CERTIFICATES];
    if let Ok(n) = loader::signature_certificates(data, &mut certificates) {
        let inside = data.as_ptr_range();
        for c in &certificates[..n] {
            assert!(inside.start <= c.as_ptr() && c.as_ptr_range().end <= inside.end);
        }
    }
    let _ = loader::same_signer(data, data);
    if let Ok(Some(section)) = loader::find_section(data, &loader::SECTION_NAME) {
        let _ = loader::parse_record(section);
    }
    if let Ok(record) = loader::parse_record(data) {
        let mut out = [0u8; RECORD_MAX + 256];
        let n = record.encode(&mut out).expect("a parsed record fits");
        assert_eq!(loader::parse_record(&out[..n]), Ok(record));
    }
});
