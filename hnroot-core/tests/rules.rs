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
    StateFile::with(BootState::committed(img.uuid().unwrap()))
}

/// Committed to `img` during its own boot, which counts as not yet healthy.
fn this_boot_committed(img: Img) -> BootState {
    BootState::Committed {
        good: img.uuid().unwrap(),
        unhealthy: hnroot_core::bootstate::Unhealthy::THIS_BOOT,
    }
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
fn rule_2_mark_good_commits_the_trial_and_later_boots_consume_no_try() {
    let mut dir = Dir::default().with(Current, Img::A).with(New, Img::B);
    let mut state = committed(Img::A);
    boot(&mut dir, &mut state, &cfg());
    mark_good_now(&dir, &mut state, Img::B);
    assert_eq!(
        state.seen(),
        StateSeen::Valid(BootState::committed(Img::B.uuid().unwrap()))
    );
    for _ in 0..5 {
        let run = boot(&mut dir, &mut state, &cfg());
        assert_eq!(reason(&run.decision), Reason::Normal);
        assert_eq!(
            state.seen(),
            StateSeen::Valid(BootState::Committed {
                good: Img::B.uuid().unwrap(),
                unhealthy: hnroot_core::bootstate::Unhealthy::THIS_BOOT
            }),
            "a normal boot is counted (rule 9), nothing else"
        );
        mark_good_now(&dir, &mut state, Img::B);
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
    assert_eq!(state.seen(), StateSeen::Valid(this_boot_committed(Img::A)));
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
    assert_eq!(state.seen(), StateSeen::Valid(this_boot_committed(Img::A)));
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
    assert_eq!(state.seen(), StateSeen::Valid(this_boot_committed(Img::A)));
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
    let obs = dir.observe(StateSeen::Valid(BootState::committed(
        Img::B.uuid().unwrap(),
    )));
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

/// GRUB's part of a boot that panics before it is healthy: the decision and its write only.
fn boot_unhealthy(dir: &Dir, state: &mut StateFile, config: &Config) -> Decision {
    let decision = decide(&dir.observe(state.seen()), config);
    if let Some(write) = decision.boot().and_then(|b| b.write) {
        assert!(state.write(&write));
    }
    decision
}

fn unhealthy_count(state: &StateFile) -> u8 {
    match state.seen() {
        StateSeen::Valid(s) => s.unhealthy().expect("committed").boots(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rule_9_every_committed_boot_counts_and_mark_good_resets_the_count() {
    let dir = Dir::default().with(Current, Img::A).with(Old, Img::B);
    let mut state = committed(Img::A);
    for n in 1..=2 {
        let d = boot_unhealthy(&dir, &mut state, &cfg());
        assert_eq!((image(&d), reason(&d)), (Current, Reason::Normal));
        assert_eq!(
            unhealthy_count(&state),
            n,
            "counted before the kernel loads"
        );
    }
    mark_good_now(&dir, &mut state, Img::A);
    assert_eq!(unhealthy_count(&state), 0, "mark-good resets the count");
    let d = boot_unhealthy(&dir, &mut state, &cfg());
    assert_eq!(
        d.record().to_string(),
        format!(
            "reason=normal image=hn-root.img uuid={} try=- fallbacks=hn-root-old.img notes=- \
             write=committed unhealthy=1",
            Img::A.uuid().unwrap()
        )
    );
}

#[test]
fn rule_9_after_k_unhealthy_boots_the_old_committed_image_boots_then_the_waits_grow() {
    let dir = Dir::default().with(Current, Img::A).with(Old, Img::B);
    let mut state = committed(Img::A);
    let config = Config {
        boot_limit: 2,
        wait_first: 10,
        wait_max: 35,
        ..cfg()
    };
    let mut seen = Vec::new();
    for _ in 0..9 {
        let d = boot_unhealthy(&dir, &mut state, &config);
        let b = d.boot().unwrap();
        seen.push((b.image, b.reason.code().code(), b.wait));
    }
    assert_eq!(
        seen,
        [
            (Current, "normal", 0),
            (Current, "normal", 0),
            (Old, "unhealthy-fallback", 0),
            (Old, "unhealthy-fallback", 0),
            (Current, "backoff", 10),
            (Old, "backoff", 20),
            (Current, "backoff", 35),
            (Old, "backoff", 35),
            (Current, "backoff", 35),
        ]
    );
    // Nothing was renamed or removed by any of it: the files are GRUB's input only.
    assert_eq!(dir, Dir::default().with(Current, Img::A).with(Old, Img::B));
    // The initramfs mounts the fallback where it lies.
    let mut d2 = dir;
    let fallback = Booted {
        name: Old,
        uuid: Img::B.uuid().unwrap(),
    };
    let p = plan(&d2.observe(state.seen()), Some(fallback)).unwrap();
    assert_eq!(p.kind, PlanKind::AsIs);
    assert_eq!(
        p.steps.as_slice(),
        &[ChangeStep::Mount {
            image: Old,
            uuid: Img::B.uuid().unwrap()
        }]
    );
    // The old image reaches healthy: mark-good resets the count and hn-root.img stays the
    // committed image, tried first again.
    let p = mark_good(&d2.observe(state.seen()), Some(fallback)).unwrap();
    for step in &p.steps {
        support::execute(&mut d2, &mut state, step, None).unwrap();
    }
    assert_eq!(state.seen(), committed(Img::A).seen());
    let d = boot_unhealthy(&dir, &mut state, &config);
    assert_eq!((image(&d), reason(&d)), (Current, Reason::Normal));
}

#[test]
fn rule_9_without_an_old_image_the_waits_start_after_k_boots_and_a_fixed_cause_boots() {
    let dir = Dir::default().with(Current, Img::A);
    let mut state = committed(Img::A);
    let mut waits = Vec::new();
    for _ in 0..6 {
        let d = boot_unhealthy(&dir, &mut state, &cfg());
        assert_eq!(image(&d), Current);
        waits.push(d.boot().unwrap().wait);
    }
    assert_eq!(waits, [0, 0, 0, 60, 120, 240]);
    // The cause went away: the image boots, reaches healthy, and the next boot is normal.
    mark_good_now(&dir, &mut state, Img::A);
    let d = boot_unhealthy(&dir, &mut state, &cfg());
    assert_eq!((reason(&d), d.boot().unwrap().wait), (Reason::Normal, 0));
}

#[test]
fn rule_9_a_commit_during_a_boot_counts_that_boot() {
    // A revert commits the old image in the initramfs: that boot is not yet healthy.
    let mut dir = Dir::default().with(Current, Img::A).with(Old, Img::B);
    dir.marker = true;
    let mut state = committed(Img::A);
    let run = boot(&mut dir, &mut state, &cfg());
    assert_eq!(reason(&run.decision), Reason::ManualRevert);
    assert_eq!(
        state.seen(),
        StateSeen::Valid(BootState::Committed {
            good: Img::B.uuid().unwrap(),
            unhealthy: hnroot_core::bootstate::Unhealthy::THIS_BOOT
        })
    );
}

#[test]
fn rule_9_rollback_boots_that_never_reach_the_initramfs_are_counted_and_then_wait() {
    // The trial of B ran out; the image to roll back to panics before the initramfs, so the
    // rollback never completes: every further boot is counted in the trial's other boots.
    let dir = Dir::default().with(Current, Img::B).with(Old, Img::A);
    let mut state = StateFile::with(BootState::Trial(Trial {
        image: Img::B.uuid().unwrap(),
        tries: Tries::new(0, 3).unwrap(),
        good: Img::A.uuid(),
    }));
    let mut seen = Vec::new();
    for _ in 0..5 {
        let d = boot_unhealthy(&dir, &mut state, &cfg());
        let b = d.boot().unwrap();
        seen.push((b.image, b.reason.code().code(), b.wait));
    }
    assert_eq!(
        seen,
        [
            (Old, "automatic-rollback", 0),
            (Old, "automatic-rollback", 0),
            (Old, "automatic-rollback", 0),
            (Old, "automatic-rollback", 60),
            (Old, "automatic-rollback", 120),
        ]
    );
}
