//! Liveness when steps fail (house style point 10): every step the executor carries out may
//! fail, and keep failing — a read-only hostpart, a name that cannot be renamed or replaced, a
//! marker that cannot be removed, a sync or checkpoint error, a boot-state block that cannot be
//! written, an image that does not mount, an image without its init. From every on-disk state
//! (every combination of image files, revert marker and boot state) and every set of at most
//! two such persistent faults, the boots that follow — GRUB decides, the initramfs plans,
//! executes until a step fails, then does what the core says ([`after_step_failure`],
//! [`after_failure`]) — reach a stable boot of a working image (the next boot would be the
//! same) or a stop with a message, within a bounded number of boots and without a cycle.
//! Nobody marks anything good in between: the worst case.
//!
//! The number of runs and the most boots any run needs are pinned.

mod support;

use std::collections::HashMap;

use hnroot_core::bootstate::{BootState, StateSeen, Trial, Tries};
use hnroot_core::decide::{decide, Config, Decision};
use hnroot_core::name::ImageName;
use hnroot_core::plan::{
    after_failure, after_step_failure, plan, AfterFailure, AfterStepFailure, Booted, ChangeStep,
};
use support::{op_of, Dir, Img};

fn cfg() -> Config {
    Config::default()
}

/// A persistent fault: it fails the same way at every boot.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Fault {
    /// hostpart is read-only: every rename and marker removal fails.
    HostpartReadOnly,
    /// Renames of this name fail.
    RenameFrom(ImageName),
    /// Renames onto this name fail.
    RenameOnto(ImageName),
    /// `system-revert` cannot be removed.
    RemoveMarker,
    /// Directory sync and checkpoint fail.
    Sync,
    /// Neither GRUB nor the initramfs can write the boot-state block.
    BootStateWrite,
    /// The image does not mount.
    Mount(Img),
    /// The image has no init.
    Init(Img),
}

fn all_faults() -> Vec<Fault> {
    let mut out = vec![
        Fault::HostpartReadOnly,
        Fault::RemoveMarker,
        Fault::Sync,
        Fault::BootStateWrite,
    ];
    for name in ImageName::ALL {
        out.push(Fault::RenameFrom(name));
        out.push(Fault::RenameOnto(name));
    }
    for img in [Img::A, Img::B] {
        out.push(Fault::Mount(img));
        out.push(Fault::Init(img));
    }
    out
}

struct Faults(Vec<Fault>);

impl Faults {
    fn has(&self, f: Fault) -> bool {
        self.0.contains(&f)
    }

    /// Whether executing `step` on `dir` fails.
    fn fails(&self, step: &ChangeStep, dir: &Dir) -> bool {
        match *step {
            ChangeStep::Rename { from, to, .. } => {
                self.has(Fault::HostpartReadOnly)
                    || self.has(Fault::RenameFrom(from))
                    || self.has(Fault::RenameOnto(to))
            }
            ChangeStep::RemoveRevertMarker => {
                self.has(Fault::HostpartReadOnly) || self.has(Fault::RemoveMarker)
            }
            ChangeStep::SyncDir | ChangeStep::Checkpoint => self.has(Fault::Sync),
            ChangeStep::WriteBootState(_) => self.has(Fault::BootStateWrite),
            ChangeStep::Mount { image, .. } => {
                dir.get(image).is_some_and(|i| self.has(Fault::Mount(i)))
            }
            _ => panic!("{step} in a boot plan"),
        }
    }
}

type World = (Dir, StateSeen);

/// How one boot ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum End {
    /// The image runs; the machine reboots into `World` later.
    Running(Img),
    /// The initramfs recorded a failure and rebooted.
    Rebooted,
    /// Stopped with a message: nothing else would boot.
    Stop,
}

fn write(state: &mut StateSeen, faults: &Faults, s: BootState) {
    if faults.has(Fault::BootStateWrite) {
        return;
    }
    let mut block = match state {
        StateSeen::Valid(prev) => hnroot_core::bootstate::new_block(prev),
        _ => [0; hnroot_core::bootstate::BLOCK_LEN],
    };
    hnroot_core::bootstate::Block::encode_into(&mut block, &s).unwrap();
    *state = hnroot_core::bootstate::Block::decode(&block)
        .unwrap()
        .seen();
}

