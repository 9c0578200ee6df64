//! The whole kernel command line of a boot: hnroot's own words ([`KernelArgs`], which only
//! hnroot writes), then the fleet's defaults (built into the loader), the image's own arguments
//! (a file in the image, [`layout::IMAGE_ARGS_PATH`]) and the host's
//! ([`layout::HOST_ARGS_PATH`] in its host state on hostpart). GRUB composes it for the image it
//! boots and for its fallback; the CLI shows the same line (`hnroot explain`). Nothing is read
//! here: the drivers hand over what they found.
//!
//! The rules:
//! * A file holds words separated by blanks or newlines; a line whose first word starts with
//!   `#` is a comment.
//! * A word may only use `[A-Za-z0-9._,:=/+@%-]` (no quotes: GRUB passes the line without
//!   re-reading it) and be at most [`MAX_WORD_LEN`] bytes. A word whose key (the part before
//!   `=`) is hnroot's (`hnroot.*`, `boot`) or chooses the root or its init (`root`, `init`) is
//!   refused: those are hnroot's to set. Refused words are named in the decision record and on
//!   the console; the boot goes on without them.
//! * A later source overrides an earlier one key by key: a default `console=ttyS0` is dropped
//!   when the image or the host sets `console=`; the host overrides the image the same way.
//!   Within one source, every word stands as written (two `console=` give two consoles).
//! * The line stays below the kernel's limit ([`MAX_LINE_LEN`]); a word that does not fit is
//!   refused.

use core::fmt;

use heapless::Vec;

use crate::cmdline::{BootVia, KernelArgs};
use crate::decide::ReasonCode;
use crate::layout;
use crate::name::ImageName;
use crate::plan::Booted;
use crate::uuid::PartUuid;

/// Most bytes of one arguments file a driver reads; a longer file is refused whole
/// ([`ArgsFile::TooLong`]).
pub const MAX_ARGS_FILE_LEN: usize = 1024;
/// Longest word accepted.
pub const MAX_WORD_LEN: usize = 256;
/// Longest whole line (x86's `COMMAND_LINE_SIZE` is 2048 with its NUL; GRUB adds
/// `BOOT_IMAGE=...` in front).
pub const MAX_LINE_LEN: usize = 1792;
/// Most refusals listed; more are counted.
pub const MAX_REFUSED: usize = 8;
/// The loader's built-in default kernel arguments: what `grub.cfg` passes as `hnroot select
/// --defaults` (a test holds the two equal). The fleet's file replaces them ([`defaults`]).
pub const LOADER_DEFAULTS: &str = "console=ttyS0 panic=10";

crate::codes::stable_codes! {
    /// Where extra kernel arguments come from, in the order they are applied.
    pub enum ArgsSource {
        /// The fleet's defaults, built into the loader (`console=ttyS0 panic=10` unless the
        /// install says otherwise).
        Defaults = 1 => "defaults",
        /// The image's own file.
        Image = 2 => "image",
        /// The host's file in its host state.
        Host = 3 => "host",
    }
}

crate::codes::stable_codes! {
    /// Why a word was refused.
    pub enum WordRefusal {
        /// Its key is hnroot's or chooses the root or init (`hnroot.*`, `boot`, `root`, `init`).
        Reserved = 1 => "reserved",
        /// It has a character outside `[A-Za-z0-9._,:=/+@%-]`.
        Characters = 2 => "characters",
        /// It is longer than [`MAX_WORD_LEN`].
        TooLong = 3 => "too-long",
        /// It does not fit on the line any more.
        LineFull = 4 => "line-full",
    }
}

/// What a driver found at one source.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum ArgsFile<'a> {
    /// No such file: nothing to add.
    #[default]
    Absent,
    /// Something is there that could not be read as a file: nothing is added, and it is said.
    Unreadable,
    /// Longer than [`MAX_ARGS_FILE_LEN`]: nothing is added, and it is said.
    TooLong,
    /// Its bytes.
    Text(&'a [u8]),
}

/// The defaults of a boot: the fleet's file when the loader carries one
/// ([`layout::FLEET_ARGS_NAME`]), else the loader's built-in defaults. A fleet file that is there
/// but unusable is reported as such (its words are not guessed at) and the built-in defaults
/// are not used in its place either: the record says `defaults:unusable`.
pub fn defaults<'a>(fleet: ArgsFile<'a>, builtin: ArgsFile<'a>) -> ArgsFile<'a> {
    match fleet {
        ArgsFile::Absent => builtin,
        other => other,
    }
}

