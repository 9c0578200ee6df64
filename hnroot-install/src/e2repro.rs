//! A byte-reproducible ext4 image: the filesystem written from user space by `mke2fs -d` from
//! the staged tree (never through a kernel mount, whose block allocation, journal and times are
//! its own), then every inode's times not taken from the tree set by `debugfs`. Given the
//! same staged tree, UUID and epoch, the bytes are the same at every build:
//!
//! * `mke2fs` runs with `E2FSPROGS_FAKE_TIME` = the epoch (the superblock's creation, write
//!   and check times, `lost+found`, every inode's creation time), and with one fixed UUID as
//!   `-U` and `-E hash_seed=` and `metadata_csum_seed` on, so that the metadata checksums and
//!   directory hashes are the same in every image; the image's own UUID is set last
//!   (`debugfs ssv uuid`), in the superblock only;
//! * `mke2fs -d` (e2fsprogs 1.47) walks each directory in sorted order (`scandir` with
//!   `alphasort`), so inode numbers and block allocation follow the names, not the order the
//!   tree's directories happen to list them in; holes stay holes, hard links stay hard links,
//!   extended attributes are copied;
//! * it copies each file's modification time (the tree's own; what hnroot added was stamped
//!   with the epoch in the staging layer), but also its access time and change time, which
//!   nobody can set on the tree, and stamps each inode's creation time with the epoch:
//!   `debugfs` sets all three to the inode's modification time on every inode in use (so a
//!   later epoch changes only what hnroot adds, not every inode: images of two versions share
//!   their inode tables where their files are the same), and gives the root directory the
//!   tree's mode and owner (`mke2fs -d` leaves it 0755 root).
//!
//! Never reads or writes anything but the image file and the staged tree.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use hnroot_core::uuid::FsUuid;

use crate::disk::ext4_features_off;
use crate::image::RootMeta;
use crate::tool::run;

/// The UUID every image's metadata checksums and directory hashes are seeded with, whatever the
/// image's own UUID (`metadata_csum_seed`: the seed is kept in the superblock, and the UUID set
/// afterwards changes only the superblock). Two images of one fleet then share every inode
/// table, bitmap and directory block where their files are the same: a delta transfer reuses
/// them. (The hash seed only orders directory indexes; the root image is never written to.)
const SEED_UUID: &str = "686e726f-6f74-4e32-8000-0000000e2f5e";
/// The environment variable libext2fs takes as "now" (seconds since 1970).
const FAKE_TIME: &str = "E2FSPROGS_FAKE_TIME";
/// ext4's root directory inode.
const ROOT_INO: u64 = 2;
/// The line of debugfs's `inode_dump` holding `i_mtime` (bytes 16 to 19; offsets in octal).
const MTIME_LINE: &str = "0020  ";
/// Most inodes the times pass will touch (a Debian server tree has some 30,000).
const MAX_INODES: u64 = 50_000_000;

/// Make the ext4 filesystem labelled `hn-root` on `image` (sized already) holding `staged`.
pub fn write(
    image: &Path,
    staged: &Path,
    uuid: Option<&FsUuid>,
    epoch: i64,
    root: &RootMeta,
) -> Result<()> {
    let uuid = match uuid {
        Some(u) => *u,
        None => fresh_uuid()?,
    };
    let mut mk = Command::new("mkfs.ext4");
    mk.env(FAKE_TIME, epoch.to_string())
        .args(["-q", "-F", "-L", "hn-root", "-O"])
        .arg(format!("{},metadata_csum_seed", ext4_features_off()))
        .args(["-U", SEED_UUID, "-E"])
        .arg(format!("hash_seed={SEED_UUID}"));
    run(mk.arg("-d").arg(staged).arg(image))
        .context("cannot write the staged tree into the ext4 image (is it larger than --size?)")?;
    let header = run(Command::new("dumpe2fs").arg("-h").arg(image))?;
    let first_free = run(Command::new("debugfs").args(["-R", "ffi"]).arg(image))?;
    let inodes = used_inodes(&header, &first_free)?;
    let all: Vec<u64> = std::iter::once(ROOT_INO)
        .chain(inodes.first..inodes.end)
        .collect();
    let stat: String = all.iter().map(|i| format!("inode_dump <{i}>\n")).collect();
    let listing = debugfs(image, epoch, &stat, false)?;
    let mtimes = mtimes(&listing, &all)?;
    let mut script = format!(
        "sif <{ROOT_INO}> mode 0{:o}\nsif <{ROOT_INO}> uid {}\nsif <{ROOT_INO}> gid {}\n",
        libc::S_IFDIR | root.mode,
        root.uid,
        root.gid
    );
    for (ino, mtime) in all.iter().zip(&mtimes) {
        for field in ["atime", "ctime", "crtime"] {
            script.push_str(&format!("sif <{ino}> {field} @{mtime}\n"));
        }
    }
    // The image's own UUID last: with metadata_csum_seed only the superblock holds it.
    script.push_str(&format!("ssv uuid {uuid}\n"));
    debugfs(image, epoch, &script, true)?;
    Ok(())
}

