//! The fleet's GRUB menu countdown: how long GRUB shows its menu before it boots the image
//! `hnroot select` chose. Set at install (`hnroot install --menu-timeout S`) or by the
//! fleet's loader directory in its images (`/etc/hnroot/loader/menu-timeout`), built into the
//! loader's memdisk
//! (`(memdisk)/hnroot/menu-timeout`, GRUB's `hnroot select --menu-timeout-file`), which sets
//! `hnroot_menu_timeout` for `grub.cfg`. A loader update keeps the ESP's file when the images'
//! directory has none, as it keeps the counting file.
//!
//! It is a file of its own, not a key of the counting file, so that an older hnroot reading a
//! newer loader's counting file (a rollback to an older image runs `hnroot status`) finds
//! nothing it does not know there.
//!
//! The file is text: one whole number of seconds, 0 to [`MAX_SECONDS`]; blank lines and lines
//! starting with `#` are ignored. 0 boots at once: nobody can reach the menu, and the rescue
//! entry is then reached only by the fallback (nothing bootable). GRUB, refused a file, waits
//! [`DEFAULT_SECONDS`] and says so; the CLI refuses to build such a file into a loader.
//!
//! ```text
//! # /etc/hnroot/loader/menu-timeout
//! 5
//! ```

use core::fmt;

/// The file's name in the fleet's loader directory and under `(memdisk)/hnroot/`.
pub const FILE_NAME: &str = "menu-timeout";

/// The file in the loader's memdisk, as GRUB and [`crate::memdisk`] name it.
pub const MEMDISK_PATH: &str = "hnroot/menu-timeout";

/// The countdown without a file: long enough to press a key on a console that is watched,
/// short enough not to matter on one that is not.
pub const DEFAULT_SECONDS: u16 = 2;

/// The longest countdown the file may name: ten minutes.
pub const MAX_SECONDS: u16 = 600;

/// The largest file read.
pub const MAX_LEN: usize = 256;

/// Why a menu-timeout file was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Refused {
    /// Longer than [`MAX_LEN`].
    TooLong,
    /// No line with a number.
    Empty,
    /// The line (1-based) is not a whole number from 0 to [`MAX_SECONDS`].
    NotSeconds(u32),
    /// A second line with a value at this line (1-based).
    Twice(u32),
}

impl core::error::Error for Refused {}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::TooLong => write!(f, "longer than {MAX_LEN} bytes"),
            Refused::Empty => write!(f, "no number of seconds in it"),
            Refused::NotSeconds(line) => write!(
                f,
                "line {line}: expected a whole number of seconds from 0 to {MAX_SECONDS}"
            ),
            Refused::Twice(line) => {
                write!(f, "line {line}: a second value (the file holds one number)")
            }
        }
    }
}

/// `text` as a number of seconds: decimal digits, 0 to [`MAX_SECONDS`].
pub fn seconds(text: &[u8]) -> Option<u16> {
    if text.is_empty() || text.len() > 3 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // At most 3 digits: never near u16::MAX.
    let n = text.iter().fold(0u16, |n, b| {
        n.saturating_mul(10)
            .saturating_add(u16::from(b.wrapping_sub(b'0')))
    });
    (n <= MAX_SECONDS).then_some(n)
}

/// The countdown the file `text` names.
pub fn parse(text: &[u8]) -> Result<u16, Refused> {
    if text.len() > MAX_LEN {
        return Err(Refused::TooLong);
    }
    let mut found = None;
    for (i, raw) in text.split(|b| *b == b'\n').enumerate() {
        let line = u32::try_from(i).unwrap_or(u32::MAX).saturating_add(1);
        let trimmed = raw.trim_ascii();
        if matches!(trimmed.first(), None | Some(b'#')) {
            continue;
        }
        if found.is_some() {
            return Err(Refused::Twice(line));
        }
        found = Some(seconds(trimmed).ok_or(Refused::NotSeconds(line))?);
    }
    found.ok_or(Refused::Empty)
}

/// The file's text for a countdown of `seconds`: what [`parse`] reads back.
#[derive(Debug)]
pub struct Text(pub u16);

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "# GRUB's menu countdown in seconds, built into the loader (`hnroot install \
             --menu-timeout`)"
        )?;
        writeln!(f, "{}", self.0)
    }
}

/// For people: `the menu waits 2 s` or `the menu is skipped (0 s)`.
#[derive(Debug)]
pub struct Summary(pub u16);

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            write!(f, "the menu is skipped (0 s)")
        } else {
            write!(f, "the menu waits {} s", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn a_number_with_comments_and_blank_lines_is_read() {
        assert_eq!(parse(b"# fleet\n\n 5 \n"), Ok(5));
        assert_eq!(parse(b"0"), Ok(0));
        assert_eq!(parse(b"600\n"), Ok(MAX_SECONDS));
        for s in [0, 1, 2, 37, 600] {
            assert_eq!(parse(Text(s).to_string().as_bytes()), Ok(s));
        }
    }

    #[test]
    fn every_bad_file_is_refused_with_its_line() {
        let cases: &[(&[u8], Refused)] = &[
            (b"", Refused::Empty),
            (b"# only a comment\n\n", Refused::Empty),
            (b"601\n", Refused::NotSeconds(1)),
            (b"\n-1\n", Refused::NotSeconds(2)),
            (b"2s\n", Refused::NotSeconds(1)),
            (b"0002\n", Refused::NotSeconds(1)),
            (b"timeout=2\n", Refused::NotSeconds(1)),
            (b"2\n3\n", Refused::Twice(2)),
        ];
        for (text, refused) in cases {
            assert_eq!(
                parse(text),
                Err(*refused),
                "{:?}",
                core::str::from_utf8(text)
            );
        }
        assert_eq!(parse(&[b'#'; MAX_LEN + 1]), Err(Refused::TooLong));
        assert_eq!(
            Refused::NotSeconds(3).to_string(),
            "line 3: expected a whole number of seconds from 0 to 600"
        );
    }

    #[test]
    fn whatever_the_bytes_the_countdown_is_in_range_or_refused() {
        let alphabet = b"#\n 0169x\xff";
        for a in alphabet {
            for b in alphabet {
                for c in alphabet {
                    for d in alphabet {
                        if let Ok(s) = parse(&[*a, *b, *c, *d]) {
                            assert!(s <= MAX_SECONDS);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_summary_says_when_the_menu_is_skipped() {
        assert_eq!(Summary(0).to_string(), "the menu is skipped (0 s)");
        assert_eq!(Summary(2).to_string(), "the menu waits 2 s");
    }
}