/// The extra arguments of one boot.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Extra<'a> {
    /// The fleet's defaults.
    pub defaults: ArgsFile<'a>,
    /// The booted image's file.
    pub image: ArgsFile<'a>,
    /// The host's file.
    pub host: ArgsFile<'a>,
}

/// A word that was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Refused<'a> {
    /// Where it came from.
    pub source: ArgsSource,
    /// Its key (the part before `=`), as much as is printable and at most 32 bytes.
    pub key: &'a str,
    /// Why.
    pub why: WordRefusal,
}

/// What composing the line noticed.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Composed<'a> {
    /// Sources that added at least one word, in order.
    pub used: Vec<ArgsSource, 3>,
    /// Sources that were there but unusable (unreadable or too long).
    pub unusable: Vec<ArgsSource, 3>,
    /// Refused words (the first [`MAX_REFUSED`]).
    pub refused: Vec<Refused<'a>, MAX_REFUSED>,
    /// Refused words beyond those.
    pub more_refused: usize,
}

impl Composed<'_> {
    /// As stable `key=value` words for the decision record: `args=defaults,image
    /// refused=image:init`.
    pub fn record(&self) -> ComposedRecord<'_, '_> {
        ComposedRecord(self)
    }
}

/// See [`Composed::record`].
#[derive(Clone, Copy, Debug)]
pub struct ComposedRecord<'c, 'a>(&'c Composed<'a>);

impl fmt::Display for ComposedRecord<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        f.write_str("args=")?;
        crate::codes::write_codes(f, c.used.iter().map(|s| s.code()))?;
        f.write_str(" refused=")?;
        if c.refused.is_empty() && c.unusable.is_empty() {
            return f.write_str("-");
        }
        let mut first = true;
        for s in &c.unusable {
            write!(f, "{}{s}:unusable", if first { "" } else { "," })?;
            first = false;
        }
        for r in &c.refused {
            write!(f, "{}{}:{}", if first { "" } else { "," }, r.source, r.key)?;
            first = false;
        }
        if c.more_refused > 0 {
            write!(f, ",+{}", c.more_refused)?;
        }
        Ok(())
    }
}

impl fmt::Display for Composed<'_> {
    /// The refusals as sentences for the console, `;`-separated (empty when there are none).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| -> fmt::Result {
            let s = if first { "" } else { "; " };
            first = false;
            f.write_str(s)
        };
        for s in &self.unusable {
            sep(f)?;
            write!(
                f,
                "the {s}'s kernel arguments ({}) are unreadable or longer than {MAX_ARGS_FILE_LEN} \
                 bytes: none of them is used",
                source_path(*s)
            )?;
        }
        for r in &self.refused {
            sep(f)?;
            write!(
                f,
                "kernel argument {}{} from the {} ({}) refused: {}",
                r.key,
                if r.why == WordRefusal::Reserved {
                    "="
                } else {
                    ""
                },
                r.source,
                source_path(r.source),
                match r.why {
                    WordRefusal::Reserved => "hnroot sets the root, its init and hnroot.* itself",
                    WordRefusal::Characters => "only [A-Za-z0-9._,:=/+@%-] may be used",
                    WordRefusal::TooLong => "longer than 256 bytes",
                    WordRefusal::LineFull => "the kernel command line is full",
                }
            )?;
        }
        if self.more_refused > 0 {
            sep(f)?;
            write!(f, "{} more kernel arguments refused", self.more_refused)?;
        }
        Ok(())
    }
}

/// Where a source's words live, for messages.
pub const fn source_path(source: ArgsSource) -> &'static str {
    match source {
        ArgsSource::Defaults => "the loader's defaults",
        ArgsSource::Image => layout::IMAGE_ARGS_PATH,
        ArgsSource::Host => layout::HOST_ARGS_PATH,
    }
}

/// Keys only hnroot may set.
fn reserved(key: &str) -> bool {
    key.starts_with("hnroot.") || matches!(key, "boot" | "root" | "init")
}

fn word_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._,:=/+@%-".contains(&b)
}

/// The key of a word: the part before `=`.
fn key_of(word: &str) -> &str {
    word.split_once('=').map_or(word, |(k, _)| k)
}

