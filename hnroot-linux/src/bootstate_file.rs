//! The boot-state file on the ESP (`/boot/loader/hnroot/bootstate` when mounted): read it,
//! rewrite one copy in place (never truncating or reallocating, so GRUB's block list stays
//! valid), or create it preallocated. The codec and the judgement of what was found are
//! `hnroot_core::bootstate`'s.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use hnroot_core::bootstate::{
    new_block, Block, BlockError, BootState, StateFile, StateSeen, BLOCK_LEN,
};

/// Errors reading or writing the boot-state file.
#[derive(Debug, thiserror::Error)]
pub enum BootStateFileError {
    /// The file could not be opened, read, written or synced.
    #[error("boot-state file {path}: {action}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The error (part of the message, so not also reported as a source).
        source: io::Error,
    },
    /// The file exists but is not `BLOCK_LEN` bytes: not ours, never written.
    #[error(
        "boot-state file {path} is {found} bytes, expected {BLOCK_LEN}: not written (recreate it with `hnroot bootstate init --force`)"
    )]
    Size {
        /// The file.
        path: PathBuf,
        /// Its size.
        found: u64,
    },
    /// `create` found a file already there.
    #[error("boot-state file {path} already exists: not overwritten (`--force` replaces it)")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The sequence number is exhausted (2^64 writes).
    #[error("boot-state file {path}: sequence number exhausted")]
    Sequence {
        /// The file.
        path: PathBuf,
    },
    /// The copy a write would replace was written by a newer hnroot.
    #[error("boot-state file {path}: {source}; use the newer hnroot, or `hnroot bootstate init --force` to start over")]
    Newer {
        /// The file.
        path: PathBuf,
        /// What the codec said.
        source: BlockError,
    },
}

fn io_err<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl FnOnce(io::Error) -> BootStateFileError + 'a {
    move |source| BootStateFileError::Io {
        path: path.to_owned(),
        action,
        source,
    }
}

/// The file's first bytes, one more than a valid file has (whether the size is right is the
/// core's judgement, `Block::decode`); `None` when there is no such file.
pub fn read(path: &Path) -> Result<Option<Vec<u8>>, BootStateFileError> {
    // Non-blocking: a FIFO at the path is opened and found to be no file, never waited on.
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, "open")(e)),
    };
    let mut bytes = Vec::with_capacity(BLOCK_LEN + 1);
    file.take(BLOCK_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err(path, "read"))?;
    Ok(Some(bytes))
}

/// The core's refusal of a block as this file's error.
fn block_error(path: &Path, e: BlockError) -> BootStateFileError {
    match e {
        BlockError::Size { found } => BootStateFileError::Size {
            path: path.to_owned(),
            found: found as u64,
        },
        BlockError::SequenceExhausted => BootStateFileError::Sequence {
            path: path.to_owned(),
        },
        source @ BlockError::NewerFormat { .. } => BootStateFileError::Newer {
            path: path.to_owned(),
            source,
        },
    }
}

/// What the decision should see, judged by the core from what is at `path` exactly as GRUB's
/// view is: absent only when there is no file; a file that cannot be read (a directory, a
/// read error) or has the wrong size is corrupt. The error, when there is one, says why.
pub fn seen(path: &Path) -> (StateSeen, Option<BootStateFileError>) {
    match read(path) {
        Ok(None) => (StateFile::Absent.seen(), None),
        Ok(Some(bytes)) => {
            let why = match Block::decode(&bytes) {
                Err(e @ BlockError::Size { .. }) => Some(block_error(path, e)),
                _ => None,
            };
            (StateFile::Bytes(&bytes).seen(), why)
        }
        Err(e) => (StateFile::Unreadable.seen(), Some(e)),
    }
}

