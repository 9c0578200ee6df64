//! Runs one QEMU virtual machine (OVMF firmware, raw disk images, TCG; no network unless asked,
//! and then only QEMU's user network, which shows the host's 127.0.0.1 to the guest as
//! 10.0.2.2) with its serial console captured to a file (and, when asked, keys typed on it),
//! and waits on that console with a bound on every wait; it never judges what the guest
//! printed.
//! A `Vm` is killed when dropped, so a failing test never leaves a guest running; `kill` is
//! also the power cut of the crash scenarios (SIGKILL: every write QEMU issued is in the host
//! page cache, nothing the guest had not yet written is).

use std::cell::RefCell;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use regex::Regex;

/// OVMF firmware (package ovmf): code, read-only and shared.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// OVMF's variables, copied per VM.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// OVMF with Secure Boot (and SMM, which guards its variables): code, read-only and shared.
pub const OVMF_CODE_SECBOOT: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
/// How often the serial log is re-read while waiting (see [`Vm::set_poll`]).
const POLL: Duration = Duration::from_millis(20);
/// Bound on the serial log kept in memory: a guest printing more than this is broken.
const MAX_LOG_BYTES: u64 = 64 * 1024 * 1024;
/// Lines of serial console shown when a wait fails.
pub const TAIL_LINES: usize = 40;
/// Bound on how long `kill` waits for QEMU to be reaped after SIGKILL.
const REAP_TIMEOUT: Duration = Duration::from_secs(10);

/// The controller the disks are attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskBus {
    /// virtio-blk (`/dev/vda`, ...), which every test initramfs has the driver for.
    Virtio,
    /// NVMe, which OVMF (and so GRUB) reads but an initramfs without the `nvme` module does
    /// not see: a hostpart GRUB finds and Linux cannot.
    Nvme,
}

/// How to run a VM.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// Shown in messages (`e2e lifecycle-ext4`).
    pub name: String,
    /// Raw disk images, attached in order (vda, vdb, ... on virtio).
    pub disks: Vec<PathBuf>,
    /// Where the disks are attached.
    pub bus: DiskBus,
    /// Holds `serial.log`, `qemu.stderr` and the VM's copy of the OVMF variables.
    pub run_dir: PathBuf,
    /// Guest memory.
    pub memory_mib: u32,
    /// `-no-reboot`: a guest reboot (GRUB's or the initramfs's fallback, a kernel panic with
    /// `panic=N`) ends QEMU instead of booting again.
    pub no_reboot: bool,
    /// A virtio NIC on QEMU's user network (no IPv6, no boot ROM): the guest reaches the
    /// host's 127.0.0.1 as 10.0.2.2 (`hnroot-testkit`'s HTTP server listens there, and only
    /// there). `false`: no NIC at all.
    pub user_net: bool,
    /// TCP ports of the host's 127.0.0.1 forwarded to the guest on the user network
    /// (`(host, guest)`: `ssh -p host root@127.0.0.1` reaches the guest's sshd on `guest`).
    pub host_forwards: Vec<(u16, u16)>,
    /// Keys can be typed on the serial console ([`Vm::type_keys`]): the console is QEMU's
    /// standard input and output, logged to the same `serial.log`.
    pub serial_input: bool,
    /// More QEMU arguments.
    pub extra_args: Vec<String>,
    /// Secure Boot: OVMF's Secure Boot build started with this variable store (keys enrolled,
    /// Secure Boot on; copied per VM), on a machine with SMM. `None`: plain OVMF, its empty
    /// store.
    pub secure_boot_vars: Option<PathBuf>,
}

impl VmSpec {
    /// 1 GiB, virtio disks, `-no-reboot`.
    pub fn new(name: &str, disks: &[&Path], run_dir: &Path) -> Self {
        Self {
            name: name.to_string(),
            disks: disks.iter().map(|d| d.to_path_buf()).collect(),
            bus: DiskBus::Virtio,
            run_dir: run_dir.to_path_buf(),
            memory_mib: 1024,
            no_reboot: true,
            user_net: false,
            host_forwards: Vec::new(),
            serial_input: false,
            extra_args: Vec::new(),
            secure_boot_vars: None,
        }
    }
}

/// A match on the serial console.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Time since QEMU was started.
    pub at: Duration,
    /// The whole line the match is in (escape sequences removed).
    pub line: String,
    /// Offset of the match's end in the cleaned log ([`Vm::log`]).
    pub end: usize,
    /// Capture groups of the regex (index 0: the whole match); empty strings for no match.
    pub groups: Vec<String>,
}

