//! The boot-state block: what hnroot remembers between boots (which image is on trial, how many
//! tries it has left, which image was last marked good, how many boots of a committed image have
//! not reached healthy), and its on-disk codec.
//!
//! The block lives in a preallocated file on the `EFI-BOOT` ESP (`/hnroot/bootstate`, 1024
//! bytes) so GRUB can rewrite it in place through the file's block list, as it does for `grubenv`.
//! It holds two 512-byte copies, each in its own sector:
//!
//! | offset | size | field                                                     |
//! |-------:|-----:|-----------------------------------------------------------|
//! |      0 |    8 | magic `HNROOTBS`                                          |
//! |      8 |    2 | format version, little endian (1 or 2)                    |
//! |     10 |    2 | bytes covered by the record (64)                          |
//! |     16 |    8 | sequence number, little endian; the higher valid copy wins|
//! |     24 |    1 | state: 1 committed, 2 trial                               |
//! |     25 |    1 | tries left (trial)                                        |
//! |     26 |    1 | tries in all (trial)                                      |
//! |     27 |    1 | format 2: committed, boots since the last healthy one;    |
//! |        |      | trial, boots that were not its tries                      |
//! |     28 |    1 | kind of the trial image's UUID: 0 none, 1 UUID, 2 FAT id  |
//! |     29 |    1 | kind of the good image's UUID: 0 none, 1 UUID, 2 FAT id   |
//! |     32 |   16 | UUID of the image on trial                                |
//! |     48 |   16 | UUID of the last image marked good                        |
//! |    508 |    4 | CRC32C (Castagnoli) of bytes 0..508, little endian        |
//!
//! Every other byte is zero. Decoding picks the valid copy with the highest sequence number, so
//! a torn write of either copy leaves the other one in force; encoding writes the copy that does
//! not hold the newest valid record. This module never reads or writes a disk.
//!
//! ## Formats
//!
//! Format 1 has no count of unhealthy boots (byte 27 is zero); format 2 adds it. This hnroot
//! reads both ([`READS_FROM`] to [`FORMAT_VERSION`]); a format-1 copy reads as a committed
//! state with no unhealthy boots counted. GRUB writes format 2 (its loader says so in its
//! version record). Linux writes the format the newest valid copy already has
//! ([`Block::encode_as_found`]): while the ESP's loader is one that only reads format 1, every
//! copy on the ESP is format 1 and stays so (a count of zero, what `hnroot mark-good` writes,
//! is what format 1 means anyway; a plan's count of one is dropped), so an older loader never
//! meets a copy it cannot read; a loader that reads format 2 writes it at its next boot. An
//! older loader that finds a format-2 copy refuses it as a newer format and never overwrites it
//! (its `CopyError::Version`/`BlockError::NewerFormat`), and `hnroot bootloader update` refuses
//! to install a loader that cannot read the ESP's format.

use core::fmt;
use core::ops::Range;

use crate::uuid::FsUuid;

/// Size of the boot-state file: two copies.
pub const BLOCK_LEN: usize = 2 * COPY_LEN;
/// Size of one copy: one sector, so a torn sector write can damage at most one copy.
pub const COPY_LEN: usize = 512;
/// Most tries a trial can be given.
pub const MAX_TRIES: u8 = 100;
/// Tries a new image gets when nothing else is configured.
pub const DEFAULT_TRIES: u8 = 3;

const MAGIC: [u8; 8] = *b"HNROOTBS";
const VERSION: u16 = 2;
/// The format version this hnroot writes (what a loader's version record names).
pub const FORMAT_VERSION: u16 = VERSION;
/// The oldest format version this hnroot reads.
pub const READS_FROM: u16 = 1;
/// Boots of a committed image that never reached healthy before GRUB boots the other committed
/// image (`hn-root-old.img`), when nothing else is configured.
pub const DEFAULT_BOOT_LIMIT: u8 = 3;
/// The largest boot limit that may be configured.
pub const MAX_BOOT_LIMIT: u8 = 100;
const RECORD_LEN: u16 = 64;

const R_MAGIC: Range<usize> = 0..8;
const R_VERSION: Range<usize> = 8..10;
const R_RECORD_LEN: Range<usize> = 10..12;
const R_SEQUENCE: Range<usize> = 16..24;
const R_STATE: usize = 24;
const R_TRIES_LEFT: usize = 25;
const R_TRIES_TOTAL: usize = 26;
const R_UNHEALTHY: usize = 27;
const R_TRIAL_KIND: usize = 28;
const R_GOOD_KIND: usize = 29;
const R_TRIAL_UUID: Range<usize> = 32..48;
const R_GOOD_UUID: Range<usize> = 48..64;
const R_CRC: Range<usize> = 508..512;

