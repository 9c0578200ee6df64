//! The operator commands end to end, on real image files made by mkfs.ext4 in a temporary
//! directory standing in for hostpart, with a boot-state file next to it.

use std::path::Path;
use std::process::{Command, Output};

const A: &str = "aaaaaaaa-0000-4000-8000-00000000000a";
const B: &str = "bbbbbbbb-0000-4000-8000-00000000000b";

fn hnroot(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hnroot"))
        .args(args)
        .output()
        .expect("hnroot runs")
}

fn ok(args: &[&str]) -> String {
    let out = hnroot(args);
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn image(path: &Path, uuid: &str) {
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-U", uuid])
        .arg(path)
        .arg("8M")
        .status()
        .unwrap();
    assert!(status.success());
}

fn json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(args)).expect("valid JSON")
}

#[test]
fn stage_explain_mark_good_revert_on_a_real_directory() {
    let dir = tempfile::tempdir().unwrap();
    let hp = dir.path().join("hostpart");
    std::fs::create_dir(&hp).unwrap();
    let state = dir.path().join("bootstate");
    let (hp_s, st_s) = (hp.to_str().unwrap(), state.to_str().unwrap());
    image(&hp.join("hn-root.img"), A);
    let loc = ["--hostpart", hp_s, "--bootstate", st_s];

    // No boot-state file: mark-good refuses clearly; init creates it.
    let out = hnroot(&[&["mark-good"], &loc[..]].concat());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hnroot bootstate init"));
    ok(&[&["bootstate", "init"], &loc[..]].concat());
    let v = json(&[&["explain", "--json"], &loc[..]].concat());
    assert_eq!(
        (v["image"].as_str(), v["reason"].as_str()),
        (Some("hn-root.img"), Some("normal"))
    );
    assert_eq!(v["plan"]["kind"], "normal");

    // Stage a new image: refused when its UUID duplicates hn-root.img, accepted otherwise.
    let dup = dir.path().join("dup.img");
    image(&dup, A);
    let out = hnroot(&[&["stage"], &loc[..], &[dup.to_str().unwrap()]].concat());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("same as hn-root.img"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A download cut short: its superblock is whole, its end is not. Refused, nothing staged.
    let cut = dir.path().join("cut.img");
    image(&cut, B);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cut)
        .unwrap()
        .set_len(6 << 20)
        .unwrap();
    let out = hnroot(&[&["stage"], &loc[..], &[cut.to_str().unwrap()]].concat());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("truncated: its ext4 filesystem spans 8388608 bytes, the file holds 6291456"),
        "{err}"
    );
    assert!(!hp.join("hn-root-new.img").exists());
    assert!(!hp.join(".hn-root-new.img.partial").exists());

    let new = dir.path().join("v2.img");
    image(&new, B);
    let text = ok(&[&["stage"], &loc[..], &[new.to_str().unwrap()]].concat());
    assert!(
        text.contains("next boot: booting hn-root-new.img (update, trial 1 of 3)"),
        "{text}"
    );
    assert!(!hp.join(".hn-root-new.img.partial").exists());

    let v = json(&[&["explain", "--json"], &loc[..]].concat());
    assert_eq!(v["image"], "hn-root-new.img");
    assert_eq!(v["reason"], "update");
    assert_eq!(
        (v["attempt"].as_u64(), v["of"].as_u64()),
        (Some(1), Some(3))
    );
    assert_eq!(v["fallbacks"], serde_json::json!(["hn-root.img"]));
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

    // Revert with no old image: the next boot refuses it (and says so).
    let text = ok(&[&["revert"], &loc[..]].concat());
    assert!(text.contains("no readable hn-root-old.img"), "{text}");
    assert!(hp.join("system-revert").exists());
    let v = json(&[&["explain", "--json"], &loc[..]].concat());
    assert_eq!(v["reason"], "revert-refused");
    assert!(v["notes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n.as_str().unwrap().contains("cancelled by system-revert")));
    std::fs::remove_file(hp.join("system-revert")).unwrap();

    // mark-good (not pinned by a kernel command line here: hn-root.img is taken as running).
    let text = ok(&[&["mark-good"], &loc[..]].concat());
    assert!(text.contains("already recorded as good"), "{text}");
}

#[test]
fn garbage_and_symlinks_are_reported_unusable_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let hp = dir.path();
    image(&hp.join("elsewhere.img"), B);
    std::fs::write(hp.join("hn-root.img"), vec![0u8; 200_000]).unwrap();
    std::os::unix::fs::symlink(hp.join("elsewhere.img"), hp.join("hn-root-new.img")).unwrap();
    let out = hnroot(&[
        "explain",
        "--json",
        "--hostpart",
        hp.to_str().unwrap(),
        "--bootstate",
        "/nonexistent/bootstate",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "nothing bootable is its own exit status"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["images"]["hn-root.img"]["state"], "unreadable");
    assert!(v["images"]["hn-root-new.img"]["why"]
        .as_str()
        .unwrap()
        .contains("symbolic link"));
    assert_eq!(v["reason"], "nothing-bootable");
    assert_eq!(v["boot_state"]["status"], "absent");
    let out = hnroot(&[
        "explain",
        "--hostpart",
        hp.to_str().unwrap(),
        "--bootstate",
        "/nonexistent/bootstate",
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing bootable"));
}
