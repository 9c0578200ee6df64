//! Boots a scenario disk in one QEMU (OVMF, TCG) that reboots in place, and reads each boot off
//! the serial console: what GRUB's `hnroot select` chose and why (its `decision:` record of
//! stable `key=value` words, and the refusal code of each image it could not use), which image
//! the kernel came from, what hnroot-init planned (its `record:` lines) and did step by step,
//! what the test init reported (version, UUID, its arguments, hostpart) and how the boot ended
//! (reboot, poweroff, kernel panic, an intentional stop, GRUB's rescue entry). It can also type
//! at GRUB's menu, as an operator at the console would, to add words to the kernel command
//! line. Every wait is bounded; a failure carries the console tail. It judges nothing:
//! scenarios compare the [`BootRecord`]s with what they expect.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use regex::Regex;

use crate::qemu::{Hit, Vm, VmSpec, TAIL_LINES};

/// The countdown line of GRUB's menu: the menu is on the screen and reads keys (plain text,
/// also a regex). Absent when the loader's countdown is 0 (`hnroot install --menu-timeout 0`).
pub const GRUB_COUNTDOWN: &str = "will be executed automatically in";
/// The help line of GRUB's entry editor: the editor is on the screen and reads keys.
const GRUB_EDITOR: &str = r"Minimum Emacs-like screen editing";
/// GRUB's editor keys (its Emacs-like bindings; the firmware passes control bytes through).
const CTRL_E: u8 = 0x05;
const CTRL_N: u8 = 0x0e;
const CTRL_X: u8 = 0x18;

/// How one boot ended on the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The test init rebooted (more actions to run).
    Reboot,
    /// The test init powered off (the last boot of a run).
    Poweroff,
    /// The kernel panicked (with `panic=10` it reboots 10 s later).
    Panic,
    /// hnroot-init stopped on purpose after a fatal error (no other image would boot).
    Stopped,
    /// hnroot-init recorded the failure and rebooted so GRUB boots another image.
    AfterFailureReboot,
    /// `hnroot select` failed: GRUB stays at its menu with the rescue entry selected and no
    /// timeout (grub.cfg), waiting for an operator; or the rescue entry itself runs.
    GrubRescue,
    /// The power was cut (QEMU killed) during this boot.
    PowerCut,
    /// `hnroot reboot` started the next kernel by kexec (the firmware and GRUB skipped).
    Kexec,
    /// `hnroot reboot` rebooted through the firmware instead of a kexec, saying why.
    FirmwareReboot,
    /// The test hung the machine on purpose (a hardware watchdog must reset it).
    Hung,
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            End::Reboot => "reboot",
            End::Poweroff => "poweroff",
            End::Panic => "kernel panic",
            End::Stopped => "hnroot-init stopped",
            End::AfterFailureReboot => "hnroot-init reboot after a failure",
            End::GrubRescue => "GRUB stays at its menu (rescue entry selected)",
            End::PowerCut => "power cut",
            End::Kexec => "hnroot reboot by kexec",
            End::FirmwareReboot => "hnroot reboot through the firmware",
            End::Hung => "the machine hung (on purpose)",
        })
    }
}

/// hnroot-init writes each line to the kernel log, and to the console only when the kernel
/// does not echo it there itself: on the console its lines may carry the kernel's
/// `[    4.952313] ` timestamp. Patterns for its lines start with this.
pub const INIT_LINE: &str = r"^(?:\[ *[0-9]+\.[0-9]+\] )?hnroot: ";

/// The console lines that end a boot, and what each means.
const END_MARKERS: &[(&str, End)] = &[
    (r"^hnroot-test: rebooting$", End::Reboot),
    (r"^hnroot-test: powering off$", End::Poweroff),
    (r"Kernel panic - not syncing", End::Panic),
    (
        r"^(?:\[ *[0-9]+\.[0-9]+\] )?hnroot: stopped on purpose",
        End::Stopped,
    ),
    (
        r"^(?:\[ *[0-9]+\.[0-9]+\] )?hnroot: emergency shell on the console",
        End::Stopped,
    ),
    (
        r"^(?:\[ *[0-9]+\.[0-9]+\] )?hnroot: after failure: recorded image .* rebooting",
        End::AfterFailureReboot,
    ),
    (r"\*hnroot rescue: stay in GRUB", End::GrubRescue),
    (r"^hnroot: press c for a GRUB shell", End::GrubRescue),
    (r"^hnroot: reboot: starting \S+ by kexec", End::Kexec),
    (
        r"^hnroot: reboot: through the firmware",
        End::FirmwareReboot,
    ),
];

