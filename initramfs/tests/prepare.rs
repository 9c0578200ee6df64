//! The boot sequence of `hnroot-init` against real filesystems on real loop devices: hostpart
//! (ext4 made by mkfs.ext4), an ESP (FAT made by mkfs.vfat) with the boot-state file, and root
//! images made by `mkfs.ext4 -d`. Needs root (loop devices, mount); without it each test says
//! so and returns.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hnroot_core::bootstate::{BootState, StateSeen};
use hnroot_core::uuid::FsUuid;
use hnroot_init::boot::{prepare, Env};
use hnroot_linux::blockdev::Roots;
use hnroot_linux::bootstate_file;

fn run(argv: &[&str]) -> String {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root || !Path::new("/dev/loop-control").exists() {
        eprintln!("SKIPPED: needs root and /dev/loop-control (loop devices, mount)");
        return false;
    }
    true
}

/// A unique short label (FAT labels are at most 11 characters).
fn label(prefix: &str) -> String {
    let n = std::process::id() % 10_000;
    let t = Instant::now().elapsed().subsec_nanos() % 100;
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let c = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    format!("{prefix}{n}{c}{t}").chars().take(11).collect()
}

/// A root image: ext4 with /hostpart, /data0 -> /hostpart/data, /sbin/init, and a version file.
fn root_image(dir: &Path, name: &str, uuid: &str) -> PathBuf {
    let tree = dir.join(format!("tree-{uuid}"));
    std::fs::create_dir_all(tree.join("hostpart")).unwrap();
    std::fs::create_dir_all(tree.join("sbin")).unwrap();
    std::fs::create_dir_all(tree.join("boot")).unwrap();
    std::fs::write(tree.join("boot/kernel"), "not booted by this test\n").unwrap();
    std::fs::write(tree.join("boot/initramfs"), "not booted by this test\n").unwrap();
    std::fs::write(tree.join("sbin/init"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        tree.join("sbin/init"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // An SSH server, so the identity plan points sshd at the host's keys.
    std::fs::create_dir_all(tree.join("usr/sbin")).unwrap();
    std::fs::write(tree.join("usr/sbin/sshd"), "not run by this test\n").unwrap();
    std::fs::write(tree.join("version"), uuid).unwrap();
    std::os::unix::fs::symlink("/hostpart/data", tree.join("data0")).unwrap();
    let out = dir.join(name);
    run(&[
        "mkfs.ext4",
        "-q",
        "-F",
        "-U",
        uuid,
        "-d",
        tree.to_str().unwrap(),
        out.to_str().unwrap(),
        "8M",
    ]);
    out
}

struct Loop(String);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

fn attach(file: &Path) -> Loop {
    Loop(run(&[
        "losetup",
        "--find",
        "--show",
        file.to_str().unwrap(),
    ]))
}

struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A test machine: hostpart and ESP on loop devices, labels unique to the test.
struct Rig {
    dir: tempfile::TempDir,
    hostpart_label: String,
    esp_label: String,
    hostpart: Loop,
    esp: Loop,
}

const U_A: &str = "aaaaaaaa-0000-4000-8000-00000000000a";
const U_B: &str = "bbbbbbbb-0000-4000-8000-00000000000b";

impl Rig {
    /// hostpart holds `hn-root.img` (A) and `hn-root-new.img` (B); the boot state says A is good.
    fn new() -> Rig {
        Rig::with_esp_files(&[])
    }

    /// [`Rig::new`] with `files` (path, bytes) on the ESP besides the boot-state file.
    fn with_esp_files(files: &[(&str, &[u8])]) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let host_tree = d.join("host");
        std::fs::create_dir_all(&host_tree).unwrap();
        root_image(&host_tree, "hn-root.img", U_A);
        root_image(&host_tree, "hn-root-new.img", U_B);
        for entry in std::fs::read_dir(&host_tree).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                std::fs::remove_dir_all(p).unwrap();
            }
        }
        let hostpart_label = label("hp");
        let host_img = d.join("hostpart.ext4");
        run(&[
            "mkfs.ext4",
            "-q",
            "-F",
            "-L",
            &hostpart_label,
            "-d",
            host_tree.to_str().unwrap(),
            host_img.to_str().unwrap(),
            "64M",
        ]);

        // The ESP is FAT on real machines; this sandbox's kernel has no vfat driver, and the
        // boot-state file works the same on ext4 (the initramfs accepts both).
        let esp_label = label("E");
        let esp_tree = d.join("esp");
        std::fs::create_dir_all(esp_tree.join("hnroot")).unwrap();
        bootstate_file::create(
            &esp_tree.join("hnroot/bootstate"),
            &BootState::committed(FsUuid::parse(U_A).unwrap()),
            false,
        )
        .unwrap();
        for (rel, bytes) in files {
            let path = esp_tree.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        let esp_img = d.join("esp.ext4");
        run(&[
            "mkfs.ext4",
            "-q",
            "-F",
            "-L",
            &esp_label,
            "-d",
            esp_tree.to_str().unwrap(),
            esp_img.to_str().unwrap(),
            "16M",
        ]);

        let hostpart = attach(&host_img);
        let esp = attach(&esp_img);
        Rig {
            dir,
            hostpart_label,
            esp_label,
            hostpart,
            esp,
        }
    }

    fn env(&self) -> Env {
        let d = self.dir.path();
        Env {
            roots: Roots::default(),
            hostpart_mnt: d.join("mnt/hostpart"),
            esp_mnt: d.join("mnt/esp"),
            newroot: d.join("mnt/newroot"),
            scratch: d.join("mnt/scratch"),
            modules_dir: None,
            modules_list: d.join("none"),
            sys: d.join("sys"),
            poll: Duration::from_millis(20),
            esp_wait: Duration::from_secs(2),
            stop_before_step: None,
        }
    }

    fn cmdline(&self, image: &str, uuid: &str) -> String {
        format!(
            "console=ttyS0 hnroot.image={image} hnroot.uuid={uuid} hnroot.hostpart=LABEL={} hnroot.esp=LABEL={} hnroot.timeout=5",
            self.hostpart_label, self.esp_label
        )
    }

    /// Unmount whatever a run left mounted, with the function `mount-root` uses after a
    /// failure; then check nothing is left.
    fn unmount(&self, env: &Env) {
        hnroot_init::boot::unwind(env);
        for m in [
            env.newroot.join("hostpart"),
            env.newroot.clone(),
            env.scratch.join("image"),
            env.esp_mnt.clone(),
            env.hostpart_mnt.clone(),
        ] {
            let still = Command::new("mountpoint")
                .arg("-q")
                .arg(&m)
                .status()
                .is_ok_and(|s| s.success());
            assert!(!still, "{} still mounted after unwind", m.display());
        }
    }

    /// hostpart's top directory and the boot state as a reader that bypasses the kernel's
    /// caches sees them (debugfs with O_DIRECT): what GRUB, which replays no journal, reads.
    fn inspect(&self) -> (Vec<String>, StateSeen) {
        let listing = run(&["debugfs", "-D", "-R", "ls -p /", &self.hostpart.0]);
        let mut names: Vec<String> = listing
            .lines()
            .filter_map(|l| l.split('/').nth(5).map(str::to_owned))
            .filter(|n| !n.is_empty() && n != "." && n != ".." && n != "lost+found")
            .collect();
        names.sort();
        let out = self.dir.path().join("bootstate.read");
        let _ = std::fs::remove_file(&out);
        run(&[
            "debugfs",
            "-D",
            "-R",
            &format!("dump /hnroot/bootstate {}", out.display()),
            &self.esp.0,
        ]);
        (names, bootstate_file::seen(&out).0)
    }
}

#[test]
fn update_boot_commits_the_switch_and_mounts_the_booted_image() {
    if !can_run() {
        return;
    }
    let rig = Rig::new();
    let env = rig.env();
    let prepared = prepare(&env, &rig.cmdline("hn-root-new.img", U_B));
    let result = prepared
        .as_ref()
        .map(|p| p.mounted)
        .map_err(|f| f.message());
    let version = std::fs::read_to_string(env.newroot.join("version"));
    let hostpart_listing: Vec<String> = std::fs::read_dir(env.newroot.join("hostpart"))
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let data0 = std::fs::read_link(env.newroot.join("data0"));
    let dio = loop_dio_at(&env.scratch.join("image"));
    rig.unmount(&env);
    let (image, uuid) = result.expect("prepare succeeds");
    assert_eq!(
        dio.as_deref(),
        Some("1"),
        "the image's loop device does direct I/O (hostpart is ext4)"
    );
    assert_eq!(image, hnroot_core::ImageName::Current);
    assert_eq!(uuid.to_string(), U_B);
    assert_eq!(version.unwrap(), U_B, "the mounted root is image B");
    assert!(
        hostpart_listing.contains(&"hn-root-old.img".to_owned()),
        "{hostpart_listing:?}"
    );
    assert!(
        hostpart_listing.contains(&"data".to_owned()),
        "data/ created: {hostpart_listing:?}"
    );
    assert_eq!(data0.unwrap(), Path::new("/hostpart/data"));
    let (names, state) = rig.inspect();
    assert_eq!(names, ["data", "hn-root-old.img", "hn-root.img"]);
    assert_eq!(
        state,
        StateSeen::Valid(BootState::committed(FsUuid::parse(U_A).unwrap())),
        "GRUB writes the trial, not the initramfs"
    );
}

/// What the kernel says of direct I/O (`/sys/block/loopN/loop/dio`) for the loop device
/// mounted at `path`.
fn loop_dio_at(path: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let source = info
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?;
            (Path::new(mount_point) == path).then(|| right.split(' ').nth(1).unwrap().to_owned())
        })
        .next_back()?;
    let name = source.strip_prefix("/dev/")?;
    std::fs::read_to_string(format!("/sys/block/{name}/loop/dio"))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// The filesystem type mounted at `path`, from /proc/self/mountinfo (the last mount there).
