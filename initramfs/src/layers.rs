//! Writable layers of images that are gone: after the plan (an update's rename may just have
//! replaced an image), the layers under `data/hnroot/overlay/` whose image is no longer on
//! hostpart are removed (`hnroot_core::overlay`). Which images are there is what the switch left
//! (`Switched::seen`), not a second look. Never fatal.

use hnroot_core::name::ImageName;
use hnroot_core::observe::Observation;
use hnroot_core::uuid::FsUuid;
use hnroot_linux::hostpart::Hostpart;

use crate::{info, warn};

/// Remove the layers of images not in `seen`.
pub fn remove_stale(hostpart: &Hostpart, seen: &Observation) {
    let images: Vec<FsUuid> = ImageName::ALL
        .iter()
        .filter_map(|&n| seen.bootable(n))
        .collect();
    match hostpart.remove_stale_overlays(&images) {
        Ok(done) => done
            .iter()
            .for_each(|line| info!("writable layers: {line}")),
        Err(e) => warn!("writable layers: {e}; removing none"),
    }
}
