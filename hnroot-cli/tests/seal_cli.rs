//! Sealed images and the version floor through the `hnroot` binary: real ext4 images sealed by
//! `hnroot image seal` (veritysetup's tree, a manifest signed by minisign), then `stage`,
//! `mark-good`, `status` and `history` on a hostpart directory; a downgrade refused and allowed;
//! an unsealed image once a floor is set; a seal changed after sealing.

mod support;

use std::path::{Path, PathBuf};

use support::*;

/// A sealed, signed ext4 image of version `version`.
fn sealed(dir: &Path, name: &str, uuid: &str, version: &str, keys: &Keys) -> PathBuf {
    let img = dir.join(name);
    image_sized(&img, uuid, version, 8);
    let before = std::fs::metadata(&img).unwrap().len();
    let out = ok(&[
        "image",
        "seal",
        img.to_str().unwrap(),
        "--sign-key",
        keys.secret.to_str().unwrap(),
        "--public-key",
        keys.public.to_str().unwrap(),
    ]);
    assert!(out.contains(&format!("as version {version}")), "{out}");
    // 2048 data blocks: 16 hash blocks and the root block, then the seal block.
    assert_eq!(
        std::fs::metadata(&img).unwrap().len(),
        before + 17 * 4096 + 4096
    );
    sign(&img, keys, &format!("fleet {version}"));
    img
}

struct Host {
    _dir: tempfile::TempDir,
    hp: PathBuf,
    loc: Vec<String>,
    trusted: PathBuf,
    keys: Keys,
    work: PathBuf,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let hp = dir.path().join("hostpart");
        std::fs::create_dir(&hp).unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let keys = keys(&work, "publisher");
        let trusted = trust(&work, &keys);
        let loc = vec![
            "--hostpart".to_string(),
            hp.display().to_string(),
            "--bootstate".to_string(),
            dir.path().join("bootstate").display().to_string(),
        ];
        Host {
            _dir: dir,
            hp,
            loc,
            trusted,
            keys,
            work,
        }
    }

    fn hn(&self, args: &[&str]) -> std::process::Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(self.loc.iter().map(String::as_str));
        hnroot(&all)
    }

    fn with_keys(&self, args: &[&str]) -> std::process::Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--keys", self.trusted.to_str().unwrap()]);
        self.hn(&all)
    }

    fn floor(&self) -> Option<String> {
        std::fs::read_to_string(self.hp.join("data/hnroot/floor")).ok()
    }
}

