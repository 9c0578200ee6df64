//! Each host's identity through the `hnroot` command: `hnroot sysprep` on an image made from a
//! populated tree (root: the image is loop-mounted), the SSH host keys `hnroot host keys` makes
//! in the host state, `hnroot host sync` with a shared repository (taken, published,
//! conflicts), and the identity plan `hnroot explain` and `hnroot host show` print.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use support::*;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn put(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// Mounted read-only with a loop device; unmounted when dropped.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn sysprep_removes_every_identity_file_and_keeps_the_image() {
    if !is_root() || !Path::new("/dev/loop-control").exists() {
        eprintln!("SKIPPED: needs root and loop devices");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    // A tree as a build host leaves it: its name, its keys, its leases, its logs.
    let identity = [
        ("etc/machine-id", "0123456789abcdef0123456789abcdef\n"),
        ("etc/hostname", "build-host\n"),
        ("etc/ssh/ssh_host_rsa_key", "private"),
        ("etc/ssh/ssh_host_rsa_key.pub", "public"),
        ("etc/ssh/ssh_host_ed25519_key", "private"),
        ("etc/ssh/ssh_host_ed25519_key.pub", "public"),
        (
            "var/lib/dbus/machine-id",
            "0123456789abcdef0123456789abcdef\n",
        ),
        ("var/lib/dhcp/dhclient.enp1s0.leases", "lease {}"),
        (
            "etc/udev/rules.d/70-persistent-net.rules",
            "SUBSYSTEM==\"net\"",
        ),
        (
            "etc/puppetlabs/puppet/ssl/private_keys/build-host.pem",
            "key",
        ),
        ("var/lib/systemd/random-seed", "seed"),
        ("var/lib/systemd/credential.secret", "secret"),
        ("root/.bash_history", "history"),
        ("var/log/syslog", "log"),
    ];
    for (rel, text) in identity {
        put(&tree, rel, text);
    }
    put(
        &tree,
        "etc/puppetlabs/puppet/puppet.conf",
        "[main]\nserver = puppet.example\ncertname = build-host.example\n",
    );
    put(
        &tree,
        "etc/ssh/sshd_config",
        "Include /etc/ssh/sshd_config.d/*.conf\n",
    );
    put(&tree, "boot/kernel", "the kernel");
    put(&tree, "boot/initramfs", "the initramfs");
    put(&tree, "etc/os-release", "IMAGE_ID=fleet\nIMAGE_VERSION=1\n");
    let img = dir.path().join("image.img");
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-U", A, "-d"])
        .arg(&tree)
        .arg(&img)
        .arg("16M")
        .status()
        .unwrap();
    assert!(status.success());
    let img_s = img.to_str().unwrap();
    let before = std::fs::read(&img).unwrap();

    // A dry run lists every action and changes nothing.
    let dry = json(&["sysprep", "--dry-run", "--json", img_s]);
    let paths: Vec<&str> = dry["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["path"].as_str().unwrap())
        .collect();
    for (rel, _) in identity {
        assert!(
            paths.contains(&format!("/{rel}").as_str())
                || paths
                    .iter()
                    .any(|p| format!("/{rel}").starts_with(&format!("{p}/"))),
            "{rel} not listed: {paths:?}"
        );
    }
    assert!(paths.contains(&"/etc/puppetlabs/puppet/puppet.conf"));
    assert!(!dry["leftovers"].as_array().unwrap().is_empty());
    assert!(
        std::fs::read(&img).unwrap() == before,
        "a dry run leaves the image as it was"
    );

    // The real run reports each action and a clean check.
    let out = hnroot(&["sysprep", img_s]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("/etc/ssh/ssh_host_rsa_key (SSH host keys): removed")
            && said.contains("/etc/machine-id (machine ID): emptied (33 bytes)")
            && said.contains("nothing host-specific is left"),
        "{said}"
    );

    // Looked at from outside: every identity file is gone, the image's own files stay.
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let status = Command::new("mount")
        .args(["-o", "loop,ro"])
        .arg(&img)
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(status.success());
    let m = Mounted(mnt.clone());
    for (rel, _) in identity {
        let p = mnt.join(rel);
        match rel {
            "etc/machine-id" | "etc/hostname" => {
                assert_eq!(std::fs::read(&p).unwrap(), b"", "{rel} is kept, empty")
            }
            _ => assert!(
                std::fs::symlink_metadata(&p).is_err(),
                "{rel} is still there"
            ),
        }
    }
    assert_eq!(
        std::fs::read_to_string(mnt.join("etc/puppetlabs/puppet/puppet.conf")).unwrap(),
        "[main]\nserver = puppet.example\n"
    );
    assert!(mnt.join("etc/puppetlabs/puppet/ssl").is_dir());
    assert!(mnt.join("var/log").is_dir());
    assert_eq!(
        std::fs::read(mnt.join("boot/kernel")).unwrap(),
        b"the kernel"
    );
    assert_eq!(
        std::fs::read(mnt.join("boot/initramfs")).unwrap(),
        b"the initramfs"
    );
    assert!(mnt.join("etc/ssh/sshd_config").is_file());
    drop(m);

    // Nothing left to do.
    let again = json(&["sysprep", "--dry-run", "--json", img_s]);
    assert_eq!(again["actions"].as_array().unwrap().len(), 0, "{again}");
    assert_eq!(again["leftovers"].as_array().unwrap().len(), 0);
}

fn hostpart_with_host(dir: &Path, hostname: &str) -> std::path::PathBuf {
    let hp = dir.join("hostpart");
    put(&hp, "data/host/hostname", &format!("{hostname}\n"));
    put(
        &hp,
        "data/host/machine-id",
        "0123456789abcdef0123456789abcdef\n",
    );
    hp
}

#[test]
fn host_keys_are_made_once_in_the_host_state() {
    if Command::new("ssh-keygen").arg("-?").output().is_err() {
        eprintln!("SKIPPED: no ssh-keygen");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hp = hostpart_with_host(dir.path(), "web01");
    let hp_s = hp.to_str().unwrap();
    let said = ok(&["host", "keys", "--hostpart", hp_s]);
    assert!(said.contains("3 SSH host key(s) created"), "{said}");
    let ssh = hp.join("data/host/ssh");
    assert_eq!(
        std::fs::metadata(&ssh).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let mut keys = Vec::new();
    for t in ["rsa", "ecdsa", "ed25519"] {
        let key = ssh.join(format!("ssh_host_{t}_key"));
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let public = std::fs::read_to_string(ssh.join(format!("ssh_host_{t}_key.pub"))).unwrap();
        assert!(public.trim_end().ends_with("root@web01"), "{public}");
        keys.push(std::fs::read(&key).unwrap());
    }
    let names: Vec<String> = std::fs::read_dir(&ssh)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 6, "no temporary files left: {names:?}");
    let log = std::fs::read_to_string(hp.join("data/host/log")).unwrap();
    assert_eq!(log.matches("created ssh_host_").count(), 3, "{log}");

    // Keys that are there are never replaced; a missing one is made.
    std::fs::remove_file(ssh.join("ssh_host_ecdsa_key")).unwrap();
    let said = ok(&["host", "keys", "--hostpart", hp_s]);
    assert!(said.contains("1 SSH host key(s) created"), "{said}");
    assert_eq!(
        std::fs::read(ssh.join("ssh_host_rsa_key")).unwrap(),
        keys[0]
    );
    assert_eq!(
        std::fs::read(ssh.join("ssh_host_ed25519_key")).unwrap(),
        keys[2]
    );

    // Without a host state there is nothing to put them in.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = hnroot(&["host", "keys", "--hostpart", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("hnroot-init creates it at boot"),
        "{}",
        text(&out)
    );
}

#[test]
fn sync_takes_publishes_and_reports_conflicts_without_overwriting() {
    let dir = tempfile::tempdir().unwrap();
    let hp = hostpart_with_host(dir.path(), "web01");
    put(&hp, "data/host/ssh/ssh_host_ed25519_key", "local key");
    put(&hp, "data/host/log", "0 not synced\n");
    let wh = dir.path().join("warehouse");
    let remote = wh.join("hosts/web01");
    put(&remote, "network/10-lan.network", "[Match]\nName=en*\n");
    put(&remote, "files/etc/ceph/ceph.conf", "[global]\n");
    put(&remote, "machine-id", "ffffffffffffffffffffffffffffffff\n");
    std::fs::set_permissions(
        remote.join("network/10-lan.network"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let args = |extra: &[&str]| -> Vec<String> {
        [
            "host",
            "sync",
            "--hostpart",
            hp.to_str().unwrap(),
            "--warehouse",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([wh.display().to_string()])
        .chain(extra.iter().map(|s| s.to_string()))
        .collect()
    };
    let sync_with = |extra: &[&str]| {
        let a = args(extra);
        hnroot(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // A dry run changes nothing.
    let out = sync_with(&["--dry-run"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!hp.join("data/host/network").exists());
    assert!(!remote.join("hostname").exists());

    let out = sync_with(&["--json"]);
    assert_eq!(out.status.code(), Some(1), "a conflict fails the sync");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let action = |p: &str| {
        v["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == p)
            .map(|f| f["action"].as_str().unwrap().to_owned())
    };
    assert_eq!(action("machine-id").as_deref(), Some("conflict"));
    assert_eq!(action("network/10-lan.network").as_deref(), Some("take"));
    assert_eq!(action("files/etc/ceph/ceph.conf").as_deref(), Some("take"));
    assert_eq!(action("hostname").as_deref(), Some("publish"));
    assert_eq!(
        action("ssh/ssh_host_ed25519_key").as_deref(),
        Some("publish")
    );
    assert_eq!(action("log").as_deref(), Some("ignored"));
    assert_eq!(v["problems"], 1);
    // Neither side's machine ID was touched.
    assert_eq!(
        std::fs::read_to_string(hp.join("data/host/machine-id")).unwrap(),
        "0123456789abcdef0123456789abcdef\n"
    );
    assert_eq!(
        std::fs::read_to_string(remote.join("machine-id")).unwrap(),
        "ffffffffffffffffffffffffffffffff\n"
    );
    // Taken and published, with their modes.
    let taken = hp.join("data/host/network/10-lan.network");
    assert_eq!(
        std::fs::read_to_string(&taken).unwrap(),
        "[Match]\nName=en*\n"
    );
    assert_eq!(
        std::fs::metadata(&taken).unwrap().permissions().mode() & 0o777,
        0o640
    );
    assert_eq!(
        std::fs::read_to_string(remote.join("ssh/ssh_host_ed25519_key")).unwrap(),
        "local key"
    );
    assert_eq!(
        std::fs::metadata(remote.join("ssh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    assert!(
        !remote.join("log").exists(),
        "the host's own log stays local"
    );

    // The operator settles the conflict: the next sync is clean.
    std::fs::copy(hp.join("data/host/machine-id"), remote.join("machine-id")).unwrap();
    let out = sync_with(&[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("0 taken, 0 published, 0 problem(s)"),
        "{}",
        text(&out)
    );

    // No repository: said so.
    let out = hnroot(&[
        "host",
        "sync",
        "--hostpart",
        hp.to_str().unwrap(),
        "--warehouse",
        dir.path().join("nowhere").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("no shared repository"),
        "{}",
        text(&out)
    );
}

#[test]
fn explain_and_host_show_plan_the_identity_steps() {
    let dir = tempfile::tempdir().unwrap();
    let hp = dir.path().join("hostpart");
    std::fs::create_dir(&hp).unwrap();
    image(&hp.join("hn-root.img"), A);
    let state = dir.path().join("bootstate");
    let loc = [
        "--hostpart",
        hp.to_str().unwrap(),
        "--bootstate",
        state.to_str().unwrap(),
    ];
    // First boot ahead: the identity is created.
    let v = json(&[&["explain", "--json"], &loc[..]].concat());
    let codes: Vec<&str> = v["identity"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "make-host-dirs",
            "create-machine-id",
            "copy-machine-id",
            "create-hostname",
            "bind",
            "write-sshd-drop-in"
        ]
    );
    assert!(v["identity"]["note_codes"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("first-boot")));

    // A host state with network files and a misshapen item.
    put(&hp, "data/host/hostname", "web01\n");
    put(
        &hp,
        "data/host/machine-id",
        "0123456789abcdef0123456789abcdef\n",
    );
    put(&hp, "data/host/network/10-lan.network", "[Match]\n");
    put(&hp, "data/host/interfaces.d", "not a directory");
    put(&hp, "data/host/files/etc/motd", "hello\n");
    let said = ok(&[&["explain"], &loc[..]].concat());
    assert!(
        said.contains("bind network -> /etc/systemd/network (directory)")
            && said.contains("bind files/etc/motd -> /etc/motd (file)")
            && said.contains("not projected: data/host/interfaces.d: not a directory"),
        "{said}"
    );
    let v = json(&["host", "show", "--json", "--hostpart", loc[1]]);
    assert_eq!(v["hostname"], "web01");
    assert_eq!(v["machine_id"], "0123456789abcdef0123456789abcdef");
    assert_eq!(v["items"]["interfaces.d"], "file");
    assert_eq!(v["files"], serde_json::json!(["etc/motd"]));
    assert!(v["identity"]["record"]
        .as_str()
        .unwrap()
        .starts_with("steps="));
}

#[test]
fn stage_warns_about_an_image_that_carries_a_hosts_identity() {
    if !is_root() || !Path::new("/dev/loop-control").exists() {
        eprintln!("SKIPPED: needs root and loop devices");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hp = dir.path().join("hostpart");
    std::fs::create_dir(&hp).unwrap();
    image(&hp.join("hn-root.img"), A);
    let keys = keys(dir.path(), "publisher");
    let trusted = trust(dir.path(), &keys);
    let tree = dir.path().join("tree");
    put(&tree, "boot/kernel", "kernel");
    put(&tree, "boot/initramfs", "initramfs");
    put(&tree, "etc/os-release", "IMAGE_ID=fleet\nIMAGE_VERSION=2\n");
    put(&tree, "etc/ssh/ssh_host_rsa_key", "private");
    let v2 = dir.path().join("v2.img");
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-U", B, "-d"])
        .arg(&tree)
        .arg(&v2)
        .arg("16M")
        .status()
        .unwrap();
    assert!(status.success());
    sign(&v2, &keys, "fleet 2");
    let state = dir.path().join("bootstate");
    let out = hnroot(&[
        "stage",
        v2.to_str().unwrap(),
        "--keys",
        trusted.to_str().unwrap(),
        "--hostpart",
        hp.to_str().unwrap(),
        "--bootstate",
        state.to_str().unwrap(),
    ]);
    let said = text(&out);
    assert!(out.status.success(), "a warning, not a refusal: {said}");
    assert!(hp.join("hn-root-new.img").is_file());
    assert!(
        said.contains("warning: the image holds 1 host-specific file(s)")
            && said.contains("/etc/ssh/ssh_host_rsa_key (SSH host keys)"),
        "{said}"
    );
}

/// A repository file of 20 MiB is taken whole (never cut at some size and reported taken), so
/// the next sync finds both sides the same; one over the limit is refused naming it, and
/// neither side gets a part of it.
#[test]
fn sync_copies_large_files_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let hp = hostpart_with_host(dir.path(), "web01");
    let wh = dir.path().join("warehouse");
    let remote = wh.join("hosts/web01");
    put(&remote, "hostname", "web01\n");
    put(&remote, "machine-id", "0123456789abcdef0123456789abcdef\n");
    let big: Vec<u8> = (0..20u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::create_dir_all(remote.join("files/srv")).unwrap();
    std::fs::write(remote.join("files/srv/node.db"), &big).unwrap();
    let huge = remote.join("files/srv/huge.img");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len((1 << 30) + 1)
        .unwrap();
    let sync = || {
        hnroot(&[
            "host",
            "sync",
            "--hostpart",
            hp.to_str().unwrap(),
            "--warehouse",
            wh.to_str().unwrap(),
        ])
    };
    let out = sync();
    let said = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the huge file is a problem: {said}"
    );
    assert!(
        said.contains("files/srv/huge.img") && said.contains("1073741824 bytes"),
        "{said}"
    );
    let taken = std::fs::read(hp.join("data/host/files/srv/node.db")).unwrap();
    assert_eq!(taken.len(), big.len(), "whole: {said}");
    assert!(taken == big);
    assert!(!hp.join("data/host/files/srv/huge.img").exists());
    let leftovers: Vec<_> = std::fs::read_dir(hp.join("data/host/files/srv"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no partial file left: {leftovers:?}");
    // Settled by hand: the next sync finds everything the same.
    std::fs::remove_file(&huge).unwrap();
    let out = sync();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("0 taken, 0 published, 0 problem(s)"),
        "{}",
        text(&out)
    );
}
