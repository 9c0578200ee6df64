//! `hnroot metrics`: this server's hnroot state in the Prometheus text format, for
//! node_exporter's textfile collector (`hnroot-metrics.timer` writes it to
//! `/var/lib/prometheus/node-exporter/hnroot.prom` every minute). It observes what `hnroot
//! status` and `hnroot history` observe (the images and their versions, the boot state, the
//! running image, the history ring, the last stage's record) and prints numbers; it decides
//! nothing and changes nothing on hostpart. The output file is replaced by a rename, so the
//! collector never reads half of it.
//!
//! Counters (`*_total`) count the records of the history ring (1024 records): they only grow
//! while the ring has not wrapped, which is years of ordinary updates.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use hnroot_core::bootstate::{BootState, StateSeen};
use hnroot_core::cmdline;
use hnroot_core::decide::ReasonCode;
use hnroot_core::history::{Event, Record};
use hnroot_core::layout::{self, RECORDS_DIR};
use hnroot_core::loader::{self, Loader};
use hnroot_core::name::ImageName;
use hnroot_core::plan::PlanKind;
use hnroot_core::verdict::Verdict;
use hnroot_linux::esp_loader::EspBoot;
use hnroot_linux::hostpart::{Hostpart, HostpartView};
use hnroot_linux::{fsat, history_file};

use crate::locate::{self, Location};
use crate::warn;

/// The last stage's record, in [`RECORDS_DIR`]: `key value` lines written by `hnroot stage`
/// when it published an image.
pub const LAST_STAGE_FILE: &str = "last-stage";
/// Bound on the last stage's record when read.
const LAST_STAGE_MAX: usize = 4096;

/// Options of `hnroot metrics`.
#[derive(clap::Args, Debug)]
pub struct MetricsArgs {
    #[command(flatten)]
    loc: Location,
    /// Write the metrics to FILE (through a temporary file beside it and a rename), e.g.
    /// /var/lib/prometheus/node-exporter/hnroot.prom; default: standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// The mounted ESP whose loader's version record is reported.
    #[arg(long, value_name = "DIR", default_value = layout::ESP_MOUNT)]
    esp: PathBuf,
}

/// What `hnroot stage` records about its last published copy.
#[derive(Debug, Clone, PartialEq)]
pub struct LastStage {
    /// When it finished, seconds since 1970.
    pub time: u64,
    /// Bytes read from the source by this run (a resumed stage counts only what it fetched).
    pub bytes: u64,
    /// How long the whole stage took, in seconds.
    pub seconds: f64,
}

impl LastStage {
    /// The record as written.
    pub fn encode(&self) -> String {
        format!(
            "time {}\nbytes {}\nseconds {:.3}\n",
            self.time, self.bytes, self.seconds
        )
    }

    /// Parse a record; `None` unless every field is there and a number.
    pub fn parse(text: &str) -> Option<LastStage> {
        let field = |key: &str| {
            text.lines()
                .filter_map(|l| l.split_once(' '))
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.trim())
        };
        Some(LastStage {
            time: field("time")?.parse().ok()?,
            bytes: field("bytes")?.parse().ok()?,
            seconds: field("seconds")?
                .parse()
                .ok()
                .filter(|s: &f64| s.is_finite())?,
        })
    }
}

/// Record the stage just published (called by `hnroot stage`); a failure is said, never fatal.
pub fn record_stage(hostpart: &Hostpart, stage: &LastStage) {
    let written = hostpart
        .make_dirs(RECORDS_DIR)
        .map_err(|e| e.error)
        .and_then(|dir| {
            fsat::write_file(
                &dir,
                LAST_STAGE_FILE,
                stage.encode().as_bytes(),
                0o644,
                true,
            )
        });
    if let Err(e) = written {
        warn!(
            "hnroot: the stage's record for `hnroot metrics` could not be written ({e}); the \
             image is staged"
        );
    }
}

fn read_last_stage(hostpart: &Hostpart) -> Option<LastStage> {
    let dir = hostpart.open_dirs(RECORDS_DIR).ok()??;
    let (bytes, _) = fsat::read_file(&dir, LAST_STAGE_FILE, LAST_STAGE_MAX).ok()?;
    LastStage::parse(&String::from_utf8_lossy(&bytes))
}

/// One image as the metrics show it.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageFacts {
    /// Its file on hostpart.
    pub file: &'static str,
    /// Its filesystem UUID.
    pub uuid: String,
    /// `IMAGE_ID IMAGE_VERSION` (or `PRETTY_NAME`), empty when it has none.
    pub version: String,
    /// `IMAGE_VERSION` alone, empty when it has none.
    pub image_version: String,
}