/// A fresh random UUID from the kernel.
fn fresh_uuid() -> Result<FsUuid> {
    let text = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .context("cannot read a fresh UUID from /proc/sys/kernel/random/uuid")?;
    FsUuid::parse(text.trim())
        .map_err(|e| anyhow!("/proc/sys/kernel/random/uuid said {:?}: {e}", text.trim()))
}

/// Run `script` through `debugfs` (`-w`: writing) on `image`; its standard output. debugfs
/// exits 0 whatever its commands did: each failure is a line on stderr after its banner.
fn debugfs(image: &Path, epoch: i64, script: &str, write: bool) -> Result<String> {
    let mut file = tempfile::NamedTempFile::new().context("cannot make a scratch file")?;
    file.write_all(script.as_bytes())?;
    file.flush()?;
    let mut cmd = Command::new("debugfs");
    cmd.env(FAKE_TIME, epoch.to_string())
        .env("DEBUGFS_PAGER", "__none__");
    if write {
        cmd.arg("-w");
    }
    let out = cmd
        .arg("-f")
        .arg(file.path())
        .arg(image)
        .output()
        .context("cannot start debugfs (is e2fsprogs installed?)")?;
    let errors: Vec<&str> = std::str::from_utf8(&out.stderr)
        .unwrap_or("(not UTF-8)")
        .lines()
        .filter(|l| !l.starts_with("debugfs ") && !l.trim().is_empty())
        .collect();
    if !out.status.success() || !errors.is_empty() {
        bail!(
            "debugfs could not {} the new image's inodes ({}): {}",
            if write { "set" } else { "read" },
            out.status,
            errors.join("; ")
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Each inode's modification time (`i_mtime`, whole seconds) from debugfs's `inode_dump <N>`
/// of each of `inodes` in turn: the raw inode as hex, 16 bytes a line, the line offsets in
/// octal; `i_mtime` is the first 4 bytes (little-endian) of the line at offset `0020` (16).
/// Nothing of a file's own (a link's target stored in the inode) can start a line: the dump's
/// text column shows only printable characters.
fn mtimes(listing: &str, inodes: &[u64]) -> Result<Vec<u32>> {
    let mut times: Vec<u32> = Vec::with_capacity(inodes.len());
    let mut current: Option<u64> = None;
    for line in listing.lines() {
        if let Some(n) = line
            .strip_prefix("debugfs: inode_dump <")
            .and_then(|r| r.strip_suffix('>'))
        {
            current = n
                .parse()
                .ok()
                .filter(|n| inodes.get(times.len()) == Some(n));
        } else if let (Some(_), Some(hex)) = (current, line.strip_prefix(MTIME_LINE)) {
            let digits: String = hex.split_whitespace().take(2).collect();
            let bytes = (0..4)
                .map(|i| {
                    digits
                        .get(2 * i..2 * i + 2)
                        .and_then(|d| u8::from_str_radix(d, 16).ok())
                })
                .collect::<Option<Vec<u8>>>();
            match bytes.as_deref() {
                Some(&[a, b, c, d]) => times.push(u32::from_le_bytes([a, b, c, d])),
                _ => bail!("debugfs's inode_dump line {line:?} holds no time"),
            }
            current = None;
        }
    }
    if times.len() != inodes.len() {
        bail!(
            "debugfs dumped {} of the image's {} inodes in use; the image is removed",
            times.len(),
            inodes.len()
        );
    }
    Ok(times)
}

/// The ordinary inodes in use: `first..end`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Inodes {
    first: u64,
    end: u64,
}

/// Which ordinary inodes a fresh `mke2fs -d` used, from `dumpe2fs -h` and debugfs's `ffi`
/// (the first free inode): it allocates each inode as the lowest free one, so they are
/// `first..first_free`; the superblock's count of inodes in use must say exactly that, or the
/// filesystem is not one this pass understands.
fn used_inodes(header: &str, ffi: &str) -> Result<Inodes> {
    let field = |name: &str| -> Result<u64> {
        header
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| anyhow!("dumpe2fs -h of the new image has no {name:?} line"))
    };
    let count = field("Inode count:")?;
    let free = field("Free inodes:")?;
    let first = field("First inode:")?;
    let first_free: u64 = ffi
        .lines()
        .find_map(|l| l.strip_prefix("Free inode found:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            anyhow!(
                "debugfs ffi said {:?}, not the first free inode",
                ffi.trim()
            )
        })?;
    let used = count.saturating_sub(free);
    if first_free <= first || used != first_free - 1 || used > MAX_INODES {
        bail!(
            "the new ext4 image has {used} inodes in use and inode {first_free} free (the first \
             ordinary inode is {first}): they are not the run mke2fs -d allocates; the image is \
             removed"
        );
    }
    Ok(Inodes {
        first,
        end: first_free,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// debugfs 1.47.0's `inode_dump` of a fast symbolic link (`/hostpart/data`) and of the root
    /// directory, as it printed them.
    const DUMP: &str = "debugfs: inode_dump <16>
0000  ffa1 0000 0e00 0000 00f1 5365 00f1 5365  ..........Se..Se
0020  00f1 5365 0000 0000 0000 0100 0000 0000  ..Se............
0040  0000 0000 0000 0000 2f68 6f73 7470 6172  ......../hostpar
0060  742f 6461 7461 0000 0000 0000 0000 0000  t/data..........
0100  0000 0000 0000 0000 0000 0000 0000 0000  ................
*
0160  0000 0000 0000 0000 0000 0000 3da2 0000  ............=...
0200  2000 69eb 0000 0000 0000 0000 0000 0000   .i.............
0220  00f1 5365 0000 0000 0000 0000 0000 0000  ..Se............
0240  0000 0000 0000 0000 0000 0000 0000 0000  ................
*

debugfs: inode_dump <2>
0000  e841 0000 0004 0000 00f1 5365 00f1 5365  .A........Se..Se
0020  0010 5e5f 0000 0000 0000 0900 0200 0000  ..^_............
0040  0000 0800 0000 0000 0af3 0100 0400 0000  ................
";

    #[test]
    fn modification_times_are_read_per_inode_asked_for() {
        assert_eq!(
            mtimes(DUMP, &[16, 2]).unwrap(),
            vec![0x6553f100, 0x5f5e1000]
        );
        // An inode not dumped, or dumped out of the order asked: refused.
        let e = mtimes(DUMP, &[16, 2, 17]).unwrap_err();
        assert!(e.to_string().contains("dumped 2 of the image's 3"), "{e}");
        let e = mtimes(DUMP, &[2, 16]).unwrap_err();
        assert!(e.to_string().contains("dumped 1 of the image's 2"), "{e}");
        let e = mtimes(&DUMP.replace("0020  0010 5e5f", "0020  0010 5e"), &[16, 2]).unwrap_err();
        assert!(e.to_string().contains("holds no time"), "{e}");
    }

    const HEADER: &str = "Filesystem volume name:   hn-root\nInode count:              16384\n\
                          Free inodes:              16369\nFirst inode:              11\n";

    #[test]
    fn the_inodes_in_use_are_the_run_mke2fs_allocates() {
        let i = used_inodes(HEADER, "Free inode found: 16\n").unwrap();
        assert_eq!(i, Inodes { first: 11, end: 16 });
        // A gap (inode 16 free but 16 in use): refused.
        let e = used_inodes(HEADER, "Free inode found: 14\n").unwrap_err();
        assert!(
            e.to_string().contains("15 inodes in use and inode 14 free"),
            "{e}"
        );
        let e = used_inodes("Inode count: 5\n", "Free inode found: 16\n").unwrap_err();
        assert!(e.to_string().contains("no \"Free inodes:\" line"), "{e}");
        let e = used_inodes(HEADER, "ffi: no free inode").unwrap_err();
        assert!(e.to_string().contains("not the first free inode"), "{e}");
    }
}