fn fs_type_at(path: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?;
            (Path::new(mount_point) == path).then(|| right.split(' ').next().unwrap().to_owned())
        })
        .next_back()
}

#[test]
fn the_image_runs_under_a_writable_layer_that_stays_its_own() {
    if !can_run() {
        return;
    }
    let rig = Rig::new();
    let env = rig.env();
    let normal = rig.cmdline("hn-root.img", U_A);
    let image_a = rig.dir.path().join("image-a.before");

    // First boot: the root is an overlay; what the system writes lands in A's own layer.
    let prepared = prepare(&env, &normal).map_err(|f| f.message());
    let root_type = fs_type_at(&env.newroot);
    let lower_type = fs_type_at(&env.scratch.join("image"));
    let wrote = std::fs::write(
        env.newroot.join("written-at-boot-1"),
        "by the running system",
    );
    // hostpart is reachable at /hostpart in the new root (as the running system sees it).
    let layer = env
        .newroot
        .join("hostpart/data/hnroot/overlay")
        .join(U_A)
        .join("upper/written-at-boot-1");
    let in_layer = std::fs::read_to_string(&layer);
    // The image itself is as published.
    std::fs::copy(env.newroot.join("hostpart/hn-root.img"), &image_a).unwrap();
    rig.unmount(&env);
    prepared.expect("prepare succeeds");
    assert_eq!(root_type.as_deref(), Some("overlay"));
    assert_eq!(
        lower_type.as_deref(),
        Some("ext4"),
        "the image, read-only, under it"
    );
    wrote.expect("the root is writable");
    assert_eq!(in_layer.unwrap(), "by the running system");
    let listing = run(&["debugfs", "-R", "ls -p /", image_a.to_str().unwrap()]);
    assert!(
        !listing.contains("written-at-boot-1"),
        "the image file is unchanged: {listing}"
    );

    // Plant a stale layer (an image no longer on hostpart) and a directory that is not hnroot's.
    let hostpart_dir = rig.dir.path().join("mnt/hostpart");
    run(&["mount", &rig.hostpart.0, hostpart_dir.to_str().unwrap()]);
    let overlays = hostpart_dir.join("data/hnroot/overlay");
    let stale = "cccccccc-0000-4000-8000-00000000000c";
    std::fs::create_dir_all(overlays.join(stale).join("upper/etc/deep")).unwrap();
    std::fs::write(overlays.join(stale).join("upper/etc/deep/file"), "x").unwrap();
    std::os::unix::fs::symlink("/", overlays.join(stale).join("upper/root-link")).unwrap();
    std::fs::create_dir_all(overlays.join("notes")).unwrap();
    run(&["umount", hostpart_dir.to_str().unwrap()]);

    // Second boot of A: the layer is still there; the stale one is gone, the foreign one kept.
    let prepared = prepare(&env, &normal).map_err(|f| f.message());
    let seen = std::fs::read_to_string(env.newroot.join("written-at-boot-1"));
    let overlays = env.newroot.join("hostpart/data/hnroot/overlay");
    let stale_left = overlays.join(stale).exists();
    let notes_left = overlays.join("notes").is_dir();
    rig.unmount(&env);
    prepared.expect("prepare succeeds");
    assert_eq!(
        seen.unwrap(),
        "by the running system",
        "a reboot keeps the layer"
    );
    assert!(
        !stale_left,
        "the layer of an image no longer on hostpart is removed"
    );
    assert!(notes_left, "a directory not named by a UUID is left alone");

    // hnroot.rw: the image itself, read-write, without the layer.
    let prepared = prepare(&env, &format!("{normal} hnroot.rw")).map_err(|f| f.message());
    let root_type = fs_type_at(&env.newroot);
    let seen = env.newroot.join("written-at-boot-1").exists();
    rig.unmount(&env);
    prepared.expect("prepare succeeds");
    assert_eq!(root_type.as_deref(), Some("ext4"));
    assert!(!seen, "with hnroot.rw the root is the image, not its layer");
}

