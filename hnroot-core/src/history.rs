//! The switch history: what every boot and every operator command did, as fixed-size records
//! in a bounded ring file on hostpart ([`crate::layout::HISTORY_PATH`], [`SLOTS`] records of
//! [`RECORD_LEN`] bytes). Each record carries a sequence number and a CRC32C, so a torn write
//! damages at most the one record being written and a reader skips it; the writer puts
//! record `n` in slot `n % SLOTS`, overwriting the oldest. This module is the codec and the
//! arithmetic; it never reads or writes a file.
//!
//! | offset | size | field                                                        |
//! |-------:|-----:|--------------------------------------------------------------|
//! |      0 |    4 | magic `HNRH`                                                 |
//! |      4 |    1 | format version (1)                                           |
//! |      5 |    1 | event: 1 boot, 2 boot GRUB chose that never reached the      |
//! |        |      | initramfs, 3 boot failed (rebooted into another image),      |
//! |        |      | 4 stage, 5 revert requested, 6 marked good, 7 installed,     |
//! |        |      | 8 a health check failed                                      |
//! |      6 |    1 | GRUB's reason (index in [`REASONS`], 0 unknown)              |
//! |      7 |    1 | the plan's kind (index in [`PLAN_KINDS`], 0 none)            |
//! |      8 |    8 | sequence number                                              |
//! |     16 |    8 | time, seconds since 1970 (0 unknown)                         |
//! |     24 |    1 | image booted or concerned (`ImageName` index + 1, 0 none)    |
//! |     25 |    1 | where it lies afterwards (likewise)                          |
//! |     26 |    1 | tries left after this boot (trial), 0 otherwise              |
//! |     27 |    1 | tries in all (trial), 0 otherwise                            |
//! |     28 |   17 | its UUID: kind (0 none, 1 UUID, 2 FAT id) + 16 bytes         |
//! |     45 |   17 | the image known good after it, likewise                      |
//! |    124 |    4 | CRC32C of bytes 0..124                                       |

use core::fmt;
use core::ops::Range;

use crate::name::ImageName;
use crate::uuid::FsUuid;

/// Bytes of one record.
pub const RECORD_LEN: usize = 128;
/// Records the file holds; then the oldest is overwritten.
pub const SLOTS: usize = 1024;
/// Bytes of the whole file.
pub const FILE_LEN: usize = RECORD_LEN * SLOTS;

const MAGIC: [u8; 4] = *b"HNRH";
const VERSION: u8 = 1;
const R_MAGIC: Range<usize> = 0..4;
const R_VERSION: usize = 4;
const R_EVENT: usize = 5;
const R_REASON: usize = 6;
const R_PLAN: usize = 7;
const R_SEQUENCE: Range<usize> = 8..16;
const R_TIME: Range<usize> = 16..24;
const R_IMAGE: usize = 24;
const R_NOW_AT: usize = 25;
const R_TRIES_LEFT: usize = 26;
const R_TRIES_TOTAL: usize = 27;
const R_UUID: Range<usize> = 28..45;
const R_GOOD: Range<usize> = 45..62;
const R_CRC: Range<usize> = 124..128;

const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// GRUB's reason codes, in the order they are stored (index 0: unknown).
pub const REASONS: [&str; 11] = [
    "unknown",
    "normal",
    "update",
    "trial",
    "manual-revert",
    "revert-refused",
    "automatic-rollback",
    "trial-exhausted",
    "recovery",
    "nothing-bootable",
    "next-image",
];

/// Plan kinds, in the order they are stored (index 0: none).
pub const PLAN_KINDS: [&str; 11] = [
    "-",
    "normal",
    "update",
    "revert",
    "rollback",
    "promote",
    "as-is",
    "stage",
    "request-revert",
    "mark-good",
    "install",
];

/// What a record tells.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Event {
    /// A boot reached the new root.
    Boot,
    /// A boot GRUB chose (and counted) that never reached the initramfs: a kernel that failed
    /// to load or panicked. Recorded by the next boot, from the tries the boot state lost.
    Missed,
    /// A boot failed in the initramfs and rebooted into another image.
    Failed,
    /// `hnroot stage`.
    Stage,
    /// `hnroot revert`.
    RevertRequested,
    /// `hnroot mark-good`.
    MarkedGood,
    /// `hnroot install` put the first image on the disk.
    Installed,
    /// A health check of the running system failed (`hnroot health-failed`).
    HealthFailed,
    /// `hnroot bootloader update` replaced the boot loader on the ESP.
    LoaderUpdated,
}

