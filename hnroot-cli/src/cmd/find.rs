//! `hnroot find SPEC [--partuuid PIN]`: print the device node a `LABEL=`, `UUID=`,
//! `PARTLABEL=` or `PARTUUID=` spec names, looking at every block device in
//! `/sys/class/block` the way the initramfs does. Exit status 2, with the reason on stderr,
//! when nothing or more than one device matches (a pin decides between several).

use std::path::PathBuf;
use std::process::ExitCode;

use hnroot_core::cmdline::DeviceSpec;
use hnroot_core::PartUuid;
use hnroot_linux::blockdev::{find_in, Hints, Roots};

/// Exit status when the spec names no device, or more than one.
const EXIT_NOT_ONE: u8 = 2;

/// Arguments of `hnroot find`.
#[derive(clap::Args, Debug)]
pub struct FindArgs {
    /// LABEL=..., UUID=..., PARTLABEL=... or PARTUUID=...
    spec: String,
    /// When several devices match, take the partition with this PARTUUID.
    #[arg(long, value_name = "PIN")]
    partuuid: Option<String>,
    /// sysfs block class directory (tests).
    #[arg(long, hide = true, default_value = "/sys/class/block")]
    sys_class_block: PathBuf,
    /// Device node directory (tests).
    #[arg(long, hide = true, default_value = "/dev")]
    dev: PathBuf,
}

/// Run `hnroot find`.
pub fn run(args: &FindArgs) -> ExitCode {
    let spec = match DeviceSpec::parse(&args.spec) {
        Ok(s) => s,
        Err(e) => {
            crate::warn!("hnroot find: {:?} is not a device spec: {e}", args.spec);
            return ExitCode::from(EXIT_NOT_ONE);
        }
    };
    let pin = match args.partuuid.as_deref().map(PartUuid::parse) {
        None => None,
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => {
            crate::warn!(
                "hnroot find: --partuuid {:?} is not a PARTUUID: {e}",
                args.partuuid.as_deref().unwrap_or_default()
            );
            return ExitCode::from(EXIT_NOT_ONE);
        }
    };
    let roots = Roots {
        sys_class_block: args.sys_class_block.clone(),
        dev: args.dev.clone(),
    };
    let hints = Hints {
        pin,
        boot_disk_of: None,
    };
    match find_in(&roots, &spec, &hints) {
        Ok(found) => {
            if found.chosen_by.is_some() {
                crate::warn!(
                    "hnroot find: {spec}: several devices match; the PARTUUID pin chose {}",
                    found.name
                );
            }
            crate::say!("{}", found.node.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            crate::warn!("hnroot find: {spec}: {e}");
            ExitCode::from(EXIT_NOT_ONE)
        }
    }
}
