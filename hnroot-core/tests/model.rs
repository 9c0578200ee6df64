//! Exhaustive model checks of the switch protocol (house style point 10).
//!
//! `every_combination_every_crash_point`: every combination of image files (five names × four
//! filesystems, a garbage file or nothing) × revert marker × boot state, GRUB decides, the
//! initramfs plans on the same directory, and the plan is cut after every prefix; for each cut,
//! every split of the executed renames into "reached the disk where GRUB reads it" and "only in
//! the journal" is booted again (GRUB on the former, the initramfs on the latter) and run to the
//! end. Invariants are checked at every step.
//!
//! `reachable_lifecycles`: a breadth-first search over whole machine lifecycles from a fresh
//! install — boots (with a crash before any plan step, any journal prefix persisted and any part
//! of that written home), images that panic before the initramfs, operator actions (the plans
//! of `hnroot stage`, `revert` and `mark-good`, with a crash before any of their steps too;
//! files dropped on hostpart by hand) and a corrupted boot-state block — with the ground truth
//! of which images were ever marked good. It checks that no step destroys the last committed image, that the
//! mounted image is the booted one, and that no cycle of boots without mark-good keeps booting
//! uncommitted images while a committed one could boot.
//!
//! Both print and pin the number of states explored, so a shrinking model is noticed.

mod support;

use std::collections::{BTreeSet, HashMap, VecDeque};

use hnroot_core::bootstate::{BootState, StateSeen, Trial, Tries, Unhealthy, DEFAULT_BOOT_LIMIT};
use hnroot_core::commands::{self, StageRequest};
use hnroot_core::decide::{decide, Config, Decision, Reason};
use hnroot_core::name::ImageName;
use hnroot_core::plan::{
    after_failure, plan, seen_after, AfterFailure, Booted, ChangeStep, PlanError, MAX_STEPS,
};
use support::{op_of, Dir, Img, Op};

fn cfg() -> Config {
    Config::default()
}

/// Every boot state worth distinguishing for images A-D: absent, corrupt, committed to each,
/// and every trial (image, tries left, good image or unknown).
fn all_states(images: &[Img]) -> Vec<StateSeen> {
    let mut out = vec![StateSeen::Absent, StateSeen::Corrupt];
    let k = cfg().boot_limit;
    for &g in images {
        for n in [0, k] {
            out.push(StateSeen::Valid(BootState::Committed {
                good: g.uuid().unwrap(),
                unhealthy: Unhealthy::new(n),
            }));
        }
    }
    let goods: Vec<Option<Img>> = std::iter::once(None)
        .chain(images.iter().copied().map(Some))
        .collect();
    for &t in images {
        for left in 0..=cfg().tries {
            for &g in &goods {
                // Other boots matter once the trial ran out (rollback boots).
                let others: &[u8] = if left == 0 { &[0, k] } else { &[0] };
                for &others in others {
                    out.push(StateSeen::Valid(BootState::Trial(Trial {
                        image: t.uuid().unwrap(),
                        tries: Tries::new(left, cfg().tries)
                            .unwrap()
                            .with_others(Unhealthy::new(others)),
                        good: g.and_then(Img::uuid),
                    })));
                }
            }
        }
    }
    out
}

/// Counts above this are folded back by two: with the waits at their cap, a count and the
/// count two lower (same parity) decide alike, so the reachable machines stay finite.
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

