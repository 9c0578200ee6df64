//! Property test: random sequences of operator actions (stage, revert, mark-good, boots that
//! never get marked good, power loss in the middle of a boot) run against the real core on a
//! simulated machine, and compared after every step with a reference model written from the
//! rules in plain terms (roles, not files).

mod support;

use hnroot_core::bootstate::{BootState, DEFAULT_BOOT_LIMIT, DEFAULT_TRIES};
use hnroot_core::commands::mark_good;
use hnroot_core::decide::{decide, Config};
use hnroot_core::name::ImageName;
use hnroot_core::plan::{plan, Booted};
use proptest::prelude::*;
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};
use support::{booted, execute, Dir, Img, StateFile};

/// Image C's kernel panics before the initramfs; A, B and D boot.
fn panics(img: Img) -> bool {
    img == Img::C
}

/// The reference: who holds which role, which image is on trial, which is good.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Roles {
    current: Option<Img>,
    old: Option<Img>,
    staged: Option<Img>,
    broken: Option<Img>,
    cancelled: Option<Img>,
    revert_requested: bool,
    trial: Option<(Img, u8)>,
    good: Option<Img>,
    running: Option<Img>,
    /// Boots since the last healthy one (mark-good) while committed (rule 9).
    unhealthy: u8,
}

impl Roles {
    fn holds(&self, img: Img) -> bool {
        [
            self.current,
            self.old,
            self.staged,
            self.broken,
            self.cancelled,
        ]
        .contains(&Some(img))
    }

    fn dir(&self) -> Dir {
        let mut d = Dir {
            marker: self.revert_requested,
            ..Dir::default()
        };
        d.set(ImageName::Current, self.current);
        d.set(ImageName::Old, self.old);
        d.set(ImageName::New, self.staged);
        d.set(ImageName::Broken, self.broken);
        d.set(ImageName::Cancelled, self.cancelled);
        d
    }

    /// Make `img` current after a revert or rollback: the previous current is `previous_to`.
    fn go_back_to(&mut self, img: Img) {
        self.old = None;
        self.current = Some(img);
        self.good = Some(img);
        self.trial = None;
        self.running = Some(img);
        // Committed during this boot, which is not yet healthy.
        self.unhealthy = 1;
    }

