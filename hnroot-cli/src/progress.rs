//! How `hnroot stage` reports: on a terminal a bar with rate and time left (indicatif), when
//! standard error is not a terminal a line per 10 %, and with `--json` one JSON object per
//! line on standard output (`start`, `progress`, `step`, `staged`, `failed`, `error`) for
//! orchestration tools, the human lines then going to standard error.

use std::fmt;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::{say, warn};

#[derive(Debug)]
enum Mode {
    Bar(Option<ProgressBar>),
    Lines { next_tenth: u64 },
    Json { last_percent: u64 },
}

#[derive(Debug)]
struct Inner {
    mode: Mode,
    started: Instant,
}

/// The stage's reporter (cheap to clone; clones share it).
#[derive(Debug, Clone)]
pub struct Progress(Arc<Mutex<Inner>>);

impl Progress {
    /// JSON events, a bar on a terminal, or lines.
    pub fn new(json: bool) -> Progress {
        let mode = if json {
            Mode::Json { last_percent: 0 }
        } else if std::io::stderr().is_terminal() {
            Mode::Bar(None)
        } else {
            Mode::Lines { next_tenth: 1 }
        };
        Progress(Arc::new(Mutex::new(Inner {
            mode,
            started: Instant::now(),
        })))
    }

    fn json(&self) -> bool {
        self.0
            .lock()
            .map(|i| matches!(i.mode, Mode::Json { .. }))
            .unwrap_or(false)
    }

    /// A line for people: standard output, or standard error in JSON mode.
    pub fn say(&self, args: fmt::Arguments<'_>) {
        if self.json() {
            warn!("{args}");
        } else {
            say!("{args}");
        }
    }

    /// A JSON event (JSON mode only).
    pub fn event(&self, value: Value) {
        if self.json() {
            say!("{value}");
        }
    }

    /// A step of the plan done or failed.
    pub fn step(&self, n: usize, total: usize, step: &str, outcome: Result<&str, &str>) {
        self.event(json!({ "event": "step", "n": n, "of": total, "step": step,
            "ok": outcome.is_ok(), "detail": outcome.unwrap_or_else(|e| e) }));
        match outcome {
            Ok(how) => self.say(format_args!("hnroot: step {n}/{total}: {step}: {how}")),
            Err(e) => warn!("hnroot: step {n}/{total}: {step}: FAILED: {e}"),
        }
    }

    /// A phase of the copy worth a word (`reflinked; verifying`).
    pub fn phase(&self, what: &str) {
        self.event(json!({ "event": "phase", "what": what }));
    }

    /// `done` of `total` bytes copied (or verified).
    pub fn update(&self, done: u64, total: u64) {
        let Ok(mut inner) = self.0.lock() else {
            return;
        };
        let elapsed = inner.started.elapsed().as_secs_f64().max(0.001);
        let rate = done as f64 / elapsed;
        match &mut inner.mode {
            Mode::Bar(bar) => {
                let bar = bar.get_or_insert_with(|| {
                    let b = ProgressBar::new(total);
                    b.set_style(
                        ProgressStyle::with_template(
                            "{bytes}/{total_bytes} [{bar:40}] {binary_bytes_per_sec}, {eta} left",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    b
                });
                bar.set_position(done);
            }
            Mode::Lines { next_tenth } => {
                while total > 0
                    && *next_tenth <= 10
                    && done.saturating_mul(10) >= total.saturating_mul(*next_tenth)
                {
                    say!(
                        "hnroot: {} % ({} of {} MiB, {:.0} MiB/s)",
                        *next_tenth * 10,
                        done >> 20,
                        total >> 20,
                        rate / f64::from(1u32 << 20)
                    );
                    *next_tenth += 1;
                }
            }
            Mode::Json { last_percent } => {
                let percent = done.saturating_mul(100).checked_div(total).unwrap_or(100);
                if percent > *last_percent || done == total {
                    *last_percent = percent;
                    say!(
                        "{}",
                        json!({ "event": "progress", "done": done, "total": total,
                            "percent": percent, "bytes_per_second": rate as u64 })
                    );
                }
            }
        }
    }

    /// The copy is over.
    pub fn finish(&self, _done: u64) {
        if let Ok(mut inner) = self.0.lock() {
            if let Mode::Bar(Some(bar)) = &mut inner.mode {
                bar.finish_and_clear();
            }
        }
    }
}
