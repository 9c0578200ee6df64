//! The kernel command line parameters hnroot uses, parsed without allocation. Every bad
//! parameter is reported and ignored, so the initramfs can fall back to a safe default and say
//! why; nothing outside the known image names can ever be named.
//!
//! | parameter                | meaning                                                        |
//! |--------------------------|----------------------------------------------------------------|
//! | `hnroot.image=NAME`      | image file GRUB booted (`hn-root.img`, `hn-root-new.img`, ...)  |
//! | `hnroot.uuid=UUID`       | its filesystem UUID                                            |
//! | `hnroot.hostpart=SPEC`   | hostpart: `PARTUUID=`, `LABEL=`, `UUID=` or `PARTLABEL=`        |
//! | `hnroot.hostpartopts=O`  | extra mount options for hostpart (`noatime,commit=30`)          |
//! | `hnroot.esp=SPEC`        | the ESP holding the boot-state block (default `LABEL=EFI-BOOT`) |
//! | `hnroot.tries=N`         | tries a trial gets (for the initramfs's fallback prediction)    |
//! | `hnroot.reason=CODE`     | why GRUB booted it (`update`, `trial`, ... `next-image`)        |
//! | `hnroot.via=kexec`       | how the kernel was started: `kexec` by `hnroot reboot` (absent: the boot loader) |
//! | `hnroot.timeout=SECONDS` | how long to wait for hostpart to appear (default 30, max 600)   |
//! | `hnroot.rw`              | attach the image read-write (default read-only)                |
//! | `hnroot.hostname=NAME`   | a new server's hostname, on its first boot (sanitised)         |
//! | `hnroot.roothash=HEX`    | a sealed image's dm-verity root hash, from its verified seal   |
//! | `init=PATH`              | program to exec in the new root (default `/sbin/init`)         |

use core::fmt;

use heapless::Vec;

use crate::bootstate::MAX_TRIES;
use crate::decide::ReasonCode;
use crate::layout;
use crate::name::ImageName;
use crate::plan::Booted;
use crate::uuid::{FsUuid, PartUuid, UuidParseError};

/// Longest label any supported format can hold, in UTF-8 bytes (btrfs: 255).
pub const MAX_LABEL_LEN: usize = 255;
/// Longest accepted `hnroot.hostpartopts=` value.
pub const MAX_OPTIONS_LEN: usize = 256;
/// Longest accepted `init=` value.
pub const MAX_INIT_LEN: usize = 255;
/// Default `hnroot.timeout=`.
pub const DEFAULT_TIMEOUT_SECS: u16 = 30;
/// Largest accepted `hnroot.timeout=`.
pub const MAX_TIMEOUT_SECS: u16 = 600;
/// Longest accepted `hnroot.hostname=` value (a fully qualified name; the host keeps at most
/// [`crate::hostname::MAX_HOSTNAME_LEN`] bytes of it).
pub const MAX_HOSTNAME_PARAM_LEN: usize = 253;

/// How to find a block device, as in fstab and `blkid -t`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum DeviceSpec<'a> {
    /// `LABEL=`: filesystem label.
    Label(&'a str),
    /// `PARTLABEL=`: GPT partition name.
    PartLabel(&'a str),
    /// `UUID=`: filesystem UUID.
    Uuid(FsUuid),
    /// `PARTUUID=`: partition UUID.
    PartUuid(PartUuid),
}

/// Why a device spec was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SpecError {
    /// Not `LABEL=`, `PARTLABEL=`, `UUID=` or `PARTUUID=`.
    Kind,
    /// Empty, longer than [`MAX_LABEL_LEN`], or containing a control character.
    Label,
    /// A malformed UUID.
    Uuid(UuidParseError),
}

impl core::error::Error for SpecError {}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::Kind => f.write_str("expected LABEL=, PARTLABEL=, UUID= or PARTUUID="),
            SpecError::Label => write!(
                f,
                "label must be 1 to {MAX_LABEL_LEN} bytes without control characters"
            ),
            SpecError::Uuid(e) => write!(f, "bad UUID: {e}"),
        }
    }
}