    /// One boot, as the rules describe it.
    fn boot(mut self) -> Roles {
        self.running = None;
        let counted = self.unhealthy;
        let committed = self.trial.is_none();
        if committed {
            self.unhealthy = counted.saturating_add(1);
        }
        // After K boots without reaching healthy a stuck revert request gives way (rule 9).
        let k = DEFAULT_BOOT_LIMIT;
        let revert_gives_way = self.revert_requested
            && committed
            && counted >= k
            && self.current.is_some()
            && self.old.is_some();
        // Whether the committed hn-root.img's count sends this boot to the old image.
        let to_old = {
            let old = self.old.filter(|&o| Some(o) != self.current);
            let stall_from = if old.is_some() { 2 * k } else { k };
            committed
                && self.current.is_some()
                && self.current == self.good
                && counted >= k
                && old.is_some()
                && (counted < stall_from || (counted - stall_from) % 2 == 1)
        };
        // A revert request: the old image, if any, becomes current; a staged image is cancelled.
        // (When it gave way but the count boots the old image anyway, the initramfs sees the
        // request and reverts.)
        if self.revert_requested && (!revert_gives_way || to_old) {
            if let Some(old) = self.old {
                if let Some(staged) = self.staged.take() {
                    self.cancelled = Some(staged);
                }
                self.broken = self.current.take().or(self.broken);
                self.revert_requested = false;
                self.go_back_to(old);
                return self;
            }
        }
        // A request that gave way stays, with the staged image it holds back, for a later boot.
        let revert_refused = self.revert_requested && !revert_gives_way;
        let finish_refused_revert = |s: &mut Roles| {
            if revert_refused {
                s.revert_requested = false;
                if let Some(staged) = s.staged.take() {
                    s.cancelled = Some(staged);
                }
            }
        };
        // A staged image boots directly, as a trial, unless it has used all its tries.
        if let (false, Some(new)) = (self.revert_requested, self.staged) {
            let left = match self.trial {
                Some((t, k)) if t == new => k,
                _ => DEFAULT_TRIES,
            };
            if left > 0 {
                self.trial = Some((new, left - 1));
                if panics(new) {
                    return self;
                }
                let current = self.current.take();
                if current.is_some() && (current == self.good || self.old.is_none()) {
                    self.old = current;
                } else if current.is_some() {
                    self.cancelled = current;
                }
                self.current = Some(new);
                self.staged = None;
                self.running = Some(new);
                return self;
            }
            // The staged image failed every try: back to the good image, it becomes broken.
            if self.good == self.current {
                self.broken = self.staged.take();
                self.trial = None;
                self.running = self.current;
                // Recommitted during this boot, which is not yet healthy.
                self.unhealthy = 1;
                return self;
            }
            if let Some(old) = self.old.filter(|&o| Some(o) == self.good) {
                self.broken = self.staged.take();
                self.cancelled = self.current.take().or(self.cancelled);
                self.go_back_to(old);
                return self;
            }
        }
        // The current image on trial: one try per boot, then back to the old image.
        if let Some((t, k)) = self.trial {
            if Some(t) == self.current {
                if k > 0 {
                    self.trial = Some((t, k - 1));
                    if !panics(t) {
                        finish_refused_revert(&mut self);
                        self.running = Some(t);
                    }
                    return self;
                }
                if let Some(old) = self.old {
                    self.broken = self.current.take();
                    self.go_back_to(old);
                    return self;
                }
            }
        }
        // Otherwise the current image boots; the committed one only for K boots without
        // reaching healthy, then the old image K times (where it lies), then the two in turn.
        finish_refused_revert(&mut self);
        let boots = if to_old { self.old } else { self.current };
        if let Some(img) = boots.filter(|&c| !panics(c)) {
            self.running = Some(img);
        }
        self
    }
}

#[derive(Clone, Debug)]
enum Action {
    Stage(Img),
    Revert,
    MarkGood,
    /// A boot; nothing marks it good unless a MarkGood follows.
    Boot,
    /// Power lost in the middle of the initramfs's plan, after it began changing hostpart;
    /// the number picks the step.
    PowerLoss(usize),
}

struct Reference;

impl ReferenceStateMachine for Reference {
    type State = Roles;
    type Transition = Action;

    fn init_state() -> BoxedStrategy<Roles> {
        Just(Roles {
            current: Some(Img::A),
            good: Some(Img::A),
            ..Roles::default()
        })
        .boxed()
    }

    fn transitions(_: &Roles) -> BoxedStrategy<Action> {
        prop_oneof![
            2 => prop_oneof![Just(Img::B), Just(Img::C), Just(Img::D)].prop_map(Action::Stage),
            1 => Just(Action::Revert),
            3 => Just(Action::MarkGood),
            4 => Just(Action::Boot),
            2 => (0usize..10).prop_map(Action::PowerLoss),
        ]
        .boxed()
    }

    fn preconditions(state: &Roles, action: &Action) -> bool {
        match action {
            Action::Stage(img) => {
                state.running.is_some() && state.staged.is_none() && !state.holds(*img)
            }
            Action::Revert => state.running.is_some() && !state.revert_requested,
            Action::MarkGood => state.running.is_some() && state.running == state.current,
            Action::Boot | Action::PowerLoss(_) => true,
        }
    }

    fn apply(mut state: Roles, action: &Action) -> Roles {
        match action {
            Action::Stage(img) => state.staged = Some(*img),
            Action::Revert => state.revert_requested = true,
            Action::MarkGood => {
                state.good = state.current;
                state.trial = None;
                state.unhealthy = 0;
            }
            Action::Boot => state = state.boot(),
            Action::PowerLoss(_) => {
                state = state.boot();
                state.running = None;
            }
        }
        state
    }
}