#[test]
fn stopping_after_every_step_then_booting_again_converges() {
    if !can_run() {
        return;
    }
    // Revert: the longest plan (write state, rename x2, remove marker, sync, checkpoint, mount).
    for stop in 0..6 {
        let rig = Rig::new();
        let env = rig.env();
        // First boot applies the update so there is an old image to revert to.
        let first = prepare(&env, &rig.cmdline("hn-root-new.img", U_B))
            .map(|_| ())
            .map_err(|f| f.message());
        rig.unmount(&env);
        first.unwrap();
        let m = rig.dir.path().join("mnt/marker");
        std::fs::create_dir_all(&m).unwrap();
        run(&["mount", &rig.hostpart.0, m.to_str().unwrap()]);
        std::fs::write(m.join("system-revert"), b"").unwrap();
        run(&["sync", "-f", m.join("system-revert").to_str().unwrap()]);
        drop(Mounted(m));

        let cut = Env {
            stop_before_step: Some(stop),
            ..rig.env()
        };
        let stopped = prepare(&cut, &rig.cmdline("hn-root-old.img", U_A));
        assert!(stopped.is_err(), "stop {stop}");
        rig.unmount(&cut);
        let again = prepare(&env, &rig.cmdline("hn-root-old.img", U_A))
            .map(|p| p.mounted)
            .map_err(|f| f.message());
        rig.unmount(&env);
        let (_, uuid) = again.unwrap_or_else(|e| panic!("after stopping at step {stop}: {e}"));
        assert_eq!(uuid.to_string(), U_A);
        let (names, state) = rig.inspect();
        assert_eq!(
            names,
            ["data", "hn-root-broken.img", "hn-root.img"],
            "stop {stop}"
        );
        assert_eq!(
            state,
            StateSeen::Valid(BootState::committed(FsUuid::parse(U_A).unwrap()))
        );
    }
}