/// The image at `booted` failed: what the initramfs does (see `after_failure`).
fn image_failed(
    dir: &Dir,
    state: &mut StateSeen,
    uuid: hnroot_core::FsUuid,
    faults: &Faults,
) -> End {
    match after_failure(&dir.observe(*state), uuid, &cfg()) {
        // Without a recorded failure, a reboot would boot the same image again: stop.
        AfterFailure::Reboot { .. } if faults.has(Fault::BootStateWrite) => End::Stop,
        AfterFailure::Reboot {
            write: w,
            next_uuid,
            ..
        } => {
            assert_ne!(next_uuid, uuid);
            write(state, faults, w);
            End::Rebooted
        }
        AfterFailure::Stop => End::Stop,
    }
}

/// Mount `image` (holding `uuid`) and start its init.
fn start(dir: &Dir, state: &mut StateSeen, image: ImageName, faults: &Faults) -> End {
    let img = dir.get(image).expect("mounting an image that is there");
    let uuid = img.uuid().expect("a bootable image");
    if faults.has(Fault::Mount(img)) || faults.has(Fault::Init(img)) {
        return image_failed(dir, state, uuid, faults);
    }
    End::Running(img)
}

/// One whole boot from `world`.
fn boot(world: World, faults: &Faults) -> (World, End) {
    let (mut dir, mut state) = world;
    let d = decide(&dir.observe(state), &cfg());
    let Decision::Boot(b) = d else {
        return ((dir, state), End::Stop);
    };
    if let Some(w) = b.write {
        write(&mut state, faults, w);
    }
    let booted = Booted {
        name: b.image,
        uuid: b.uuid,
    };
    let p = match plan(&dir.observe(state), Some(booted)) {
        Ok(p) => p,
        Err(_) => {
            let end = image_failed(&dir, &mut state, b.uuid, faults);
            return ((dir, state), end);
        }
    };
    for step in &p.steps {
        if faults.fails(step, &dir) {
            let end = match after_step_failure(&dir.observe(state), b.uuid, step, &cfg()) {
                AfterStepFailure::Continue => continue,
                AfterStepFailure::MountAsIs { image, uuid } => {
                    assert_eq!(dir.get(image).and_then(Img::uuid), Some(uuid));
                    start(&dir, &mut state, image, faults)
                }
                AfterStepFailure::ImageFailed(_) => image_failed(&dir, &mut state, b.uuid, faults),
            };
            return ((dir, state), end);
        }
        match *step {
            ChangeStep::WriteBootState(s) => write(&mut state, faults, s),
            ChangeStep::Mount { image, uuid } => {
                assert_eq!(dir.get(image).and_then(Img::uuid), Some(uuid));
                let end = start(&dir, &mut state, image, faults);
                return ((dir, state), end);
            }
            ChangeStep::SyncDir | ChangeStep::Checkpoint => {}
            _ => {
                dir.apply(op_of(step).unwrap()).unwrap();
            }
        }
    }
    panic!("a boot plan without a mount: {p:?}");
}

/// How a sequence of boots ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outcome {
    /// After this many boots the next boot is the same as the last, running this image.
    Stable(usize, Img),
    /// After this many boots the machine stops with a message.
    Stopped(usize),
}

/// Most boots a sequence may take before it is stable or stops.
const MAX_BOOTS: usize = 16;

