//! One named test per rule of hnroot-core's crate documentation, each driving the real
//! decision, plan and boot-state codec through a simulated hostpart.

mod support;

use hnroot_core::bootstate::{BootState, StateSeen, Trial, Tries};
use hnroot_core::commands::{mark_good, stage, MarkGoodError, StageError, StageRequest};
use hnroot_core::decide::{decide, Config, CurrentProblem, Decision, DecisionNotes, Reason};
use hnroot_core::name::ImageName::{self, Broken, Cancelled, Current, New, Old};
use hnroot_core::plan::{
    after_failure, plan, AfterFailure, Booted, ChangeStep, PlanError, PlanKind, PlanNotes,
};
use support::{boot, Dir, Img, StateFile};

fn committed(img: Img) -> StateFile {
    StateFile::with(BootState::Committed {
        good: img.uuid().unwrap(),
    })
}

fn reason(decision: &Decision) -> Reason {
    decision.boot().expect("bootable").reason
}

fn image(decision: &Decision) -> ImageName {
    decision.boot().expect("bootable").image
}

fn cfg() -> Config {
    Config::default()
}

fn mark_good_now(dir: &Dir, state: &mut StateFile, running: Img) {
    let booted = Booted {
        name: Current,
        uuid: running.uuid().unwrap(),
    };
    let p = mark_good(&dir.observe(state.seen()), Some(booted)).unwrap();
    let mut dir = *dir;
    for step in &p.steps {
        support::execute(&mut dir, state, step, None).unwrap();
    }
}

#[test]
fn rule_1_staged_image_boots_directly_then_becomes_current_and_previous_becomes_old() {
    let mut dir = Dir::default().with(Current, Img::A).with(New, Img::B);
    let mut state = committed(Img::A);
    let run = boot(&mut dir, &mut state, &cfg());
    assert_eq!(
        image(&run.decision),
        New,
        "the staged image boots on the first boot"
    );
    assert_eq!(reason(&run.decision), Reason::Update { attempt: 1, of: 3 });
    assert_eq!(
        run.decision.to_string(),
        "booting hn-root-new.img (update, trial 1 of 3); fallback hn-root.img"
    );
    assert_eq!(run.plan.as_ref().unwrap().kind, PlanKind::Update);
    assert_eq!(run.mounted, Some((Current, Img::B)));
    assert_eq!(dir, Dir::default().with(Current, Img::B).with(Old, Img::A));
}

#[test]
fn rule_2_each_boot_of_a_trial_image_consumes_one_try() {
    let mut dir = Dir::default().with(Current, Img::A).with(New, Img::B);
    let mut state = committed(Img::A);
    let mut reasons = Vec::new();
    for _ in 0..3 {
        reasons.push(reason(&boot(&mut dir, &mut state, &cfg()).decision));
    }
    assert_eq!(
        reasons,
        [
            Reason::Update { attempt: 1, of: 3 },
            Reason::Trial { attempt: 2, of: 3 },
            Reason::Trial { attempt: 3, of: 3 }
        ]
    );
    let StateSeen::Valid(BootState::Trial(t)) = state.seen() else {
        panic!("{:?}", state.seen())
    };
    assert_eq!(
        (t.image, t.tries.left(), t.good),
        (Img::B.uuid().unwrap(), 0, Img::A.uuid())
    );
}

#[test]
fn rule_2_mark_good_commits_the_trial_and_later_boots_consume_nothing() {
    let mut dir = Dir::default().with(Current, Img::A).with(New, Img::B);
    let mut state = committed(Img::A);
    boot(&mut dir, &mut state, &cfg());
    mark_good_now(&dir, &mut state, Img::B);
    assert_eq!(
        state.seen(),
        StateSeen::Valid(BootState::Committed {
            good: Img::B.uuid().unwrap()
        })
    );
    for _ in 0..5 {
        let before = state.clone();
        let run = boot(&mut dir, &mut state, &cfg());
        assert_eq!(reason(&run.decision), Reason::Normal);
        assert_eq!(state, before, "a normal boot writes nothing");
    }
    assert_eq!(dir, Dir::default().with(Current, Img::B).with(Old, Img::A));
}

