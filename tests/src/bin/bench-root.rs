//! `cargo xtask bench-root`: what living in an image file costs, measured side by side in QEMU.
//!
//! One stock Debian 12 tree (mmdebstrap: systemd, Debian's kernel and initramfs-tools, `fio`;
//! cached) with a 1 GiB file of incompressible data at `/var/lib/hnroot-bench/data`, on two
//! disks of the same size:
//! - **hnroot**: the tree with the hnroot package, built into an image (`hnroot image build`),
//!   put on a blank disk by `hnroot install` (hnroot's GRUB, hostpart ext4); it runs as every
//!   hnroot server does: the image read-only on a loop device (direct I/O) under an overlay
//!   whose upper layer is on hostpart;
//! - **plain**: the same tree without hnroot, copied onto an ext4 partition (GPT, an ESP) and
//!   booted by Debian's own GRUB (`grub-mkimage` of the tree's `grub-efi-amd64-bin`), root on
//!   the partition, as a plain Debian install runs.
//!
//! Each disk boots `--boots` times (the first one is the system's first boot: machine ID, SSH
//! host keys; it is not counted); a unit after `boot-complete.target` prints systemd's own
//! timestamps (kernel start → initrd end, `boot-complete.target`, `multi-user.target`) and
//! reboots; on the last boot it runs `fio` on the root filesystem (sequential 1 GiB read and
//! write, random 4 KiB read and write: IOPS and p99 latency), the same reads on the image
//! without the overlay (`/run/hnroot/image`), the same reads with the loop device at a 4096-byte
//! logical block size (`losetup --sector-size 4096` on the live device, then back) and on a
//! second loop device of the image mounted `ro` and then `ro,noload` (no journal), the page
//! cache after a cold read of the 1 GiB file (hnroot: with the loop device's direct I/O on, then
//! switched off with `losetup`), and powers off. Printed side by side with ratios; nothing is
//! asserted (timings are not tests).
//! Not part of `cargo xtask test`: under TCG it takes about half an hour.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use hnroot_testkit::qemu::{Vm, VmSpec};
use hnroot_testkit::server::{enable, write, LoopDisk};
use hnroot_testkit::{buildenv, deb, debian, grubmod, initramfs, signing};
use regex::Regex;

/// The virtual disk of both systems (sparse): room for three images (what `hnroot install`
/// asks), the overlay and the write test.
const DISK_MIB: u64 = 12288;
/// The plain disk's ESP.
const ESP_MIB: u64 = 256;
/// The data file read by the benchmarks.
const DATA_MIB: u64 = 1024;
/// Guest memory: a cold read of the data file cached twice (buffered loop device) still fits.
const MEMORY_MIB: u32 = 3072;
/// One boot under TCG, to the bench unit's first line.
const BOOT_TIMEOUT: Duration = Duration::from_secs(900);
/// The benchmarks of the last boot, and a reboot's end.
const BENCH_TIMEOUT: Duration = Duration::from_secs(2400);
/// The plain root's filesystem UUID (fixed: Debian's GRUB finds the root by it).
const PLAIN_ROOT_UUID: &str = "6e1a0b5c-93d2-4c4e-9d0e-0b3e2c1f7a55";

#[derive(Debug, Parser)]
#[command(
    name = "bench-root",
    about = "The same Debian tree as an hnroot image on hostpart and on a plain ext4 partition: \
             boot time, fio on the root, page cache, side by side in QEMU (printed, never asserted)."
)]
struct Args {
    /// Boots per system; the first (the system's first boot) is not counted.
    #[arg(long, default_value_t = 4)]
    boots: u32,
    /// Rounds of the measurements on the last boot (medians are shown).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Seconds each random-I/O fio job runs.
    #[arg(long, default_value_t = 20)]
    runtime: u32,
    /// Only these systems (comma-separated; default: plain and hnroot).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<System>,
}

/// The two systems measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
enum System {
    /// The tree on a plain ext4 partition, Debian's GRUB.
    Plain,
    /// The tree as an hnroot image on hostpart, hnroot's GRUB.
    Hnroot,
    /// The same image sealed (`hnroot image seal`): GRUB checks the seal and passes the root
    /// hash, hnroot-init mounts the image through dm-verity under the overlay.
    Sealed,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Plain => "plain",
            System::Hnroot => "hnroot",
            System::Sealed => "sealed",
        }
    }
}

/// The bench unit: after `boot-complete.target` (which it pulls in: a plain Debian has nothing
/// else that does) and `multi-user.target`; its output on the serial console.
const BENCH_UNIT: &str = "[Unit]
Description=hnroot bench-root: timestamps of this boot, then reboot or the benchmarks
Wants=boot-complete.target
After=multi-user.target boot-complete.target hnroot-mark-good.service

[Service]
Type=oneshot
StandardOutput=journal
ExecStart=/usr/local/sbin/hnroot-bench

[Install]
WantedBy=multi-user.target
";

