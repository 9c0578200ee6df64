//! The switch history on hostpart (`data/hnroot/history`, the codec is
//! `hnroot_core::history`): read every record, append one. The directories and the file are
//! reached from hostpart's directory descriptor, never through a link, and created when
//! missing. A record is one positioned write of 128 bytes and an `fsync`: a crash damages at
//! most that record, which readers skip.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use hnroot_core::history::{next_sequence, Record, RecordError, FILE_LEN, RECORD_LEN};
use hnroot_core::layout::HISTORY_PATH;

use crate::hostpart::Hostpart;

/// The history file, opened for reading (and writing, creating it, when `write`), through
/// the file layer: never through a link, only a regular file, non-blocking.
fn open(hostpart: &Hostpart, write: bool) -> io::Result<Option<File>> {
    let (dir_path, file_name) = HISTORY_PATH.rsplit_once('/').unwrap_or((".", HISTORY_PATH));
    let dir = if write {
        hostpart.make_dirs(dir_path).map_err(|e| e.error)?
    } else {
        match hostpart.open_dirs(dir_path).map_err(|e| e.error)? {
            Some(d) => d,
            None => return Ok(None),
        }
    };
    if write {
        return crate::fsat::open_file_rw(&dir, file_name, true, 0o644);
    }
    match crate::fsat::open_file(&dir, file_name) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// An error on the history file, naming it.
fn named(hostpart: &Hostpart, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("{}: {e}", hostpart.path().join(HISTORY_PATH).display()),
    )
}

/// What the history file holds.
#[derive(Debug, Default)]
pub struct History {
    /// Every record this hnroot reads, oldest first.
    pub records: Vec<Record>,
    /// Slots holding damage (torn writes, foreign bytes): counted, not returned.
    pub damaged: usize,
    /// Intact records a newer hnroot wrote, with events or reasons this one does not know:
    /// counted, not returned, and not damage.
    pub newer: usize,
    /// The highest sequence number of an intact record, readable or a newer hnroot's: the next
    /// record goes after it.
    pub newest: Option<u64>,
}

/// Every record, oldest first, and what was skipped. Errors name the file.
pub fn read(hostpart: &Hostpart) -> io::Result<History> {
    read_unnamed(hostpart).map_err(|e| named(hostpart, e))
}

fn read_unnamed(hostpart: &Hostpart) -> io::Result<History> {
    let Some(file) = open(hostpart, false)? else {
        return Ok(History::default());
    };
    let len = file.metadata()?.len().min(FILE_LEN as u64) as usize;
    let mut bytes = vec![0u8; len];
    file.read_exact_at(&mut bytes, 0)?;
    let mut history = History::default();
    for slot in bytes.chunks_exact(RECORD_LEN) {
        match Record::decode(slot) {
            Ok(r) => {
                history.newest = history.newest.max(Some(r.sequence));
                history.records.push(r);
            }
            Err(RecordError::Empty) => {}
            Err(e) if e.is_newer() => {
                if let RecordError::Unknown { sequence, .. } = e {
                    history.newest = history.newest.max(Some(sequence));
                }
                history.newer += 1;
            }
            Err(_) => history.damaged += 1,
        }
    }
    history.records.sort_by_key(|r| r.sequence);
    Ok(history)
}

/// Append `record` (its sequence number is set here) and sync it; returns it. Errors name the
/// file.
pub fn append(hostpart: &Hostpart, record: Record) -> io::Result<Record> {
    append_unnamed(hostpart, record).map_err(|e| named(hostpart, e))
}

fn append_unnamed(hostpart: &Hostpart, mut record: Record) -> io::Result<Record> {
    record.sequence = next_sequence(read_unnamed(hostpart)?.newest);
    let file = open(hostpart, true)?.ok_or_else(|| io::Error::other("no history file"))?;
    file.write_all_at(&record.encode(), Record::offset_of(record.sequence))?;
    file.sync_data()?;
    Ok(record)
}

/// Seconds since 1970 by this machine's clock (0 when it is before that).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hnroot_core::history::Event;
    use hnroot_core::name::ImageName;

    fn record(event: Event) -> Record {
        Record {
            sequence: 0,
            time: now(),
            event,
            reason: hnroot_core::ReasonCode::Update,
            plan: Some(hnroot_core::PlanKind::Update),
            image: Some(ImageName::New),
            now_at: Some(ImageName::Current),
            uuid: None,
            tries: Some((2, 3)),
            good: None,
            via: None,
        }
    }

    #[test]
    fn append_read_and_wrap() {
        let dir = tempfile::tempdir().unwrap();
        let hp = Hostpart::open(dir.path()).unwrap();
        assert!(read(&hp).unwrap().records.is_empty());
        for _ in 0..3 {
            append(&hp, record(Event::Boot)).unwrap();
        }
        let h = read(&hp).unwrap();
        assert_eq!(
            h.records.iter().map(|r| r.sequence).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!((h.damaged, h.newer), (0, 0));
        // Damage one record: it is skipped and counted.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join(HISTORY_PATH))
            .unwrap();
        f.write_all_at(&[0xff], 2 * RECORD_LEN as u64 + 30).unwrap();
        let h = read(&hp).unwrap();
        assert_eq!((h.records.len(), h.damaged, h.newer), (2, 1, 0));
        // A newer hnroot's record (an event this one does not know, its checksum right): skipped
        // and counted as newer, not as damage.
        let mut newer = record(Event::Boot);
        newer.sequence = 4;
        let mut newer = newer.encode();
        newer[5] = 250;
        let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(&newer[..RECORD_LEN - 4]);
        newer[RECORD_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
        f.write_all_at(&newer, Record::offset_of(4)).unwrap();
        let h = read(&hp).unwrap();
        assert_eq!((h.records.len(), h.damaged, h.newer), (2, 1, 1));
        // The next record goes after the newer hnroot's, never over it.
        assert_eq!(append(&hp, record(Event::Boot)).unwrap().sequence, 5);
        let h = read(&hp).unwrap();
        assert_eq!((h.records.len(), h.damaged, h.newer), (3, 1, 1));
        // A link at the history's directory is never followed.
        let other = tempfile::tempdir().unwrap();
        std::fs::remove_dir_all(dir.path().join("data/hnroot")).unwrap();
        std::os::unix::fs::symlink(other.path(), dir.path().join("data/hnroot")).unwrap();
        let e = append(&hp, record(Event::Boot)).unwrap_err().to_string();
        assert!(e.contains("data/hnroot/history"), "the file is named: {e}");
        assert_eq!(std::fs::read_dir(other.path()).unwrap().count(), 0);
    }
}
