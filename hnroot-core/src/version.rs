//! Image versions compared as `systemd-analyze compare-versions` compares them (systemd's
//! `strverscmp_improved`, the rules of the UAPI Group's version format specification): `1.10` is
//! newer than `1.9`, `123~rc1` older than `123`, `123-1` older than `123.1`, `123^p1` between
//! them. It judges only the two strings it is given; where a version comes from (a signed seal
//! manifest) and what the floor is are the seal's and the boot state's business.
//!
//! The rules, in the order they are applied segment by segment: characters other than ASCII
//! letters, digits and `~ - ^ .` are dropped (they only separate segments); a `~` makes the
//! side that has it older; a side that has ended is older, unless the other continues with `~`;
//! then `-`, `^` and `.` each make the side that has it older; a numeric segment (leading zeros
//! ignored) is newer than an alphabetic one and numbers compare as numbers; letters compare
//! byte-wise, the longer run being newer.

use core::cmp::Ordering;

/// Compares two versions: `Ordering::Greater` when `a` is newer than `b`.
///
/// The same answer as `systemd-analyze compare-versions A B` for every input (systemd's own test
/// vectors are this module's tests). Bytes outside ASCII are dropped like any other invalid
/// character; a NUL byte ends a version, as it ends a C string.
pub fn compare(a: &[u8], b: &[u8]) -> Ordering {
    let mut a = Cursor { s: a, at: 0 };
    let mut b = Cursor { s: b, at: 0 };
    // Every round consumes at least one byte of one side (a separator, a digit run, a letter
    // run, or a returning comparison), so the sum of the lengths plus one bounds the rounds.
    let rounds = a.s.len().saturating_add(b.s.len()).saturating_add(1);
    for _ in 0..rounds {
        a.skip_invalid();
        b.skip_invalid();
        if let Some(order) = separator(&mut a, &mut b, b'~') {
            return order;
        }
        if a.peek() == 0 || b.peek() == 0 {
            return a.peek().cmp(&b.peek());
        }
        for sep in [b'-', b'^', b'.'] {
            if let Some(order) = separator(&mut a, &mut b, sep) {
                return order;
            }
        }
        let order = if a.peek().is_ascii_digit() || b.peek().is_ascii_digit() {
            numeric_segment(&mut a, &mut b)
        } else {
            alphabetic_segment(&mut a, &mut b)
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    Ordering::Equal
}

/// Whether `a` is strictly older than `b` (the floor's test: an image older than the floor is a
/// downgrade, one equal to it is not).
pub fn is_older(a: &[u8], b: &[u8]) -> bool {
    compare(a, b) == Ordering::Less
}

/// A position in one version string; the end reads as NUL.
struct Cursor<'a> {
    s: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> u8 {
        self.s.get(self.at).copied().unwrap_or(0)
    }

    fn advance(&mut self) {
        if self.peek() != 0 {
            self.at = self.at.saturating_add(1);
        }
    }

    fn skip_invalid(&mut self) {
        while self.peek() != 0 && !valid(self.peek()) {
            self.advance();
        }
    }

    /// The length of the run of bytes from here that `class` accepts.
    fn run(&self, class: fn(u8) -> bool) -> usize {
        self.s
            .get(self.at..)
            .unwrap_or(&[])
            .iter()
            .take_while(|&&c| c != 0 && class(c))
            .count()
    }

    fn slice(&self, len: usize) -> &[u8] {
        self.s
            .get(self.at..self.at.saturating_add(len))
            .unwrap_or(&[])
    }
}

fn valid(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'~' | b'-' | b'^' | b'.')
}

/// The side that has `sep` here and the other not is older; when both have it, both move past.
fn separator(a: &mut Cursor, b: &mut Cursor, sep: u8) -> Option<Ordering> {
    let (has_a, has_b) = (a.peek() == sep, b.peek() == sep);
    if !has_a && !has_b {
        return None;
    }
    // systemd: CMP(*a != sep, *b != sep): the side without the separator is newer.
    let order = (!has_a).cmp(&!has_b);
    if order != Ordering::Equal {
        return Some(order);
    }
    a.advance();
    b.advance();
    None
}