/// The guest's side. `@BOOTS@` and `@RUNTIME@` are filled in by [`bench_script`].
const BENCH_SCRIPT: &str = r#"#!/bin/sh
# Each line opens the console anew: the serial getty's vhangup() ends descriptors opened before it.
say() { echo "hnroot-bench: $*" > /dev/ttyS0; }
mono() { systemctl show -P ActiveEnterTimestampMonotonic "$1"; }
state=/var/lib/hnroot-bench/boots
n=$(( $(cat $state 2>/dev/null || echo 0) + 1 ))
echo $n > $state
sync
say "times boot=$n initrd-end=$(systemctl show -P UserspaceTimestampMonotonic) boot-complete=$(mono boot-complete.target) multi-user=$(mono multi-user.target) root=$(findmnt -n -o FSTYPE /)"
[ $n -eq 1 ] && say "image under the root: $(findmnt -n -o SOURCE /run/hnroot/image 2>/dev/null || echo none)"
if [ $n -lt @BOOTS@ ]; then
	say "rebooting"
	systemctl reboot
	exit 0
fi
D=/var/lib/hnroot-bench/data
W=/var/tmp/hnroot-bench-write
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
job() {
	name=$1; shift
	drop
	if fio --output-format=json --output=/tmp/fio.json --name="$name" "$@" >/tmp/fio.out 2>&1; then
		python3 /usr/local/lib/hnroot-bench/fio-summary.py "$name" /tmp/fio.json | while read -r l; do say "$l"; done
	else
		say "fio $name failed: $(tail -n 2 /tmp/fio.out | tr '\n' ' ')"
	fi
}
seq_read() { job "$1" --filename="$2" --rw=read --bs=1M --size=1G --ioengine=psync --readonly; }
rand_read() { job "$1" --filename="$2" --rw=randread --bs=4k --size=1G --direct=1 --ioengine=libaio --iodepth=16 --runtime=@RUNTIME@ --time_based --readonly; }
cached() { awk '/^Cached:/ {print $2}' /proc/meminfo; }
mem() {
	drop
	a=$(cached)
	cat "$2" > /dev/null
	b=$(cached)
	file=""
	[ -f /hostpart/hn-root.img ] && file=" image-file-kib=$(( $(fincore --bytes --noheadings --output RES /hostpart/hn-root.img) / 1024 ))"
	say "mem $1 cached-kib=$((b - a))$file"
}
# The loop device at a 4096-byte logical block size: LOOP_SET_BLOCK_SIZE on the live device
# (losetup --sector-size), the reads of the root and of the image without the overlay, then
# its own size again. Where the kernel refuses that on a bound device: a second loop device of
# the same image file at 4096, mounted read-only beside it (the image's reads only).
bsize() { cat /sys/block/${1#/dev/}/queue/logical_block_size; }
block_4k() {
	was=$(bsize "$1")
	if losetup --sector-size 4096 "$1" 2>/tmp/bs.err && [ "$(bsize "$1")" = 4096 ]; then
		say "loop ${1#/dev/} block-size=$(bsize "$1") dio=$(cat /sys/block/${1#/dev/}/loop/dio) (was $was; set on the live device)"
		seq_read seq-read-4k-loop $D
		rand_read rand-read-4k-loop $D
		seq_read image-seq-read-4k-loop /run/hnroot/image$D
		rand_read image-rand-read-4k-loop /run/hnroot/image$D
		losetup --sector-size "$was" "$1"
		say "loop ${1#/dev/} block-size=$(bsize "$1") (set back)"
		return 0
	fi
	say "loop ${1#/dev/}: losetup --sector-size 4096 on the live device: $(bsize "$1") after it; $(tr '\n' ' ' < /tmp/bs.err)"
	img=$(image_file "$1")
	second=$(losetup --find --show --read-only --direct-io=on --sector-size 4096 "$img") || return 0
	mkdir -p /run/hnroot-bench-4k
	if mount -o ro "$second" /run/hnroot-bench-4k; then
		say "loop ${second#/dev/} (second, of $img) block-size=$(bsize "$second") dio=$(cat /sys/block/${second#/dev/}/loop/dio)"
		seq_read image-seq-read-4k-loop /run/hnroot-bench-4k$D
		rand_read image-rand-read-4k-loop /run/hnroot-bench-4k$D
		umount /run/hnroot-bench-4k
	fi
	losetup -d "$second"
}
image_file() {
	if [ -f /hostpart/hn-root.img ]; then echo /hostpart/hn-root.img; else losetup -n -O BACK-FILE "$1"; fi
}
# The image's ext4 without its journal: a second read-only loop device of the same image file
# (direct I/O, the live device's block size) mounted ro, the image's reads, then mounted
# ro,noload, the same reads (the live root's mount cannot change: noload is a mount's start).
noload() {
	[ "$(findmnt -n -o FSTYPE /run/hnroot/image)" = ext4 ] || return 0
	img=$(image_file "$1")
	second=$(losetup --find --show --read-only --direct-io=on --sector-size "$(bsize "$1")" "$img") || return 0
	at=/run/hnroot-bench-second
	mkdir -p $at
	for how in second:ro noload:ro,noload; do
		if mount -o "${how#*:}" "$second" $at; then
			say "loop ${second#/dev/} (second, of $img) block-size=$(bsize "$second") dio=$(cat /sys/block/${second#/dev/}/loop/dio) mounted ${how#*:}"
			seq_read "image-seq-read-${how%%:*}" $at$D
			rand_read "image-rand-read-${how%%:*}" $at$D
			umount $at
		else
			say "loop ${second#/dev/}: mount -o ${how#*:} failed"
		fi
	done
	losetup -d "$second"
}
# Each round runs every measurement once; the host takes the median of the rounds.
round() {
	seq_read seq-read $D
	job seq-write --filename=$W --rw=write --bs=1M --size=1G --ioengine=psync --end_fsync=1
	rand_read rand-read $D
	job rand-write --filename=$W --rw=randwrite --bs=4k --size=1G --direct=1 --ioengine=libaio --iodepth=16 --runtime=@RUNTIME@ --time_based --end_fsync=1
	rm -f $W
	mem cold-read $D
	[ -d /run/hnroot/image/var ] || return 0
	seq_read image-seq-read /run/hnroot/image$D
	rand_read image-rand-read /run/hnroot/image$D
	lo=$(findmnt -n -o SOURCE /run/hnroot/image)
	say "loop ${lo#/dev/} dio=$(cat /sys/block/${lo#/dev/}/loop/dio)"
	[ -d /sys/block/${lo#/dev/}/loop ] || return 0
	block_4k "$lo"
	noload "$lo"
	losetup --direct-io=off "$lo" || return 0
	say "loop ${lo#/dev/} dio=$(cat /sys/block/${lo#/dev/}/loop/dio) (switched off)"
	mem cold-read-buffered-loop $D
	seq_read seq-read-buffered-loop $D
	rand_read rand-read-buffered-loop $D
	losetup --direct-io=on "$lo"
}
r=0
while [ $r -lt @ROUNDS@ ]; do
	r=$((r + 1))
	say "round $r"
	round
done
say "done"
systemctl poweroff
"#;

/// fio's JSON, one line per direction that moved bytes.
const FIO_SUMMARY: &str = r#"import json, sys
name, path = sys.argv[1], sys.argv[2]
job = json.load(open(path))["jobs"][0]
for op in ("read", "write"):
    s = job[op]
    if s["io_bytes"] == 0:
        continue
    p99 = s["clat_ns"].get("percentile", {}).get("99.000000", 0) / 1000
    print("fio %s %s mib_s=%.1f iops=%.0f p99_us=%.0f"
          % (name, op, s["bw_bytes"] / 1048576, s["iops"], p99))
"#;

fn bench_script(boots: u32, runtime: u32, rounds: u32) -> String {
    BENCH_SCRIPT
        .replace("@BOOTS@", &boots.to_string())
        .replace("@RUNTIME@", &runtime.to_string())
        .replace("@ROUNDS@", &rounds.to_string())
}

/// What one system printed.
#[derive(Debug, Default)]
struct Measured {
    /// Per counted boot: µs since kernel start to the initrd's end, `boot-complete.target`,
    /// `multi-user.target`; and the host's seconds from QEMU's start to the bench unit.
    boots: Vec<BootTimes>,
    /// `fio NAME OP` → per round (MiB/s, IOPS, p99 µs).
    fio: BTreeMap<String, Vec<Fio>>,
    /// `mem NAME` → per round (page cache grown, KiB; the image file's own pages, KiB).
    mem: BTreeMap<String, Vec<(u64, Option<u64>)>>,
    /// Everything else the unit said (`loop ... dio=`, failures).
    notes: Vec<String>,
}

/// One fio job's result.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Fio {
    mib_s: f64,
    iops: f64,
    p99_us: f64,
}

/// The median of `v` (the upper one of an even count); `None` when empty.
fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

#[derive(Debug, Clone, Copy)]
struct BootTimes {
    initrd_end_us: u64,
    boot_complete_us: u64,
    multi_user_us: u64,
    qemu_to_unit_s: f64,
}

/// `key=value` of a bench line.
fn field(line: &str, key: &str) -> Option<String> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('=').map(str::to_owned))
}

fn num(line: &str, key: &str) -> Result<f64> {
    let v = field(line, key).with_context(|| format!("no {key}= in `{line}`"))?;
    v.parse()
        .with_context(|| format!("{key}={v} in `{line}` is not a number"))
}

impl Measured {
    /// Take in one line of the unit's output (without the `hnroot-bench: ` prefix).
    fn take(&mut self, line: &str, qemu_s: f64) -> Result<()> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["times", ..] => {
                let boot = num(line, "boot")? as u32;
                if boot > 1 {
                    self.boots.push(BootTimes {
                        initrd_end_us: num(line, "initrd-end")? as u64,
                        boot_complete_us: num(line, "boot-complete")? as u64,
                        multi_user_us: num(line, "multi-user")? as u64,
                        qemu_to_unit_s: qemu_s,
                    });
                }
            }
            ["fio", name, op, ..] if field(line, "mib_s").is_some() => {
                self.fio
                    .entry(format!("{name} {op}"))
                    .or_default()
                    .push(Fio {
                        mib_s: num(line, "mib_s")?,
                        iops: num(line, "iops")?,
                        p99_us: num(line, "p99_us")?,
                    });
            }
            ["mem", name, ..] => {
                let file = field(line, "image-file-kib")
                    .map(|v| v.parse::<u64>())
                    .transpose()?;
                self.mem
                    .entry((*name).to_owned())
                    .or_default()
                    .push((num(line, "cached-kib")? as u64, file));
            }
            ["rebooting"] | ["done"] | ["round", _] => {}
            _ => self.notes.push(line.to_owned()),
        }
        Ok(())
    }

    fn boot_median(&self, f: impl Fn(&BootTimes) -> f64) -> Option<f64> {
        median(self.boots.iter().map(f).collect())
    }

    /// The median of each of a fio job's numbers over the rounds.
    fn fio_median(&self, key: &str) -> Option<Fio> {
        let runs = self.fio.get(key)?;
        Some(Fio {
            mib_s: median(runs.iter().map(|r| r.mib_s).collect())?,
            iops: median(runs.iter().map(|r| r.iops).collect())?,
            p99_us: median(runs.iter().map(|r| r.p99_us).collect())?,
        })
    }

    /// The median page cache growth (KiB) and image file pages (KiB) of `name`.
    fn mem_median(&self, name: &str) -> Option<(f64, Option<f64>)> {
        let runs = self.mem.get(name)?;
        let file: Vec<f64> = runs.iter().filter_map(|r| r.1).map(|k| k as f64).collect();
        Some((
            median(runs.iter().map(|r| r.0 as f64).collect())?,
            median(file),
        ))
    }
}