#[test]
fn a_uuid_mismatch_is_refused_and_the_fallback_marks_it_failed() {
    if !can_run() {
        return;
    }
    let rig = Rig::new();
    let env = rig.env();
    // GRUB claims it booted hn-root.img with B's UUID: no file with that name has it.
    let wrong = "cccccccc-0000-4000-8000-00000000000c";
    let failure = prepare(&env, &rig.cmdline("hn-root.img", wrong)).expect_err("refused");
    rig.unmount(&env);
    assert!(
        failure
            .message()
            .contains("no bootable image on hostpart has that UUID"),
        "{}",
        failure.message()
    );
    let ctx = failure
        .failed_boot
        .expect("hostpart was mounted: a fallback is possible");
    assert_eq!(ctx.failed.to_string(), wrong);
    let (names, _) = rig.inspect();
    assert_eq!(names, ["hn-root-new.img", "hn-root.img"], "nothing renamed");
}

/// The loader kit (`HNROOT_GRUB_KIT`), as the CLI's tests take it: skipped without one unless
/// `HNROOT_REQUIRE_GRUB_KIT` is set (`cargo xtask test` sets both).
fn kit() -> Option<PathBuf> {
    match std::env::var_os("HNROOT_GRUB_KIT") {
        Some(k) => Some(PathBuf::from(k)),
        None if std::env::var_os("HNROOT_REQUIRE_GRUB_KIT").is_some() => {
            panic!("HNROOT_REQUIRE_GRUB_KIT is set but HNROOT_GRUB_KIT is not")
        }
        None => {
            eprintln!(
                "SKIPPED: no loader kit (HNROOT_GRUB_KIT); `cargo xtask grub-module` builds one"
            );
            None
        }
    }
}