/// Everything one snapshot holds: the observation, reduced to what is printed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    /// Every bootable image on hostpart.
    pub images: Vec<ImageFacts>,
    /// The running image (by the UUID GRUB passed), where it now lies.
    pub running: Option<ImageFacts>,
    /// `hn-root-new.img`.
    pub staged: Option<ImageFacts>,
    /// `committed`, `trial`, `absent` or `corrupt`.
    pub boot_state: &'static str,
    /// The trial's tries left and in all.
    pub tries: Option<(u8, u8)>,
    /// The running image is the one the boot state records as good.
    pub running_committed: bool,
    /// Boots GRUB counted since the last healthy one (`mark-good`), as the boot state says.
    pub unhealthy_boots: u8,
    /// `system-revert` is there.
    pub revert_requested: bool,
    /// Partial files of interrupted stages.
    pub partials: usize,
    /// The history ring's records.
    pub history: Vec<Record>,
    /// Damaged history records skipped.
    pub history_damaged: usize,
    /// History records a newer hnroot wrote, skipped (not damage).
    pub history_newer: usize,
    /// The last stage's record.
    pub last_stage: Option<LastStage>,
    /// The loader on the ESP, as its version record says.
    pub loader: EspLoader,
    /// The version floor on hostpart.
    pub floor: FloorMetric,
    /// How the running root is verified (dm-verity's state), when hnroot booted it.
    pub root_verity: Option<hnroot_core::seal::RootVerity>,
    /// hostpart's space as the core judges it (`None`: `statvfs` failed).
    pub space: Option<hnroot_core::space::Space>,
}

/// The version floor as `hnroot_version_floor_info` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FloorMetric {
    /// No floor file: no sealed image committed yet.
    #[default]
    None,
    /// The floor.
    Set(String),
    /// A floor file that cannot be read (every stage is refused).
    Unreadable,
}

impl FloorMetric {
    fn of(f: &hnroot_core::floor::FloorSeen) -> FloorMetric {
        match f {
            hnroot_core::floor::FloorSeen::None => FloorMetric::None,
            hnroot_core::floor::FloorSeen::Set(v) => FloorMetric::Set(v.to_string()),
            hnroot_core::floor::FloorSeen::Unreadable => FloorMetric::Unreadable,
        }
    }
}

/// The ESP's loader as `hnroot_loader_info` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspLoader {
    /// `recorded`, `unrecorded` (a loader without hnroot's record), `absent` or `unreadable`.
    pub state: &'static str,
    /// The hnroot that built it (empty unless recorded).
    pub hnroot: String,
    /// The Debian build of its GRUB (empty unless recorded).
    pub grub: String,
}

impl Default for EspLoader {
    fn default() -> EspLoader {
        EspLoader::of(&Loader::Absent)
    }
}

impl EspLoader {
    /// What [`loader::identify`] made of the loader's bytes.
    pub fn of(l: &Loader<'_>) -> EspLoader {
        let (state, hnroot, grub) = match l {
            Loader::Recorded(r) => ("recorded", r.hnroot.to_string(), r.grub.to_owned()),
            Loader::Unrecorded => ("unrecorded", String::new(), String::new()),
            Loader::Absent => ("absent", String::new(), String::new()),
            Loader::Unreadable => ("unreadable", String::new(), String::new()),
        };
        EspLoader {
            state,
            hnroot,
            grub,
        }
    }

    /// Read the loader of the ESP mounted at `esp`; an ESP that cannot be read is `unreadable`.
    fn read(esp: &Path) -> EspLoader {
        match EspBoot::open(esp, false).and_then(|b| b.read_loader()) {
            Ok(bytes) => EspLoader::of(&loader::identify(bytes.as_deref())),
            Err(_) => EspLoader::of(&Loader::Unreadable),
        }
    }
}

/// What the history ring says, counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HistoryCounts {
    /// Boots GRUB made as an automatic rollback (a trial used up).
    pub rollbacks: u64,
    /// Boots GRUB made as a manual revert (`hnroot revert`).
    pub reverts: u64,
    /// Failed health checks (`hnroot health-failed`).
    pub health_failures: u64,
    /// Boots that switched images (update, revert, rollback, promote).
    pub switches: u64,
    /// When the last of them happened (0: unknown or none).
    pub last_switch: u64,
}

