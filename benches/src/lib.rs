//! Benchmarks live in `benches/` (criterion) and in the side-by-side shell scripts next to this
//! crate; this library only holds observations they share.

use hnroot_core::bootstate::{new_block, BootState, Trial, Tries, BLOCK_LEN};
use hnroot_core::name::ImageName;
use hnroot_core::observe::{ImageSeen, Observation};
use hnroot_core::uuid::FsUuid;

/// UUID of the current image in the sample observations.
pub const CURRENT: FsUuid = FsUuid::Uuid([0xa1; 16]);
/// UUID of the staged image in the sample observations.
pub const STAGED: FsUuid = FsUuid::Uuid([0xb2; 16]);

/// A machine with a committed current image, an old image and a staged update: the decision
/// GRUB makes on the first boot after an update.
pub fn update_observation() -> Observation {
    Observation {
        state: hnroot_core::StateSeen::Valid(BootState::committed(CURRENT)),
        ..Observation::default()
    }
    .with(ImageName::Current, ImageSeen::Bootable(CURRENT))
    .with(
        ImageName::Old,
        ImageSeen::Bootable(FsUuid::Uuid([0xc3; 16])),
    )
    .with(ImageName::New, ImageSeen::Bootable(STAGED))
}

/// A boot-state file holding a trial of the staged image.
pub fn trial_block() -> [u8; BLOCK_LEN] {
    new_block(&BootState::Trial(Trial {
        image: STAGED,
        tries: Tries::fresh(3),
        good: Some(CURRENT),
    }))
}