/// After a failure hnroot-init predicts GRUB's next boot as the loader on the ESP will judge
/// it: this loader (hnroot's GRUB built from the kit, its memdisk holding `require-sealed` and
/// a counting file with K = 2) boots neither of the rig's unsealed images, so recording the
/// failure and rebooting would leave GRUB nothing to boot: the prediction is to stop. Judged
/// by the plain verdicts, as before, it would have rebooted into hn-root-new.img.
#[test]
fn after_a_failure_the_prediction_judges_the_images_as_the_loader_will() {
    use hnroot_core::name::ImageName;
    use hnroot_core::plan::{after_failure, AfterFailure};
    use hnroot_install::grub::{build_efi, FleetFile, LoaderKit, REQUIRE_SEALED_FILE};
    if !can_run() {
        return;
    }
    let Some(kit) = kit() else { return };
    let work = tempfile::tempdir().unwrap();
    let kit = LoaderKit::at(&kit).unwrap();
    let loader = work.path().join("BOOTX64.EFI");
    let fleet = [
        FleetFile {
            name: REQUIRE_SEALED_FILE.into(),
            data: b"1\n".to_vec(),
        },
        FleetFile {
            name: hnroot_core::counting::FILE_NAME.into(),
            data: b"boot-limit=2\n".to_vec(),
        },
    ];
    build_efi(
        &kit,
        &kit.grub_cfg().unwrap(),
        &[],
        &fleet,
        &work.path().join("grub-image"),
        &loader,
    )
    .unwrap();
    let bytes = std::fs::read(&loader).unwrap();
    let rig = Rig::with_esp_files(&[("EFI/BOOT/BOOTX64.EFI", &bytes)]);
    let env = rig.env();
    // GRUB claims it booted hn-root.img with a UUID no image has: the boot fails after hostpart
    // and the ESP were read.
    let wrong = "cccccccc-0000-4000-8000-00000000000c";
    let failure = prepare(&env, &rig.cmdline("hn-root.img", wrong)).expect_err("refused");
    let ctx = failure.failed_boot.as_ref().expect("hostpart was mounted");
    let plain = after_failure(&ctx.obs, ctx.failed, &ctx.config);
    let (obs, config) = hnroot_init::after_failure::as_the_loader(ctx);
    rig.unmount(&env);
    assert!(
        matches!(
            plain,
            AfterFailure::Reboot {
                next: ImageName::New,
                ..
            }
        ),
        "{plain:?}"
    );
    assert_eq!((config.boot_limit, config.tries), (2, ctx.config.tries));
    assert_eq!(
        (
            obs.bootable(ImageName::Current),
            obs.bootable(ImageName::New)
        ),
        (None, None),
        "the loader requires sealed images: neither unsealed image is bootable to it"
    );
    assert_eq!(after_failure(&obs, ctx.failed, &config), AfterFailure::Stop);
}

