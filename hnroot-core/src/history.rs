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
//! |      6 |    1 | GRUB's reason ([`ReasonCode::number`], 0 unknown)            |
//! |      7 |    1 | the plan's kind ([`PlanKind::number`], 0 none)               |
//! |      8 |    8 | sequence number                                              |
//! |     16 |    8 | time, seconds since 1970 (0 unknown)                         |
//! |     24 |    1 | image booted or concerned (`ImageName` index + 1, 0 none)    |
//! |     25 |    1 | where it lies afterwards (likewise)                          |
//! |     26 |    1 | tries left after this boot (trial), 0 otherwise              |
//! |     27 |    1 | tries in all (trial), 0 otherwise                            |
//! |     28 |   17 | its UUID: kind (0 none, 1 UUID, 2 FAT id) + 16 bytes         |
//! |     45 |   17 | the image known good after it, likewise                      |
//! |     62 |    1 | how the kernel was started ([`BootVia::number`], 0 unknown:   |
//! |        |      | an operator command, or a record from before it was kept)    |
//! |    124 |    4 | CRC32C of bytes 0..124                                       |

use core::fmt;
use core::ops::Range;

use crate::bootstate::{BootState, StateSeen};
use crate::cmdline::BootVia;
use crate::decide::ReasonCode;
use crate::name::ImageName;
use crate::plan::PlanKind;
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
const R_VIA: usize = 62;
const R_CRC: Range<usize> = 124..128;

const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

crate::codes::stable_codes! {
    /// What a record tells. The number is the one stored.
    pub enum Event {
        /// A boot reached the new root.
        Boot = 1 => "boot",
        /// A boot GRUB chose (and counted) that never reached the initramfs: a kernel that
        /// failed to load or panicked. Recorded by the next boot, from the tries the boot state
        /// lost.
        Missed = 2 => "missed-boot",
        /// A boot failed in the initramfs and rebooted into another image.
        Failed = 3 => "failed-boot",
        /// `hnroot stage`.
        Stage = 4 => "stage",
        /// `hnroot revert`.
        RevertRequested = 5 => "revert-requested",
        /// `hnroot mark-good`.
        MarkedGood = 6 => "marked-good",
        /// `hnroot install` put the first image on the disk.
        Installed = 7 => "installed",
        /// A health check of the running system failed (`hnroot health-failed`).
        HealthFailed = 8 => "health-failed",
        /// `hnroot bootloader update` replaced the boot loader on the ESP.
        LoaderUpdated = 9 => "loader-updated",
        /// `hnroot stage --allow-downgrade` staged an image older than the version floor (or
        /// one without a signed version while a floor is set).
        StageDowngrade = 10 => "stage-downgrade",
    }
}

/// An operator command (what [`Record::operator`] records).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Operator {
    /// `hnroot stage` staged an image.
    Stage,
    /// `hnroot revert` asked for a revert.
    RevertRequested,
    /// `hnroot mark-good` committed the running image.
    MarkedGood,
    /// `hnroot install` put the first image on a disk.
    Installed,
    /// `hnroot health-failed`: a health check of the running system failed.
    HealthFailed,
    /// `hnroot bootloader update` replaced the boot loader on the ESP.
    LoaderUpdated,
    /// `hnroot stage --allow-downgrade` staged an image below the version floor.
    StageDowngrade,
}

impl Operator {
    /// The event it is recorded as.
    pub const fn event(self) -> Event {
        match self {
            Operator::Stage => Event::Stage,
            Operator::RevertRequested => Event::RevertRequested,
            Operator::MarkedGood => Event::MarkedGood,
            Operator::Installed => Event::Installed,
            Operator::HealthFailed => Event::HealthFailed,
            Operator::LoaderUpdated => Event::LoaderUpdated,
            Operator::StageDowngrade => Event::StageDowngrade,
        }
    }