#[test]
fn rule_2_trial_out_of_tries_rolls_back_to_old_keeping_the_failed_image_as_broken() {
    let mut dir = Dir::default().with(Current, Img::A).with(New, Img::B);
    let mut state = committed(Img::A);
    for _ in 0..3 {
        boot(&mut dir, &mut state, &cfg());
    }
    let run = boot(&mut dir, &mut state, &cfg());
    assert_eq!(image(&run.decision), Old);
    assert_eq!(
        reason(&run.decision),
        Reason::AutomaticRollback { failed: Current }
    );
    assert_eq!(run.plan.as_ref().unwrap().kind, PlanKind::Rollback);
    assert_eq!(run.mounted, Some((Current, Img::A)));
    assert_eq!(
        dir,
        Dir::default().with(Current, Img::A).with(Broken, Img::B)
    );
    assert_eq!(
        state.seen(),
        StateSeen::Valid(BootState::Committed {
            good: Img::A.uuid().unwrap()
        })
    );
    let after = boot(&mut dir, &mut state, &cfg());
    assert_eq!(reason(&after.decision), Reason::Normal);
}

#[test]
fn rule_2_a_staged_image_that_never_reaches_the_initramfs_is_rolled_back_too() {
    // Its kernel panics: GRUB counts the tries, nothing ever renames it.
    let dir = Dir::default().with(Current, Img::A).with(New, Img::C);
    let mut state = committed(Img::A);
    for attempt in 1..=3 {
        let d = decide(&dir.observe(state.seen()), &cfg());
        assert_eq!(reason(&d), Reason::Update { attempt, of: 3 });
        state.write(&d.boot().unwrap().write.unwrap());
    }
    let mut dir = dir;
    let run = boot(&mut dir, &mut state, &cfg());
    assert_eq!(image(&run.decision), Current);
    assert_eq!(
        reason(&run.decision),
        Reason::AutomaticRollback { failed: New }
    );
    assert!(run
        .decision
        .notes()
        .contains(DecisionNotes::NEW_FAILED_TRIAL));
    assert_eq!(
        dir,
        Dir::default().with(Current, Img::A).with(Broken, Img::C)
    );
    assert_eq!(
        state.seen(),
        StateSeen::Valid(BootState::Committed {
            good: Img::A.uuid().unwrap()
        })
    );
}

#[test]
fn rule_3_revert_boots_old_makes_it_current_keeps_broken_and_removes_the_marker() {
    let mut dir = Dir::default().with(Current, Img::B).with(Old, Img::A);
    dir.marker = true;
    let mut state = committed(Img::B);
    let run = boot(&mut dir, &mut state, &cfg());
    assert_eq!(image(&run.decision), Old);
    assert_eq!(reason(&run.decision), Reason::ManualRevert);
    assert_eq!(run.plan.as_ref().unwrap().kind, PlanKind::Revert);
    assert_eq!(run.mounted, Some((Current, Img::A)));
    assert_eq!(
        dir,
        Dir::default().with(Current, Img::A).with(Broken, Img::B)
    );
    assert_eq!(
        state.seen(),
        StateSeen::Valid(BootState::Committed {
            good: Img::A.uuid().unwrap()
        })
    );
}

