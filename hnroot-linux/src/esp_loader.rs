//! The boot loader on a mounted ESP: read as the firmware would find it, and replaced by the
//! core's steps (`hnroot_core::loader`, whose crate docs give the argument that the firmware
//! finds a whole loader at every moment). Every path is relative to the ESP's `EFI/BOOT`
//! directory, held open, never through a link; every step ends with its writes on the disk
//! (`fsync`, `syncfs`) before the next begins.

use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use hnroot_core::counting;
use hnroot_core::decide::Config;
use hnroot_core::layout;
use hnroot_core::loader::{LoaderAfterFailure, LoaderStep};
use hnroot_core::memdisk;
use hnroot_core::minisig::{PublicKey, MAX_TRUSTED_KEYS};

use crate::fsat;
use crate::image::SealPolicy;

/// The loader's directory on the ESP.
pub const BOOT_DIR: &str = "EFI/BOOT";
/// The loader the firmware boots (removable-media path; the boot entry names it too).
pub const LOADER: &str = "BOOTX64.EFI";
/// The new loader before the exchange, and the old one right after it.
pub const NEW: &str = "hnroot-new.efi";
/// The loader an update replaced, kept until the next update.
pub const PREVIOUS: &str = "hnroot-previous.efi";
/// Bound on a loader file hnroot reads (GRUB's image is a few MiB).
pub const MAX_LOADER: usize = 64 << 20;

/// The seal policy in a loader's bytes: its memdisk's trusted keys (none: a sealed image's key
/// is unknown to it) and its require-sealed marker, read as GRUB reads them.
pub fn seal_policy_of(loader: &[u8]) -> Result<SealPolicy, String> {
    let keys = match memdisk::file(loader, layout::SEAL_KEYS_MEMDISK_PATH) {
        Ok(Some(text)) => {
            let mut list = [PublicKey {
                key_id: [0; 8],
                key: [0; 32],
            }; MAX_TRUSTED_KEYS];
            let n = PublicKey::parse_list(text, &mut list).map_err(|e| {
                format!(
                    "(memdisk)/{} does not read as a key list: {e}",
                    layout::SEAL_KEYS_MEMDISK_PATH
                )
            })?;
            list.get(..n).unwrap_or_default().to_vec()
        }
        Ok(None) => Vec::new(),
        Err(e) => return Err(e.to_string()),
    };
    let require = memdisk::file(loader, layout::REQUIRE_SEALED_MEMDISK_PATH)
        .map_err(|e| e.to_string())?
        .is_some();
    Ok(SealPolicy { keys, require })
}

/// The counting settings in a loader's bytes, as GRUB applies them (the production `grub.cfg`
/// names its memdisk's [`counting::MEMDISK_PATH`] and passes no option over it): the file's
/// settings over the defaults; a file the core refuses counts with the defaults, as in GRUB,
/// and why is returned beside them.
pub fn counting_of(loader: &[u8]) -> Result<(Config, Option<String>), String> {
    match memdisk::file(loader, counting::MEMDISK_PATH) {
        Ok(Some(text)) => Ok(match counting::parse(text) {
            Ok(c) => (c, None),
            Err(e) => (
                Config::default(),
                Some(format!(
                    "(memdisk)/{} refused ({e}): GRUB counts with the defaults",
                    counting::MEMDISK_PATH
                )),
            ),
        }),
        Ok(None) => Ok((Config::default(), None)),
        Err(e) => Err(e.to_string()),
    }
}

/// The menu countdown the loader image `loader` carries (its memdisk's
/// [`hnroot_core::menu::MEMDISK_PATH`], as grub.cfg names it), as GRUB applies it: the file's
/// seconds, or the default when it has none, or, with the reason, when the core refuses it.
/// Fails only when the image's memdisk cannot be read.
pub fn menu_timeout_of(loader: &[u8]) -> Result<(u16, Option<String>), String> {
    use hnroot_core::menu;
    match memdisk::file(loader, menu::MEMDISK_PATH) {
        Ok(Some(text)) => Ok(match menu::parse(text) {
            Ok(seconds) => (seconds, None),
            Err(e) => (
                menu::DEFAULT_SECONDS,
                Some(format!(
                    "(memdisk)/{} refused ({e}): the menu waits {} s",
                    menu::MEMDISK_PATH,
                    menu::DEFAULT_SECONDS
                )),
            ),
        }),
        Ok(None) => Ok((menu::DEFAULT_SECONDS, None)),
        Err(e) => Err(e.to_string()),
    }
}

