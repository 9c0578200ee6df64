//! The image build's fstab rewrite over arbitrary text (a tree's `/etc/fstab`): never panics;
//! every line of the tree's fstab is in the image's, as it was or commented out (only those
//! of the root, the ESP, hostpart and /boot), followed by hnroot's lines; rewriting the result
//! keeps every line it has (hnroot's own are then commented out and added again).

#![no_main]

use hnroot_core::imagebuild::{fstab_keeps, rewrite_fstab, FSTAB_COMMENTED};
use libfuzzer_sys::fuzz_target;

fn rewrite(old: &str) -> (String, usize) {
    let mut out = String::new();
    let mut commented = 0;
    rewrite_fstab(old, &mut out, |_| commented += 1).expect("a String never fails");
    (out, commented)
}

fuzz_target!(|data: &[u8]| {
    let old = String::from_utf8_lossy(data);
    let (new, commented) = rewrite(&old);
    // The rewrite reads lines as `str::lines` does and ends each with '\n'.
    let old_lines: Vec<&str> = old.lines().collect();
    let new_lines: Vec<&str> = new.split_terminator('\n').collect();
    assert!(new_lines.len() >= old_lines.len());
    let mut n = 0;
    for (line, out) in old_lines.iter().zip(&new_lines) {
        if fstab_keeps(line) {
            assert_eq!(out, line);
        } else {
            assert_eq!(*out, format!("{FSTAB_COMMENTED}{line}"));
            n += 1;
        }
    }
    assert_eq!(n, commented);
    let tail = &new_lines[old_lines.len()..];
    assert!(tail
        .iter()
        .any(|l| l.starts_with("LABEL=hostpart /hostpart ")));
    assert!(tail
        .iter()
        .any(|l| l.starts_with("LABEL=EFI-BOOT /boot/loader ")));
    // Every line of hnroot's tail is kept or commented out on a second rewrite, none lost.
    let (again, _) = rewrite(&new);
    assert_eq!(
        again.split_terminator('\n').count(),
        new.lines().count() + tail.len()
    );
});
