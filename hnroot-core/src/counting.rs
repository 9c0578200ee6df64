//! The fleet's counting settings: how many boots a new image gets on trial (`tries`), how many
//! counted boots of a committed image without reaching healthy before GRUB boots the other
//! one (`boot-limit`, K), and the waits once every committed image has failed (`wait-first`,
//! `wait-max`). They are set at install (`hnroot install --tries N --boot-limit K ...`) and
//! kept in the fleet's loader directory (`/etc/hnroot/loader/counting`), which `hnroot
//! install` and `hnroot bootloader update` build into the loader's memdisk
//! (`(memdisk)/hnroot/counting`, GRUB's `hnroot select --counting-file`); `hnroot status` and
//! `hnroot reboot` read the same file from the ESP's loader, so GRUB, the CLI's predictions
//! and the loader agree on K.
//!
//! The file is text, one `key=value` per line; blank lines and lines starting with `#` are
//! ignored; a key left out keeps its default ([`Config::default`]). Every value is checked:
//! an unknown key, a key given twice, or a number out of its range is refused, with the line
//! named. GRUB, refused a file, counts with the defaults and says so (a damaged file never
//! strands a server); the CLI refuses to build such a file into a loader.
//!
//! ```text
//! # /etc/hnroot/loader/counting
//! tries=3
//! boot-limit=2
//! wait-first=60
//! wait-max=1800
//! ```

use core::fmt;

use crate::bootstate::{MAX_BOOT_LIMIT, MAX_TRIES};
use crate::decide::Config;

/// The file's name in the fleet's loader directory and under `(memdisk)/hnroot/`.
pub const FILE_NAME: &str = "counting";

/// The file in the loader's memdisk, as GRUB and [`crate::memdisk`] name it.
pub const MEMDISK_PATH: &str = "hnroot/counting";

/// The largest file read (a few short lines are all it holds).
pub const MAX_LEN: usize = 1024;

/// The longest wait either setting may name: a day, in seconds (GRUB's `--wait-first` and
/// `--wait-max` take the same range).
pub const MAX_WAIT: u32 = 86_400;

/// One setting of the file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Key {
    /// `tries`: 1 to [`MAX_TRIES`].
    Tries,
    /// `boot-limit`: 1 to [`MAX_BOOT_LIMIT`].
    BootLimit,
    /// `wait-first`: 1 to [`MAX_WAIT`] seconds.
    WaitFirst,
    /// `wait-max`: 1 to [`MAX_WAIT`] seconds.
    WaitMax,
}

const KEYS: [Key; 4] = [Key::Tries, Key::BootLimit, Key::WaitFirst, Key::WaitMax];

impl Key {
    /// The key as the file spells it.
    pub const fn name(self) -> &'static str {
        match self {
            Key::Tries => "tries",
            Key::BootLimit => "boot-limit",
            Key::WaitFirst => "wait-first",
            Key::WaitMax => "wait-max",
        }
    }

    /// The largest value the key takes (the smallest is 1).
    pub const fn max(self) -> u32 {
        match self {
            Key::Tries => MAX_TRIES as u32,
            Key::BootLimit => MAX_BOOT_LIMIT as u32,
            Key::WaitFirst | Key::WaitMax => MAX_WAIT,
        }
    }

    const fn bit(self) -> u8 {
        match self {
            Key::Tries => 1,
            Key::BootLimit => 2,
            Key::WaitFirst => 4,
            Key::WaitMax => 8,
        }
    }

    /// The value `text` names, checked: decimal digits, from 1 to [`Key::max`].
    pub fn value(self, text: &[u8]) -> Result<u32, Problem> {
        let mut n: u32 = 0;
        if text.is_empty() || text.len() > 6 {
            return Err(Problem::Value(self));
        }
        for b in text {
            if !b.is_ascii_digit() {
                return Err(Problem::Value(self));
            }
            // At most 6 digits: never near u32::MAX.
            n = n
                .saturating_mul(10)
                .saturating_add(u32::from(b.wrapping_sub(b'0')));
        }
        if n == 0 || n > self.max() {
            return Err(Problem::Value(self));
        }
        Ok(n)
    }
}

/// What is wrong with a counting file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Problem {
    /// Longer than [`MAX_LEN`].
    TooLong,
    /// A line that is not `key=value` with a known key.
    UnknownKey,
    /// A key given twice.
    Twice(Key),
    /// A value that is not a whole number in the key's range.
    Value(Key),
}

/// A [`Problem`] and the line (1-based) where it is; line 0 for the whole file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Refused {
    /// The line, 1-based (0: the whole file).
    pub line: u32,
    /// What is wrong there.
    pub problem: Problem,
}

impl core::error::Error for Refused {}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problem {
            Problem::TooLong => write!(f, "longer than {MAX_LEN} bytes"),
            Problem::UnknownKey => write!(
                f,
                "line {}: expected key=value with a key of tries, boot-limit, wait-first, \
                 wait-max",
                self.line
            ),
            Problem::Twice(k) => write!(f, "line {}: {} given twice", self.line, k.name()),
            Problem::Value(k) => write!(
                f,
                "line {}: {} must be a whole number from 1 to {}",
                self.line,
                k.name(),
                k.max()
            ),
        }
    }
}

