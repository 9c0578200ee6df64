//! A ustar archive written in memory: the memdisk GRUB's image carries (`grub.cfg`, the fleet's
//! files), read by GRUB's `tar` module. Deterministic: every entry owned by 0:0, mode 0644 (0755
//! for directories), time 0, so the same files give the same image bytes.

use anyhow::{bail, Result};

const BLOCK: usize = 512;

fn octal(field: &mut [u8], value: u64) {
    // Right-aligned digits, NUL-terminated, as GNU tar writes them.
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&s.as_bytes()[s.len() - digits..]);
    field[digits] = 0;
}

fn header(name: &str, size: u64, directory: bool) -> Result<[u8; BLOCK]> {
    if name.len() > 100 || name.is_empty() {
        bail!("memdisk path {name:?}: 1 to 100 bytes");
    }
    if size >= 1 << 33 {
        bail!("memdisk file {name:?} of {size} bytes: too large for ustar");
    }
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], if directory { 0o755 } else { 0o644 });
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 0);
    h[156] = if directory { b'5' } else { b'0' };
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    Ok(h)
}

/// The archive of `files` (`relative/path`, bytes), each parent directory listed before its
/// files.
pub fn ustar(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut dirs: Vec<String> = Vec::new();
    for (path, data) in files {
        if path.starts_with('/')
            || path
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            bail!("memdisk path {path:?} must be relative and plain");
        }
        let parts: Vec<&str> = path.split('/').collect();
        for i in 1..parts.len() {
            let dir = format!("{}/", parts[..i].join("/"));
            if !dirs.contains(&dir) {
                out.extend_from_slice(&header(&dir, 0, true)?);
                dirs.push(dir);
            }
        }
        out.extend_from_slice(&header(path, data.len() as u64, false)?);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
    }
    out.extend_from_slice(&[0u8; 2 * BLOCK]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// GNU tar reads the archive back: names, sizes, contents.
    #[test]
    fn tar_reads_it_back() {
        let files = vec![
            ("boot/grub/grub.cfg".to_owned(), b"set default=0\n".to_vec()),
            ("hnroot/cmdline".to_owned(), vec![b'x'; 700]),
        ];
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("m.tar");
        std::fs::write(&archive, ustar(&files).unwrap()).unwrap();
        let out = Command::new("tar")
            .arg("-tvf")
            .arg(&archive)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listing = String::from_utf8_lossy(&out.stdout);
        for name in [
            "boot/",
            "boot/grub/",
            "boot/grub/grub.cfg",
            "hnroot/",
            "hnroot/cmdline",
        ] {
            assert!(listing.lines().any(|l| l.ends_with(name)), "{listing}");
        }
        let x = Command::new("tar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(x.success());
        assert_eq!(
            std::fs::read(dir.path().join("hnroot/cmdline")).unwrap(),
            vec![b'x'; 700]
        );
        assert!(ustar(&[("../x".to_owned(), vec![])]).is_err());
        assert!(ustar(&[("/x".to_owned(), vec![])]).is_err());
    }
}