/// The words of a file: blank-separated, comment lines (first word starting with `#`) left out.
fn words(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|&b| b == b'\n').flat_map(|line| {
        let mut ws = line
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty())
            .peekable();
        let comment = ws.peek().is_some_and(|w| w.first() == Some(&b'#'));
        ws.filter(move |_| !comment)
    })
}

/// The printable start of a refused word's key, at most 32 bytes.
fn printable_key(word: &[u8]) -> &str {
    let end = word
        .iter()
        .position(|&b| b == b'=' || !word_char(b))
        .unwrap_or(word.len())
        .min(32);
    core::str::from_utf8(word.get(..end).unwrap_or(&[])).unwrap_or("")
}

/// Whether a word of `source` with key `key` is overridden by a later source.
fn overridden(key: &str, source: ArgsSource, extra: &Extra<'_>) -> bool {
    let later: &[ArgsFile<'_>] = match source {
        ArgsSource::Defaults => &[extra.image, extra.host],
        ArgsSource::Image => &[extra.host],
        ArgsSource::Host => &[],
    };
    later.iter().any(|file| match file {
        ArgsFile::Text(t) => words(t)
            .any(|w| core::str::from_utf8(w).is_ok_and(|w| accept(w).is_ok() && key_of(w) == key)),
        _ => false,
    })
}

/// Whether a word may stand on the line (the line's length aside).
fn accept(word: &str) -> Result<(), WordRefusal> {
    if word.len() > MAX_WORD_LEN {
        return Err(WordRefusal::TooLong);
    }
    if !word.bytes().all(word_char) {
        return Err(WordRefusal::Characters);
    }
    if reserved(key_of(word)) {
        return Err(WordRefusal::Reserved);
    }
    Ok(())
}

/// Everything a boot's command line is made of besides the choice itself: where hostpart and
/// the ESP are (their PARTUUIDs), each image's own arguments, the defaults and the host's. GRUB
/// (through the FFI) and `hnroot reboot` (for a kexec) fill it from what they observed and
/// compose the line of the image the decision chose with [`compose_for`]: one composition for
/// both ways of starting a kernel.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct BootParts<'a> {
    /// hostpart's PARTUUID, when it has one.
    pub hostpart: Option<PartUuid>,
    /// The ESP's PARTUUID, when it has one.
    pub esp: Option<PartUuid>,
    /// Each image's own arguments, by [`ImageName::index`].
    pub images: [ArgsFile<'a>; ImageName::ALL.len()],
    /// The defaults (see [`defaults`]).
    pub defaults: ArgsFile<'a>,
    /// The host's.
    pub host: ArgsFile<'a>,
    /// Each image's dm-verity root hash, by [`ImageName::index`], when its seal held for the
    /// loader (`hnroot.roothash=` on its line: `hnroot-init` maps it through dm-verity).
    pub root_hashes: [Option<[u8; 32]>; ImageName::ALL.len()],
}

/// The whole line for booting `image` (UUID `uuid`) for `reason`, started `via` the loader or
/// a kexec, with `tries` for a trial: hnroot's words, then the defaults, the image's own and
/// the host's arguments ([`compose`]). Says what composing it noticed.
pub fn compose_for<'a>(
    out: &mut dyn fmt::Write,
    booted: Booted,
    reason: ReasonCode,
    via: BootVia,
    parts: &BootParts<'a>,
    tries: u8,
) -> Result<Composed<'a>, fmt::Error> {
    let args = KernelArgs {
        booted,
        hostpart: parts.hostpart,
        esp: parts.esp,
        tries,
        reason,
        via,
        root_hash: parts
            .root_hashes
            .get(booted.name.index())
            .copied()
            .flatten(),
    };
    let extra = Extra {
        defaults: parts.defaults,
        image: parts
            .images
            .get(booted.name.index())
            .copied()
            .unwrap_or_default(),
        host: parts.host,
    };
    compose(&args, &extra, out)
}

/// Counts what is written, to keep the line below [`MAX_LINE_LEN`].
struct Counting<'w> {
    out: &'w mut dyn fmt::Write,
    len: usize,
}

impl fmt::Write for Counting<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.len = self.len.saturating_add(s.len());
        self.out.write_str(s)
    }
}

