//! The decision and the plan over arbitrary observations (built from the fuzzer's bytes): never
//! panic, never boot an image that was not seen bootable, and plan only renames between names.

#![no_main]

use hnroot_core::bootstate::{Block, StateSeen, BLOCK_LEN};
use hnroot_core::decide::{decide, Config};
use hnroot_core::name::ImageName;
use hnroot_core::observe::{ImageSeen, Observation};
use hnroot_core::plan::{plan, Booted};
use hnroot_core::uuid::FsUuid;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (head, rest) = data.split_at(8);
    let mut obs = Observation {
        revert_requested: head[5] & 1 == 1,
        ..Observation::default()
    };
    for (i, name) in ImageName::ALL.into_iter().enumerate() {
        let seen = match head[i] % 6 {
            0 => ImageSeen::Absent,
            1 => ImageSeen::NotBootable,
            k => ImageSeen::Bootable(FsUuid::Uuid([k; 16])),
        };
        obs.set(name, seen);
    }
    obs.state = if rest.len() >= BLOCK_LEN {
        Block::decode(&rest[..BLOCK_LEN])
            .map(|b| b.seen())
            .unwrap_or(StateSeen::Corrupt)
    } else if head[6] & 1 == 1 {
        StateSeen::Corrupt
    } else {
        StateSeen::Absent
    };
    let config = Config {
        tries: head[7],
        boot_limit: head[6] % 8,
        wait_first: u32::from(head[5]),
        wait_max: u32::from(head[4]) * 16,
    };
    let d = decide(&obs, &config);
    if let Some(b) = d.boot() {
        assert_eq!(obs.bootable(b.image), Some(b.uuid));
        let _ = plan(
            &obs,
            Some(Booted {
                name: b.image,
                uuid: b.uuid,
            }),
        );
    }
    let name = ImageName::ALL[usize::from(head[6]) % 5];
    let _ = plan(
        &obs,
        Some(Booted {
            name,
            uuid: FsUuid::Uuid([head[7]; 16]),
        }),
    );
    let _ = plan(&obs, None);
});