impl Event {
    const ALL: [Event; 9] = [
        Event::Boot,
        Event::Missed,
        Event::Failed,
        Event::Stage,
        Event::RevertRequested,
        Event::MarkedGood,
        Event::Installed,
        Event::HealthFailed,
        Event::LoaderUpdated,
    ];

    /// A stable name for text and JSON.
    pub const fn code(self) -> &'static str {
        match self {
            Event::Boot => "boot",
            Event::Missed => "missed-boot",
            Event::Failed => "failed-boot",
            Event::Stage => "stage",
            Event::RevertRequested => "revert-requested",
            Event::MarkedGood => "marked-good",
            Event::Installed => "installed",
            Event::HealthFailed => "health-failed",
            Event::LoaderUpdated => "loader-updated",
        }
    }

    fn byte(self) -> u8 {
        match self {
            Event::Boot => 1,
            Event::Missed => 2,
            Event::Failed => 3,
            Event::Stage => 4,
            Event::RevertRequested => 5,
            Event::MarkedGood => 6,
            Event::Installed => 7,
            Event::HealthFailed => 8,
            Event::LoaderUpdated => 9,
        }
    }

    fn from_byte(b: u8) -> Option<Event> {
        Event::ALL.into_iter().find(|e| e.byte() == b)
    }
}

/// One entry of the history.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Record {
    /// Order of writing; the newest is the highest.
    pub sequence: u64,
    /// Seconds since 1970 by the machine's clock (0 when unknown).
    pub time: u64,
    /// What happened.
    pub event: Event,
    /// GRUB's reason (a code of [`REASONS`]).
    pub reason: &'static str,
    /// The plan's kind (a code of [`PLAN_KINDS`]).
    pub plan: &'static str,
    /// The image booted or concerned, under the name it had.
    pub image: Option<ImageName>,
    /// Where it lies afterwards.
    pub now_at: Option<ImageName>,
    /// Its UUID.
    pub uuid: Option<FsUuid>,
    /// Tries left and in all, for a trial.
    pub tries: Option<(u8, u8)>,
    /// The image known good afterwards.
    pub good: Option<FsUuid>,
}

fn code_index(table: &[&str], code: &str) -> u8 {
    table
        .iter()
        .position(|c| *c == code)
        .and_then(|i| u8::try_from(i).ok())
        .unwrap_or(0)
}

fn code_at(table: &[&'static str], i: u8) -> Option<&'static str> {
    table.get(usize::from(i)).copied()
}

/// The stored form of a reason code (an unknown one becomes `unknown`).
pub fn reason_code(code: &str) -> &'static str {
    code_at(&REASONS, code_index(&REASONS, code)).unwrap_or("unknown")
}

/// The stored form of a plan kind code (an unknown one becomes `-`).
pub fn plan_code(code: &str) -> &'static str {
    code_at(&PLAN_KINDS, code_index(&PLAN_KINDS, code)).unwrap_or("-")
}

fn put_uuid(rec: &mut [u8; RECORD_LEN], at: Range<usize>, uuid: Option<FsUuid>) {
    let (kind, bytes): (u8, &[u8]) = match &uuid {
        None => (0, &[]),
        Some(FsUuid::Uuid(b)) => (1, b),
        Some(FsUuid::VolumeId(b)) => (2, b),
    };
    if let Some(k) = rec.get_mut(at.start) {
        *k = kind;
    }
    let start = at.start.saturating_add(1);
    if let Some(dst) = rec.get_mut(start..start.saturating_add(bytes.len())) {
        dst.copy_from_slice(bytes);
    }
}

fn get_uuid(rec: &[u8], at: Range<usize>) -> Result<Option<FsUuid>, RecordError> {
    let kind = rec.get(at.start).copied().unwrap_or(0);
    let start = at.start.saturating_add(1);
    let bytes = rec.get(start..at.end).ok_or(RecordError::Field("uuid"))?;
    match kind {
        0 => Ok(None),
        1 => {
            let mut b = [0u8; 16];
            b.copy_from_slice(bytes.get(..16).ok_or(RecordError::Field("uuid"))?);
            Ok(Some(FsUuid::Uuid(b)))
        }
        2 => {
            let mut b = [0u8; 4];
            b.copy_from_slice(bytes.get(..4).ok_or(RecordError::Field("uuid"))?);
            Ok(Some(FsUuid::VolumeId(b)))
        }
        _ => Err(RecordError::Field("uuid kind")),
    }
}