/// Count the ring's records.
pub fn count(history: &[Record]) -> HistoryCounts {
    let mut c = HistoryCounts::default();
    for r in history {
        match r.event {
            Event::Boot => {
                if r.reason == ReasonCode::AutomaticRollback {
                    c.rollbacks += 1;
                }
                if r.reason == ReasonCode::ManualRevert {
                    c.reverts += 1;
                }
                if r.plan.is_some_and(PlanKind::switches_image) {
                    c.switches += 1;
                    c.last_switch = c.last_switch.max(r.time);
                }
            }
            Event::HealthFailed => c.health_failures += 1,
            _ => {}
        }
    }
    c
}

/// A label value as the text format wants it: backslash, double quote and newline escaped.
fn label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The text format, one family at a time.
struct Writer(String);

impl Writer {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let _ = write!(self.0, "{name}");
        if !labels.is_empty() {
            let inner: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", label_value(v)))
                .collect();
            let _ = write!(self.0, "{{{}}}", inner.join(","));
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn gauge(&mut self, name: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "counter", help);
        self.sample(name, &[], value);
    }

    fn info(&mut self, name: &str, help: &str, image: Option<&ImageFacts>) {
        self.family(name, "gauge", help);
        if let Some(i) = image {
            self.image(name, i);
        }
    }

    /// One image's sample of an info family.
    fn image(&mut self, name: &str, i: &ImageFacts) {
        self.sample(
            name,
            &[
                ("file", i.file),
                ("uuid", &i.uuid),
                ("version", &i.version),
                ("image_version", &i.image_version),
            ],
            1,
        );
    }
}

/// The snapshot in the text format node_exporter's textfile collector reads; `now` is seconds
/// since 1970.
pub fn render(s: &Snapshot, now: u64) -> String {
    let mut w = Writer(String::new());
    render_images(&mut w, s);
    render_boot(&mut w, s);
    render_history(&mut w, s, now);
    render_stage_and_loader(&mut w, s);
    w.0
}

/// The images: running, staged, every bootable one.
fn render_images(w: &mut Writer, s: &Snapshot) {
    w.info(
        "hnroot_running_image_info",
        "The running root image (1): its file on hostpart, UUID and version.",
        s.running.as_ref(),
    );
    w.info(
        "hnroot_staged_image_info",
        "The image staged as hn-root-new.img for the next boot (1), if any.",
        s.staged.as_ref(),
    );
    w.gauge(
        "hnroot_staged",
        "Whether an image is staged for the next boot.",
        u8::from(s.staged.is_some()),
    );
    w.family(
        "hnroot_image_info",
        "gauge",
        "Every bootable image on hostpart (1 each), with its version.",
    );
    for i in &s.images {
        w.image("hnroot_image_info", i);
    }
}

/// The boot state, the trial, a pending revert, interrupted stages.
fn render_boot(w: &mut Writer, s: &Snapshot) {
    w.family(
        "hnroot_boot_state",
        "gauge",
        "The boot state GRUB counts trials in: 1 for the current state.",
    );
    for state in ["committed", "trial", "absent", "corrupt"] {
        w.sample(
            "hnroot_boot_state",
            &[("state", state)],
            u8::from(s.boot_state == state),
        );
    }
    w.gauge(
        "hnroot_trial",
        "Whether an image is on trial (not yet committed by its health checks).",
        u8::from(s.tries.is_some()),
    );
    w.gauge(
        "hnroot_trial_tries_left",
        "Boots the image on trial has left before GRUB rolls back (0 when none is on trial).",
        s.tries.map_or(0, |t| t.0),
    );
    w.gauge(
        "hnroot_unhealthy_boots",
        "Boots GRUB counted since the last one that reached healthy (mark-good): after the boot \
         limit the old image boots, then GRUB waits before each boot.",
        s.unhealthy_boots,
    );
    w.gauge(
        "hnroot_running_committed",
        "Whether the running image is the one the boot state records as good.",
        u8::from(s.running_committed),
    );
    w.gauge(
        "hnroot_revert_requested",
        "Whether system-revert asks the next boot to revert.",
        u8::from(s.revert_requested),
    );
    w.gauge(
        "hnroot_partial_stages",
        "Partial files interrupted stages left on hostpart.",
        s.partials,
    );
    if let Some(space) = s.space {
        w.gauge(
            "hnroot_hostpart_free_bytes",
            "Bytes of hostpart available to a writer (statvfs).",
            space.free(),
        );
        w.gauge(
            "hnroot_hostpart_size_bytes",
            "Size of hostpart's filesystem in bytes.",
            space.total(),
        );
        w.gauge(
            "hnroot_hostpart_full",
            "Whether hostpart is full (less than 1 MiB to a writer): writable layers, the boot \
             history and stages fail; the judgement hnroot status and hnroot-init say.",
            u8::from(space.is_full()),
        );
    }
}