#[test]
fn a_hostpart_that_never_appears_fails_within_its_bound_and_says_what_it_saw() {
    if !can_run() {
        return;
    }
    let rig = Rig::new();
    let env = rig.env();
    let start = Instant::now();
    let line = format!("hnroot.image=hn-root.img hnroot.uuid={U_A} hnroot.hostpart=LABEL=nosuchlabel7 hnroot.timeout=1");
    let failure = prepare(&env, &line).expect_err("no such hostpart");
    rig.unmount(&env);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "bounded: {:?}",
        start.elapsed()
    );
    assert!(
        failure
            .message()
            .contains("no filesystem labelled 'nosuchlabel7'"),
        "{}",
        failure.message()
    );
    assert!(
        failure.message().contains(&rig.hostpart_label),
        "lists what it saw: {}",
        failure.message()
    );
    assert!(failure.failed_boot.is_none());
}

#[test]
fn two_hostparts_with_one_label_are_refused_naming_both() {
    if !can_run() {
        return;
    }
    let rig = Rig::new();
    let twin = rig.dir.path().join("twin.ext4");
    run(&[
        "mkfs.ext4",
        "-q",
        "-F",
        "-L",
        &rig.hostpart_label,
        twin.to_str().unwrap(),
        "16M",
    ]);
    let twin_loop = attach(&twin);
    let env = rig.env();
    let failure = prepare(&env, &rig.cmdline("hn-root.img", U_A)).expect_err("ambiguous");
    rig.unmount(&env);
    let a = rig.hostpart.0.trim_start_matches("/dev/");
    let b = twin_loop.0.trim_start_matches("/dev/");
    assert!(
        failure.message().contains(a) && failure.message().contains(b),
        "{}",
        failure.message()
    );
    assert!(
        failure.message().contains("refusing to guess"),
        "{}",
        failure.message()
    );
}