/// What the loader on an ESP applies besides the decision itself: its seal policy, its
/// counting settings and its menu countdown, as GRUB applies them.
#[derive(Debug, Clone, Default)]
pub struct LoaderSettings {
    /// `None`: no loader, or its policy does not read (the verdicts are then the plain ones).
    pub seal: Option<SealPolicy>,
    /// Tries, K and the waits.
    pub counting: Config,
    /// A loader was read (its counting is then what GRUB applies); `false`: no loader, or one
    /// that could not be read, and `counting` is the defaults, a guess.
    pub read: bool,
    /// The seconds GRUB shows its menu before booting; `None` when no loader was read.
    pub menu_timeout: Option<u16>,
}

impl LoaderSettings {
    /// The settings of the loader on the ESP mounted at `esp`, its bytes read once, and what
    /// could not be read, each a sentence for the caller to say: no loader, or one that does
    /// not read, leaves no policy and the default counting.
    pub fn read(esp: &Path) -> (LoaderSettings, Vec<String>) {
        let dir = esp.join(BOOT_DIR);
        let mut notes = Vec::new();
        let image = match EspBoot::open(esp, false).and_then(|b| b.read_loader()) {
            Ok(Some(image)) => image,
            Ok(None) => return (LoaderSettings::default(), notes),
            Err(e) => {
                notes.push(format!(
                    "the loader's seal policy and counting are unknown ({}: {e}): judging images \
                     without a policy, counting with the defaults",
                    dir.display()
                ));
                return (LoaderSettings::default(), notes);
            }
        };
        let seal = match seal_policy_of(&image) {
            Ok(policy) => Some(policy),
            Err(e) => {
                notes.push(format!(
                    "the loader's seal policy is unknown ({}: {e}): judging images without it",
                    dir.display()
                ));
                None
            }
        };
        let counting = match counting_of(&image) {
            Ok((c, why)) => {
                notes.extend(why.map(|w| format!("{}: {w}", dir.display())));
                c
            }
            Err(e) => {
                notes.push(format!(
                    "the loader's counting is unknown ({}: {e}): counting with the defaults",
                    dir.display()
                ));
                Config::default()
            }
        };
        let menu_timeout = match menu_timeout_of(&image) {
            Ok((seconds, why)) => {
                notes.extend(why.map(|w| format!("{}: {w}", dir.display())));
                Some(seconds)
            }
            Err(e) => {
                notes.push(format!(
                    "the loader's menu countdown is unknown ({}: {e})",
                    dir.display()
                ));
                None
            }
        };
        (
            LoaderSettings {
                seal,
                counting,
                read: true,
                menu_timeout,
            },
            notes,
        )
    }
}

/// The ESP's `EFI/BOOT`, held open.
#[derive(Debug)]
pub struct EspBoot {
    esp: PathBuf,
    dir: OwnedFd,
}

/// A step that failed, and what was done about it.
#[derive(Debug)]
pub struct StepFailed {
    /// The step.
    pub step: LoaderStep,
    /// Why.
    pub error: io::Error,
    /// The core's answer, and how carrying it out went.
    pub after: LoaderAfterFailure,
    /// What the answer's own operation said when it failed too.
    pub after_error: Option<io::Error>,
}

impl fmt::Display for StepFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}; ", self.step.code(), self.error)?;
        match (self.after, &self.after_error) {
            (LoaderAfterFailure::RemoveNew, None) => f.write_str(
                "BOOTX64.EFI is the loader that was there before (hnroot-new.efi removed)",
            ),
            (LoaderAfterFailure::ExchangeBack, None) => {
                f.write_str("exchanged back: BOOTX64.EFI is the loader that was there before")
            }
            (LoaderAfterFailure::Stop, _) => f.write_str(
                "BOOTX64.EFI is the new loader, verified; the old one is left as hnroot-new.efi \
                 (the next update removes it)",
            ),
            (answer, Some(e)) => write!(f, "{answer:?} failed too: {e}"),
        }
    }
}