/// Counted from the history ring.
fn render_history(w: &mut Writer, s: &Snapshot, now: u64) {
    let c = count(&s.history);
    w.counter(
        "hnroot_rollbacks_total",
        "Automatic rollbacks (a trial used up) in hnroot's history.",
        c.rollbacks,
    );
    w.counter(
        "hnroot_reverts_total",
        "Manual reverts (hnroot revert) booted, in hnroot's history.",
        c.reverts,
    );
    w.counter(
        "hnroot_health_check_failures_total",
        "Failed health checks (hnroot health-failed) in hnroot's history.",
        c.health_failures,
    );
    w.counter(
        "hnroot_switches_total",
        "Boots that switched the root image (update, revert, rollback) in hnroot's history.",
        c.switches,
    );
    w.gauge(
        "hnroot_history_damaged_records",
        "History records skipped as damaged (torn writes).",
        s.history_damaged,
    );
    w.gauge(
        "hnroot_history_newer_records",
        "History records a newer hnroot wrote, with events or reasons this one does not know: \
         skipped, not damage.",
        s.history_newer,
    );
    if c.last_switch > 0 {
        w.gauge(
            "hnroot_last_switch_timestamp_seconds",
            "When the root image last switched, seconds since 1970.",
            c.last_switch,
        );
        w.gauge(
            "hnroot_seconds_since_last_switch",
            "Seconds from the last switch of the root image to when this file was written.",
            now.saturating_sub(c.last_switch),
        );
    }
}

/// The last stage's record and the ESP's loader.
fn render_stage_and_loader(w: &mut Writer, s: &Snapshot) {
    if let Some(l) = &s.last_stage {
        w.gauge(
            "hnroot_last_stage_timestamp_seconds",
            "When the last hnroot stage published an image, seconds since 1970.",
            l.time,
        );
        w.gauge(
            "hnroot_last_stage_bytes",
            "Bytes the last hnroot stage read from its source.",
            l.bytes,
        );
        w.gauge(
            "hnroot_last_stage_duration_seconds",
            "How long the last hnroot stage took.",
            format!("{:.3}", l.seconds),
        );
    }
    w.family(
        "hnroot_loader_info",
        "gauge",
        "The loader on the ESP as its version record says (state recorded, unrecorded, absent or \
         unreadable; the hnroot and GRUB that built it) beside this system's hnroot (1).",
    );
    w.sample(
        "hnroot_loader_info",
        &[
            ("hnroot_version", env!("CARGO_PKG_VERSION")),
            ("state", s.loader.state),
            ("loader_hnroot_version", &s.loader.hnroot),
            ("grub_build", &s.loader.grub),
        ],
        1,
    );
    let (state, version) = match &s.floor {
        FloorMetric::None => ("none", ""),
        FloorMetric::Set(v) => ("set", v.as_str()),
        FloorMetric::Unreadable => ("unreadable", ""),
    };
    w.family(
        "hnroot_version_floor_info",
        "gauge",
        "The version floor: the newest sealed version committed here (state set, none or \
         unreadable; hnroot stage refuses older images) (1).",
    );
    w.sample(
        "hnroot_version_floor_info",
        &[("state", state), ("version", version)],
        1,
    );
    if let Some(v) = s.root_verity {
        w.family(
            "hnroot_root_verity_info",
            "gauge",
            "How the running root is verified: off (not sealed), verified (dm-verity, no corrupt \
             block read), corrupt (dm-verity refused a block: the image changed after sealing), \
             missing (a root hash and no dm-verity device) (1).",
        );
        w.sample("hnroot_root_verity_info", &[("state", v.code())], 1);
    }
}

fn facts(view: &HostpartView, name: ImageName) -> Option<ImageFacts> {
    let j = view.image(name)?;
    let Verdict::Bootable(b) = &j.verdict else {
        return None;
    };
    let os = j.os_release.as_ref();
    Some(ImageFacts {
        file: name.file_name(),
        uuid: b.uuid.to_string(),
        version: os.and_then(|o| o.version()).unwrap_or_default(),
        image_version: os.and_then(|o| o.image_version.clone()).unwrap_or_default(),
    })
}

