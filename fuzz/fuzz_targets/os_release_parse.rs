//! The os-release reader over arbitrary bytes (an image's `/etc/os-release`, read by `hnroot
//! status`, `stage` and `image build`): never panics; what it keeps is short and free of
//! control characters, so it prints on one line.

#![no_main]

use hnroot_linux::image::OsRelease;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let o = OsRelease::parse(&text);
    for v in [&o.image_id, &o.image_version, &o.pretty_name]
        .into_iter()
        .flatten()
    {
        assert!(v.chars().count() <= 128, "{v:?}");
        assert!(!v.chars().any(char::is_control), "{v:?}");
    }
    if let Some(version) = o.version() {
        assert!(!version.contains('\n'));
    }
});