/// Write `state` into the copy not holding the newest valid record, in place, then sync; in the
/// format the newest valid copy has (`Block::encode_as_found`: while the ESP's loader reads
/// only format 1, the file stays format 1, the unhealthy count it cannot hold left out).
pub fn write(path: &Path, state: &BootState) -> Result<(), BootStateFileError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err(path, "open for writing"))?;
    let mut bytes = Vec::with_capacity(BLOCK_LEN + 1);
    (&file)
        .take(BLOCK_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err(path, "read"))?;
    // A file of the wrong size is refused here, by the codec: not ours, never written.
    let range = Block::encode_as_found(&mut bytes, state).map_err(|e| block_error(path, e))?;
    // What the copy holds in its format (a format-1 copy has no unhealthy count).
    let meant = Block::decode(&bytes).map(|b| b.seen());
    let changed = bytes.get(range.clone()).unwrap_or(&[]);
    file.write_all_at(changed, range.start as u64)
        .map_err(io_err(path, "write"))?;
    file.sync_all().map_err(io_err(path, "sync"))?;
    // Assert right after writing: read back and decode what we meant to write.
    let mut check = [0u8; BLOCK_LEN];
    file.read_exact_at(&mut check, 0)
        .map_err(io_err(path, "read back"))?;
    match Block::decode(&check).map(|b| b.seen()) {
        Ok(StateSeen::Valid(found)) if Ok(StateSeen::Valid(found)) == meant => Ok(()),
        other => Err(BootStateFileError::Io {
            path: path.to_owned(),
            action: "verify",
            source: io::Error::other(format!("read back {other:?} after writing {state}")),
        }),
    }
}

/// Put back `previous`, the whole file as [`read`] gave it before a [`write`] (the one sector a
/// write changed is rewritten to what it held), in place, synced, and read back: the boot
/// state exactly as it was. Only a whole block is put back; anything else was never written.
pub fn restore(path: &Path, previous: &[u8]) -> Result<(), BootStateFileError> {
    if previous.len() != BLOCK_LEN {
        return Err(BootStateFileError::Size {
            path: path.to_owned(),
            found: previous.len() as u64,
        });
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err(path, "open for writing"))?;
    file.write_all_at(previous, 0)
        .map_err(io_err(path, "write"))?;
    file.sync_all().map_err(io_err(path, "sync"))?;
    let mut check = [0u8; BLOCK_LEN];
    file.read_exact_at(&mut check, 0)
        .map_err(io_err(path, "read back"))?;
    if check.as_slice() != previous {
        return Err(BootStateFileError::Io {
            path: path.to_owned(),
            action: "verify",
            source: io::Error::other("the bytes read back differ from the ones put back"),
        });
    }
    Ok(())
}

/// Create a new preallocated boot-state file holding `state` (its directory must exist).
/// With `replace`, an existing file is replaced (through a new file and a rename, so a crash
/// leaves the old one or the new one).
pub fn create(path: &Path, state: &BootState, replace: bool) -> Result<(), BootStateFileError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io_err(path, "create")(io::Error::from(io::ErrorKind::InvalidInput)))?;
    let dir = File::open(parent)
        .map(std::os::fd::OwnedFd::from)
        .map_err(io_err(path, "open its directory"))?;
    create_in(&dir, name, path, state, replace)
}