fn name_byte(n: Option<ImageName>) -> u8 {
    n.map_or(0, |n| {
        u8::try_from(n.index()).unwrap_or(0).saturating_add(1)
    })
}

fn name_from(b: u8) -> Result<Option<ImageName>, RecordError> {
    match b {
        0 => Ok(None),
        b => ImageName::ALL
            .get(usize::from(b.saturating_sub(1)))
            .copied()
            .map(Some)
            .ok_or(RecordError::Field("image name")),
    }
}

impl Record {
    /// The 128 bytes.
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut r = [0u8; RECORD_LEN];
        if let Some(m) = r.get_mut(R_MAGIC) {
            m.copy_from_slice(&MAGIC);
        }
        let bytes: [(usize, u8); 8] = [
            (R_VERSION, VERSION),
            (R_EVENT, self.event.byte()),
            (R_REASON, code_index(&REASONS, self.reason)),
            (R_PLAN, code_index(&PLAN_KINDS, self.plan)),
            (R_IMAGE, name_byte(self.image)),
            (R_NOW_AT, name_byte(self.now_at)),
            (R_TRIES_LEFT, self.tries.map_or(0, |t| t.0)),
            (R_TRIES_TOTAL, self.tries.map_or(0, |t| t.1)),
        ];
        for (at, v) in bytes {
            if let Some(b) = r.get_mut(at) {
                *b = v;
            }
        }
        if let Some(s) = r.get_mut(R_SEQUENCE) {
            s.copy_from_slice(&self.sequence.to_le_bytes());
        }
        if let Some(t) = r.get_mut(R_TIME) {
            t.copy_from_slice(&self.time.to_le_bytes());
        }
        put_uuid(&mut r, R_UUID, self.uuid);
        put_uuid(&mut r, R_GOOD, self.good);
        let crc = CRC32C.checksum(r.get(..R_CRC.start).unwrap_or(&[]));
        if let Some(c) = r.get_mut(R_CRC) {
            c.copy_from_slice(&crc.to_le_bytes());
        }
        r
    }

    /// Decode one slot: length, magic, checksum, version, fields.
    pub fn decode(slot: &[u8]) -> Result<Record, RecordError> {
        if slot.len() != RECORD_LEN {
            return Err(RecordError::Length);
        }
        if slot.iter().all(|&b| b == 0) {
            return Err(RecordError::Empty);
        }
        if slot.get(R_MAGIC) != Some(&MAGIC[..]) {
            return Err(RecordError::Magic);
        }
        let crc = CRC32C.checksum(slot.get(..R_CRC.start).unwrap_or(&[]));
        let stored = slot
            .get(R_CRC)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes)
            .unwrap_or(0);
        if crc != stored {
            return Err(RecordError::Checksum);
        }
        let byte = |at: usize| slot.get(at).copied().unwrap_or(0);
        if byte(R_VERSION) != VERSION {
            return Err(RecordError::Version(byte(R_VERSION)));
        }
        let u64_at = |r: Range<usize>| {
            slot.get(r)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_le_bytes)
                .unwrap_or(0)
        };
        let (left, total) = (byte(R_TRIES_LEFT), byte(R_TRIES_TOTAL));
        Ok(Record {
            sequence: u64_at(R_SEQUENCE),
            time: u64_at(R_TIME),
            event: Event::from_byte(byte(R_EVENT)).ok_or(RecordError::Field("event"))?,
            reason: code_at(&REASONS, byte(R_REASON)).ok_or(RecordError::Field("reason"))?,
            plan: code_at(&PLAN_KINDS, byte(R_PLAN)).ok_or(RecordError::Field("plan"))?,
            image: name_from(byte(R_IMAGE))?,
            now_at: name_from(byte(R_NOW_AT))?,
            uuid: get_uuid(slot, R_UUID)?,
            tries: (total > 0).then_some((left, total)),
            good: get_uuid(slot, R_GOOD)?,
        })
    }

    /// The byte offset in the file where the record with this sequence number goes.
    pub fn offset_of(sequence: u64) -> u64 {
        sequence
            .checked_rem(SLOTS as u64)
            .unwrap_or(0)
            .saturating_mul(RECORD_LEN as u64)
    }
}

