//! `hnroot install` on real block devices: blank disk files attached with `losetup -P`, images
//! made by mkfs and signed by minisign. Refusals leave the disk as it was; a full install is
//! read back with the tools a sysadmin would use (sgdisk, blkid, mount). The full install needs
//! the loader kit (hnroot's GRUB; `cargo xtask test` builds it and hands it over in
//! HNROOT_GRUB_KIT); the QEMU boot of an installed disk is e2e's `install` scenario. Also
//! `hnroot bootloader status|update` against a directory ESP.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

fn run(argv: &[&str]) -> String {
    let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A blank disk file of `mib` MiB attached with partition scanning; detached when dropped.
struct LoopDisk {
    _dir: tempfile::TempDir,
    file: PathBuf,
    node: String,
}

impl LoopDisk {
    fn new(mib: u64) -> LoopDisk {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("disk.img");
        std::fs::File::create(&file)
            .unwrap()
            .set_len(mib << 20)
            .unwrap();
        let node = run(&["losetup", "--find", "--show", "-P", file.to_str().unwrap()])
            .trim()
            .to_owned();
        LoopDisk {
            _dir: dir,
            file,
            node,
        }
    }

    /// Whether every byte of the disk file is zero (nothing was written).
    fn untouched(&self) -> bool {
        let _ = Command::new("sync").status();
        let data = std::fs::read(&self.file).unwrap();
        data.iter().all(|b| *b == 0)
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.node]).status();
    }
}

/// A signed 8 MiB image, the trusted-keys directory, and a scratch directory.
struct Signed {
    dir: tempfile::TempDir,
    image: PathBuf,
    keys: PathBuf,
}

fn signed_image() -> Signed {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("v1.img");
    image_sized(&image, A, "1", 8);
    let k = keys(dir.path(), "publisher");
    sign(&image, &k, "fleet v1");
    let keys = trust(dir.path(), &k);
    Signed { dir, image, keys }
}

#[test]
fn refusals_name_the_reason_and_write_nothing() {
    if !can_mount() {
        return;
    }
    let s = signed_image();
    let keys = s.keys.to_str().unwrap();
    let img = s.image.to_str().unwrap();
    let disk = LoopDisk::new(1024);
    let base = [
        "install", "--disk", &disk.node, "--image", img, "--keys", keys,
    ];

    // No --yes.
    let out = hnroot(&base);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("[not-confirmed]") && t.contains("--yes"), "{t}");
    assert!(t.contains("nothing was written"), "{t}");
    assert!(disk.untouched());

    // Too small: 64 MiB cannot hold the ESP and three images.
    let small = LoopDisk::new(64);
    let out = hnroot(&[
        "install",
        "--disk",
        &small.node,
        "--image",
        img,
        "--keys",
        keys,
        "--yes",
    ]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("[disk-too-small]") && t.contains("has 64 MiB"),
        "{t}"
    );
    assert!(small.untouched());

    // A partition instead of a disk; a regular file instead of a device.
    let out = hnroot(&[
        "install", "--disk", img, "--image", img, "--keys", keys, "--yes",
    ]);
    assert!(text(&out).contains("not a block device"), "{}", text(&out));

    // Mounted: a filesystem on the whole disk, mounted.
    run(&["mkfs.ext4", "-q", "-F", &disk.node]);
    let mnt = s.dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    run(&["mount", &disk.node, mnt.to_str().unwrap()]);
    let fs_uuid = blkid(&disk.node, "UUID");
    let out = hnroot(&[
        "install", "--disk", &disk.node, "--image", img, "--keys", keys, "--yes",
    ]);
    run(&["umount", mnt.to_str().unwrap()]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("[disk-mounted]") && t.contains(&format!("mounted at {}", mnt.display())),
        "{t}"
    );
    assert_eq!(
        blkid(&disk.node, "UUID"),
        fs_uuid,
        "the filesystem is still there"
    );
    let table = Command::new("sgdisk")
        .arg("-p")
        .arg(&disk.node)
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&table.stdout).contains("EF00"),
        "no partition table was written"
    );

    // An unsigned image is refused before anything else.
    let unsigned = s.dir.path().join("unsigned.img");
    image_sized(&unsigned, B, "2", 8);
    let fresh = LoopDisk::new(1024);
    let out = hnroot(&[
        "install",
        "--disk",
        &fresh.node,
        "--image",
        unsigned.to_str().unwrap(),
        "--keys",
        keys,
        "--yes",
    ]);
    let t = text(&out);
    assert!(!out.status.success() && t.contains("signature"), "{t}");
    assert!(fresh.untouched());
}