/// Bytes a version 1 writer leaves zero.
const R_RESERVED_V1: [Range<usize>; 4] = [12..16, 27..28, 30..32, 64..508];
/// Bytes a version 2 writer leaves zero.
const R_RESERVED_V2: [Range<usize>; 3] = [12..16, 30..32, 64..508];

const STATE_COMMITTED: u8 = 1;
const STATE_TRIAL: u8 = 2;
const UUID_NONE: u8 = 0;
const UUID_128: u8 = 1;
const UUID_FAT: u8 = 2;

const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// How many boots an image on trial has left, and how many other boots GRUB made while the
/// trial was recorded (rollback boots once it ran out, recovery boots): those count towards the
/// waits of rule 7 of [`mod@crate::decide`] as a committed state's unhealthy boots do.
///
/// Always `1 <= total <= MAX_TRIES` and `left <= total`: [`Tries::new`] refuses anything else.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Tries {
    left: u8,
    total: u8,
    others: Unhealthy,
}

impl Tries {
    /// `left` of `total` tries; `None` unless `1 <= total <= MAX_TRIES` and `left <= total`.
    pub const fn new(left: u8, total: u8) -> Option<Tries> {
        if total == 0 || total > MAX_TRIES || left > total {
            None
        } else {
            Some(Tries {
                left,
                total,
                others: Unhealthy::NONE,
            })
        }
    }

    /// Boots that were not tries of the trial image (format 2 records them).
    pub const fn others(self) -> Unhealthy {
        self.others
    }

    /// The same trial with `others` other boots.
    pub const fn with_others(self, others: Unhealthy) -> Tries {
        Tries { others, ..self }
    }

    /// A fresh trial of `total` tries, clamped into `1..=MAX_TRIES`.
    pub const fn fresh(total: u8) -> Tries {
        let total = if total == 0 {
            1
        } else if total > MAX_TRIES {
            MAX_TRIES
        } else {
            total
        };
        Tries {
            left: total,
            total,
            others: Unhealthy::NONE,
        }
    }

    /// Boots left before the image is rolled back.
    pub const fn left(self) -> u8 {
        self.left
    }

    /// Boots the trial had in all.
    pub const fn total(self) -> u8 {
        self.total
    }

    /// Consume one try: the attempt number this boot is (1-based) and what is left afterwards;
    /// `None` when no try is left.
    pub const fn consume(self) -> Option<(u8, Tries)> {
        let Some(left) = self.left.checked_sub(1) else {
            return None;
        };
        // `left < self.left <= total`, so this cannot underflow; saturating keeps it const.
        Some((
            self.total.saturating_sub(left),
            Tries {
                left,
                total: self.total,
                others: self.others,
            },
        ))
    }

    /// The same trial with nothing left: the next boot rolls back.
    pub const fn exhausted(self) -> Tries {
        Tries {
            left: 0,
            total: self.total,
            others: self.others,
        }
    }
}

/// A new image on trial.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Trial {
    /// Filesystem UUID of the image on trial, wherever it currently lies.
    pub image: FsUuid,
    /// Boots it has left.
    pub tries: Tries,
    /// The last image marked good when the trial began, if that is known. The image that holds
    /// it must survive the trial.
    pub good: Option<FsUuid>,
}

/// Boots since the machine last reached healthy (`hnroot mark-good`), while the boot state is
/// committed: GRUB counts every boot before it loads the kernel, `hnroot mark-good` resets the
/// count. It saturates at 255 (the waits are at their cap long before).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, PartialOrd, Ord)]
pub struct Unhealthy(u8);

impl Unhealthy {
    /// No boot counted: the last boot reached healthy (or nothing has booted since the commit).
    pub const NONE: Unhealthy = Unhealthy(0);
    /// This boot only: what a plan that commits an image during its boot records.
    pub const THIS_BOOT: Unhealthy = Unhealthy(1);

    /// `boots` unhealthy boots.
    pub const fn new(boots: u8) -> Unhealthy {
        Unhealthy(boots)
    }

    /// How many.
    pub const fn boots(self) -> u8 {
        self.0
    }

    /// One more boot counted (saturating).
    pub const fn counted(self) -> Unhealthy {
        Unhealthy(self.0.saturating_add(1))
    }
}

/// What hnroot remembers between boots.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum BootState {
    /// No trial: the image with this UUID was marked good (`hnroot mark-good`) or reverted to.
    Committed {
        /// The image last marked good.
        good: FsUuid,
        /// Boots since the last one that reached healthy.
        unhealthy: Unhealthy,
    },
    /// An image is on trial.
    Trial(Trial),
}

impl BootState {
    /// Committed to `good`, no unhealthy boot counted (what `hnroot mark-good` writes).
    pub const fn committed(good: FsUuid) -> BootState {
        BootState::Committed {
            good,
            unhealthy: Unhealthy::NONE,
        }
    }