impl<'a> DeviceSpec<'a> {
    /// Parse `LABEL=hostpart`, `PARTUUID=...`, etc.
    pub fn parse(text: &'a str) -> Result<DeviceSpec<'a>, SpecError> {
        let (kind, value) = text.split_once('=').ok_or(SpecError::Kind)?;
        match kind {
            "LABEL" => label(value).map(DeviceSpec::Label),
            "PARTLABEL" => label(value).map(DeviceSpec::PartLabel),
            "UUID" => FsUuid::parse(value)
                .map(DeviceSpec::Uuid)
                .map_err(SpecError::Uuid),
            "PARTUUID" => PartUuid::parse(value)
                .map(DeviceSpec::PartUuid)
                .map_err(SpecError::Uuid),
            _ => Err(SpecError::Kind),
        }
    }
}

fn label(value: &str) -> Result<&str, SpecError> {
    if value.is_empty() || value.len() > MAX_LABEL_LEN || value.chars().any(char::is_control) {
        return Err(SpecError::Label);
    }
    Ok(value)
}

impl fmt::Display for DeviceSpec<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Label(l) => write!(f, "LABEL={l}"),
            DeviceSpec::PartLabel(l) => write!(f, "PARTLABEL={l}"),
            DeviceSpec::Uuid(u) => write!(f, "UUID={u}"),
            DeviceSpec::PartUuid(u) => write!(f, "PARTUUID={u}"),
        }
    }
}