/// Every directory: each name empty, one of `images`, or garbage.
fn all_dirs(images: &[Img]) -> Vec<Dir> {
    let choices: Vec<Option<Img>> = std::iter::once(None)
        .chain(images.iter().copied().map(Some))
        .chain(std::iter::once(Some(Img::Garbage)))
        .collect();
    let mut out = vec![Dir::default()];
    for name in ImageName::ALL {
        out = out
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
    let with_marker: Vec<Dir> = out.iter().map(|d| Dir { marker: true, ..*d }).collect();
    out.extend(with_marker);
    out
}

fn write_state(state: &mut StateSeen, s: BootState) {
    let s = folded(s);
    // Through the real codec, from a block holding the previous record.
    let prev = *state;
    *state = support::codec_write(prev, s, || match prev {
        StateSeen::Valid(prev) => hnroot_core::bootstate::new_block(&prev),
        StateSeen::Absent => [0; hnroot_core::bootstate::BLOCK_LEN],
        StateSeen::Corrupt => {
            let mut b = hnroot_core::bootstate::new_block(&s);
            b[200] ^= 1;
            b
        }
    });
    assert_eq!(*state, StateSeen::Valid(s));
}

/// Local invariants of one decision on the directory GRUB saw.
fn check_decision(view: &Dir, d: &Decision, ctx: &dyn Fn() -> String) {
    let readable: Vec<ImageName> = ImageName::ALL
        .into_iter()
        .filter(|&n| view.get(n).is_some_and(|i| i.uuid().is_some()))
        .collect();
    match d {
        Decision::NothingBootable { .. } => {
            assert!(
                readable.is_empty(),
                "nothing bootable although {readable:?} readable: {}",
                ctx()
            )
        }
        Decision::Boot(b) => {
            assert_eq!(
                view.get(b.image).and_then(Img::uuid),
                Some(b.uuid),
                "boots what it saw: {}",
                ctx()
            );
            if b.image == ImageName::Broken {
                assert!(
                    readable.iter().all(|&n| n == ImageName::Broken),
                    "booted hn-root-broken.img although {readable:?} readable: {}",
                    ctx()
                );
            }
            if view.marker && b.image == ImageName::New {
                let others = [ImageName::Current, ImageName::Old, ImageName::Cancelled];
                assert!(
                    others.iter().all(|n| !readable.contains(n)),
                    "revert marker present but booted the staged image: {}",
                    ctx()
                );
            }
            assert!(b.fallbacks.iter().all(|(n, _)| *n != b.image), "{}", ctx());
        }
    }
}

/// Run a plan's steps from `from` on; return the final directory and state, checking each step.
/// `protect` is the UUID whose last copy must never be destroyed.
fn run_steps(
    dir: &mut Dir,
    state: &mut StateSeen,
    steps: &[ChangeStep],
    booted: Booted,
    ctx: &dyn Fn() -> String,
) -> Vec<Img> {
    let mut destroyed = Vec::new();
    let before = dir.observe(*state);
    for (i, step) in steps.iter().enumerate() {
        match *step {
            ChangeStep::Rename { from, to, replace } => {
                assert!(
                    dir.get(from).is_some(),
                    "rename from missing {from}: {}",
                    ctx()
                );
                if !replace {
                    assert!(
                        dir.get(to).is_none(),
                        "no-replace rename onto existing {to}: {}",
                        ctx()
                    );
                }
                if let Some(gone) = dir.apply(Op::Rename { from, to }).unwrap() {
                    destroyed.push(gone);
                }
            }
            ChangeStep::RemoveRevertMarker => {
                dir.apply(Op::RemoveMarker).unwrap();
            }
            ChangeStep::SyncDir | ChangeStep::Checkpoint => {}
            ChangeStep::WriteBootState(s) => write_state(state, s),
            ChangeStep::Mount { image, uuid } => {
                assert_eq!(uuid, booted.uuid, "mounts the UUID GRUB booted: {}", ctx());
                assert_eq!(
                    dir.get(image).and_then(Img::uuid),
                    Some(uuid),
                    "mount target holds it: {}",
                    ctx()
                );
            }
            ChangeStep::CreateRevertMarker
            | ChangeStep::CopyToPartial
            | ChangeStep::VerifyPartial { .. }
            | ChangeStep::PublishPartial { .. } => panic!("{step} in a boot plan: {}", ctx()),
        }
        // The executor's caller knows what hostpart and the boot state hold now without
        // looking again: the core's prediction is exactly what a look would see.
        assert_eq!(
            seen_after(&before, &steps[..=i]),
            dir.observe(*state),
            "after step {i} ({step}): {}",
            ctx()
        );
    }
    destroyed
}

#[test]
fn every_combination_every_crash_point() {
    let images = [Img::A, Img::B, Img::C];
    let dirs = all_dirs(&images);
    let states = all_states(&images);
    let mut explored: u64 = 0;
    let mut reboots: u64 = 0;
    let mut missing_after_crash: u64 = 0;
    let mut fixed_points: u64 = 0;
    for dir in &dirs {
        for &state in &states {
            explored += 1;
            let ctx = || format!("dir {dir:?} state {state:?}");
            let d = decide(&dir.observe(state), &cfg());
            check_decision(dir, &d, &ctx);
            let Some(b) = d.boot() else { continue };
            let mut st = state;
            if let Some(w) = b.write {
                write_state(&mut st, w);
            }
            let booted = Booted {
                name: b.image,
                uuid: b.uuid,
            };
            let p =
                plan(&dir.observe(st), Some(booted)).unwrap_or_else(|e| panic!("{e}: {}", ctx()));
            assert!(p.steps.len() <= MAX_STEPS);
            assert!(
                matches!(p.steps.last(), Some(ChangeStep::Mount { .. })),
                "{}",
                ctx()
            );

            // The image recorded as good, where the protocol keeps it (hn-root.img or
            // hn-root-old.img), or when none is recorded a bootable old image, must survive the
            // whole plan and every crash in it. (hn-root-broken.img and hn-root-cancelled.img
            // are holding names: the protocol never moves the good image there.)
            let kept = |i: Img| {
                [ImageName::Current, ImageName::Old]
                    .iter()
                    .any(|&n| dir.get(n) == Some(i))
            };
            let protect = match state.valid_good() {
                Some(good) => Some(Img::from_uuid(good)).filter(|&g| kept(g)),
                None => dir.get(ImageName::Old).filter(|i| i.uuid().is_some()),
            };
            let mut full = *dir;
            let mut full_state = st;
            run_steps(&mut full, &mut full_state, &p.steps, booted, &ctx);
            if let Some(keep) = protect.filter(|&k| dir.holds(k)) {
                assert!(
                    full.holds(keep),
                    "plan destroyed {keep:?}, the image known good: {}",
                    ctx()
                );
            }
            // Completed plans settle: within two more boots nothing is renamed any more (the
            // second one covers a revert refused only after a recovery boot), unless a boot is
            // a rollback (a trial just ran out). Directories holding two copies of one
            // filesystem are exempt: the staged copy was refused as ambiguous, and once the
            // other copy has moved away it becomes a legitimate update.
            let mut uuids: Vec<Img> = dir.images().filter(|i| i.uuid().is_some()).collect();
            let count = uuids.len();
            uuids.sort();
            uuids.dedup();
            let duplicates = uuids.len() != count;
            if !duplicates {
                let (mut d3, mut st3) = (full, full_state);
                let mut history = vec![p.steps.clone()];
                let mut settled = false;
                for _ in 0..2 {
                    let again = decide(&d3.observe(st3), &cfg());
                    let Some(b3) = again.boot() else { break };
                    if matches!(b3.reason, Reason::AutomaticRollback { .. }) {
                        settled = true;
                        break;
                    }
                    if let Some(w) = b3.write {
                        write_state(&mut st3, w);
                    }
                    let booted3 = Booted {
                        name: b3.image,
                        uuid: b3.uuid,
                    };
                    let p3 = plan(&d3.observe(st3), Some(booted3)).unwrap();
                    if p3.steps.iter().all(|s| op_of(s).is_none()) {
                        settled = true;
                        break;
                    }
                    run_steps(&mut d3, &mut st3, &p3.steps, booted3, &ctx);
                    history.push(p3.steps.clone());
                }
                assert!(
                    settled,
                    "does not settle within two more boots: {history:?}: {}",
                    ctx()
                );
                fixed_points += 1;
            }

            // Crash after every prefix; the executed hostpart operations reached GRUB's view up
            // to `home`, the journal up to `journal`.
            for cut in 0..=p.steps.len() {
                let executed: Vec<Op> = p.steps[..cut].iter().filter_map(op_of).collect();
                let mut cut_state = st;
                for step in &p.steps[..cut] {
                    if let ChangeStep::WriteBootState(s) = step {
                        write_state(&mut cut_state, *s);
                    }
                }
                for journal in 0..=executed.len() {
                    for home in 0..=journal {
                        explored += 1;
                        let mut grub_view = *dir;
                        for op in &executed[..home] {
                            grub_view.apply(*op).unwrap();
                        }
                        let mut replayed = *dir;
                        for op in &executed[..journal] {
                            replayed.apply(*op).unwrap();
                        }
                        let ctx2 = || format!("{} cut {cut} journal {journal} home {home}", ctx());
                        let d2 = decide(&grub_view.observe(cut_state), &cfg());
                        check_decision(&grub_view, &d2, &ctx2);
                        let Some(b2) = d2.boot() else {
                            panic!("nothing bootable after a crash: {}", ctx2())
                        };
                        let mut st2 = cut_state;
                        if let Some(w) = b2.write {
                            write_state(&mut st2, w);
                        }
                        let booted2 = Booted {
                            name: b2.image,
                            uuid: b2.uuid,
                        };
                        match plan(&replayed.observe(st2), Some(booted2)) {
                            Ok(p2) => {
                                let mut end = replayed;
                                run_steps(&mut end, &mut st2, &p2.steps, booted2, &ctx2);
                                if let Some(keep) = protect.filter(|&k| dir.holds(k)) {
                                    assert!(
                                        end.holds(keep),
                                        "lost {keep:?} after a crash: {}",
                                        ctx2()
                                    );
                                }
                            }
                            Err(PlanError::BootedImageMissing { .. }) => {
                                // GRUB booted an image the journal replay shows replaced: the
                                // initramfs must not mount anything else and must find a way out.
                                missing_after_crash += 1;
                                match after_failure(&replayed.observe(st2), booted2.uuid, &cfg()) {
                                    AfterFailure::Reboot { next_uuid, .. } => {
                                        reboots += 1;
                                        assert_ne!(next_uuid, booted2.uuid, "{}", ctx2());
                                    }
                                    AfterFailure::Stop => panic!("stuck after a crash: {}", ctx2()),
                                }
                            }
                            Err(e) => panic!("{e}: {}", ctx2()),
                        }
                    }
                }
            }
        }
    }
    println!(
        "every_combination_every_crash_point: {} directories x {} boot states, {explored} states explored, \
         {fixed_points} completed plans checked to settle, {missing_after_crash} crash splits \
         where GRUB booted an image the replay replaced ({reboots} rebooted into another image)",
        dirs.len(),
        states.len()
    );
    assert_eq!(
        explored, EXPECTED_COMBINATION_STATES,
        "the model changed size: update the pin if intended"
    );
}

const EXPECTED_COMBINATION_STATES: u64 = 12_506_966;

trait ValidGood {
    fn valid_good(&self) -> Option<hnroot_core::uuid::FsUuid>;
}

impl ValidGood for StateSeen {
    fn valid_good(&self) -> Option<hnroot_core::uuid::FsUuid> {
        match self {
            StateSeen::Valid(s) => s.good(),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reachable lifecycles with ground truth.

/// One machine: hostpart as GRUB reads it (`home`), operations committed to the journal but not
/// yet written home, the boot-state block, the images ever marked good, and what is running.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct World {
    home: Dir,
    journal: Vec<Op>,
    state: StateSeen,
    committed: BTreeSet<Img>,
    running: Option<Img>,
}

impl World {
    fn live(&self) -> Dir {
        let mut d = self.home;
        for op in &self.journal {
            d.apply(*op).unwrap();
        }
        d
    }

    fn committed_on(&self, dir: &Dir) -> bool {
        self.committed.iter().any(|&c| dir.holds(c))
    }
}

/// Image C's kernel panics before the initramfs; the others boot.
fn panics(img: Img) -> bool {
    img == Img::C
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Event {
    /// A boot in which the booted image is not committed and nothing marks it good.
    UncommittedBoot,
    Other,
}

struct Graph {
    ids: HashMap<World, usize>,
    worlds: Vec<World>,
    edges: Vec<Vec<(usize, Event)>>,
    queue: VecDeque<usize>,
}

impl Graph {
    fn add(&mut self, from: Option<usize>, w: World, event: Event) {
        let id = match self.ids.get(&w) {
            Some(&id) => id,
            None => {
                let id = self.worlds.len();
                self.ids.insert(w.clone(), id);
                self.worlds.push(w);
                self.edges.push(Vec::new());
                self.queue.push_back(id);
                id
            }
        };
        if let Some(from) = from {
            self.edges[from].push((id, event));
        }
    }
}

/// Apply `ops` to `dir`, checking the ground-truth invariant on each.
fn apply_checked(dir: &mut Dir, ops: &[Op], committed: &BTreeSet<Img>, ctx: &dyn Fn() -> String) {
    for op in ops {
        let had = committed.iter().any(|&c| dir.holds(c));
        let destroyed = dir.apply(*op).unwrap();
        if let Some(gone) = destroyed {
            let still = committed.iter().any(|&c| dir.holds(c));
            assert!(
                !had || still,
                "{op:?} destroyed {gone:?}, the last committed image: {}",
                ctx()
            );
        }
    }
}

/// Every way a crash can leave hostpart after `pending` operations were issued past `world`:
/// a prefix reached the journal, a prefix of the journal reached home.
fn crash_outcomes(world: &World, pending: &[Op]) -> Vec<(Dir, Vec<Op>)> {
    let mut all = world.journal.clone();
    let base = all.len();
    all.extend_from_slice(pending);
    let mut out = Vec::new();
    for journal in base..=all.len() {
        for home in 0..=journal {
            let mut h = world.home;
            for op in &all[..home] {
                h.apply(*op).unwrap();
            }
            out.push((h, all[home..journal].to_vec()));
        }
    }
    out
}

/// Run `steps` from `start` (hostpart as GRUB reads it, the journal, the boot state), adding
/// to the graph, before every step, each way a crash there can leave the machine (rebooted,
/// nothing running); returns the machine after the last step. Filling `hnroot stage`'s partial
/// file is data made durable by its own fsync, and no decision looks at it, so it reaches every
/// view at once; everything else that changes the top directory goes through the journal.
#[allow(clippy::too_many_arguments)]
fn run_with_crashes(
    g: &mut Graph,
    id: usize,
    start: World,
    steps: &[ChangeStep],
    event: Event,
    source: Option<Img>,
    ctx: &dyn Fn() -> String,
    mut on_mount: impl FnMut(ImageName, hnroot_core::uuid::FsUuid, &Dir),
) -> World {
    let mut dir = start.live();
    let mut st = start.state;
    let mut pending: Vec<Op> = Vec::new();
    let mut synced = start.clone();
    for step in steps {
        for (home, journal) in crash_outcomes(&synced, &pending) {
            g.add(
                Some(id),
                World {
                    home,
                    journal,
                    state: st,
                    running: None,
                    ..synced.clone()
                },
                event,
            );
        }
        match *step {
            ChangeStep::Rename { .. }
            | ChangeStep::RemoveRevertMarker
            | ChangeStep::CreateRevertMarker
            | ChangeStep::PublishPartial { .. } => {
                let op = op_of(step).unwrap();
                match *step {
                    ChangeStep::Rename {
                        to, replace: false, ..
                    } => assert!(
                        dir.get(to).is_none(),
                        "no-replace onto existing {to}: {}",
                        ctx()
                    ),
                    ChangeStep::PublishPartial { to, replace: false } => assert!(
                        dir.get(to).is_none(),
                        "publish without replace onto an existing {to}: {}",
                        ctx()
                    ),
                    _ => {}
                }
                apply_checked(&mut dir, &[op], &start.committed, ctx);
                pending.push(op);
            }
            ChangeStep::CopyToPartial => {
                let img = source.expect("a stage has a source");
                let fill = Op::FillPartial(img);
                dir.apply(fill).unwrap();
                synced.home.apply(fill).unwrap();
            }
            ChangeStep::VerifyPartial { uuid } => {
                assert_eq!(dir.partial.and_then(Img::uuid), Some(uuid), "{}", ctx());
            }
            ChangeStep::SyncDir => {
                // Everything issued is now in the journal.
                let mut journal = synced.journal.clone();
                journal.append(&mut pending);
                synced = World { journal, ..synced };
            }
            ChangeStep::Checkpoint => {
                assert!(pending.is_empty(), "checkpoint before sync: {}", ctx());
                synced = World {
                    home: dir,
                    journal: vec![],
                    ..synced
                };
            }
            ChangeStep::WriteBootState(s) => write_state(&mut st, s),
            ChangeStep::Mount { image, uuid } => on_mount(image, uuid, &dir),
        }
    }
    assert!(
        pending.is_empty(),
        "plan left unsynced operations: {}",
        ctx()
    );
    World {
        state: st,
        ..synced
    }
}

fn boot_successors(g: &mut Graph, id: usize) {
    let w = g.worlds[id].clone();
    let ctx = || format!("world {w:?}");
    // GRUB reads home.
    let d = decide(&w.home.observe(w.state), &cfg());
    check_decision(&w.home, &d, &ctx);
    let Some(b) = d.boot() else {
        assert!(
            !w.committed_on(&w.home),
            "nothing bootable although a committed image is there: {}",
            ctx()
        );
        return;
    };
    let img = Img::from_uuid(b.uuid);
    let event = if w.committed.contains(&img) {
        Event::Other
    } else {
        Event::UncommittedBoot
    };
    let mut state = w.state;
    if let Some(s) = b.write {
        write_state(&mut state, s);
    }
    if panics(img) {
        g.add(
            Some(id),
            World {
                state,
                running: None,
                ..w.clone()
            },
            event,
        );
        return;
    }
    // The kernel mounts hostpart: the journal is replayed and written home.
    let live = w.live();
    let booted = Booted {
        name: b.image,
        uuid: b.uuid,
    };
    let p = match plan(&live.observe(state), Some(booted)) {
        Ok(p) => p,
        Err(e) => {
            match after_failure(&live.observe(state), b.uuid, &cfg()) {
                AfterFailure::Reboot {
                    write, next_uuid, ..
                } => {
                    assert_ne!(next_uuid, b.uuid);
                    let mut st = state;
                    write_state(&mut st, write);
                    let next = World {
                        home: live,
                        journal: vec![],
                        state: st,
                        running: None,
                        ..w.clone()
                    };
                    g.add(Some(id), next, event);
                }
                AfterFailure::Stop => panic!("initramfs stuck ({e}): {}", ctx()),
            }
            return;
        }
    };
    let base = World {
        home: live,
        journal: vec![],
        state,
        running: None,
        ..w.clone()
    };
    let mut mounted = None;
    let after = run_with_crashes(
        g,
        id,
        base,
        &p.steps,
        event,
        None,
        &ctx,
        |image, uuid, dir| {
            assert_eq!(uuid, b.uuid, "{}", ctx());
            assert_eq!(
                dir.get(image),
                Some(img),
                "mounted image differs from the booted one: {}",
                ctx()
            );
            mounted = Some(image);
        },
    );
    assert!(mounted.is_some(), "the plan mounted nothing: {}", ctx());
    let up = World {
        committed: w.committed.clone(),
        running: Some(img),
        ..after
    };
    if !w.committed.contains(&img) {
        // Booted fine but nobody marks it good: this is still a boot without progress.
        g.add(
            Some(id),
            World {
                running: None,
                ..up.clone()
            },
            event,
        );
    }
    g.add(Some(id), up, Event::Other);
}

fn operator_successors(g: &mut Graph, id: usize) {
    let w = g.worlds[id].clone();
    let Some(running) = w.running else { return };
    let ctx = || format!("world {w:?}");
    let live = w.live();
    let obs = live.observe(w.state);
    // mark-good
    let booted = Booted {
        name: ImageName::Current,
        uuid: running.uuid().unwrap(),
    };
    if let Ok(p) = commands::mark_good(&obs, Some(booted)) {
        let after = run_with_crashes(
            g,
            id,
            w.clone(),
            &p.steps,
            Event::Other,
            None,
            &ctx,
            |_, _, _| panic!("mark-good mounts nothing"),
        );
        let mut committed = w.committed.clone();
        committed.insert(running);
        g.add(Some(id), World { committed, ..after }, Event::Other);
    }
    // `hnroot stage` of an image that is nowhere on hostpart, forced past a running trial so
    // that superseding an untested image is covered too.
    for img in [Img::B, Img::C, Img::D] {
        if live.holds(img) {
            continue;
        }
        let request = StageRequest {
            uuid: img.uuid().unwrap(),
            needed: 0,
            free: 0,
            replace: false,
            force: true,
        };
        if let Ok(p) = commands::stage(&obs, &request) {
            let after = run_with_crashes(
                g,
                id,
                w.clone(),
                &p.steps,
                Event::Other,
                Some(img),
                &ctx,
                |_, _, _| panic!("stage mounts nothing"),
            );
            g.add(Some(id), after, Event::Other);
        }
    }
    // A garbage file copied to hn-root-new.img by hand (and checkpointed).
    if live.get(ImageName::New).is_none() {
        let mut home = live;
        home.set(ImageName::New, Some(Img::Garbage));
        g.add(
            Some(id),
            World {
                home,
                journal: vec![],
                ..w.clone()
            },
            Event::Other,
        );
    }
    // `hnroot revert`, and system-revert created by hand where hnroot revert refuses.
    if let Ok(p) = commands::revert(&obs, &cfg()) {
        let after = run_with_crashes(
            g,
            id,
            w.clone(),
            &p.steps,
            Event::Other,
            None,
            &ctx,
            |_, _, _| panic!("revert mounts nothing"),
        );
        g.add(Some(id), after, Event::Other);
    } else if !live.marker {
        let mut home = live;
        home.marker = true;
        g.add(
            Some(id),
            World {
                home,
                journal: vec![],
                ..w.clone()
            },
            Event::Other,
        );
    }
}

#[test]
fn reachable_lifecycles() {
    let a = Img::A.uuid().unwrap();
    let mut g = Graph {
        ids: HashMap::new(),
        worlds: vec![],
        edges: vec![],
        queue: VecDeque::new(),
    };
    for state in [StateSeen::Valid(BootState::committed(a)), StateSeen::Absent] {
        let home = Dir::default().with(ImageName::Current, Img::A);
        g.add(
            None,
            World {
                home,
                journal: vec![],
                state,
                committed: [Img::A].into(),
                running: None,
            },
            Event::Other,
        );
    }
    while let Some(id) = g.queue.pop_front() {
        boot_successors(&mut g, id);
        operator_successors(&mut g, id);
        // A corrupted boot-state block, at most once per history that has no corruption yet.
        let w = g.worlds[id].clone();
        if w.state != StateSeen::Corrupt && w.running.is_some() {
            g.add(
                Some(id),
                World {
                    state: StateSeen::Corrupt,
                    ..w
                },
                Event::Other,
            );
        }
        assert!(g.worlds.len() < 5_000_000, "state space exploded");
    }
    // Liveness: no cycle of uncommitted boots while a committed image is on hostpart.
    let n = g.worlds.len();
    let mut color = vec![0u8; n];
    let mut longest = 0usize;
    let mut depth = vec![0usize; n];
    for start in 0..n {
        if color[start] != 0 {
            continue;
        }
        let mut stack = vec![(start, 0usize)];
        color[start] = 1;
        while let Some(&mut (v, ref mut i)) = stack.last_mut() {
            let uncommitted: Vec<usize> = g.edges[v]
                .iter()
                .filter(|(_, e)| *e == Event::UncommittedBoot)
                .map(|(t, _)| *t)
                .collect();
            if *i < uncommitted.len() {
                let t = uncommitted[*i];
                *i += 1;
                match color[t] {
                    0 => {
                        color[t] = 1;
                        stack.push((t, 0));
                    }
                    1 => {
                        let w = &g.worlds[t];
                        panic!(
                            "cycle of boots without mark-good never booting a committed image, through {w:?}"
                        );
                    }
                    _ => {}
                }
            } else {
                color[v] = 2;
                depth[v] = uncommitted.iter().map(|&t| depth[t] + 1).max().unwrap_or(0);
                longest = longest.max(depth[v]);
                stack.pop();
            }
        }
    }
    let edges: usize = g.edges.iter().map(Vec::len).sum();
    println!(
        "reachable_lifecycles: {n} states, {edges} transitions; longest run of boots without a \
         committed image: {longest}"
    );
    // A staged image's trial is `tries` boots; one more boot of the image on trial before it
    // happens when a crash in `hnroot stage` leaves its publication in the journal, which GRUB
    // does not read (the kernel replays it during that boot, so the next GRUB sees it).
    assert!(
        longest <= usize::from(cfg().tries) + 1,
        "{longest} boots in a row without a committed image"
    );
    assert_eq!(
        n, EXPECTED_REACHABLE_STATES,
        "the model changed size: update the pin if intended"
    );
}

const EXPECTED_REACHABLE_STATES: usize = 375_107;

#[test]
fn the_all_states_helper_covers_each_kind() {
    let s = all_states(&[Img::A]);
    assert!(s.contains(&StateSeen::Absent) && s.contains(&StateSeen::Corrupt));
    assert_eq!(s.len(), 2 + 2 + (usize::from(cfg().tries) + 2) * 2);
    assert!(s
        .iter()
        .any(|x| matches!(x, StateSeen::Valid(BootState::Trial(t)) if t.good.is_none())));
}