    /// Whether it is committed to `uuid`, whatever the count.
    pub fn is_committed_to(&self, uuid: FsUuid) -> bool {
        matches!(self, BootState::Committed { good, .. } if *good == uuid)
    }

    /// The unhealthy boots counted, when committed.
    pub fn unhealthy(&self) -> Option<Unhealthy> {
        match self {
            BootState::Committed { unhealthy, .. } => Some(*unhealthy),
            BootState::Trial(_) => None,
        }
    }

    /// Boots counted towards rule 7's waits: a committed state's unhealthy boots, a trial's
    /// boots that were not its tries.
    pub fn counted_boots(&self) -> Unhealthy {
        match self {
            BootState::Committed { unhealthy, .. } => *unhealthy,
            BootState::Trial(t) => t.tries.others(),
        }
    }

    /// The same state with one more boot counted (what GRUB writes for a boot that neither
    /// starts nor continues a trial).
    pub fn count_boot(&self) -> BootState {
        match *self {
            BootState::Committed { good, unhealthy } => BootState::Committed {
                good,
                unhealthy: unhealthy.counted(),
            },
            BootState::Trial(t) => BootState::Trial(Trial {
                tries: t.tries.with_others(t.tries.others().counted()),
                ..t
            }),
        }
    }

    /// The image known to be good, if any.
    pub fn good(&self) -> Option<FsUuid> {
        match self {
            BootState::Committed { good, .. } => Some(*good),
            BootState::Trial(trial) => trial.good,
        }
    }

    /// The trial in progress, if any.
    pub fn trial(&self) -> Option<&Trial> {
        match self {
            BootState::Committed { .. } => None,
            BootState::Trial(trial) => Some(trial),
        }
    }
}

/// A count of boots in words: "1 boot", "2 boots".
struct Boots(u8, &'static str);

impl fmt::Display for Boots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            1 => write!(f, "1 {}", self.1),
            n => write!(f, "{n} {}s", self.1),
        }
    }
}

impl fmt::Display for BootState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootState::Committed { good, unhealthy } if unhealthy.boots() == 0 => {
                write!(f, "committed (good {good})")
            }
            BootState::Committed { good, unhealthy } => write!(
                f,
                "committed (good {good}, {} since the last healthy one)",
                Boots(unhealthy.boots(), "boot")
            ),
            BootState::Trial(t) => {
                write!(
                    f,
                    "trial of {} ({} of {} tries left",
                    t.image, t.tries.left, t.tries.total
                )?;
                if t.tries.others.boots() > 0 {
                    write!(f, ", {}", Boots(t.tries.others.boots(), "other boot"))?;
                }
                match t.good {
                    Some(good) => write!(f, ", good {good})"),
                    None => f.write_str(", good unknown)"),
                }
            }
        }
    }
}

/// A decoded copy: the state and the sequence number it was written with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Record {
    /// Higher wins.
    pub sequence: u64,
    /// The state this copy holds.
    pub state: BootState,
}

/// Why one copy is not a valid record.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CopyError {
    /// Every byte is zero: never written (a freshly preallocated file).
    Blank,
    /// The first 8 bytes are not `HNROOTBS`.
    Magic,
    /// The CRC32C does not match: a torn or damaged write.
    Checksum {
        /// CRC stored in the copy.
        stored: u32,
        /// CRC of the bytes as found.
        computed: u32,
    },
    /// Written by a newer hnroot: this one does not understand it and will not overwrite it
    /// unless no valid copy remains.
    Version {
        /// The version found.
        found: u16,
    },
    /// Checksum fine but a field is out of range (a writer bug, not a torn write).
    Field {
        /// Which field.
        field: &'static str,
    },
}

impl core::error::Error for CopyError {}

impl fmt::Display for CopyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CopyError::Blank => f.write_str("blank (never written)"),
            CopyError::Magic => f.write_str("no HNROOTBS magic"),
            CopyError::Checksum { stored, computed } => write!(
                f,
                "CRC32C mismatch (stored {stored:08x}, computed {computed:08x}): torn or damaged write"
            ),
            CopyError::Version { found } => write!(
                f,
                "format version {found}, this hnroot reads versions {READS_FROM} to {VERSION}"
            ),
            CopyError::Field { field } => write!(f, "invalid {field}"),
        }
    }
}

/// The boot-state file as found: both copies, and the one in force.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Block {
    /// Each copy, decoded or refused.
    pub copies: [Result<Record, CopyError>; 2],
}

/// The boot state a reader should act on.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum StateSeen {
    /// No boot-state file, or one that was never written (both copies blank).
    Absent,
    /// A boot-state file whose copies are both invalid, and not both blank.
    Corrupt,
    /// The newest valid copy.
    Valid(BootState),
}

