//! The history codec over arbitrary bytes: decoding never panics, whatever the slot holds; and
//! a slot made to pass the checks a reader starts with (the magic, the version, the CRC32C of
//! the rest, as a torn or hostile file could carry them) either is refused or decodes to a
//! record whose encoding decodes to the same record.

#![no_main]

use hnroot_core::history::{Record, RECORD_LEN};
use libfuzzer_sys::fuzz_target;

/// The codec's CRC (CRC32C over bytes 0..124, stored little-endian at 124..128).
const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

fuzz_target!(|data: &[u8]| {
    // As it comes.
    let _ = Record::decode(data);
    // As a slot that passes the first checks.
    let mut slot = [0u8; RECORD_LEN];
    let n = data.len().min(RECORD_LEN);
    slot[..n].copy_from_slice(&data[..n]);
    slot[0..4].copy_from_slice(b"HNRH");
    slot[4] = 1;
    let crc = CRC32C.checksum(&slot[..124]);
    slot[124..].copy_from_slice(&crc.to_le_bytes());
    if let Ok(record) = Record::decode(&slot) {
        assert_eq!(Record::decode(&record.encode()), Ok(record));
        // Its text never fails to print.
        let _ = record.to_string();
    }
});
