//! `hnroot_core::version::compare` against the tool whose rules it follows: `systemd-analyze
//! compare-versions` (the build machine's systemd) on versions generated from the characters
//! that matter (digits with leading zeros, letters, `~ - ^ .` and one ignored character).

use std::cmp::Ordering;
use std::process::Command;

use hnroot_core::version::compare;
use proptest::prelude::*;

fn systemd(a: &str, b: &str) -> Ordering {
    let out = Command::new("systemd-analyze")
        .args(["compare-versions", "--", a, b])
        .output()
        .expect("systemd-analyze runs (package systemd)");
    let text = String::from_utf8(out.stdout).unwrap();
    let op = text
        .trim_end()
        .strip_prefix(a)
        .and_then(|t| t.strip_suffix(b))
        .unwrap_or_else(|| panic!("unexpected output {text:?}"))
        .trim();
    match op {
        "<" => Ordering::Less,
        "==" => Ordering::Equal,
        ">" => Ordering::Greater,
        other => panic!("operator {other:?} in {text:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]
    #[test]
    fn compares_as_systemd_analyze_does(
        a in "[0019ab~^._-]{1,7}",
        b in "[0019ab~^._-]{1,7}",
    ) {
        prop_assert_eq!(compare(a.as_bytes(), b.as_bytes()), systemd(&a, &b), "{} vs {}", a, b);
    }
}

#[test]
fn the_issue_pair_and_systemd_agree() {
    for (a, b) in [
        ("1.10", "1.9"),
        ("1.0~rc1", "1.0"),
        ("2.0", "2_0"),
        ("123^1", "123.1"),
    ] {
        assert_eq!(
            compare(a.as_bytes(), b.as_bytes()),
            systemd(a, b),
            "{a} vs {b}"
        );
    }
}