/// A parameter hnroot refused; it is ignored and the default applies.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ParamError<'a> {
    /// `hnroot.image=` is not one of the image file names.
    Image(&'a str),
    /// `hnroot.uuid=` is not a UUID.
    Uuid(&'a str, UuidParseError),
    /// `hnroot.hostpart=` or `hnroot.esp=` is not a device spec.
    Device(&'static str, &'a str, SpecError),
    /// `hnroot.hostpartopts=` holds something other than `[A-Za-z0-9_=.:/+-]` options.
    Options(&'a str),
    /// `hnroot.tries=` or `hnroot.timeout=` is not a number in range.
    Number(&'static str, &'a str),
    /// `init=` is not an absolute path without `..`.
    Init(&'a str),
    /// `hnroot.reason=` is not one of GRUB's reason codes.
    Reason(&'a str),
    /// `hnroot.via=` is not one of [`BootVia`]'s codes.
    Via(&'a str),
    /// `hnroot.hostname=` leaves no hostname once sanitised, or is too long.
    Hostname(&'a str),
    /// An `hnroot.` parameter given more than once; the last valid one stands, as the kernel
    /// treats its own parameters (so a parameter appended at GRUB's editor overrides).
    Duplicate(&'a str),
    /// An `hnroot.` parameter this version does not know (a typo?).
    Unknown(&'a str),
    /// Only one of `hnroot.image=` and `hnroot.uuid=`.
    Unpaired(&'static str),
    /// `hnroot.roothash=` is not 64 lower-case hex digits.
    RootHash(&'a str),
}

impl fmt::Display for ParamError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamError::Image(v) => write!(
                f,
                "hnroot.image={v:?} ignored: not one of hn-root.img, hn-root-new.img, \
                 hn-root-old.img, hn-root-cancelled.img, hn-root-broken.img"
            ),
            ParamError::Uuid(v, e) => write!(f, "hnroot.uuid={v:?} ignored: {e}"),
            ParamError::Device(k, v, e) => write!(f, "{k}={v:?} ignored: {e}"),
            ParamError::Options(v) => write!(
                f,
                "hnroot.hostpartopts={v:?} ignored: options are comma-separated [A-Za-z0-9_=.:/+-], at most {MAX_OPTIONS_LEN} bytes"
            ),
            ParamError::Number(k, v) => write!(f, "{k}={v:?} ignored: not a number in range"),
            ParamError::Init(v) => {
                write!(f, "init={v:?} ignored: must be an absolute path without '..'")
            }
            ParamError::Reason(v) => write!(f, "hnroot.reason={v:?} ignored: not a reason GRUB gives"),
            ParamError::Via(v) => write!(f, "hnroot.via={v:?} ignored: not loader or kexec"),
            ParamError::Hostname(v) => write!(
                f,
                "hnroot.hostname={v:?} ignored: no hostname left once sanitised (letters, digits, '-', '.'), or longer than {MAX_HOSTNAME_PARAM_LEN} bytes"
            ),
            ParamError::Duplicate(k) => write!(f, "{k} given more than once: the last one stands"),
            ParamError::Unknown(k) => write!(f, "unknown parameter {k} ignored"),
            ParamError::RootHash(v) => write!(
                f,
                "hnroot.roothash={v:?} ignored: not a SHA-256 root hash (64 lower-case hex digits); \
                 the image is mounted without dm-verity"
            ),
            ParamError::Unpaired(k) => write!(
                f,
                "{k} given without its pair (hnroot.image= and hnroot.uuid= go together): ignored"
            ),
        }
    }
}

/// Most refused parameters reported; more are counted in [`BootParams::more_errors`].
pub const MAX_ERRORS: usize = 8;

/// What the kernel command line tells hnroot. Fields are `None` when absent or refused.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct BootParams<'a> {
    /// What GRUB booted; `None` unless both `hnroot.image=` and `hnroot.uuid=` are valid.
    pub booted: Option<Booted>,
    /// `hnroot.hostpart=`.
    pub hostpart: Option<DeviceSpec<'a>>,
    /// `hnroot.hostpartopts=`.
    pub hostpart_options: Option<&'a str>,
    /// `hnroot.esp=`.
    pub esp: Option<DeviceSpec<'a>>,
    /// `hnroot.tries=`.
    pub tries: Option<u8>,
    /// `hnroot.timeout=`.
    pub timeout_secs: Option<u16>,
    /// `hnroot.rw` present.
    pub image_rw: bool,
    /// `init=`.
    pub init: Option<&'a str>,
    /// `hnroot.reason=`: why GRUB booted the image (never [`ReasonCode::Unknown`]).
    pub reason: Option<ReasonCode>,
    /// `hnroot.hostname=`, as given (sanitised where it is used, [`crate::hostname`]).
    pub hostname: Option<&'a str>,
    /// `hnroot.via=`: how this kernel was started (absent: by the boot loader).
    pub via: Option<BootVia>,
    /// `hnroot.roothash=`: the dm-verity root hash of the sealed image GRUB booted, from its
    /// verified seal ([`crate::seal`]).
    pub root_hash: Option<[u8; 32]>,
    /// Parameters refused, in order.
    pub errors: Vec<ParamError<'a>, MAX_ERRORS>,
    /// Refused parameters beyond [`MAX_ERRORS`].
    pub more_errors: usize,
}

impl<'a> BootParams<'a> {
    /// Where hostpart is: `hnroot.hostpart=` or `LABEL=hostpart`.
    pub fn hostpart_spec(&self) -> DeviceSpec<'a> {
        self.hostpart
            .unwrap_or(DeviceSpec::Label(layout::HOSTPART_LABEL))
    }

    /// Where the ESP is: `hnroot.esp=` or `LABEL=EFI-BOOT`.
    pub fn esp_spec(&self) -> DeviceSpec<'a> {
        self.esp.unwrap_or(DeviceSpec::Label(layout::ESP_LABEL))
    }

    /// `hnroot.timeout=` or the default.
    pub fn timeout(&self) -> u16 {
        self.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS)
    }

    /// `init=` or `/sbin/init`.
    pub fn init_path(&self) -> &'a str {
        self.init.unwrap_or(layout::DEFAULT_INIT)
    }

    fn refuse(&mut self, error: ParamError<'a>) {
        if self.errors.push(error).is_err() {
            self.more_errors = self.more_errors.saturating_add(1);
        }
    }
}

/// Split a kernel command line into `key[=value]` words the way the kernel does: whitespace
/// separates, double quotes group (and are dropped around the value).
pub fn words(cmdline: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    let mut rest = cmdline;
    core::iter::from_fn(move || {
        rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
        if rest.is_empty() {
            return None;
        }
        let mut in_quote = false;
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            if c == '"' {
                in_quote = !in_quote;
            } else if c.is_ascii_whitespace() && !in_quote {
                end = i;
                break;
            }
        }
        let (word, tail) = rest.split_at(end);
        rest = tail;
        let word = word.strip_prefix('"').unwrap_or(word);
        Some(match word.split_once('=') {
            Some((key, value)) => {
                let value = value.strip_prefix('"').unwrap_or(value);
                let value = value.strip_suffix('"').unwrap_or(value);
                (key, Some(value))
            }
            None => (word.strip_suffix('"').unwrap_or(word), None),
        })
    })
}

/// Parse a kernel command line (`/proc/cmdline`).
pub fn parse(cmdline: &str) -> BootParams<'_> {
    let mut p = BootParams::default();
    let mut image: Option<ImageName> = None;
    let mut uuid: Option<FsUuid> = None;
    let mut seen: u16 = 0;
    const KEYS: [&str; 13] = [
        "hnroot.via",
        "hnroot.roothash",
        "hnroot.reason",
        "hnroot.hostname",
        "hnroot.image",
        "hnroot.uuid",
        "hnroot.hostpart",
        "hnroot.hostpartopts",
        "hnroot.esp",
        "hnroot.tries",
        "hnroot.timeout",
        "hnroot.rw",
        "init",
    ];
    for (key, value) in words(cmdline) {
        let Some(index) = KEYS.iter().position(|k| *k == key) else {
            if key.starts_with("hnroot.") {
                p.refuse(ParamError::Unknown(key));
            }
            continue;
        };
        let bit = 1u16 << index;
        if seen & bit != 0 {
            p.refuse(ParamError::Duplicate(key));
        }
        seen |= bit;
        let value = value.unwrap_or("");
        match key {
            "hnroot.image" => match ImageName::from_file_name(value) {
                Some(name) => image = Some(name),
                None => p.refuse(ParamError::Image(value)),
            },
            "hnroot.uuid" => match FsUuid::parse(value) {
                Ok(u) => uuid = Some(u),
                Err(e) => p.refuse(ParamError::Uuid(value, e)),
            },
            "hnroot.hostpart" => match DeviceSpec::parse(value) {
                Ok(spec) => p.hostpart = Some(spec),
                Err(e) => p.refuse(ParamError::Device("hnroot.hostpart", value, e)),
            },
            "hnroot.esp" => match DeviceSpec::parse(value) {
                Ok(spec) => p.esp = Some(spec),
                Err(e) => p.refuse(ParamError::Device("hnroot.esp", value, e)),
            },
            "hnroot.hostpartopts" => {
                if valid_options(value) {
                    p.hostpart_options = Some(value);
                } else {
                    p.refuse(ParamError::Options(value));
                }
            }
            "hnroot.tries" => match parse_tries(value) {
                Ok(n) => p.tries = Some(n),
                Err(_) => p.refuse(ParamError::Number("hnroot.tries", value)),
            },
            "hnroot.timeout" => match value.parse::<u16>() {
                Ok(n) if n <= MAX_TIMEOUT_SECS => p.timeout_secs = Some(n),
                _ => p.refuse(ParamError::Number("hnroot.timeout", value)),
            },
            "hnroot.rw" => p.image_rw = matches!(value, "" | "1" | "yes"),
            "hnroot.hostname" => {
                if value.len() <= MAX_HOSTNAME_PARAM_LEN
                    && crate::hostname::sanitize(value).is_some()
                {
                    p.hostname = Some(value);
                } else {
                    p.refuse(ParamError::Hostname(value));
                }
            }
            "hnroot.roothash" => match crate::seal::hash32(value) {
                Some(h) => p.root_hash = Some(h),
                None => p.refuse(ParamError::RootHash(value)),
            },
            "hnroot.reason" => match ReasonCode::from_code(value) {
                Some(r) if r != ReasonCode::Unknown => p.reason = Some(r),
                _ => p.refuse(ParamError::Reason(value)),
            },
            "hnroot.via" => match BootVia::from_code(value) {
                Some(v) => p.via = Some(v),
                None => p.refuse(ParamError::Via(value)),
            },
            _ => {
                if valid_init(value) {
                    p.init = Some(value);
                } else {
                    p.refuse(ParamError::Init(value));
                }
            }
        }
    }
    match (image, uuid) {
        (Some(name), Some(uuid)) => p.booted = Some(Booted { name, uuid }),
        (Some(_), None) => p.refuse(ParamError::Unpaired("hnroot.image")),
        (None, Some(_)) => p.refuse(ParamError::Unpaired("hnroot.uuid")),
        (None, None) => {}
    }
    p
}

