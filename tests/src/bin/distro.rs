//! `cargo xtask distro`: hnroot on a real distribution, installed the way a sysadmin would. A
//! stock Debian tree (mmdebstrap: systemd, Debian's kernel and initramfs-tools; cached) gets
//! the hnroot package (`cargo xtask deb`) with dpkg, its trigger rebuilding the initrd with
//! hnroot's hook; `hnroot image build` turns the tree into images; `hnroot install` makes a
//! blank disk (a loop device) an hnroot disk with the first of them; `hnroot stage` puts the
//! next one on hostpart; QEMU boots the disk through the production chain (OVMF, GRUB with
//! hnroot.mod, Debian's kernel, initramfs-tools with `hnroot-init mount-root`, systemd).
//! `--debian 12|13` picks the release of the tree. The GRUB `hnroot install` puts on the disk
//! is hnroot's own, from the loader kit the package ships (the same for both releases); the
//! tree keeps the archive's current GRUB packages, never held or replaced: after `dpkg -i` the
//! suite checks that nothing is held, that the package depends on no GRUB package, and that
//! apt reinstalls the tree's GRUB packages from the archive with hnroot left installed and its
//! loader kit unchanged.
//!
//! Scenario `debian-systemd`: v1 installed, v2 staged: the update boots, systemd reaches
//! multi-user.target, `hnroot-mark-good.service` commits v2 after `boot-complete.target`, and
//! `systemctl --failed` is empty. Then v3, whose health check fails on purpose, is staged: it
//! is never marked good; each trial boot ends in a reboot (`hnroot health-failed`), GRUB rolls
//! back to v2 once the tries are used up, and v2 runs again, committed (`--without-failing-trials`
//! stops after v2's commit and the loader's update: v3 is then not built). The images carry a
//! report unit (test instrumentation, added to the tree before the image is built) that prints
//! what systemd and hnroot say on the serial console and powers off. The images are cleaned
//! with `hnroot sysprep` before they are signed (the tree has the build host's name and the SSH
//! host keys openssh-server's postinst made).
//!
//! Scenario `identity`: one image, many servers. v1 on two disks (simulated servers): one
//! with its own host state on hostpart (hostname, machine ID, SSH host keys, a file of the
//! mirror tree) comes up as itself (the fleet suite boots three such servers from one image);
//! the other, with none, creates its identity on its first
//! boot (machine ID and hostname in the initramfs, the hostname from its DMI serial; SSH host
//! keys by `hnroot-host-keys.service`) and keeps it across an update to v2 and a revert to v1.
//! An identity report unit prints the hostname, the machine ID, the ed25519 key sshd serves
//! (`ssh-keyscan`) and what the host state holds.
//!
//! Scenario `secure-boot`: a Secure Boot server. OVMF's Secure Boot firmware trusts the test
//! operator's certificate and Debian's CA; `hnroot install --sign-key --sign-cert
//! --require-sealed` writes an older loader (0.0.1), signed, and v1 sealed (`hnroot image
//! seal`). The boot runs the whole chain of trust: the firmware checks the loader, GRUB the
//! seal, the firmware Debian's signed kernel, dm-verity every block of the image; systemd comes
//! up with the kernel locked down. The loader service, which holds no key, writes the image's
//! presigned loader (`hnroot bootloader presign`, run when the images are built); the next
//! boot starts it under Secure Boot and commits v2 (sealed, staged).
//!
//! Scenario `debian-dracut`: the same with a tree whose initrd dracut makes (Debian's `dracut`
//! instead of `initramfs-tools`): `dpkg -i` alone leaves an initrd with hnroot's dracut module;
//! d1's initrd runs systemd (dracut's default: `hnroot-sysroot.service`), d2's dracut's shell
//! init (the module's mount hook). d1 is installed and boots; d2 is staged and boots as the
//! update, committed by `hnroot-mark-good.service`. Each boot reports which path mounted the root
//! and that hostpart was moved into it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use hnroot_testkit::buildenv;
use hnroot_testkit::console::{BootRecord, End, Session, GRUB_COUNTDOWN, SYSTEMD_END_MARKERS};
use hnroot_testkit::release::Debian;
use hnroot_testkit::secureboot::SecureBoot;
use hnroot_testkit::server::{
    enable, set_version, write, write_host_state, HostState, LoopDisk, Offline,
};
use hnroot_testkit::{deb, debian, grubmod, initramfs, qemu};

/// Bound on one boot of the Debian image under TCG (firmware, GRUB, kernel, initramfs-tools,
/// systemd to multi-user.target and the report), or on a reboot of a failed trial.
const BOOT_TIMEOUT: Duration = Duration::from_secs(420);
/// The disk: room for three images of the Debian tree and the ESP.
const DISK_MIB: u64 = 6144;

#[derive(Debug, Parser)]
#[command(
    name = "distro",
    about = "hnroot on a real Debian with systemd: package, image build, install, stage, and \
             boots in QEMU (update committed by the health checks; a failing health check, one that \
             never finishes and a hung machine, each counted, rolled back; a Secure Boot server \
             with sealed images)."
)]
struct Args {
    /// The Debian release of the tree: 12 (kernel 6.1) or 13 (kernel 6.12, GRUB packages
    /// 2.12); the GRUB installed is hnroot's own either way.
    #[arg(long, default_value_t = Debian::NEWEST)]
    debian: Debian,
    /// Run only this scenario (default: every one).
    #[arg(long, value_enum)]
    only: Option<Scenario>,
    /// `debian-systemd` ends once the update is committed and the loader updated: v3's three
    /// failing trial boots (a health check failing, one never finishing, a hung machine) and
    /// the rollback are left out (`cargo xtask test` runs them on Debian 13 only: they are
    /// systemd's timeouts and watchdog and hnroot's counting, alike on both releases).
    #[arg(long)]
    without_failing_trials: bool,
}

/// The suite's scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    /// initramfs-tools: update committed; a health check failing, never finishing and hanging
    /// the machine (the watchdog resets it) on the three trial boots, rolled back.
    DebianSystemd,
    /// dracut: systemd-mode and shell-mode initrds, install and update.
    DebianDracut,
    /// One image on two servers, each coming up as itself.
    Identity,
    /// A Secure Boot server: sealed images, the loader signed, its update the presigned one.
    SecureBoot,
}

/// What every step shares.
struct Parts {
    /// The images, built once for every scenario.
    images: std::cell::OnceCell<Images>,
    /// Whether v3 (whose health check fails) is built and its trials run.
    failing_trials: bool,
    tree: debian::Tree,
    deb: deb::Deb,
    cli: PathBuf,
    /// The loader kit the package ships (hnroot's GRUB), which `hnroot install` builds the
    /// disk's loader from.
    kit: PathBuf,
    work: PathBuf,
    public: PathBuf,
    secret: PathBuf,
    /// The test operator's Secure Boot key and the OVMF variables that trust it.
    secure_boot: SecureBoot,
}

impl Parts {
    /// `hnroot install` of `image` onto the blank disk `node`, with the release's GRUB.
    fn install(&self, node: &str, image: &Path, keys: &Path) -> Result<String> {
        self.install_with(node, image, keys, &self.kit, &[])
    }

    /// [`Parts::install`] with the loader built from `kit`, and `extra` options.
    fn install_with(
        &self,
        node: &str,
        image: &Path,
        keys: &Path,
        kit: &Path,
        extra: &[&str],
    ) -> Result<String> {
        run(Command::new(&self.cli)
            .args([
                "install",
                "--disk",
                node,
                "--yes",
                "--no-boot-entry",
                "--image",
            ])
            .arg(image)
            .arg("--keys")
            .arg(keys)
            .arg("--kit")
            .arg(kit)
            .args(extra))
    }
}

fn run(cmd: &mut Command) -> Result<String> {
    buildenv::run(cmd)
}

fn say(line: &str) {
    println!("    {line}");
}

/// The report unit and its script: what systemd and hnroot say, on the serial console.
const REPORT_UNIT: &str = "[Unit]
Description=hnroot test: report this boot on the serial console
DefaultDependencies=no
After=multi-user.target boot-complete.target
Before=hnroot-mark-good.service

[Service]
Type=oneshot
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
ExecStart=/usr/local/sbin/hnroot-test-report

[Install]
WantedBy=multi-user.target
";

