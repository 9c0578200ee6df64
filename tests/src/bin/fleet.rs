//! `cargo xtask fleet`: hnroot in a fleet, driven the way operators drive fleets. Three servers
//! (QEMU guests, each a disk made by `hnroot install` with a real Debian 12 image: systemd,
//! sshd, Python for Ansible, the NFS client, the hnroot package), each with its own identity
//! from its host state (hostname, machine ID, SSH host keys). On this machine, started by the
//! suite and reached by the guests through QEMU's user network (127.0.0.1 is 10.0.2.2 there):
//! Debian's **nginx** serving the signed images (Range requests), and **NFS-Ganesha** exporting
//! `/warehouse` (NFSv4; the machine's kernel has no nfsd), which every guest mounts so that its
//! host state is synced with a network filesystem. `ansible-playbook` runs here, reaching the
//! guests through ports forwarded to 127.0.0.1, with the collection `hnroot.fleet` as
//! `ansible-galaxy collection build` made it (after `ansible-lint` passed on it), host keys
//! checked against the ones the suite put into the host states.
//!
//! Scenarios, in one sequence that shares the boots:
//! 1. **failed canary**: the rollout of v2, whose health check fails: the canary (fleet-a) boots
//!    v2 on trial, is reverted to v1 and committed there; the playbook fails naming it; fleet-b and
//!    fleet-c are never staged.
//! 2. **powered off**: fleet-b is powered off; the rollout of v3 (good): the canary runs v3
//!    committed, the playbook stops at fleet-b's batch naming it; fleet-c (a later batch) is
//!    never staged.
//! 3. **completed**: fleet-b back on; the same playbook again completes the rollout: all three run
//!    v3 committed; a second run changes nothing; each guest's metrics file (written by
//!    `hnroot-metrics.timer`'s service) shows v3 and passes `promtool check metrics`; each guest's
//!    host state is in the NFS `/warehouse/hosts/<hostname>/`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use hnroot_testkit::ganesha::Ganesha;
use hnroot_testkit::nginx::{free_port, Nginx};
use hnroot_testkit::qemu::{self, Vm};
use hnroot_testkit::release::Debian;
use hnroot_testkit::server::{
    enable, set_version, write, write_host_state, HostState, LoopDisk, Offline,
};
use hnroot_testkit::{buildenv, deb, debian, grubmod, initramfs};
use serde_json::Value;

/// The release of the guests (Debian 12: its Python 3.11 is one ansible-core 2.14, Debian 12's
/// Ansible, supports on managed hosts).
const RELEASE: Debian = Debian::Bookworm;
/// `IMAGE_ID` of the fleet's images.
const IMAGE_ID: &str = "hnroot-fleet";
/// The disk of each guest: room for three images and the ESP (sparse).
const DISK_MIB: u64 = 4096;
/// Guest memory.
const MEMORY_MIB: u32 = 1024;
/// Bound on a guest's boot until its sshd answers (TCG, three guests on two cores).
const SSH_TIMEOUT: Duration = Duration::from_secs(600);
/// Bound on one `ansible-playbook` run.
const PLAYBOOK_TIMEOUT: Duration = Duration::from_secs(1500);
/// The guests, in inventory order: the canary, then one per batch.
const HOSTS: [HostState; 3] = [
    HostState {
        hostname: "fleet-a",
        machine_id: "a1a1a1a1a1a14a1a8a1a1a1a1a1a1a1a",
        marker: "fleet server a",
    },
    HostState {
        hostname: "fleet-b",
        machine_id: "b2b2b2b2b2b24b2b8b2b2b2b2b2b2b2b",
        marker: "fleet server b",
    },
    HostState {
        hostname: "fleet-c",
        machine_id: "c3c3c3c3c3c34c3c8c3c3c3c3c3c3c3c",
        marker: "fleet server c",
    },
];

#[derive(Debug, Parser)]
#[command(
    name = "fleet",
    about = "hnroot in a fleet: three Debian guests updated by the hnroot.fleet Ansible \
             collection from nginx, host state on an NFS /warehouse, metrics checked by promtool."
)]
struct Args {
    /// Keep the work directory's disks after a passing run (they are removed otherwise).
    #[arg(long)]
    keep: bool,
    /// Only the modules on this machine (connection local, a hostpart directory with the
    /// images), no guests.
    #[arg(long)]
    modules_only: bool,
}

fn say(line: &str) {
    println!("    {line}");
}

fn run(cmd: &mut Command) -> Result<String> {
    buildenv::run(cmd)
}

/// A failing health check that behaves like a real one: it waits for the service (which never
/// answers) with retries for about 30 s after sshd started, then fails.
const FAILING_HEALTH_CHECK: &str = "[Unit]
Description=fleet health check (the service never answers in this image)
After=ssh.service network-online.target
Before=boot-complete.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'for i in 1 2 3 4 5 6; do sleep 5; done; echo \"fleet health check: http://127.0.0.1:8080/health does not answer\" >&2; exit 1'

[Install]
RequiredBy=boot-complete.target
";

/// DHCP on the guest's NIC (systemd-networkd, enabled in the tree).
const NETWORK: &str = "[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n";

/// The work directory, parts and servers.
struct Fleet {
    work: PathBuf,
    images: [PathBuf; 3],
    ssh_key: PathBuf,
    web: Nginx,
    nfs: Ganesha,
    ansible: Ansible,
    guests: Vec<Guest>,
}

/// One server: its disk, its forwarded SSH port, its QEMU while it runs.
struct Guest {
    name: &'static str,
    disk: PathBuf,
    run_dir: PathBuf,
    ssh_port: u16,
    vm: Option<Vm>,
}

