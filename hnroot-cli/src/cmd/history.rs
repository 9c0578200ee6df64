//! `hnroot history [--json]`: what every boot and every operator command did, oldest first,
//! from the bounded record on hostpart (`data/hnroot/history`); and the recording of the
//! operator commands there.

use std::process::ExitCode;

use anyhow::Result;
use hnroot_core::history::{Operator, Record};
use hnroot_core::layout::HISTORY_PATH;
use hnroot_core::name::ImageName;
use hnroot_core::plan::PlanKind;
use hnroot_core::uuid::FsUuid;
use hnroot_linux::history_file;
use hnroot_linux::hostpart::Hostpart;
use serde_json::json;

use crate::locate::{self, Location};
use crate::{say, warn};

/// Options of `hnroot history`.
#[derive(clap::Args, Debug)]
pub struct HistoryArgs {
    #[command(flatten)]
    loc: Location,
    /// Print JSON (an array of records) instead of text.
    #[arg(long)]
    json: bool,
}

/// The time as `YYYY-MM-DD HH:MM:SS UTC`.
fn utc(secs: u64) -> String {
    if secs == 0 {
        return "(time unknown)".into();
    }
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn run(args: &HistoryArgs) -> Result<()> {
    let hostpart = locate::open_hostpart(&args.loc)?;
    let history_file::History {
        records,
        damaged,
        newer,
        ..
    } = history_file::read(&hostpart)?;
    if args.json {
        let list: Vec<_> = records
            .iter()
            .map(|r| {
                json!({
                    "sequence": r.sequence, "time": r.time, "event": r.event.code(),
                    "reason": r.reason.code(), "plan": r.plan.map_or("-", PlanKind::code),
                    "image": r.image.map(ImageName::file_name),
                    "now_at": r.now_at.map(ImageName::file_name),
                    "uuid": r.uuid.map(|u| u.to_string()),
                    "tries_left": r.tries.map(|t| t.0), "tries_total": r.tries.map(|t| t.1),
                    "good": r.good.map(|u| u.to_string()),
                    "via": r.via.map(|v| v.code()),
                })
            })
            .collect();
        say!(
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        );
    } else {
        if records.is_empty() && damaged == 0 && newer == 0 {
            say!(
                "hnroot: no history recorded on {} yet",
                hostpart.path().display()
            );
        }
        for r in &records {
            say!("{}  {r}", utc(r.time));
        }
    }
    let file = hostpart.path().join(HISTORY_PATH);
    if newer > 0 {
        warn!(
            "hnroot: {}: {newer} records written by a newer hnroot skipped (they name events or \
             reasons this hnroot ({}) does not know; they are intact, and the newer hnroot \
             shows them)",
            file.display(),
            env!("CARGO_PKG_VERSION")
        );
    }
    if records.is_empty() && newer == 0 && damaged > 0 {
        warn!(
            "hnroot: {}: none of its {damaged} records is valid: it is damaged, or not an \
             hnroot history file; nothing to show (new records are written over it; move it \
             away to keep it)",
            file.display()
        );
    } else if damaged > 0 {
        warn!(
            "hnroot: {}: {damaged} damaged records skipped (torn writes)",
            file.display()
        );
    }
    Ok(())
}

/// `hnroot history`.
pub fn history(args: &HistoryArgs) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            warn!("hnroot: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Record an operator command in the history (a failure to record is said, not fatal).
pub fn record(
    hostpart: &Hostpart,
    command: Operator,
    image: Option<ImageName>,
    uuid: Option<FsUuid>,
    good: Option<FsUuid>,
) {
    let r = Record::operator(history_file::now(), command, image, uuid, good);
    if let Err(e) = history_file::append(hostpart, r) {
        warn!("hnroot: the history could not be written ({e}); the command itself is done");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates() {
        assert_eq!(super::utc(0), "(time unknown)");
        assert_eq!(super::utc(1), "1970-01-01 00:00:01 UTC");
        assert_eq!(super::utc(1_796_054_526), "2026-11-30 16:02:06 UTC");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00 UTC");
    }
}