fn run(start: World, faults: &Faults, memo: &mut HashMap<World, Outcome>) -> Outcome {
    let mut path: Vec<World> = Vec::new();
    let mut world = start;
    let outcome = loop {
        if let Some(&known) = memo.get(&world) {
            break known;
        }
        if let Some(at) = path.iter().position(|w| *w == world) {
            panic!(
                "faults {:?}: a cycle of {} boots through {:?}, from {:?}",
                faults.0,
                path.len() - at,
                path[at..].to_vec(),
                start
            );
        }
        assert!(
            path.len() <= MAX_BOOTS,
            "faults {:?}: no stable boot after {MAX_BOOTS} boots from {start:?}",
            faults.0
        );
        path.push(world);
        let (next, end) = boot(world, faults);
        match end {
            End::Stop => break Outcome::Stopped(0),
            End::Running(img) if next == world => break Outcome::Stable(0, img),
            End::Running(_) | End::Rebooted => world = next,
        }
    };
    // Every world on the path reaches the same end, one boot further each step back.
    let mut o = outcome;
    for w in path.iter().rev() {
        o = match o {
            Outcome::Stable(n, img) => Outcome::Stable(n + 1, img),
            Outcome::Stopped(n) => Outcome::Stopped(n + 1),
        };
        memo.insert(*w, o);
    }
    o
}

fn all_worlds() -> Vec<World> {
    let choices = [None, Some(Img::A), Some(Img::B), Some(Img::Garbage)];
    let mut dirs = vec![Dir::default()];
    for name in ImageName::ALL {
        dirs = dirs
            .into_iter()
            .flat_map(|d| {
                choices.iter().map(move |&c| {
                    let mut d = d;
                    d.set(name, c);
                    d
                })
            })
            .collect();
    }
    let marked: Vec<Dir> = dirs.iter().map(|d| Dir { marker: true, ..*d }).collect();
    dirs.extend(marked);
    let images = [Img::A, Img::B];
    let mut states = vec![StateSeen::Absent, StateSeen::Corrupt];
    for g in images {
        states.push(StateSeen::Valid(BootState::Committed {
            good: g.uuid().unwrap(),
        }));
    }
    for t in images {
        for left in 0..=cfg().tries {
            for good in [None, Some(Img::A), Some(Img::B)] {
                states.push(StateSeen::Valid(BootState::Trial(Trial {
                    image: t.uuid().unwrap(),
                    tries: Tries::new(left, cfg().tries).unwrap(),
                    good: good.and_then(Img::uuid),
                })));
            }
        }
    }
    dirs.iter()
        .flat_map(|d| states.iter().map(move |s| (*d, *s)))
        .collect()
}

#[test]
fn every_state_and_failing_step_ends_in_a_stable_boot_or_a_stop() {
    let atoms = all_faults();
    let mut sets: Vec<Vec<Fault>> = vec![vec![]];
    for (i, a) in atoms.iter().enumerate() {
        sets.push(vec![*a]);
        for b in &atoms[i + 1..] {
            sets.push(vec![*a, *b]);
        }
    }
    let worlds = all_worlds();
    let mut runs = 0u64;
    let mut longest = 0usize;
    let mut stops = 0u64;
    for set in &sets {
        let faults = Faults(set.clone());
        let mut memo = HashMap::new();
        for &w in &worlds {
            runs += 1;
            match run(w, &faults, &mut memo) {
                Outcome::Stable(n, img) => {
                    longest = longest.max(n);
                    assert!(
                        !faults.has(Fault::Mount(img)) && !faults.has(Fault::Init(img)),
                        "stable on a failing image"
                    );
                }
                Outcome::Stopped(n) => {
                    longest = longest.max(n);
                    stops += 1;
                }
            }
        }
        // Without faults, a stop happens only where nothing on hostpart can boot.
        if set.is_empty() {
            for &w in &worlds {
                if let Some(Outcome::Stopped(_)) = memo.get(&w) {
                    let (dir, _) = w;
                    assert!(
                        dir.images().all(|i| i.uuid().is_none()),
                        "stopped without faults although an image is readable: {w:?}"
                    );
                }
            }
        }
    }
    println!(
        "liveness: {} fault sets x {} states = {runs} runs, {stops} ending in a stop; at most \
         {longest} boots to a stable boot or a stop",
        sets.len(),
        worlds.len()
    );
    assert_eq!(
        runs, EXPECTED_RUNS,
        "the model changed size: update the pin if intended"
    );
    assert_eq!(
        longest, EXPECTED_LONGEST,
        "the bound changed: update the pin if intended"
    );
}

const EXPECTED_RUNS: u64 = 9_863_168;
const EXPECTED_LONGEST: usize = 9;
