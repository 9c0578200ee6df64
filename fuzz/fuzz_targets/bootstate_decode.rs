//! The boot-state decoder over arbitrary bytes, and the encoder over whatever it decoded: decode
//! never panics, and when a block decodes, re-encoding its state into it yields a block whose
//! newest record is exactly that state with the next sequence number.

#![no_main]

use hnroot_core::bootstate::{Block, StateSeen, BLOCK_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(block) = Block::decode(data) else {
        assert_ne!(
            data.len(),
            BLOCK_LEN,
            "only a wrong size is refused outright"
        );
        return;
    };
    let seen = block.seen();
    if let (StateSeen::Valid(state), Some((_, record))) = (seen, block.newest()) {
        let mut bytes = [0u8; BLOCK_LEN];
        bytes.copy_from_slice(data);
        if Block::encode_into(&mut bytes, &state).is_ok() {
            let again = Block::decode(&bytes).expect("right size");
            let (_, newest) = again.newest().expect("just written");
            assert_eq!(newest.state, state);
            assert_eq!(newest.sequence, record.sequence + 1);
        }
    }
});