/// A loop device over the disk, or over one of its partitions (mounted or not), holds it:
/// loop devices never show in `holders/`, so the in-use check asks every loop device what
/// backs it. Refused before a byte is written, naming the loop device.
#[test]
fn a_loop_device_stacked_on_the_disk_is_seen() {
    if !can_mount() {
        return;
    }
    let s = signed_image();
    let keys = s.keys.to_str().unwrap();
    let img = s.image.to_str().unwrap();
    let disk = LoopDisk::new(1024);
    let install = |node: &str| {
        hnroot(&[
            "install", "--disk", node, "--image", img, "--keys", keys, "--yes",
        ])
    };
    // A loop device over the whole disk, nothing mounted.
    let over = run(&["losetup", "--find", "--show", &disk.node])
        .trim()
        .to_owned();
    let out = install(&disk.node);
    let _ = Command::new("losetup").args(["-d", &over]).status();
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("[disk-held]") && t.contains(&format!("{over} is a loop device over")),
        "{t}"
    );
    assert!(disk.untouched());

    // Partitions, a filesystem on the second, a loop device over that partition, mounted.
    run(&["sgdisk", "--new=1:2048:+64M", "--new=2:0:0", &disk.node]);
    run(&["partx", "--update", &disk.node]);
    let part = format!("{}p2", disk.node);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !Path::new(&part).exists() {
        assert!(std::time::Instant::now() < deadline, "no {part}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    run(&["mkfs.ext4", "-q", "-F", &part]);
    let stacked = run(&["losetup", "--find", "--show", &part])
        .trim()
        .to_owned();
    let mnt = s.dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    run(&["mount", &stacked, mnt.to_str().unwrap()]);
    let table_before = run(&["sgdisk", "-p", &disk.node]);
    let out = install(&disk.node);
    run(&["umount", mnt.to_str().unwrap()]);
    let _ = Command::new("losetup").args(["-d", &stacked]).status();
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    let name = Path::new(&part).file_name().unwrap().to_str().unwrap();
    assert!(
        t.contains("[disk-held]") && t.contains(&format!("{stacked} is a loop device over {name}")),
        "{t}"
    );
    assert_eq!(
        run(&["sgdisk", "-p", &disk.node]),
        table_before,
        "nothing written"
    );
}

/// A copy of the loader kit at `to` whose version record says hnroot 99.0.0 (a newer hnroot's).
fn newer_kit(kit: &Path, to: &Path) {
    kit_of_version(kit, to, "99.0.0");
}

/// A copy of the loader kit at `to` whose record says hnroot `version`.
fn kit_of_version(kit: &Path, to: &Path, version: &str) {
    copy_kit(kit, to);
    let record = std::fs::read_to_string(to.join("loader-record")).unwrap();
    let mine = record
        .lines()
        .find(|l| l.starts_with("hnroot "))
        .unwrap()
        .to_owned();
    std::fs::write(
        to.join("loader-record"),
        record.replace(&mine, &format!("hnroot {version}")),
    )
    .unwrap();
}

/// A copy of the loader kit at `to`, to change one part of.
fn copy_kit(kit: &Path, to: &Path) {
    run(&["cp", "-a", kit.to_str().unwrap(), to.to_str().unwrap()]);
}

#[test]
fn a_module_built_for_another_grub_is_refused_naming_both() {
    if !can_mount() {
        return;
    }
    let Some(real) = kit() else { return };
    let s = signed_image();
    let disk = LoopDisk::new(1024);
    let kit = s.dir.path().join("kit");
    copy_kit(&real, &kit);
    let info = kit.join("x86_64-efi/modinfo.sh");
    let text_before = std::fs::read_to_string(&info).unwrap();
    let built_for = text_before
        .lines()
        .find_map(|l| {
            l.strip_prefix("grub_package_version=")
                .map(|v| v.trim_matches('"').to_owned())
        })
        .unwrap();
    std::fs::write(&info, text_before.replace(&built_for, "2.12-9+deb13u4")).unwrap();
    let out = hnroot(&[
        "install",
        "--disk",
        &disk.node,
        "--image",
        s.image.to_str().unwrap(),
        "--keys",
        s.keys.to_str().unwrap(),
        "--kit",
        kit.to_str().unwrap(),
        "--dry-run",
    ]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains(&built_for) && t.contains("2.12-9+deb13u4") && t.contains("nothing was written"),
        "{t}"
    );
    assert!(disk.untouched());
}

#[test]
fn a_missing_image_builder_is_refused_before_the_disk_is_touched() {
    if !can_mount() {
        return;
    }
    let Some(real) = kit() else {
        return;
    };
    let s = signed_image();
    let disk = LoopDisk::new(1024);
    let kit = s.dir.path().join("kit");
    copy_kit(&real, &kit);
    let missing = kit.join("grub-mkimage");
    std::fs::remove_file(&missing).unwrap();
    let out = hnroot(&[
        "install",
        "--disk",
        &disk.node,
        "--image",
        s.image.to_str().unwrap(),
        "--keys",
        s.keys.to_str().unwrap(),
        "--kit",
        kit.to_str().unwrap(),
        "--yes",
    ]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains(&missing.display().to_string())
            && t.contains("no executable file")
            && t.contains("nothing was written"),
        "{t}"
    );
    assert!(disk.untouched());
}

/// `hnroot bootloader status` and `update` on an ESP directory (the build machine's kernel may
/// have no FAT driver: a directory stands in for the mounted ESP; the QEMU suites update a real
/// FAT ESP): an empty ESP gets the loader, an up-to-date one is left alone, a newer one is not
/// downgraded without --allow-downgrade, and a loader that cannot read the ESP's boot-state
/// format is refused even then. Each loader is built by the kit's own grub-mkimage.
#[test]
fn the_bootloader_is_updated_only_to_a_newer_compatible_one() {
    let Some(real) = kit() else { return };
    let dir = tempfile::tempdir().unwrap();
    let esp = dir.path().join("esp");
    let hp = dir.path().join("hostpart");
    std::fs::create_dir_all(esp.join("hnroot")).unwrap();
    std::fs::create_dir_all(&hp).unwrap();
    let at = |kit: &Path| -> Vec<String> {
        [
            "--esp",
            esp.to_str().unwrap(),
            "--kit",
            kit.to_str().unwrap(),
            "--fleet",
            dir.path().join("no-fleet").to_str().unwrap(),
            "--hostpart",
            hp.to_str().unwrap(),
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let cmd = |verb: &str, kit: &Path, extra: &[&str]| {
        let mut v: Vec<String> = vec!["bootloader".into(), verb.into()];
        v.extend(at(kit));
        v.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        hnroot(&refs)
    };
    let json = |kit: &Path| -> serde_json::Value {
        let out = cmd("status", kit, &["--json"]);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    // A boot-state file of format 2, as this hnroot's loader writes it.
    let mut state = [0u8; hnroot_core::bootstate::BLOCK_LEN];
    state[..hnroot_core::bootstate::BLOCK_LEN / 2].copy_from_slice(
        &hnroot_core::bootstate::encode_copy_as(
            &hnroot_core::bootstate::Record {
                sequence: 1,
                state: hnroot_core::BootState::committed(hnroot_core::FsUuid::parse(A).unwrap()),
            },
            2,
        ),
    );
    std::fs::write(esp.join("hnroot/bootstate"), state).unwrap();

    let v = json(&real);
    assert_eq!(v["esp_loader"]["state"], "absent", "{v}");
    assert_eq!(v["update"]["kind"], "install", "{v}");
    assert_eq!(v["esp_bootstate_format"], 2, "{v}");
    let out = cmd("update", &real, &["--dry-run"]);
    assert!(text(&out).contains("nothing was written"), "{}", text(&out));
    assert!(!esp.join("EFI/BOOT/BOOTX64.EFI").exists());
    let out = cmd("update", &real, &[]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("step 5/5: verify-in-place"), "{t}");
    let v = json(&real);
    assert_eq!(v["esp_loader"]["state"], "recorded", "{v}");
    assert_eq!(v["esp_loader"], v["carried"], "{v}");
    assert_eq!(v["update"]["kind"], "up-to-date", "{v}");
    let installed = std::fs::read(esp.join("EFI/BOOT/BOOTX64.EFI")).unwrap();
    let t = text(&cmd("update", &real, &[]));
    assert!(t.contains("nothing written"), "{t}");

    // A newer hnroot's loader on the ESP: this one is older.
    let newer = dir.path().join("newer-kit");
    newer_kit(&real, &newer);
    let t = text(&cmd("update", &newer, &[]));
    assert!(t.contains("step 6/6: keep-previous"), "{t}");
    assert!(esp.join("EFI/BOOT/hnroot-previous.efi").is_file());
    assert_eq!(
        std::fs::read(esp.join("EFI/BOOT/hnroot-previous.efi")).unwrap(),
        installed
    );
    let out = cmd("update", &real, &[]);
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("[downgrade]") && t.contains("99.0.0"),
        "{t}"
    );
    let t = text(&cmd("update", &real, &["--allow-downgrade"]));
    assert!(
        t.contains("downgrade (") && t.contains("keep-previous"),
        "{t}"
    );
    assert_eq!(
        std::fs::read(esp.join("EFI/BOOT/BOOTX64.EFI")).unwrap(),
        installed
    );

    // A loader that reads only boot-state format 3 never replaces one on an ESP of format 2.
    let unreadable = dir.path().join("format3-kit");
    copy_kit(&newer, &unreadable);
    let record = std::fs::read_to_string(unreadable.join("loader-record")).unwrap();
    assert!(record.contains("bootstate-reads 1-2"), "{record}");
    std::fs::write(
        unreadable.join("loader-record"),
        record.replace("bootstate-reads 1-2", "bootstate-reads 3-3"),
    )
    .unwrap();
    let out = cmd("update", &unreadable, &["--allow-downgrade"]);
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("[cannot-read-state]"),
        "{t}"
    );
    assert_eq!(
        std::fs::read(esp.join("EFI/BOOT/BOOTX64.EFI")).unwrap(),
        installed
    );

    // The service's mode on a machine whose boot is not committed (no image on hostpart).
    let t = text(&cmd("update", &newer, &["--if-committed"]));
    assert!(
        t.contains("[not-committed]") && t.contains("nothing written"),
        "{t}"
    );
    assert_eq!(
        std::fs::read(esp.join("EFI/BOOT/BOOTX64.EFI")).unwrap(),
        installed
    );

    // The service on a committed boot of an older image (after a revert, say): the newer
    // loader stays, and the unit does not fail.
    let t = text(&cmd("update", &newer, &[]));
    assert!(t.contains("upgrade ("), "{t}");
    let newer_bytes = std::fs::read(esp.join("EFI/BOOT/BOOTX64.EFI")).unwrap();
    image_sized(&hp.join("hn-root.img"), A, "1", 8);
    let state_path = esp.join("hnroot/bootstate");
    let out = cmd(
        "update",
        &real,
        &[
            "--if-committed",
            "--bootstate",
            state_path.to_str().unwrap(),
        ],
    );
    let t = text(&out);
    assert!(
        out.status.success() && t.contains("[downgrade]") && t.contains("nothing written"),
        "{t}"
    );
    assert_eq!(
        std::fs::read(esp.join("EFI/BOOT/BOOTX64.EFI")).unwrap(),
        newer_bytes
    );
}

fn blkid(node: &str, tag: &str) -> String {
    run(&["blkid", "-p", "-s", tag, "-o", "value", node])
        .trim()
        .to_owned()
}

#[test]
fn install_onto_a_blank_disk_then_the_esp_part_again() {
    if !can_mount() {
        return;
    }
    let Some(kit) = kit() else { return };
    let s = signed_image();
    // Sealed (then signed again as a whole): the first image sets the version floor.
    let secret = s.dir.path().join("publisher.key");
    ok(&[
        "image",
        "seal",
        s.image.to_str().unwrap(),
        "--sign-key",
        secret.to_str().unwrap(),
    ]);
    let k = Keys {
        public: s.dir.path().join("publisher.pub"),
        secret,
    };
    sign(&s.image, &k, "fleet v1 sealed");
    let disk = LoopDisk::new(1024);
    let common = [
        "--image",
        s.image.to_str().unwrap(),
        "--keys",
        s.keys.to_str().unwrap(),
        "--kit",
        kit.to_str().unwrap(),
    ];
    let mut dry = vec!["install", "--disk", &disk.node, "--dry-run"];
    dry.extend_from_slice(&common);
    let t = ok(&dry);
    assert!(t.contains("plan 1/7: wipe the disk's signatures"), "{t}");
    assert!(t.contains("nothing was written"), "{t}");
    assert!(disk.untouched(), "a dry run writes nothing");
    // Counting settings out of range, on the command line or in the fleet's file, are refused
    // before anything is written, naming what was wrong.
    let mut bad = dry.clone();
    bad.extend_from_slice(&["--boot-limit", "0"]);
    let out = hnroot(&bad);
    assert!(
        !out.status.success()
            && text(&out).contains("boot-limit must be a whole number from 1 to 100"),
        "{}",
        text(&out)
    );
    let fleet = s.dir.path().join("fleet");
    std::fs::create_dir_all(&fleet).unwrap();
    std::fs::write(fleet.join("counting"), "tries=3\nwait-max=0\n").unwrap();
    let mut bad = dry.clone();
    bad.extend_from_slice(&["--fleet", fleet.to_str().unwrap()]);
    let out = hnroot(&bad);
    assert!(
        !out.status.success()
            && text(&out).contains(
                "fleet/counting: line 2: wait-max must be a whole number from 1 to 86400; no \
                 loader was built"
            ),
        "{}",
        text(&out)
    );
    // So is a menu countdown out of range, given or in the fleet's file.
    let mut bad = dry.clone();
    bad.extend_from_slice(&["--menu-timeout", "601"]);
    let out = hnroot(&bad);
    assert!(
        !out.status.success()
            && text(&out)
                .contains("--menu-timeout must be a whole number of seconds from 0 to 600"),
        "{}",
        text(&out)
    );
    let fleet_menu = s.dir.path().join("fleet-menu");
    std::fs::create_dir_all(&fleet_menu).unwrap();
    std::fs::write(fleet_menu.join("menu-timeout"), "2 s\n").unwrap();
    let mut bad = dry.clone();
    bad.extend_from_slice(&["--fleet", fleet_menu.to_str().unwrap()]);
    let out = hnroot(&bad);
    assert!(
        !out.status.success()
            && text(&out).contains(
                "fleet-menu/menu-timeout: line 1: expected a whole number of seconds from 0 to \
                 600; no loader was built"
            ),
        "{}",
        text(&out)
    );
    assert!(disk.untouched(), "refused installs write nothing");

    let mut real = vec![
        "install",
        "--disk",
        &disk.node,
        "--yes",
        "--hostpart-fs",
        "ext4",
        "--require-sealed",
        "--boot-limit",
        "2",
        "--tries",
        "5",
        "--menu-timeout",
        "5",
    ];
    real.extend_from_slice(&common);
    let t = ok(&real);
    assert!(t.contains("is an hnroot disk"), "{t}");
    assert!(t.contains("in the loader the menu waits 5 s"), "{t}");
    assert!(
        t.contains("the loader counts with tries 5, boot limit 2, waits 60 s doubling to 1800 s"),
        "{t}"
    );
    assert!(t.contains("no firmware boot entry: "), "{t}");

    // What a sysadmin would check.
    let table = run(&["sgdisk", "-p", &disk.node]);
    assert!(
        table.contains("EF00") && table.contains("EFI-BOOT"),
        "{table}"
    );
    assert!(
        table.contains("8300") && table.contains("hostpart"),
        "{table}"
    );
    let p1 = format!("{}p1", disk.node);
    let p2 = format!("{}p2", disk.node);
    assert_eq!(blkid(&p1, "TYPE"), "vfat");
    assert_eq!(blkid(&p1, "LABEL"), "EFI-BOOT");
    assert_eq!(blkid(&p2, "TYPE"), "ext4");
    assert_eq!(blkid(&p2, "LABEL"), "hostpart");

    let esp = s.dir.path().join("esp");
    let hp = s.dir.path().join("hostpart");
    std::fs::create_dir_all(&esp).unwrap();
    std::fs::create_dir_all(&hp).unwrap();
    // This sandbox's kernel has no FAT driver (nor need install): read the ESP with mtools.
    let out = Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-s", "-n", "-i", &p1, "::/EFI", "::/hnroot"])
        .arg(&esp)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    run(&["mount", &p2, hp.to_str().unwrap()]);
    let check = || -> Result<(), String> {
        assert_eq!(blkid(hp.join("hn-root.img").to_str().unwrap(), "UUID"), A);
        assert!(hp.join("data/hnroot/history").is_file());
        assert_eq!(
            std::fs::read_to_string(hp.join("data/hnroot/floor")).map_err(|e| e.to_string())?,
            "hnroot-floor 1\nversion 1\n"
        );
        let efi = std::fs::read(esp.join("EFI/BOOT/BOOTX64.EFI")).map_err(|e| e.to_string())?;
        assert!(
            efi.windows(13).any(|w| w == b"hnroot_decide"),
            "GRUB carries hnroot.mod"
        );
        assert!(efi.windows(7).any(|w| w == b"hnroot,"), "SBAT names hnroot");
        // The trusted key and the require-sealed marker are in the loader's memdisk.
        let public = std::fs::read_to_string(s.dir.path().join("publisher.pub")).unwrap();
        let key_line = public.lines().nth(1).unwrap().as_bytes();
        assert!(
            efi.windows(key_line.len()).any(|w| w == key_line),
            "the loader carries the publisher's key"
        );
        assert!(
            efi.windows(21).any(|w| w == b"hnroot/require-sealed"),
            "the loader carries require-sealed"
        );
        let status = ok(&[
            "status",
            "--json",
            "--hostpart",
            hp.to_str().unwrap(),
            "--bootstate",
            esp.join("hnroot/bootstate").to_str().unwrap(),
        ]);
        let v: serde_json::Value = serde_json::from_str(&status).map_err(|e| e.to_string())?;
        let state = v["boot_state"].to_string();
        assert!(state.contains(A), "{status}");
        // The counting settings given at install are in the loader's memdisk, and `hnroot
        // status` reads them from the ESP's loader as GRUB will.
        assert!(
            efi.windows(26)
                .any(|w| w == b"tries=5\nboot-limit=2\nwait-".as_slice()),
            "the loader carries the counting settings"
        );
        assert_eq!(
            v["counting"],
            serde_json::json!({ "tries": 5, "boot_limit": 2, "wait_first": 60, "wait_max": 1800 }),
            "{status}"
        );
        assert_eq!(v["counting_source"], "loader", "{status}");
        // The countdown given at install, as GRUB will read it from the memdisk (and status
        // says it).
        assert_eq!(v["menu_timeout"], 5, "{status}");
        assert_eq!(
            hnroot_linux::esp_loader::menu_timeout_of(&efi),
            Ok((5, None)),
            "the loader carries the menu countdown"
        );
        let history = ok(&["history", "--hostpart", hp.to_str().unwrap()]);
        assert!(history.contains("installed"), "{history}");

        // A loader update from images whose loader directory states neither keeps what the
        // install built in: the require-sealed marker and the counting settings. An images'
        // own counting file wins over the ESP's (what `bootloader status` says an update would
        // keep), require-sealed is kept whatever the images say.
        let newer = s.dir.path().join("newer-kit");
        newer_kit(&kit, &newer);
        let (no_fleet, fleet) = (s.dir.path().join("no-fleet"), s.dir.path().join("fleet4"));
        std::fs::create_dir_all(&no_fleet).unwrap();
        std::fs::create_dir_all(&fleet).unwrap();
        std::fs::write(fleet.join("counting"), "boot-limit=4\n").unwrap();
        let state = esp.join("hnroot/bootstate");
        let loader_cmd = |what: &str, fleet: &Path, json: bool| {
            let mut v = vec![
                "bootloader",
                what,
                "--esp",
                esp.to_str().unwrap(),
                "--kit",
                newer.to_str().unwrap(),
                "--fleet",
                fleet.to_str().unwrap(),
                "--keys",
                s.keys.to_str().unwrap(),
                "--hostpart",
                hp.to_str().unwrap(),
                "--bootstate",
                state.to_str().unwrap(),
            ];
            if json {
                v.push("--json");
            }
            ok(&v)
        };
        let seen = loader_cmd("status", &fleet, true);
        let v: serde_json::Value = serde_json::from_str(&seen).map_err(|e| e.to_string())?;
        assert_eq!(v["esp_menu_timeout"], 5, "{seen}");
        let kept = v["kept_from_esp"].as_array().cloned().unwrap_or_default();
        // The images' counting file wins; require-sealed and the countdown are kept.
        let kept: Vec<&str> = kept.iter().filter_map(|k| k.as_str()).collect();
        assert!(
            kept.len() == 2
                && kept[0].contains("requires sealed images")
                && kept[1].contains("the menu waits 5 s"),
            "{seen}"
        );
        let t = loader_cmd("update", &no_fleet, false);
        assert!(
            t.contains("the new loader requires sealed images, as the ESP's does")
                && t.contains(
                    "the new loader counts as the ESP's does, tries 5, boot limit 2, waits 60 s \
                     doubling to 1800 s"
                )
                && t.contains("in the new loader the menu waits 5 s, as in the ESP's")
                && t.contains("the ESP's loader is now hnroot 99.0.0"),
            "{t}"
        );
        let updated = std::fs::read(esp.join("EFI/BOOT/BOOTX64.EFI")).map_err(|e| e.to_string())?;
        assert!(updated != efi, "the loader was replaced");
        assert!(
            updated
                .windows(26)
                .any(|w| w == b"tries=5\nboot-limit=2\nwait-".as_slice())
                && updated.windows(21).any(|w| w == b"hnroot/require-sealed"),
            "the updated loader keeps the install's counting file and require-sealed"
        );
        assert_eq!(
            hnroot_linux::esp_loader::menu_timeout_of(&updated),
            Ok((5, None)),
            "the updated loader keeps the install's menu countdown"
        );

        // --esp on this layout (the ESP's files, copied out, stand in for a mounted ESP): GRUB
        // rewritten, the valid boot state kept.
        std::fs::remove_file(esp.join("EFI/BOOT/BOOTX64.EFI")).map_err(|e| e.to_string())?;
        let t = ok(&[
            "install",
            "--esp",
            esp.to_str().unwrap(),
            "--hostpart",
            hp.to_str().unwrap(),
            "--kit",
            kit.to_str().unwrap(),
        ]);
        assert!(t.contains("kept"), "{t}");
        assert!(esp.join("EFI/BOOT/BOOTX64.EFI").is_file());
        // A second install onto the now-used disk is refused: its partitions are mounted.
        let mut again = vec!["install", "--disk", &disk.node, "--yes"];
        again.extend_from_slice(&common);
        let out = hnroot(&again);
        assert!(text(&out).contains("[disk-mounted]"), "{}", text(&out));
        Ok(())
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check));
    run(&["umount", hp.to_str().unwrap()]);
    result.unwrap().unwrap();
}

#[test]
fn an_esp_install_without_an_image_on_hostpart_is_refused() {
    let Some(kit) = kit() else { return };
    let dir = tempfile::tempdir().unwrap();
    let esp = dir.path().join("esp");
    let hp = dir.path().join("hostpart");
    std::fs::create_dir_all(&esp).unwrap();
    std::fs::create_dir_all(&hp).unwrap();
    let out = hnroot(&[
        "install",
        "--esp",
        esp.to_str().unwrap(),
        "--hostpart",
        hp.to_str().unwrap(),
        "--kit",
        kit.to_str().unwrap(),
    ]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("hn-root.img is missing"), "{t}");
    assert!(!Path::new(&esp.join("EFI")).exists(), "nothing written");
}

/// Secure Boot: `hnroot bootloader update --sign-key --sign-cert` signs the loader (`sbsign`,
/// checked here with `sbverify` and the core's reading of the PE certificate table), only when
/// the loader requires sealed images; and a signed loader on the ESP is never replaced by an
/// unsigned one (the firmware would refuse it: the server would not boot).
#[test]
fn a_secure_boot_loader_requires_seals_and_is_never_replaced_unsigned() {
    let Some(real) = kit() else { return };
    let dir = tempfile::tempdir().unwrap();
    let esp = dir.path().join("esp");
    let hp = dir.path().join("hostpart");
    let fleet = dir.path().join("fleet");
    std::fs::create_dir_all(esp.join("hnroot")).unwrap();
    std::fs::create_dir_all(&hp).unwrap();
    std::fs::create_dir_all(&fleet).unwrap();
    let db_key = |name: &str| {
        let (key, cert) = (
            dir.path().join(format!("{name}.key")),
            dir.path().join(format!("{name}.crt")),
        );
        run(&[
            "openssl",
            "req",
            "-new",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-sha256",
            "-days",
            "30",
            "-subj",
            &format!("/CN=hnroot CLI test {name}/"),
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ]);
        (key, cert)
    };
    let (key, cert) = db_key("db");
    // `hnroot bootloader WHAT` from a kit and a fleet directory, with the keys of `dir`.
    let bootloader = |what: &str, kit: &Path, fleet: &Path, extra: &[&str]| {
        let mut v: Vec<&str> = vec![
            "bootloader",
            what,
            "--kit",
            kit.to_str().unwrap(),
            "--fleet",
            fleet.to_str().unwrap(),
            "--keys",
            dir.path().to_str().unwrap(),
        ];
        v.extend_from_slice(extra);
        hnroot(&v)
    };
    let update = |kit: &Path, extra: &[&str]| {
        let mut v = vec![
            "--esp",
            esp.to_str().unwrap(),
            "--hostpart",
            hp.to_str().unwrap(),
        ];
        v.extend_from_slice(extra);
        bootloader("update", kit, &fleet, &v)
    };
    let signing = [
        "--sign-key",
        key.to_str().unwrap(),
        "--sign-cert",
        cert.to_str().unwrap(),
    ];
    let loader = esp.join("EFI/BOOT/BOOTX64.EFI");

    // Signed, but the loader would boot unsealed images: refused before anything is built.
    let out = update(&real, &signing);
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("[signed-without-seals]"),
        "{t}"
    );
    assert!(!loader.exists(), "nothing may be written: {t}");

    // With the fleet's require-sealed marker: signed, and sbverify accepts it with the cert.
    std::fs::write(fleet.join("require-sealed"), "1\n").unwrap();
    let out = update(&real, &signing);
    assert!(out.status.success(), "{}", text(&out));
    let signed = std::fs::read(&loader).unwrap();
    assert_eq!(hnroot_core::loader::authenticode_signed(&signed), Ok(true));
    run(&[
        "sbverify",
        "--cert",
        cert.to_str().unwrap(),
        loader.to_str().unwrap(),
    ]);

    // A newer kit without signing: the signed loader stays.
    let newer = dir.path().join("newer-kit");
    newer_kit(&real, &newer);
    let out = update(&newer, &[]);
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("[would-be-unsigned]"),
        "{t}"
    );
    assert_eq!(std::fs::read(&loader).unwrap(), signed);
    // Signed, the newer one replaces it.
    let out = update(&newer, &signing);
    assert!(out.status.success(), "{}", text(&out));
    let now = std::fs::read(&loader).unwrap();
    assert_ne!(now, signed);
    assert_eq!(hnroot_core::loader::authenticode_signed(&now), Ok(true));
    assert_eq!(
        std::fs::read(esp.join("EFI/BOOT/hnroot-previous.efi")).unwrap(),
        signed
    );
    // The publisher's presigned loader (`hnroot bootloader presign`), for a server without the
    // key: written only when it is signed by the ESP's loader's certificate and built as this
    // server's loader would be; each refusal leaves the ESP's loader as it is.
    let newest = dir.path().join("newest-kit");
    kit_of_version(&real, &newest, "100.0.0");
    let presign = |kit: &Path, fleet: &Path, key: &Path, cert: &Path, name: &str| {
        let out = dir.path().join(name);
        let said = bootloader(
            "presign",
            kit,
            fleet,
            &[
                "--sign-key",
                key.to_str().unwrap(),
                "--sign-cert",
                cert.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
        );
        assert!(
            said.status.success() && text(&said).contains("presigned loader hnroot "),
            "{}",
            text(&said)
        );
        out
    };
    let (other_key, other_cert) = db_key("other-db");
    let menu_fleet = dir.path().join("menu-fleet");
    std::fs::create_dir_all(&menu_fleet).unwrap();
    std::fs::write(menu_fleet.join("require-sealed"), "1\n").unwrap();
    std::fs::write(menu_fleet.join("menu-timeout"), "0\n").unwrap();
    let cases = [
        (
            presign(&newest, &fleet, &other_key, &other_cert, "other-signer.efi"),
            "[presigned-other-signer]",
        ),
        (
            presign(&newest, &menu_fleet, &key, &cert, "other-settings.efi"),
            "[presigned-other-settings]",
        ),
        (
            presign(&newer, &fleet, &key, &cert, "other-build.efi"),
            "[presigned-other-build]",
        ),
    ];
    for (file, code) in &cases {
        let out = update(&newest, &["--presigned", file.to_str().unwrap()]);
        let t = text(&out);
        assert!(!out.status.success() && t.contains(code), "{code}: {t}");
        assert_eq!(
            std::fs::read(&loader).unwrap(),
            now,
            "{code}: nothing written"
        );
    }
    // A link at the output's name is replaced, never written through.
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"not a loader").unwrap();
    std::os::unix::fs::symlink(&victim, dir.path().join("presigned.efi")).unwrap();
    let good = presign(&newest, &fleet, &key, &cert, "presigned.efi");
    assert_eq!(std::fs::read(&victim).unwrap(), b"not a loader");
    assert!(std::fs::symlink_metadata(&good).unwrap().is_file());
    let out = update(&newest, &["--presigned", good.to_str().unwrap()]);
    let t = text(&out);
    assert!(
        out.status.success()
            && t.contains("the image's presigned loader")
            && t.contains("the ESP's loader is now hnroot 100.0.0"),
        "{t}"
    );
    let presigned = std::fs::read(&good).unwrap();
    assert_eq!(std::fs::read(&loader).unwrap(), presigned);
    run(&[
        "sbverify",
        "--cert",
        cert.to_str().unwrap(),
        loader.to_str().unwrap(),
    ]);
    // Once written, it is what the update would write: nothing to do.
    let out = update(&newest, &["--presigned", good.to_str().unwrap()]);
    assert!(
        out.status.success() && text(&out).contains("nothing written"),
        "{}",
        text(&out)
    );

    // What the kit builds unsigned has no certificate table.
    let plain = dir.path().join("plain-esp");
    std::fs::create_dir_all(&plain).unwrap();
    let out = bootloader(
        "update",
        &real,
        &fleet,
        &[
            "--esp",
            plain.to_str().unwrap(),
            "--hostpart",
            hp.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let unsigned = std::fs::read(plain.join("EFI/BOOT/BOOTX64.EFI")).unwrap();
    assert_eq!(
        hnroot_core::loader::authenticode_signed(&unsigned),
        Ok(false)
    );
    // An unsigned file where the presigned loader should be is refused as such.
    let out = update(
        &newest,
        &[
            "--presigned",
            plain.join("EFI/BOOT/BOOTX64.EFI").to_str().unwrap(),
        ],
    );
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("[presigned-unsigned]"),
        "{t}"
    );
    assert_eq!(std::fs::read(&loader).unwrap(), presigned);

    // Settings are built in as they read, not as they were typed: a server whose loader came
    // from a fleet file with a comment (and a require-sealed marker saying `yes`) takes the
    // loader presigned from a fleet whose file says only `0`, the same countdown.
    let typed = dir.path().join("typed-fleet");
    std::fs::create_dir_all(&typed).unwrap();
    std::fs::write(typed.join("require-sealed"), "yes\n").unwrap();
    std::fs::write(
        typed.join("menu-timeout"),
        "# our servers boot without a menu\n0\n",
    )
    .unwrap();
    let menu_esp = dir.path().join("menu-esp");
    std::fs::create_dir_all(menu_esp.join("hnroot")).unwrap();
    let on = |kit: &Path, fleet: &Path, extra: &[&str]| {
        let mut v = vec![
            "--esp",
            menu_esp.to_str().unwrap(),
            "--hostpart",
            hp.to_str().unwrap(),
        ];
        v.extend_from_slice(extra);
        bootloader("update", kit, fleet, &v)
    };
    let out = on(&newer, &typed, &signing);
    assert!(out.status.success(), "{}", text(&out));
    // The publisher presigns in the image's tree (`--root`): the tree's kit, fleet files and
    // keys, the loader written inside it.
    let tree = dir.path().join("tree");
    let tree_loader = tree.join("etc/hnroot/loader");
    std::fs::create_dir_all(&tree_loader).unwrap();
    std::fs::write(tree_loader.join("menu-timeout"), "0\n").unwrap();
    std::fs::create_dir_all(tree.join("etc/hnroot/keys")).unwrap();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "pub") {
            std::fs::copy(
                &path,
                tree.join("etc/hnroot/keys").join(path.file_name().unwrap()),
            )
            .unwrap();
        }
    }
    std::fs::create_dir_all(tree.join("usr/lib/hnroot")).unwrap();
    copy_kit(&newest, &tree.join("usr/lib/hnroot/grub"));
    let presign_in = |tree: &Path| {
        hnroot(&[
            "bootloader",
            "presign",
            "--root",
            tree.to_str().unwrap(),
            "--sign-key",
            key.to_str().unwrap(),
            "--sign-cert",
            cert.to_str().unwrap(),
        ])
    };
    // A tree whose `usr/lib/hnroot/presigned` is a link leading out of it is refused, and
    // nothing is written where the link leads.
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, tree.join("usr/lib/hnroot/presigned")).unwrap();
    let out = presign_in(&tree);
    let t = text(&out);
    assert!(
        !out.status.success()
            && t.contains("a link on the way is never followed")
            && t.contains("nothing was written"),
        "{t}"
    );
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "{t}");
    std::fs::remove_file(tree.join("usr/lib/hnroot/presigned")).unwrap();
    let out = presign_in(&tree);
    assert!(out.status.success(), "{}", text(&out));
    let presigned_menu = tree.join("usr/lib/hnroot/presigned/BOOTX64.EFI");
    // The images state no countdown (`fleet`): the server keeps its loader's.
    let out = on(
        &newest,
        &fleet,
        &["--presigned", presigned_menu.to_str().unwrap()],
    );
    let t = text(&out);
    assert!(
        out.status.success()
            && t.contains("the menu is skipped (0 s), as in the ESP's")
            && t.contains("the ESP's loader is now hnroot 100.0.0"),
        "{t}"
    );
    assert_eq!(
        std::fs::read(menu_esp.join("EFI/BOOT/BOOTX64.EFI")).unwrap(),
        std::fs::read(&presigned_menu).unwrap()
    );
}
