//! The operator commands end to end, on real image files made by `mkfs.ext4 -d` in a temporary
//! directory standing in for hostpart, with a boot-state file next to it: what they do, what
//! they refuse and how they say it, and that no reader, writer or argument makes them panic.

mod support;

use std::io::Read;
use std::process::{Command, Stdio};

use support::*;

#[test]
fn stage_explain_mark_good_revert_on_a_real_directory() {
    let dir = tempfile::tempdir().unwrap();
    let hp = dir.path().join("hostpart");
    std::fs::create_dir(&hp).unwrap();
    let state = dir.path().join("bootstate");
    let (hp_s, st_s) = (hp.to_str().unwrap(), state.to_str().unwrap());
    image(&hp.join("hn-root.img"), A);
    let loc = ["--hostpart", hp_s, "--bootstate", st_s];
    let keys = keys(dir.path(), "publisher");
    let trusted = trust(dir.path(), &keys);
    let with_keys = |args: &[&str]| -> Vec<String> {
        args.iter()
            .map(|s| s.to_string())
            .chain(["--keys".into(), trusted.display().to_string()])
            .chain(loc.iter().map(|s| s.to_string()))
            .collect()
    };
    let run = |args: Vec<String>| hnroot(&args.iter().map(String::as_str).collect::<Vec<_>>());

    // No boot-state file: mark-good refuses clearly; init creates it.
    let out = hnroot(&[&["mark-good"], &loc[..]].concat());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("hnroot bootstate init"),
        "{}",
        text(&out)
    );
    ok(&[&["bootstate", "init"], &loc[..]].concat());
    let v = json(&[&["explain", "--json"], &loc[..]].concat());
    assert_eq!(
        (v["image"].as_str(), v["reason"].as_str()),
        (Some("hn-root.img"), Some("normal"))
    );
    assert_eq!(v["plan"]["kind"], "normal");
    assert_eq!(v["images"]["hn-root.img"]["version"], "fleet 1");

    // Stage a new image: refused when its UUID duplicates hn-root.img.
    let dup = dir.path().join("dup.img");
    image(&dup, A);
    sign(&dup, &keys, "dup");
    let out = run(with_keys(&["stage", dup.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("same as hn-root.img"), "{}", text(&out));
    // A copy cut short: its superblock is whole, its end is not. Refused, nothing staged.
    let cut = dir.path().join("cut.img");
    image(&cut, B);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cut)
        .unwrap()
        .set_len(6 << 20)
        .unwrap();
    sign(&cut, &keys, "cut");
    let out = run(with_keys(&["stage", cut.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out)
            .contains("truncated: its ext4 filesystem spans 8388608 bytes, the file holds 6291456"),
        "{}",
        text(&out)
    );
    assert!(!hp.join("hn-root-new.img").exists());

    let new = dir.path().join("v2.img");
    image_sized(&new, B, "2", 8);
    sign(&new, &keys, "IMAGE_VERSION=2");
    let out_text = text(&run(with_keys(&["stage", new.to_str().unwrap()])));
    assert!(
        out_text.contains("next boot: booting hn-root-new.img (update, trial 1 of 3)"),
        "{out_text}"
    );
    assert!(
        out_text.contains("trusted comment: IMAGE_VERSION=2"),
        "{out_text}"
    );
    assert!(std::fs::read_dir(&hp).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".partial")));

    let v = json(&[&["explain", "--json"], &loc[..]].concat());
    assert_eq!(v["image"], "hn-root-new.img");
    assert_eq!(v["reason"], "update");
    assert_eq!(
        (v["attempt"].as_u64(), v["of"].as_u64()),
        (Some(1), Some(3))
    );
    assert_eq!(v["fallbacks"], serde_json::json!(["hn-root.img"]));
    assert_eq!(v["images"]["hn-root-new.img"]["version"], "fleet 2");
    let steps: Vec<&str> = v["plan"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "rename",
            "rename-noreplace",
            "sync-dir",
            "checkpoint",
            "mount"
        ]
    );
    assert_eq!(v["write"]["state"], "trial");
    assert_eq!(
        v["record"].as_str().unwrap(),
        format!("reason=update image=hn-root-new.img uuid={B} try=1/3 fallbacks=hn-root.img notes=- write=trial")
    );

    // Revert with no old image: refused up front, and no marker is made.
    let out = hnroot(&[&["revert"], &loc[..]].concat());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("no bootable hn-root-old.img to revert to"),
        "{}",
        text(&out)
    );
    assert!(!hp.join("system-revert").exists());
    // A marker made by hand: status says the next boot cannot revert, and nothing else.
    std::fs::write(hp.join("system-revert"), b"").unwrap();
    let status = ok(&[&["status"], &loc[..]].concat());
    assert!(status.contains("cannot revert"), "{status}");
    // No ESP here, so no loader: the counting shown is the defaults, and says so.
    assert!(
        status.contains(
            "counting: tries 3, boot limit 3, waits 60 s doubling to 1800 s (the defaults: no \
             loader was read on the ESP)"
        ),
        "{status}"
    );
    assert!(!status.contains("the next boot reverts"), "{status}");
    let v = json(&[&["explain", "--json"], &loc[..]].concat());
    assert_eq!(v["reason"], "revert-refused");
    assert_eq!(
        v["note_codes"],
        serde_json::json!(["revert-refused", "new-cancelled"])
    );
    assert_eq!(
        v["notes"].as_array().unwrap().len(),
        2,
        "one sentence per note"
    );
    std::fs::remove_file(hp.join("system-revert")).unwrap();

    // mark-good (not pinned by a kernel command line here: hn-root.img is taken as running).
    let t = ok(&[&["mark-good"], &loc[..]].concat());
    assert!(t.contains("already recorded as good"), "{t}");

    // The history has the stage, with the staged image's UUID.
    let h = json(&["history", "--json", "--hostpart", hp_s]);
    let events: Vec<&str> = h
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["stage"]);
    assert_eq!(h[0]["uuid"], B);
    assert_eq!(h[0]["image"], "hn-root-new.img");
    assert!(ok(&["history", "--hostpart", hp_s]).contains("stage hn-root-new.img (UUID bbbbbbbb"));
}