const REPORT_SCRIPT: &str = "#!/bin/sh
. /etc/os-release
echo \"hnroot-test: version ${IMAGE_VERSION}\"
echo \"hnroot-test: root $(findmnt -n -o FSTYPE /) $(findmnt -n -o OPTIONS /)\"
echo \"hnroot-test: failed [$(systemctl --failed --no-legend --plain | awk '{print $1}' | tr '\\n' ' ' | sed 's/ $//')]\"
echo \"hnroot-test: boot-complete $(systemctl is-active boot-complete.target)\"
echo \"hnroot-test: health-check $(systemctl is-active fleet-health-check.service)\"
echo \"hnroot-test: boot-complete-timeout $(journalctl -b -o cat -u boot-complete.target | grep -c 'timed out')\"
# The hardware watchdog as the kernel sees it: who, whether systemd runs it, its timeout, and
# whether it reset the machine before this boot (bootstatus 32, WDIOF_CARDRESET).
w=/sys/class/watchdog/watchdog0
if [ -e $w ]; then
\techo \"hnroot-test: watchdog [$(cat $w/identity)] $(cat $w/state) $(cat $w/timeout) $(cat $w/bootstatus)\"
else
\techo \"hnroot-test: watchdog none\"
fi
# The image's device (a loop device, or the dm-verity device over one for a sealed image) and
# the loop device under it: direct I/O as the kernel says (1) or buffered (0).
dev=$(basename \"$(readlink -f \"$(findmnt -n -o SOURCE /run/hnroot/image)\")\")
under=$(ls /sys/block/$dev/slaves 2>/dev/null | head -n 1)
lo=${under:-$dev}
echo \"hnroot-test: image-device $dev $(cat /sys/block/$dev/dm/name 2>/dev/null || echo no-dm)\"
echo \"hnroot-test: image-dio $lo $(cat /sys/block/$lo/loop/dio 2>/dev/null || echo none)\"
# The kernel's lockdown mode: Debian's kernel locks itself down when the firmware says Secure
# Boot is on (the kernel's own `secureboot:` line says what the firmware said).
echo \"hnroot-test: lockdown $(cat /sys/kernel/security/lockdown 2>/dev/null || echo none)\"
# The ESP at /boot/loader (fstab, nofail): once this boot's own mount job is done, without
# starting another.
while systemctl list-jobs --no-legend | grep -q boot-loader.mount; do sleep 1; done
echo \"hnroot-test: esp $(findmnt -n -o FSTYPE /boot/loader)\"
";

/// After `hnroot-mark-good.service`: its result, hnroot's view, and the power-off of a boot that
/// was marked good (a failed trial reboots through `hnroot health-failed` instead).
const END_UNIT: &str = "[Unit]
Description=hnroot test: end a good boot
DefaultDependencies=no
After=hnroot-mark-good.service hnroot-bootloader-update.service

[Service]
Type=oneshot
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
ExecStart=/usr/local/sbin/hnroot-test-end

[Install]
WantedBy=multi-user.target
";

const END_SCRIPT: &str = "#!/bin/sh
echo \"hnroot-test: mark-good $(systemctl is-active hnroot-mark-good.service)\"
u=hnroot-bootloader-update.service
echo \"hnroot-test: loader-service $(systemctl show -P Result $u) updated=$(journalctl -b -o cat -u $u | grep -c \"the ESP's loader is now\") not-committed=$(journalctl -b -o cat -u $u | grep -c 'not-committed')\"
/usr/sbin/hnroot status 2>&1 | sed 's/^/hnroot-test: status /'
if systemctl is-active --quiet hnroot-mark-good.service; then
\techo \"hnroot-test: powering off\"
\tsystemctl poweroff
else
\techo \"hnroot-test: not marked good\"
fi
";

/// Scenario `identity`'s report: who this server is, as systemd, sshd and the host state say.
const IDENTITY_UNIT: &str = "[Unit]
Description=hnroot test: report this host's identity on the serial console
DefaultDependencies=no
After=multi-user.target hnroot-test-report.service
Before=hnroot-mark-good.service hnroot-test-end.service

[Service]
Type=oneshot
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
ExecStart=/usr/local/sbin/hnroot-test-identity

[Install]
WantedBy=multi-user.target
";

const IDENTITY_SCRIPT: &str = "#!/bin/sh
h=/hostpart/data/host
echo \"hnroot-test: hostname $(hostname)\"
echo \"hnroot-test: machine-id $(cat /etc/machine-id)\"
echo \"hnroot-test: state-hostname $(cat $h/hostname)\"
echo \"hnroot-test: state-machine-id $(cat $h/machine-id)\"
echo \"hnroot-test: state-keys [$(cd $h/ssh && ls | tr '\\n' ' ' | sed 's/ $//')]\"
echo \"hnroot-test: state-key $(ssh-keygen -lf $h/ssh/ssh_host_ed25519_key.pub | awk '{print $2}')\"
echo \"hnroot-test: sshd-key $(ssh-keyscan -t ed25519 127.0.0.1 2>/dev/null | ssh-keygen -lf - | awk '{print $2}')\"
echo \"hnroot-test: ssh $(systemctl is-active ssh.service)\"
echo \"hnroot-test: host-keys-unit $(systemctl show -P Result hnroot-host-keys.service) $(systemctl show -P ConditionResult hnroot-host-keys.service)\"
echo \"hnroot-test: marker $(cat /etc/hnroot-test-host 2>/dev/null || echo none)\"
echo \"hnroot-test: created $(grep -c ' created ' $h/log 2>/dev/null || echo 0)\"
";

/// Add scenario `identity`'s report unit to the staging tree.
fn add_identity_report(staging: &Path) -> Result<()> {
    write(
        staging,
        "etc/systemd/system/hnroot-test-identity.service",
        IDENTITY_UNIT,
        0o644,
    )?;
    write(
        staging,
        "usr/local/sbin/hnroot-test-identity",
        IDENTITY_SCRIPT,
        0o755,
    )?;
    enable(
        staging,
        "hnroot-test-identity.service",
        "multi-user.target.wants",
    )
}

/// v3's health check: required by boot-complete.target, it fails a different way on each of
/// v3's trial boots (its count kept on hostpart, which outlives the boot): at once (the service
/// does not answer), by never finishing (the health-check deadline, T, must end the trial), and by
/// hanging the whole machine (the hardware watchdog must reset it).
const FLEET_HEALTH_CHECK: &str = "[Unit]
Description=fleet health check (fails on purpose in this image)
Before=boot-complete.target
RequiresMountsFor=/hostpart

[Service]
Type=oneshot
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
ExecStart=/usr/local/sbin/fleet-health-check

[Install]
RequiredBy=boot-complete.target
";

/// How v3's health check fails on its Nth boot. The machine hangs the way a livelocked server
/// does: a real-time busy loop on every CPU, with the kernel's real-time throttling off (and
/// from Linux 6.12 on, its fair-class deadline server, which would still give ordinary tasks 5 %
/// of each CPU, set to no runtime), leaves PID 1 (and so systemd's watchdog pings) no CPU at
/// all, while interrupts (the console) still run.
const FLEET_HEALTH_SCRIPT: &str = "#!/bin/sh
mkdir -p /hostpart/data
n=/hostpart/data/hnroot-test-v3-boots
c=$(( $(cat $n 2>/dev/null || echo 0) + 1 ))
echo $c > $n
sync $n
case $c in
1)
	echo \"hnroot-test: v3 health check $c: the service does not answer\"
	exit 1 ;;
2)
	echo \"hnroot-test: v3 health check $c: never finishes\"
	exec sleep infinity ;;