/// Boot `disk` `boots` times; collect what the unit printed.
fn measure(system: System, disk: &Path, work: &Path, boots: u32) -> Result<Measured> {
    let line_re = Regex::new(r"hnroot-bench: (.*)")?;
    let mut got = Measured::default();
    for boot in 1..=boots {
        let mut spec = VmSpec::new(
            &format!("bench-root {} boot {boot}", system.name()),
            &[disk],
            &work.join(format!("qemu-{}-{boot}", system.name())),
        );
        spec.memory_mib = MEMORY_MIB;
        let mut vm = Vm::start(&spec)?;
        let first = vm.wait_for(&line_re, BOOT_TIMEOUT)?;
        let qemu_s = first.at.as_secs_f64();
        let mut line = first.groups[1].trim().to_owned();
        loop {
            println!("    {}: {line}", system.name());
            got.take(&line, qemu_s)?;
            if line == "rebooting" || line == "done" {
                break;
            }
            line = vm.wait_for(&line_re, BENCH_TIMEOUT)?.groups[1]
                .trim()
                .to_owned();
        }
        vm.wait_exit(Duration::from_secs(120))?;
        if boot == boots && line != "done" {
            bail!(
                "{}: the last boot rebooted instead of running the benchmarks",
                system.name()
            );
        }
    }
    Ok(got)
}