/// The simulated machine running the real core.
struct Machine {
    dir: Dir,
    state: StateFile,
    running: Option<Img>,
    /// The plan of the last boot did not run to its end.
    interrupted: bool,
}

struct LifecycleTest;

impl StateMachineTest for LifecycleTest {
    type SystemUnderTest = Machine;
    type Reference = Reference;

    fn init_test(roles: &Roles) -> Machine {
        Machine {
            dir: roles.dir(),
            state: StateFile::with(BootState::committed(Img::A.uuid().unwrap())),
            running: None,
            interrupted: false,
        }
    }

    fn apply(mut m: Machine, roles: &Roles, action: Action) -> Machine {
        let config = Config::default();
        match action {
            Action::Stage(img) => m.dir.set(ImageName::New, Some(img)),
            Action::Revert => m.dir.marker = true,
            Action::MarkGood => {
                let running = m.running.expect("precondition: running");
                let b = Booted {
                    name: ImageName::Current,
                    uuid: running.uuid().unwrap(),
                };
                let before = m.dir.observe(m.state.seen());
                let p = mark_good(&before, Some(b)).expect("mark-good allowed");
                for step in &p.steps {
                    execute(&mut m.dir, &mut m.state, step, None).expect("mark-good step");
                }
                assert_eq!(
                    hnroot_core::plan::seen_after(&before, &p.steps),
                    m.dir.observe(m.state.seen())
                );
            }
            Action::Boot | Action::PowerLoss(_) => {
                m.running = None;
                let d = decide(&m.dir.observe(m.state.seen()), &config);
                let b = d.boot().expect("something boots");
                if let Some(w) = b.write {
                    m.state.write(&w);
                }
                let img = Img::from_uuid(b.uuid);
                m.interrupted = false;
                if !panics(img) {
                    let p = plan(&m.dir.observe(m.state.seen()), booted(&d)).expect("plan");
                    // Power is lost after the initramfs began changing hostpart (a loss before
                    // that is the same as a kernel panic, image C) and before it mounted.
                    let first_change = p.steps.iter().position(|s| support::op_of(s).is_some());
                    let lo = first_change.map_or(0, |i| i + 1);
                    let last = p.steps.len() - 1;
                    let steps = match action {
                        Action::PowerLoss(k) => lo + k % (last - lo + 1),
                        _ => p.steps.len(),
                    };
                    let mut mounted = None;
                    for step in &p.steps[..steps] {
                        mounted = execute(&mut m.dir, &mut m.state, step, None)
                            .expect("step executes")
                            .or(mounted);
                    }
                    m.interrupted = steps < p.steps.len();
                    m.running = mounted.map(|(_, i)| i);
                    assert_eq!(m.running.is_some(), !m.interrupted);
                }
            }
        }
        if !m.interrupted {
            assert_eq!(
                m.running, roles.running,
                "running image differs from the reference"
            );
            assert_eq!(m.dir, roles.dir(), "hostpart differs from the reference");
            let good = m.state.seen();
            let recorded_good = match good {
                hnroot_core::bootstate::StateSeen::Valid(s) => s.good(),
                _ => None,
            };
            assert_eq!(
                recorded_good,
                roles.good.and_then(Img::uuid),
                "recorded good image differs"
            );
        }
        m
    }

    fn check_invariants(m: &Machine, roles: &Roles) {
        // The image last marked good is never lost, crash or not.
        if let Some(good) = roles.good {
            assert!(
                m.dir.holds(good),
                "{good:?}, the last image marked good, is gone: {:?}",
                m.dir
            );
        }
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]
    #[test]
    fn lifecycles_follow_the_reference_model(sequential 1..40 => LifecycleTest);
}