impl std::error::Error for StepFailed {}

impl EspBoot {
    /// `EFI/BOOT` of the ESP mounted at `esp`, created when `create` (an ESP without a loader).
    pub fn open(esp: &Path, create: bool) -> io::Result<EspBoot> {
        let root = std::fs::File::open(esp)?;
        let root = OwnedFd::from(root);
        let dir = if create {
            fsat::make_path(&root, BOOT_DIR, 0o755)?
        } else {
            fsat::open_path(&root, BOOT_DIR)?.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{} has no {BOOT_DIR}", esp.display()),
                )
            })?
        };
        Ok(EspBoot {
            esp: esp.to_owned(),
            dir,
        })
    }

    /// The loader's path, for messages.
    pub fn loader_path(&self) -> PathBuf {
        self.esp.join(BOOT_DIR).join(LOADER)
    }

    /// The loader file's bytes (`None`: no such file).
    pub fn read_loader(&self) -> io::Result<Option<Vec<u8>>> {
        match fsat::read_file(&self.dir, LOADER, MAX_LOADER) {
            Ok((_, true)) => Err(io::Error::other(format!(
                "{} is larger than {MAX_LOADER} bytes",
                self.loader_path().display()
            ))),
            Ok((data, false)) => Ok(Some(data)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The seal policy the loader here applies (the production `grub.cfg` names its memdisk's
    /// [`layout::SEAL_KEYS_MEMDISK_PATH`] and [`layout::REQUIRE_SEALED_MEMDISK_PATH`]);
    /// `None`: no loader.
    pub fn seal_policy(&self) -> io::Result<Option<SealPolicy>> {
        let Some(image) = self.read_loader()? else {
            return Ok(None);
        };
        seal_policy_of(&image)
            .map(Some)
            .map_err(|e| io::Error::other(format!("{}: {e}", self.loader_path().display())))
    }

    fn verify(&self, name: &str, image: &[u8]) -> io::Result<()> {
        let (data, more) = fsat::read_from_disk(&self.dir, name, MAX_LOADER)?;
        if more || data != image {
            return Err(io::Error::other(format!(
                "{name} reads back as {} bytes{} that differ from the {} bytes written",
                data.len(),
                if more { " or more" } else { "" },
                image.len()
            )));
        }
        Ok(())
    }

    /// Carry out one step with `image` the new loader; what it did.
    pub fn step(&self, step: LoaderStep, image: &[u8]) -> io::Result<String> {
        let d = &self.dir;
        match step {
            LoaderStep::ClearLeftovers => {
                fsat::unlink(d, NEW)?;
                fsat::unlink(d, PREVIOUS)?;
                fsat::sync_fs(d)?;
                Ok(format!("no {NEW} or {PREVIOUS} left"))
            }
            LoaderStep::WriteNew => {
                fsat::create_new(d, NEW, image, 0o644)?;
                fsat::sync_dir(d)?;
                fsat::sync_fs(d)?;
                Ok(format!(
                    "{NEW} written ({} KiB)",
                    image.len().div_ceil(1024)
                ))
            }
            LoaderStep::VerifyNew => {
                self.verify(NEW, image)?;
                Ok(format!("{NEW} reads back whole"))
            }
            LoaderStep::Exchange => {
                match fsat::exchange(d, NEW, LOADER) {
                    // No loader there yet: the new one simply takes the name.
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                        fsat::rename(d, NEW, LOADER, false)?
                    }
                    other => other?,
                }
                fsat::sync_dir(d)?;
                fsat::sync_fs(d)?;
                Ok(format!("{NEW} and {LOADER} exchanged"))
            }
            LoaderStep::VerifyInPlace => {
                self.verify(LOADER, image)?;
                Ok(format!("{LOADER} reads back as the new loader"))
            }
            LoaderStep::KeepPrevious => {
                fsat::rename(d, NEW, PREVIOUS, false)?;
                fsat::sync_dir(d)?;
                fsat::sync_fs(d)?;
                Ok(format!("the old loader kept as {PREVIOUS}"))
            }
        }
    }

    /// Answer a failed `step` as the core says.
    pub fn after_failure(&self, step: LoaderStep, error: io::Error) -> StepFailed {
        let after = hnroot_core::loader::after_failure(step);
        let d = &self.dir;
        let after_error = match after {
            LoaderAfterFailure::RemoveNew => {
                fsat::unlink(d, NEW).and_then(|()| fsat::sync_fs(d)).err()
            }
            LoaderAfterFailure::ExchangeBack => fsat::exchange(d, NEW, LOADER)
                .and_then(|()| fsat::sync_fs(d))
                .err(),
            LoaderAfterFailure::Stop => None,
        };
        StepFailed {
            step,
            error,
            after,
            after_error,
        }
    }

    /// Every step of `steps` in order, `say` told what each did; on a failure, the core's answer.
    pub fn run(
        &self,
        steps: &[LoaderStep],
        image: &[u8],
        mut say: impl FnMut(usize, LoaderStep, &str),
    ) -> Result<(), StepFailed> {
        let failed = crate::exec::run_steps(
            steps,
            crate::exec::OnFailure::Stop,
            |step| self.step(*step, image),
            |r| {
                if let Ok(what) = r.outcome {
                    say(r.index, *r.step, what);
                }
            },
        );
        match failed.into_iter().next() {
            None => Ok(()),
            Some((index, e)) => Err(self.after_failure(steps[index], e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hnroot_core::loader::{update_steps, UpdateKind};

    /// The steps on a real directory (tmpfs or ext4 here; the build machine's kernel may lack
    /// vfat, which the QEMU suites cover): the old loader ends as hnroot-previous.efi, the new
    /// one at the boot path, and a failed read-back after the exchange exchanges back.
    #[test]
    fn an_update_replaces_the_loader_and_keeps_the_old_one() {
        let esp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(esp.path().join(BOOT_DIR)).unwrap();
        let boot = esp.path().join(BOOT_DIR);
        std::fs::write(boot.join(LOADER), b"old loader").unwrap();
        std::fs::write(boot.join(NEW), b"left by a cut").unwrap();
        let e = EspBoot::open(esp.path(), false).unwrap();
        let mut said = Vec::new();
        e.run(
            update_steps(UpdateKind::Upgrade),
            b"new loader",
            |_, s, w| said.push(format!("{}: {w}", s.code())),
        )
        .unwrap();
        assert_eq!(std::fs::read(boot.join(LOADER)).unwrap(), b"new loader");
        assert_eq!(std::fs::read(boot.join(PREVIOUS)).unwrap(), b"old loader");
        assert!(!boot.join(NEW).exists());
        assert_eq!(said.len(), 6, "{said:?}");
        // A fresh ESP: the new loader takes the name.
        let empty = tempfile::tempdir().unwrap();
        let e = EspBoot::open(empty.path(), true).unwrap();
        e.run(update_steps(UpdateKind::Install), b"first", |_, _, _| {})
            .unwrap();
        assert_eq!(e.read_loader().unwrap().unwrap(), b"first");
        // The read-back after the exchange fails (the disk holds other bytes): exchanged back.
        let e = EspBoot::open(esp.path(), false).unwrap();
        for s in &update_steps(UpdateKind::Upgrade)[..4] {
            e.step(*s, b"newer loader").unwrap();
        }
        let failed = e
            .step(LoaderStep::VerifyInPlace, b"something else")
            .map_err(|err| e.after_failure(LoaderStep::VerifyInPlace, err))
            .unwrap_err();
        assert_eq!(failed.after, LoaderAfterFailure::ExchangeBack);
        assert!(failed.after_error.is_none(), "{failed}");
        assert_eq!(std::fs::read(boot.join(LOADER)).unwrap(), b"new loader");
        assert!(failed.to_string().contains("exchanged back"), "{failed}");
    }
}
