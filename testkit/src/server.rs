//! A simulated server's parts, shared by the suites that boot real Debian images (`distro`,
//! `fleet`): a disk file attached to a loop device, its hostpart mounted offline with `hnroot`
//! pointed at it, a host state written as an operator (or the shared repository) provides it,
//! and the small edits a suite makes to a Debian tree before `hnroot image build` (a file, a
//! unit enabled, the image's version). It never boots anything.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::buildenv::run;

/// A disk file attached with partition scanning; detached when dropped.
#[derive(Debug)]
pub struct LoopDisk {
    /// `/dev/loopN`.
    pub node: String,
}

impl LoopDisk {
    /// Attach `file`; with `partitioned`, wait until its partitions show.
    pub fn attach(file: &Path, partitioned: bool) -> Result<LoopDisk> {
        let node = run(Command::new("losetup")
            .args(["--find", "--show", "-P"])
            .arg(file))?
        .trim()
        .to_owned();
        let disk = LoopDisk { node };
        // The kernel scans the table on attach, but the partition nodes may lag; partx adds
        // what is missing, then wait for devtmpfs.
        if !partitioned {
            return Ok(disk);
        }
        let _ = run(Command::new("partx").arg("--update").arg(&disk.node));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Path::new(&disk.part(2)).exists() {
            if Instant::now() > deadline {
                bail!("{} shows no partition 2 after 10 s", disk.node);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(disk)
    }

    /// The node of partition `n`.
    pub fn part(&self, n: u32) -> String {
        format!("{}p{n}", self.node)
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.node]).status();
    }
}

/// hostpart of a disk (partition 2) mounted, with the boot state copied out of the ESP
/// (partition 1) for reading; `hnroot` pointed at both.
#[derive(Debug)]
pub struct Offline {
    disk: LoopDisk,
    cli: PathBuf,
    /// Where hostpart is mounted.
    pub mnt: PathBuf,
    /// The copy of the boot state.
    pub state: PathBuf,
}

impl Offline {
    /// Mount hostpart of the disk file `file` under `work` (`work/hostpart`), with the `hnroot`
    /// binary `cli`.
    pub fn open(cli: &Path, work: &Path, file: &Path) -> Result<Offline> {
        let disk = LoopDisk::attach(file, true)?;
        let mnt = work.join("hostpart");
        fs::create_dir_all(&mnt)?;
        run(Command::new("mount").arg(disk.part(2)).arg(&mnt))?;
        let state = work.join("bootstate");
        let _ = fs::remove_file(&state);
        let copied = run(Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-n", "-i", &disk.part(1), "::/hnroot/bootstate"])
            .arg(&state));
        let off = Offline {
            disk,
            cli: cli.to_owned(),
            mnt,
            state,
        };
        if let Err(e) = copied {
            off.close()?;
            return Err(e);
        }
        Ok(off)
    }

    /// `hnroot ARGS` with `--hostpart`/`--bootstate` pointing here.
    pub fn hnroot(&self, args: &[&str]) -> Result<String> {
        run(Command::new(&self.cli)
            .args(args)
            .arg("--hostpart")
            .arg(&self.mnt)
            .arg("--bootstate")
            .arg(&self.state))
    }

    /// `hnroot stage IMAGE --keys KEYS` on this disk; the last line it printed.
    pub fn stage(&self, image: &Path, keys: &Path) -> Result<String> {
        let said = self.hnroot(&[
            "stage",
            image.to_str().context("image path")?,
            "--keys",
            keys.to_str().context("keys path")?,
        ])?;
        Ok(said.lines().last().unwrap_or("").to_owned())
    }

    /// Unmount and detach.
    pub fn close(self) -> Result<()> {
        run(Command::new("umount").arg(&self.mnt))?;
        drop(self.disk);
        Ok(())
    }
}

/// Write `text` as `rel` under `root` with `mode` (replacing what is there, parents made).
pub fn write(root: &Path, rel: &str, text: &str, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let p = root.join(rel);
    if let Some(d) = p.parent() {
        fs::create_dir_all(d)?;
    }
    let _ = fs::remove_file(&p);
    fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
    fs::set_permissions(&p, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Enable `unit` of `/etc/systemd/system` in the tree `root` for `target_dir`
/// (`multi-user.target.wants`, `boot-complete.target.requires`, ...).
pub fn enable(root: &Path, unit: &str, target_dir: &str) -> Result<()> {
    let dir = root.join("etc/systemd/system").join(target_dir);
    fs::create_dir_all(&dir)?;
    let link = dir.join(unit);
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(format!("/etc/systemd/system/{unit}"), link)?;
    Ok(())
}

/// Set the tree's `IMAGE_ID`/`IMAGE_VERSION` (os-release's fields for image-based systems).
pub fn set_version(root: &Path, image_id: &str, version: &str) -> Result<()> {
    let base = fs::read_to_string(root.join("usr/lib/os-release"))?;
    let kept: String = base
        .lines()
        .filter(|l| !l.starts_with("IMAGE_ID=") && !l.starts_with("IMAGE_VERSION="))
        .map(|l| format!("{l}\n"))
        .collect();
    let _ = fs::remove_file(root.join("etc/os-release"));
    write(
        root,
        "etc/os-release",
        &format!("{kept}IMAGE_ID={image_id}\nIMAGE_VERSION={version}\n"),
        0o644,
    )
}

/// A host state, as an operator (or the shared repository) provides it for a known server.
#[derive(Debug, Clone)]
pub struct HostState {
    /// Its hostname.
    pub hostname: &'static str,
    /// Its machine ID (32 hex digits).
    pub machine_id: &'static str,
    /// The text of `files/etc/hnroot-test-host` (shows at `/etc/hnroot-test-host`).
    pub marker: &'static str,
}

/// Write `h` into the host state of the hostpart mounted at `mnt`, with SSH host keys made
/// here; the ed25519 key's fingerprint.
pub fn write_host_state(mnt: &Path, h: &HostState) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let host = mnt.join("data/host");
    write(&host, "hostname", &format!("{}\n", h.hostname), 0o644)?;
    write(&host, "machine-id", &format!("{}\n", h.machine_id), 0o444)?;
    write(
        &host,
        "files/etc/hnroot-test-host",
        &format!("{}\n", h.marker),
        0o644,
    )?;
    let ssh = host.join("ssh");
    fs::create_dir_all(&ssh)?;
    fs::set_permissions(&ssh, fs::Permissions::from_mode(0o700))?;
    for t in ["rsa", "ecdsa", "ed25519"] {
        let key = ssh.join(format!("ssh_host_{t}_key"));
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", t, "-N", "", "-C"])
            .arg(format!("root@{}", h.hostname))
            .arg("-f")
            .arg(&key))?;
    }
    let fp = run(Command::new("ssh-keygen")
        .arg("-lf")
        .arg(ssh.join("ssh_host_ed25519_key.pub")))?;
    fp.split_whitespace()
        .nth(1)
        .map(str::to_owned)
        .context("ssh-keygen -l printed no fingerprint")
}
