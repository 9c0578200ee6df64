//! The boot state of this boot, read once: the ESP found (`hnroot.esp=` or its label, within
//! `Env::esp_wait`), mounted read-only, the boot-state file judged by the core. Without an
//! ESP, or with one the boot state may not live on, the decision sees no boot state and
//! nothing will be written; the boot goes on.

use hnroot_core::bootstate::StateSeen;
use hnroot_core::cmdline::BootParams;
use hnroot_core::layout;
use hnroot_linux::esp::{self, StateFile};

use crate::boot::Env;
use crate::drivers::Drivers;
use crate::hostpart::describe_found;
use crate::{info, warn};

/// The boot-state file on the ESP mounted at `env.esp_mnt`, and the boot state in it.
pub fn read(
    env: &Env,
    drivers: &mut Drivers,
    params: &BootParams<'_>,
) -> (Option<StateFile>, StateSeen) {
    let found = match esp::find(&env.roots, params, env.esp_wait, env.poll) {
        Ok(found) => found,
        Err(e) => {
            warn!("boot state: ESP not available ({e}); deciding without it and writing nothing");
            return (None, StateSeen::Absent);
        }
    };
    let fs = found.fs.as_ref().map(|f| f.fs_type);
    if let Some(fs) = fs.filter(|&t| layout::bootstate_fs_ok(t)) {
        drivers.for_fs(fs);
    }
    let file = match StateFile::mount(&found, &env.esp_mnt) {
        Ok(file) => file,
        Err(e) => {
            warn!("boot state: {e}; deciding without it and writing nothing");
            return (None, StateSeen::Absent);
        }
    };
    let (state, why) = file.read();
    match (&state, why) {
        (StateSeen::Valid(s), _) => info!(
            "boot state: {s} (from {} {})",
            found.node.display(),
            layout::BOOTSTATE_PATH
        ),
        (StateSeen::Absent, _) => info!("boot state: none recorded in {}", found.node.display()),
        (StateSeen::Corrupt, Some(why)) => {
            warn!("boot state: {why}: deciding as for a corrupt one")
        }
        (StateSeen::Corrupt, None) => warn!("boot state: corrupt in {}", describe_found(&found)),
    }
    (Some(file), state)
}