fn numeric_segment(a: &mut Cursor, b: &mut Cursor) -> Ordering {
    let (run_a, run_b) = (a.run(|c| c.is_ascii_digit()), b.run(|c| c.is_ascii_digit()));
    // A numeric segment is newer than none at all (an alphabetic one, or a separator).
    let order = (run_a != 0).cmp(&(run_b != 0));
    if order != Ordering::Equal {
        return order;
    }
    let (zeros_a, zeros_b) = (a.run(|c| c == b'0'), b.run(|c| c == b'0'));
    let (digits_a, digits_b) = (run_a.saturating_sub(zeros_a), run_b.saturating_sub(zeros_b));
    a.at = a.at.saturating_add(zeros_a);
    b.at = b.at.saturating_add(zeros_b);
    let order = digits_a
        .cmp(&digits_b)
        .then_with(|| a.slice(digits_a).cmp(b.slice(digits_b)));
    a.at = a.at.saturating_add(digits_a);
    b.at = b.at.saturating_add(digits_b);
    order
}

fn alphabetic_segment(a: &mut Cursor, b: &mut Cursor) -> Ordering {
    let (run_a, run_b) = (
        a.run(|c| c.is_ascii_alphabetic()),
        b.run(|c| c.is_ascii_alphabetic()),
    );
    let common = run_a.min(run_b);
    let order = a.slice(common).cmp(b.slice(common)).then(run_a.cmp(&run_b));
    a.at = a.at.saturating_add(run_a);
    b.at = b.at.saturating_add(run_b);
    order
}

#[cfg(test)]
mod tests {
    //! systemd's own vectors: `src/test/test-string-util.c`, `TEST(strverscmp_improved)` and
    //! `TEST(strverscmp_improved_rpm)` (rpm's `rpmvercmp.at` cases, with systemd's answers).
    use super::*;
    use core::cmp::Ordering::{Equal, Greater, Less};

    fn cmp(a: &str, b: &str) -> Ordering {
        compare(a.as_bytes(), b.as_bytes())
    }

    fn newer(older: &str, newer: &str) {
        assert_eq!(cmp(older, newer), Less, "{older} < {newer}");
        assert_eq!(cmp(newer, older), Greater, "{newer} > {older}");
        assert_eq!(cmp(older, older), Equal, "{older} == {older}");
        assert_eq!(cmp(newer, newer), Equal, "{newer} == {newer}");
    }

    #[test]
    fn systemd_ordered_list() {
        let versions = [
            "~1",
            "",
            "ab",
            "abb",
            "abc",
            "0001",
            "002",
            "12",
            "122",
            "122.9",
            "123~rc1",
            "123",
            "123-a",
            "123-a.1",
            "123-a1",
            "123-a1.1",
            "123-3",
            "123-3.1",
            "123^patch1",
            "123^1",
            "123.a-1",
            "123.1-1",
            "123a-1",
            "124",
        ];
        for (i, p) in versions.iter().enumerate() {
            for q in &versions[i + 1..] {
                newer(p, q);
            }
        }
    }