/// Observe this machine.
pub fn gather(loc: &Location, esp: &Path) -> Result<Snapshot> {
    let cmdline_text = locate::running_cmdline();
    let params = cmdline::parse(&cmdline_text);
    let hostpart = locate::open_hostpart(loc)?;
    let view = hostpart.observe()?;
    let (state, _) = locate::read_state(loc, &params);
    let obs = view.observation(state);
    let running_at = params
        .booted
        .and_then(|b| obs.find(b.uuid, &ImageName::ALL));
    let (boot_state, tries) = match state {
        StateSeen::Absent => ("absent", None),
        StateSeen::Corrupt => ("corrupt", None),
        StateSeen::Valid(BootState::Committed { .. }) => ("committed", None),
        StateSeen::Valid(BootState::Trial(t)) => ("trial", Some((t.tries.left(), t.tries.total()))),
    };
    let unhealthy_boots = match state {
        StateSeen::Valid(s) => s.counted_boots().boots(),
        _ => 0,
    };
    let running_committed = match (params.booted, state) {
        (Some(b), StateSeen::Valid(BootState::Committed { good, .. })) => b.uuid == good,
        _ => false,
    };
    let read = history_file::read(&hostpart)
        .with_context(|| format!("reading the history on {}", hostpart.path().display()))?;
    Ok(Snapshot {
        images: ImageName::ALL
            .into_iter()
            .filter_map(|n| facts(&view, n))
            .collect(),
        running: running_at.and_then(|n| facts(&view, n)),
        staged: facts(&view, ImageName::New),
        boot_state,
        tries,
        running_committed,
        unhealthy_boots,
        revert_requested: view.revert_requested,
        partials: view.partials.len(),
        history: read.records,
        history_damaged: read.damaged,
        history_newer: read.newer,
        last_stage: read_last_stage(&hostpart),
        loader: EspLoader::read(esp),
        floor: FloorMetric::of(&hnroot_linux::seal::read_floor(&hostpart)),
        root_verity: params
            .booted
            .map(|_| crate::cmd::status::running_verity(params.root_hash.is_some())),
        space: hostpart.space().ok(),
    })
}

/// Write `text` to `out` through a temporary file in the same directory and a rename.
fn write_out(out: &Path, text: &str) -> Result<()> {
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = out
        .file_name()
        .context("--out names no file")?
        .to_string_lossy();
    let temp = dir.join(format!(".{name}.hnroot-tmp"));
    std::fs::write(&temp, text).with_context(|| format!("cannot write {}", temp.display()))?;
    if let Err(e) = std::fs::rename(&temp, out) {
        let _ = std::fs::remove_file(&temp);
        return Err(e)
            .with_context(|| format!("cannot rename {} to {}", temp.display(), out.display()));
    }
    Ok(())
}

fn run(args: &MetricsArgs) -> Result<()> {
    let snapshot = gather(&args.loc, &args.esp)?;
    let text = render(&snapshot, history_file::now());
    match &args.out {
        Some(out) => write_out(out, &text),
        None => {
            crate::say!("{}", text.trim_end());
            Ok(())
        }
    }
}

