//! What a driver saw on hostpart and on the ESP: the input of every decision. Drivers fill it in
//! (GRUB through its own filesystem drivers, the initramfs and the CLI through the kernel's);
//! nothing here looks at a disk.

use crate::bootstate::{BootState, StateSeen, Trial};
use crate::name::ImageName;
use crate::uuid::FsUuid;

/// One image file as a driver saw it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum ImageSeen {
    /// No such file.
    #[default]
    Absent,
    /// The file exists but its verdict refused it (garbage, truncated, not a regular file, a
    /// filesystem without a UUID, missing boot files, features GRUB cannot read).
    NotBootable,
    /// A bootable image (its verdict: [`crate::verdict::Verdict::Bootable`]) with this UUID.
    Bootable(FsUuid),
}

impl ImageSeen {
    /// The UUID when bootable.
    pub fn uuid(self) -> Option<FsUuid> {
        match self {
            ImageSeen::Bootable(uuid) => Some(uuid),
            _ => None,
        }
    }

    /// True unless absent.
    pub fn is_present(self) -> bool {
        self != ImageSeen::Absent
    }
}

/// Everything one side saw: the image files, the revert marker, the boot state.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Observation {
    /// Indexed by [`ImageName::index`].
    pub images: [ImageSeen; 5],
    /// `system-revert` exists.
    pub revert_requested: bool,
    /// The boot-state block as decoded.
    pub state: StateSeen,
}

impl Default for Observation {
    fn default() -> Self {
        Observation {
            images: [ImageSeen::Absent; 5],
            revert_requested: false,
            state: StateSeen::Absent,
        }
    }
}

impl Observation {
    /// How `name` was seen.
    pub fn image(&self, name: ImageName) -> ImageSeen {
        self.images.get(name.index()).copied().unwrap_or_default()
    }

    /// Record how `name` was seen.
    pub fn set(&mut self, name: ImageName, seen: ImageSeen) {
        if let Some(slot) = self.images.get_mut(name.index()) {
            *slot = seen;
        }
    }

    /// Builder form of [`Observation::set`].
    pub fn with(mut self, name: ImageName, seen: ImageSeen) -> Self {
        self.set(name, seen);
        self
    }

    /// The UUID of `name` when it is bootable.
    pub fn bootable(&self, name: ImageName) -> Option<FsUuid> {
        self.image(name).uuid()
    }

    /// The first image in `order` that is bootable with `uuid`.
    pub fn find(&self, uuid: FsUuid, order: &[ImageName]) -> Option<ImageName> {
        order
            .iter()
            .copied()
            .find(|&n| self.bootable(n) == Some(uuid))
    }

    /// The valid boot state, if any.
    pub fn boot_state(&self) -> Option<&BootState> {
        match &self.state {
            StateSeen::Valid(state) => Some(state),
            _ => None,
        }
    }

    /// The trial recorded in the boot state, if any.
    pub fn trial(&self) -> Option<&Trial> {
        self.boot_state().and_then(BootState::trial)
    }

    /// The last image known good, if the boot state says.
    pub fn good(&self) -> Option<FsUuid> {
        self.boot_state().and_then(BootState::good)
    }
}