    #[test]
    fn systemd_pairs() {
        for (older, newer_) in [
            ("123.45-67.88", "123.45-67.89"),
            ("123.45-67.89", "123.45-67.89a"),
            ("123.45-67.ab", "123.45-67.89"),
            ("123.45-67.9", "123.45-67.89"),
            ("123.45-67", "123.45-67.89"),
            ("123.45-66.89", "123.45-67.89"),
            ("123.45-9.99", "123.45-67.89"),
            ("123.42-99.99", "123.45-67.89"),
            ("123-99.99", "123.45-67.89"),
            ("123~rc1-99.99", "123.45-67.89"),
            ("123~rc1-99.99", "123-45.67.89"),
            ("123~rc1-99.99", "123~rc2-67.89"),
            ("123~rc1-99.99", "123^aa2-67.89"),
            ("123~rc1-99.99", "123aa2-67.89"),
            ("123-99.99", "123.45-67.89"),
            ("123-99.99", "123^aa2-67.89"),
            ("123-99.99", "123aa2-67.89"),
            ("123^45-67.89", "123.45-67.89"),
            ("123^aa1-99.99", "123^aa2-67.89"),
            ("123^aa2-67.89", "123aa2-67.89"),
            ("123.aa2-67.89", "123aa2-67.89"),
            ("123.aa2-67.89", "123.ab2-67.89"),
        ] {
            newer(older, newer_);
        }
    }

    #[test]
    fn systemd_corner_cases() {
        assert_eq!(cmp("123_aa2-67.89", "123aa+2-67.89"), Equal);
        assert_eq!(cmp("123.", "123"), Greater);
        assert_eq!(cmp("12_3", "123"), Less);
        assert_eq!(cmp("12_3", "12"), Greater);
        assert_eq!(cmp("12_3", "12.3"), Greater);
        assert_eq!(cmp("123.0", "123"), Greater);
        assert_eq!(cmp("123_0", "123"), Greater);
        assert_eq!(cmp("123..0", "123.0"), Less);
        for (a, b) in [
            ("0_", "0"),
            ("_0_", "0"),
            ("_0", "0"),
            ("0", "0___"),
            ("", "_"),
            ("_", ""),
            ("_", "_"),
            ("~", "~"),
        ] {
            assert_eq!(cmp(a, b), Equal, "{a} == {b}");
        }
        assert_eq!(cmp("", "~"), Greater);
        assert_eq!(cmp("~", ""), Less);
        assert_eq!(cmp("1٠١٢٣٤٥٦٧٨٩", "1"), Equal);
        assert_eq!(cmp("1๐๑๒๓๔๕๖๗๘๙", "1"), Equal);
    }