#[test]
fn rule_3_revert_cancels_a_staged_image_which_is_kept_as_cancelled() {
    let mut dir = Dir::default()
        .with(Current, Img::B)
        .with(Old, Img::A)
        .with(New, Img::C);
    dir.marker = true;
    let mut state = committed(Img::B);
    let run = boot(&mut dir, &mut state, &cfg());
    assert_eq!(image(&run.decision), Old);
    assert!(run.decision.notes().contains(DecisionNotes::NEW_CANCELLED));
    assert!(run
        .decision
        .boot()
        .unwrap()
        .fallbacks
        .iter()
        .all(|(n, _)| *n != New));
    assert_eq!(
        dir,
        Dir::default()
            .with(Current, Img::A)
            .with(Broken, Img::B)
            .with(Cancelled, Img::C)
    );
    let next = boot(&mut dir, &mut state, &cfg());
    assert_eq!(
        (image(&next.decision), reason(&next.decision)),
        (Current, Reason::Normal)
    );
}

#[test]
fn rule_4_revert_without_old_boots_current_says_so_and_does_not_loop() {
    let mut dir = Dir::default().with(Current, Img::A).with(New, Img::B);
    dir.marker = true;
    let mut state = committed(Img::A);
    let run = boot(&mut dir, &mut state, &cfg());
    assert_eq!(image(&run.decision), Current);
    assert_eq!(reason(&run.decision), Reason::RevertRefused);
    assert!(
        run.decision
            .to_string()
            .contains("no bootable hn-root-old.img"),
        "{}",
        run.decision
    );
    let p = run.plan.unwrap();
    assert!(p.notes.contains(PlanNotes::REVERT_REFUSED));
    assert_eq!(
        dir,
        Dir::default().with(Current, Img::A).with(Cancelled, Img::B),
        "marker gone, staged image cancelled"
    );
    let next = boot(&mut dir, &mut state, &cfg());
    assert_eq!(reason(&next.decision), Reason::Normal);
}

#[test]
fn rule_5_missing_current_falls_back_in_the_documented_order() {
    let cases: [(Dir, ImageName); 4] = [
        (
            Dir::default()
                .with(Old, Img::A)
                .with(Cancelled, Img::B)
                .with(Broken, Img::C),
            Old,
        ),
        (
            Dir::default().with(Cancelled, Img::B).with(Broken, Img::C),
            Cancelled,
        ),
        (
            Dir::default().with(Old, Img::Garbage).with(Broken, Img::C),
            Broken,
        ),
        (
            Dir::default().with(Current, Img::Garbage).with(Old, Img::A),
            Old,
        ),
    ];
    for (dir, expected) in cases {
        let d = decide(&dir.observe(StateSeen::Absent), &cfg());
        assert_eq!(image(&d), expected, "{dir:?}");
        let problem = if dir.get(Current).is_some() {
            CurrentProblem::NotBootable
        } else {
            CurrentProblem::Missing
        };
        assert_eq!(reason(&d), Reason::Recovery { current: problem });
    }
    let empty = decide(
        &Dir::default()
            .with(Current, Img::Garbage)
            .observe(StateSeen::Absent),
        &cfg(),
    );
    assert!(matches!(empty, Decision::NothingBootable { .. }));
}

#[test]
fn rule_5_broken_is_never_chosen_or_offered_first_while_anything_else_boots() {
    let dir = Dir::default()
        .with(Current, Img::A)
        .with(Broken, Img::C)
        .with(Old, Img::B);
    let d = decide(&dir.observe(StateSeen::Absent), &cfg());
    let fallbacks: Vec<_> = d
        .boot()
        .unwrap()
        .fallbacks
        .iter()
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(fallbacks, [Old, Broken]);
}

#[test]
fn rule_5_missing_current_promotes_old_and_an_unreadable_current_is_left_alone() {
    let mut dir = Dir::default().with(Old, Img::A);
    let mut state = committed(Img::A);
    let run = boot(&mut dir, &mut state, &cfg());
    assert_eq!(run.plan.unwrap().kind, PlanKind::Promote);
    assert_eq!(dir, Dir::default().with(Current, Img::A));

    let mut dir = Dir::default().with(Current, Img::Garbage).with(Old, Img::A);
    let run = boot(&mut dir, &mut state, &cfg());
    let p = run.plan.unwrap();
    assert_eq!(p.kind, PlanKind::AsIs);
    assert!(p.notes.contains(PlanNotes::CURRENT_KEPT));
    assert_eq!(run.mounted, Some((Old, Img::A)));
    assert_eq!(
        dir,
        Dir::default().with(Current, Img::Garbage).with(Old, Img::A)
    );
}