/// A running (or finished) QEMU.
#[derive(Debug)]
pub struct Vm {
    name: String,
    child: Child,
    /// The serial console's input, when the spec asked for one.
    keys: Option<ChildStdin>,
    serial_log: PathBuf,
    stderr_log: PathBuf,
    started: Instant,
    /// Offset in the cleaned serial log after the last hit: waits match only newer output.
    cursor: usize,
    exit: Option<ExitStatus>,
    poll: Duration,
    /// The serial log read so far, cleaned; refreshed incrementally.
    cache: RefCell<LogCache>,
}

/// The cleaned serial log and how much of the raw file it covers. Only complete lines are
/// cleaned (escape sequences and UTF-8 characters never span a newline); the unfinished last
/// line waits in `pending`.
#[derive(Debug, Default)]
struct LogCache {
    text: String,
    raw_read: u64,
    pending: Vec<u8>,
}

impl Vm {
    /// Start QEMU. The serial log and the variables copy in `run_dir` are fresh.
    pub fn start(spec: &VmSpec) -> Result<Self> {
        let (code, vars_source) = match &spec.secure_boot_vars {
            Some(vars) => (OVMF_CODE_SECBOOT, vars.as_path()),
            None => (OVMF_CODE, Path::new(OVMF_VARS)),
        };
        for firmware in [Path::new(code), vars_source] {
            if !firmware.is_file() {
                bail!(
                    "{}: no {} (apt-get install ovmf)",
                    spec.name,
                    firmware.display()
                );
            }
        }
        if spec.disks.is_empty() {
            bail!("{}: a VM needs at least one disk", spec.name);
        }
        fs::create_dir_all(&spec.run_dir)
            .with_context(|| format!("cannot create {}", spec.run_dir.display()))?;
        let vars = spec.run_dir.join("OVMF_VARS.fd");
        fs::copy(vars_source, &vars).with_context(|| {
            format!(
                "cannot copy {} to {}",
                vars_source.display(),
                vars.display()
            )
        })?;
        let serial_log = spec.run_dir.join("serial.log");
        let stderr_log = spec.run_dir.join("qemu.stderr");
        let _ = fs::remove_file(&serial_log);
        let stderr = fs::File::create(&stderr_log)
            .with_context(|| format!("cannot create {}", stderr_log.display()))?;

        let mut cmd = Command::new("qemu-system-x86_64");
        // Secure Boot's OVMF keeps its variables in SMM-protected flash: SMM on, flash secure.
        let machine = match spec.secure_boot_vars {
            Some(_) => "q35,smm=on",
            None => "q35",
        };
        cmd.args(["-accel", "tcg", "-machine", machine, "-smp", "1"]);
        if spec.secure_boot_vars.is_some() {
            cmd.args(["-global", "driver=cfi.pflash01,property=secure,value=on"]);
        }
        cmd.args(["-m", &spec.memory_mib.to_string()])
            // No default devices (no DVD-ROM for OVMF to try first, no VGA, no NIC).
            .args(["-nodefaults", "-display", "none", "-monitor", "none"]);
        if spec.user_net {
            // romfile= leaves out the NIC's iPXE ROM: the firmware never tries a network boot.
            let mut netdev = "user,id=net0,ipv6=off".to_owned();
            for (host, guest) in &spec.host_forwards {
                netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
            }
            cmd.args(["-netdev", &netdev])
                .args(["-device", "virtio-net-pci,netdev=net0,romfile="]);
        } else {
            cmd.args(["-nic", "none"]);
        }
        if spec.serial_input {
            cmd.arg("-chardev")
                .arg(format!(
                    "stdio,id=serial0,signal=off,logfile={}",
                    serial_log.display()
                ))
                .args(["-serial", "chardev:serial0"]);
        } else {
            cmd.arg("-serial")
                .arg(format!("file:{}", serial_log.display()));
        }
        cmd.arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={code}"
            ))
            .arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,unit=1,file={}",
                vars.display()
            ));
        for (i, disk) in spec.disks.iter().enumerate() {
            if !disk.is_file() {
                bail!(
                    "{}: disk image {} does not exist",
                    spec.name,
                    disk.display()
                );
            }
            // cache=unsafe only drops flushes to the host disk; the host never crashes in
            // our tests, and a power cut is a SIGKILL of QEMU, which keeps every write it made.
            match spec.bus {
                DiskBus::Virtio => cmd.arg("-drive").arg(format!(
                    "file={},format=raw,if=virtio,cache=unsafe",
                    disk.display()
                )),
                DiskBus::Nvme => {
                    let id = format!("nvme{i}");
                    cmd.arg("-drive")
                        .arg(format!(
                            "file={},format=raw,if=none,id={id},cache=unsafe",
                            disk.display()
                        ))
                        .arg("-device")
                        .arg(format!("nvme,serial=hnroot-{id},drive={id}"))
                }
            };
        }
        if spec.no_reboot {
            cmd.arg("-no-reboot");
        }
        cmd.args(&spec.extra_args);
        cmd.stdin(if spec.serial_input {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::from(stderr));
        let shown = crate::buildenv::show(&cmd);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("{}: cannot start `{shown}`", spec.name))?;
        let keys = child.stdin.take();
        Ok(Self {
            name: spec.name.clone(),
            child,
            keys,
            serial_log,
            stderr_log,
            started: Instant::now(),
            cursor: 0,
            exit: None,
            poll: POLL,
            cache: RefCell::new(LogCache::default()),
        })
    }

    /// Type `keys` on the serial console (raw bytes: `\x05` is Ctrl-E); the VM must have been
    /// started with [`VmSpec::serial_input`].
    pub fn type_keys(&mut self, keys: &[u8]) -> Result<()> {
        let Some(input) = self.keys.as_mut() else {
            bail!(
                "{}: the VM was started without serial input (VmSpec::serial_input)",
                self.name
            );
        };
        input
            .write_all(keys)
            .and_then(|()| input.flush())
            .with_context(|| format!("{}: cannot type on the serial console", self.name))
    }

    /// How often waits re-read the serial log; a power cut at a precise moment wants ~1 ms.
    pub fn set_poll(&mut self, poll: Duration) {
        self.poll = poll;
    }

    /// Read what the serial log gained since the last call and clean its complete lines.
    fn refresh(&self) {
        let mut cache = self.cache.borrow_mut();
        let Ok(mut file) = fs::File::open(&self.serial_log) else {
            return;
        };
        if file.seek(SeekFrom::Start(cache.raw_read)).is_err() {
            return;
        }
        let mut fresh = Vec::new();
        let budget = MAX_LOG_BYTES.saturating_sub(cache.raw_read);
        if file.take(budget).read_to_end(&mut fresh).is_err() {
            return;
        }
        cache.raw_read += fresh.len() as u64;
        cache.pending.extend_from_slice(&fresh);
        if let Some(last_nl) = cache.pending.iter().rposition(|b| *b == b'\n') {
            let rest = cache.pending.split_off(last_nl + 1);
            let complete = std::mem::replace(&mut cache.pending, rest);
            let cleaned = clean(&complete);
            cache.text.push_str(&cleaned);
        }
    }

    /// Time since start.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The serial log so far (complete lines), escape sequences and carriage returns removed.
    pub fn log(&self) -> String {
        self.refresh();
        self.cache.borrow().text.clone()
    }

    /// The cleaned log from byte `start` (clamped to a character boundary) to now, the
    /// unfinished last line included.
    pub fn log_since(&self, start: usize) -> String {
        self.refresh();
        let cache = self.cache.borrow();
        let text = format!("{}{}", cache.text, clean(&cache.pending));
        let mut start = start.min(text.len());
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        text[start..].to_string()
    }

    /// The last `n` lines of the serial log (cleaned, the unfinished line included), for
    /// error messages.
    pub fn tail(&self, n: usize) -> String {
        self.refresh();
        let cache = self.cache.borrow();
        let mut log = cache.text.clone();
        log.push_str(&clean(&cache.pending));
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Wait until `re` matches console output newer than the previous hit. Fails (and kills
    /// the VM) after `timeout`, or as soon as QEMU exits without the match; the error names
    /// the pattern, the time waited and shows the console tail.
    pub fn wait_for(&mut self, re: &Regex, timeout: Duration) -> Result<Hit> {
        match self.watch_for(re, timeout)? {
            Some(hit) => Ok(hit),
            None => {
                let tail = self.tail(TAIL_LINES);
                self.kill()?;
                bail!(
                    "{}: no /{re}/ on the serial console within {:.0} s ({:.1} s since start); \
                     killed QEMU\n--- serial tail ---\n{tail}",
                    self.name,
                    timeout.as_secs_f64(),
                    self.elapsed().as_secs_f64()
                );
            }
        }
    }

    /// Like [`Vm::wait_for`], but `None` after `timeout` (the VM keeps running): for checking
    /// that something does *not* happen within a bound.
    pub fn watch_for(&mut self, re: &Regex, timeout: Duration) -> Result<Option<Hit>> {
        let deadline = Instant::now() + timeout;
        loop {
            // Whether QEMU had exited before this read: then the log is complete.
            let exited = self.try_exit()?;
            // Match on the cleaned log: OVMF's escape sequences can sit inside a line.
            self.refresh();
            let found = {
                let cache = self.cache.borrow();
                // Complete lines first; then the unfinished last line on its own (GRUB's menu
                // waits without a newline). Matches never span the two: the unfinished part
                // starts a line, and the patterns waited for are single lines.
                let pending = clean(&cache.pending);
                let committed = cache.text.len();
                let mut start = self.cursor.min(committed);
                while !cache.text.is_char_boundary(start) {
                    start -= 1;
                }
                let mut in_pending = self.cursor.saturating_sub(committed).min(pending.len());
                while !pending.is_char_boundary(in_pending) {
                    in_pending -= 1;
                }
                let parts = [
                    (start, &cache.text[start..]),
                    (committed + in_pending, &pending[in_pending..]),
                ];
                let hit = parts.into_iter().find_map(|(base, rest)| {
                    re.captures(rest).map(|caps| {
                        let (m_start, m_end) = caps.get(0).map_or((0, 0), |m| (m.start(), m.end()));
                        let line_start = rest[..m_start].rfind('\n').map_or(0, |i| i + 1);
                        let line_end = rest[m_end..].find('\n').map_or(rest.len(), |i| m_end + i);
                        Hit {
                            at: self.elapsed(),
                            line: rest[line_start..line_end].to_string(),
                            end: base + m_end,
                            groups: caps
                                .iter()
                                .map(|g| g.map_or(String::new(), |m| m.as_str().to_string()))
                                .collect(),
                        }
                    })
                });
                hit
            };
            if let Some(hit) = found {
                self.cursor = hit.end;
                return Ok(Some(hit));
            }
            if let Some(status) = exited {
                bail!(
                    "{}: QEMU exited ({status}) after {:.1} s without printing /{re}/ on the \
                     serial console{}\n--- serial tail ---\n{}",
                    self.name,
                    self.elapsed().as_secs_f64(),
                    self.stderr_note(),
                    self.tail(TAIL_LINES)
                );
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(self.poll);
        }
    }

    /// Wait for `re`, let `delay` pass, then cut the power (SIGKILL). Returns the hit.
    pub fn cut_power_after(
        &mut self,
        re: &Regex,
        delay: Duration,
        timeout: Duration,
    ) -> Result<Hit> {
        let hit = self.wait_for(re, timeout)?;
        thread::sleep(delay);
        self.kill()?;
        Ok(hit)
    }

    /// Wait for QEMU to exit on its own (guest poweroff, or a reboot with `-no-reboot`);
    /// after `timeout` kill it and fail with the console tail.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let tail = self.tail(TAIL_LINES);
                self.kill()?;
                bail!(
                    "{}: QEMU still running {:.0} s after the wait for its exit began; killed \
                     it\n--- serial tail ---\n{tail}",
                    self.name,
                    timeout.as_secs_f64()
                );
            }
            thread::sleep(POLL);
        }
    }

    /// SIGKILL QEMU (a power cut) and reap it. Idempotent.
    pub fn kill(&mut self) -> Result<()> {
        if self.try_exit()?.is_some() {
            return Ok(());
        }
        self.child
            .kill()
            .with_context(|| format!("{}: cannot kill QEMU", self.name))?;
        let deadline = Instant::now() + REAP_TIMEOUT;
        while Instant::now() < deadline {
            if self.try_exit()?.is_some() {
                return Ok(());
            }
            thread::sleep(POLL);
        }
        bail!(
            "{}: QEMU (pid {}) did not exit within {} s of SIGKILL",
            self.name,
            self.child.id(),
            REAP_TIMEOUT.as_secs()
        )
    }

    fn try_exit(&mut self) -> Result<Option<ExitStatus>> {
        if self.exit.is_none() {
            self.exit = self
                .child
                .try_wait()
                .with_context(|| format!("{}: cannot poll QEMU", self.name))?;
        }
        Ok(self.exit)
    }

    fn stderr_note(&self) -> String {
        let err = fs::read_to_string(&self.stderr_log).unwrap_or_default();
        let err = err.trim();
        if err.is_empty() {
            String::new()
        } else {
            format!("; QEMU said: {err}")
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Err(e) = self.kill() {
            eprintln!("warning: {e:#}");
        }
    }
}

/// Remove ANSI escape sequences (OVMF clears the screen and sets colours) and carriage returns.
pub fn clean(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    // CSI: parameters and intermediates, then one final byte in @..~.
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_removes_ovmf_escapes() {
        let raw = b"\x1b[2J\x1b[01;01H\x1b[=3h\x1b[0m\x1b[37m\x1b[40mhnroot-grub: hi\r\nnext";
        assert_eq!(clean(raw), "hnroot-grub: hi\nnext");
    }
}