    #[test]
    fn systemd_rpm_cases() {
        let cases: &[(&str, &str, i8)] = &[
            ("1.0", "1.0", 0),
            ("1.0", "2.0", -1),
            ("2.0", "1.0", 1),
            ("2.0.1", "2.0.1", 0),
            ("2.0", "2.0.1", -1),
            ("2.0.1", "2.0", 1),
            ("2.0.1a", "2.0.1a", 0),
            ("2.0.1a", "2.0.1", 1),
            ("2.0.1", "2.0.1a", -1),
            ("5.5p1", "5.5p1", 0),
            ("5.5p1", "5.5p2", -1),
            ("5.5p2", "5.5p1", 1),
            ("5.5p10", "5.5p10", 0),
            ("5.5p1", "5.5p10", -1),
            ("5.5p10", "5.5p1", 1),
            ("10xyz", "10.1xyz", 1),
            ("10.1xyz", "10xyz", -1),
            ("xyz10", "xyz10", 0),
            ("xyz10", "xyz10.1", -1),
            ("xyz10.1", "xyz10", 1),
            ("xyz.4", "xyz.4", 0),
            ("xyz.4", "8", -1),
            ("8", "xyz.4", 1),
            ("xyz.4", "2", -1),
            ("2", "xyz.4", 1),
            ("5.5p2", "5.6p1", -1),
            ("5.6p1", "5.5p2", 1),
            ("5.6p1", "6.5p1", -1),
            ("6.5p1", "5.6p1", 1),
            ("6.0.rc1", "6.0", 1),
            ("6.0", "6.0.rc1", -1),
            ("10b2", "10a1", 1),
            ("10a2", "10b2", -1),
            ("1.0aa", "1.0aa", 0),
            ("1.0a", "1.0aa", -1),
            ("1.0aa", "1.0a", 1),
            ("10.0001", "10.0001", 0),
            ("10.0001", "10.1", 0),
            ("10.1", "10.0001", 0),
            ("10.0001", "10.0039", -1),
            ("10.0039", "10.0001", 1),
            ("4.999.9", "5.0", -1),
            ("5.0", "4.999.9", 1),
            ("20101121", "20101121", 0),
            ("20101121", "20101122", -1),
            ("20101122", "20101121", 1),
            ("2_0", "2_0", 0),
            ("2.0", "2_0", -1),
            ("2_0", "2.0", 1),
            ("a", "a", 0),
            ("a+", "a+", 0),
            ("a+", "a_", 0),
            ("a_", "a+", 0),
            ("+a", "+a", 0),
            ("+a", "_a", 0),
            ("_a", "+a", 0),
            ("+_", "+_", 0),
            ("_+", "+_", 0),
            ("_+", "_+", 0),
            ("+", "_", 0),
            ("_", "+", 0),
            ("1.0~rc1", "1.0~rc1", 0),
            ("1.0~rc1", "1.0", -1),
            ("1.0", "1.0~rc1", 1),
            ("1.0~rc1", "1.0~rc2", -1),
            ("1.0~rc2", "1.0~rc1", 1),
            ("1.0~rc1~git123", "1.0~rc1~git123", 0),
            ("1.0~rc1~git123", "1.0~rc1", -1),
            ("1.0~rc1", "1.0~rc1~git123", 1),
            ("1.0^", "1.0^", 0),
            ("1.0^", "1.0", 1),
            ("1.0", "1.0^", -1),
            ("1.0^git1", "1.0^git1", 0),
            ("1.0^git1", "1.0", 1),
            ("1.0", "1.0^git1", -1),
            ("1.0^git1", "1.0^git2", -1),
            ("1.0^git2", "1.0^git1", 1),
            ("1.0^git1", "1.01", -1),
            ("1.01", "1.0^git1", 1),
            ("1.0^20160101", "1.0^20160101", 0),
            ("1.0^20160101", "1.0.1", -1),
            ("1.0.1", "1.0^20160101", 1),
            ("1.0^20160101^git1", "1.0^20160101^git1", 0),
            ("1.0^20160102", "1.0^20160101^git1", 1),
            ("1.0^20160101^git1", "1.0^20160102", -1),
            ("1.0~rc1^git1", "1.0~rc1^git1", 0),
            ("1.0~rc1^git1", "1.0~rc1", 1),
            ("1.0~rc1", "1.0~rc1^git1", -1),
            ("1.0^git1~pre", "1.0^git1~pre", 0),
            ("1.0^git1", "1.0^git1~pre", 1),
            ("1.0^git1~pre", "1.0^git1", -1),
            ("1b.fc17", "1b.fc17", 0),
            ("1b.fc17", "1.fc17", 1),
            ("1.fc17", "1b.fc17", -1),
            ("1g.fc17", "1g.fc17", 0),
            ("1g.fc17", "1.fc17", 1),
            ("1.fc17", "1g.fc17", -1),
            ("1.1.α", "1.1.α", 0),
            ("1.1.α", "1.1.β", 0),
            ("1.1.β", "1.1.α", 0),
            ("1.1.αα", "1.1.α", 0),
            ("1.1.α", "1.1.ββ", 0),
            ("1.1.ββ", "1.1.αα", 0),
        ];
        for &(a, b, want) in cases {
            assert_eq!(cmp(a, b), want.cmp(&0), "{a} vs {b}");
        }
    }

    #[test]
    fn the_issue_cases() {
        assert_eq!(cmp("1.10", "1.9"), Greater);
        assert!(is_older(b"1.9", b"1.10"));
        assert!(!is_older(b"1.10", b"1.10"));
        assert_eq!(cmp("fleet 0", "fleet 1"), Less);
    }
}