#[test]
fn garbage_links_and_directories_are_judged_as_grub_judges_them() {
    let dir = tempfile::tempdir().unwrap();
    let hp = dir.path();
    image(&hp.join("elsewhere.img"), B);
    std::fs::write(hp.join("hn-root.img"), vec![0u8; 200_000]).unwrap();
    std::os::unix::fs::symlink("elsewhere.img", hp.join("hn-root-new.img")).unwrap();
    std::os::unix::fs::symlink("/nowhere.img", hp.join("hn-root-old.img")).unwrap();
    std::fs::create_dir(hp.join("hn-root-broken.img")).unwrap();
    let loc = [
        "--hostpart",
        hp.to_str().unwrap(),
        "--bootstate",
        "/nonexistent/bootstate",
    ];
    let out = hnroot(&[&["explain", "--json"], &loc[..]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["images"]["hn-root.img"]["code"], "no-filesystem");
    // A link that resolves inside hostpart is a file, as GRUB's drivers see it.
    assert_eq!(v["images"]["hn-root-new.img"]["code"], "bootable");
    assert_eq!(v["images"]["hn-root-old.img"]["code"], "unopenable");
    assert_eq!(v["images"]["hn-root-broken.img"]["code"], "not-a-file");
    assert_eq!(v["reason"], "update");
    assert_eq!(v["boot_state"]["status"], "absent");
}

#[test]
fn nothing_bootable_is_its_own_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hn-root.img"), vec![0u8; 200_000]).unwrap();
    let out = hnroot(&[
        "explain",
        "--hostpart",
        dir.path().to_str().unwrap(),
        "--bootstate",
        "/nonexistent/x",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out).contains("nothing bootable"));
}