/// Write the whole line for booting with `hnroot` (its own words) and `extra` into `out`, and
/// say what was used and refused.
pub fn compose<'a>(
    hnroot: &KernelArgs,
    extra: &Extra<'a>,
    out: &mut dyn fmt::Write,
) -> Result<Composed<'a>, fmt::Error> {
    let mut line = Counting { out, len: 0 };
    fmt::Write::write_fmt(&mut line, format_args!("{hnroot}"))?;
    let mut c = Composed::default();
    let sources = [
        (ArgsSource::Defaults, extra.defaults),
        (ArgsSource::Image, extra.image),
        (ArgsSource::Host, extra.host),
    ];
    for (source, file) in sources {
        let text = match file {
            ArgsFile::Absent => continue,
            ArgsFile::Unreadable | ArgsFile::TooLong => {
                // Three sources, three slots.
                let _ = c.unusable.push(source);
                continue;
            }
            ArgsFile::Text(t) if t.len() > MAX_ARGS_FILE_LEN => {
                let _ = c.unusable.push(source);
                continue;
            }
            ArgsFile::Text(t) => t,
        };
        let mut used = false;
        for word in words(text) {
            let checked = core::str::from_utf8(word)
                .map_err(|_| WordRefusal::Characters)
                .and_then(|w| accept(w).map(|()| w))
                .and_then(|w| {
                    if line.len.saturating_add(1).saturating_add(w.len()) > MAX_LINE_LEN {
                        Err(WordRefusal::LineFull)
                    } else {
                        Ok(w)
                    }
                });
            match checked {
                Ok(w) if overridden(key_of(w), source, extra) => {}
                Ok(w) => {
                    fmt::Write::write_str(&mut line, " ")?;
                    fmt::Write::write_str(&mut line, w)?;
                    used = true;
                }
                Err(why) => {
                    let refused = Refused {
                        source,
                        key: printable_key(word),
                        why,
                    };
                    if c.refused.push(refused).is_err() {
                        c.more_refused = c.more_refused.saturating_add(1);
                    }
                }
            }
        }
        if used {
            let _ = c.used.push(source);
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uuid::FsUuid;
    use std::string::String;

    fn hnroot() -> KernelArgs {
        KernelArgs {
            booted: Booted {
                name: ImageName::Current,
                uuid: FsUuid::Uuid([0xa; 16]),
            },
            hostpart: None,
            esp: None,
            tries: 3,
            reason: ReasonCode::Normal,
            via: BootVia::Loader,
            root_hash: None,
        }
    }

    #[test]
    fn grub_cfg_passes_the_loader_defaults_this_module_names() {
        let cfg = include_str!("../../grub-module/grub.cfg");
        let wanted = std::format!("hnroot select --defaults \"{LOADER_DEFAULTS}\"");
        assert!(cfg.contains(&wanted), "grub.cfg lacks {wanted:?}");
    }

    #[test]
    fn a_sealed_images_root_hash_goes_on_its_own_line_only() {
        let mut parts = BootParts::default();
        parts.root_hashes[ImageName::New.index()] = Some([0xcd; 32]);
        let line_of = |name| {
            let mut s = String::new();
            let booted = Booted {
                name,
                uuid: FsUuid::Uuid([0xb; 16]),
            };
            compose_for(
                &mut s,
                booted,
                ReasonCode::Update,
                BootVia::Loader,
                &parts,
                3,
            )
            .unwrap();
            s
        };
        let new = line_of(ImageName::New);
        let word = std::format!("hnroot.roothash={}", "cd".repeat(32));
        assert!(new.split(' ').any(|w| w == word), "{new}");
        assert_eq!(crate::cmdline::parse(&new).root_hash, Some([0xcd; 32]));
        let current = line_of(ImageName::Current);
        assert!(!current.contains("hnroot.roothash="), "{current}");
    }

    #[test]
    fn a_kexec_line_is_the_loaders_line_with_one_more_word() {
        let mut parts = BootParts {
            defaults: defaults(ArgsFile::Absent, ArgsFile::Text(LOADER_DEFAULTS.as_bytes())),
            host: ArgsFile::Text(b"hnroot-test=1"),
            ..BootParts::default()
        };
        parts.images[ImageName::New.index()] = ArgsFile::Text(b"no_timer_check");
        let b = Booted {
            name: ImageName::New,
            uuid: FsUuid::Uuid([0xb; 16]),
        };
        let mut grub = String::new();
        let c = compose_for(&mut grub, b, ReasonCode::Update, BootVia::Loader, &parts, 3).unwrap();
        let mut kexec = String::new();
        let k = compose_for(&mut kexec, b, ReasonCode::Update, BootVia::Kexec, &parts, 3).unwrap();
        assert_eq!(c, k);
        assert_eq!(
            kexec,
            grub.replace(" boot=hnroot", " hnroot.via=kexec boot=hnroot")
        );
        assert!(
            grub.ends_with("boot=hnroot console=ttyS0 panic=10 no_timer_check hnroot-test=1"),
            "{grub}"
        );
    }

    fn line(extra: &Extra<'_>) -> (String, std::string::String, std::string::String) {
        let mut s = String::new();
        let c = compose(&hnroot(), extra, &mut s).unwrap();
        let tail = s
            .split_once(" boot=hnroot")
            .map(|(_, t)| t.trim_start().into())
            .unwrap();
        (tail, std::format!("{}", c.record()), std::format!("{c}"))
    }

    #[test]
    fn defaults_stand_until_the_image_or_the_host_sets_their_key() {
        let defaults = ArgsFile::Text(b"console=ttyS0 panic=10");
        let (tail, record, _) = line(&Extra {
            defaults,
            ..Extra::default()
        });
        assert_eq!(tail, "console=ttyS0 panic=10");
        assert_eq!(record, "args=defaults refused=-");
        let (tail, record, _) = line(&Extra {
            defaults,
            image: ArgsFile::Text(b"# the fleet's serial console\nconsole=ttyS1,115200\n"),
            host: ArgsFile::Text(b"hnroot-test=1\n"),
        });
        assert_eq!(tail, "panic=10 console=ttyS1,115200 hnroot-test=1");
        assert_eq!(record, "args=defaults,image,host refused=-");
        // The host overrides the image key by key.
        let (tail, _, _) = line(&Extra {
            defaults,
            image: ArgsFile::Text(b"console=ttyS1 mitigations=off"),
            host: ArgsFile::Text(b"mitigations=auto"),
        });
        assert_eq!(tail, "panic=10 console=ttyS1 mitigations=auto");
    }

    #[test]
    fn the_fleets_defaults_replace_the_loaders() {
        let builtin = ArgsFile::Text(b"console=ttyS0 panic=10");
        assert_eq!(defaults(ArgsFile::Absent, builtin), builtin);
        let fleet = ArgsFile::Text(b"console=ttyS1,115200 panic=30");
        assert_eq!(defaults(fleet, builtin), fleet);
        assert_eq!(defaults(ArgsFile::TooLong, builtin), ArgsFile::TooLong);
        let (tail, record, _) = line(&Extra {
            defaults: defaults(fleet, builtin),
            ..Extra::default()
        });
        assert_eq!(tail, "console=ttyS1,115200 panic=30");
        assert_eq!(record, "args=defaults refused=-");
    }

    #[test]
    fn what_only_hnroot_may_set_is_refused_and_named() {
        let (tail, record, text) = line(&Extra {
            image: ArgsFile::Text(b"hnroot.image=hn-root-old.img quiet init=/bin/sh"),
            host: ArgsFile::Text(b"root=/dev/sda1 boot=local x=\"a b\""),
            ..Extra::default()
        });
        assert_eq!(tail, "quiet");
        assert_eq!(
            record,
            "args=image refused=image:hnroot.image,image:init,host:root,host:boot,host:x,host:b"
        );
        assert!(
            text.contains(
                "kernel argument init= from the image (usr/lib/hnroot/kernel-args) refused"
            ),
            "{text}"
        );
    }

    #[test]
    fn unusable_files_add_nothing_and_the_line_has_a_bound() {
        let (tail, record, text) = line(&Extra {
            image: ArgsFile::Unreadable,
            host: ArgsFile::TooLong,
            ..Extra::default()
        });
        assert_eq!(tail, "");
        assert_eq!(record, "args=- refused=image:unusable,host:unusable");
        assert!(
            text.contains("unreadable or longer than 1024 bytes"),
            "{text}"
        );
        let mut many = String::new();
        for i in 0..200 {
            many.push_str(&std::format!("k{i:03}=0123456789 "));
        }
        let big = many.as_bytes();
        let mut s = String::new();
        let c = compose(
            &hnroot(),
            &Extra {
                image: ArgsFile::Text(&big[..1000]),
                host: ArgsFile::Text(&big[1000..2000]),
                ..Extra::default()
            },
            &mut s,
        )
        .unwrap();
        assert!(s.len() <= MAX_LINE_LEN, "{}", s.len());
        assert!(c.refused.iter().all(|r| r.why == WordRefusal::LineFull));
        assert!(!c.refused.is_empty());
    }
}