*)
	w=/sys/class/watchdog/watchdog0
	echo \"hnroot-test: v3 health check $c: hanging the machine (watchdog [$(cat $w/identity)] $(cat $w/state) $(cat $w/timeout))\"
	echo -1 > /proc/sys/kernel/sched_rt_runtime_us
	for f in /sys/kernel/debug/sched/fair_server/cpu*/runtime; do
		[ -e \"$f\" ] && echo 0 > \"$f\"
	done
	for cpu in $(seq 0 $(( $(nproc --all) - 1 ))); do
		taskset -c $cpu chrt -f 99 sh -c 'while :; do :; done' &
	done
	exec sleep infinity ;;
esac
";

/// v3's deadline for its health checks (T, shortened from the image's 15 minutes so that the
/// check that never finishes ends its trial within a test's boot) and its watchdog timeout
/// (shortened from the image's minute): drop-ins of an operator's own, as README tells.
const V3_DROPINS: [(&str, &str); 2] = [
    (
        "etc/systemd/system/boot-complete.target.d/zz-test-health-timeout.conf",
        "[Unit]\nJobTimeoutSec=90s\n",
    ),
    (
        "etc/systemd/system.conf.d/zz-test-watchdog.conf",
        "[Manager]\nRuntimeWatchdogSec=20s\n",
    ),
];

/// The console line v3's health check prints before it hangs the machine: that boot ends
/// there, and only the watchdog can start the next.
const HANG_MARKER: (&str, End) = (
    r"^hnroot-test: v3 health check \d+: hanging the machine",
    End::Hung,
);

fn prepare(release: Debian, failing_trials: bool) -> Result<Parts> {
    let suite = release.suite();
    let t = Instant::now();
    // The fleet suite's tree too (its servers' extras included): made once for both.
    let tree = debian::systemd_tree(suite, debian::SERVER_EXTRAS)?;
    say(&format!(
        "Debian {suite} tree {} ({}, {:.0} s)",
        tree.dir.display(),
        if tree.cached { "cached" } else { "made" },
        t.elapsed().as_secs_f64()
    ));
    let work = buildenv::build_root().join("distro").join(suite);
    fs::create_dir_all(&work)?;
    let t = Instant::now();
    let deb = deb::build(&work)?;
    say(&format!(
        "package {} (GRUB {}) in {:.0} s",
        deb.path.display(),
        deb.grub_build,
        t.elapsed().as_secs_f64()
    ));
    let cli = initramfs::static_binary("hnroot-cli", "hnroot")?;
    let kit = grubmod::kit_dir();
    let public = work.join("publisher.pub");
    let secret = work.join("publisher.key");
    if !public.is_file() || !secret.is_file() {
        run(Command::new("minisign")
            .args(["-G", "-W", "-f", "-p"])
            .arg(&public)
            .arg("-s")
            .arg(&secret))?;
    }
    fs::create_dir_all(work.join("keys"))?;
    fs::copy(&public, work.join("keys/publisher.pub"))?;
    let secure_boot = hnroot_testkit::secureboot::get()?;
    Ok(Parts {
        images: std::cell::OnceCell::new(),
        failing_trials,
        tree,
        deb,
        cli,
        kit,
        work,
        public,
        secret,
        secure_boot,
    })
}

/// The scenarios' images: v1 and v2 good, v3 (when [`Parts::failing_trials`]) with a health
/// check that fails.
#[derive(Clone)]
struct Images {
    v1: PathBuf,
    v2: PathBuf,
    v3: Option<PathBuf>,
}

/// The images, built on first use.
fn images(p: &Parts) -> Result<Images> {
    if let Some(built) = p.images.get() {
        return Ok(built.clone());
    }
    let built = build_images(p)?;
    Ok(p.images.get_or_init(|| built).clone())
}

/// Build the images from one staging copy of the tree with the package installed.
fn build_images(p: &Parts) -> Result<Images> {
    let staging = p.work.join("tree");
    let t = Instant::now();
    debian::copy(&p.tree.dir, &staging)?;
    let dpkg = debian::install_deb(&staging, &p.deb.path)?;
    ensure!(
        staging.join("var/lib/dpkg/info/hnroot.list").is_file(),
        "dpkg -i did not install hnroot: {dpkg}"
    );
    say(&format!(
        "tree copied and hnroot installed with dpkg in {:.0} s",
        t.elapsed().as_secs_f64()
    ));
    let t = Instant::now();
    say(&format!(
        "the tree's GRUB packages after hnroot: {} ({:.0} s)",
        check_grub_left_alone(&staging)?,
        t.elapsed().as_secs_f64()
    ));
    instrument_tree(p, &staging, REPORT_SCRIPT)?;
    add_identity_report(&staging)?;
    let t = Instant::now();
    say(&format!(
        "{} ({:.0} s)",
        last_line(&presign(p, &staging)?)
            .split(';')
            .next()
            .unwrap_or(""),
        t.elapsed().as_secs_f64()
    ));
    let mut out = Vec::new();
    let versions: &[&str] = if p.failing_trials {
        &["1", "2", "3"]
    } else {
        &["1", "2"]
    };
    for &version in versions {
        if version == "3" {
            write(
                &staging,
                "etc/systemd/system/fleet-health-check.service",
                FLEET_HEALTH_CHECK,
                0o644,
            )?;
            write(
                &staging,
                "usr/local/sbin/fleet-health-check",
                FLEET_HEALTH_SCRIPT,
                0o755,
            )?;
            for (path, text) in V3_DROPINS {
                write(&staging, path, text, 0o644)?;
            }
            enable(
                &staging,
                "fleet-health-check.service",
                "boot-complete.target.requires",
            )?;
        }
        set_version(&staging, "hnroot-distro-test", version)?;
        let image = p.work.join(format!("v{version}.img"));
        let t = Instant::now();
        let said = run(Command::new(&p.cli)
            .args(["image", "build", "--root"])
            .arg(&staging)
            .arg("--out")
            .arg(&image))?;
        ensure!(
            said.contains("(hnroot integration)"),
            "image build did not use the tree's initrd with hnroot's hook:\n{said}"
        );
        // One host's identity out before publishing: the build host's name, the SSH host keys
        // openssh-server's postinst made, logs.
        let cleaned = run(Command::new(&p.cli).arg("sysprep").arg(&image))?;
        ensure!(
            cleaned.contains("nothing host-specific is left"),
            "sysprep left host-specific files in v{version}:\n{cleaned}"
        );
        run(Command::new("minisign")
            .arg("-S")
            .arg("-s")
            .arg(&p.secret)
            .arg("-m")
            .arg(&image)
            .args(["-t", &format!("hnroot-distro-test {version}")]))?;
        say(&format!(
            "v{version}: {} ({:.0} s)",
            said.lines().find(|l| l.contains(" built ")).unwrap_or(""),
            t.elapsed().as_secs_f64()
        ));
        out.push(image);
    }
    debian::remove(&staging)?;
    let mut out = out.into_iter();
    let (Some(v1), Some(v2), v3) = (out.next(), out.next(), out.next()) else {
        bail!("the images were not all built");
    };
    Ok(Images { v1, v2, v3 })
}

/// Where the presigned loader is kept beside the images, to compare with the ESP's.
fn presigned_copy(p: &Parts) -> PathBuf {
    p.work.join("presigned.efi")
}

/// The publisher's step for Secure Boot servers, as an operator's image pipeline runs it:
/// `hnroot bootloader presign --root TREE` (the tree's loader kit and trusted keys), signed
/// with the operator's key, written into the tree where a server's loader update looks for it. Every
/// image carries it; only a server whose ESP loader is signed reads it (scenario
/// `secure-boot`). Its settings are the ones those servers carry: a signed loader requires
/// sealed images (presign adds that), and their install skipped the menu (`menu-timeout` 0).
fn presign(p: &Parts, staging: &Path) -> Result<String> {
    let fleet = buildenv::fresh_dir(&p.work.join("presign-fleet"))?;
    fs::write(fleet.join("menu-timeout"), "0\n")?;
    let said = run(Command::new(&p.cli)
        .args(["bootloader", "presign", "--root"])
        .arg(staging)
        .arg("--fleet")
        .arg(&fleet)
        .arg("--sign-key")
        .arg(&p.secure_boot.key.key)
        .arg("--sign-cert")
        .arg(&p.secure_boot.key.cert))?;
    let out = staging.join(hnroot_install::grub::PRESIGNED_LOADER.trim_start_matches('/'));
    fs::copy(&out, presigned_copy(p))?;
    Ok(said)
}

/// The distribution's GRUB packages and hnroot live side by side: after `dpkg -i` of the
/// package nothing is held, the package depends on no GRUB package, the tree's
/// `grub-efi-amd64-bin` is the archive's candidate (not replaced), and apt reinstalls the
/// GRUB packages from the archive (what an upgrade does to them: unpack over, configure) with
/// hnroot left installed and its loader kit unchanged. What was checked, in one line.
fn check_grub_left_alone(tree: &Path) -> Result<String> {
    let kit = tree.join("usr/lib/hnroot/grub");
    let before = run(Command::new("sha256sum")
        .arg(kit.join("x86_64-efi/hnroot.mod"))
        .arg(kit.join("grub-mkimage")))?;
    let _ = fs::remove_file(tree.join("etc/resolv.conf"));
    fs::copy("/etc/resolv.conf", tree.join("etc/resolv.conf"))
        .context("copying /etc/resolv.conf into the tree for apt")?;
    let chroot = debian::Chroot::enter(tree)?;
    let held = chroot.run(&["apt-mark", "showhold"])?;
    ensure!(
        held.trim().is_empty(),
        "packages are held in the tree: {held}"
    );
    let depends = chroot.run(&["dpkg-query", "-W", "-f", "${Depends}", "hnroot"])?;
    ensure!(
        !depends.contains("grub"),
        "hnroot depends on GRUB packages: {depends}"
    );
    let policy = chroot.run(&["apt-cache", "policy", "grub-efi-amd64-bin"])?;
    let field = |name: &str| {
        policy
            .lines()
            .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_owned()))
            .unwrap_or_default()
    };
    let (installed, candidate) = (field("Installed:"), field("Candidate:"));
    ensure!(
        !installed.is_empty() && installed == candidate,
        "grub-efi-amd64-bin is {installed:?}, the archive's candidate {candidate:?}:\n{policy}"
    );
    chroot.run(&["apt-get", "-q", "update"])?;
    let reinstall = chroot.run(&[
        "apt-get",
        "-q",
        "-y",
        "--reinstall",
        "install",
        "grub-common",
        "grub-efi-amd64-bin",
    ])?;
    let status = chroot.run(&["dpkg-query", "-W", "-f", "${Status} ${Version}", "hnroot"])?;
    drop(chroot);
    let after = run(Command::new("sha256sum")
        .arg(kit.join("x86_64-efi/hnroot.mod"))
        .arg(kit.join("grub-mkimage")))?;
    ensure!(
        status.starts_with("install ok installed") && before == after,
        "after apt reinstalled the GRUB packages hnroot is {status:?}, its kit {}\n{reinstall}",
        if before == after {
            "unchanged"
        } else {
            "changed"
        }
    );
    ensure!(
        !reinstall.contains("Removing hnroot"),
        "apt removed hnroot while reinstalling GRUB:\n{reinstall}"
    );
    Ok(format!(
        "none held, grub-efi-amd64-bin {installed} (the archive's), reinstalled by apt with hnroot \
         {} and its kit unchanged",
        status.trim_start_matches("install ok installed ")
    ))
}

/// The hnroot version in the record of the loader on the disk's ESP (read with mtools).
fn esp_loader_version(p: &Parts, disk: &Path) -> Result<String> {
    let d = LoopDisk::attach(disk, true)?;
    let out = p.work.join("esp-loader.efi");
    let _ = fs::remove_file(&out);
    run(Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-n", "-i", &d.part(1), "::/EFI/BOOT/BOOTX64.EFI"])
        .arg(&out))?;
    let bytes = fs::read(&out)?;
    match hnroot_core::loader::identify(Some(&bytes)) {
        hnroot_core::loader::Loader::Recorded(r) => Ok(r.hnroot.to_string()),
        other => bail!("the ESP's BOOTX64.EFI has no version record: {other:?}"),
    }
}

/// Put `loader` on the disk's ESP as `BOOTX64.EFI` (mtools; the disk is not running).
fn put_esp_loader(_p: &Parts, disk: &Path, loader: &Path) -> Result<()> {
    let d = LoopDisk::attach(disk, true)?;
    run(Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-o", "-i", &d.part(1)])
        .arg(loader)
        .arg("::/EFI/BOOT/BOOTX64.EFI"))?;
    Ok(())
}

/// The last line a command printed (its summary).
fn last_line(said: &str) -> &str {
    said.lines().last().unwrap_or("")
}

/// One `hnroot-test: KEY VALUE` line of a boot's report.
fn report<'a>(boot: &'a BootRecord, key: &str) -> Option<&'a str> {
    let prefix = format!("hnroot-test: {key} ");
    boot.text
        .lines()
        .find_map(|l| l.find(&prefix).map(|i| l[i + prefix.len()..].trim_end()))
}

/// systemd's ordinary shutdown must not report a mount it failed to unmount: hostpart (held by
/// the root's writable layer) is left to the final shutdown (`x-initrd.mount` in the image's
/// fstab).
fn check_shutdown(boot: &BootRecord) -> Result<()> {
    let failed: Vec<&str> = boot
        .text
        .lines()
        .filter(|l| l.contains("Failed unmounting"))
        .collect();
    ensure!(
        failed.is_empty(),
        "boot {}: systemd's shutdown failed to unmount:\n{}",
        boot.index,
        failed.join("\n")
    );
    Ok(())
}

