//! Labels as raw bytes, cut and trimmed the way libblkid stores `LABEL`, `LABEL_FATBOOT` and
//! `PARTLABEL`. A label is not necessarily UTF-8 (a FAT label is in the volume's OEM code page).

use core::fmt;

use heapless::Vec;

/// Most bytes a label can hold: the btrfs label field (256 bytes).
pub const LABEL_CAPACITY: usize = 256;

/// A filesystem or partition label: raw bytes, never empty, at most [`LABEL_CAPACITY`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Label(Vec<u8, LABEL_CAPACITY>);

/// How libblkid trims a label field.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Trim {
    /// `blkid_probe_set_label`: cut at the first NUL, drop trailing white space.
    Right,
    /// `blkid_probe_set_id_label` (`LABEL_FATBOOT`): also drop leading white space.
    Both,
}

/// `isspace()` in the C locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

impl Label {
    /// The label of an on-disk field: bytes up to the first NUL, white space trimmed as
    /// `trim` says; `None` when nothing is left (libblkid then reports no label at all).
    pub(crate) fn from_field(field: &[u8], trim: Trim) -> Option<Label> {
        let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
        let mut text = field.get(..end).unwrap_or(&[]);
        while let Some((&last, rest)) = text.split_last() {
            if !is_c_space(last) {
                break;
            }
            text = rest;
        }
        if trim == Trim::Both {
            while let Some((&first, rest)) = text.split_first() {
                if !is_c_space(first) {
                    break;
                }
                text = rest;
            }
        }
        Label::from_bytes(text)
    }

    /// A label holding exactly `bytes`; `None` if empty or longer than [`LABEL_CAPACITY`].
    pub fn from_bytes(bytes: &[u8]) -> Option<Label> {
        if bytes.is_empty() {
            return None;
        }
        Vec::from_slice(bytes).ok().map(Label)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The label as text, if it is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        core::str::from_utf8(&self.0).ok()
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Label(\"{}\")", self)
    }
}

/// Safe to print anywhere (a serial console, a log line, a quoted message): printable UTF-8 as
/// is; control characters, DEL, quotes, backslashes and bytes that are not UTF-8 as `\xNN`, as
/// blkid encodes its `_ENC` values. A label read from any disk cannot move the cursor, end a
/// quoted word or fake a log line.
impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                if c.is_control() || matches!(c, '\\' | '\'' | '"') {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        write!(f, "\\x{b:02x}")?;
                    }
                } else {
                    write!(f, "{c}")?;
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
// Test fixtures compute offsets freely; a panic there is a failed test.
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn trims_like_libblkid() {
        let l = Label::from_field(b"EFI-BOOT   ", Trim::Right).unwrap();
        assert_eq!(l.as_bytes(), b"EFI-BOOT");
        let l = Label::from_field(b"  LEAD  X  ", Trim::Both).unwrap();
        assert_eq!(l.as_bytes(), b"LEAD  X");
        let l = Label::from_field(b"  LEAD  X  ", Trim::Right).unwrap();
        assert_eq!(l.as_bytes(), b"  LEAD  X");
        let l = Label::from_field(b"ab\0cd", Trim::Right).unwrap();
        assert_eq!(l.as_bytes(), b"ab");
        assert_eq!(Label::from_field(b"   \t ", Trim::Right), None);
        assert_eq!(Label::from_field(b"\0abc", Trim::Right), None);
        assert_eq!(Label::from_field(b"", Trim::Both), None);
    }

    #[test]
    fn non_utf8_is_kept_raw() {
        let l = Label::from_field(&[0xe5, 0xe5, 0xe5, b' '], Trim::Right).unwrap();
        assert_eq!(l.as_bytes(), &[0xe5, 0xe5, 0xe5]);
        assert_eq!(l.as_str(), None);
        assert_eq!(l.to_string(), "\\xe5\\xe5\\xe5");
        let u = Label::from_bytes("hôst".as_bytes()).unwrap();
        assert_eq!(u.as_str(), Some("hôst"));
    }

    #[test]
    fn display_escapes_what_could_fool_a_console_or_a_quote() {
        let l = Label::from_bytes(b"a'b\"c\\d\ne\x1b[2Jf\x7fg h").unwrap();
        assert_eq!(l.to_string(), "a\\x27b\\x22c\\x5cd\\x0ae\\x1b[2Jf\\x7fg h");
    }

    #[test]
    fn capacity_is_enforced() {
        assert!(Label::from_bytes(&[b'a'; LABEL_CAPACITY]).is_some());
        assert!(Label::from_bytes(&[b'a'; LABEL_CAPACITY + 1]).is_none());
    }
}