/// Why a boot-state file cannot be used at all.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BlockError {
    /// The file is not exactly [`BLOCK_LEN`] bytes, so it is not ours (or was truncated); it is
    /// never written.
    Size {
        /// Its size.
        found: usize,
    },
    /// The sequence number would overflow. Never seen in practice (2^64 writes).
    SequenceExhausted,
    /// The copy a write would replace was written by a newer hnroot (a format this one does
    /// not read): it is never overwritten, so a downgrade cannot destroy what the newer
    /// version recorded.
    NewerFormat {
        /// The format version found.
        found: u16,
    },
}

impl core::error::Error for BlockError {}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockError::Size { found } => {
                write!(f, "boot-state file is {found} bytes, expected {BLOCK_LEN}")
            }
            BlockError::SequenceExhausted => f.write_str("boot-state sequence number exhausted"),
            BlockError::NewerFormat { found } => write!(
                f,
                "boot-state copy written by a newer hnroot (format {found}; this one writes \
                 format {VERSION}): not overwritten"
            ),
        }
    }
}

impl Block {
    /// Decode the whole file. Fails only when its size is wrong.
    pub fn decode(bytes: &[u8]) -> Result<Block, BlockError> {
        if bytes.len() != BLOCK_LEN {
            return Err(BlockError::Size { found: bytes.len() });
        }
        let (first, second) = bytes.split_at(COPY_LEN);
        Ok(Block {
            copies: [decode_copy(first), decode_copy(second)],
        })
    }

    /// The valid copy with the highest sequence number, and its index (0 or 1).
    pub fn newest(&self) -> Option<(usize, Record)> {
        let mut best: Option<(usize, Record)> = None;
        for (index, copy) in self.copies.iter().enumerate() {
            if let Ok(record) = copy {
                if best.is_none_or(|(_, b)| record.sequence > b.sequence) {
                    best = Some((index, *record));
                }
            }
        }
        best
    }

    /// What the decision should act on.
    pub fn seen(&self) -> StateSeen {
        match self.newest() {
            Some((_, record)) => StateSeen::Valid(record.state),
            None if self.copies.iter().all(|c| *c == Err(CopyError::Blank)) => StateSeen::Absent,
            None => StateSeen::Corrupt,
        }
    }

    /// Write `state` into `bytes` (the file as read, [`BLOCK_LEN`] bytes) in the copy that does
    /// not hold the newest valid record, with the next sequence number, in this hnroot's format
    /// ([`FORMAT_VERSION`]: what GRUB writes). Returns the byte range that changed: the caller
    /// writes exactly that sector back, then syncs.
    pub fn encode_into(bytes: &mut [u8], state: &BootState) -> Result<Range<usize>, BlockError> {
        Block::encode_format(bytes, state, VERSION)
    }

    /// [`Block::encode_into`] in the format of the newest valid copy ([`FORMAT_VERSION`] when
    /// there is none): what Linux writes, so that a loader that reads only format 1 never finds
    /// a copy it cannot read (see "Formats" above).
    pub fn encode_as_found(
        bytes: &mut [u8],
        state: &BootState,
    ) -> Result<Range<usize>, BlockError> {
        let format = Block::decode(bytes)?
            .newest()
            .and_then(|(index, _)| bytes.chunks(COPY_LEN).nth(index))
            .map_or(VERSION, |copy| u16::from_le_bytes(array(copy, R_VERSION)));
        Block::encode_format(bytes, state, format)
    }

    fn encode_format(
        bytes: &mut [u8],
        state: &BootState,
        format: u16,
    ) -> Result<Range<usize>, BlockError> {
        let block = Block::decode(bytes)?;
        let (target, sequence) = match block.newest() {
            Some((index, record)) => (
                1usize.saturating_sub(index),
                record
                    .sequence
                    .checked_add(1)
                    .ok_or(BlockError::SequenceExhausted)?,
            ),
            None => (0, 1),
        };
        if let Some(Err(CopyError::Version { found })) = block.copies.get(target) {
            if *found > VERSION {
                return Err(BlockError::NewerFormat { found: *found });
            }
        }
        let range =
            target.saturating_mul(COPY_LEN)..target.saturating_add(1).saturating_mul(COPY_LEN);
        let copy = bytes
            .get_mut(range.clone())
            .ok_or(BlockError::Size { found: BLOCK_LEN })?;
        let copy: &mut [u8; COPY_LEN] = copy
            .try_into()
            .map_err(|_| BlockError::Size { found: BLOCK_LEN })?;
        *copy = encode_copy_as(
            &Record {
                sequence,
                state: *state,
            },
            format,
        );
        Ok(range)
    }
}