fn check_committed_boot(boot: &BootRecord, version: &str, grub: &str) -> Result<()> {
    let grub_line = boot.decision.as_deref().unwrap_or("");
    ensure!(
        grub_line.starts_with(grub),
        "boot {}: GRUB said {grub_line:?}, expected {grub}...",
        boot.index
    );
    ensure!(
        report(boot, "version") == Some(version),
        "boot {}: the report names version {:?}, expected {version}\n{}",
        boot.index,
        report(boot, "version"),
        boot.tail(60)
    );
    ensure!(
        report(boot, "failed") == Some("[]"),
        "boot {}: systemctl --failed lists {:?}\n{}",
        boot.index,
        report(boot, "failed"),
        boot.tail(80)
    );
    ensure!(
        report(boot, "boot-complete") == Some("active")
            && report(boot, "mark-good") == Some("active"),
        "boot {}: boot-complete {:?}, mark-good {:?}",
        boot.index,
        report(boot, "boot-complete"),
        report(boot, "mark-good")
    );
    ensure!(
        report(boot, "esp") == Some("vfat"),
        "boot {}: /boot/loader holds {:?}, expected the ESP (vfat) mounted by the image's fstab\n{}",
        boot.index,
        report(boot, "esp"),
        boot.text
            .lines()
            .filter(|l| l.contains("EFI-BOOT") || l.contains("boot-loader"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The image is read through a loop device doing direct I/O: hnroot-init's mount step says
    // so, and the kernel agrees in the running system.
    let dio = report(boot, "image-dio").unwrap_or("");
    ensure!(
        boot.loop_io() == ["direct"] && dio.starts_with("loop") && dio.ends_with(" 1"),
        "boot {}: the root's loop device: hnroot-init's mount step says io={:?}, the running \
         system's /sys/block/*/loop/dio says {dio:?}; expected direct I/O (io=direct, 1)\n{}",
        boot.index,
        boot.loop_io(),
        boot.steps.join("\n")
    );
    let root = report(boot, "root").unwrap_or("");
    ensure!(
        root.starts_with("overlay "),
        "boot {}: the root is {root:?}, expected the image under its writable layer (overlay)",
        boot.index
    );
    ensure!(
        !boot.text.contains("Found ordering cycle"),
        "boot {}: systemd broke an ordering cycle:\n{}",
        boot.index,
        boot.text
            .lines()
            .filter(|l| l.contains("ordering cycle"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    check_shutdown(boot)?;
    ensure!(
        boot.end == Some(End::Poweroff),
        "boot {}: ended {:?}, expected a power-off after the report",
        boot.index,
        boot.end
    );
    Ok(())
}

/// One of v3's trial boots, failed the way its health check fails on that boot (see
/// [`FLEET_HEALTH_SCRIPT`]).
fn check_trial_boot(boot: &BootRecord, trial: u32) -> Result<()> {
    let said = |line: &str| boot.text.contains(line);
    let version = report(boot, "version");
    match trial {
        1 => ensure!(
            version == Some("3")
                && report(boot, "boot-complete") != Some("active")
                && report(boot, "failed") == Some("[fleet-health-check.service]")
                && said("a health check failed on the trial of")
                && boot.end == Some(End::Reboot),
            "trial boot 1: v3 must run, its health check fail, and hnroot health-failed end the \
             trial with a reboot\n{}",
            boot.tail(60)
        ),
        // The check never finishes: boot-complete.target's job times out after T and
        // hnroot-mark-good.service, finding it not reached, ends the trial.
        2 => ensure!(
            version == Some("3")
                && report(boot, "health-check") == Some("activating")
                && report(boot, "boot-complete") != Some("active")
                && report(boot, "boot-complete-timeout") == Some("1")
                && said("a health check failed on the trial of")
                && boot.end == Some(End::Reboot),
            "trial boot 2: v3's health check must still be running when boot-complete.target's \
             job times out (T, 90 s in v3), and hnroot health-failed end the trial: \
             health check {:?}, boot-complete {:?}, timed out {:?}, ended {:?}\n{}",
            report(boot, "health-check"),
            report(boot, "boot-complete"),
            report(boot, "boot-complete-timeout"),
            boot.end,
            boot.tail(60)
        ),
        // The machine hangs with systemd running the watchdog (v3's 20 s): no report, no
        // shutdown, and the next boot only because the watchdog resets the machine.
        _ => ensure!(
            said("hanging the machine (watchdog [i6300ESB timer] active 20)")
                && boot.end == Some(End::Hung),
            "trial boot 3: v3's health check must hang the machine with systemd running the \
             watchdog (20 s)\n{}",
            boot.tail(60)
        ),
    }
    if boot.end == Some(End::Reboot) {
        check_shutdown(boot)?;
    }
    Ok(())
}

fn debian_systemd(p: &Parts) -> Result<()> {
    let Images { v1, v2, v3 } = images(p)?;
    let disk = p.work.join("disk.img");
    let _ = fs::remove_file(&disk);
    fs::File::create(&disk)?.set_len(DISK_MIB << 20)?;
    let keys = p.work.join("keys");
    // The disk gets an older hnroot's loader (the same GRUB, its record saying 0.0.1): the
    // images' package carries a newer one, which hnroot-bootloader-update.service must put on
    // the ESP after a commit, never during a trial. The install sets its own counting (a
    // boot limit and first wait that are not the defaults) and skips GRUB's menu, which the
    // images do not carry: every update of the loader must keep them.
    let (older_kit, _) = hnroot_testkit::grubimage::older_loader(&p.work.join("older"), "0.0.1")?;
    {
        let d = LoopDisk::attach(&disk, false)?;
        let said = p.install_with(
            &d.node,
            &v1,
            &keys,
            &older_kit,
            &[
                "--boot-limit",
                "2",
                "--wait-first",
                "15",
                "--menu-timeout",
                "0",
            ],
        )?;
        say(&format!(
            "hnroot install (an older loader, 0.0.1, boot limit 2): {}",
            last_line(&said)
        ));
    }
    ensure!(
        esp_loader_version(p, &disk)? == "0.0.1",
        "hnroot install did not write the older loader"
    );
    let older = p.work.join("installed-loader.efi");
    fs::copy(p.work.join("esp-loader.efi"), &older)?;
    let off = Offline::open(&p.cli, &p.work, &disk)?;
    let said = off.stage(&v2, &keys)?;
    say(&format!("hnroot stage v2: {}", said));
    off.close()?;

    // The update to v2 under systemd.
    let run_dir = p.work.join("qemu");
    let mut spec = qemu::VmSpec::new("distro debian-systemd", &[disk.as_path()], &run_dir);
    spec.memory_mib = 1536;
    // A hardware watchdog, as a server has: Intel's 6300ESB, which resets the machine when it
    // is not fed in time.
    spec.extra_args = ["-device", "i6300esb", "-action", "watchdog=reset"]
        .map(String::from)
        .to_vec();
    let markers: Vec<(&str, End)> = SYSTEMD_END_MARKERS
        .iter()
        .copied()
        .chain([HANG_MARKER])
        .collect();
    let mut s = Session::start_with(spec.clone(), &markers)?;
    let boot = s.next_boot(BOOT_TIMEOUT)?;
    say(&format!(
        "boot 1 ({:.0} s): GRUB {:?}; report: version {:?}, failed {:?}, mark-good {:?}",
        boot.took.as_secs_f64(),
        boot.decision.as_deref().unwrap_or("?"),
        report(&boot, "version"),
        report(&boot, "failed"),
        report(&boot, "mark-good")
    ));
    check_committed_boot(&boot, "2", "booting hn-root-new.img (update, trial 1 of 3)")?;
    // `--menu-timeout 0`: GRUB booted without showing its menu's countdown.
    ensure!(
        !boot.text.contains(GRUB_COUNTDOWN),
        "boot 1: GRUB counted down its menu (`{GRUB_COUNTDOWN}`) although `hnroot install \
         --menu-timeout 0` built the loader\n{}",
        boot.tail(60)
    );
    // The image's own drop-in (hnroot image build, the package) has systemd run the machine's
    // watchdog with a minute's timeout; nothing reset the machine before this boot.
    ensure!(
        report(&boot, "watchdog") == Some("[i6300ESB timer] active 60 0"),
        "boot 1: the watchdog is {:?}, expected systemd to run QEMU's i6300ESB with the \
         image's RuntimeWatchdogSec=1min ([i6300ESB timer] active 60 0: identity, state, \
         timeout, bootstatus)",
        report(&boot, "watchdog")
    );
    ensure!(
        report(&boot, "loader-service") == Some("success updated=1 not-committed=0"),
        "boot 1 (committed by mark-good): the loader service said {:?}\n{}",
        report(&boot, "loader-service"),
        boot.tail(60)
    );
    s.wait_poweroff(Duration::from_secs(60))?;
    drop(s);
    let now = esp_loader_version(p, &disk)?;
    ensure!(
        now == env!("CARGO_PKG_VERSION"),
        "after the committed boot the ESP's loader is hnroot {now}"
    );
    say(&format!(
        "hnroot-bootloader-update.service after mark-good: the ESP's loader 0.0.1 -> {now}"
    ));
    let Some(v3) = v3 else {
        check_counting_kept(p, "one loader update")?;
        say("v3's failing trials and the rollback left out (--without-failing-trials)");
        return Ok(());
    };
    // The older loader back on the ESP: v3's trial boots must leave it there.
    put_esp_loader(p, &disk, &older)?;
    let off = Offline::open(&p.cli, &p.work, &disk)?;
    let status = off.hnroot(&["status", "--json"])?;
    ensure!(
        status.contains("committed"),
        "after the update boot the boot state is not committed: {status}"
    );
    let said = off.stage(&v3, &keys)?;
    say(&format!("hnroot stage v3 (failing health check): {}", said));
    off.close()?;

    // v3's health check fails a different way on each of its three trial boots: at once, by
    // never finishing, by hanging the machine; each boot is counted as a try, then GRUB rolls
    // back to v2.
    let mut s = Session::start_with(spec, &markers)?;
    for trial in 1..=3 {
        let boot = s.next_boot(BOOT_TIMEOUT)?;
        let grub = boot.decision.clone().unwrap_or_default();
        say(&format!(
            "boot {} ({:.0} s): GRUB {grub:?}; report: version {:?}, boot-complete {:?}, health check {:?}, mark-good {:?}; ended {:?}",
            trial + 1,
            boot.took.as_secs_f64(),
            report(&boot, "version"),
            report(&boot, "boot-complete"),
            report(&boot, "health-check"),
            report(&boot, "mark-good"),
            boot.end
        ));
        let want = if trial == 1 {
            "booting hn-root-new.img (update, trial 1 of 3)".to_owned()
        } else {
            format!("booting hn-root.img (trial {trial} of 3)")
        };
        ensure!(
            grub.starts_with(&want),
            "trial boot {trial}: GRUB said {grub:?}, expected {want}"
        );
        check_trial_boot(&boot, trial)?;
    }
    let boot = s.next_boot(BOOT_TIMEOUT)?;
    say(&format!(
        "boot 5 ({:.0} s): GRUB {:?}; report: version {:?}, failed {:?}",
        boot.took.as_secs_f64(),
        boot.decision.as_deref().unwrap_or("?"),
        report(&boot, "version"),
        report(&boot, "failed")
    ));
    check_committed_boot(&boot, "2", "booting hn-root-old.img (automatic rollback")?;
    // The boot the hang cost was counted (v3's third try), and the kernel says the watchdog
    // is what reset the machine (WDIOF_CARDRESET, 32).
    ensure!(
        report(&boot, "watchdog") == Some("[i6300ESB timer] active 60 32"),
        "boot 5: the watchdog is {:?}, expected [i6300ESB timer] active 60 32 (v2's minute, and \
         bootstatus 32: the watchdog reset the machine hung by v3's third boot)",
        report(&boot, "watchdog")
    );
    s.wait_poweroff(Duration::from_secs(60))?;
    drop(s);
    ensure!(
        report(&boot, "loader-service") == Some("success updated=1 not-committed=0"),
        "boot 5 (the rollback, committed): the loader service said {:?}\n{}",
        report(&boot, "loader-service"),
        boot.tail(60)
    );
    let off = Offline::open(&p.cli, &p.work, &disk)?;
    let history = off.hnroot(&["history"])?;
    let status = off.hnroot(&["status"])?;
    off.close()?;
    ensure!(
        history.matches("health-failed").count() == 2,
        "the history records {} failed health checks, expected 2 (the check that failed and \
         the one that never finished; the hung boot recorded nothing):\n{history}",
        history.matches("health-failed").count()
    );
    // The loader was updated after the commit of v2 and after the rollback, never during v3's
    // trial: no loader-updated between the first and the last failed health check.
    let lines: Vec<&str> = history.lines().collect();
    let first = lines.iter().position(|l| l.contains("health-failed"));
    let last = lines.iter().rposition(|l| l.contains("health-failed"));
    let (Some(first), Some(last)) = (first, last) else {
        bail!("no health-failed in the history:\n{history}");
    };
    ensure!(
        !lines[first..=last]
            .iter()
            .any(|l| l.contains("loader-updated"))
            && lines[last..].iter().any(|l| l.contains("loader-updated"))
            && lines[..first].iter().any(|l| l.contains("loader-updated")),
        "the history must show loader-updated after v2's commit and after the rollback, never \
         during v3's trial:\n{history}"
    );
    let now = esp_loader_version(p, &disk)?;
    ensure!(
        now == env!("CARGO_PKG_VERSION"),
        "after the rollback the ESP's loader is hnroot {now}"
    );
    say(&format!(
        "the loader: updated after v2's commit and after the rollback ({now}), never during v3's \
         three trial boots (history: no loader-updated between the health-failed records)"
    ));
    ensure!(
        status.contains("hn-root-broken.img") && status.contains("hnroot-distro-test 3"),
        "v3 is not kept as hn-root-broken.img:\n{status}"
    );
    check_counting_kept(p, "both loader updates")
}

/// The loader the service wrote from images without a counting file still counts as `hnroot
/// install --boot-limit 2 --wait-first 15` said, and skips the menu as `--menu-timeout 0` did (its memdisk's counting file, read as GRUB
/// reads it, from the ESP's BOOTX64.EFI that `esp_loader_version` last copied out). `updates`:
/// which updates it went through, for the messages.
fn check_counting_kept(p: &Parts, updates: &str) -> Result<()> {
    let loader = fs::read(p.work.join("esp-loader.efi"))?;
    let (menu, why) = hnroot_linux::esp_loader::menu_timeout_of(&loader)
        .map_err(|e| anyhow::anyhow!("the ESP's loader after {updates}: {e}"))?;
    ensure!(
        menu == 0 && why.is_none(),
        "after {updates} by the service, in the ESP's loader {} ({why:?}), expected the \
         install's --menu-timeout 0",
        hnroot_core::menu::Summary(menu)
    );
    let (counting, why) = hnroot_linux::esp_loader::counting_of(&loader)
        .map_err(|e| anyhow::anyhow!("the ESP's loader after {updates}: {e}"))?;
    let said = hnroot_core::counting::Summary(&counting).to_string();
    let want = "tries 3, boot limit 2, waits 15 s doubling to 1800 s";
    ensure!(
        said == want && why.is_none(),
        "after {updates} by the service, the ESP's loader counts with {said} ({why:?}), \
         expected the install's {want}"
    );
    say(&format!(
        "the install's counting kept through {updates}: {said}; {}",
        hnroot_core::menu::Summary(menu)
    ));
    Ok(())
}

/// Who a boot says it is.
#[derive(Debug, PartialEq, Eq)]
struct Identity {
    hostname: String,
    machine_id: String,
    sshd_key: String,
}

/// The identity a boot reports, checked against what its host state holds: the running system
/// is the host state's host, sshd serves the host state's key, all three keys are there.
fn identity_of(boot: &BootRecord) -> Result<Identity> {
    let field = |k: &str| report(boot, k).unwrap_or("").to_owned();
    let id = Identity {
        hostname: field("hostname"),
        machine_id: field("machine-id"),
        sshd_key: field("sshd-key"),
    };
    ensure!(
        !id.hostname.is_empty()
            && id.hostname == field("state-hostname")
            && id.machine_id.len() == 32
            && id.machine_id == field("state-machine-id")
            && id.sshd_key.starts_with("SHA256:")
            && id.sshd_key == field("state-key")
            && field("ssh") == "active",
        "boot {}: the running system is not its host state's host: {id:?}, host state: \
         hostname {:?}, machine ID {:?}, key {:?}, ssh {:?}\n{}",
        boot.index,
        field("state-hostname"),
        field("state-machine-id"),
        field("state-key"),
        field("ssh"),
        boot.tail(60)
    );
    ensure!(
        field("state-keys")
            == "[ssh_host_ecdsa_key ssh_host_ecdsa_key.pub ssh_host_ed25519_key \
                ssh_host_ed25519_key.pub ssh_host_rsa_key ssh_host_rsa_key.pub]",
        "boot {}: the host state's SSH keys are {:?}",
        boot.index,
        field("state-keys")
    );
    Ok(id)
}

/// Boot `disk` once (one QEMU session, with `extra` arguments), until the report's power-off.
fn boot_once(p: &Parts, name: &str, disk: &Path, extra: &[&str]) -> Result<BootRecord> {
    boot_with(p, name, disk, extra, None)
}

/// [`boot_once`] under OVMF's Secure Boot firmware with the test operator's keys enrolled.
fn boot_secure(p: &Parts, name: &str, disk: &Path) -> Result<BootRecord> {
    boot_with(p, name, disk, &[], Some(&p.secure_boot.vars))
}

/// One QEMU session of `disk` until the report's power-off: `extra` arguments, and the Secure
/// Boot firmware with `secure_boot_vars` when given.
fn boot_with(
    p: &Parts,
    name: &str,
    disk: &Path,
    extra: &[&str],
    secure_boot_vars: Option<&Path>,
) -> Result<BootRecord> {
    let run_dir = p.work.join(format!("qemu-{name}"));
    let mut spec = qemu::VmSpec::new(&format!("distro {name}"), &[disk], &run_dir);
    spec.memory_mib = 1536;
    spec.extra_args = extra.iter().map(|s| (*s).to_owned()).collect();
    spec.secure_boot_vars = secure_boot_vars.map(Path::to_owned);
    let mut s = Session::start_with(spec, SYSTEMD_END_MARKERS)?;
    let boot = s.next_boot(BOOT_TIMEOUT)?;
    s.wait_poweroff(Duration::from_secs(60))?;
    Ok(boot)
}

fn say_identity(what: &str, boot: &BootRecord) {
    say(&format!(
        "{what} ({:.0} s): GRUB {:?}; version {:?}, hostname {:?}, machine-id {:?}, sshd key {:?}, host-keys unit {:?}, failed {:?}",
        boot.took.as_secs_f64(),
        boot.decision.as_deref().unwrap_or("?"),
        report(boot, "version"),
        report(boot, "hostname"),
        report(boot, "machine-id"),
        report(boot, "sshd-key"),
        report(boot, "host-keys-unit"),
        report(boot, "failed"),
    ));
}

fn identity(p: &Parts) -> Result<()> {
    let Images { v1, v2, .. } = images(p)?;
    let keys = p.work.join("keys");
    let left = run(Command::new(&p.cli)
        .args(["sysprep", "--dry-run", "--json"])
        .arg(&v1))?;
    ensure!(
        left.contains("\"leftovers\": []"),
        "the published image still holds host-specific files:\n{left}"
    );
    // One install, copied to a second disk: the same image, the same layout, two servers.
    let disks: Vec<PathBuf> = ["a", "c"]
        .iter()
        .map(|n| p.work.join(format!("identity-{n}.img")))
        .collect();
    let t = Instant::now();
    let _ = fs::remove_file(&disks[0]);
    fs::File::create(&disks[0])?.set_len(DISK_MIB << 20)?;
    {
        let d = LoopDisk::attach(&disks[0], false)?;
        p.install(&d.node, &v1, &keys)?;
    }
    for copy in &disks[1..] {
        let _ = fs::remove_file(copy);
        run(Command::new("cp")
            .args(["--sparse=always", "--reflink=auto"])
            .arg(&disks[0])
            .arg(copy))?;
    }
    say(&format!(
        "v1 installed on one disk, copied to another ({:.0} s)",
        t.elapsed().as_secs_f64()
    ));

    // A known server: its disk gets its host's state on hostpart.
    let hosts = [HostState {
        hostname: "web-a",
        machine_id: "aaaaaaaaaaaa4aaa8aaaaaaaaaaaaaaa",
        marker: "server a",
    }];
    let mut seen = Vec::new();
    for (h, disk) in hosts.iter().zip(&disks) {
        let off = Offline::open(&p.cli, &p.work, disk)?;
        let key = write_host_state(&off.mnt, h)?;
        let explain = off.hnroot(&["explain"])?;
        off.close()?;
        ensure!(
            explain.contains("bind hostname -> /etc/hostname (file)")
                && explain.contains("bind files/etc/hnroot-test-host -> /etc/hnroot-test-host"),
            "hnroot explain does not show the identity steps:\n{explain}"
        );
        let boot = boot_once(p, h.hostname, disk, &[])?;
        say_identity(&format!("server {}", h.hostname), &boot);
        check_committed_boot(&boot, "1", "booting hn-root.img (normal")?;
        let id = identity_of(&boot)?;
        ensure!(
            id == Identity {
                hostname: h.hostname.into(),
                machine_id: h.machine_id.into(),
                sshd_key: key.clone(),
            },
            "server {} came up as {id:?}",
            h.hostname
        );
        ensure!(
            report(&boot, "marker") == Some(h.marker)
                && report(&boot, "host-keys-unit") == Some("success no"),
            "server {}: marker {:?}, host-keys unit {:?} (it must not run: the keys are there)",
            h.hostname,
            report(&boot, "marker"),
            report(&boot, "host-keys-unit")
        );
        seen.push(id);
    }

    // A new server: no host state. Its identity is made on its first boot.
    let disk = &disks[1];
    let serial = ["-smbios", "type=1,serial=SRV-C-0003"];
    let boot = boot_once(p, "c-first", disk, &serial)?;
    say_identity("new server, first boot", &boot);
    check_committed_boot(&boot, "1", "booting hn-root.img (normal")?;
    let first = identity_of(&boot)?;
    let record = boot
        .init
        .iter()
        .find(|l| l.starts_with("identity: steps="))
        .cloned()
        .unwrap_or_default();
    ensure!(
        first.hostname == "srv-c-0003"
            && record.contains("created=machine-id,hostname")
            && record.contains("first-boot")
            && report(&boot, "host-keys-unit") == Some("success yes")
            && report(&boot, "created") == Some("5")
            && report(&boot, "marker") == Some("none"),
        "first boot: hostname {:?} (from the DMI serial SRV-C-0003), identity record {record:?}, \
         host-keys unit {:?}, created {:?}\n{}",
        first.hostname,
        report(&boot, "host-keys-unit"),
        report(&boot, "created"),
        boot.tail(80)
    );
    ensure!(
        !seen
            .iter()
            .any(|s| s.machine_id == first.machine_id || s.sshd_key == first.sshd_key),
        "the new server shares an identity: {first:?} {seen:?}"
    );
    let off = Offline::open(&p.cli, &p.work, disk)?;
    let log = fs::read_to_string(off.mnt.join("data/host/log")).unwrap_or_default();
    let said = off.stage(&v2, &keys)?;
    off.close()?;
    ensure!(
        log.contains(&format!("created machine-id {}", first.machine_id))
            && log.contains("created hostname srv-c-0003 (from dmi-serial)")
            && log.contains("created ssh_host_ed25519_key 256 SHA256:"),
        "the host state's log does not say what was created:\n{log}"
    );
    say(&format!("hnroot stage v2: {}", said));

    // The update to v2 (a fresh writable layer), then a revert to v1: the same server.
    let boot = boot_once(p, "c-update", disk, &serial)?;
    say_identity("new server, update to v2", &boot);
    check_committed_boot(&boot, "2", "booting hn-root-new.img (update, trial 1 of 3)")?;
    let updated = identity_of(&boot)?;
    ensure!(
        updated == first && report(&boot, "created") == Some("5"),
        "the update changed the identity: {updated:?}, was {first:?}"
    );
    let off = Offline::open(&p.cli, &p.work, disk)?;
    let said = off.hnroot(&["revert"])?;
    off.close()?;
    say(&format!("hnroot revert: {}", last_line(&said)));
    let boot = boot_once(p, "c-revert", disk, &serial)?;
    say_identity("new server, reverted to v1", &boot);
    check_committed_boot(&boot, "1", "booting hn-root-old.img (manual revert")?;
    let reverted = identity_of(&boot)?;
    ensure!(
        reverted == first && report(&boot, "created") == Some("5"),
        "the revert changed the identity: {reverted:?}, was {first:?}"
    );
    for disk in &disks {
        let _ = fs::remove_file(disk);
    }
    Ok(())
}

/// A sealed copy of the distro image `image`, as a publisher of Secure Boot servers makes one:
/// `hnroot image seal` (its dm-verity tree and signed manifest appended; the version its
/// os-release states), then the whole file signed with minisign. Kept as `sb-<name>`.
fn sealed_copy(p: &Parts, image: &Path, version: &str) -> Result<PathBuf> {
    let name = image
        .file_name()
        .and_then(|n| n.to_str())
        .context("an image without a file name")?;
    let out = p.work.join(format!("sb-{name}"));
    let _ = fs::remove_file(&out);
    run(Command::new("cp")
        .args(["--sparse=always", "--reflink=auto"])
        .arg(image)
        .arg(&out))?;
    let said = run(Command::new(&p.cli)
        .args(["image", "seal", "--sign-key"])
        .arg(&p.secret)
        .arg("--public-key")
        .arg(&p.public)
        .arg(&out))?;
    run(Command::new("minisign")
        .arg("-S")
        .arg("-s")
        .arg(&p.secret)
        .arg("-m")
        .arg(&out)
        .args(["-t", &format!("hnroot-distro-test {version} (sealed)")]))?;
    say(&format!("sealed v{version}: {}", last_line(&said)));
    Ok(out)
}

/// What a boot under Secure Boot must show: Debian's kernel says the firmware has it on and
/// locked itself down, the root was read through dm-verity (hnroot-init's mount step, the
/// device under the overlay, and `hnroot status`).
fn check_secure_boot_boot(boot: &BootRecord) -> Result<()> {
    let lockdown = report(boot, "lockdown").unwrap_or("");
    ensure!(
        (lockdown.contains("[integrity]") || lockdown.contains("[confidentiality]"))
            && boot.text.contains("secureboot: Secure boot enabled"),
        "boot {}: the kernel's lockdown is {lockdown:?}, expected integrity or confidentiality \
         under Secure Boot; the kernel said {:?}",
        boot.index,
        boot.text
            .lines()
            .find(|l| l.contains("secureboot:"))
            .unwrap_or("nothing about it")
    );
    let device = report(boot, "image-device").unwrap_or("");
    ensure!(
        boot.verity() == ["on"]
            && device.starts_with("dm-")
            && boot
                .text
                .contains("root: verified by dm-verity (every block read is checked"),
        "boot {}: the sealed image should be read through dm-verity: hnroot-init's mount step \
         says verity={:?}, the image's device is {device:?}, hnroot status says {:?}",
        boot.index,
        boot.verity(),
        boot.text
            .lines()
            .find(|l| l.contains("hnroot-test: status   root:"))
            .unwrap_or("no root line")
    );
    Ok(())
}

/// What a boot under Secure Boot reported, in one line.
fn say_secure_boot(what: &str, boot: &BootRecord) {
    say(&format!(
        "{what} ({:.0} s): GRUB {:?}; report: version {:?}, lockdown {:?}, image device {:?}, loader service {:?}",
        boot.took.as_secs_f64(),
        boot.decision.as_deref().unwrap_or("?"),
        report(boot, "version"),
        report(boot, "lockdown"),
        report(boot, "image-device"),
        report(boot, "loader-service"),
    ));
}

/// Scenario `secure-boot`: a Secure Boot server, on the real Debian under systemd. OVMF's
/// Secure Boot firmware trusts the test operator's certificate (PK, KEK, db) and Debian's CA
/// (db), nothing else. `hnroot install --sign-key --sign-cert --require-sealed` puts an older
/// hnroot's loader (0.0.1), signed, on the disk with v1 sealed (`hnroot image seal`). The
/// firmware starts the loader, GRUB checks the seal and hands Debian's signed kernel to the
/// firmware, hnroot-init reads the image through dm-verity, systemd comes up locked down;
/// after the commit, `hnroot-bootloader-update.service`, holding no key, writes the image's
/// presigned loader; the next boot, an update to v2 (sealed, staged), starts that loader under
/// Secure Boot and is committed.
fn secure_boot(p: &Parts) -> Result<()> {
    let Images { v1, v2, .. } = images(p)?;
    let t = Instant::now();
    let s1 = sealed_copy(p, &v1, "1")?;
    let s2 = sealed_copy(p, &v2, "2")?;
    say(&format!(
        "v1 and v2 sealed ({:.0} s)",
        t.elapsed().as_secs_f64()
    ));
    let disk = p.work.join("secure-boot.img");
    let _ = fs::remove_file(&disk);
    fs::File::create(&disk)?.set_len(DISK_MIB << 20)?;
    let keys = p.work.join("keys");
    let (older_kit, _) =
        hnroot_testkit::grubimage::older_loader(&p.work.join("older-sb"), "0.0.1")?;
    let sb = &p.secure_boot;
    {
        let d = LoopDisk::attach(&disk, false)?;
        let said = p.install_with(
            &d.node,
            &s1,
            &keys,
            &older_kit,
            &[
                "--sign-key",
                &sb.key.key.to_string_lossy(),
                "--sign-cert",
                &sb.key.cert.to_string_lossy(),
                "--require-sealed",
                "--menu-timeout",
                "0",
            ],
        )?;
        say(&format!(
            "hnroot install --sign-key --require-sealed (an older loader, 0.0.1): {}",
            last_line(&said)
        ));
    }
    ensure!(
        esp_loader_version(p, &disk)? == "0.0.1",
        "hnroot install did not write the older loader"
    );
    let installed = fs::read(p.work.join("esp-loader.efi"))?;
    ensure!(
        hnroot_core::loader::authenticode_signed(&installed) == Ok(true),
        "hnroot install --sign-key wrote a loader without a signature"
    );

    let boot = boot_secure(p, "secure-boot", &disk)?;
    say_secure_boot("boot 1 under Secure Boot", &boot);
    check_committed_boot(&boot, "1", "booting hn-root.img (normal")?;
    check_secure_boot_boot(&boot)?;
    ensure!(
        report(&boot, "loader-service") == Some("success updated=1 not-committed=0")
            && boot.text.contains("the image's presigned loader"),
        "boot 1: the loader service (no key on the server) should have written the image's \
         presigned loader; it said {:?}\n{}",
        report(&boot, "loader-service"),
        boot.text
            .lines()
            .filter(|l| l.contains("hnroot") && l.contains("loader"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let now = esp_loader_version(p, &disk)?;
    ensure!(
        now == env!("CARGO_PKG_VERSION")
            && fs::read(p.work.join("esp-loader.efi"))? == fs::read(presigned_copy(p))?,
        "after the committed boot the ESP's loader is hnroot {now}, expected the image's \
         presigned loader byte for byte"
    );
    say(&format!(
        "hnroot-bootloader-update.service without a key: the ESP's loader 0.0.1 -> {now}, the \
         image's presigned loader byte for byte"
    ));

    let off = Offline::open(&p.cli, &p.work, &disk)?;
    let said = off.stage(&s2, &keys)?;
    off.close()?;
    say(&format!("hnroot stage v2 (sealed): {said}"));
    let boot = boot_secure(p, "secure-boot-update", &disk)?;
    say_secure_boot("boot 2 under Secure Boot, the presigned loader", &boot);
    check_committed_boot(&boot, "2", "booting hn-root-new.img (update, trial 1 of 3)")?;
    check_secure_boot_boot(&boot)?;
    ensure!(
        report(&boot, "loader-service") == Some("success updated=0 not-committed=0"),
        "boot 2: the loader service said {:?}, expected nothing to do (the ESP's loader is \
         this image's)",
        report(&boot, "loader-service")
    );
    // The presigned loader kept the install's `--menu-timeout 0`, and `hnroot status` says so.
    let menu = "hnroot-test: status menu: the menu is skipped (0 s) (as the ESP's loader shows it)";
    ensure!(
        boot.text.contains(menu),
        "boot 2: hnroot status should say `{menu}`; its lines:\n{}",
        boot.text
            .lines()
            .filter(|l| l.contains("hnroot-test: status"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for f in [disk, s1.clone(), s2.clone()] {
        let _ = fs::remove_file(&f);
    }
    for sealed in [s1, s2] {
        let mut sig = sealed.into_os_string();
        sig.push(".minisig");
        let _ = fs::remove_file(sig);
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !buildenv::is_root() {
        bail!("the distro suite needs root (mmdebstrap, chroot, loop devices)");
    }
    let t = Instant::now();
    println!("== distro {}: parts", args.debian);
    let parts = prepare(args.debian, !args.without_failing_trials)?;
    let wanted = |s: Scenario| args.only.is_none_or(|o| o == s);
    // Every scenario runs even when an earlier one failed: each proves something else.
    let mut failures = Vec::new();
    if wanted(Scenario::DebianSystemd) {
        println!("== debian-systemd: v1 installed, v2 staged and committed by its health checks, v3 failing them and rolled back");
        if let Err(e) = debian_systemd(&parts) {
            println!("debian-systemd: FAILED: {e:#}");
            failures.push(e.context("debian-systemd"));
        }
    }
    if wanted(Scenario::Identity) {
        println!("== identity: one image on two servers: one with its own host state, one creating its identity on its first boot and keeping it across an update and a revert");
        if let Err(e) = identity(&parts) {
            println!("identity: FAILED: {e:#}");
            failures.push(e.context("identity"));
        }
    }
    if wanted(Scenario::SecureBoot) {
        println!("== secure-boot: Secure Boot on, the loader signed, v1 sealed through dm-verity; the loader updated by the image's presigned one without a key; v2 sealed, staged and committed under it");
        if let Err(e) = secure_boot(&parts) {
            println!("secure-boot: FAILED: {e:#}");
            failures.push(e.context("secure-boot"));
        }
    }
    if wanted(Scenario::DebianDracut) {
        println!("== debian-dracut: dpkg -i makes the dracut initrd hnroot's; d1 (systemd in the initrd) installed and booted, d2 (dracut's shell init) staged and committed");
        if let Err(e) = debian_dracut(&parts) {
            println!("debian-dracut: FAILED: {e:#}");
            failures.push(e.context("debian-dracut"));
        }
    }
    let result = match failures.len() {
        0 => Ok(()),
        n => Err(failures
            .remove(0)
            .context(format!("{n} distro scenario(s) failed"))),
    };
    println!(
        "distro {}: {} in {:.0} s",
        args.debian,
        if result.is_ok() { "passed" } else { "FAILED" },
        t.elapsed().as_secs_f64()
    );
    result
}

/// The dracut scenario's extra report lines: which of the module's two paths mounted the root
/// (the header hnroot-mount-root writes into hnroot-init's log), whether hnroot-init had to give
/// its mounts a private parent (under systemd everything is shared), and where hostpart is
/// mounted in the running system (only /hostpart when hnroot-init could move it there).
/// Appended to [`REPORT_SCRIPT`].
const DRACUT_REPORT_LINES: &str = "log=/run/hnroot/mount-root.log
echo \"hnroot-test: initrd $(sed -n '1s/^# //p' $log)\"
echo \"hnroot-test: private-scratch $(grep -c 'is under a shared mount' $log)\"
echo \"hnroot-test: hostpart-moved $(grep -c 'moved hostpart to /sysroot/hostpart' $log)\"
# hostpart's own root (FSROOT /); the host state's bind mounts (/etc/hostname, ...) are parts of it.
echo \"hnroot-test: hostpart [$(findmnt -n -l -o TARGET,FSROOT -S LABEL=hostpart | awk '$2 == \"/\" { print $1 }' | tr '\\n' ' ' | sed 's/ $//')]\"
";

/// The dracut tree's initrd: what lsinitramfs lists, checked for hnroot's module in the mode
/// `systemd` says (true: dracut's systemd module and hnroot-sysroot.service; false: dracut's
/// shell init and the mount hook).
fn check_dracut_initrd(initrd: &Path, systemd: bool) -> Result<()> {
    let listing = run(Command::new("lsinitramfs").arg(initrd))?;
    let has = |suffix: &str| listing.lines().any(|l| l.trim_end().ends_with(suffix));
    let mut missing: Vec<&str> = [
        "usr/sbin/hnroot-init",
        "bin/hnroot-mount-root",
        "lib/hnroot-lib.sh",
        "dracut/hooks/cmdline/90-parse-hnroot.sh",
        "dracut/hooks/emergency/50-hnroot-emergency.sh",
        "/loop.ko",
        "/overlay.ko",
        "/btrfs.ko",
        "/xfs.ko",
        "/vfat.ko",
        "/nls_cp437.ko",
    ]
    .into_iter()
    .filter(|s| !has(s))
    .collect();
    let (mode_files, other_mode) = if systemd {
        (
            [
                "usr/lib/systemd/system/hnroot-sysroot.service",
                "/initrd-root-fs.target.requires/hnroot-sysroot.service",
            ],
            "dracut/hooks/mount/10-mount-hnroot.sh",
        )
    } else {
        (
            ["dracut/hooks/mount/10-mount-hnroot.sh", "/switch_root"],
            "usr/lib/systemd/system/hnroot-sysroot.service",
        )
    };
    missing.extend(mode_files.into_iter().filter(|s| !has(s)));
    ensure!(
        missing.is_empty(),
        "{} lacks {} ({} mode)",
        initrd.display(),
        missing.join(", "),
        if systemd { "systemd" } else { "shell" }
    );
    ensure!(
        !has(other_mode),
        "{} has {other_mode}, which belongs to the other mode",
        initrd.display()
    );
    ensure!(
        has("usr/lib/systemd/systemd") == systemd,
        "{}: systemd in the initrd is {}, expected {systemd}",
        initrd.display(),
        has("usr/lib/systemd/systemd")
    );
    Ok(())
}

/// The tree's one kernel release (`boot/vmlinuz-<release>`).
fn tree_release(root: &Path) -> Result<String> {
    let mut releases: Vec<String> = fs::read_dir(root.join("boot"))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("vmlinuz-"))
                .map(str::to_owned)
        })
        .collect();
    ensure!(
        releases.len() == 1,
        "expected one kernel in {}/boot, found {releases:?}",
        root.display()
    );
    releases.pop().context("no kernel")
}

/// The report units (the report's script `report`), the serial console kept for them, and the
/// publisher's key (as a fleet's image would carry it), in `staging`.
fn instrument_tree(p: &Parts, staging: &Path, report: &str) -> Result<()> {
    write(
        staging,
        "etc/systemd/system/hnroot-test-report.service",
        REPORT_UNIT,
        0o644,
    )?;
    write(staging, "usr/local/sbin/hnroot-test-report", report, 0o755)?;
    enable(
        staging,
        "hnroot-test-report.service",
        "multi-user.target.wants",
    )?;
    write(
        staging,
        "etc/systemd/system/hnroot-test-end.service",
        END_UNIT,
        0o644,
    )?;
    write(staging, "usr/local/sbin/hnroot-test-end", END_SCRIPT, 0o755)?;
    enable(
        staging,
        "hnroot-test-end.service",
        "multi-user.target.wants",
    )?;
    // A login prompt on the serial console would hang the line up under the report.
    let getty = staging.join("etc/systemd/system/serial-getty@ttyS0.service");
    let _ = fs::remove_file(&getty);
    std::os::unix::fs::symlink("/dev/null", &getty)?;
    fs::copy(&p.public, staging.join("etc/hnroot/keys/publisher.pub"))?;
    Ok(())
}

/// `hnroot image build` of `staging` into `image`, signed; it must take the tree's (dracut) initrd.
fn build_signed(p: &Parts, staging: &Path, image: &Path, version: &str) -> Result<()> {
    let t = Instant::now();
    let said = run(Command::new(&p.cli)
        .args(["image", "build", "--root"])
        .arg(staging)
        .arg("--out")
        .arg(image))?;
    ensure!(
        said.contains("(hnroot integration)"),
        "image build did not use the tree's dracut initrd:\n{said}"
    );
    run(Command::new("minisign")
        .arg("-S")
        .arg("-s")
        .arg(&p.secret)
        .arg("-m")
        .arg(image)
        .args(["-t", &format!("hnroot-distro-test {version}")]))?;
    say(&format!(
        "{version}: {} ({:.0} s)",
        said.lines().find(|l| l.contains(" built ")).unwrap_or(""),
        t.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// A dracut boot that must have mounted the root through the module in `mode`.
fn check_dracut_boot(boot: &BootRecord, version: &str, grub: &str, mode: &str) -> Result<()> {
    check_committed_boot(boot, version, grub)?;
    let initrd = report(boot, "initrd").unwrap_or("");
    ensure!(
        initrd == format!("dracut ({mode} mode): hnroot-init mount-root /sysroot"),
        "boot {}: hnroot-init's log begins {initrd:?}, expected dracut's {mode} mode\n{}",
        boot.index,
        boot.tail(60)
    );
    let private = if mode == "systemd" { "1" } else { "0" };
    ensure!(
        report(boot, "private-scratch") == Some(private)
            && report(boot, "hostpart-moved") == Some("1")
            && report(boot, "hostpart") == Some("[/hostpart]"),
        "boot {}: {mode} mode: private-scratch {:?} (expected {private}), hostpart-moved {:?}, \
         hostpart's root mounted at {:?} (expected only /hostpart, moved there by hnroot-init)\n{}",
        boot.index,
        report(boot, "private-scratch"),
        report(boot, "hostpart-moved"),
        report(boot, "hostpart"),
        boot.tail(60)
    );
    Ok(())
}

/// Scenario `debian-dracut`: a Debian tree with dracut instead of initramfs-tools; `dpkg -i` of
/// the package alone (its `update-initramfs` trigger, which Debian's dracut serves) must leave an
/// initrd with hnroot's module. Image d1 carries that initrd as dracut makes it by default
/// (systemd in the initrd: hnroot-sysroot.service); image d2 one made without dracut's systemd
/// module (the shell init: the mount hook). d1 is installed and boots (GRUB, Debian's kernel,
/// dracut, systemd, mark-good); d2 is staged and boots as the update, committed by
/// `hnroot-mark-good.service`.
fn debian_dracut(p: &Parts) -> Result<()> {
    let t = Instant::now();
    let tree = debian::systemd_tree_with(&p.tree.suite, debian::InitrdBuilder::Dracut, &[])?;
    say(&format!(
        "Debian {} dracut tree {} ({}, {:.0} s)",
        tree.suite,
        tree.dir.display(),
        if tree.cached { "cached" } else { "made" },
        t.elapsed().as_secs_f64()
    ));
    let work = p.work.join("dracut");
    fs::create_dir_all(&work)?;
    let staging = work.join("tree");
    let t = Instant::now();
    debian::copy(&tree.dir, &staging)?;
    let dpkg = debian::install_deb(&staging, &p.deb.path)?;
    ensure!(
        staging.join("var/lib/dpkg/info/hnroot.list").is_file(),
        "dpkg -i did not install hnroot: {dpkg}"
    );
    let release = tree_release(&staging)?;
    let initrd = staging.join(format!("boot/initrd.img-{release}"));
    check_dracut_initrd(&initrd, true)
        .context("after dpkg -i, the trigger's dracut run should have added hnroot's module")?;
    say(&format!(
        "tree copied, hnroot installed with dpkg, its trigger ran dracut: {} has hnroot's \
         module for systemd ({:.0} s)",
        initrd.display(),
        t.elapsed().as_secs_f64()
    ));
    instrument_tree(
        p,
        &staging,
        &format!("{REPORT_SCRIPT}{DRACUT_REPORT_LINES}"),
    )?;
    let d1 = work.join("d1.img");
    let d2 = work.join("d2.img");
    set_version(&staging, "hnroot-distro-test", "d1")?;
    build_signed(p, &staging, &d1, "d1")?;
    // d2: the initrd without systemd, as an administrator would configure dracut.
    let t = Instant::now();
    write(
        &staging,
        "etc/dracut.conf.d/90-no-systemd.conf",
        "omit_dracutmodules+=\" systemd \"\n",
        0o644,
    )?;
    {
        let chroot = debian::Chroot::enter(&staging)?;
        chroot.run(&[
            "dracut",
            "--force",
            &format!("/boot/initrd.img-{release}"),
            &release,
        ])?;
    }
    check_dracut_initrd(&initrd, false)?;
    say(&format!(
        "dracut without its systemd module: {} has hnroot's mount hook ({:.0} s)",
        initrd.display(),
        t.elapsed().as_secs_f64()
    ));
    set_version(&staging, "hnroot-distro-test", "d2")?;
    build_signed(p, &staging, &d2, "d2")?;
    debian::remove(&staging)?;

    let disk = work.join("disk.img");
    let _ = fs::remove_file(&disk);
    fs::File::create(&disk)?.set_len(DISK_MIB << 20)?;
    let keys = p.work.join("keys");
    {
        let d = LoopDisk::attach(&disk, false)?;
        let said = p.install(&d.node, &d1, &keys)?;
        say(&format!("hnroot install d1: {}", last_line(&said)));
    }
    let run_dir = work.join("qemu");
    let mut spec = qemu::VmSpec::new("distro debian-dracut", &[disk.as_path()], &run_dir);
    spec.memory_mib = 1536;

    // d1: dracut's default initrd, systemd in it.
    let mut s = Session::start_with(spec.clone(), SYSTEMD_END_MARKERS)?;
    let boot = s.next_boot(BOOT_TIMEOUT)?;
    say(&format!(
        "boot 1 ({:.0} s): GRUB {:?}; report: version {:?}, initrd {:?}, hostpart {:?}, \
         mark-good {:?}",
        boot.took.as_secs_f64(),
        boot.decision.as_deref().unwrap_or("?"),
        report(&boot, "version"),
        report(&boot, "initrd"),
        report(&boot, "hostpart"),
        report(&boot, "mark-good")
    ));
    check_dracut_boot(&boot, "d1", "booting hn-root.img (normal", "systemd")?;
    s.wait_poweroff(Duration::from_secs(60))?;
    drop(s);

    let off = Offline::open(&p.cli, &p.work, &disk)?;
    let said = off.stage(&d2, &keys)?;
    say(&format!("hnroot stage d2: {}", said));
    off.close()?;

    // d2: dracut's shell init; the update is committed by the switch and mark-good.
    let mut s = Session::start_with(spec, SYSTEMD_END_MARKERS)?;
    let boot = s.next_boot(BOOT_TIMEOUT)?;
    say(&format!(
        "boot 2 ({:.0} s): GRUB {:?}; report: version {:?}, initrd {:?}, hostpart {:?}, \
         mark-good {:?}",
        boot.took.as_secs_f64(),
        boot.decision.as_deref().unwrap_or("?"),
        report(&boot, "version"),
        report(&boot, "initrd"),
        report(&boot, "hostpart"),
        report(&boot, "mark-good")
    ));
    check_dracut_boot(
        &boot,
        "d2",
        "booting hn-root-new.img (update, trial 1 of 3)",
        "shell",
    )?;
    s.wait_poweroff(Duration::from_secs(60))?;
    drop(s);
    let off = Offline::open(&p.cli, &p.work, &disk)?;
    let state = off.hnroot(&["status", "--json"])?;
    let status = off.hnroot(&["status"])?;
    let history = off.hnroot(&["history"])?;
    off.close()?;
    ensure!(
        state.contains("committed") && status.contains("hnroot-distro-test d2"),
        "after the update boot d2 is not the committed image:\n{status}\n{state}"
    );
    ensure!(
        history.contains("marked-good"),
        "the history has no marked-good after the update boot:\n{history}"
    );
    let _ = fs::remove_file(&disk);
    Ok(())
}

/// `cargo xtask test` runs `distro --debian 12 --without-failing-trials` (every scenario) and
/// `distro --debian 13 --only debian-systemd`; without options the newest release.
#[cfg(test)]
mod default_args {
    use clap::Parser;
    use hnroot_testkit::release::Debian;

    #[test]
    fn the_defaults_and_the_lanes_arguments_parse() {
        let args = super::Args::try_parse_from(["distro"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((args.debian, args.only), (Debian::NEWEST, None));
        let args =
            super::Args::try_parse_from(["distro", "--debian", "13", "--only", "debian-systemd"])
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (args.debian, args.only),
            (Debian::Trixie, Some(super::Scenario::DebianSystemd))
        );
        let args = super::Args::try_parse_from(["distro", "--debian", "12"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (args.debian, args.without_failing_trials),
            (Debian::Bookworm, false)
        );
        let args =
            super::Args::try_parse_from(["distro", "--debian", "12", "--without-failing-trials"])
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (args.debian, args.without_failing_trials),
            (Debian::Bookworm, true)
        );
    }
}
