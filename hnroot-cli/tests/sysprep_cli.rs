//! `hnroot sysprep` never reaches past what it was given: a tree cloned with `cp -al` shares
//! its files' inodes with the clone, and a directory or file bind-mounted into the tree from
//! the same filesystem is another mount, not the tree's; an image with nothing to clean is
//! never mounted read-write (its signature still verifies), and an image a loop device uses is
//! refused, naming the device.

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use support::*;

fn put(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn run(argv: &[&str]) -> String {
    let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A bind mount, undone when dropped.
struct Bind(std::path::PathBuf);

impl Bind {
    fn new(from: &Path, to: &Path) -> Bind {
        run(&[
            "mount",
            "--bind",
            from.to_str().unwrap(),
            to.to_str().unwrap(),
        ]);
        Bind(to.to_owned())
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_hard_link_clone_keeps_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    put(
        &tree,
        "etc/machine-id",
        "0123456789abcdef0123456789abcdef\n",
    );
    put(&tree, "etc/hostname", "build-host\n");
    put(
        &tree,
        "etc/puppetlabs/puppet/puppet.conf",
        "[main]\ncertname = build-host\n",
    );
    put(&tree, "etc/ssh/ssh_host_ed25519_key", "private");
    // The usual way to keep build trees: a hard-link clone, then clean the clone.
    let clone = dir.path().join("clone");
    run(&["cp", "-al", tree.to_str().unwrap(), clone.to_str().unwrap()]);
    assert_eq!(
        std::fs::metadata(clone.join("etc/machine-id"))
            .unwrap()
            .ino(),
        std::fs::metadata(tree.join("etc/machine-id"))
            .unwrap()
            .ino()
    );
    let said = ok(&["sysprep", clone.to_str().unwrap()]);
    assert!(said.contains("replaced by an empty file"), "{said}");
    assert_eq!(std::fs::read(clone.join("etc/machine-id")).unwrap(), b"");
    assert_eq!(std::fs::read(clone.join("etc/hostname")).unwrap(), b"");
    assert!(!clone.join("etc/ssh/ssh_host_ed25519_key").exists());
    assert_eq!(
        std::fs::read_to_string(clone.join("etc/puppetlabs/puppet/puppet.conf")).unwrap(),
        "[main]\n"
    );
    // The original tree is exactly as it was.
    assert_eq!(
        std::fs::read_to_string(tree.join("etc/machine-id")).unwrap(),
        "0123456789abcdef0123456789abcdef\n"
    );
    assert_eq!(
        std::fs::read_to_string(tree.join("etc/hostname")).unwrap(),
        "build-host\n"
    );
    assert_eq!(
        std::fs::read_to_string(tree.join("etc/puppetlabs/puppet/puppet.conf")).unwrap(),
        "[main]\ncertname = build-host\n"
    );
    assert!(tree.join("etc/ssh/ssh_host_ed25519_key").is_file());
}

#[test]
fn what_is_bind_mounted_into_the_tree_is_left_as_it_is() {
    if !can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("host");
    let tree = dir.path().join("tree");
    // The host's own files, on the same filesystem as the tree.
    put(&host, "ssh/ssh_host_rsa_key", "the host's key");
    put(&host, "log/syslog", "the host's log");
    put(&host, "machine-id", "fedcba9876543210fedcba9876543210\n");
    put(&tree, "etc/ssh/sshd_config", "# tree\n");
    put(&tree, "var/log/placeholder", "");
    put(&tree, "etc/machine-id", "");
    put(&tree, "etc/hostname", "build-host\n");
    assert_eq!(
        std::fs::metadata(&host).unwrap().dev(),
        std::fs::metadata(&tree).unwrap().dev(),
        "one filesystem: device numbers cannot tell them apart"
    );
    let _ssh = Bind::new(&host.join("ssh"), &tree.join("etc/ssh"));
    let _log = Bind::new(&host.join("log"), &tree.join("var/log"));
    let _id = Bind::new(&host.join("machine-id"), &tree.join("etc/machine-id"));
    let out = hnroot(&["sysprep", "--json", tree.to_str().unwrap()]);
    let said = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "what is left is reported: {said}"
    );
    assert_eq!(
        std::fs::read_to_string(host.join("ssh/ssh_host_rsa_key")).unwrap(),
        "the host's key"
    );
    assert_eq!(
        std::fs::read_to_string(host.join("log/syslog")).unwrap(),
        "the host's log"
    );
    assert_eq!(
        std::fs::read_to_string(host.join("machine-id")).unwrap(),
        "fedcba9876543210fedcba9876543210\n"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let actions = v["actions"].as_array().unwrap();
    let machine_id = actions
        .iter()
        .find(|a| a["path"] == "/etc/machine-id")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(machine_id["ok"], false, "{v}");
    assert!(
        machine_id["text"]
            .as_str()
            .unwrap()
            .contains("a mount point"),
        "{v}"
    );
    // The tree's own file next to them was cleaned.
    assert_eq!(std::fs::read(tree.join("etc/hostname")).unwrap(), b"");
}

/// An ext4 image of a clean tree, signed.
fn signed_clean_image(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let img = dir.join("clean.img");
    image(&img, A);
    let k = keys(dir, "publisher");
    sign(&img, &k, "fleet v1");
    (img, k.public)
}

fn verifies(img: &Path, public: &Path) -> bool {
    Command::new("minisign")
        .args(["-V", "-q", "-p"])
        .arg(public)
        .arg("-m")
        .arg(img)
        .status()
        .unwrap()
        .success()
}

#[test]
fn an_image_with_nothing_to_clean_is_not_changed() {
    if !can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (img, public) = signed_clean_image(dir.path());
    assert!(verifies(&img, &public));
    let before = std::fs::read(&img).unwrap();
    let said = ok(&["sysprep", img.to_str().unwrap()]);
    assert!(said.contains("nothing to do"), "{said}");
    assert!(
        std::fs::read(&img).unwrap() == before,
        "not a byte changed (no read-write mount)"
    );
    assert!(verifies(&img, &public), "the signature still verifies");
}

#[test]
fn an_image_a_loop_device_uses_is_refused_naming_the_device() {
    if !can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("hn-root.img");
    // An image with something to clean, attached as the running root's would be.
    let tree = dir.path().join("tree");
    put(&tree, "boot/kernel", "k");
    put(&tree, "boot/initramfs", "i");
    put(&tree, "etc/hostname", "build-host\n");
    run(&[
        "mkfs.ext4",
        "-q",
        "-F",
        "-U",
        A,
        "-d",
        tree.to_str().unwrap(),
        img.to_str().unwrap(),
        "8M",
    ]);
    let node = run(&["losetup", "--find", "--show", img.to_str().unwrap()])
        .trim()
        .to_owned();
    let before = std::fs::read(&img).unwrap();
    let out = hnroot(&["sysprep", img.to_str().unwrap()]);
    let dry = hnroot(&["sysprep", "--dry-run", img.to_str().unwrap()]);
    let _ = Command::new("losetup").args(["-d", &node]).status();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains(&format!("backs the loop device {node}")),
        "{said}"
    );
    assert!(text(&dry).contains(&node), "{}", text(&dry));
    assert!(std::fs::read(&img).unwrap() == before, "nothing changed");
    // Detached, the same image is cleaned.
    let said = ok(&["sysprep", img.to_str().unwrap()]);
    assert!(said.contains("/etc/hostname"), "{said}");
}