/// Where the kernel's part of a boot begins on the console.
const KERNEL_START: &str = "Linux version ";

/// One boot as the console shows it.
#[derive(Debug, Clone, Default)]
pub struct BootRecord {
    /// 1-based, within its QEMU run.
    pub index: usize,
    /// Host time from QEMU start to the line that ended this boot.
    pub ended_at: Duration,
    /// How long this boot took on the host clock (from the previous boot's end).
    pub took: Duration,
    /// How the boot ended, when it did.
    pub end: Option<End>,
    /// GRUB's `hnroot: ...` and `error: ...` lines, wrapped lines joined again.
    pub grub: Vec<String>,
    /// The decision line GRUB printed for people (`booting hn-root.img (normal); ...`),
    /// without `hnroot: `.
    pub decision: Option<String>,
    /// GRUB's decision as stable `key=value` words (`reason=update image=hn-root-new.img
    /// uuid=... try=1/3 fallbacks=hn-root.img notes=- write=trial`); see [`field`].
    pub grub_record: Option<String>,
    /// The decision's own part of [`BootRecord::grub_record`]: what `Decision::record` gives on
    /// the Linux side (without what composing the command line used and refused).
    pub grub_decision: Option<String>,
    /// The rest: `args=... refused=...` (see `hnroot_core::bootline`).
    pub grub_args: Option<String>,
    /// Image files GRUB refused: (file name, refusal code), from `hnroot: (hd0,gpt2)/NAME:
    /// not bootable (CODE): ...`.
    pub grub_refused: Vec<(String, String)>,
    /// The kernel's whole command line.
    pub cmdline: Option<String>,
    /// `hnroot.image=` on the kernel command line: the image GRUB loaded the kernel from.
    pub cmdline_image: Option<String>,
    /// `hnroot.uuid=` on the kernel command line.
    pub cmdline_uuid: Option<String>,
    /// hnroot-init's lines (console copies), without `hnroot: `.
    pub init: Vec<String>,
    /// The kind of hnroot-init's plan (`plan: update (5 steps): notes`).
    pub plan_kind: Option<String>,
    /// The number of steps the plan announced.
    pub plan_steps: Option<usize>,
    /// The notes after the plan's step count.
    pub plan_notes: Option<String>,
    /// hnroot-init's `record: plan=... steps=N mount=... uuid=... notes=...` lines, in order:
    /// the plan, then any plan that replaced it after a failed step, each with the steps
    /// logged under it.
    pub plans: Vec<PlanRun>,
    /// Image files hnroot-init refused: (file name, refusal code), from `hostpart: NAME:
    /// not bootable (CODE): ...`.
    pub init_refused: Vec<(String, String)>,
    /// `step i/n: ...` lines, without `hnroot: `.
    pub steps: Vec<String>,
    /// `FATAL: ...`, without the prefix.
    pub fatal: Option<String>,
    /// The version in the test init's `booted version=V uuid=U`.
    pub version: Option<String>,
    /// The UUID in that line: the root filesystem's.
    pub uuid: Option<String>,
    /// The arguments the test init was started with (`hnroot-test: args N: ...`): the words
    /// of the kernel command line the kernel handed to PID 1, passed on by hnroot-init.
    pub init_args: Option<Vec<String>>,
    /// The test init's `image NAME uuid=U` lines: hostpart as the booted system sees it.
    pub images: Vec<(String, String)>,
    /// `ls -la /hostpart` as the test init printed it.
    pub ls_hostpart: Vec<String>,
    /// The action the test init ran.
    pub action: Option<String>,
    /// The action's `action N exit=S` line.
    pub action_exit: Option<String>,
    /// Lines the action printed (between the action line and its exit line).
    pub action_output: Vec<String>,
    /// The whole console text of this boot.
    pub text: String,
}

impl BootRecord {
    /// The last `n` lines of this boot's console text.
    pub fn tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The image GRUB chose (`booting NAME (...)`).
    pub fn grub_image(&self) -> Option<&str> {
        self.decision
            .as_deref()?
            .strip_prefix("booting ")?
            .split_whitespace()
            .next()
    }