/// Write `mib` MiB of incompressible bytes (xorshift64*, fixed seed) to `path`, unless there.
fn data_file(path: &Path, mib: u64) -> Result<()> {
    if fs::metadata(path).map(|m| m.len()).ok() == Some(mib << 20) {
        return Ok(());
    }
    let tmp = path.with_extension("part");
    let mut out = std::io::BufWriter::new(fs::File::create(&tmp)?);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for chunk in block.chunks_exact_mut(8) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            chunk.copy_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        out.write_all(&block)?;
    }
    out.flush()?;
    drop(out);
    fs::rename(&tmp, path)?;
    Ok(())
}

/// The tree both systems share: the bench unit, its script and the data file (a hard link).
fn instrument(tree: &Path, data: &Path, args: &Args) -> Result<()> {
    write(
        tree,
        "etc/systemd/system/hnroot-bench.service",
        BENCH_UNIT,
        0o644,
    )?;
    write(
        tree,
        "usr/local/sbin/hnroot-bench",
        &bench_script(args.boots, args.runtime, args.rounds),
        0o755,
    )?;
    write(
        tree,
        "usr/local/lib/hnroot-bench/fio-summary.py",
        FIO_SUMMARY,
        0o644,
    )?;
    enable(tree, "hnroot-bench.service", "multi-user.target.wants")?;
    let dir = tree.join("var/lib/hnroot-bench");
    fs::create_dir_all(&dir)?;
    let _ = fs::remove_file(dir.join("data"));
    fs::hard_link(data, dir.join("data"))
        .or_else(|_| fs::copy(data, dir.join("data")).map(|_| ()))
        .with_context(|| format!("cannot put {} into {}", data.display(), dir.display()))
}

fn run(cmd: &mut Command) -> Result<String> {
    buildenv::run(cmd)
}

fn blank(path: &Path) -> Result<()> {
    let _ = fs::remove_file(path);
    fs::File::create(path)?.set_len(DISK_MIB << 20)?;
    Ok(())
}