/// What a driver found at the boot-state path on the ESP.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StateFile<'a> {
    /// No such file.
    Absent,
    /// Something is there but cannot be read as a file (a directory, a read error, a link
    /// that does not resolve).
    Unreadable,
    /// The file's bytes (at most one more than [`BLOCK_LEN`] need be read: the size decides).
    Bytes(&'a [u8]),
}

impl StateFile<'_> {
    /// What the decision acts on: absent only when there is no file; a file that cannot be
    /// read or decoded is corrupt, which puts `hn-root.img` on trial rather than trusting it.
    /// GRUB and Linux both judge the file here, so they agree.
    pub fn seen(&self) -> StateSeen {
        match self {
            StateFile::Absent => StateSeen::Absent,
            StateFile::Unreadable => StateSeen::Corrupt,
            StateFile::Bytes(bytes) => match Block::decode(bytes) {
                Ok(block) => block.seen(),
                Err(_) => StateSeen::Corrupt,
            },
        }
    }
}

/// A fresh file holding `state` as sequence 1 in the first copy; the second copy blank.
pub fn new_block(state: &BootState) -> [u8; BLOCK_LEN] {
    let mut out = [0u8; BLOCK_LEN];
    let (first, _) = out.split_at_mut(COPY_LEN);
    let record = Record {
        sequence: 1,
        state: *state,
    };
    // A new file is made in format 1 whenever format 1 holds the state whole (no boot counted
    // yet): the ESP's loader may be an older one that reads only format 1 (the compatibility
    // contract); this hnroot's loader reads both and writes format 2 at its first counted boot.
    let oldest = encode_copy_as(&record, 1);
    let copy = if decode_copy(&oldest) == Ok(record) {
        oldest
    } else {
        encode_copy(&record)
    };
    first.copy_from_slice(&copy);
    out
}

/// Encode one copy in this hnroot's format ([`FORMAT_VERSION`]).
pub fn encode_copy(record: &Record) -> [u8; COPY_LEN] {
    encode_copy_as(record, VERSION)
}

/// Encode one copy in format `format`: 1 (without the unhealthy count, which format 1 cannot
/// hold) or anything else as [`FORMAT_VERSION`].
pub fn encode_copy_as(record: &Record, format: u16) -> [u8; COPY_LEN] {
    let format = if format == 1 { 1 } else { VERSION };
    let mut c = [0u8; COPY_LEN];
    put(&mut c, R_MAGIC, &MAGIC);
    put(&mut c, R_VERSION, &format.to_le_bytes());
    put(&mut c, R_RECORD_LEN, &RECORD_LEN.to_le_bytes());
    put(&mut c, R_SEQUENCE, &record.sequence.to_le_bytes());
    let (state, left, total, trial_uuid, good, unhealthy) = match &record.state {
        BootState::Committed { good, unhealthy } => {
            (STATE_COMMITTED, 0, 0, None, Some(*good), unhealthy.boots())
        }
        BootState::Trial(t) => (
            STATE_TRIAL,
            t.tries.left,
            t.tries.total,
            Some(t.image),
            t.good,
            t.tries.others.boots(),
        ),
    };
    put_byte(&mut c, R_STATE, state);
    put_byte(&mut c, R_TRIES_LEFT, left);
    put_byte(&mut c, R_TRIES_TOTAL, total);
    if format != 1 {
        put_byte(&mut c, R_UNHEALTHY, unhealthy);
    }
    put_uuid(&mut c, R_TRIAL_KIND, R_TRIAL_UUID, trial_uuid);
    put_uuid(&mut c, R_GOOD_KIND, R_GOOD_UUID, good);
    let crc = CRC32C.checksum(c.get(..R_CRC.start).unwrap_or(&[]));
    put(&mut c, R_CRC, &crc.to_le_bytes());
    c
}

fn put(copy: &mut [u8; COPY_LEN], range: Range<usize>, value: &[u8]) {
    if let Some(dst) = copy.get_mut(range) {
        dst.copy_from_slice(value);
    }
}

fn put_byte(copy: &mut [u8; COPY_LEN], at: usize, value: u8) {
    if let Some(dst) = copy.get_mut(at) {
        *dst = value;
    }
}

fn put_uuid(copy: &mut [u8; COPY_LEN], kind_at: usize, at: Range<usize>, uuid: Option<FsUuid>) {
    let (kind, bytes): (u8, &[u8]) = match &uuid {
        None => (UUID_NONE, &[]),
        Some(FsUuid::Uuid(b)) => (UUID_128, b),
        Some(FsUuid::VolumeId(b)) => (UUID_FAT, b),
    };
    put_byte(copy, kind_at, kind);
    if let Some(dst) = copy.get_mut(at.start..at.start.saturating_add(bytes.len())) {
        dst.copy_from_slice(bytes);
    }
}

