//! Writes initramfs archives in the kernel's "newc" cpio format, in memory and without root:
//! device nodes such as `/dev/console` are just header fields here. It never reads the host
//! tree on its own; callers add each entry explicitly, so archives are reproducible (mtime 0,
//! owner 0:0, inode numbers in insertion order).

use anyhow::{bail, Result};

/// newc magic: "070701" (no checksums).
const MAGIC: &str = "070701";
/// File type bits of `st_mode`.
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
/// Headers and data are padded to 4 bytes.
const ALIGN: usize = 4;
/// The kernel limits a path in the archive to PATH_MAX.
const PATH_MAX: usize = 4096;

/// An archive being assembled. Paths are relative (`"bin/busybox"`, no leading slash).
#[derive(Debug, Default)]
pub struct Archive {
    buf: Vec<u8>,
    next_ino: u32,
}

impl Archive {
    /// An empty archive.
    pub fn new() -> Self {
        Self {
            buf: Vec::new(),
            next_ino: 1,
        }
    }

    /// A directory with permission bits `perm` (e.g. 0o755). Parents must be added first.
    pub fn dir(&mut self, path: &str, perm: u32) -> Result<()> {
        self.entry(path, S_IFDIR | (perm & 0o7777), 2, (0, 0), &[])
    }

    /// A regular file.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> Result<()> {
        self.entry(path, S_IFREG | (perm & 0o7777), 1, (0, 0), data)
    }

    /// A symbolic link pointing at `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        self.entry(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    /// A character device node (e.g. `dev/console`, 5:1).
    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> Result<()> {
        self.entry(path, S_IFCHR | (perm & 0o7777), 1, (major, minor), &[])
    }

    /// Close the archive with the `TRAILER!!!` entry and return its bytes.
    pub fn finish(mut self) -> Result<Vec<u8>> {
        self.raw_entry("TRAILER!!!", 0, 1, (0, 0), &[], 0)?;
        Ok(self.buf)
    }

    fn entry(
        &mut self,
        path: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> Result<()> {
        if path.is_empty() || path.starts_with('/') || path.split('/').any(|c| c == "..") {
            bail!("cpio: entry path {path:?} must be relative, non-empty and without '..'");
        }
        let ino = self.next_ino;
        self.next_ino = self
            .next_ino
            .checked_add(1)
            .ok_or_else(|| anyhow::anyhow!("cpio: more than 2^32 entries"))?;
        self.raw_entry(path, mode, nlink, rdev, data, ino)
    }

    fn raw_entry(
        &mut self,
        path: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
        ino: u32,
    ) -> Result<()> {
        if path.len() + 1 > PATH_MAX {
            bail!("cpio: path of {} bytes exceeds PATH_MAX", path.len());
        }
        let Ok(filesize) = u32::try_from(data.len()) else {
            bail!(
                "cpio: {path}: {} bytes do not fit newc's 32-bit size",
                data.len()
            );
        };
        let namesize = path.len() + 1;
        // Fields in order: ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor
        // rdevminor namesize check; each 8 hex digits.
        let fields = [
            ino,
            mode,
            0,
            0,
            nlink,
            0,
            filesize,
            0,
            0,
            rdev.0,
            rdev.1,
            namesize as u32,
            0,
        ];
        self.buf.extend_from_slice(MAGIC.as_bytes());
        for field in fields {
            self.buf
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.buf.extend_from_slice(path.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
        Ok(())
    }

    fn pad(&mut self) {
        let pad = (ALIGN - self.buf.len() % ALIGN) % ALIGN;
        self.buf.resize(self.buf.len() + pad, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn gnu_cpio_lists_what_we_wrote() {
        let mut a = Archive::new();
        a.dir("dev", 0o755).unwrap();
        a.char_dev("dev/console", 0o600, 5, 1).unwrap();
        a.file("init", 0o755, b"#!/bin/sh\necho hi\n").unwrap();
        a.symlink("sh", "busybox").unwrap();
        let bytes = a.finish().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let Ok(mut child) = Command::new("cpio")
            .args(["-t", "-v", "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
        else {
            eprintln!("skipping: cpio is not installed");
            return;
        };
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&bytes).unwrap();
        let out = child.wait_with_output().unwrap();
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{listing}");
        let lines: Vec<&str> = listing.lines().collect();
        assert_eq!(lines.len(), 4, "{listing}");
        assert!(lines[0].starts_with("drwxr-xr-x") && lines[0].ends_with(" dev"));
        assert!(lines[1].starts_with("crw-------") && lines[1].contains("5,"));
        assert!(lines[2].starts_with("-rwxr-xr-x") && lines[2].ends_with(" init"));
        assert!(lines[3].starts_with("lrwxrwxrwx") && lines[3].ends_with("sh -> busybox"));
    }

    #[test]
    fn rejects_absolute_and_dotdot_paths() {
        let mut a = Archive::new();
        assert!(a.file("/init", 0o755, b"").is_err());
        assert!(a.file("a/../b", 0o644, b"").is_err());
        assert!(a.dir("", 0o755).is_err());
    }
}