/// A number of tries as GRUB's `--tries`, `hnroot.tries=` and the CLI's `--tries` take it:
/// decimal digits only, `1..=MAX_TRIES`. The one parser of it.
pub fn parse_tries(text: &str) -> Result<u8, TriesError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TriesError);
    }
    match text.parse::<u8>() {
        Ok(n) if (1..=MAX_TRIES).contains(&n) => Ok(n),
        _ => Err(TriesError),
    }
}

/// A number of tries outside `1..=MAX_TRIES`, or not a number.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TriesError;

impl core::error::Error for TriesError {}

impl fmt::Display for TriesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tries must be a whole number from 1 to {MAX_TRIES}")
    }
}

crate::codes::stable_codes! {
    /// How a kernel was started: by the boot loader after the firmware (GRUB's `hnroot select`),
    /// or by `hnroot reboot` from the running system with `kexec_file_load`, the firmware and
    /// GRUB skipped. The initramfs tells the two apart by `hnroot.via=kexec` on the command
    /// line (the loader writes no `hnroot.via=`), and the history records it.
    pub enum BootVia {
        /// The firmware, then GRUB.
        Loader = 1 => "loader",
        /// `kexec_file_load` from the running system (`hnroot reboot`).
        Kexec = 2 => "kexec",
    }
}

