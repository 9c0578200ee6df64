//! The kernel command line of this boot, read once: what GRUB booted, where hostpart and the
//! ESP are, the tries a new image gets. Refused parameters are logged and otherwise ignored.

use hnroot_core::cmdline::{self, BootParams};
use hnroot_core::decide::Config;

use crate::{info, warn};

/// Parse `text` (`/proc/cmdline`), logging what GRUB booted and every refused parameter.
pub fn read(text: &str) -> (BootParams<'_>, Config) {
    let params = cmdline::parse(text);
    for e in &params.errors {
        warn!("cmdline: {e}");
    }
    if params.more_errors > 0 {
        warn!("cmdline: {} more refused parameters", params.more_errors);
    }
    match params.booted {
        Some(b) => info!(
            "cmdline: GRUB booted {} (UUID {}), hostpart {}",
            b.name,
            b.uuid,
            params.hostpart_spec()
        ),
        None => warn!(
            "cmdline: no hnroot.image=/hnroot.uuid=: booting hn-root.img without an identity check"
        ),
    }
    let config = Config {
        tries: params.tries.unwrap_or(Config::default().tries),
        ..Config::default()
    };
    (params, config)
}
