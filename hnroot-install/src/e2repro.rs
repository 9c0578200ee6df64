//! A byte-reproducible ext4 image: the filesystem written from user space by `mke2fs -d` from
//! the staged tree (never through a kernel mount, whose block allocation, journal and times are
//! its own), then every inode's times not taken from the tree set by `debugfs`. Given the
//! same staged tree, UUID and epoch, the bytes are the same at every build:
//!
//! * `mke2fs` runs with `E2FSPROGS_FAKE_TIME` = the epoch (the superblock's creation, write
//!   and check times, `lost+found`, every inode's creation time), `-U` the UUID and
//!   `-E hash_seed=` the same UUID (the directory index's hash);
//! * `mke2fs -d` (e2fsprogs 1.47) walks each directory in sorted order (`scandir` with
//!   `alphasort`), so inode numbers and block allocation follow the names, not the order the
//!   tree's directories happen to list them in; holes stay holes, hard links stay hard links,
//!   extended attributes are copied;
//! * it copies each file's modification time (the tree's own; what hnroot added was stamped
//!   with the epoch in the staging layer), but also its access time and change time, which
//!   nobody can set on the tree: `debugfs` sets both to the epoch on every inode in use, and
//!   gives the root directory the tree's mode and owner (`mke2fs -d` leaves it 0755 root).
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

/// The environment variable libext2fs takes as "now" (seconds since 1970).
const FAKE_TIME: &str = "E2FSPROGS_FAKE_TIME";
/// ext4's root directory inode.
const ROOT_INO: u64 = 2;
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
    let mut mk = Command::new("mkfs.ext4");
    mk.env(FAKE_TIME, epoch.to_string()).args([
        "-q",
        "-F",
        "-O",
        &ext4_features_off(),
        "-L",
        "hn-root",
    ]);
    if let Some(u) = uuid {
        mk.arg("-U")
            .arg(u.to_string())
            .arg("-E")
            .arg(format!("hash_seed={u}"));
    }
    run(mk.arg("-d").arg(staged).arg(image))
        .context("cannot write the staged tree into the ext4 image (is it larger than --size?)")?;
    let header = run(Command::new("dumpe2fs").arg("-h").arg(image))?;
    let first_free = run(Command::new("debugfs").args(["-R", "ffi"]).arg(image))?;
    let inodes = used_inodes(&header, &first_free)?;
    let mut script = String::new();
    script.push_str(&format!(
        "sif <{ROOT_INO}> mode 0{:o}\nsif <{ROOT_INO}> uid {}\nsif <{ROOT_INO}> gid {}\n\
         sif <{ROOT_INO}> mtime @{epoch}\n",
        libc::S_IFDIR | root.mode,
        root.uid,
        root.gid
    ));
    for ino in std::iter::once(ROOT_INO).chain(inodes.first..inodes.end) {
        script.push_str(&format!(
            "sif <{ino}> atime @{epoch}\nsif <{ino}> ctime @{epoch}\n"
        ));
    }
    let mut file = tempfile::NamedTempFile::new().context("cannot make a scratch file")?;
    file.write_all(script.as_bytes())?;
    file.flush()?;
    let out = Command::new("debugfs")
        .env(FAKE_TIME, epoch.to_string())
        .arg("-w")
        .arg("-f")
        .arg(file.path())
        .arg(image)
        .output()
        .context("cannot start debugfs (is e2fsprogs installed?)")?;
    // debugfs exits 0 whatever its commands did: each failure is a line on stderr after its
    // banner.
    let errors: Vec<&str> = std::str::from_utf8(&out.stderr)
        .unwrap_or("(not UTF-8)")
        .lines()
        .filter(|l| !l.starts_with("debugfs ") && !l.trim().is_empty())
        .collect();
    if !out.status.success() || !errors.is_empty() {
        bail!(
            "debugfs could not set the image's times ({}): {}",
            out.status,
            errors.join("; ")
        );
    }
    Ok(())
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