/// `hnroot metrics`.
pub fn metrics(args: &MetricsArgs) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            warn!("hnroot: metrics: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot(sequence: u64, time: u64, reason: ReasonCode, plan: PlanKind) -> Record {
        Record {
            sequence,
            time,
            event: Event::Boot,
            reason,
            plan: Some(plan),
            image: Some(ImageName::Current),
            now_at: Some(ImageName::Current),
            uuid: None,
            tries: None,
            good: None,
            via: None,
        }
    }

    #[test]
    fn the_history_is_counted_by_its_codes() {
        let mut failed = boot(4, 400, ReasonCode::Unknown, PlanKind::Normal);
        failed.event = Event::HealthFailed;
        failed.plan = None;
        let history = [
            boot(1, 100, ReasonCode::Normal, PlanKind::Normal),
            boot(2, 200, ReasonCode::Update, PlanKind::Update),
            boot(3, 300, ReasonCode::Trial, PlanKind::Normal),
            failed,
            boot(5, 500, ReasonCode::AutomaticRollback, PlanKind::Rollback),
            boot(6, 600, ReasonCode::ManualRevert, PlanKind::Revert),
            boot(7, 700, ReasonCode::Normal, PlanKind::Normal),
        ];
        assert_eq!(
            count(&history),
            HistoryCounts {
                rollbacks: 1,
                reverts: 1,
                health_failures: 1,
                switches: 3,
                last_switch: 600
            }
        );
        assert_eq!(count(&[]), HistoryCounts::default());
    }

    #[test]
    fn the_last_stage_record_round_trips_and_refuses_half_records() {
        let l = LastStage {
            time: 1_796_054_526,
            bytes: 1 << 30,
            seconds: 12.5,
        };
        assert_eq!(LastStage::parse(&l.encode()), Some(l));
        assert_eq!(LastStage::parse("time 1\nbytes 2\n"), None);
        assert_eq!(LastStage::parse("time 1\nbytes x\nseconds 1\n"), None);
        assert_eq!(LastStage::parse("time 1\nbytes 2\nseconds NaN\n"), None);
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = Snapshot {
            boot_state: "trial",
            tries: Some((2, 3)),
            unhealthy_boots: 4,
            ..Snapshot::default()
        };
        s.running = Some(ImageFacts {
            file: "hn-root.img",
            uuid: "u".into(),
            version: "a \"b\" \\ c\nd".into(),
            image_version: "3".into(),
        });
        let text = render(&s, 10);
        assert!(text.contains(r#"version="a \"b\" \\ c\nd""#), "{text}");
        assert!(text.contains("hnroot_trial_tries_left 2\n"), "{text}");
        assert!(text.contains("hnroot_unhealthy_boots 4\n"), "{text}");
        assert!(text.contains("hnroot_boot_state{state=\"trial\"} 1\n"));
        assert!(text.contains("hnroot_boot_state{state=\"committed\"} 0\n"));
        // Nothing switched yet: no time since a switch is claimed.
        assert!(!text.contains("hnroot_seconds_since_last_switch"));
        assert!(
            text.contains("state=\"absent\",loader_hnroot_version=\"\",grub_build=\"\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn the_loader_is_shown_by_its_record() {
        let record = loader::Record::current(loader::Version::parse("1.2.3").unwrap(), "2.12-9");
        let l = EspLoader::of(&Loader::Recorded(record));
        assert_eq!(
            (l.state, l.hnroot.as_str(), l.grub.as_str()),
            ("recorded", "1.2.3", "2.12-9")
        );
        let s = Snapshot {
            loader: l,
            ..Snapshot::default()
        };
        let text = render(&s, 10);
        assert!(
            text.contains(
                "state=\"recorded\",loader_hnroot_version=\"1.2.3\",grub_build=\"2.12-9\"} 1\n"
            ),
            "{text}"
        );
        assert_eq!(EspLoader::of(&Loader::Unrecorded).state, "unrecorded");
    }

    #[test]
    fn the_floor_is_shown_with_its_state() {
        let text = render(&Snapshot::default(), 10);
        assert!(
            text.contains("hnroot_version_floor_info{state=\"none\",version=\"\"} 1\n"),
            "{text}"
        );
        let s = Snapshot {
            floor: FloorMetric::Set("1.10".into()),
            ..Snapshot::default()
        };
        assert!(render(&s, 10)
            .contains("hnroot_version_floor_info{state=\"set\",version=\"1.10\"} 1\n"));
    }

    #[test]
    fn a_full_hostpart_is_shown_for_alerting() {
        assert!(!render(&Snapshot::default(), 10).contains("hnroot_hostpart_full"));
        let s = Snapshot {
            space: Some(hnroot_core::space::judge(4096, 300 << 20)),
            ..Snapshot::default()
        };
        let text = render(&s, 10);
        assert!(text.contains("hnroot_hostpart_full 1\n"), "{text}");
        assert!(text.contains("hnroot_hostpart_free_bytes 4096\n"), "{text}");
        assert!(
            text.contains("hnroot_hostpart_size_bytes 314572800\n"),
            "{text}"
        );
        let s = Snapshot {
            space: Some(hnroot_core::space::judge(200 << 20, 300 << 20)),
            ..Snapshot::default()
        };
        assert!(render(&s, 10).contains("hnroot_hostpart_full 0\n"));
    }

    #[test]
    fn a_corrupt_root_is_shown_for_alerting() {
        assert!(!render(&Snapshot::default(), 10).contains("hnroot_root_verity_info"));
        let s = Snapshot {
            root_verity: Some(hnroot_core::seal::RootVerity::Corrupt),
            ..Snapshot::default()
        };
        assert!(render(&s, 10).contains("hnroot_root_verity_info{state=\"corrupt\"} 1\n"));
    }
}
