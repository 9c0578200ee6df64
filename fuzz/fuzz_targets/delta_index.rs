//! The chunk index over arbitrary bytes: parsing never panics; and bytes made to pass the
//! header's checks (the magic, sane chunk sizes) either are refused or give chunks that are in
//! order, within the sizes and add up to the image, and that encode back to the same bytes.

#![no_main]

use hnroot_core::delta::{encode_entry, encode_header, Index, DEFAULT_SIZES, HEADER_LEN, MAGIC};
use libfuzzer_sys::fuzz_target;

fn check(bytes: &[u8]) {
    let Ok(index) = Index::parse(bytes) else {
        return;
    };
    let mut offset = 0u64;
    let mut again = encode_header(
        index.image_len,
        index.len(),
        index.sizes,
        &index.signature_hash,
    )
    .to_vec();
    for c in index.chunks() {
        assert_eq!(c.offset, offset);
        assert!(c.len > 0 && c.len <= index.sizes.max);
        offset += u64::from(c.len);
        again.extend_from_slice(&encode_entry(c.len, c.zero, &c.hash));
    }
    assert_eq!(offset, index.image_len);
    assert_eq!(again, bytes);
}

fuzz_target!(|data: &[u8]| {
    // As it comes.
    check(data);
    // With a header that passes the first checks: the rest of the bytes as entries.
    if data.len() >= 8 {
        let entries = &data[8..];
        let count = (entries.len() / 36) as u32;
        let image_len = u64::from_le_bytes(data[..8].try_into().unwrap_or([0; 8]));
        let mut bytes = encode_header(image_len, count, DEFAULT_SIZES, &[0; 32]).to_vec();
        bytes.extend_from_slice(&entries[..count as usize * 36]);
        assert_eq!(&bytes[..8], &MAGIC);
        assert!(bytes.len() >= HEADER_LEN);
        check(&bytes);
    }
});