    /// The plan it carried out, if it is one.
    pub const fn plan(self) -> Option<PlanKind> {
        match self {
            Operator::Stage | Operator::StageDowngrade => Some(PlanKind::Stage),
            Operator::RevertRequested => Some(PlanKind::RequestRevert),
            Operator::MarkedGood => Some(PlanKind::MarkGood),
            // Recorded without its plan since the history began; kept so.
            Operator::Installed => None,
            Operator::HealthFailed | Operator::LoaderUpdated => None,
        }
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
    /// GRUB's reason ([`ReasonCode::Unknown`] for an operator command).
    pub reason: ReasonCode,
    /// The plan carried out, if any.
    pub plan: Option<PlanKind>,
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
    /// How the kernel of a boot was started (the loader, or `hnroot reboot`'s kexec); `None`
    /// for other events and for boots recorded before hnroot kept it.
    pub via: Option<BootVia>,
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

fn get_uuid(rec: &[u8], at: Range<usize>, sequence: u64) -> Result<Option<FsUuid>, RecordError> {
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
        value => Err(RecordError::Unknown {
            field: "uuid kind",
            value,
            sequence,
        }),
    }
}

fn name_byte(n: Option<ImageName>) -> u8 {
    n.map_or(0, |n| {
        u8::try_from(n.index()).unwrap_or(0).saturating_add(1)
    })
}

fn name_from(b: u8, sequence: u64) -> Result<Option<ImageName>, RecordError> {
    match b {
        0 => Ok(None),
        b => ImageName::ALL
            .get(usize::from(b.saturating_sub(1)))
            .copied()
            .map(Some)
            .ok_or(RecordError::Unknown {
                field: "image name",
                value: b,
                sequence,
            }),
    }
}

impl Record {
    /// The record of a boot that reached the new root: `booted` is what GRUB said it booted
    /// (none without `hnroot.image=`), `mounted` where that image lies now and its UUID,
    /// `grub_state` the boot state GRUB left (a trial of the mounted image gives the tries),
    /// `now` the boot state after the plan (the image known good), `via` how the kernel was
    /// started (`hnroot.via=` on the command line, else the loader).
    #[allow(clippy::too_many_arguments)]
    pub fn boot(
        time: u64,
        reason: ReasonCode,
        plan: PlanKind,
        booted: Option<ImageName>,
        mounted: (ImageName, FsUuid),
        grub_state: StateSeen,
        now: StateSeen,
        via: BootVia,
    ) -> Record {
        let tries = match grub_state {
            StateSeen::Valid(BootState::Trial(t)) if t.image == mounted.1 => {
                Some((t.tries.left(), t.tries.total()))
            }
            _ => None,
        };
        Record {
            sequence: 0,
            time,
            event: Event::Boot,
            reason,
            plan: Some(plan),
            image: booted,
            now_at: Some(mounted.0),
            uuid: Some(mounted.1),
            tries,
            good: match now {
                StateSeen::Valid(s) => s.good(),
                _ => None,
            },
            via: Some(via),
        }
    }

    /// The records of boots GRUB counted for this boot's trial that never reached an initramfs,
    /// oldest first, to be written before `this` (a [`Record::boot`]): seen from the tries the
    /// boot state lost since `last`, the newest boot or missed-boot record. At most
    /// [`crate::bootstate::MAX_TRIES`].
    pub fn missed_before(self, last: Option<&Record>) -> impl Iterator<Item = Record> {
        let missed = match (self.event, self.uuid, self.tries) {
            (Event::Boot, Some(image), Some((left, total))) => {
                missed_boots(last, image, left, total)
            }
            _ => 0,
        };
        let (left, total) = self.tries.unwrap_or((0, 0));
        (0..missed).map(move |n| Record {
            event: Event::Missed,
            plan: None,
            now_at: None,
            tries: Some((left.saturating_add(missed.saturating_sub(n)), total)),
            // Who started a boot that never arrived is not known.
            via: None,
            ..self
        })
    }

    /// The record of a boot that failed in the initramfs and reboots into another image:
    /// `failed` is the UUID GRUB booted, `booted` the name it booted it under, `seen` hostpart
    /// after the failure (where the image lies now, the image known good).
    pub fn failed(
        time: u64,
        reason: ReasonCode,
        booted: Option<ImageName>,
        failed: FsUuid,
        seen: &crate::observe::Observation,
    ) -> Record {
        Record {
            sequence: 0,
            time,
            event: Event::Failed,
            reason,
            plan: None,
            image: booted,
            now_at: seen.find(failed, &ImageName::ALL),
            uuid: Some(failed),
            tries: None,
            good: seen.good().filter(|&g| g != failed),
            via: None,
        }
    }

    /// The record of an operator command about `image` (with its UUID), leaving `good` the
    /// image known good.
    pub fn operator(
        time: u64,
        command: Operator,
        image: Option<ImageName>,
        uuid: Option<FsUuid>,
        good: Option<FsUuid>,
    ) -> Record {
        Record {
            sequence: 0,
            time,
            event: command.event(),
            reason: ReasonCode::Unknown,
            plan: command.plan(),
            image,
            now_at: image,
            uuid,
            tries: None,
            good,
            via: None,
        }
    }