/// The newest format version a boot-state file's copies carry (a copy counts when it has the
/// magic; its checksum is not checked, since a newer format may cover other bytes), `None` when
/// neither copy is hnroot's. What a loader must be able to read before it replaces another.
pub fn format_seen(bytes: &[u8]) -> Option<u16> {
    bytes
        .chunks(COPY_LEN)
        .take(2)
        .filter(|c| c.get(R_MAGIC) == Some(MAGIC.as_slice()))
        .filter_map(|c| c.get(R_VERSION).and_then(|v| v.try_into().ok()))
        .map(u16::from_le_bytes)
        .max()
}

/// Decode one copy: length is fixed by the caller; then magic, checksum, version, fields.
pub fn decode_copy(copy: &[u8]) -> Result<Record, CopyError> {
    if copy.len() != COPY_LEN || copy.iter().all(|&b| b == 0) {
        return Err(CopyError::Blank);
    }
    if copy.get(R_MAGIC) != Some(&MAGIC[..]) {
        return Err(CopyError::Magic);
    }
    let stored = u32::from_le_bytes(array(copy, R_CRC));
    let computed = CRC32C.checksum(copy.get(..R_CRC.start).unwrap_or(&[]));
    if stored != computed {
        return Err(CopyError::Checksum { stored, computed });
    }
    let version = u16::from_le_bytes(array(copy, R_VERSION));
    if !(READS_FROM..=VERSION).contains(&version) {
        return Err(CopyError::Version { found: version });
    }
    if u16::from_le_bytes(array(copy, R_RECORD_LEN)) != RECORD_LEN {
        return Err(CopyError::Field {
            field: "record length",
        });
    }
    let reserved: &[Range<usize>] = if version == 1 {
        &R_RESERVED_V1
    } else {
        &R_RESERVED_V2
    };
    if reserved.iter().any(|range| {
        copy.get(range.clone())
            .is_none_or(|r| r.iter().any(|&b| b != 0))
    }) {
        return Err(CopyError::Field {
            field: "reserved bytes",
        });
    }
    let sequence = u64::from_le_bytes(array(copy, R_SEQUENCE));
    let byte = |at: usize| copy.get(at).copied().unwrap_or(0);
    let trial_uuid = get_uuid(copy, R_TRIAL_KIND, R_TRIAL_UUID)?;
    let good = get_uuid(copy, R_GOOD_KIND, R_GOOD_UUID)?;
    let state = match byte(R_STATE) {
        STATE_COMMITTED => {
            if byte(R_TRIES_LEFT) != 0 || byte(R_TRIES_TOTAL) != 0 || trial_uuid.is_some() {
                return Err(CopyError::Field {
                    field: "committed state carrying a trial",
                });
            }
            BootState::Committed {
                good: good.ok_or(CopyError::Field {
                    field: "good image",
                })?,
                unhealthy: Unhealthy(byte(R_UNHEALTHY)),
            }
        }
        STATE_TRIAL => BootState::Trial(Trial {
            image: trial_uuid.ok_or(CopyError::Field {
                field: "trial image",
            })?,
            tries: Tries::new(byte(R_TRIES_LEFT), byte(R_TRIES_TOTAL))
                .ok_or(CopyError::Field { field: "tries" })?
                .with_others(Unhealthy(byte(R_UNHEALTHY))),
            good,
        }),
        _ => return Err(CopyError::Field { field: "state" }),
    };
    Ok(Record { sequence, state })
}

fn get_uuid(copy: &[u8], kind_at: usize, at: Range<usize>) -> Result<Option<FsUuid>, CopyError> {
    let raw: [u8; 16] = array(copy, at);
    let (uuid, used) = match copy.get(kind_at).copied() {
        Some(UUID_NONE) => (None, 0),
        Some(UUID_128) => (Some(FsUuid::Uuid(raw)), 16),
        Some(UUID_FAT) => {
            let [a, b, c, d, ..] = raw;
            (Some(FsUuid::VolumeId([a, b, c, d])), 4)
        }
        _ => return Err(CopyError::Field { field: "UUID kind" }),
    };
    if raw.iter().skip(used).any(|&b| b != 0) {
        return Err(CopyError::Field {
            field: "UUID padding",
        });
    }
    Ok(uuid)
}

