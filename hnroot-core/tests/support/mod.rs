//! A tiny simulated machine for the rule, model and property tests: a hostpart directory of
//! image slots, the revert marker, the boot-state block (through the real codec), and the
//! execution of plan steps. It decides nothing itself: every decision comes from the core.

#![allow(dead_code)]

use hnroot_core::bootstate::{new_block, Block, BootState, StateSeen, BLOCK_LEN};
use hnroot_core::decide::{decide, Config, Decision};
use hnroot_core::name::ImageName;
use hnroot_core::observe::{ImageSeen, Observation};
use hnroot_core::plan::{plan, Booted, ChangePlan, ChangeStep, PlanError};
use hnroot_core::uuid::FsUuid;

/// An image in the simulation: a few distinct filesystems and one garbage file.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Img {
    A,
    B,
    C,
    D,
    /// Not a filesystem (truncated copy, random bytes).
    Garbage,
}

impl Img {
    pub const FILESYSTEMS: [Img; 4] = [Img::A, Img::B, Img::C, Img::D];

    pub fn uuid(self) -> Option<FsUuid> {
        let byte = match self {
            Img::A => 0xa1,
            Img::B => 0xb2,
            Img::C => 0xc3,
            Img::D => 0xd4,
            Img::Garbage => return None,
        };
        Some(FsUuid::Uuid([byte; 16]))
    }

    pub fn from_uuid(uuid: FsUuid) -> Img {
        Img::FILESYSTEMS
            .into_iter()
            .find(|i| i.uuid() == Some(uuid))
            .expect("a UUID the simulation made")
    }

    pub fn seen(self) -> ImageSeen {
        match self.uuid() {
            Some(u) => ImageSeen::Bootable(u),
            None => ImageSeen::NotBootable,
        }
    }
}

/// The top directory of hostpart.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Dir {
    pub slots: [Option<Img>; 5],
    pub marker: bool,
    /// `hnroot stage`'s partial file, which no decision looks at.
    pub partial: Option<Img>,
}

/// A filesystem operation on hostpart, in journal order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Op {
    Rename {
        from: ImageName,
        to: ImageName,
    },
    RemoveMarker,
    CreateMarker,
    /// Write `hnroot stage`'s partial file (its name is not journaled until published).
    FillPartial(Img),
    /// Rename the partial file to this name.
    Publish(ImageName),
}

impl Dir {
    pub fn get(&self, name: ImageName) -> Option<Img> {
        self.slots[name.index()]
    }

    pub fn set(&mut self, name: ImageName, img: Option<Img>) {
        self.slots[name.index()] = img;
    }

    pub fn with(mut self, name: ImageName, img: Img) -> Self {
        self.set(name, Some(img));
        self
    }

    pub fn observe(&self, state: StateSeen) -> Observation {
        let mut obs = Observation {
            revert_requested: self.marker,
            state,
            ..Observation::default()
        };
        for name in ImageName::ALL {
            obs.set(name, self.get(name).map_or(ImageSeen::Absent, Img::seen));
        }
        obs
    }

    /// Apply one operation; returns the image it destroyed (replaced), if any.
    pub fn apply(&mut self, op: Op) -> Result<Option<Img>, String> {
        match op {
            Op::Rename { from, to } => {
                let img = self
                    .get(from)
                    .ok_or_else(|| format!("rename {from} -> {to}: {from} missing"))?;
                let destroyed = self.get(to);
                self.set(to, Some(img));
                self.set(from, None);
                Ok(destroyed)
            }
            Op::RemoveMarker => {
                self.marker = false;
                Ok(None)
            }
            Op::CreateMarker => {
                self.marker = true;
                Ok(None)
            }
            Op::FillPartial(img) => {
                self.partial = Some(img);
                Ok(None)
            }
            Op::Publish(to) => {
                let img = self
                    .partial
                    .take()
                    .ok_or_else(|| "publish: no partial file".to_string())?;
                let destroyed = self.get(to);
                self.set(to, Some(img));
                Ok(destroyed)
            }
        }
    }

    /// Every image present (with duplicates).
    pub fn images(&self) -> impl Iterator<Item = Img> + '_ {
        self.slots.iter().flatten().copied()
    }

    pub fn holds(&self, img: Img) -> bool {
        self.images().any(|i| i == img)
    }
}

/// One boot-state write through the real codec: `block` (the block as the writer finds it,
/// built from `prev`) encoded with `next`, then read back. Memoized per thread: the result
/// depends only on `prev` and `next`, and the model and liveness tests write the same few hundred
/// pairs millions of times (before this, 92 % of their time was CRC32C over the same
/// blocks). Every pair still goes through the codec once, with its own checks.
pub fn codec_write(
    prev: StateSeen,
    next: BootState,
    block: impl FnOnce() -> [u8; BLOCK_LEN],
) -> StateSeen {
    use std::cell::RefCell;
    use std::collections::HashMap;
    thread_local! {
        static MEMO: RefCell<HashMap<(StateSeen, BootState), StateSeen>> =
            RefCell::new(HashMap::new());
    }
    if let Some(seen) = MEMO.with(|m| m.borrow().get(&(prev, next)).copied()) {
        return seen;
    }
    let mut bytes = block();
    Block::encode_into(&mut bytes, &next).expect("encodes");
    let seen = Block::decode(&bytes).expect("right size").seen();
    MEMO.with(|m| m.borrow_mut().insert((prev, next), seen));
    seen
}

