//! The seal's parsers over arbitrary bytes: the seal block, the manifest, minisign keys and
//! signatures, and the floor file never panic; a manifest that parses writes back to the same
//! bytes (one spelling), and a floor that parses encodes back to the same bytes.

#![no_main]

use hnroot_core::floor;
use hnroot_core::minisig::{PublicKey, Signature};
use hnroot_core::seal::{self, Manifest, MANIFEST_MAX, SEAL_BLOCK_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::parse(data) {
        let mut out = [0u8; MANIFEST_MAX];
        let n = m.write(&mut out).expect("a parsed manifest writes");
        assert_eq!(&out[..n], data, "one spelling per manifest");
    }
    let mut block = [0u8; SEAL_BLOCK_LEN];
    let n = data.len().min(SEAL_BLOCK_LEN);
    block[..n].copy_from_slice(&data[..n]);
    let _ = seal::read_block(&block);
    let _ = PublicKey::parse(data);
    let mut keys = [PublicKey { key_id: [0; 8], key: [0; 32] }; 4];
    let _ = PublicKey::parse_list(data, &mut keys);
    if let Ok(sig) = Signature::parse(data) {
        let key = PublicKey { key_id: sig.key_id, key: [9; 32] };
        let _ = key.verify(data, &sig);
    }
    if let Some(v) = floor::parse(data) {
        let mut out = [0u8; floor::FLOOR_MAX];
        let n = floor::encode(&v, &mut out).expect("a parsed floor encodes");
        assert_eq!(&out[..n], data);
    }
    let (a, b) = data.split_at(data.len() / 2);
    let forward = hnroot_core::version::compare(a, b);
    let backward = hnroot_core::version::compare(b, a);
    assert_eq!(forward, backward.reverse(), "{a:?} vs {b:?}");
});