/// hnroot's whole part of the kernel command line for one boot: what GRUB booted and where
/// hostpart and the ESP are. GRUB's module builds it (`hnroot_cmdline` in `grub.cfg`), the
/// initramfs reads it back with [`parse`]. Its [`fmt::Display`] is the text: words of
/// `[A-Za-z0-9.=-]` only, so no quoting is ever needed, ending with `boot=hnroot` (which selects
/// hnroot's initramfs-tools and dracut integration; hnroot's own `/init` ignores it).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct KernelArgs {
    /// The image and UUID GRUB booted.
    pub booted: Booted,
    /// hostpart's partition, when it has a PARTUUID (otherwise the initramfs looks for
    /// `LABEL=hostpart`).
    pub hostpart: Option<PartUuid>,
    /// The ESP's partition, likewise.
    pub esp: Option<PartUuid>,
    /// Tries a new image gets (for the initramfs's prediction of the next boot).
    pub tries: u8,
    /// Why GRUB boots it.
    pub reason: ReasonCode,
    /// Who starts the kernel: the loader writes nothing, a kexec `hnroot.via=kexec`.
    pub via: BootVia,
    /// The dm-verity root hash of a sealed image, from its verified seal.
    pub root_hash: Option<[u8; 32]>,
}

impl fmt::Display for KernelArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "hnroot.image={} hnroot.uuid={}",
            self.booted.name.file_name(),
            self.booted.uuid
        )?;
        if let Some(p) = self.hostpart {
            write!(f, " hnroot.hostpart=PARTUUID={p}")?;
        }
        if let Some(p) = self.esp {
            write!(f, " hnroot.esp=PARTUUID={p}")?;
        }
        if let Some(h) = &self.root_hash {
            f.write_str(" hnroot.roothash=")?;
            h.iter().try_for_each(|b| write!(f, "{b:02x}"))?;
        }
        write!(
            f,
            " hnroot.tries={} hnroot.reason={}",
            self.tries, self.reason
        )?;
        if self.via == BootVia::Kexec {
            write!(f, " hnroot.via={}", self.via)?;
        }
        f.write_str(" boot=hnroot")
    }
}

/// Longest [`KernelArgs`] text: two names, a UUID, two PARTUUIDs, the way, a root hash and the
/// keys.
pub const MAX_KERNEL_ARGS_LEN: usize = 421;

/// Mount options: non-empty comma-separated words of `[A-Za-z0-9_=.:/+-]`.
pub fn valid_options(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_OPTIONS_LEN
        && value.split(',').all(|opt| {
            !opt.is_empty()
                && opt
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_=.:/+-".contains(&b))
        })
}