#[test]
fn rule_6_an_update_over_an_uncommitted_trial_keeps_the_last_known_good_old_image() {
    // B is on trial (never marked good), A is old and the only good image; C is staged.
    let mut dir = Dir::default().with(Current, Img::A).with(New, Img::B);
    let mut state = committed(Img::A);
    boot(&mut dir, &mut state, &cfg());
    dir.set(New, Some(Img::C));
    let run = boot(&mut dir, &mut state, &cfg());
    assert_eq!(image(&run.decision), New);
    let steps = run.plan.unwrap().steps;
    assert_eq!(
        steps[0],
        ChangeStep::Rename {
            from: Current,
            to: Cancelled,
            replace: true
        }
    );
    assert_eq!(
        dir,
        Dir::default()
            .with(Current, Img::C)
            .with(Old, Img::A)
            .with(Cancelled, Img::B)
    );
    // And C failing its trial rolls back to A, the image known good.
    for _ in 0..3 {
        boot(&mut dir, &mut state, &cfg());
    }
    assert_eq!(dir.get(Current), Some(Img::A));
    assert_eq!(dir.get(Broken), Some(Img::C));
}

#[test]
fn rule_6_with_the_good_image_unknown_a_readable_old_image_is_never_replaced() {
    let mut dir = Dir::default()
        .with(Current, Img::B)
        .with(Old, Img::A)
        .with(New, Img::C);
    let mut state = StateFile::corrupt();
    boot(&mut dir, &mut state, &cfg());
    assert_eq!(dir.get(Old), Some(Img::A));
    assert_eq!(dir.get(Cancelled), Some(Img::B));
    assert_eq!(dir.get(Current), Some(Img::C));
}

#[test]
fn rule_7_the_initramfs_mounts_by_uuid_when_grub_saw_the_directory_one_switch_behind() {
    // GRUB saw the pre-update directory and booted hn-root-new.img (B); the journal replay shows
    // the switch already done.
    let grub_view = Dir::default().with(Current, Img::A).with(New, Img::B);
    let state = committed(Img::A);
    let d = decide(&grub_view.observe(state.seen()), &cfg());
    let booted = support::booted(&d).unwrap();
    let replayed = Dir::default().with(Current, Img::B).with(Old, Img::A);
    let p = plan(&replayed.observe(state.seen()), Some(booted)).unwrap();
    assert!(p.notes.contains(PlanNotes::GRUB_VIEW_STALE));
    assert_eq!(p.mount(), Some((Current, Img::B.uuid().unwrap())));
    assert!(p
        .steps
        .iter()
        .all(|s| !matches!(s, ChangeStep::Rename { .. })));
    // A directory where no file has the booted UUID is refused, not mounted by name.
    let other = Dir::default().with(Current, Img::C).with(New, Img::D);
    assert_eq!(
        plan(&other.observe(state.seen()), Some(booted)),
        Err(PlanError::BootedImageMissing { booted })
    );
}

#[test]
fn rule_7_a_staged_image_with_a_duplicate_uuid_is_refused() {
    let dir = Dir::default().with(Current, Img::A).with(New, Img::A);
    let d = decide(&dir.observe(StateSeen::Absent), &cfg());
    assert_eq!((image(&d), reason(&d)), (Current, Reason::Normal));
    assert!(d.notes().contains(DecisionNotes::NEW_DUPLICATE_UUID));
    let request = StageRequest {
        uuid: Img::A.uuid().unwrap(),
        needed: 1,
        free: 1,
        replace: true,
        force: false,
    };
    assert_eq!(
        stage(&dir.observe(StateSeen::Absent), &request),
        Err(StageError::DuplicateUuid {
            existing: Current,
            uuid: Img::A.uuid().unwrap()
        })
    );
}