/// [`create`] as `name` in the directory `dir` (held open: the ESP's `hnroot/`), never through
/// a link; `shown` names it in errors. The file is made beside it and renamed into place
/// (exclusively unless `replace`), with the mode the filesystem gives it (FAT's mount options).
pub fn create_in(
    dir: &std::os::fd::OwnedFd,
    name: &str,
    shown: &Path,
    state: &BootState,
    replace: bool,
) -> Result<(), BootStateFileError> {
    let block = new_block(state);
    let len = block.len() as u64;
    match crate::fsat::write_from(
        dir,
        name,
        &mut &block[..],
        crate::fsat::Meta::filesystem(0o644),
        replace,
        len,
    ) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(BootStateFileError::Exists {
            path: shown.to_owned(),
        }),
        Err(e) => Err(io_err(shown, "create")(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hnroot_core::bootstate::{Trial, Tries};
    use hnroot_core::uuid::FsUuid;

    const A: FsUuid = FsUuid::Uuid([0xa; 16]);

    #[test]
    fn create_write_read_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bootstate");
        assert_eq!(seen(&path).0, StateSeen::Absent);
        create(&path, &BootState::committed(A), false).unwrap();
        assert!(matches!(
            create(&path, &BootState::committed(A), false),
            Err(BootStateFileError::Exists { .. })
        ));
        let trial = BootState::Trial(Trial {
            image: A,
            tries: Tries::new(1, 3).unwrap(),
            good: None,
        });
        write(&path, &trial).unwrap();
        assert_eq!(seen(&path).0, StateSeen::Valid(trial));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), BLOCK_LEN as u64);
    }

    #[test]
    fn a_file_an_older_loader_keeps_stays_format_1_and_a_format_2_one_keeps_the_count() {
        use hnroot_core::bootstate::{encode_copy_as, format_seen, Record, Unhealthy};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bootstate");
        // What a format-1 loader (an hnroot before issue 24) left: one format-1 copy.
        let mut v1 = [0u8; BLOCK_LEN];
        v1[..BLOCK_LEN / 2].copy_from_slice(&encode_copy_as(
            &Record {
                sequence: 5,
                state: BootState::committed(A),
            },
            1,
        ));
        std::fs::write(&path, v1).unwrap();
        let counted = BootState::Committed {
            good: A,
            unhealthy: Unhealthy::THIS_BOOT,
        };
        write(&path, &counted).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(format_seen(&bytes), Some(1), "readable by the older loader");
        assert_eq!(seen(&path).0, StateSeen::Valid(BootState::committed(A)));
        // A file this hnroot creates with nothing counted is format 1 (any loader reads it).
        std::fs::remove_file(&path).unwrap();
        create(&path, &BootState::committed(A), false).unwrap();
        assert_eq!(format_seen(&std::fs::read(&path).unwrap()), Some(1));
        // Once this hnroot's loader has written format 2, the file keeps it and the count.
        let mut v2 = [0u8; BLOCK_LEN];
        v2[..BLOCK_LEN / 2].copy_from_slice(&encode_copy_as(
            &Record {
                sequence: 5,
                state: BootState::committed(A),
            },
            2,
        ));
        std::fs::write(&path, v2).unwrap();
        write(&path, &counted).unwrap();
        assert_eq!(format_seen(&std::fs::read(&path).unwrap()), Some(2));
        assert_eq!(seen(&path).0, StateSeen::Valid(counted));
    }

    #[test]
    fn a_write_put_back_leaves_the_file_byte_for_byte_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bootstate");
        create(&path, &BootState::committed(A), false).unwrap();
        let before = read(&path).unwrap().unwrap();
        let trial = BootState::Trial(Trial {
            image: A,
            tries: Tries::new(2, 3).unwrap(),
            good: Some(A),
        });
        write(&path, &trial).unwrap();
        assert_ne!(read(&path).unwrap().unwrap(), before);
        restore(&path, &before).unwrap();
        assert_eq!(read(&path).unwrap().unwrap(), before);
        assert_eq!(seen(&path).0, StateSeen::Valid(BootState::committed(A)));
        assert!(matches!(
            restore(&path, &before[..100]),
            Err(BootStateFileError::Size { found: 100, .. })
        ));
        assert_eq!(read(&path).unwrap().unwrap(), before);
    }

    #[test]
    fn wrong_size_is_corrupt_and_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bootstate");
        std::fs::write(&path, [7u8; 100]).unwrap();
        assert_eq!(seen(&path).0, StateSeen::Corrupt);
        let err = write(&path, &BootState::committed(A)).unwrap_err();
        assert!(
            err.to_string().contains("is 100 bytes, expected 1024"),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), [7u8; 100]);
    }

    #[test]
    fn a_symlink_is_not_followed_for_writing() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        create(&real, &BootState::committed(A), false).unwrap();
        let link = dir.path().join("bootstate");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(write(&link, &BootState::committed(A)).is_err());
    }

    #[test]
    fn a_directory_is_corrupt_and_force_replaces_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bootstate");
        std::fs::create_dir(&path).unwrap();
        let (state, why) = seen(&path);
        assert_eq!(state, StateSeen::Corrupt, "as GRUB judges it");
        assert!(why.is_some());
        std::fs::remove_dir(&path).unwrap();
        std::fs::write(&path, [1u8; 10]).unwrap();
        create(&path, &BootState::committed(A), true).unwrap();
        assert_eq!(seen(&path).0, StateSeen::Valid(BootState::committed(A)));
    }

    #[test]
    fn a_fifo_at_the_path_is_read_as_no_file_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bootstate");
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert_eq!(seen(&path).0, StateSeen::Corrupt);
        // A link at the name is replaced, never written through.
        std::fs::remove_file(&path).unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, b"keep").unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        assert!(matches!(
            create(&path, &BootState::committed(A), false),
            Err(BootStateFileError::Exists { .. })
        ));
        create(&path, &BootState::committed(A), true).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        assert_eq!(seen(&path).0, StateSeen::Valid(BootState::committed(A)));
    }

    #[test]
    fn a_bare_relative_name_is_created_in_the_current_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        std::fs::create_dir(&path).unwrap();
        create(&path.join("bootstate"), &BootState::committed(A), false).unwrap();
    }
}