/// The boot-state file on the ESP, kept as real bytes and read through the real codec.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StateFile {
    pub bytes: Option<[u8; BLOCK_LEN]>,
}

impl StateFile {
    pub fn absent() -> Self {
        StateFile { bytes: None }
    }

    pub fn blank() -> Self {
        StateFile {
            bytes: Some([0; BLOCK_LEN]),
        }
    }

    pub fn with(state: BootState) -> Self {
        StateFile {
            bytes: Some(new_block(&state)),
        }
    }

    pub fn corrupt() -> Self {
        let mut bytes = new_block(&BootState::committed(Img::A.uuid().unwrap()));
        bytes[100] ^= 0xff;
        StateFile { bytes: Some(bytes) }
    }

    /// What a reader sees.
    pub fn seen(&self) -> StateSeen {
        match &self.bytes {
            None => StateSeen::Absent,
            Some(b) => Block::decode(b).expect("right size").seen(),
        }
    }

    /// Write through the codec, as GRUB and the initramfs do. Writing needs the file.
    pub fn write(&mut self, state: &BootState) -> bool {
        match &mut self.bytes {
            None => false,
            Some(b) => {
                Block::encode_into(b, state).expect("encodes");
                true
            }
        }
    }
}

/// What GRUB passed on the command line, from a decision.
pub fn booted(decision: &Decision) -> Option<Booted> {
    decision.boot().map(|b| Booted {
        name: b.image,
        uuid: b.uuid,
    })
}

/// A whole boot without crashes: GRUB decides (and writes its state), the initramfs plans on
/// the same directory and runs the plan to the end. Returns the decision, the plan, and the
/// image that ended up mounted.
pub struct BootRun {
    pub decision: Decision,
    pub plan: Result<ChangePlan, PlanError>,
    pub mounted: Option<(ImageName, Img)>,
}

pub fn boot(dir: &mut Dir, state: &mut StateFile, config: &Config) -> BootRun {
    let decision = decide(&dir.observe(state.seen()), config);
    if let Some(write) = decision.boot().and_then(|b| b.write) {
        state.write(&write);
    }
    let Some(b) = booted(&decision) else {
        return BootRun {
            decision,
            plan: Err(PlanError::NoCurrentImage),
            mounted: None,
        };
    };
    let p = plan(&dir.observe(state.seen()), Some(b));
    let mut mounted = None;
    if let Ok(p) = &p {
        for step in &p.steps {
            mounted = execute(dir, state, step, None)
                .expect("plan step executes")
                .or(mounted);
        }
    }
    BootRun {
        decision,
        plan: p,
        mounted,
    }
}

/// Execute one step on a directory; returns what a Mount step mounted. `source` is the image
/// a stage copies.
pub fn execute(
    dir: &mut Dir,
    state: &mut StateFile,
    step: &ChangeStep,
    source: Option<Img>,
) -> Result<Option<(ImageName, Img)>, String> {
    match *step {
        ChangeStep::Rename { from, to, replace } => {
            if !replace && dir.get(to).is_some() {
                return Err(format!(
                    "rename {from} -> {to} without replace, but {to} exists"
                ));
            }
            dir.apply(Op::Rename { from, to })?;
            Ok(None)
        }
        ChangeStep::RemoveRevertMarker => {
            dir.apply(Op::RemoveMarker)?;
            Ok(None)
        }
        ChangeStep::SyncDir | ChangeStep::Checkpoint => Ok(None),
        ChangeStep::WriteBootState(s) => {
            state.write(&s);
            Ok(None)
        }
        ChangeStep::CreateRevertMarker => {
            dir.apply(Op::CreateMarker)?;
            Ok(None)
        }
        ChangeStep::CopyToPartial => {
            let img = source.ok_or("copy to partial without a source")?;
            dir.apply(Op::FillPartial(img))?;
            Ok(None)
        }
        ChangeStep::VerifyPartial { uuid } => match dir.partial {
            Some(img) if img.uuid() == Some(uuid) => Ok(None),
            other => Err(format!(
                "verify partial: holds {other:?}, expected UUID {uuid}"
            )),
        },
        ChangeStep::PublishPartial { to, replace } => {
            if !replace && dir.get(to).is_some() {
                return Err(format!("publish without replace, but {to} exists"));
            }
            dir.apply(Op::Publish(to))?;
            Ok(None)
        }
        ChangeStep::Mount { image, uuid } => {
            let img = dir
                .get(image)
                .ok_or_else(|| format!("mount {image}: missing"))?;
            if img.uuid() != Some(uuid) {
                return Err(format!(
                    "mount {image}: holds {img:?}, expected UUID {uuid}"
                ));
            }
            Ok(Some((image, img)))
        }
    }
}

/// The journaled operation a plan step performs on hostpart's top directory, if any (filling
/// the partial file is data, see [`Op::FillPartial`]).
pub fn op_of(step: &ChangeStep) -> Option<Op> {
    match *step {
        ChangeStep::Rename { from, to, .. } => Some(Op::Rename { from, to }),
        ChangeStep::RemoveRevertMarker => Some(Op::RemoveMarker),
        ChangeStep::CreateRevertMarker => Some(Op::CreateMarker),
        ChangeStep::PublishPartial { to, .. } => Some(Op::Publish(to)),
        _ => None,
    }
}