#[test]
fn rule_8_a_corrupt_boot_state_puts_current_on_trial_again() {
    let mut dir = Dir::default().with(Current, Img::B).with(Old, Img::A);
    let mut state = StateFile::corrupt();
    let run = boot(&mut dir, &mut state, &cfg());
    assert_eq!(reason(&run.decision), Reason::Trial { attempt: 1, of: 3 });
    assert!(run.decision.notes().contains(DecisionNotes::STATE_CORRUPT));
    assert_eq!(
        state.seen(),
        StateSeen::Valid(BootState::Trial(Trial {
            image: Img::B.uuid().unwrap(),
            tries: Tries::new(2, 3).unwrap(),
            good: None
        }))
    );
    mark_good_now(&dir, &mut state, Img::B);
    assert_eq!(
        reason(&boot(&mut dir, &mut state, &cfg()).decision),
        Reason::Normal
    );
}

#[test]
fn rule_8_every_prefix_of_an_update_then_a_reboot_still_boots_the_new_image() {
    let start = Dir::default().with(Current, Img::A).with(New, Img::B);
    let mut state = committed(Img::A);
    let d = decide(&start.observe(state.seen()), &cfg());
    state.write(&d.boot().unwrap().write.unwrap());
    let p = plan(&start.observe(state.seen()), support::booted(&d)).unwrap();
    for crash_after in 0..p.steps.len() {
        let mut dir = start;
        let mut st = state.clone();
        for step in &p.steps[..crash_after] {
            support::execute(&mut dir, &mut st, step, None).unwrap();
        }
        let run = boot(&mut dir, &mut st, &cfg());
        assert_eq!(
            run.mounted.map(|(_, i)| i),
            Some(Img::B),
            "crash after {crash_after} steps"
        );
        assert_eq!(dir, Dir::default().with(Current, Img::B).with(Old, Img::A));
    }
}

#[test]
fn mark_good_refuses_an_image_that_is_not_running() {
    let dir = Dir::default().with(Current, Img::B).with(Old, Img::A);
    let obs = dir.observe(StateSeen::Absent);
    let running_old = Booted {
        name: Old,
        uuid: Img::A.uuid().unwrap(),
    };
    assert_eq!(
        mark_good(&obs, Some(running_old)),
        Err(MarkGoodError::NotRunningCurrent {
            current: Img::B.uuid().unwrap(),
            booted: Img::A.uuid().unwrap()
        })
    );
    let garbage = Dir::default()
        .with(Current, Img::Garbage)
        .observe(StateSeen::Absent);
    assert_eq!(mark_good(&garbage, None), Err(MarkGoodError::NoCurrent));
}

#[test]
fn a_failed_mount_reboots_into_the_rollback_target_only_when_that_changes_the_image() {
    let dir = Dir::default().with(Current, Img::B).with(Old, Img::A);
    let obs = dir.observe(StateSeen::Valid(BootState::Committed {
        good: Img::B.uuid().unwrap(),
    }));
    match after_failure(&obs, Img::B.uuid().unwrap(), &cfg()) {
        AfterFailure::Reboot {
            next,
            next_uuid,
            write,
        } => {
            assert_eq!((next, next_uuid), (Old, Img::A.uuid().unwrap()));
            assert_eq!(write.trial().map(|t| t.tries.left()), Some(0));
        }
        AfterFailure::Stop => panic!("old image is readable: should reboot into it"),
    }
    let alone = Dir::default()
        .with(Current, Img::B)
        .observe(StateSeen::Absent);
    assert_eq!(
        after_failure(&alone, Img::B.uuid().unwrap(), &cfg()),
        AfterFailure::Stop
    );
}