fn refused_code(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "refused")
        .map(|v| v["code"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no refused event: {}", text(out)))
}

#[test]
fn the_floor_rises_on_commit_and_refuses_a_downgrade_unless_allowed() {
    let h = Host::new();
    // Version 1.10 sealed, running and committed.
    let v110 = sealed(&h.work, "v110.img", A, "1.10", &h.keys);
    std::fs::copy(&v110, h.hp.join("hn-root.img")).unwrap();
    assert!(h.hn(&["bootstate", "init"]).status.success());
    assert_eq!(
        h.floor(),
        None,
        "no floor before a sealed image is committed"
    );
    let out = h.with_keys(&["mark-good"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("version floor raised to 1.10"),
        "{}",
        text(&out)
    );
    assert_eq!(h.floor().as_deref(), Some("hnroot-floor 1\nversion 1.10\n"));
    // Again: nothing to raise, nothing written.
    let out = h.with_keys(&["mark-good"]);
    assert!(!text(&out).contains("floor raised"), "{}", text(&out));

    // 1.9 is older than 1.10 (versions, not strings): refused, nothing written.
    let v19 = sealed(&h.work, "v19.img", B, "1.9", &h.keys);
    let out = h.with_keys(&["stage", v19.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(refused_code(&out), "downgrade");
    assert!(text(&out).contains("older than 1.10"), "{}", text(&out));
    assert!(!h.hp.join("hn-root-new.img").exists());

    // An unsealed image has no signed version: refused once a floor is set.
    let plain = h.work.join("plain.img");
    image_sized(&plain, C, "99", 8);
    sign(&plain, &h.keys, "fleet 99");
    let out = h.with_keys(&["stage", plain.to_str().unwrap(), "--json"]);
    assert_eq!(refused_code(&out), "unversioned");

    // --allow-downgrade stages it, says so, and the history records it.
    let out = h.with_keys(&["stage", v19.to_str().unwrap(), "--allow-downgrade"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("--allow-downgrade"), "{}", text(&out));
    assert!(h.hp.join("hn-root-new.img").exists());
    let hist = json(&["history", "--json", "--hostpart", h.hp.to_str().unwrap()]);
    let last = hist.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event"], "stage-downgrade");
    assert_eq!(last["uuid"], B);
    // The floor never goes down by itself.
    assert_eq!(h.floor().as_deref(), Some("hnroot-floor 1\nversion 1.10\n"));

    // status shows each image's seal and the floor.
    let v = json(
        &[
            &["status", "--json", "--keys", h.trusted.to_str().unwrap()][..],
            &h.loc.iter().map(String::as_str).collect::<Vec<_>>(),
        ]
        .concat(),
    );
    assert_eq!(v["floor"], "1.10");
    assert_eq!(v["images"]["hn-root.img"]["seal"], "sealed 1.10");
    assert_eq!(v["images"]["hn-root-new.img"]["seal"], "sealed 1.9");
}

#[test]
fn a_newer_sealed_image_stages_and_an_unreadable_floor_is_never_taken_as_none() {
    let h = Host::new();
    let v110 = sealed(&h.work, "v110.img", A, "1.10", &h.keys);
    std::fs::copy(&v110, h.hp.join("hn-root.img")).unwrap();
    assert!(h.hn(&["bootstate", "init"]).status.success());
    assert!(h.with_keys(&["mark-good"]).status.success());
    // A floor write cut short by a power cut leaves at most its temporary file (written, not
    // yet renamed): the floor is still the old one, and the next write replaces the leftover.
    std::fs::write(
        h.hp.join("data/hnroot/.floor.hnroot-new"),
        b"hnroot-floor 1\nversion 0\n",
    )
    .unwrap();
    let v = json(
        &[
            &["status", "--json"][..],
            &h.loc.iter().map(String::as_str).collect::<Vec<_>>(),
        ]
        .concat(),
    );
    assert_eq!(v["floor"], "1.10");
    let v2 = sealed(&h.work, "v2.img", B, "2.0~rc1", &h.keys);
    let out = h.with_keys(&["stage", v2.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::remove_file(h.hp.join("hn-root-new.img")).unwrap();
    // A floor file hnroot cannot read: no stage can tell a downgrade, so every one is refused.
    std::fs::write(h.hp.join("data/hnroot/floor"), b"garbage\n").unwrap();
    let out = h.with_keys(&["stage", v2.to_str().unwrap(), "--json"]);
    assert_eq!(refused_code(&out), "floor-unreadable");
    // mark-good does not replace it either (an operator looks at it first).
    let out = h.with_keys(&["mark-good"]);
    assert!(text(&out).contains("cannot be read"), "{}", text(&out));
    assert_eq!(
        std::fs::read(h.hp.join("data/hnroot/floor")).unwrap(),
        b"garbage\n"
    );
}

#[test]
fn a_seal_changed_after_sealing_is_refused_by_stage() {
    let h = Host::new();
    image(&h.hp.join("hn-root.img"), A);
    let img = sealed(&h.work, "v2.img", B, "2", &h.keys);
    // One byte of the manifest (its version) changed, and the whole file signed again: the
    // file's signature holds, the seal's does not.
    let mut bytes = std::fs::read(&img).unwrap();
    let seal_at = bytes.len() - 4096;
    let manifest = &mut bytes[seal_at + 16..seal_at + 16 + 64];
    let at = manifest
        .windows(15)
        .position(|w| w == b"image-version 2")
        .unwrap();
    manifest[at + 14] = b'9';
    std::fs::write(&img, &bytes).unwrap();
    sign(&img, &h.keys, "fleet 9");
    let out = h.with_keys(&["stage", img.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("seal-bad-signature"), "{}", text(&out));
    // Sealed with a key the server does not trust.
    let other = keys(&h.work, "other");
    let foreign = h.work.join("foreign.img");
    image_sized(&foreign, C, "3", 8);
    assert!(hnroot(&[
        "image",
        "seal",
        foreign.to_str().unwrap(),
        "--sign-key",
        other.secret.to_str().unwrap()
    ])
    .status
    .success());
    sign(&foreign, &h.keys, "fleet 3");
    let out = h.with_keys(&["stage", foreign.to_str().unwrap()]);
    assert!(text(&out).contains("seal-unknown-key"), "{}", text(&out));
    assert!(!h.hp.join("hn-root-new.img").exists());
    // Sealing twice is refused; the image is left as it was.
    let len = std::fs::metadata(&foreign).unwrap().len();
    let out = hnroot(&[
        "image",
        "seal",
        foreign.to_str().unwrap(),
        "--sign-key",
        other.secret.to_str().unwrap(),
    ]);
    assert!(text(&out).contains("sealed already"), "{}", text(&out));
    assert_eq!(std::fs::metadata(&foreign).unwrap().len(), len);
}

#[test]
fn an_image_a_loop_device_uses_is_not_sealed() {
    if !can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path(), "publisher");
    let img = dir.path().join("busy.img");
    image_sized(&img, A, "1", 8);
    let node = String::from_utf8(
        std::process::Command::new("losetup")
            .args(["--find", "--show", "--read-only"])
            .arg(&img)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    assert!(node.starts_with("/dev/loop"), "{node}");
    let out = hnroot(&[
        "image",
        "seal",
        img.to_str().unwrap(),
        "--sign-key",
        k.secret.to_str().unwrap(),
    ]);
    let _ = std::process::Command::new("losetup")
        .args(["-d", &node])
        .status();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains(&format!("backs the loop device {node}")),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::metadata(&img).unwrap().len(),
        8 << 20,
        "nothing appended"
    );
}

/// `status` and `reboot --dry-run` judge hostpart's images as the loader on the ESP does:
/// under the seal policy built into it (`install --esp --keys --require-sealed` puts the
/// trusted key and the marker into its memdisk, read back from the loader's bytes). The
/// unsealed hn-root.img is not bootable there, the sealed hn-root-old.img is what boots, as
/// grub-test shows GRUB deciding; without the marker both boot.
#[test]
fn status_and_reboot_judge_images_under_the_loaders_seal_policy() {
    let Some(kit) = kit() else { return };
    let h = Host::new();
    let esp = h.work.join("esp");
    std::fs::create_dir_all(esp.join("hnroot")).unwrap();
    let old = sealed(
        &h.work,
        "v1.img",
        "4a4a4a4a-1111-4222-8333-444444444444",
        "1",
        &h.keys,
    );
    std::fs::copy(&old, h.hp.join("hn-root-old.img")).unwrap();
    image_sized(
        &h.hp.join("hn-root.img"),
        "5b5b5b5b-1111-4222-8333-444444444444",
        "2",
        8,
    );
    let bootstate = esp.join("hnroot/bootstate");
    let install = |extra: &[&str]| {
        let mut args = vec![
            "install",
            "--esp",
            esp.to_str().unwrap(),
            "--hostpart",
            h.hp.to_str().unwrap(),
            "--kit",
            kit.to_str().unwrap(),
            "--keys",
            h.trusted.to_str().unwrap(),
            "--fleet",
            "/nonexistent",
            "--no-boot-entry",
        ];
        args.extend_from_slice(extra);
        ok(&args);
    };
    let status = || -> serde_json::Value {
        let out = ok(&[
            "status",
            "--json",
            "--hostpart",
            h.hp.to_str().unwrap(),
            "--bootstate",
            bootstate.to_str().unwrap(),
        ]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    install(&["--require-sealed"]);
    let v = status();
    assert_eq!(v["images"]["hn-root.img"]["code"], "unsealed", "{v}");
    assert_eq!(v["images"]["hn-root-old.img"]["code"], "bootable", "{v}");
    assert_eq!(v["image"], "hn-root-old.img", "{v}");
    let reboot = hnroot(&[
        "reboot",
        "--dry-run",
        "--hostpart",
        h.hp.to_str().unwrap(),
        "--bootstate",
        bootstate.to_str().unwrap(),
    ]);
    let said = text(&reboot);
    assert!(
        said.contains("the boot loader would boot: booting hn-root-old.img"),
        "{said}"
    );

    // The same hostpart under a loader without the marker: the unsealed image boots.
    std::fs::remove_file(esp.join("EFI/BOOT/BOOTX64.EFI")).unwrap();
    install(&[]);
    let v = status();
    assert_eq!(v["images"]["hn-root.img"]["code"], "bootable", "{v}");
    assert_eq!(v["image"], "hn-root.img", "{v}");
}

/// A loader update never strands the server: with a sealed `hn-root.img` that the ESP's loader
/// boots (it holds the publisher's key), `hnroot bootloader update` from a system whose key
/// directory lacks that key (the loader it would build could not verify the seal) is refused
/// and the loader stays; with the key it goes ahead.
#[test]
fn a_loader_update_that_would_not_boot_the_sealed_image_is_refused() {
    let Some(kit) = kit() else { return };
    let h = Host::new();
    let esp = h.work.join("esp");
    std::fs::create_dir_all(esp.join("hnroot")).unwrap();
    let img = sealed(
        &h.work,
        "v1.img",
        "6c6c6c6c-1111-4222-8333-444444444444",
        "1",
        &h.keys,
    );
    std::fs::copy(&img, h.hp.join("hn-root.img")).unwrap();
    let no_keys = h.work.join("no-keys");
    std::fs::create_dir_all(&no_keys).unwrap();
    let bootloader = |keys: &Path, extra: &[&str]| {
        let mut args = vec![
            "bootloader",
            "update",
            "--esp",
            esp.to_str().unwrap(),
            "--hostpart",
            h.hp.to_str().unwrap(),
            "--kit",
            kit.to_str().unwrap(),
            "--keys",
            keys.to_str().unwrap(),
            "--fleet",
            "/nonexistent",
        ];
        args.extend_from_slice(extra);
        hnroot(&args)
    };
    // The first loader, with the publisher's key.
    let out = bootloader(&h.trusted, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let loader = esp.join("EFI/BOOT/BOOTX64.EFI");
    let first = std::fs::read(&loader).unwrap();
    // A rebuild without the key would leave hn-root.img unbootable: refused, nothing written.
    let out = bootloader(&no_keys, &[]);
    let said = text(&out);
    assert!(
        !out.status.success() && said.contains("[would-strand]"),
        "{said}"
    );
    assert_eq!(std::fs::read(&loader).unwrap(), first);
    // With the key: up to date.
    let out = bootloader(&h.trusted, &[]);
    assert!(out.status.success(), "{}", text(&out));
}