#[test]
fn each_host_comes_up_as_itself_and_a_first_boot_creates_its_identity() {
    if !can_run() {
        return;
    }
    let rig = Rig::new();
    let env = rig.env();
    let dmi = rig.dir.path().join("sys/class/dmi/id");
    std::fs::create_dir_all(&dmi).unwrap();
    std::fs::write(dmi.join("product_serial"), "SRV-0042\n").unwrap();
    let read = |p: PathBuf| {
        std::fs::read_to_string(&p).unwrap_or_else(|e| format!("{}: {e}", p.display()))
    };

    // First boot: no host state yet. The machine ID and the hostname are created on hostpart
    // and projected; sshd is pointed at the host's (not yet made) keys.
    let prepared = prepare(&env, &rig.cmdline("hn-root.img", U_A)).map_err(|f| f.message());
    let root = &env.newroot;
    let host = root.join("hostpart/data/host");
    let hostname = read(root.join("etc/hostname"));
    let machine_id = read(root.join("etc/machine-id"));
    let stored_name = read(host.join("hostname"));
    let stored_id = read(host.join("machine-id"));
    let drop_in = read(root.join("etc/ssh/sshd_config.d/hnroot-host-keys.conf"));
    use std::os::unix::fs::PermissionsExt;
    let ssh_mode = std::fs::metadata(host.join("ssh")).map(|m| m.permissions().mode() & 0o777);
    let log = read(host.join("log"));
    // The running system edits its hostname in place: the host state has the change.
    std::fs::write(root.join("etc/hostname"), "renamed\n").unwrap();
    rig.unmount(&env);
    prepared.expect("the first boot prepares the root");
    assert_eq!(hostname, "srv-0042\n", "named after the DMI serial");
    assert_eq!(stored_name, hostname);
    assert_eq!(machine_id, stored_id);
    assert!(
        hnroot_core::machineid::MachineId::parse(&stored_id).is_ok(),
        "{stored_id:?}"
    );
    assert!(
        drop_in.contains("HostKey /hostpart/data/host/ssh/ssh_host_ed25519_key"),
        "{drop_in}"
    );
    assert_eq!(ssh_mode.unwrap(), 0o700);
    assert!(
        log.contains(&format!("created machine-id {}", stored_id.trim()))
            && log.contains("created hostname srv-0042 (from dmi-serial)"),
        "{log}"
    );

    // Offline, as an operator would: more host state, and a file of the mirror tree whose place
    // in the image is a directory (its bind fails; the boot goes on).
    let m = rig.dir.path().join("mnt/offline");
    std::fs::create_dir_all(&m).unwrap();
    run(&["mount", &rig.hostpart.0, m.to_str().unwrap()]);
    let offline = Mounted(m.clone());
    let h = m.join("data/host");
    assert_eq!(read(h.join("hostname")), "renamed\n", "the edit persisted");
    std::fs::create_dir_all(h.join("network")).unwrap();
    std::fs::write(h.join("network/10-lan.network"), "[Match]\nName=en*\n").unwrap();
    std::fs::create_dir_all(h.join("files/etc")).unwrap();
    std::fs::write(h.join("files/etc/motd"), "this host's motd\n").unwrap();
    std::fs::write(h.join("files/sbin"), "not a directory\n").unwrap();
    let listing = run(&[
        "debugfs",
        "-R",
        "ls -p /",
        m.join("hn-root.img").to_str().unwrap(),
    ]);
    assert!(
        !listing.contains("/etc/"),
        "the image file itself is unchanged: {listing}"
    );
    drop(offline);

    // The update to B: a fresh writable layer, the same host.
    let prepared = prepare(&env, &rig.cmdline("hn-root-new.img", U_B)).map_err(|f| f.message());
    let hostname = read(root.join("etc/hostname"));
    let machine_id = read(root.join("etc/machine-id"));
    let network = read(root.join("etc/systemd/network/10-lan.network"));
    let motd = read(root.join("etc/motd"));
    let init_there = root.join("sbin/init").is_file();
    // A network file replaced by a rename inside its directory lands in the host state.
    let net = root.join("etc/systemd/network");
    std::fs::write(net.join(".10-lan.tmp"), "[Match]\nName=eth0\n").unwrap();
    std::fs::rename(net.join(".10-lan.tmp"), net.join("10-lan.network")).unwrap();
    let stored_network = read(root.join("hostpart/data/host/network/10-lan.network"));
    let log = read(root.join("hostpart/data/host/log"));
    rig.unmount(&env);
    let p = prepared.expect("the update prepares the root");
    assert_eq!(p.mounted.1.to_string(), U_B);
    assert_eq!(hostname, "renamed\n");
    assert_eq!(machine_id, stored_id, "the machine ID survives the update");
    assert_eq!(network, "[Match]\nName=en*\n");
    assert_eq!(motd, "this host's motd\n");
    assert!(init_there, "a failed projection leaves the root as it was");
    assert_eq!(stored_network, "[Match]\nName=eth0\n");
    assert_eq!(
        log.matches(" created ").count(),
        2,
        "nothing created again: {log}"
    );
}