impl Guest {
    fn spec(&self) -> qemu::VmSpec {
        let mut spec = qemu::VmSpec::new(
            &format!("fleet {}", self.name),
            &[&self.disk],
            &self.run_dir,
        );
        spec.memory_mib = MEMORY_MIB;
        spec.no_reboot = false;
        spec.user_net = true;
        spec.host_forwards = vec![(self.ssh_port, 22)];
        spec
    }

    /// Power the guest on (QEMU keeps running across the guest's reboots).
    fn power_on(&mut self) -> Result<()> {
        if let Some(vm) = self.vm.as_mut() {
            vm.kill()?;
        }
        self.vm = Some(Vm::start(&self.spec())?);
        Ok(())
    }

    fn tail(&self) -> String {
        self.vm
            .as_ref()
            .map(|v| v.tail(40))
            .unwrap_or_else(|| "(not running)".into())
    }
}

/// `ssh root@127.0.0.1 -p PORT`, host key checked against the host state's.
fn ssh_cmd(f: &Fleet, g: &Guest) -> Command {
    let mut c = Command::new("ssh");
    c.args(["-p", &g.ssh_port.to_string(), "-i"])
        .arg(&f.ssh_key)
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            f.ansible.known_hosts.display()
        ))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=10",
            "root@127.0.0.1",
        ]);
    c
}

/// Run `script` on guest `g` with `sh -c`; its output.
fn ssh(f: &Fleet, g: &Guest, script: &str) -> Result<String> {
    run(ssh_cmd(f, g).arg(script)).with_context(|| format!("on {}", g.name))
}

/// Wait until the guest's sshd lets us in (its boot reached multi-user), bounded.
fn wait_ssh(f: &Fleet, i: usize) -> Result<Duration> {
    let g = &f.guests[i];
    let t = Instant::now();
    loop {
        let out = ssh_cmd(f, g).arg("true").output()?;
        if out.status.success() {
            return Ok(t.elapsed());
        }
        if t.elapsed() > SSH_TIMEOUT {
            bail!(
                "{}: no SSH login within {} s ({}); serial console:\n{}",
                g.name,
                SSH_TIMEOUT.as_secs(),
                String::from_utf8_lossy(&out.stderr).trim(),
                g.tail()
            );
        }
        std::thread::sleep(Duration::from_secs(3));
    }
}

/// `hnroot status --json` on the guest.
fn status(f: &Fleet, g: &Guest) -> Result<Value> {
    let text = ssh(f, g, "hnroot status --json")?;
    serde_json::from_str(&text).with_context(|| format!("{}: status is not JSON: {text}", g.name))
}

/// `hnroot history --json` on the guest.
fn history(f: &Fleet, g: &Guest) -> Result<Vec<Value>> {
    let text = ssh(f, g, "hnroot history --json")?;
    serde_json::from_str(&text).with_context(|| format!("{}: history is not JSON: {text}", g.name))
}