    /// The reason GRUB gave (inside the first parentheses).
    pub fn grub_reason(&self) -> Option<&str> {
        let d = self.decision.as_deref()?.strip_prefix("booting ")?;
        let open = d.find('(')?;
        let close = d[open..].find(')')? + open;
        Some(&d[open + 1..close])
    }

    /// Whether each mounted root was verified by dm-verity: the `verity=` word (`on`, `off`) of
    /// each mount step that succeeded, in order.
    pub fn verity(&self) -> Vec<&str> {
        self.steps
            .iter()
            .filter(|s| s.contains(" as root: mounted "))
            .filter_map(|s| field(s, "verity"))
            .collect()
    }

    /// How the loop device under the mounted root reaches the image file: the `io=` word
    /// (`direct`, `buffered`) of each mount step that succeeded, in order.
    pub fn loop_io(&self) -> Vec<&str> {
        self.steps
            .iter()
            .filter(|s| s.contains(" as root: mounted "))
            .filter_map(|s| field(s, "io"))
            .collect()
    }

    /// The hnroot-init line starting with `prefix`, if any.
    pub fn init_line(&self, prefix: &str) -> Option<&str> {
        self.init
            .iter()
            .find(|l| l.starts_with(prefix))
            .map(String::as_str)
    }
}

/// One plan hnroot-init carried out: its `record:` words and the `step i/n: ...` lines logged
/// under it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanRun {
    /// `plan=... steps=N mount=... uuid=... notes=...`.
    pub record: String,
    /// Its steps as logged, without `hnroot: `.
    pub steps: Vec<String>,
}

impl PlanRun {
    /// The number of steps its record announces.
    pub fn announced(&self) -> Option<usize> {
        field(&self.record, "steps")?.parse().ok()
    }
}

/// The value of `key` in a record of `key=value` words, if it has one.
pub fn field<'a>(record: &'a str, key: &str) -> Option<&'a str> {
    record
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// `(file name, code)` of a line `PREFIX.../NAME: not bootable (CODE): ...`, the name after the
/// last `/` (GRUB puts its device first).
fn refusal(line: &str) -> Option<(String, String)> {
    let (path, rest) = line.split_once(": not bootable (")?;
    let (code, _) = rest.split_once(')')?;
    let name = path.rsplit('/').next().unwrap_or(path);
    Some((name.to_string(), code.to_string()))
}

/// Prefixes that start a new console line in GRUB's phase (anything else after a `hnroot:`
/// line is that line wrapped at 80 columns by GRUB's console). `hnroot:` and `hnroot ` (menu
/// entries), not `hnroot` alone: a wrapped message can go on with a kernel argument such as
/// `hnroot.image=`.
const GRUB_LINE_STARTS: &[&str] = &[
    "hnroot:",
    "hnroot ",
    "error:",
    "BdsDxe",
    "Welcome to GRUB",
    "Booting",
    "EFI stub",
    "Loading",
    "GNU GRUB",
    "Use the",
    "Press enter",
    "Press 'e'",
    "The highlighted",
    "[",
    "*",
];