/// The hnroot disk: the tree with the package, an image (`sealed`: sealed with the publisher's
/// key, and the loader requiring seals), `hnroot install`.
fn hnroot_disk(
    tree: &debian::Tree,
    work: &Path,
    data: &Path,
    args: &Args,
    sealed: bool,
) -> Result<PathBuf> {
    let t = Instant::now();
    let d = deb::build(work)?;
    let cli = initramfs::static_binary("hnroot-cli", "hnroot")?;
    let staging = work.join("hnroot-tree");
    debian::copy(&tree.dir, &staging)?;
    let said = debian::install_deb(&staging, &d.path)?;
    ensure!(
        staging.join("var/lib/dpkg/info/hnroot.list").is_file(),
        "dpkg -i did not install hnroot: {said}"
    );
    instrument(&staging, data, args)?;
    let publisher = signing::Publisher::in_dir(work)?;
    if sealed {
        // As the README tells operators: the image carries the publisher's key and the
        // require-sealed marker, so the loader update after mark-good keeps both.
        write(
            &staging,
            "etc/hnroot/keys/publisher.pub",
            &String::from_utf8(publisher.public_key()?)?,
            0o644,
        )?;
        write(&staging, "etc/hnroot/loader/require-sealed", "1\n", 0o644)?;
    }
    let image = work.join("bench.img");
    let said = run(Command::new(&cli)
        .args(["image", "build", "--root"])
        .arg(&staging)
        .arg("--out")
        .arg(&image))?;
    debian::remove(&staging)?;
    if sealed {
        run(Command::new(&cli)
            .args(["image", "seal"])
            .arg(&image)
            .arg("--sign-key")
            .arg(publisher.secret_key())
            .arg("--public-key")
            .arg(&publisher.public)
            .args(["--version", "1"]))?;
    }
    let keys = work.join("keys");
    fs::create_dir_all(&keys)?;
    fs::copy(&publisher.public, keys.join("publisher.pub"))?;
    let signature = publisher.sign(&image, "hnroot-bench 1")?;
    let disk = work.join("hnroot-disk.img");
    blank(&disk)?;
    {
        let l = LoopDisk::attach(&disk, false)?;
        run(Command::new(&cli)
            .args([
                "install",
                "--disk",
                &l.node,
                "--yes",
                "--no-boot-entry",
                "--image",
            ])
            .arg(&image)
            .arg("--keys")
            .arg(&keys)
            .arg("--kit")
            .arg(grubmod::kit_dir())
            .args(sealed.then_some("--require-sealed")))?;
    }
    fs::remove_file(&image)?;
    fs::remove_file(&signature)?;
    println!(
        "    hnroot disk: {} ({:.0} s)",
        said.lines()
            .find(|l| l.contains(" built "))
            .unwrap_or("image built"),
        t.elapsed().as_secs_f64()
    );
    Ok(disk)
}

/// Debian's own GRUB for the plain disk, made by the tree's `grub-mkimage` with a config that
/// boots the tree's kernel and initrd from the root partition.
fn debian_grub(tree: &Path, out: &Path) -> Result<()> {
    let cfg = format!(
        "search --no-floppy --fs-uuid --set=root {PLAIN_ROOT_UUID}\n\
         linux /vmlinuz root=UUID={PLAIN_ROOT_UUID} ro {}\n\
         initrd /initrd.img\n\
         boot\n",
        hnroot_core::bootline::LOADER_DEFAULTS
    );
    write(tree, "tmp/hnroot-bench-grub.cfg", &cfg, 0o644)?;
    run(Command::new("chroot").arg(tree).args([
        "grub-mkimage",
        "-O",
        "x86_64-efi",
        "-o",
        "/tmp/BOOTX64.EFI",
        "-c",
        "/tmp/hnroot-bench-grub.cfg",
        "-p",
        "/boot/grub",
        "part_gpt",
        "ext2",
        "search",
        "search_fs_uuid",
        "linux",
        "boot",
        "echo",
    ]))?;
    fs::copy(tree.join("tmp/BOOTX64.EFI"), out)?;
    fs::remove_file(tree.join("tmp/BOOTX64.EFI"))?;
    fs::remove_file(tree.join("tmp/hnroot-bench-grub.cfg"))?;
    Ok(())
}

/// A mount that is undone when dropped.
struct Mounted(PathBuf);