/// Why a slot holds no record.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RecordError {
    /// Not 128 bytes.
    Length,
    /// Never written.
    Empty,
    /// No `HNRH`.
    Magic,
    /// A torn or damaged write.
    Checksum,
    /// Written by a newer hnroot.
    Version(u8),
    /// A field out of range.
    Field(&'static str),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Length => f.write_str("not a whole record"),
            RecordError::Empty => f.write_str("empty"),
            RecordError::Magic => f.write_str("no HNRH magic"),
            RecordError::Checksum => f.write_str("CRC32C mismatch (a torn write)"),
            RecordError::Version(v) => write!(f, "format version {v}, this hnroot reads {VERSION}"),
            RecordError::Field(what) => write!(f, "invalid {what}"),
        }
    }
}

/// The next sequence number after the records found (1 for an empty history).
pub fn next_sequence(newest: Option<u64>) -> u64 {
    newest.map_or(1, |s| s.saturating_add(1))
}

/// Boots GRUB counted for `image`'s trial that never reached the initramfs: the tries the
/// boot state now has left, against the tries left the last record of that trial saw. GRUB
/// consumes one try per boot before the kernel loads, and this boot consumed one itself.
pub fn missed_boots(last: Option<&Record>, image: FsUuid, tries_left_now: u8, total_now: u8) -> u8 {
    let Some(last) = last else { return 0 };
    match (last.uuid, last.tries) {
        (Some(u), Some((left_then, total_then))) if u == image && total_then == total_now => {
            left_then.saturating_sub(1).saturating_sub(tries_left_now)
        }
        _ => 0,
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} {}", self.sequence, self.event.code())?;
        if let Some(image) = self.image {
            write!(f, " {image}")?;
        }
        if let (Some(at), Some(image)) = (self.now_at, self.image) {
            if at != image {
                write!(f, " -> {at}")?;
            }
        }
        if let Some(uuid) = self.uuid {
            write!(f, " (UUID {uuid})")?;
        }
        if self.reason != "unknown" {
            write!(f, " reason {}", self.reason)?;
        }
        if self.plan != "-" {
            write!(f, " plan {}", self.plan)?;
        }
        if let Some((left, total)) = self.tries {
            write!(f, " tries {left}/{total} left")?;
        }
        if let Some(good) = self.good {
            write!(f, " good {good}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: FsUuid = FsUuid::Uuid([0xa; 16]);

    fn boot(sequence: u64, left: u8) -> Record {
        Record {
            sequence,
            time: 1_764_500_000,
            event: Event::Boot,
            reason: "update",
            plan: "update",
            image: Some(ImageName::New),
            now_at: Some(ImageName::Current),
            uuid: Some(A),
            tries: Some((left, 3)),
            good: None,
        }
    }

    #[test]
    fn records_round_trip_and_damage_is_seen() {
        let r = boot(7, 2);
        let bytes = r.encode();
        assert_eq!(Record::decode(&bytes), Ok(r));
        let mut torn = bytes;
        torn[40] ^= 1;
        assert_eq!(Record::decode(&torn), Err(RecordError::Checksum));
        assert_eq!(Record::decode(&[0u8; RECORD_LEN]), Err(RecordError::Empty));
        assert_eq!(Record::decode(&bytes[..10]), Err(RecordError::Length));
        assert_eq!(Record::offset_of(SLOTS as u64 + 3), 3 * RECORD_LEN as u64);
        assert_eq!(reason_code("no-such"), "unknown");
        assert_eq!(plan_code("rollback"), "rollback");
    }

    #[test]
    fn missed_boots_come_from_the_tries_the_state_lost() {
        // The last boot recorded the trial with 2 of 3 left; this boot finds 0 left: GRUB
        // counted one boot that never reached the initramfs (this one counted the other).
        assert_eq!(missed_boots(Some(&boot(1, 2)), A, 0, 3), 1);
        assert_eq!(missed_boots(Some(&boot(1, 2)), A, 1, 3), 0);
        assert_eq!(
            missed_boots(Some(&boot(1, 2)), FsUuid::Uuid([1; 16]), 0, 3),
            0
        );
        assert_eq!(missed_boots(None, A, 0, 3), 0);
    }
}
