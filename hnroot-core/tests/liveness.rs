//! Liveness when steps fail (house style point 10): every step the executor carries out may
//! fail, and keep failing — a read-only hostpart, a name that cannot be renamed or replaced, a
//! marker that cannot be removed, a sync or checkpoint error, a boot-state block that cannot be
//! written, an image that does not mount, an image without its init — and an image may boot
//! and never become healthy (its health checks fail, it hangs until the watchdog resets it) or
//! panic before the initramfs. From every on-disk state (every combination of image files,
//! revert marker and boot state, unhealthy counts included) and every set of at most two such
//! persistent faults, the boots that follow — GRUB decides (and waits when it says so), the
//! initramfs plans, executes until a step fails, then does what the core says
//! ([`after_step_failure`], [`after_failure`]); a healthy image runs `hnroot mark-good` — reach
//! a healthy boot or a stop with a message within a bounded number of failed boots, or else
//! settle into a cycle of failed boots in which **every** boot waits first (rule 7 of the
//! decision: the machine stops spinning) and no image at `hn-root.img` or `hn-root-old.img` is
//! a healthy one (no unbounded sequence of failed boots while a committed image that works is
//! there). The one exception is a boot-state block that cannot be written (no file, a damaged
//! or read-only ESP): nothing can be counted, which GRUB says at every boot.
//!
//! The number of runs and the most failed boots any run needs are pinned.

mod support;

use std::collections::HashMap;

use hnroot_core::bootstate::{BootState, StateSeen, Trial, Tries, Unhealthy, DEFAULT_BOOT_LIMIT};
use hnroot_core::commands;
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
    /// The image boots but never reaches healthy (`boot-complete.target`): it is rebooted (by
    /// `hnroot health-failed` on a trial, the watchdog, a person) without `mark-good`.
    Unhealthy(Img),
    /// The image's kernel panics before the initramfs runs.
    Panic(Img),
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
        out.push(Fault::Unhealthy(img));
        out.push(Fault::Panic(img));
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

    /// Whether `img` can never run healthy.
    fn failing(&self, img: Img) -> bool {
        [
            Fault::Mount(img),
            Fault::Init(img),
            Fault::Unhealthy(img),
            Fault::Panic(img),
        ]
        .into_iter()
        .any(|f| self.has(f))
    }
}

type World = (Dir, StateSeen);

/// How one boot ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum End {
    /// The image runs healthy (and ran `hnroot mark-good`).
    Healthy(Img),
    /// The boot failed: the initramfs recorded a failure and rebooted, the kernel panicked, or
    /// the image ran but never became healthy.
    Failed,
    /// Stopped with a message: nothing else would boot.
    Stop,
}

/// Counts above this are folded back by two: with the waits at their cap, a count and the
/// count two lower (same parity) decide alike, so the model stays finite.
const FOLD_ABOVE: u8 = 2 * DEFAULT_BOOT_LIMIT + 8;

fn fold(n: Unhealthy) -> Unhealthy {
    if n.boots() > FOLD_ABOVE {
        Unhealthy::new(n.boots() - 2)
    } else {
        n
    }
}

fn folded(s: BootState) -> BootState {
    match s {
        BootState::Committed { good, unhealthy } => BootState::Committed {
            good,
            unhealthy: fold(unhealthy),
        },
        BootState::Trial(t) => BootState::Trial(Trial {
            tries: t.tries.with_others(fold(t.tries.others())),
            ..t
        }),
    }
}

fn write(state: &mut StateSeen, faults: &Faults, s: BootState) {
    if faults.has(Fault::BootStateWrite) {
        return;
    }
    let prev = *state;
    *state = support::codec_write(prev, folded(s), || match prev {
        StateSeen::Valid(prev) => hnroot_core::bootstate::new_block(&prev),
        _ => [0; hnroot_core::bootstate::BLOCK_LEN],
    });
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
            End::Failed
        }
        AfterFailure::Stop => End::Stop,
    }
}

/// Mount `image` (holding `uuid`) and start its init; a healthy system then runs `hnroot
/// mark-good` (`hnroot-mark-good.service`), its plan carried out with the same faults.
fn start(dir: &mut Dir, state: &mut StateSeen, image: ImageName, faults: &Faults) -> End {
    let img = dir.get(image).expect("mounting an image that is there");
    let uuid = img.uuid().expect("a bootable image");
    if faults.has(Fault::Mount(img)) || faults.has(Fault::Init(img)) {
        return image_failed(dir, state, uuid, faults);
    }
    if faults.has(Fault::Unhealthy(img)) {
        return End::Failed;
    }
    let booted = Booted { name: image, uuid };
    if let Ok(p) = commands::mark_good(&dir.observe(*state), Some(booted)) {
        for step in &p.steps {
            match *step {
                ChangeStep::WriteBootState(s) => write(state, faults, s),
                _ => panic!("{step} in mark-good"),
            }
        }
    }
    End::Healthy(img)
}