    /// The 128 bytes.
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut r = [0u8; RECORD_LEN];
        if let Some(m) = r.get_mut(R_MAGIC) {
            m.copy_from_slice(&MAGIC);
        }
        let bytes: [(usize, u8); 9] = [
            (R_VERSION, VERSION),
            (R_EVENT, self.event.number()),
            (R_REASON, self.reason.number()),
            (R_PLAN, self.plan.map_or(0, PlanKind::number)),
            (R_IMAGE, name_byte(self.image)),
            (R_NOW_AT, name_byte(self.now_at)),
            (R_TRIES_LEFT, self.tries.map_or(0, |t| t.0)),
            (R_TRIES_TOTAL, self.tries.map_or(0, |t| t.1)),
            (R_VIA, self.via.map_or(0, BootVia::number)),
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
        let sequence = u64_at(R_SEQUENCE);
        let unknown = |field, at| RecordError::Unknown {
            field,
            value: byte(at),
            sequence,
        };
        let (left, total) = (byte(R_TRIES_LEFT), byte(R_TRIES_TOTAL));
        Ok(Record {
            sequence,
            time: u64_at(R_TIME),
            event: Event::from_number(byte(R_EVENT)).ok_or(unknown("event", R_EVENT))?,
            reason: ReasonCode::from_number(byte(R_REASON)).ok_or(unknown("reason", R_REASON))?,
            plan: match byte(R_PLAN) {
                0 => None,
                n => Some(PlanKind::from_number(n).ok_or(unknown("plan", R_PLAN))?),
            },
            image: name_from(byte(R_IMAGE), sequence)?,
            now_at: name_from(byte(R_NOW_AT), sequence)?,
            uuid: get_uuid(slot, R_UUID, sequence)?,
            tries: (total > 0).then_some((left, total)),
            good: get_uuid(slot, R_GOOD, sequence)?,
            via: match byte(R_VIA) {
                0 => None,
                n => Some(BootVia::from_number(n).ok_or(unknown("via", R_VIA))?),
            },
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
    /// Another format version (a newer hnroot's, when larger).
    Version(u8),
    /// A field out of range.
    Field(&'static str),
    /// An intact record holding a number this hnroot does not know in `field` (an event, a
    /// reason, a plan, a way of booting, an image name or a UUID kind added by a newer hnroot).
    Unknown {
        /// Which field.
        field: &'static str,
        /// Its number.
        value: u8,
        /// The record's sequence number (read: the format is this hnroot's): the next record
        /// written goes after it, never over it.
        sequence: u64,
    },
}

impl RecordError {
    /// Whether the slot holds an intact record (its checksum verified) that a newer hnroot wrote
    /// and this one cannot read: not damage, and not shown as damage.
    pub fn is_newer(&self) -> bool {
        match self {
            RecordError::Version(v) => *v > VERSION,
            RecordError::Unknown { .. } => true,
            _ => false,
        }
    }
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
            RecordError::Unknown { field, value, .. } => write!(
                f,
                "{field} {value}, which this hnroot does not know (a newer hnroot wrote it)"
            ),
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
        if self.reason != ReasonCode::Unknown {
            write!(f, " reason {}", self.reason)?;
        }
        if let Some(plan) = self.plan {
            write!(f, " plan {plan}")?;
        }
        if let Some((left, total)) = self.tries {
            write!(f, " tries {left}/{total} left")?;
        }
        if let Some(good) = self.good {
            write!(f, " good {good}")?;
        }
        if self.via == Some(BootVia::Kexec) {
            write!(f, " via {}", BootVia::Kexec)?;
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
            reason: ReasonCode::Update,
            plan: Some(PlanKind::Update),
            image: Some(ImageName::New),
            now_at: Some(ImageName::Current),
            uuid: Some(A),
            tries: Some((left, 3)),
            good: None,
            via: Some(BootVia::Loader),
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
    }

    /// `bytes` with byte `at` set to `value` and its checksum made right again, as a newer
    /// hnroot would write it.
    fn rewritten(mut bytes: [u8; RECORD_LEN], at: usize, value: u8) -> [u8; RECORD_LEN] {
        bytes[at] = value;
        let crc = CRC32C.checksum(&bytes[..R_CRC.start]);
        bytes[R_CRC].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    #[test]
    fn a_newer_hnroot_s_records_are_told_from_damage() {
        let bytes = boot(7, 2).encode();
        for (at, field) in [
            (R_EVENT, "event"),
            (R_REASON, "reason"),
            (R_PLAN, "plan"),
            (R_VIA, "via"),
            (R_IMAGE, "image name"),
        ] {
            let err = Record::decode(&rewritten(bytes, at, 250)).unwrap_err();
            assert_eq!(
                err,
                RecordError::Unknown {
                    field,
                    value: 250,
                    sequence: 7
                }
            );
            assert!(err.is_newer(), "{err}");
            let said = std::string::ToString::to_string(&err);
            assert!(said.contains("a newer hnroot wrote it"), "{said}");
        }
        let newer = Record::decode(&rewritten(bytes, R_VERSION, VERSION + 1)).unwrap_err();
        assert!(newer.is_newer(), "{newer:?}");
        // Damage stays damage: a torn write, a foreign block, a version below this one's.
        let mut torn = bytes;
        torn[R_REASON] = 250;
        assert!(!Record::decode(&torn).unwrap_err().is_newer());
        assert!(!RecordError::Magic.is_newer());
        assert!(!Record::decode(&rewritten(bytes, R_VERSION, 0))
            .unwrap_err()
            .is_newer());
    }

    #[test]
    fn a_boot_record_is_built_from_what_grub_left_and_the_plan_wrote() {
        let trial = BootState::Trial(crate::bootstate::Trial {
            image: A,
            tries: crate::bootstate::Tries::new(0, 3).unwrap(),
            good: None,
        });
        let committed = BootState::committed(A);
        let r = Record::boot(
            5,
            ReasonCode::Trial,
            PlanKind::Normal,
            Some(ImageName::Current),
            (ImageName::Current, A),
            StateSeen::Valid(trial),
            StateSeen::Valid(committed),
            BootVia::Kexec,
        );
        assert_eq!(r.via, Some(BootVia::Kexec));
        assert_eq!(Record::decode(&r.encode()), Ok(r));
        assert!(std::format!("{r}").ends_with(" via kexec"), "{r}");
        assert_eq!(r.tries, Some((0, 3)));
        assert_eq!(r.good, Some(A));
        assert_eq!(r.plan, Some(PlanKind::Normal));
        // The last boot saw 2 of 3 left: one boot in between never reached the initramfs.
        let missed: std::vec::Vec<Record> = r.missed_before(Some(&boot(1, 2))).collect();
        assert_eq!(missed.len(), 1);
        assert_eq!(
            (
                missed[0].event,
                missed[0].tries,
                missed[0].plan,
                missed[0].now_at
            ),
            (Event::Missed, Some((1, 3)), None, None)
        );
        // Not a trial of this image: nothing missed.
        let other = Record::boot(
            5,
            ReasonCode::Normal,
            PlanKind::Normal,
            None,
            (ImageName::Current, A),
            StateSeen::Valid(committed),
            StateSeen::Valid(committed),
            BootVia::Loader,
        );
        assert!(!std::format!("{other}").contains("via"), "{other}");
        assert_eq!(other.tries, None);
        assert_eq!(other.missed_before(Some(&boot(1, 2))).count(), 0);
        let c = Record::operator(9, Operator::Stage, Some(ImageName::New), Some(A), None);
        assert_eq!(
            (c.event, c.plan, c.reason, c.now_at),
            (
                Event::Stage,
                Some(PlanKind::Stage),
                ReasonCode::Unknown,
                Some(ImageName::New)
            )
        );
        assert_eq!(Operator::HealthFailed.plan(), None);
    }

    #[test]
    fn stored_numbers_never_change() {
        // The history file of format 1 holds these numbers: a change would misread every
        // server's history.
        let reasons: std::vec::Vec<(u8, &str)> = ReasonCode::ALL
            .iter()
            .map(|r| (r.number(), r.code()))
            .collect();
        assert_eq!(
            reasons,
            [
                (0, "unknown"),
                (1, "normal"),
                (2, "update"),
                (3, "trial"),
                (4, "manual-revert"),
                (5, "revert-refused"),
                (6, "automatic-rollback"),
                (7, "trial-exhausted"),
                (8, "recovery"),
                (9, "nothing-bootable"),
                (10, "next-image"),
                (11, "unhealthy-fallback"),
                (12, "backoff")
            ]
        );
        let plans: std::vec::Vec<(u8, &str)> = PlanKind::ALL
            .iter()
            .map(|p| (p.number(), p.code()))
            .collect();
        assert_eq!(
            plans,
            [
                (1, "normal"),
                (2, "update"),
                (3, "revert"),
                (4, "rollback"),
                (5, "promote"),
                (6, "as-is"),
                (7, "stage"),
                (8, "request-revert"),
                (9, "mark-good"),
                (10, "install")
            ]
        );
        let events: std::vec::Vec<(u8, &str)> =
            Event::ALL.iter().map(|e| (e.number(), e.code())).collect();
        assert_eq!(
            events,
            [
                (1, "boot"),
                (2, "missed-boot"),
                (3, "failed-boot"),
                (4, "stage"),
                (5, "revert-requested"),
                (6, "marked-good"),
                (7, "installed"),
                (8, "health-failed"),
                (9, "loader-updated"),
                (10, "stage-downgrade")
            ]
        );
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