/// The settings `text` names, over the defaults ([`Config::default`]).
pub fn parse(text: &[u8]) -> Result<Config, Refused> {
    if text.len() > MAX_LEN {
        return Err(Refused {
            line: 0,
            problem: Problem::TooLong,
        });
    }
    let mut config = Config::default();
    let mut seen = 0u8;
    for (i, raw) in text.split(|b| *b == b'\n').enumerate() {
        let line = u32::try_from(i).unwrap_or(u32::MAX).saturating_add(1);
        let refuse = |problem| Refused { line, problem };
        let trimmed = trim(raw);
        if matches!(trimmed.first(), None | Some(b'#')) {
            continue;
        }
        let mut halves = trimmed.splitn(2, |b| *b == b'=');
        let (Some(name), Some(value)) = (halves.next(), halves.next()) else {
            return Err(refuse(Problem::UnknownKey));
        };
        let (name, value) = (trim(name), trim(value));
        let Some(key) = KEYS.iter().copied().find(|k| k.name().as_bytes() == name) else {
            return Err(refuse(Problem::UnknownKey));
        };
        if seen & key.bit() != 0 {
            return Err(refuse(Problem::Twice(key)));
        }
        seen |= key.bit();
        let n = key.value(value).map_err(refuse)?;
        // In range by Key::value: the narrowing never saturates.
        match key {
            Key::Tries => config.tries = u8::try_from(n).unwrap_or(MAX_TRIES),
            Key::BootLimit => config.boot_limit = u8::try_from(n).unwrap_or(MAX_BOOT_LIMIT),
            Key::WaitFirst => config.wait_first = n,
            Key::WaitMax => config.wait_max = n,
        }
    }
    Ok(config)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !first.is_ascii_whitespace() {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !last.is_ascii_whitespace() {
            break;
        }
        s = rest;
    }
    s
}

/// The file's text for `config`, every key written: what [`parse`] reads back as `config`.
#[derive(Debug)]
pub struct Text<'a>(pub &'a Config);

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        writeln!(
            f,
            "# hnroot's counting settings, built into the loader (see `hnroot install --help`)"
        )?;
        writeln!(f, "tries={}", c.tries)?;
        writeln!(f, "boot-limit={}", c.boot_limit)?;
        writeln!(f, "wait-first={}", c.wait_first)?;
        writeln!(f, "wait-max={}", c.wait_max)
    }
}

/// One line for people: `tries 3, boot limit 2, waits 60 s doubling to 1800 s`.
#[derive(Debug)]
pub struct Summary<'a>(pub &'a Config);

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        write!(
            f,
            "tries {}, boot limit {}, waits {} s doubling to {} s",
            c.tries, c.boot_limit, c.wait_first, c.wait_max
        )
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn a_file_sets_what_it_names_and_keeps_the_defaults_for_the_rest() {
        let c = parse(b"# fleet\n\nboot-limit=2\n  wait-first = 30 \n").unwrap();
        assert_eq!(
            c,
            Config {
                boot_limit: 2,
                wait_first: 30,
                ..Config::default()
            }
        );
        assert_eq!(parse(b"").unwrap(), Config::default());
    }

    #[test]
    fn the_written_text_reads_back_as_the_same_settings() {
        let c = Config {
            tries: 100,
            boot_limit: 1,
            wait_first: 86_400,
            wait_max: 1,
        };
        assert_eq!(parse(Text(&c).to_string().as_bytes()).unwrap(), c);
        let d = Config::default();
        assert_eq!(parse(Text(&d).to_string().as_bytes()).unwrap(), d);
    }

    #[test]
    fn every_bad_line_is_refused_with_its_number() {
        let cases: &[(&[u8], u32, Problem)] = &[
            (b"tries=3\nlimit=2\n", 2, Problem::UnknownKey),
            (b"boot-limit\n", 1, Problem::UnknownKey),
            (b"tries=3\ntries=4\n", 2, Problem::Twice(Key::Tries)),
            (b"tries=0\n", 1, Problem::Value(Key::Tries)),
            (b"tries=101\n", 1, Problem::Value(Key::Tries)),
            (b"boot-limit=-1\n", 1, Problem::Value(Key::BootLimit)),
            (b"\n\nwait-max=86401\n", 3, Problem::Value(Key::WaitMax)),
            (b"wait-first=\n", 1, Problem::Value(Key::WaitFirst)),
            (
                b"wait-first=9999999999\n",
                1,
                Problem::Value(Key::WaitFirst),
            ),
            (b"tries=3x\n", 1, Problem::Value(Key::Tries)),
        ];
        for (text, line, problem) in cases {
            assert_eq!(
                parse(text),
                Err(Refused {
                    line: *line,
                    problem: *problem
                }),
                "{:?}",
                core::str::from_utf8(text)
            );
        }
        let long = [b'#'; MAX_LEN + 1];
        assert_eq!(parse(&long).unwrap_err().problem, Problem::TooLong);
        let said = parse(b"boot-limit=200").unwrap_err().to_string();
        assert_eq!(
            said,
            "line 1: boot-limit must be a whole number from 1 to 100"
        );
    }

    #[test]
    fn whatever_the_bytes_a_setting_is_in_range_or_a_line_is_named() {
        // Every 4-byte sequence over the bytes the format cares about.
        let alphabet = b"=#\n 0159-tabdeimlrsfwx\xff";
        for a in alphabet {
            for b in alphabet {
                for c in alphabet {
                    for d in alphabet {
                        let text = [*a, *b, *c, *d];
                        let lines = text.iter().filter(|x| **x == b'\n').count() as u32 + 1;
                        match parse(&text) {
                            Ok(c) => assert!(
                                (1..=MAX_TRIES).contains(&c.tries)
                                    && (1..=MAX_BOOT_LIMIT).contains(&c.boot_limit)
                                    && (1..=MAX_WAIT).contains(&c.wait_first)
                                    && (1..=MAX_WAIT).contains(&c.wait_max),
                                "{text:?} -> {c:?}"
                            ),
                            Err(r) => assert!(
                                (1..=lines).contains(&r.line),
                                "{text:?} -> line {}",
                                r.line
                            ),
                        }
                    }
                }
            }
        }
    }
}