/// One whole boot from `world`: how it ended and how long GRUB waited first.
fn boot(world: World, faults: &Faults) -> (World, End, u32) {
    let (mut dir, mut state) = world;
    let d = decide(&dir.observe(state), &cfg());
    let Decision::Boot(b) = d else {
        return ((dir, state), End::Stop, 0);
    };
    let wait = b.wait;
    if let Some(w) = b.write {
        write(&mut state, faults, w);
    }
    if dir
        .get(b.image)
        .is_some_and(|i| faults.has(Fault::Panic(i)))
    {
        return ((dir, state), End::Failed, wait);
    }
    let booted = Booted {
        name: b.image,
        uuid: b.uuid,
    };
    let p = match plan(&dir.observe(state), Some(booted)) {
        Ok(p) => p,
        Err(_) => {
            let end = image_failed(&dir, &mut state, b.uuid, faults);
            return ((dir, state), end, wait);
        }
    };
    for step in &p.steps {
        if faults.fails(step, &dir) {
            let end = match after_step_failure(&dir.observe(state), b.uuid, step, &cfg()) {
                AfterStepFailure::Continue => continue,
                AfterStepFailure::MountAsIs { image, uuid } => {
                    assert_eq!(dir.get(image).and_then(Img::uuid), Some(uuid));
                    start(&mut dir, &mut state, image, faults)
                }
                AfterStepFailure::ImageFailed(_) => image_failed(&dir, &mut state, b.uuid, faults),
            };
            return ((dir, state), end, wait);
        }
        match *step {
            ChangeStep::WriteBootState(s) => write(&mut state, faults, s),
            ChangeStep::Mount { image, uuid } => {
                assert_eq!(dir.get(image).and_then(Img::uuid), Some(uuid));
                let end = start(&mut dir, &mut state, image, faults);
                return ((dir, state), end, wait);
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
    /// After this many failed boots, a healthy one.
    Healthy(usize),
    /// After this many failed boots, the machine stops with a message.
    Stopped(usize),
    /// After this many failed boots, a cycle of failed boots that each wait first (or, with the
    /// boot-state block unwritable, uncounted).
    Waiting(usize),
}

impl Outcome {
    fn failed_before(self) -> usize {
        match self {
            Outcome::Healthy(n) | Outcome::Stopped(n) | Outcome::Waiting(n) => n,
        }
    }

    fn one_more(self) -> Outcome {
        match self {
            Outcome::Healthy(n) => Outcome::Healthy(n + 1),
            Outcome::Stopped(n) => Outcome::Stopped(n + 1),
            Outcome::Waiting(n) => Outcome::Waiting(n + 1),
        }
    }
}

/// Most failed boots a sequence may take before a healthy boot, a stop, or its waiting cycle.
const MAX_BOOTS: usize = 40;

/// Whether a world of a waiting cycle holds a committed image that would run healthy: the
/// image the boot state records as good, at `hn-root.img` or `hn-root-old.img`, or the image
/// at `hn-root-old.img` (the one committed before) unless it is the image of a recorded trial
/// (an update never marked good is no committed image).
fn healthy_candidate(world: &World, faults: &Faults) -> Option<Img> {
    let (dir, state) = world;
    let (good, on_trial) = match state {
        StateSeen::Valid(s) => (s.good(), s.trial().map(|t| t.image)),
        _ => (None, None),
    };
    let current = dir.get(ImageName::Current).filter(|i| {
        i.uuid()
            .is_some_and(|u| Some(u) == good && Some(u) != on_trial)
    });
    let old = dir
        .get(ImageName::Old)
        .filter(|i| i.uuid().is_some() && i.uuid() != on_trial);
    [current, old]
        .into_iter()
        .flatten()
        .find(|&i| !faults.failing(i))
}

fn run(start: World, faults: &Faults, memo: &mut HashMap<World, Outcome>) -> Outcome {
    let mut path: Vec<(World, u32)> = Vec::new();
    let mut world = start;
    let mut cycle_at = None;
    let outcome = loop {
        if let Some(&known) = memo.get(&world) {
            break known;
        }
        if let Some(at) = path.iter().position(|(w, _)| *w == world) {
            let cycle = &path[at..];
            let uncounted = faults.has(Fault::BootStateWrite)
                || cycle.iter().any(|((_, s), _)| *s == StateSeen::Absent);
            assert!(
                uncounted || cycle.iter().all(|(_, wait)| *wait > 0),
                "faults {:?}: a cycle of {} failed boots without waits through {:?}, from {:?}",
                faults.0,
                cycle.len(),
                cycle,
                start
            );
            if let Some((w, img)) = cycle
                .iter()
                .filter(|_| !uncounted)
                .find_map(|(w, _)| healthy_candidate(w, faults).map(|i| (w, i)))
            {
                panic!(
                    "faults {:?}: failed boots for ever although {img:?} at hn-root.img or \
                     hn-root-old.img would run healthy, in {w:?}, from {start:?}",
                    faults.0
                );
            }
            cycle_at = Some(at);
            break Outcome::Waiting(0);
        }
        assert!(
            path.len() <= MAX_BOOTS,
            "faults {:?}: no healthy boot, stop or waiting cycle after {MAX_BOOTS} boots from \
             {start:?}: {path:?}",
            faults.0
        );
        let (next, end, wait) = boot(world, faults);
        match end {
            End::Stop => break Outcome::Stopped(0),
            End::Healthy(_) => break Outcome::Healthy(0),
            End::Failed => {
                path.push((world, wait));
                world = next;
            }
        }
    };
    // Every world on the path reaches the same end, one failed boot further each step back
    // (inside a waiting cycle, the count is the boots before the cycle from the start).
    if let Some(at) = cycle_at {
        for (w, _) in &path[at..] {
            memo.insert(*w, Outcome::Waiting(0));
        }
        path.truncate(at);
    }
    let mut o = outcome;
    for (w, _) in path.iter().rev() {
        o = o.one_more();
        memo.insert(*w, o);
    }
    match path.first() {
        Some(_) => o,
        None => memo.get(&start).copied().unwrap_or(o),
    }
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
    let k = cfg().boot_limit;
    for g in images {
        for n in [0, k] {
            states.push(StateSeen::Valid(BootState::Committed {
                good: g.uuid().unwrap(),
                unhealthy: Unhealthy::new(n),
            }));
        }
    }
    for t in images {
        for left in 0..=cfg().tries {
            for good in [None, Some(Img::A), Some(Img::B)] {
                // Other boots matter once the trial ran out (rollback boots).
                let others: &[u8] = if left == 0 { &[0, k] } else { &[0] };
                for &others in others {
                    states.push(StateSeen::Valid(BootState::Trial(Trial {
                        image: t.uuid().unwrap(),
                        tries: Tries::new(left, cfg().tries)
                            .unwrap()
                            .with_others(Unhealthy::new(others)),
                        good: good.and_then(Img::uuid),
                    })));
                }
            }
        }
    }
    dirs.iter()
        .flat_map(|d| states.iter().map(move |s| (*d, *s)))
        .collect()
}

#[test]
fn every_state_and_failing_step_ends_healthy_or_stopped_or_waiting() {
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
    let (mut stops, mut waiting) = (0u64, 0u64);
    for set in &sets {
        let faults = Faults(set.clone());
        let mut memo = HashMap::new();
        for &w in &worlds {
            runs += 1;
            let outcome = run(w, &faults, &mut memo);
            longest = longest.max(outcome.failed_before());
            match outcome {
                Outcome::Healthy(_) => {}
                Outcome::Stopped(_) => stops += 1,
                Outcome::Waiting(_) => waiting += 1,
            }
        }
        // Without faults, a stop happens only where nothing on hostpart can boot, and every
        // boot that can be counted reaches a healthy one.
        if set.is_empty() {
            for &w in &worlds {
                let (dir, state) = w;
                match memo.get(&w) {
                    Some(Outcome::Stopped(_)) => assert!(
                        dir.images().all(|i| i.uuid().is_none()),
                        "stopped without faults although an image is readable: {w:?}"
                    ),
                    Some(Outcome::Waiting(_)) => {
                        assert_eq!(state, StateSeen::Absent, "waiting without faults: {w:?}")
                    }
                    _ => {}
                }
            }
        }
    }
    println!(
        "liveness: {} fault sets x {} states = {runs} runs, {stops} ending in a stop, {waiting} \
         in a cycle of failed boots that each wait (or cannot be counted); at most {longest} \
         failed boots before a healthy boot, a stop or that cycle",
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

const EXPECTED_RUNS: u64 = 18_726_912;
const EXPECTED_LONGEST: usize = 21;