/// What runs on a guest: its image version, whether committed (the boot state's good image is
/// the running one), and the running UUID.
fn running(v: &Value) -> (String, bool, String) {
    let uuid = v["running"]["uuid"].as_str().unwrap_or("").to_owned();
    let at = v["running"]["now_at"].as_str().unwrap_or("");
    let version = v["images"][at]["image_version"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let committed =
        v["boot_state"]["state"] == "committed" && v["boot_state"]["good"].as_str() == Some(&uuid);
    (version, committed, uuid)
}

/// The guest must run image version `version`, committed.
fn check_runs(f: &Fleet, g: &Guest, version: &str) -> Result<Value> {
    let v = status(f, g)?;
    let (got, committed, _) = running(&v);
    ensure!(
        got == version && committed,
        "{}: runs version {got:?} (committed: {committed}), expected {version} committed; \
         hnroot status: {}",
        g.name,
        serde_json::to_string(&v).unwrap_or_default()
    );
    Ok(v)
}

/// Ansible on this machine: the collection as built and installed, its configuration, the
/// inventory of the guests.
struct Ansible {
    dir: PathBuf,
    cfg: PathBuf,
    inventory: PathBuf,
    known_hosts: PathBuf,
    collections: PathBuf,
}

impl Ansible {
    fn env(&self, cmd: &mut Command) {
        cmd.env("ANSIBLE_CONFIG", &self.cfg)
            .env("ANSIBLE_HOME", self.dir.join("home"))
            .env("ANSIBLE_COLLECTIONS_PATH", &self.collections)
            .env("ANSIBLE_LOCAL_TEMP", self.dir.join("tmp"))
            .env("XDG_CACHE_HOME", self.dir.join("cache"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_FORCE_COLOR", "0")
            .env("NO_COLOR", "1")
            .env("PY_COLORS", "0");
    }

    /// The playbook as the collection installs it.
    fn playbook(&self) -> PathBuf {
        self.collections
            .join("ansible_collections/hnroot/fleet/playbooks/rolling-update.yml")
    }
}

/// `ansible-lint` on the collection's source, then `ansible-galaxy collection build` and install
/// of what it built.
fn prepare_ansible(work: &Path) -> Result<Ansible> {
    let dir = buildenv::fresh_dir(&work.join("ansible"))?;
    for d in ["home", "tmp", "cache", "cp", "collections", "build"] {
        fs::create_dir_all(dir.join(d))?;
    }
    let a = Ansible {
        cfg: dir.join("ansible.cfg"),
        inventory: dir.join("inventory.yml"),
        known_hosts: dir.join("known_hosts"),
        collections: dir.join("collections"),
        dir,
    };
    // ServerAlive: the guests sit behind QEMU's port forward, which keeps a connection open when
    // the guest reboots under it; without keepalives ssh (and the reboot's wait) would wait on
    // it for ever.
    fs::write(
        &a.cfg,
        format!(
            "[defaults]\nhost_key_checking = True\ninterpreter_python = /usr/bin/python3\n\
             forks = 3\ntimeout = 30\nretry_files_enabled = False\nstdout_callback = default\n\
             [ssh_connection]\npipelining = True\ncontrol_path_dir = {}\n\
             ssh_args = -o ControlMaster=auto -o ControlPersist=30s -o IdentitiesOnly=yes \
             -o ServerAliveInterval=5 -o ServerAliveCountMax=3 \
             -o StrictHostKeyChecking=yes -o UserKnownHostsFile={}\n",
            a.dir.join("cp").display(),
            a.known_hosts.display()
        ),
    )?;
    let source = buildenv::workspace_root().join("ansible");
    let t = Instant::now();
    let mut build = Command::new("ansible-galaxy");
    build
        .args(["collection", "build", "--force", "--output-path"])
        .arg(a.dir.join("build"))
        .arg(&source);
    a.env(&mut build);
    let built = run(&mut build)?;
    let tarball = built
        .lines()
        .find_map(|l| l.strip_prefix("Created collection for hnroot.fleet at "))
        .map(|p| PathBuf::from(p.trim()))
        .context(format!("ansible-galaxy collection build said: {built}"))?;
    let mut install = Command::new("ansible-galaxy");
    install
        .args(["collection", "install", "--offline", "--force", "-p"])
        .arg(&a.collections)
        .arg(&tarball);
    a.env(&mut install);
    run(&mut install)?;
    ensure!(
        a.playbook().is_file(),
        "the installed collection has no {}",
        a.playbook().display()
    );
    // Linted with the collection installed (its playbook names the role by its full name).
    let mut lint = Command::new("ansible-lint");
    lint.arg("--offline").current_dir(&source);
    a.env(&mut lint);
    let said = run(&mut lint).context("ansible-lint found problems in ansible/")?;
    say(&format!(
        "built {}, installed it; ansible-lint passed on ansible/{} ({:.0} s)",
        tarball.display(),
        if said.trim().is_empty() {
            String::new()
        } else {
            format!(": {}", said.trim())
        },
        t.elapsed().as_secs_f64()
    ));
    Ok(a)
}

/// The inventory: the guests as an operator would list them.
fn write_inventory(f: &Fleet) -> Result<()> {
    let mut text = String::from("all:\n  children:\n    hnroot:\n      hosts:\n");
    for g in &f.guests {
        text.push_str(&format!(
            "        {}:\n          ansible_host: 127.0.0.1\n          ansible_port: {}\n",
            g.name, g.ssh_port
        ));
    }
    text.push_str(&format!(
        "      vars:\n        ansible_user: root\n        ansible_ssh_private_key_file: {}\n",
        f.ssh_key.display()
    ));
    fs::write(&f.ansible.inventory, text)?;
    Ok(())
}

/// One `ansible-playbook` run of the collection's rolling update to `image`: whether it passed,
/// and what it printed (also kept in the work directory).
fn rollout(f: &Fleet, name: &str, image: &str) -> Result<(bool, String)> {
    rollout_with(f, name, image, &[])
}

/// [`rollout`] with more `ansible-playbook` options (`--check`).
fn rollout_with(f: &Fleet, name: &str, image: &str, extra: &[&str]) -> Result<(bool, String)> {
    let t = Instant::now();
    let log = f.ansible.dir.join(format!("{name}.log"));
    let mut cmd = Command::new("timeout");
    cmd.arg(PLAYBOOK_TIMEOUT.as_secs().to_string())
        .arg("ansible-playbook")
        .arg("-i")
        .arg(&f.ansible.inventory)
        .arg(f.ansible.playbook())
        .arg("-e")
        .arg(format!("hnroot_image_url={}", f.web.guest_url(image)))
        .args(extra);
    f.ansible.env(&mut cmd);
    // Its output goes to the log as it runs (to watch a long rollout), then is read back.
    let file = fs::File::create(&log)?;
    let status = cmd
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .status()
        .context("cannot run ansible-playbook")?;
    let text = fs::read_to_string(&log)?;
    say(&format!(
        "ansible-playbook {name} ({image}): {} in {:.0} s; recap: {}",
        if status.success() { "passed" } else { "FAILED" },
        t.elapsed().as_secs_f64(),
        recap(&text)
            .iter()
            .map(|(h, r)| format!("{h} [{r}]"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok((status.success(), text))
}

/// The PLAY RECAP lines: host and counters.
fn recap(text: &str) -> Vec<(String, String)> {
    let Some(at) = text.find("PLAY RECAP") else {
        return Vec::new();
    };
    text[at..]
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (host, counters) = l.split_once(':')?;
            let counters = counters.split_whitespace().collect::<Vec<_>>().join(" ");
            counters
                .starts_with("ok=")
                .then(|| (host.trim().to_owned(), counters))
        })
        .collect()
}

/// A counter of one host's recap line.
fn recap_count(text: &str, host: &str, key: &str) -> Option<u32> {
    recap(text)
        .into_iter()
        .find(|(h, _)| h == host)
        .and_then(|(_, c)| {
            c.split_whitespace().find_map(|kv| {
                kv.strip_prefix(&format!("{key}="))
                    .and_then(|n| n.parse().ok())
            })
        })
}

/// The guest's `stage` events in its history.
fn stages(f: &Fleet, g: &Guest) -> Result<Vec<Value>> {
    Ok(history(f, g)?
        .into_iter()
        .filter(|r| r["event"] == "stage")
        .collect())
}

/// The images v1, v2 (its health check fails) and v3, built from one copy of the tree with the
/// package just built (a minute; the package changes with every build, so they are not cached).
fn build_images(
    work: &Path,
    cli: &Path,
    secret: &Path,
    public: &Path,
    admin_pub: &Path,
    nfs_line: &str,
) -> Result<[PathBuf; 3]> {
    let tree = debian::systemd_tree(RELEASE.suite(), debian::SERVER_EXTRAS)?;
    let t = Instant::now();
    let deb = deb::build(work)?;
    say(&format!(
        "package {} ({:.0} s)",
        deb.path.display(),
        t.elapsed().as_secs_f64()
    ));
    let dir = work.join("images");
    fs::create_dir_all(&dir)?;
    let images = ["1", "2", "3"].map(|v| dir.join(format!("fleet-v{v}.img")));
    let staging = work.join("tree");
    let t = Instant::now();
    debian::copy(&tree.dir, &staging)?;
    let pruned = prune(&staging)?;
    let dpkg = debian::install_deb(&staging, &deb.path)?;
    ensure!(
        staging.join("var/lib/dpkg/info/hnroot.list").is_file(),
        "dpkg -i did not install hnroot: {dpkg}"
    );
    {
        let chroot = debian::Chroot::enter(&staging)?;
        chroot.run(&["systemctl", "enable", "systemd-networkd.service"])?;
    }
    write(
        &staging,
        "etc/systemd/network/80-dhcp.network",
        NETWORK,
        0o644,
    )?;
    let fstab = fs::read_to_string(staging.join("etc/fstab")).unwrap_or_default();
    write(
        &staging,
        "etc/fstab",
        &format!("{fstab}# The fleet's shared repository (host state sync)\n{nfs_line}\n"),
        0o644,
    )?;
    fs::create_dir_all(staging.join("warehouse"))?;
    write(
        &staging,
        "root/.ssh/authorized_keys",
        &fs::read_to_string(admin_pub)?,
        0o600,
    )?;
    fs::copy(public, staging.join("etc/hnroot/keys/publisher.pub"))?;
    say(&format!(
        "tree copied, {pruned} pruned, hnroot installed with dpkg, networkd, /warehouse over NFS, \
         the admin's SSH key ({:.0} s)",
        t.elapsed().as_secs_f64()
    ));
    for (n, image) in images.iter().enumerate() {
        let version = (n + 1).to_string();
        let check = staging.join("etc/systemd/system/fleet-health-check.service");
        let link = staging
            .join("etc/systemd/system/boot-complete.target.requires/fleet-health-check.service");
        if version == "2" {
            write(
                &staging,
                "etc/systemd/system/fleet-health-check.service",
                FAILING_HEALTH_CHECK,
                0o644,
            )?;
            enable(
                &staging,
                "fleet-health-check.service",
                "boot-complete.target.requires",
            )?;
        } else {
            let _ = fs::remove_file(&link);
            let _ = fs::remove_file(&check);
        }
        set_version(&staging, IMAGE_ID, &version)?;
        let t = Instant::now();
        let _ = fs::remove_file(image);
        let said = run(Command::new(cli)
            .args(["image", "build", "--root"])
            .arg(&staging)
            .arg("--out")
            .arg(image))?;
        let cleaned = run(Command::new(cli).arg("sysprep").arg(image))?;
        ensure!(
            cleaned.contains("nothing host-specific is left"),
            "sysprep left host-specific files in v{version}:\n{cleaned}"
        );
        run(Command::new("minisign")
            .arg("-S")
            .arg("-s")
            .arg(secret)
            .arg("-m")
            .arg(image)
            .args(["-t", &format!("{IMAGE_ID} {version}")]))?;
        say(&format!(
            "v{version}{}: {} ({:.0} s)",
            if version == "2" {
                " (its health check fails)"
            } else {
                ""
            },
            said.lines().find(|l| l.contains(" built ")).unwrap_or(""),
            t.elapsed().as_secs_f64()
        ));
    }
    debian::remove(&staging)?;
    Ok(images)
}

/// Driver directories of the kernel's modules that a virtual server of the suite never needs.
const PRUNED: &[&str] = &[
    "gpu",
    "media",
    "infiniband",
    "staging",
    "iio",
    "usb",
    "hid",
    "mmc",
    "mtd",
    "bluetooth",
    "isdn",
    "video",
    "comedi",
    "hwmon",
    "leds",
    "power",
    "thunderbolt",
    "spi",
    "i2c",
    "pinctrl",
    "mfd",
    "regulator",
    "atm",
    "fpga",
    "edac",
    "target",
    "parport",
    "pcmcia",
    "ssb",
    "bcma",
    "memstick",
    "w1",
    "nfc",
    "xen",
    "vfio",
    "vhost",
    "platform",
    "watchdog",
    "net/ethernet",
    "net/wireless",
    "net/usb",
    "net/can",
    "net/wwan",
    "net/ieee802154",
    "net/hamradio",
    "net/fddi",
    "net/arcnet",
    "net/ppp",
    "net/team",
    "net/phy",
    "net/pcs",
    "net/dsa",
    "scsi",
    "ata",
    "nvme",
    "input",
];

/// Make the tree small, as a fleet's image would be: kernel modules for hardware a virtual
/// server never has (sound, graphics, wireless, USB, ...), documentation, manual pages and
/// translations. `depmod` afterwards; the initrd is made afterwards by the package's trigger.
fn prune(tree: &Path) -> Result<String> {
    let before = run(Command::new("du").args(["-sm"]).arg(tree))?;
    let modules = tree.join("usr/lib/modules");
    let mut releases = Vec::new();
    for entry in fs::read_dir(&modules)? {
        let entry = entry?;
        let release = entry.file_name().to_string_lossy().into_owned();
        let kernel = entry.path().join("kernel");
        let _ = fs::remove_dir_all(kernel.join("sound"));
        for d in PRUNED {
            let _ = fs::remove_dir_all(kernel.join("drivers").join(d));
        }
        releases.push(release);
    }
    for d in [
        "usr/share/doc",
        "usr/share/man",
        "usr/share/locale",
        "usr/share/info",
    ] {
        let _ = fs::remove_dir_all(tree.join(d));
        fs::create_dir_all(tree.join(d))?;
    }
    let chroot = debian::Chroot::enter(tree)?;
    for release in &releases {
        chroot.run(&["depmod", release])?;
    }
    drop(chroot);
    let after = run(Command::new("du").args(["-sm"]).arg(tree))?;
    let mib = |s: &str| s.split_whitespace().next().unwrap_or("?").to_owned();
    Ok(format!("{} MiB -> {} MiB", mib(&before), mib(&after)))
}

/// The NFS port: fixed per checkout (the images carry it in their fstab), different between
/// checkouts so that two suites on one machine do not meet.
fn nfs_port() -> u16 {
    let h = buildenv::fnv1a(buildenv::workspace_root().to_string_lossy().as_bytes());
    20_000 + (h % 10_000) as u16
}

/// The parts, the servers on this machine, the collection and the disks; `None` after the
/// modules' check on this machine when `modules_only`.
fn prepare(modules_only: bool) -> Result<Option<Fleet>> {
    let work = buildenv::build_root().join("fleet");
    fs::create_dir_all(&work)?;
    let t = Instant::now();
    let cli = initramfs::static_binary("hnroot-cli", "hnroot")?;
    let kit = grubmod::kit_dir();
    // The publisher's key and the admin's SSH key: made once, kept with the work directory.
    let public = work.join("publisher.pub");
    let secret = work.join("publisher.key");
    if !public.is_file() || !secret.is_file() {
        run(Command::new("minisign")
            .args(["-G", "-W", "-f", "-p"])
            .arg(&public)
            .arg("-s")
            .arg(&secret))?;
    }
    let keys = work.join("keys");
    fs::create_dir_all(&keys)?;
    fs::copy(&public, keys.join("publisher.pub"))?;
    let ssh_key = work.join("admin_ed25519");
    if !ssh_key.is_file() {
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "fleet-admin", "-f"])
            .arg(&ssh_key))?;
    }
    let admin_pub = work.join("admin_ed25519.pub");

    // The servers on this machine's loopback.
    let www = work.join("www");
    fs::create_dir_all(&www)?;
    let warehouse = buildenv::fresh_dir(&work.join("warehouse"))?;
    fs::create_dir_all(warehouse.join("hosts"))?;
    fs::create_dir_all(warehouse.join("images"))?;
    let nfs = Ganesha::start(&warehouse, nfs_port(), &work.join("ganesha"))
        .context("starting the NFS server for /warehouse")?;
    say(&format!(
        "NFS-Ganesha exports {} as 10.0.2.2:{} (port {})",
        warehouse.display(),
        hnroot_testkit::ganesha::PSEUDO,
        nfs.port
    ));
    let images = build_images(
        &work,
        &cli,
        &secret,
        &public,
        &admin_pub,
        &nfs.guest_fstab_line(),
    )?;
    for image in &images {
        for suffix in ["", ".minisig"] {
            let name = format!(
                "{}{suffix}",
                image.file_name().context("image name")?.to_string_lossy()
            );
            let from = PathBuf::from(format!("{}{suffix}", image.display()));
            let to = www.join(&name);
            let _ = fs::remove_file(&to);
            fs::hard_link(&from, &to).or_else(|_| fs::copy(&from, &to).map(|_| ()))?;
        }
    }
    let web = Nginx::start(&www, &work.join("nginx"))?;
    say(&format!(
        "nginx serves {} on 127.0.0.1:{} (guests: {})",
        www.display(),
        web.port,
        web.guest_url("")
    ));
    let ansible = prepare_ansible(&work)?;
    modules_here(&work, &cli, &keys, &images, &ansible)?;
    if modules_only {
        return Ok(None);
    }

    // One install, copied to three disks, each then given its host's state.
    let t_disks = Instant::now();
    let mut guests = Vec::new();
    let mut known = String::new();
    for (n, h) in HOSTS.iter().enumerate() {
        let disk = work.join(format!("{}.img", h.hostname));
        let _ = fs::remove_file(&disk);
        if n == 0 {
            fs::File::create(&disk)?.set_len(DISK_MIB << 20)?;
            let d = LoopDisk::attach(&disk, false)?;
            run(Command::new(&cli)
                .args([
                    "install",
                    "--disk",
                    &d.node,
                    "--yes",
                    "--no-boot-entry",
                    "--image",
                ])
                .arg(&images[0])
                .arg("--keys")
                .arg(&keys)
                .arg("--kit")
                .arg(&kit))?;
        } else {
            run(Command::new("cp")
                .args(["--sparse=always", "--reflink=auto"])
                .arg(work.join(format!("{}.img", HOSTS[0].hostname)))
                .arg(&disk))?;
        }
        guests.push(Guest {
            name: h.hostname,
            disk,
            run_dir: work.join(format!("qemu-{}", h.hostname)),
            ssh_port: free_port()?,
            vm: None,
        });
    }
    for (h, g) in HOSTS.iter().zip(&guests) {
        let off = Offline::open(&cli, &work, &g.disk)?;
        let written = write_host_state(&off.mnt, h);
        let keys_text = fs::read_dir(off.mnt.join("data/host/ssh"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".pub"))
                    .filter_map(|e| fs::read_to_string(e.path()).ok())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        off.close()?;
        written?;
        for k in keys_text {
            let mut parts = k.split_whitespace();
            let (Some(kind), Some(body)) = (parts.next(), parts.next()) else {
                continue;
            };
            known.push_str(&format!("[127.0.0.1]:{} {kind} {body}\n", g.ssh_port));
        }
    }
    fs::write(&ansible.known_hosts, known)?;
    say(&format!(
        "v1 installed on {}, copied to two more disks, each given its own host state ({:.0} s)",
        guests[0].disk.display(),
        t_disks.elapsed().as_secs_f64()
    ));
    let fleet = Fleet {
        work,
        images,
        ssh_key,
        web,
        nfs,
        ansible,
        guests,
    };
    write_inventory(&fleet)?;
    say(&format!(
        "parts ready in {:.0} s",
        t.elapsed().as_secs_f64()
    ));
    Ok(Some(fleet))
}

/// Power on every guest that is off, and wait for their sshd.
fn boot_all(f: &mut Fleet) -> Result<()> {
    let t = Instant::now();
    for g in f.guests.iter_mut().filter(|g| g.vm.is_none()) {
        g.power_on()?;
    }
    for i in 0..f.guests.len() {
        let took = wait_ssh(f, i)?;
        say(&format!(
            "{} up (SSH after {:.0} s)",
            f.guests[i].name,
            took.as_secs_f64()
        ));
    }
    say(&format!("guests up in {:.0} s", t.elapsed().as_secs_f64()));
    Ok(())
}

/// Check every guest's identity: the hostname and machine ID its host state gave it.
fn check_identities(f: &Fleet) -> Result<()> {
    for (h, g) in HOSTS.iter().zip(&f.guests) {
        let said = ssh(
            f,
            g,
            "hostname; cat /etc/machine-id; cat /etc/hnroot-test-host",
        )?;
        let lines: Vec<&str> = said.lines().collect();
        ensure!(
            lines == [h.hostname, h.machine_id, h.marker],
            "{}: it says it is {lines:?}, its host state says {:?}",
            g.name,
            [h.hostname, h.machine_id, h.marker]
        );
    }
    say("each guest is its host state's host (hostname, machine ID, host state file; SSH host key checked by ssh)");
    Ok(())
}

/// Check mode first: every host would stage v2 (`hnroot stage --dry-run`), nothing is written,
/// nothing reboots.
fn check_mode(f: &Fleet) -> Result<()> {
    let (ok, text) = rollout_with(f, "v2-check-mode", "fleet-v2.img", &["--check"])?;
    ensure!(ok, "the rollout of v2 in check mode failed:\n{text}");
    for g in &f.guests {
        ensure!(
            recap_count(&text, g.name, "changed") == Some(1)
                && text.contains(&format!("changed: [{}]", g.name)),
            "check mode does not say that {} would be staged:\n{text}",
            g.name
        );
        let s = stages(f, g)?;
        ensure!(s.is_empty(), "check mode staged on {}: {s:?}", g.name);
    }
    say("check mode: every host would stage v2; nothing was staged, nothing rebooted");
    Ok(())
}

/// The modules on this machine (`ansible -c local`) against a hostpart directory holding real
/// images, as they run on a host: `hnroot_status`'s facts; `hnroot_revert` in check mode (changed,
/// nothing written), for real (changed, `system-revert` there), again (unchanged);
/// `hnroot_stage` of the running image (unchanged) and, in check mode, of another (changed,
/// nothing written).
fn modules_here(
    work: &Path,
    cli: &Path,
    keys: &Path,
    images: &[PathBuf; 3],
    a: &Ansible,
) -> Result<()> {
    let t = Instant::now();
    let dir = buildenv::fresh_dir(&work.join("modules-here"))?;
    let hp = dir.join("hostpart");
    fs::create_dir_all(&hp)?;
    for (from, to) in [(&images[2], "hn-root.img"), (&images[0], "hn-root-old.img")] {
        run(Command::new("cp")
            .args(["--sparse=always", "--reflink=auto"])
            .arg(from)
            .arg(hp.join(to)))?;
    }
    let state = dir.join("bootstate");
    run(Command::new(cli)
        .args(["bootstate", "init", "--hostpart"])
        .arg(&hp)
        .arg("--bootstate")
        .arg(&state))?;
    let common = format!(
        "binary={} hostpart={} bootstate={}",
        cli.display(),
        hp.display(),
        state.display()
    );
    let module = |name: &str, args: &str, check: bool| -> Result<Value> {
        let mut cmd = Command::new("ansible");
        cmd.args(["localhost", "-c", "local", "-m"])
            .arg(format!("hnroot.fleet.{name}"))
            .arg("-a")
            .arg(format!("{common} {args}"));
        if check {
            cmd.arg("--check");
        }
        a.env(&mut cmd);
        cmd.env("ANSIBLE_LOAD_CALLBACK_PLUGINS", "1")
            .env("ANSIBLE_STDOUT_CALLBACK", "json");
        let out = cmd.output().context("cannot run ansible")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let v: Value = serde_json::from_str(&text).with_context(|| {
            format!(
                "ansible -m {name} printed no JSON: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        Ok(v["plays"][0]["tasks"][0]["hosts"]["localhost"].clone())
    };
    let st = module("hnroot_status", "", false)?;
    ensure!(
        st["hnroot"]["boot_state"] == "committed"
            && st["hnroot"]["images"]["hn-root.img"]["image_version"] == "3"
            && st["changed"] == false,
        "hnroot_status: {st}"
    );
    let marker = hp.join("system-revert");
    let r = module("hnroot_revert", "", true)?;
    ensure!(
        r["changed"] == true && !marker.exists(),
        "hnroot_revert in check mode: {r} (marker written: {})",
        marker.exists()
    );
    let r = module("hnroot_revert", "", false)?;
    ensure!(
        r["changed"] == true && marker.exists(),
        "hnroot_revert: {r}"
    );
    let r = module("hnroot_revert", "", false)?;
    ensure!(r["changed"] == false, "hnroot_revert again: {r}");
    fs::remove_file(&marker)?;
    let stage_args = |image: &Path| format!("source={} keys={}", image.display(), keys.display());
    let r = module("hnroot_stage", &stage_args(&images[2]), false)?;
    ensure!(
        r["changed"] == false && r["state"] == "running" && r["version"] == "hnroot-fleet 3",
        "hnroot_stage of the running image: {r}"
    );
    let r = module("hnroot_stage", &stage_args(&images[1]), true)?;
    ensure!(
        r["changed"] == true
            && r["state"] == "staged"
            && r["version"] == "hnroot-fleet 2"
            && !hp.join("hn-root-new.img").exists(),
        "hnroot_stage in check mode: {r}"
    );
    buildenv::fresh_dir(&dir)?;
    say(&format!(
        "modules on this machine: hnroot_status, hnroot_revert (check mode, real, again), \
         hnroot_stage (the running image: unchanged; check mode: would stage, nothing \
         written) ({:.0} s)",
        t.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Scenario 1: v2's health check fails on the canary.
fn failed_canary(f: &Fleet) -> Result<()> {
    let (ok, text) = rollout(f, "v2-failed-canary", "fleet-v2.img")?;
    let a = &f.guests[0];
    ensure!(
        !ok,
        "the rollout of v2 passed, but v2's health check fails:\n{text}"
    );
    let fatal = text
        .lines()
        .find(|l| l.contains("fatal: [fleet-a]"))
        .unwrap_or("");
    ensure!(
        fatal.contains("did not commit hnroot-fleet 2") && fatal.contains("hnroot history"),
        "the playbook's failure does not name the canary and its history:\n{text}"
    );
    ensure!(
        !text.contains("fleet-b") && !text.contains("fleet-c"),
        "the playbook went on to other hosts after the canary failed:\n{text}"
    );
    let v = check_runs(f, a, "1")?;
    ensure!(
        v["images"]["hn-root-broken.img"]["image_version"] == "2",
        "{}: v2 is not kept as hn-root-broken.img: {v}",
        a.name
    );
    let h = history(f, a)?;
    let boots: Vec<String> = h
        .iter()
        .filter(|r| r["event"] == "boot")
        .map(|r| r["reason"].as_str().unwrap_or("").to_owned())
        .collect();
    say(&format!(
        "canary: back on v1 committed, v2 kept as hn-root-broken.img; its boots: {}; failure \
         line: {}",
        boots.join(", "),
        fatal.chars().take(300).collect::<String>()
    ));
    for g in &f.guests[1..] {
        let s = stages(f, g)?;
        let v = status(f, g)?;
        ensure!(
            s.is_empty() && v["images"]["hn-root-new.img"]["state"] != "bootable",
            "{} was staged although the canary failed: {s:?}",
            g.name
        );
        check_runs(f, g, "1")?;
    }
    say("fleet-b and fleet-c: never staged, still v1 committed");
    Ok(())
}

/// Scenario 2: fleet-b is off when its batch comes.
fn powered_off(f: &mut Fleet) -> Result<()> {
    {
        let b = &f.guests[1];
        let _ = ssh(f, b, "systemctl poweroff");
    }
    if let Some(vm) = f.guests[1].vm.as_mut() {
        vm.wait_exit(Duration::from_secs(120))?;
    }
    f.guests[1].vm = None;
    say("fleet-b powered off");
    let (ok, text) = rollout(f, "v3-fleet-b-off", "fleet-v3.img")?;
    ensure!(!ok, "the rollout passed with fleet-b powered off:\n{text}");
    ensure!(
        text.lines()
            .any(|l| l.contains("fleet-b") && (l.contains("UNREACHABLE") || l.contains("fatal"))),
        "the playbook does not name fleet-b:\n{text}"
    );
    ensure!(
        recap_count(&text, "fleet-c", "ok").is_none(),
        "fleet-c (a later batch) was reached:\n{text}"
    );
    check_runs(f, &f.guests[0], "3")?;
    let c = &f.guests[2];
    let s = stages(f, c)?;
    ensure!(s.is_empty(), "fleet-c was staged: {s:?}");
    check_runs(f, c, "1")?;
    say("the canary runs v3 committed; the rollout stopped at fleet-b's batch; fleet-c never staged");
    Ok(())
}

/// Scenario 3: fleet-b is back: the rollout completes; then nothing changes.
fn completed(f: &mut Fleet) -> Result<()> {
    boot_all(f)?;
    let (ok, text) = rollout(f, "v3-completed", "fleet-v3.img")?;
    ensure!(ok, "the rollout of v3 failed with every guest up:\n{text}");
    ensure!(
        recap_count(&text, "fleet-a", "changed") == Some(0),
        "fleet-a already ran v3 but the run changed it:\n{text}"
    );
    for g in &f.guests {
        check_runs(f, g, "3")?;
    }
    say("every guest runs v3 committed");
    let (ok, text) = rollout(f, "v3-again", "fleet-v3.img")?;
    ensure!(ok, "the second run failed:\n{text}");
    for g in &f.guests {
        ensure!(
            recap_count(&text, g.name, "changed") == Some(0),
            "the second run changed {}:\n{text}",
            g.name
        );
    }
    say("a second run changes nothing (changed=0 on every host, no reboot)");
    Ok(())
}

/// Each guest's metrics file: v3, committed, accepted by promtool.
fn check_metrics(f: &Fleet) -> Result<()> {
    for g in &f.guests {
        let text = ssh(
            f,
            g,
            "systemctl is-active --quiet hnroot-metrics.timer || echo 'timer inactive' >&2; \
             systemctl start hnroot-metrics.service && cat /var/lib/prometheus/node-exporter/hnroot.prom",
        )?;
        let file = f.work.join(format!("{}.prom", g.name));
        fs::write(&file, &text)?;
        run(Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(fs::File::open(&file)?))
        .with_context(|| format!("{}: promtool refuses {}", g.name, file.display()))?;
        let info = text
            .lines()
            .find(|l| l.starts_with("hnroot_running_image_info{"))
            .unwrap_or("");
        ensure!(
            info.contains("version=\"hnroot-fleet 3\"")
                && text.contains("\nhnroot_running_committed 1\n")
                && text.contains("\nhnroot_trial 0\n")
                && text.contains("\nhnroot_last_stage_bytes "),
            "{}: the metrics do not show v3 committed and its stage:\n{text}",
            g.name
        );
    }
    let a = fs::read_to_string(f.work.join("fleet-a.prom"))?;
    let value = |name: &str| -> u64 {
        a.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    // One failed health check and a revert when the role's revert beat the trial's reboot;
    // more failed checks and an automatic rollback when it did not.
    ensure!(
        value("hnroot_health_check_failures_total") >= 1
            && value("hnroot_reverts_total") + value("hnroot_rollbacks_total") == 1,
        "fleet-a's metrics do not count v2's failed health check and its way back to v1:\n{a}"
    );
    say("metrics: every guest's hnroot.prom shows v3 committed and passes promtool check metrics; fleet-a's counts v2's failed health check and its revert");
    Ok(())
}

/// Each guest's host state is in the NFS `/warehouse/hosts/<hostname>/`.
fn check_warehouse(f: &Fleet) -> Result<()> {
    for (h, g) in HOSTS.iter().zip(&f.guests) {
        let dir = f.nfs.export.join("hosts").join(h.hostname);
        let machine_id = fs::read_to_string(dir.join("machine-id")).unwrap_or_default();
        let key = fs::read_to_string(dir.join("ssh/ssh_host_ed25519_key.pub")).unwrap_or_default();
        let said = ssh(
            f,
            g,
            "cat /hostpart/data/host/ssh/ssh_host_ed25519_key.pub; findmnt -n -o FSTYPE,SOURCE \
             /warehouse; systemctl show -P Result hnroot-host-sync.service",
        )?;
        // One space between findmnt's columns.
        let theirs: String = said
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") + "\n")
            .collect();
        ensure!(
            machine_id.trim() == h.machine_id
                && !key.is_empty()
                && theirs.starts_with(&key)
                && theirs.contains("nfs4 10.0.2.2:/warehouse")
                && theirs.lines().last() == Some("success"),
            "{}: /warehouse/hosts/{} holds machine-id {:?} and key {:?}; the guest says:\n{theirs}\n\
             ganesha's log:\n{}",
            g.name,
            h.hostname,
            machine_id.trim(),
            key.trim(),
            f.nfs.log()
        );
    }
    say("host state: each guest's machine ID and SSH host keys are in the NFS /warehouse/hosts/<hostname>/ (mounted over nfs4, synced by hnroot-host-sync.service)");
    Ok(())
}

/// What nginx served: Range requests, and the bytes of each image.
fn report_web(f: &Fleet) -> Result<()> {
    let reqs = f.web.requests();
    let ranged = reqs.iter().filter(|r| r.status == 206).count();
    let total: u64 = reqs.iter().map(|r| r.bytes).sum();
    ensure!(
        ranged > 0,
        "nginx answered no Range request ({} requests):\n{}",
        reqs.len(),
        f.web.errors()
    );
    let size = fs::metadata(&f.images[2])?.len();
    say(&format!(
        "nginx: {} requests, {ranged} of them Range requests (206), {} MiB served in all; an \
         image is {} MiB",
        reqs.len(),
        total >> 20,
        size >> 20
    ));
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !buildenv::is_root() {
        bail!("the fleet suite needs root (mmdebstrap, chroot, loop devices)");
    }
    let t = Instant::now();
    println!(
        "== fleet: parts (Debian {} tree, package, images, nginx, NFS, Ansible collection, disks)",
        RELEASE.suite()
    );
    let Some(mut fleet) = prepare(args.modules_only)? else {
        println!(
            "fleet: modules on this machine passed in {:.0} s",
            t.elapsed().as_secs_f64()
        );
        return Ok(());
    };
    println!("== fleet: three guests boot v1");
    let result = (|| -> Result<()> {
        boot_all(&mut fleet)?;
        check_identities(&fleet)?;
        println!("== failed canary: v2's health check fails on fleet-a");
        check_mode(&fleet)?;
        failed_canary(&fleet)?;
        println!("== powered off: fleet-b is off when its batch of the v3 rollout comes");
        powered_off(&mut fleet)?;
        println!(
            "== completed: fleet-b back; the rollout of v3 completes, a second run changes nothing"
        );
        completed(&mut fleet)?;
        check_metrics(&fleet)?;
        check_warehouse(&fleet)?;
        report_web(&fleet)
    })();
    if let Err(e) = &result {
        for g in &fleet.guests {
            println!("--- {} serial tail ---\n{}", g.name, g.tail());
        }
        println!("fleet: FAILED: {e:#}");
    }
    for g in fleet.guests.iter_mut() {
        if let Some(vm) = g.vm.as_mut() {
            let _ = vm.kill();
        }
    }
    if result.is_ok() && !args.keep {
        for g in &fleet.guests {
            let _ = fs::remove_file(&g.disk);
        }
    }
    println!(
        "fleet: {} in {:.0} s",
        if result.is_ok() { "passed" } else { "FAILED" },
        t.elapsed().as_secs_f64()
    );
    result
}