impl Mounted {
    fn new(dev: &str, at: &Path) -> Result<Mounted> {
        fs::create_dir_all(at)?;
        run(Command::new("mount").arg(dev).arg(at))?;
        Ok(Mounted(at.to_owned()))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The plain disk: GPT, an ESP with Debian's GRUB, the tree on an ext4 partition.
fn plain_disk(tree: &debian::Tree, work: &Path, data: &Path, args: &Args) -> Result<PathBuf> {
    let t = Instant::now();
    let staging = work.join("plain-tree");
    debian::copy(&tree.dir, &staging)?;
    instrument(&staging, data, args)?;
    write(
        &staging,
        "etc/fstab",
        &format!("UUID={PLAIN_ROOT_UUID} / ext4 errors=remount-ro 0 1\n"),
        0o644,
    )?;
    let efi = work.join("BOOTX64.EFI");
    debian_grub(&staging, &efi)?;
    let disk = work.join("plain-disk.img");
    blank(&disk)?;
    run(Command::new("sgdisk")
        .arg(format!("--new=1:0:+{ESP_MIB}M"))
        .arg("--typecode=1:EF00")
        .arg("--new=2:0:0")
        .arg("--typecode=2:8300")
        .arg(&disk))?;
    {
        let l = LoopDisk::attach(&disk, true)?;
        run(Command::new("mkfs.vfat")
            .args(["-F", "32", "-n", "EFI"])
            .arg(l.part(1)))?;
        run(Command::new("mkfs.ext4")
            .args(["-q", "-U", PLAIN_ROOT_UUID, "-L", "root"])
            .arg(l.part(2)))?;
        {
            let root = Mounted::new(&l.part(2), &work.join("mnt-root"))?;
            run(Command::new("cp")
                .arg("-a")
                .arg(format!("{}/.", staging.display()))
                .arg(&root.0))?;
        }
        // mtools: the ESP is written without mounting it (this host's kernel may lack vfat).
        let esp = l.part(1);
        run(Command::new("mmd").args(["-i", &esp, "::/EFI", "::/EFI/BOOT"]))?;
        run(Command::new("mcopy")
            .args(["-i", &esp])
            .arg(&efi)
            .arg("::/EFI/BOOT/BOOTX64.EFI"))?;
    }
    debian::remove(&staging)?;
    println!(
        "    plain disk: the tree on ext4, Debian's GRUB ({:.0} s)",
        t.elapsed().as_secs_f64()
    );
    Ok(disk)
}

fn ratio(h: f64, p: f64) -> String {
    if p > 0.0 {
        format!("{:.2}×", h / p)
    } else {
        "-".to_owned()
    }
}

/// One number of a boot.
type Timing = fn(&BootTimes) -> f64;

/// The side-by-side table of `base` and `other` (medians; ratios other / base).
fn table(m: &BTreeMap<System, Measured>, base: System, other: System) -> String {
    let (Some(p), Some(h)) = (m.get(&base), m.get(&other)) else {
        return String::new();
    };
    let mut s = String::new();
    let mut row = |what: &str, plain: f64, hnroot: f64, digits: usize| {
        let _ = writeln!(
            s,
            "| {what} | {plain:.digits$} | {hnroot:.digits$} | {} |",
            ratio(hnroot, plain)
        );
    };
    let times: [(&str, Timing); 4] = [
        ("boot: kernel start → initrd end (s)", |b| {
            b.initrd_end_us as f64 / 1e6
        }),
        ("boot: kernel start → boot-complete.target (s)", |b| {
            b.boot_complete_us as f64 / 1e6
        }),
        ("boot: kernel start → multi-user.target (s)", |b| {
            b.multi_user_us as f64 / 1e6
        }),
        (
            "boot: QEMU start → bench unit, firmware and GRUB included (s)",
            |b| b.qemu_to_unit_s,
        ),
    ];
    for (what, f) in times {
        if let (Some(a), Some(b)) = (p.boot_median(f), h.boot_median(f)) {
            row(what, a, b, 2);
        }
    }
    // Each of hnroot's jobs beside the plain root's job of the same kind: the root itself,
    // the image without the overlay, the loop device switched to buffered I/O.
    let pairs = [
        ("seq-read read", "seq-read read"),
        ("image-seq-read read", "seq-read read"),
        ("seq-read-buffered-loop read", "seq-read read"),
        ("seq-write write", "seq-write write"),
        ("rand-read read", "rand-read read"),
        ("image-rand-read read", "rand-read read"),
        ("rand-read-buffered-loop read", "rand-read read"),
        ("seq-read-4k-loop read", "seq-read read"),
        ("image-seq-read-4k-loop read", "seq-read read"),
        ("rand-read-4k-loop read", "rand-read read"),
        ("image-rand-read-4k-loop read", "rand-read read"),
        ("rand-write write", "rand-write write"),
    ];
    for (mine, theirs) in pairs {
        let (Some(hf), Some(pf)) = (h.fio_median(mine), p.fio_median(theirs)) else {
            continue;
        };
        let what = if mine == theirs {
            format!("fio {mine}")
        } else {
            format!("fio {theirs} (hnroot: {mine})")
        };
        if mine.starts_with("rand") || mine.starts_with("image-rand") {
            row(&format!("{what}, IOPS"), pf.iops, hf.iops, 0);
            row(
                &format!("{what}, p99 latency (µs)"),
                pf.p99_us,
                hf.p99_us,
                0,
            );
        } else {
            row(&format!("{what} (MiB/s)"), pf.mib_s, hf.mib_s, 1);
        }
    }
    if let Some((plain, _)) = p.mem_median("cold-read") {
        for name in ["cold-read", "cold-read-buffered-loop"] {
            let Some((kib, file)) = h.mem_median(name) else {
                continue;
            };
            let file = file.map_or(String::new(), |f| {
                format!(", of it the image file's own {:.0}", f / 1024.0)
            });
            let _ = writeln!(
                s,
                "| page cache grown by a cold 1 GiB read, {name} (MiB) | {:.0} | {:.0}{file} | {} |",
                plain / 1024.0,
                kib / 1024.0,
                ratio(kib, plain)
            );
        }
    }
    let (b, o) = (base.name(), other.name());
    let mut out = format!("| what | {b} | {o} | {o} / {b} |\n|---|---|---|---|\n");
    out.push_str(&s);
    out
}

/// What a variant of one system's reads was measured against: the jobs `JOB{base}` beside
/// `JOB{variant}` for the root's and the image's sequential and random reads, under the
/// table's heading `what | base column | variant column`.
struct Variant {
    what: &'static str,
    base: (&'static str, &'static str),
    variant: (&'static str, &'static str),
}

/// The variants measured on the last boot besides the root as attached.
const VARIANTS: [Variant; 2] = [
    Variant {
        what: "the loop device's logical block size",
        base: ("", "as attached"),
        variant: ("-4k-loop", "4096"),
    },
    Variant {
        what: "the image's ext4 on a second loop device, mounted ro",
        base: ("-second", "journal loaded"),
        variant: ("-noload", "noload"),
    },
];

/// One system's reads beside the same reads of `v` (medians; ratios variant / base). Empty
/// when the variant's jobs did not run.
fn variant_table(m: &Measured, system: System, v: &Variant) -> String {
    let jobs = [
        ("seq-read", "sequential read, root (MiB/s)"),
        (
            "image-seq-read",
            "sequential read, the image without the overlay (MiB/s)",
        ),
        ("rand-read", "random 4 KiB read, root"),
        (
            "image-rand-read",
            "random 4 KiB read, the image without the overlay",
        ),
    ];
    let mut s = String::new();
    for (job, what) in jobs {
        let (Some(a), Some(b)) = (
            m.fio_median(&format!("{job}{} read", v.base.0)),
            m.fio_median(&format!("{job}{} read", v.variant.0)),
        ) else {
            continue;
        };
        if job.contains("rand") {
            let _ = writeln!(
                s,
                "| {what}, IOPS | {:.0} | {:.0} | {} |",
                a.iops,
                b.iops,
                ratio(b.iops, a.iops)
            );
            let _ = writeln!(
                s,
                "| {what}, p99 latency (µs) | {:.0} | {:.0} | {} |",
                a.p99_us,
                b.p99_us,
                ratio(b.p99_us, a.p99_us)
            );
        } else {
            let _ = writeln!(
                s,
                "| {what} | {:.1} | {:.1} | {} |",
                a.mib_s,
                b.mib_s,
                ratio(b.mib_s, a.mib_s)
            );
        }
    }
    if s.is_empty() {
        return s;
    }
    let (n, b, o) = (system.name(), v.base.1, v.variant.1);
    format!(
        "| {n}: {} | {b} | {o} | {o} / {b} |\n|---|---|---|---|\n{s}",
        v.what
    )
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        args.boots >= 2,
        "--boots {}: the first boot is not counted, so at least 2",
        args.boots
    );
    let started = Instant::now();
    let tree = debian::systemd_tree("bookworm", &["nfs-common", "python3", "netbase", "fio"])?;
    println!(
        "==> bench-root: Debian 12 tree {} ({})",
        tree.dir.display(),
        if tree.cached { "cached" } else { "made" }
    );
    let work = buildenv::build_root().join("bench-root");
    fs::create_dir_all(&work)?;
    let data = work.join("data");
    data_file(&data, DATA_MIB)?;
    let systems: Vec<System> = if args.only.is_empty() {
        vec![System::Plain, System::Hnroot]
    } else {
        args.only.clone()
    };
    let mut measured = BTreeMap::new();
    for system in systems {
        println!("==> {}", system.name());
        let disk = match system {
            System::Plain => plain_disk(&tree, &work, &data, &args)?,
            System::Hnroot => hnroot_disk(&tree, &work, &data, &args, false)?,
            System::Sealed => hnroot_disk(&tree, &work, &data, &args, true)?,
        };
        let m = measure(system, &disk, &work, args.boots)?;
        fs::remove_file(&disk)?;
        for note in &m.notes {
            println!("    {} said: {note}", system.name());
        }
        measured.insert(system, m);
    }
    fs::remove_file(&data)?;
    let host = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    println!(
        "==> bench-root: {} boots per system ({} counted), QEMU TCG, 1 vCPU, {MEMORY_MIB} MiB, \
         virtio disk; host: {host}; {:.0} s in all\n",
        args.boots,
        args.boots - 1,
        started.elapsed().as_secs_f64()
    );
    let tables = [
        table(&measured, System::Plain, System::Hnroot),
        table(&measured, System::Hnroot, System::Sealed),
        table(&measured, System::Plain, System::Sealed),
    ];
    let mut any = false;
    let tables = tables.into_iter().chain(
        measured
            .iter()
            .flat_map(|(system, m)| VARIANTS.iter().map(|v| variant_table(m, *system, v))),
    );
    for t in tables.filter(|t| !t.is_empty()) {
        println!("{t}");
        any = true;
    }
    if !any {
        println!("(one system only: no table)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The unit's lines as a guest prints them become the numbers the table shows.
    #[test]
    fn the_units_lines_are_read_into_numbers() {
        let mut m = Measured::default();
        m.take(
            "times boot=1 initrd-end=2000000 boot-complete=9000000 multi-user=9100000 root=ext4",
            60.0,
        )
        .unwrap();
        assert!(m.boots.is_empty(), "the first boot is not counted");
        m.take(
            "times boot=2 initrd-end=2500000 boot-complete=8000000 multi-user=8200000 root=overlay",
            50.0,
        )
        .unwrap();
        m.take("fio rand-read read mib_s=12.5 iops=3200 p99_us=900", 0.0)
            .unwrap();
        m.take("mem cold-read cached-kib=1050000 image-file-kib=0", 0.0)
            .unwrap();
        m.take("loop loop0 dio=1", 0.0).unwrap();
        m.take("round 2", 0.0).unwrap();
        assert_eq!(m.boots.len(), 1);
        assert_eq!(m.boots[0].boot_complete_us, 8_000_000);
        assert_eq!(m.boot_median(|b| b.qemu_to_unit_s), Some(50.0));
        m.take("fio rand-read read mib_s=10.5 iops=3000 p99_us=1000", 0.0)
            .unwrap();
        m.take("fio rand-read read mib_s=11.5 iops=3100 p99_us=950", 0.0)
            .unwrap();
        assert_eq!(
            m.fio_median("rand-read read"),
            Some(Fio {
                mib_s: 11.5,
                iops: 3100.0,
                p99_us: 950.0
            })
        );
        assert_eq!(m.mem_median("cold-read"), Some((1_050_000.0, Some(0.0))));
        assert_eq!(m.notes, ["loop loop0 dio=1"]);
        assert!(m
            .take("fio seq-read read mib_s=fast iops=1 p99_us=1", 0.0)
            .is_err());
    }

    /// The table puts hnroot's medians beside the plain root's, with their ratio.
    #[test]
    fn the_table_shows_medians_side_by_side() {
        let mut m = BTreeMap::new();
        for (system, iops) in [
            (System::Plain, [8000, 9000, 10000]),
            (System::Hnroot, [4000, 4500, 9999]),
        ] {
            let mut got = Measured::default();
            for i in iops {
                got.take(
                    &format!("fio rand-read read mib_s=1 iops={i} p99_us=100"),
                    0.0,
                )
                .unwrap();
            }
            m.insert(system, got);
        }
        let t = table(&m, System::Plain, System::Hnroot);
        assert!(
            t.contains("| fio rand-read read, IOPS | 9000 | 4500 | 0.50× |"),
            "{t}"
        );
        assert!(
            !t.contains("image-rand-read"),
            "no row without numbers: {t}"
        );
    }

    /// The loop device's reads at 4096 beside the same reads as attached, one system alone.
    #[test]
    fn a_variant_table_compares_one_system_with_itself() {
        let mut m = Measured::default();
        for line in [
            "fio rand-read read mib_s=1 iops=4000 p99_us=600",
            "fio rand-read-4k-loop read mib_s=1 iops=5000 p99_us=450",
            "fio image-seq-read read mib_s=400.0 iops=400 p99_us=9",
            "fio image-seq-read-4k-loop read mib_s=420.0 iops=420 p99_us=9",
        ] {
            m.take(line, 0.0).unwrap();
        }
        let t = variant_table(&m, System::Hnroot, &VARIANTS[0]);
        assert!(
            t.contains("| random 4 KiB read, root, IOPS | 4000 | 5000 | 1.25× |"),
            "{t}"
        );
        assert!(
            t.contains("| random 4 KiB read, root, p99 latency (µs) | 600 | 450 | 0.75× |"),
            "{t}"
        );
        assert!(
            t.contains(
                "| sequential read, the image without the overlay (MiB/s) | 400.0 | 420.0 | 1.05× |"
            ),
            "{t}"
        );
        assert!(
            !t.contains("sequential read, root"),
            "no row without numbers: {t}"
        );
        assert!(t.starts_with(
            "| hnroot: the loop device's logical block size | as attached | 4096 | 4096 / as attached |"
        ));
        assert!(variant_table(&Measured::default(), System::Hnroot, &VARIANTS[0]).is_empty());
        assert!(variant_table(&m, System::Hnroot, &VARIANTS[1]).is_empty());
        m.take(
            "fio image-rand-read-second read mib_s=1 iops=5000 p99_us=500",
            0.0,
        )
        .unwrap();
        m.take(
            "fio image-rand-read-noload read mib_s=1 iops=5100 p99_us=490",
            0.0,
        )
        .unwrap();
        let t = variant_table(&m, System::Hnroot, &VARIANTS[1]);
        assert!(
            t.contains(
                "| random 4 KiB read, the image without the overlay, IOPS | 5000 | 5100 | 1.02× |"
            ),
            "{t}"
        );
        assert!(
            t.contains("| journal loaded | noload | noload / journal loaded |"),
            "{t}"
        );
    }

    #[test]
    fn the_script_gets_its_numbers() {
        let s = bench_script(3, 20, 5);
        assert!(s.contains("-lt 3 ]") && s.contains("--runtime=20") && s.contains("-lt 5 ]"));
        assert!(!["@BOOTS@", "@RUNTIME@", "@ROUNDS@"]
            .iter()
            .any(|p| s.contains(p)));
    }
}