fn valid_init(value: &str) -> bool {
    value.starts_with('/')
        && value.len() <= MAX_INIT_LEN
        && !value.split('/').any(|c| c == "..")
        && !value.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = "a3d0e0c4-8f3e-4a57-9d2b-0c6a5f1e2b7d";

    #[test]
    fn parses_what_grub_passes() {
        let line = std::format!(
            "BOOT_IMAGE=(loop)/boot/kernel console=ttyS0 hnroot.image=hn-root-new.img \
             hnroot.uuid={U} hnroot.hostpart=PARTUUID=0fc63daf-8483-4772-8e79-3d69d8477de4 \
             hnroot.hostpartopts=noatime,commit=30 hnroot.tries=5 panic=10\n"
        );
        let p = parse(&line);
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(
            p.booted,
            Some(Booted {
                name: ImageName::New,
                uuid: FsUuid::parse(U).unwrap()
            })
        );
        assert!(matches!(
            p.hostpart,
            Some(DeviceSpec::PartUuid(PartUuid::Gpt(_)))
        ));
        assert_eq!(p.hostpart_options, Some("noatime,commit=30"));
        assert_eq!(p.tries, Some(5));
        assert_eq!(p.esp_spec(), DeviceSpec::Label("EFI-BOOT"));
        assert_eq!(p.init_path(), "/sbin/init");
        assert_eq!(p.timeout(), DEFAULT_TIMEOUT_SECS);
    }

    extern crate std;

    #[test]
    fn refuses_paths_and_unknown_names() {
        for bad in [
            "../hn-root.img",
            "/hostpart/hn-root.img",
            "hn-root.img/..",
            "x.img",
            "",
        ] {
            let line = std::format!("hnroot.image={bad} hnroot.uuid={U}");
            let p = parse(&line);
            assert_eq!(p.booted, None);
            assert_eq!(p.errors.first(), Some(&ParamError::Image(bad)));
            assert_eq!(p.errors.get(1), Some(&ParamError::Unpaired("hnroot.uuid")));
        }
    }

    #[test]
    fn quoted_values_and_labels_with_spaces() {
        let p = parse("\"hnroot.hostpart=LABEL=host part\" hnroot.esp=\"PARTLABEL=EFI system\"");
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(p.hostpart, Some(DeviceSpec::Label("host part")));
        assert_eq!(p.esp, Some(DeviceSpec::PartLabel("EFI system")));
    }

    #[test]
    fn duplicates_unknowns_and_bad_values_are_reported_and_ignored() {
        let p = parse(
            "hnroot.image=hn-root.img hnroot.image=hn-root-old.img hnroot.hostpat=LABEL=x \
             hnroot.hostpartopts=ro;rm hnroot.tries=0 hnroot.timeout=9999 init=../bin/sh \
             hnroot.hostpart=LABLE=x",
        );
        assert_eq!(
            p.errors.as_slice(),
            &[
                ParamError::Duplicate("hnroot.image"),
                ParamError::Unknown("hnroot.hostpat"),
                ParamError::Options("ro;rm"),
                ParamError::Number("hnroot.tries", "0"),
                ParamError::Number("hnroot.timeout", "9999"),
                ParamError::Init("../bin/sh"),
                ParamError::Device("hnroot.hostpart", "LABLE=x", SpecError::Kind),
                ParamError::Unpaired("hnroot.image"),
            ]
        );
        assert_eq!(p.hostpart_spec(), DeviceSpec::Label("hostpart"));
        assert_eq!(p.booted, None);
    }

    #[test]
    fn the_last_of_repeated_parameters_stands() {
        let line = std::format!(
            "hnroot.image=hn-root.img hnroot.uuid={U} hnroot.hostpart=LABEL=hostpart \
             hnroot.image=hn-root-old.img hnroot.hostpart=LABEL=other hnroot.hostpart=LABLE=x"
        );
        let p = parse(&line);
        assert_eq!(p.booted.map(|b| b.name), Some(ImageName::Old));
        assert_eq!(
            p.hostpart,
            Some(DeviceSpec::Label("other")),
            "an invalid repeat is ignored"
        );
        assert_eq!(
            p.errors.first(),
            Some(&ParamError::Duplicate("hnroot.image"))
        );
    }

    #[test]
    fn a_new_servers_hostname() {
        let p = parse("hnroot.hostname=Web_07.example.com quiet");
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(p.hostname, Some("Web_07.example.com"));
        let p = parse("hnroot.hostname=___ hnroot.hostname=");
        assert_eq!(p.hostname, None);
        assert_eq!(
            p.errors.as_slice(),
            &[
                ParamError::Hostname("___"),
                ParamError::Duplicate("hnroot.hostname"),
                ParamError::Hostname(""),
            ]
        );
    }

    #[test]
    fn error_list_is_bounded() {
        let line = "hnroot.a hnroot.b hnroot.c hnroot.d hnroot.e hnroot.f hnroot.g hnroot.h hnroot.i hnroot.j";
        let p = parse(line);
        assert_eq!(p.errors.len(), MAX_ERRORS);
        assert_eq!(p.more_errors, 2);
    }

    #[test]
    fn tries_are_digits_in_range_only() {
        assert_eq!(parse_tries("3"), Ok(3));
        assert_eq!(parse_tries("100"), Ok(100));
        for bad in ["0", "101", "3x", " 3", "+3", "", "-1", "1e2", "255", "256"] {
            assert_eq!(parse_tries(bad), Err(TriesError), "{bad:?}");
        }
    }

    #[test]
    fn kernel_args_text() {
        let a = KernelArgs {
            booted: Booted {
                name: ImageName::New,
                uuid: FsUuid::parse(U).unwrap(),
            },
            hostpart: Some(PartUuid::parse("0fc63daf-8483-4772-8e79-3d69d8477de4").unwrap()),
            esp: Some(PartUuid::parse("8f8378c0-01").unwrap()),
            tries: 5,
            reason: ReasonCode::Update,
            via: BootVia::Loader,
            root_hash: None,
        };
        assert_eq!(
            std::format!("{a}"),
            std::format!(
                "hnroot.image=hn-root-new.img hnroot.uuid={U} \
                 hnroot.hostpart=PARTUUID=0fc63daf-8483-4772-8e79-3d69d8477de4 \
                 hnroot.esp=PARTUUID=8f8378c0-01 hnroot.tries=5 hnroot.reason=update boot=hnroot"
            )
        );
        let b = KernelArgs {
            hostpart: None,
            esp: None,
            ..a
        };
        assert_eq!(
            std::format!("{b}"),
            std::format!(
                "hnroot.image=hn-root-new.img hnroot.uuid={U} hnroot.tries=5 hnroot.reason=update \
                 boot=hnroot"
            )
        );
        // A sealed image: its root hash, from the verified seal, for dm-verity.
        let c = KernelArgs {
            root_hash: Some([0xab; 32]),
            ..b
        };
        let text = std::format!("{c}");
        assert!(
            text.contains(&std::format!(" hnroot.roothash={} ", "ab".repeat(32))),
            "{text}"
        );
        assert_eq!(parse(&text).root_hash, Some([0xab; 32]));
        for bad in [
            "AB".repeat(32),
            "ab".repeat(31),
            "zz".repeat(32),
            std::string::String::new(),
        ] {
            let line = std::format!("hnroot.roothash={bad}");
            let p = parse(&line);
            assert_eq!(p.root_hash, None);
            assert_eq!(p.errors.as_slice(), &[ParamError::RootHash(&bad)]);
        }
    }

    #[test]
    fn a_kexec_boot_says_so_and_reads_back() {
        let a = KernelArgs {
            booted: Booted {
                name: ImageName::Current,
                uuid: FsUuid::parse(U).unwrap(),
            },
            hostpart: None,
            esp: None,
            tries: 3,
            reason: ReasonCode::Trial,
            via: BootVia::Kexec,
            root_hash: None,
        };
        let text = std::format!("{a}");
        assert!(
            text.ends_with(" hnroot.reason=trial hnroot.via=kexec boot=hnroot"),
            "{text}"
        );
        assert!(text.len() <= MAX_KERNEL_ARGS_LEN);
        let p = parse(&text);
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(p.via, Some(BootVia::Kexec));
        assert_eq!(p.booted, Some(a.booted));
        assert_eq!(p.reason, Some(ReasonCode::Trial));
        // The loader's line has no hnroot.via=; a word not in the vocabulary is refused.
        assert_eq!(parse("hnroot.reason=normal").via, None);
        let p = parse("hnroot.via=kexec2");
        assert_eq!(p.via, None);
        assert_eq!(p.errors.as_slice(), &[ParamError::Via("kexec2")]);
    }

    #[test]
    fn device_specs() {
        assert_eq!(
            DeviceSpec::parse("LABEL=hostpart"),
            Ok(DeviceSpec::Label("hostpart"))
        );
        assert_eq!(
            DeviceSpec::parse("UUID=ABCD-1234").map(|s| std::string::ToString::to_string(&s)),
            Ok(std::string::String::from("UUID=ABCD-1234"))
        );
        assert_eq!(DeviceSpec::parse("LABEL="), Err(SpecError::Label));
        assert_eq!(DeviceSpec::parse("hostpart"), Err(SpecError::Kind));
        assert_eq!(DeviceSpec::parse("LABEL=a\tb"), Err(SpecError::Label));
    }
}