/// Split one boot's console text into a [`BootRecord`] (`end` and times are the caller's).
pub fn parse_boot(text: &str) -> BootRecord {
    let mut r = BootRecord {
        text: text.to_string(),
        ..BootRecord::default()
    };
    let kernel_at = text.find(KERNEL_START).unwrap_or(text.len());
    let (grub_part, kernel_part) = text.split_at(kernel_at);

    // GRUB: join wrapped lines back onto the `hnroot:`/`error:` line they belong to.
    let mut open = false;
    for line in grub_part.lines() {
        let starts_record = line.starts_with("hnroot: ") || line.starts_with("error: ");
        if starts_record {
            r.grub.push(line.trim_end().to_string());
            open = true;
            continue;
        }
        let continues = open
            && !line.trim().is_empty()
            && !line.starts_with(char::is_whitespace)
            && !GRUB_LINE_STARTS.iter().any(|p| line.starts_with(p));
        match r.grub.last_mut() {
            Some(last) if continues => {
                last.push(' ');
                last.push_str(line.trim_end());
            }
            _ => open = false,
        }
    }
    r.decision = r
        .grub
        .iter()
        .filter_map(|l| l.strip_prefix("hnroot: "))
        .find(|l| l.starts_with("booting ") || l.starts_with("nothing bootable"))
        .map(str::to_string);
    r.grub_record = r
        .grub
        .iter()
        .find_map(|l| l.strip_prefix("hnroot: decision: "))
        .map(str::to_string);
    if let Some(record) = &r.grub_record {
        let (decision, args) = record
            .split_once(" args=")
            .map_or((record.as_str(), ""), |(d, a)| (d, a));
        r.grub_decision = Some(decision.to_owned());
        r.grub_args = (!args.is_empty()).then(|| format!("args={args}"));
    }
    r.grub_refused = r
        .grub
        .iter()
        .filter_map(|l| l.strip_prefix("hnroot: "))
        .filter_map(refusal)
        .collect();

    let mut in_ls = false;
    let mut in_action = false;
    for line in kernel_part.lines() {
        if let Some(cmd) = line
            .split_once("Command line: ")
            .map(|(_, c)| c)
            .filter(|_| r.cmdline_image.is_none() && r.cmdline_uuid.is_none())
        {
            r.cmdline = Some(cmd.trim().to_string());
            for word in cmd.split_whitespace() {
                if let Some(v) = word.strip_prefix("hnroot.image=") {
                    r.cmdline_image = Some(v.to_string());
                }
                if let Some(v) = word.strip_prefix("hnroot.uuid=") {
                    r.cmdline_uuid = Some(v.to_string());
                }
            }
        }
        if in_action && !line.starts_with("hnroot-test: ") {
            if !line.starts_with('[') && !line.trim().is_empty() {
                r.action_output.push(line.trim_end().to_string());
            }
            continue;
        }
        if let Some(rest) = strip_timestamp(line).strip_prefix("hnroot: ") {
            let rest = rest.trim_end().to_string();
            // An older hnroot-init wrote every line twice (kernel echo and console).
            if r.init.last() == Some(&rest) {
                continue;
            }
            if let Some(plan) = rest.strip_prefix("plan: ") {
                let (head, notes) = match plan.split_once(": ") {
                    Some((h, n)) => (h, Some(n.to_string())),
                    None => (plan, None),
                };
                let mut words = head.split_whitespace();
                r.plan_kind = words.next().map(str::to_string);
                r.plan_steps = words
                    .next()
                    .and_then(|w| w.strip_prefix('('))
                    .and_then(|n| n.parse().ok());
                r.plan_notes = notes;
            } else if let Some(record) = rest.strip_prefix("record: ") {
                r.plans.push(PlanRun {
                    record: record.to_string(),
                    steps: Vec::new(),
                });
            } else if rest.starts_with("step ") {
                r.steps.push(rest.clone());
                if let Some(run) = r.plans.last_mut() {
                    run.steps.push(rest.clone());
                }
            } else if let Some(refused) = rest.strip_prefix("hostpart: ").and_then(refusal) {
                r.init_refused.push(refused);
            } else if let Some(f) = rest.strip_prefix("FATAL: ") {
                r.fatal.get_or_insert_with(|| f.to_string());
            }
            r.init.push(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("hnroot-test: ") {
            in_ls = rest == "ls /hostpart:";
            if let Some(b) = rest.strip_prefix("booted ") {
                for word in b.split_whitespace() {
                    if let Some(v) = word.strip_prefix("version=") {
                        r.version = Some(v.to_string());
                    }
                    if let Some(u) = word.strip_prefix("uuid=") {
                        r.uuid = Some(u.to_string());
                    }
                }
            } else if let Some(args) = rest.strip_prefix("args ") {
                if let Some((_, words)) = args.split_once(':') {
                    r.init_args = Some(words.split_whitespace().map(str::to_string).collect());
                }
            } else if let Some(img) = rest.strip_prefix("image ") {
                let mut words = img.split_whitespace();
                if let (Some(name), Some(uuid)) = (
                    words.next(),
                    words.next().and_then(|w| w.strip_prefix("uuid=")),
                ) {
                    r.images.push((name.to_string(), uuid.to_string()));
                }
            } else if is_action_exit(rest) {
                r.action_exit = Some(rest.to_string());
                in_action = false;
            } else if let Some(a) = rest.strip_prefix("action ") {
                r.action = a.split_once(": ").map(|(_, a)| a.to_string());
                in_action = true;
            }
            continue;
        }
        if in_ls && !line.trim().is_empty() && !line.starts_with('[') {
            r.ls_hostpart.push(line.trim_end().to_string());
        }
    }
    r
}

/// Whether a test init line (without `hnroot-test: `) is an action's exit line, `action N
/// exit=S` (an action's own text may hold ` exit=`).
fn is_action_exit(rest: &str) -> bool {
    let Some((n, status)) = rest
        .strip_prefix("action ")
        .and_then(|a| a.split_once(" exit="))
    else {
        return false;
    };
    !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
        && !status.is_empty()
        && status.bytes().all(|b| b.is_ascii_digit())
}

/// `line` without a leading kernel timestamp (`[    4.952313] `).
fn strip_timestamp(line: &str) -> &str {
    let Some(rest) = line.strip_prefix('[') else {
        return line;
    };
    match rest.split_once("] ") {
        Some((stamp, after))
            if !stamp.trim().is_empty()
                && stamp.trim().chars().all(|c| c.is_ascii_digit() || c == '.') =>
        {
            after
        }
        _ => line,
    }
}

/// One QEMU run over a scenario's disks, booting as often as the guest reboots.
#[derive(Debug)]
pub struct Session {
    /// Names the session in messages.
    pub name: String,
    vm: Vm,
    /// Offset in the cleaned log where the current boot began.
    boot_start: usize,
    last_end: Duration,
    boots: usize,
    markers: Vec<(String, End)>,
    end_res: Vec<(Regex, End)>,
}

/// The lines that end a boot of a real distribution under systemd: the kernel's own last words
/// of a reboot and a power-off (systemd stops everything first), a panic, hnroot-init's stops
/// and GRUB's rescue entry.
pub const SYSTEMD_END_MARKERS: &[(&str, End)] = &[
    (r"reboot: Restarting system", End::Reboot),
    (r"reboot: Power down", End::Poweroff),
    (r"Kernel panic - not syncing", End::Panic),
    (
        r"^(?:\[ *[0-9]+\.[0-9]+\] )?hnroot: stopped on purpose",
        End::Stopped,
    ),
    (
        r"^(?:\[ *[0-9]+\.[0-9]+\] )?hnroot: emergency shell on the console",
        End::Stopped,
    ),
    (
        r"^(?:\[ *[0-9]+\.[0-9]+\] )?hnroot: after failure: recorded image .* rebooting",
        End::AfterFailureReboot,
    ),
    (r"\*hnroot rescue: stay in GRUB", End::GrubRescue),
    (r"^hnroot: press c for a GRUB shell", End::GrubRescue),
];

impl Session {
    /// Start QEMU on `disks` (the first is the boot disk), rebooting in place; boots end on
    /// the test init's lines ([`END_MARKERS`]).
    pub fn start(name: &str, disks: &[&Path], run_dir: &Path) -> Result<Session> {
        Session::start_vm(VmSpec::new(name, disks, run_dir))
    }

    /// Start QEMU as `spec` says (a network, keys on the console), rebooting in place.
    pub fn start_vm(spec: VmSpec) -> Result<Session> {
        Session::start_with(spec, END_MARKERS)
    }

    /// Start QEMU as `spec` says (rebooting in place), boots ending on `markers`.
    pub fn start_with(mut spec: VmSpec, markers: &[(&str, End)]) -> Result<Session> {
        spec.no_reboot = false;
        let vm = Vm::start(&spec)?;
        let mut end_res = Vec::new();
        for (re, end) in markers {
            end_res.push((Regex::new(&format!("(?m){re}"))?, *end));
        }
        Ok(Session {
            name: spec.name.clone(),
            vm,
            boot_start: 0,
            last_end: Duration::ZERO,
            boots: 0,
            markers: markers
                .iter()
                .map(|(re, end)| ((*re).to_owned(), *end))
                .collect(),
            end_res,
        })
    }

    /// Wait (at most `timeout`) for the current boot to end and return it.
    pub fn next_boot(&mut self, timeout: Duration) -> Result<BootRecord> {
        let alternatives: Vec<String> = self
            .markers
            .iter()
            .map(|(re, _)| format!("(?:{re})"))
            .collect();
        let any_end = Regex::new(&format!("(?m){}", alternatives.join("|")))?;
        let hit = self.vm.wait_for(&any_end, timeout).with_context(|| {
            format!(
                "{}: boot {} did not end (reboot, poweroff, panic, stop or GRUB rescue) \
                     within {:.0} s",
                self.name,
                self.boots + 1,
                timeout.as_secs_f64()
            )
        })?;
        let end = self
            .end_res
            .iter()
            .find(|(re, _)| re.is_match(&hit.line))
            .map(|(_, e)| *e);
        Ok(self.finish_boot(&hit, end))
    }

    fn finish_boot(&mut self, hit: &Hit, end: Option<End>) -> BootRecord {
        let text = self.vm.log_since(self.boot_start);
        let upto = hit.end.saturating_sub(self.boot_start);
        let line_end = text[upto.min(text.len())..]
            .find('\n')
            .map_or(text.len(), |i| upto + i);
        let mut record = parse_boot(&text[..line_end.min(text.len())]);
        self.boots += 1;
        record.index = self.boots;
        record.end = end;
        record.ended_at = hit.at;
        record.took = hit.at.saturating_sub(self.last_end);
        self.last_end = hit.at;
        self.boot_start += line_end;
        record
    }

    /// At GRUB's menu in the current boot, do what an operator at the console does to boot
    /// once with more kernel parameters: `e` on the chosen entry, down to its line `line`
    /// (0-based, as the editor shows the entry), to the end of it, type ` words`, and boot
    /// the edited entry with Ctrl-X. Fails if the menu or the editor does not show within
    /// `timeout`; the keys must reach the menu before its countdown ends (grub.cfg's
    /// `timeout`), which the kernel's command line then shows.
    pub fn append_at_grub_editor(
        &mut self,
        line: usize,
        words: &str,
        timeout: Duration,
    ) -> Result<()> {
        if words.bytes().any(|b| !(b' '..=b'~').contains(&b)) {
            anyhow::bail!(
                "{}: only printable ASCII can be typed: {words:?}",
                self.name
            );
        }
        let menu = Regex::new(GRUB_COUNTDOWN)?;
        self.vm
            .wait_for(&menu, timeout)
            .with_context(|| format!("{}: GRUB's menu did not show", self.name))?;
        self.vm.type_keys(b"e")?;
        let editor = Regex::new(GRUB_EDITOR)?;
        self.vm.wait_for(&editor, timeout).with_context(|| {
            format!(
                "{}: GRUB's entry editor did not open (was `e` typed after the menu's countdown ran out?)",
                self.name
            )
        })?;
        let mut keys = vec![CTRL_N; line];
        keys.push(CTRL_E);
        keys.push(b' ');
        keys.extend_from_slice(words.as_bytes());
        keys.push(CTRL_X);
        self.vm.type_keys(&keys)
    }

    /// Wait (at most `timeout`) for a line matching `re` in the current boot at the console's
    /// usual pace (every 20 ms), without ending the boot: when it appeared, on the host clock
    /// since QEMU started.
    pub fn wait_line_at_pace(&mut self, re: &Regex, timeout: Duration) -> Result<Hit> {
        self.vm.wait_for(re, timeout)
    }

    /// Wait (at most `timeout`, fast polling) for `re` on the console without ending the
    /// current boot; the hit says when (time since QEMU started).
    pub fn wait_line(&mut self, re: &Regex, timeout: Duration) -> Result<Hit> {
        self.vm.set_poll(Duration::from_millis(1));
        self.vm.wait_for(re, timeout)
    }

    /// Wait for `re` in the current boot (fast polling), let `delay` pass, cut the power.
    /// Returns the boot up to the cut and the hit.
    pub fn cut_power(
        &mut self,
        re: &Regex,
        delay: Duration,
        timeout: Duration,
    ) -> Result<(BootRecord, Hit)> {
        self.vm.set_poll(Duration::from_millis(1));
        let hit = self.vm.wait_for(re, timeout)?;
        std::thread::sleep(delay);
        self.vm.kill()?;
        // Whatever reached the serial log before the kill belongs to this boot.
        let text = self.vm.log_since(self.boot_start);
        let mut record = parse_boot(&text);
        self.boots += 1;
        record.index = self.boots;
        record.end = Some(End::PowerCut);
        record.ended_at = self.vm.elapsed();
        record.took = record.ended_at.saturating_sub(self.last_end);
        Ok((record, hit))
    }

    /// After the last boot: wait for QEMU to exit on its own (the guest powered off).
    pub fn wait_poweroff(&mut self, timeout: Duration) -> Result<()> {
        let status = self.vm.wait_exit(timeout)?;
        if !status.success() {
            anyhow::bail!(
                "{}: QEMU exited with {status} after the guest powered off\n--- serial tail ---\n{}",
                self.name,
                self.vm.tail(TAIL_LINES)
            );
        }
        Ok(())
    }

    /// Stop QEMU (a guest that stays in GRUB or stopped on purpose never exits by itself).
    pub fn kill(&mut self) -> Result<()> {
        self.vm.kill()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOT: &str = "BdsDxe: starting Boot0001 \"UEFI Misc Device\"
Welcome to GRUB!

hnroot: (hd0,gpt2)/hn-root-old.img: not bootable (no-filesystem): no ext2/3/4,
XFS or btrfs filesystem in it (garbage, empty, or not an image)
hnroot: booting hn-root-new.img (update, trial 1 of 3); fallback hn-root.img; no boot
state recorded: trial counting is off until one is written
hnroot: decision: reason=update image=hn-root-new.img
uuid=0123 try=1/3 fallbacks=hn-root.img
notes=state-absent write=trial args=defaults,image refused=-
error: no suitable video mode found.
Booting in blind mode
[    0.000000] Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org)
[    0.000000] Command line: BOOT_IMAGE=(loop)/boot/kernel hnroot.image=hn-root-new.img hnroot.uuid=0123 console=ttyS0
[    1.000000] hnroot: hostpart: hn-root-old.img: not bootable (no-filesystem): no ext2/3/4 (garbage)
[    1.000000] hnroot: plan: update (5 steps)
hnroot: plan: update (5 steps)
[    1.000000] hnroot: record: plan=update steps=5 mount=hn-root.img uuid=0123 notes=-
[    1.100000] hnroot: step 1/5: rename hn-root.img -> hn-root-old.img: FAILED: Operation not permitted
[    1.100000] hnroot: record: plan=update steps=1 mount=hn-root-new.img uuid=0123 notes=-
hnroot: step 1/1: mount hn-root-new.img (UUID 0123) as root: mounted /dev/loop0 (ext4, UUID=0123) read-only at /run/hnroot/image, root at /newroot (writable layer /hostpart/data/hnroot/overlay/0123/upper) verity=off io=direct
hnroot-test: booted version=v2 uuid=0123
hnroot-test: args 1: single
hnroot-test: ls /hostpart:
-rw-r--r--    1 0        0         33554432 Jan  1 00:00 hn-root.img
hnroot-test: image hn-root.img uuid=0123 size=33554432
hnroot-test: action 2: hnroot mark-good; echo \"e2e: exit=$?\"
hnroot: marked hn-root.img good: committed (good 0123)
e2e: exit=0
hnroot-test: action 2 exit=0
hnroot-test: rebooting
";

    /// A GRUB message wrapped at 80 columns whose next line starts with a kernel argument
    /// (`hnroot.image=`): still one message (a serial log of the e2e kernel-args scenario).
    #[test]
    fn a_wrapped_message_going_on_with_hnroot_words_is_one_line() {
        let text = "BdsDxe: starting Boot0001 \"UEFI Misc Device\" from PciRoot(0x0)/Pci(0x1,0x0)
hnroot: booting hn-root.img (normal); no fallback; kernel argument
hnroot.image= from the image (usr/lib/hnroot/kernel-args) refused: hnroot sets
the root, its init and hnroot.* itself
hnroot: decision: reason=normal image=hn-root.img
uuid=0123 try=- fallbacks=- notes=- write=-
args=defaults,image,host refused=image:hnroot.image
hnroot next image:
";
        let r = parse_boot(text);
        let said = r.decision.as_deref().unwrap_or("");
        assert!(
            said.ends_with(
                "kernel argument hnroot.image= from the image (usr/lib/hnroot/kernel-args) \
                 refused: hnroot sets the root, its init and hnroot.* itself"
            ),
            "{said}"
        );
        assert!(r
            .grub
            .iter()
            .any(|l| l.ends_with("refused=image:hnroot.image")));
    }

    #[test]
    fn end_markers_classify_the_lines_that_end_a_boot() {
        let classify = |line: &str| {
            END_MARKERS
                .iter()
                .find(|(re, _)| Regex::new(&format!("(?m){re}")).unwrap().is_match(line))
                .map(|(_, e)| *e)
        };
        assert_eq!(classify("hnroot-test: rebooting"), Some(End::Reboot));
        assert_eq!(classify("hnroot-test: powering off"), Some(End::Poweroff));
        assert_eq!(
            classify("[   12.5] Kernel panic - not syncing: Attempted to kill init!"),
            Some(End::Panic)
        );
        assert_eq!(
            classify(
                "      before booting or `c' for a command-line.   *hnroot rescue: stay in GRUB"
            ),
            Some(End::GrubRescue)
        );
        assert_eq!(classify("   hnroot rescue: stay in GRUB"), None);
        assert_eq!(
            classify("hnroot: after failure: recorded image 0123 as failed; rebooting so GRUB boots hn-root-old.img (UUID 4567)"),
            Some(End::AfterFailureReboot)
        );
        assert_eq!(classify("hnroot-test: powering off -f returned"), None);
        assert_eq!(
            classify("[    9.25] hnroot: stopped on purpose: no emergency shell"),
            Some(End::Stopped)
        );
        assert!(Regex::new(&format!("(?m){INIT_LINE}plan: "))
            .unwrap()
            .is_match("x\n[    4.9] hnroot: plan: update (5 steps)\n"));
    }

    #[test]
    fn a_boot_is_read_off_the_console() {
        let r = parse_boot(BOOT);
        assert_eq!(
            r.decision.as_deref(),
            Some(
                "booting hn-root-new.img (update, trial 1 of 3); fallback hn-root.img; no boot \
                 state recorded: trial counting is off until one is written"
            )
        );
        assert_eq!(r.grub_image(), Some("hn-root-new.img"));
        assert_eq!(r.grub_reason(), Some("update, trial 1 of 3"));
        assert_eq!(r.grub.len(), 4, "{:?}", r.grub);
        let record = r.grub_record.as_deref().unwrap();
        assert_eq!(
            record,
            "reason=update image=hn-root-new.img uuid=0123 try=1/3 fallbacks=hn-root.img \
             notes=state-absent write=trial args=defaults,image refused=-"
        );
        assert_eq!(
            r.grub_decision.as_deref(),
            Some(
                "reason=update image=hn-root-new.img uuid=0123 try=1/3 fallbacks=hn-root.img \
                 notes=state-absent write=trial"
            )
        );
        assert_eq!(
            r.grub_args.as_deref(),
            Some("args=defaults,image refused=-")
        );
        assert_eq!(field(record, "try"), Some("1/3"));
        assert_eq!(field(record, "write"), Some("trial"));
        assert_eq!(field(record, "nothing"), None);
        let refused = [("hn-root-old.img".to_string(), "no-filesystem".to_string())];
        assert_eq!(r.grub_refused, refused);
        assert_eq!(r.init_refused, refused);
        assert_eq!(r.plans.len(), 2);
        assert_eq!(r.plans[0].announced(), Some(5));
        assert_eq!(r.plans[0].steps.len(), 1);
        assert!(r.plans[0].steps[0].contains(": FAILED: "));
        assert_eq!(field(&r.plans[1].record, "mount"), Some("hn-root-new.img"));
        assert_eq!(r.plans[1].steps.len(), 1);
        assert_eq!(r.init_args, Some(vec!["single".to_string()]));
        assert_eq!(r.cmdline_image.as_deref(), Some("hn-root-new.img"));
        assert_eq!(r.cmdline_uuid.as_deref(), Some("0123"));
        assert_eq!(r.plan_kind.as_deref(), Some("update"));
        assert_eq!(r.plan_steps, Some(5));
        assert_eq!(r.steps.len(), 2);
        assert_eq!(r.loop_io(), ["direct"], "the failed step mounted nothing");
        assert_eq!(r.verity(), ["off"]);
        assert!(r.cmdline.as_deref().unwrap().ends_with("console=ttyS0"));
        assert_eq!(strip_timestamp("[    1.1] hnroot: x"), "hnroot: x");
        assert_eq!(strip_timestamp("[hnroot] x"), "[hnroot] x");
        assert_eq!(r.version.as_deref(), Some("v2"));
        assert_eq!(r.images, [("hn-root.img".to_string(), "0123".to_string())]);
        assert_eq!(r.ls_hostpart.len(), 1);
        assert_eq!(
            r.action.as_deref(),
            Some("hnroot mark-good; echo \"e2e: exit=$?\"")
        );
        assert_eq!(
            r.action_output,
            [
                "hnroot: marked hn-root.img good: committed (good 0123)",
                "e2e: exit=0"
            ]
        );
        assert_eq!(r.action_exit.as_deref(), Some("action 2 exit=0"));
        // The CLI's own `hnroot:` lines belong to the action, not to hnroot-init.
        assert!(!r.init.iter().any(|l| l.starts_with("marked")));
    }
}