/// Bytes `range` of `copy` as an array; zeros where `copy` is short (callers check length first).
fn array<const N: usize>(copy: &[u8], range: Range<usize>) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = copy.get(range) {
        if src.len() == N {
            out.copy_from_slice(src);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: FsUuid = FsUuid::Uuid([0xa; 16]);
    const B: FsUuid = FsUuid::Uuid([0xb; 16]);

    fn trial(left: u8) -> BootState {
        BootState::Trial(Trial {
            image: B,
            tries: Tries::new(left, 3).unwrap(),
            good: Some(A),
        })
    }

    #[test]
    fn blank_file_is_absent_and_first_write_goes_to_copy_zero() {
        let mut bytes = [0u8; BLOCK_LEN];
        assert_eq!(Block::decode(&bytes).unwrap().seen(), StateSeen::Absent);
        let range = Block::encode_into(&mut bytes, &trial(2)).unwrap();
        assert_eq!(range, 0..COPY_LEN);
        let block = Block::decode(&bytes).unwrap();
        assert_eq!(
            block.newest(),
            Some((
                0,
                Record {
                    sequence: 1,
                    state: trial(2)
                }
            ))
        );
        assert_eq!(block.copies[1], Err(CopyError::Blank));
    }

    #[test]
    fn writes_alternate_copies_and_the_highest_sequence_wins() {
        let mut bytes = new_block(&BootState::committed(A));
        let mut expected_copy = 1;
        for (n, left) in [2u8, 1, 0].into_iter().enumerate() {
            let range = Block::encode_into(&mut bytes, &trial(left)).unwrap();
            assert_eq!(range.start, expected_copy * COPY_LEN);
            expected_copy = 1 - expected_copy;
            let (_, record) = Block::decode(&bytes).unwrap().newest().unwrap();
            assert_eq!(
                record,
                Record {
                    sequence: n as u64 + 2,
                    state: trial(left)
                }
            );
        }
    }

    #[test]
    fn wrong_size_is_refused_for_reading_and_writing() {
        assert_eq!(
            Block::decode(&[0u8; 1023]),
            Err(BlockError::Size { found: 1023 })
        );
        let mut long = [0u8; 2048];
        assert_eq!(
            Block::encode_into(&mut long, &trial(1)),
            Err(BlockError::Size { found: 2048 })
        );
    }

    #[test]
    fn fat_volume_ids_round_trip() {
        let state = BootState::Committed {
            good: FsUuid::VolumeId([1, 2, 3, 4]),
            unhealthy: Unhealthy::new(7),
        };
        let (_, record) = Block::decode(&new_block(&state)).unwrap().newest().unwrap();
        assert_eq!(record.state, state);
    }

    #[test]
    fn format_2_carries_the_unhealthy_count_and_format_1_reads_as_none() {
        let counted = BootState::Committed {
            good: A,
            unhealthy: Unhealthy::new(4),
        };
        let v2 = encode_copy(&Record {
            sequence: 3,
            state: counted,
        });
        assert_eq!(u16::from_le_bytes([v2[8], v2[9]]), 2);
        assert_eq!(v2[R_UNHEALTHY], 4);
        assert_eq!(decode_copy(&v2).unwrap().state, counted);
        // What an hnroot before format 2 wrote: version 1, byte 27 zero.
        let v1 = encode_copy_as(
            &Record {
                sequence: 3,
                state: counted,
            },
            1,
        );
        assert_eq!(u16::from_le_bytes([v1[8], v1[9]]), 1);
        assert_eq!(v1[R_UNHEALTHY], 0, "format 1 cannot hold the count");
        assert_eq!(decode_copy(&v1).unwrap().state, BootState::committed(A));
        // A format-1 copy with byte 27 set is refused, as format 1 readers refuse it.
        let mut c = v1;
        c[R_UNHEALTHY] = 1;
        assert_eq!(
            decode_copy(&reseal(c)),
            Err(CopyError::Field {
                field: "reserved bytes"
            })
        );
        // A trial carries its other boots.
        let counted = trial(0).count_boot().count_boot();
        let c = encode_copy(&Record {
            sequence: 3,
            state: counted,
        });
        assert_eq!(c[R_UNHEALTHY], 2);
        assert_eq!(decode_copy(&c).unwrap().state, counted);
    }

    #[test]
    fn linux_writes_the_format_it_found_and_grub_writes_format_2() {
        let counted = BootState::Committed {
            good: A,
            unhealthy: Unhealthy::THIS_BOOT,
        };
        // An ESP an older loader keeps: format 1 copies only.
        let mut bytes = [0u8; BLOCK_LEN];
        bytes[..COPY_LEN].copy_from_slice(&encode_copy_as(
            &Record {
                sequence: 1,
                state: BootState::committed(B),
            },
            1,
        ));
        let range = Block::encode_as_found(&mut bytes, &counted).unwrap();
        assert_eq!(range, COPY_LEN..BLOCK_LEN);
        assert_eq!(
            format_seen(&bytes),
            Some(1),
            "still readable by a format-1 loader"
        );
        assert_eq!(
            Block::decode(&bytes).unwrap().seen(),
            StateSeen::Valid(BootState::committed(A))
        );
        // GRUB (this hnroot's loader) writes format 2; Linux then follows it.
        Block::encode_into(&mut bytes, &counted).unwrap();
        assert_eq!(format_seen(&bytes), Some(2));
        let more = BootState::Committed {
            good: A,
            unhealthy: Unhealthy::new(2),
        };
        Block::encode_as_found(&mut bytes, &more).unwrap();
        assert_eq!(
            Block::decode(&bytes).unwrap().seen(),
            StateSeen::Valid(more)
        );
        // Nothing yet: this hnroot's format.
        let mut blank = [0u8; BLOCK_LEN];
        Block::encode_as_found(&mut blank, &more).unwrap();
        assert_eq!(format_seen(&blank), Some(2));
    }

    #[test]
    fn every_field_change_after_the_checksum_is_caught() {
        let copy = encode_copy(&Record {
            sequence: 7,
            state: trial(1),
        });
        let mut bad = copy;
        bad[R_STATE] = 9;
        assert!(matches!(decode_copy(&bad), Err(CopyError::Checksum { .. })));
        let mut bad = copy;
        bad[..8].copy_from_slice(b"HNROOTBX");
        assert_eq!(decode_copy(&bad), Err(CopyError::Magic));
    }

    fn reseal(mut copy: [u8; COPY_LEN]) -> [u8; COPY_LEN] {
        let crc = CRC32C.checksum(&copy[..R_CRC.start]);
        copy[R_CRC].copy_from_slice(&crc.to_le_bytes());
        copy
    }

    #[test]
    fn resealed_nonsense_is_refused_by_field() {
        let copy = encode_copy(&Record {
            sequence: 7,
            state: trial(1),
        });
        let mut c = copy;
        c[R_TRIES_LEFT] = 4;
        assert_eq!(
            decode_copy(&reseal(c)),
            Err(CopyError::Field { field: "tries" })
        );
        let mut c = copy;
        c[R_STATE] = 3;
        assert_eq!(
            decode_copy(&reseal(c)),
            Err(CopyError::Field { field: "state" })
        );
        let mut c = copy;
        c[R_TRIAL_KIND] = 0;
        assert_eq!(
            decode_copy(&reseal(c)),
            Err(CopyError::Field {
                field: "UUID padding"
            })
        );
        c[R_TRIAL_UUID].fill(0);
        assert_eq!(
            decode_copy(&reseal(c)),
            Err(CopyError::Field {
                field: "trial image"
            })
        );
        let mut c = copy;
        c[R_TRIAL_KIND] = UUID_FAT;
        assert_eq!(
            decode_copy(&reseal(c)),
            Err(CopyError::Field {
                field: "UUID padding"
            })
        );
        let mut c = copy;
        c[100] = 1;
        assert_eq!(
            decode_copy(&reseal(c)),
            Err(CopyError::Field {
                field: "reserved bytes"
            })
        );
        let mut c = copy;
        c[R_VERSION].copy_from_slice(&3u16.to_le_bytes());
        assert_eq!(
            decode_copy(&reseal(c)),
            Err(CopyError::Version { found: 3 })
        );
    }

    #[test]
    fn a_copy_from_a_newer_hnroot_is_never_overwritten() {
        let good = BootState::committed(A);
        let mut bytes = new_block(&good);
        // The second copy: a newer hnroot's record (format 3), sequence 2.
        let mut newer = encode_copy(&Record {
            sequence: 2,
            state: good,
        });
        newer[R_VERSION].copy_from_slice(&3u16.to_le_bytes());
        let crc = CRC32C.checksum(&newer[..R_CRC.start]);
        newer[R_CRC].copy_from_slice(&crc.to_le_bytes());
        bytes[COPY_LEN..].copy_from_slice(&newer);
        let before = bytes;
        // This hnroot reads the older copy it understands ...
        assert_eq!(
            Block::decode(&bytes).unwrap().seen(),
            StateSeen::Valid(good)
        );
        // ... and refuses to write over the newer one.
        assert_eq!(
            Block::encode_into(&mut bytes, &BootState::committed(B)),
            Err(BlockError::NewerFormat { found: 3 })
        );
        assert_eq!(bytes, before, "nothing written");
    }

    #[test]
    fn what_a_driver_found_at_the_path() {
        let block = new_block(&BootState::committed(A));
        assert_eq!(StateFile::Absent.seen(), StateSeen::Absent);
        assert_eq!(StateFile::Unreadable.seen(), StateSeen::Corrupt);
        assert_eq!(StateFile::Bytes(&block[..100]).seen(), StateSeen::Corrupt);
        assert_eq!(StateFile::Bytes(&[0; BLOCK_LEN]).seen(), StateSeen::Absent);
        assert_eq!(
            StateFile::Bytes(&block).seen(),
            StateSeen::Valid(BootState::committed(A))
        );
    }
}