#[test]
fn a_reader_that_goes_away_or_a_full_disk_never_makes_it_panic() {
    let dir = tempfile::tempdir().unwrap();
    image(&dir.path().join("hn-root.img"), A);
    let args = [
        "explain",
        "--hostpart",
        dir.path().to_str().unwrap(),
        "--bootstate",
        "/nonexistent/x",
    ];
    // `| head -c 1`: the reader closes after one byte.
    let mut child = Command::new(env!("CARGO_BIN_EXE_hnroot"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut one = [0u8; 1];
    child.stdout.as_mut().unwrap().read_exact(&mut one).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_ne!(
        out.status.code(),
        Some(101),
        "panicked: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.code().is_some(), "killed by a signal");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    // `> /dev/full`: said once on standard error, exit status 1.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hnroot"))
        .args(args)
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("writing standard output failed"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn arguments_are_checked_by_the_cores_parsers() {
    let dir = tempfile::tempdir().unwrap();
    image(&dir.path().join("hn-root.img"), A);
    let hp = dir.path().to_str().unwrap();
    for bad in ["0", "101", "3x", ""] {
        let out = hnroot(&["status", "--hostpart", hp, "--tries", bad]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "--tries {bad:?}: {}",
            text(&out)
        );
        assert!(text(&out).contains("from 1 to 100"), "{}", text(&out));
    }
    // A FIFO is not probed (and the probe does not hang on it).
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let out = hnroot(&["probe", fifo.to_str().unwrap()]);
    assert!(
        text(&out).contains("not a regular file or a block device"),
        "{}",
        text(&out)
    );
    // bootstate init with a bare file name, in the current directory.
    let out = Command::new(env!("CARGO_BIN_EXE_hnroot"))
        .args([
            "bootstate",
            "init",
            "--hostpart",
            hp,
            "--bootstate",
            "bootstate",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // A wrong-sized file: mark-good says to recreate it with --force, which does.
    std::fs::write(dir.path().join("bootstate"), [0u8; 10]).unwrap();
    let st = dir.path().join("bootstate");
    let out = hnroot(&[
        "mark-good",
        "--hostpart",
        hp,
        "--bootstate",
        st.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("bootstate init --force"),
        "{}",
        text(&out)
    );
    assert_eq!(
        text(&out).matches("expected 1024").count(),
        1,
        "said once: {}",
        text(&out)
    );
    ok(&[
        "bootstate",
        "init",
        "--force",
        "--hostpart",
        hp,
        "--bootstate",
        st.to_str().unwrap(),
    ]);
    ok(&[
        "mark-good",
        "--hostpart",
        hp,
        "--bootstate",
        st.to_str().unwrap(),
    ]);
}

#[test]
fn a_missing_source_is_reported_as_missing() {
    let dir = tempfile::tempdir().unwrap();
    image(&dir.path().join("hn-root.img"), A);
    let missing = dir.path().join("no-such.img");
    let out = hnroot(&[
        "stage",
        "--insecure-no-signature",
        "--hostpart",
        dir.path().to_str().unwrap(),
        missing.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    assert!(
        t.contains("looked for the image at") && t.contains("No such file"),
        "{t}"
    );
    assert!(!t.contains("symbolic links"), "{t}");
}

#[test]
fn a_failed_health_check_reboots_a_trial_and_only_reports_otherwise() {
    use hnroot_core::bootstate::{BootState, Trial, Tries};
    use hnroot_core::uuid::FsUuid;
    let dir = tempfile::tempdir().unwrap();
    let hp = dir.path().join("hostpart");
    std::fs::create_dir(&hp).unwrap();
    let state = dir.path().join("bootstate");
    let (hp_s, st_s) = (hp.to_str().unwrap(), state.to_str().unwrap());
    image(&hp.join("hn-root.img"), A);
    image(&hp.join("hn-root-old.img"), B);
    let loc = ["--hostpart", hp_s, "--bootstate", st_s];

    // Committed: report, never reboot.
    ok(&[&["bootstate", "init"], &loc[..]].concat());
    let out = hnroot(&[&["health-failed", "--dry-run"], &loc[..]].concat());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("not a trial") && text(&out).contains("not rebooting"),
        "{}",
        text(&out)
    );

    // On trial (as GRUB writes it): reboot so GRUB counts the try.
    let trial = BootState::Trial(Trial {
        image: FsUuid::parse(A).unwrap(),
        tries: Tries::new(2, 3).unwrap(),
        good: Some(FsUuid::parse(B).unwrap()),
    });
    hnroot_linux::bootstate_file::create(&state, &trial, true).unwrap();
    let out = hnroot(&[&["health-failed", "--dry-run"], &loc[..]].concat());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("on the trial of") && t.contains("2 tries left"),
        "{t}"
    );
    assert!(
        t.contains("(not: --dry-run)") && t.contains("tries it again"),
        "{t}"
    );
    let history = ok(&["history", "--hostpart", hp_s]);
    assert_eq!(history.matches("health-failed").count(), 2, "{history}");
}

/// `hnroot status >&-`: a standard output closed when it starts (which the Rust runtime would
/// silently replace with /dev/null) fails the command, said on standard error.
#[test]
fn a_closed_standard_output_fails_the_command() {
    let dir = tempfile::tempdir().unwrap();
    image(&dir.path().join("hn-root.img"), A);
    let out = Command::new("sh")
        .args([
            "-c",
            "exec \"$0\" status --hostpart \"$1\" --bootstate /nonexistent/x >&-",
            env!("CARGO_BIN_EXE_hnroot"),
            dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("standard output is closed"), "{err}");
    // Redirected to /dev/null on purpose: fine.
    let out = Command::new("sh")
        .args([
            "-c",
            "exec \"$0\" status --hostpart \"$1\" --bootstate /nonexistent/x >/dev/null",
            env!("CARGO_BIN_EXE_hnroot"),
            dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// The history file's problems name the file; a file of random bytes is said to be that, not
/// "no history recorded yet" beside hundreds of damaged records.
#[test]
fn history_problems_name_the_file_and_say_what_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let hp = dir.path().to_str().unwrap();
    let file = dir.path().join("data/hnroot/history");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let noise: Vec<u8> = (0u64..100_000)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&file, &noise).unwrap();
    let out = hnroot(&["history", "--hostpart", hp]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(!t.contains("no history recorded"), "{t}");
    assert!(
        t.contains(&format!("{}: none of its", file.display()))
            && t.contains("records is valid: it is damaged, or not an hnroot history file"),
        "{t}"
    );
    // Not a regular file: named, with what it is, and nothing waits on it.
    std::fs::remove_file(&file).unwrap();
    let c = std::ffi::CString::new(file.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let out = hnroot(&["history", "--hostpart", hp]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains(&format!("{}: a FIFO, not a regular file", file.display())),
        "{t}"
    );
}

/// A history holding a record a newer hnroot wrote (an event this one does not know, its
/// checksum right), as after hnroot was downgraded: `history` shows the records it reads and
/// says the other is a newer hnroot's, not damage; `metrics` counts it apart from damage.
#[test]
fn a_newer_hnroot_s_history_records_are_not_called_damage() {
    use hnroot_core::history::{Event, Record, RECORD_LEN};
    let dir = tempfile::tempdir().unwrap();
    let hp = dir.path().join("hostpart");
    let file = hp.join("data/hnroot/history");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let record = |sequence| Record {
        sequence,
        time: 1_764_500_000,
        event: Event::MarkedGood,
        reason: hnroot_core::ReasonCode::Unknown,
        plan: None,
        image: Some(hnroot_core::ImageName::Current),
        now_at: None,
        uuid: None,
        tries: None,
        good: None,
        via: None,
    };
    let mut bytes = vec![0u8; 3 * RECORD_LEN];
    bytes[RECORD_LEN..2 * RECORD_LEN].copy_from_slice(&record(1).encode());
    let mut newer = record(2).encode();
    newer[5] = 250;
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(&newer[..RECORD_LEN - 4]);
    newer[RECORD_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
    bytes[2 * RECORD_LEN..].copy_from_slice(&newer);
    std::fs::write(&file, &bytes).unwrap();
    let hp_s = hp.to_str().unwrap();

    let out = hnroot(&["history", "--hostpart", hp_s]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("#1 marked-good")
            && t.contains(&format!(
                "{}: 1 records written by a newer hnroot skipped",
                file.display()
            ))
            && !t.contains("damaged"),
        "{t}"
    );

    // No boot state yet: the metrics are still written.
    let state = dir.path().join("bootstate");
    let st_s = state.to_str().unwrap();
    let out = hnroot(&["metrics", "--hostpart", hp_s, "--bootstate", st_s]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("\nhnroot_history_newer_records 1\n")
            && t.contains("\nhnroot_history_damaged_records 0\n"),
        "{t}"
    );
}

/// An ext4 image whose /boot/kernel is `kernel` (made by `make` in the tree), with an
/// initramfs.
fn image_with_kernel(path: &std::path::Path, uuid: &str, make: impl Fn(&std::path::Path)) {
    let tree = tempfile::tempdir().unwrap();
    let t = tree.path();
    std::fs::create_dir_all(t.join("boot")).unwrap();
    std::fs::write(t.join("boot/initramfs"), b"initramfs").unwrap();
    make(&t.join("boot/kernel"));
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-U", uuid, "-d"])
        .arg(t)
        .arg(path)
        .arg("8M")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `/boot/kernel` that is no kernel is judged by the one rule for boot files, alike by
/// `status` and `stage`, saying what it is: a directory, a FIFO, a link loop, an empty file.
#[test]
fn boot_files_that_are_no_files_are_named_for_what_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let hp = dir.path().join("hostpart");
    std::fs::create_dir(&hp).unwrap();
    image(&hp.join("hn-root.img"), A);
    let keys = keys(dir.path(), "publisher");
    let trusted = trust(dir.path(), &keys);
    type Make = fn(&std::path::Path);
    let cases: [(&str, Make, &str); 4] = [
        (
            "dir",
            |k| std::fs::create_dir(k).unwrap(),
            "boot/kernel is a directory, not a file",
        ),
        (
            "fifo",
            |k| {
                let c = std::ffi::CString::new(k.to_str().unwrap()).unwrap();
                // SAFETY: a NUL-terminated path.
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            },
            "boot/kernel is a device node, FIFO or socket, not a file",
        ),
        (
            "loop",
            |k| std::os::unix::fs::symlink("kernel", k).unwrap(),
            "boot/kernel is a symbolic link that loops",
        ),
        (
            "empty",
            |k| std::fs::write(k, b"").unwrap(),
            "boot/kernel is an empty file (0 bytes)",
        ),
    ];
    for (name, make, said) in cases {
        let img = hp.join("hn-root-new.img");
        image_with_kernel(&img, B, make);
        let v = json(&[
            "status",
            "--json",
            "--hostpart",
            hp.to_str().unwrap(),
            "--bootstate",
            "/nonexistent/x",
        ]);
        let new = &v["images"]["hn-root-new.img"];
        assert_eq!(new["code"], "missing-boot-files", "{name}: {v}");
        assert!(new["why"].as_str().unwrap().contains(said), "{name}: {new}");
        // The same image offered to stage: refused with the same words.
        let src = dir.path().join(format!("{name}.img"));
        std::fs::rename(&img, &src).unwrap();
        sign(&src, &keys, name);
        let out = hnroot(&[
            "stage",
            "--hostpart",
            hp.to_str().unwrap(),
            "--bootstate",
            "/nonexistent/x",
            "--keys",
            trusted.to_str().unwrap(),
            src.to_str().unwrap(),
        ]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {t}");
        assert!(
            t.contains("missing-boot-files") && t.contains(said),
            "{name}: {t}"
        );
    }
}

/// `hnroot reboot --dry-run` and `hnroot explain` on a real directory: the decision GRUB would
/// make, and why the reboot would go through the firmware here (no kexec in this kernel, or no
/// loader on this ESP to read its default kernel arguments from); the boot state is untouched.
/// The kexec itself is e2e's kexec-* scenarios, in QEMU.
#[test]
fn reboot_says_what_the_loader_would_boot_and_why_not_by_kexec() {
    let dir = tempfile::tempdir().unwrap();
    let hp = dir.path().join("hostpart");
    std::fs::create_dir(&hp).unwrap();
    let esp = dir.path().join("esp");
    std::fs::create_dir_all(esp.join("hnroot")).unwrap();
    let state = esp.join("hnroot/bootstate");
    image(&hp.join("hn-root.img"), A);
    image(&hp.join("hn-root-new.img"), B);
    let loc = [
        "--hostpart",
        hp.to_str().unwrap(),
        "--bootstate",
        state.to_str().unwrap(),
    ];
    ok(&[&["bootstate", "init"], &loc[..]].concat());
    let before = std::fs::read(&state).unwrap();
    // This machine's kernel decides which reason it is.
    let why = if std::path::Path::new("/sys/kernel/kexec_loaded").exists() {
        "loader-defaults"
    } else {
        "no-kexec"
    };
    let out = hnroot(&[&["reboot", "--kexec", "--dry-run"], &loc[..]].concat());
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(
        t.contains("would boot: booting hn-root-new.img (update, trial 1 of 3)"),
        "{t}"
    );
    assert!(t.contains(&format!("through the firmware ({why})")), "{t}");
    let out = hnroot(&[&["reboot", "--firmware", "--dry-run"], &loc[..]].concat());
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("through the firmware (asked)"),
        "{}",
        text(&out)
    );
    let v = json(&[&["explain", "--json"], &loc[..]].concat());
    assert_eq!(v["kexec"]["firmware"], why, "{v}");
    assert_eq!(
        std::fs::read(&state).unwrap(),
        before,
        "the boot state changed"
    );
    // Without the boot-state file GRUB's decision is not known here: the firmware decides.
    let out = hnroot(&[
        "reboot",
        "--dry-run",
        "--hostpart",
        hp.to_str().unwrap(),
        "--bootstate",
        dir.path().join("nothing/bootstate").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("through the firmware (unobserved)")
            || text(&out).contains(&format!("through the firmware ({why})")),
        "{}",
        text(&out)
    );
}
