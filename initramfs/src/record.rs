//! This boot in the history on hostpart (`hnroot_core::history`): the boot record, after the
//! records of boots GRUB counted for this trial that never reached an initramfs (seen from the
//! tries the boot state lost since the last record). Never fatal.

use hnroot_core::bootstate::StateSeen;
use hnroot_core::cmdline::{BootParams, BootVia};
use hnroot_core::decide::ReasonCode;
use hnroot_core::history::{Event, Record};
use hnroot_core::layout;
use hnroot_linux::history_file;
use hnroot_linux::hostpart::Hostpart;

use crate::switch::Switched;
use crate::{info, warn};

/// Append this boot: `grub_state` is the boot state GRUB left, `switched` what the plan did.
pub fn boot(
    hostpart: &Hostpart,
    grub_state: StateSeen,
    switched: &Switched,
    params: &BootParams<'_>,
) {
    let previous = history_file::read(hostpart)
        .map(|history| {
            history
                .records
                .into_iter()
                .rev()
                .find(|r| matches!(r.event, Event::Boot | Event::Missed))
        })
        .unwrap_or(None);
    let this = Record::boot(
        history_file::now(),
        params.reason.unwrap_or(ReasonCode::Unknown),
        switched.plan.kind,
        params.booted.map(|b| b.name),
        switched.mounted,
        grub_state,
        switched.seen.state,
        params.via.unwrap_or(BootVia::Loader),
    );
    for record in this.missed_before(previous.as_ref()) {
        match history_file::append(hostpart, record) {
            Ok(r) => warn!("history: {r}: GRUB booted it but it never reached the initramfs"),
            Err(e) => warn!("history: cannot record a missed boot: {e}"),
        }
    }
    match history_file::append(hostpart, this) {
        Ok(r) => info!("history: {r}"),
        Err(e) => warn!(
            "history: cannot record this boot in {}: {e}",
            layout::HISTORY_PATH
        ),
    }
}
