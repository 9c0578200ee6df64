//! The chunk index of a published image (`IMAGE.hnidx`): what lets `hnroot stage` fetch only
//! the parts of a new image that the images already on hostpart do not hold.
//!
//! The image is cut into content-defined chunks (FastCDC: a boundary depends on the bytes
//! around it, not on its offset, so an insertion moves only the chunks it touches). The index
//! lists each chunk's length and BLAKE3 hash, in order; a chunk of zeros is marked so it is
//! neither fetched nor looked for (it becomes a hole). The image file itself is the chunk store:
//! a missing chunk is fetched from it with an HTTP `Range` request, so any web server that
//! serves the image serves the delta, and nothing but the index is published beside it.
//!
//! The index is bound to the image by the publisher's signature over the index itself
//! (`IMAGE.hnidx.minisig`, the same key as the image's) and by the hash of the image's own
//! signature file it records: an index made for another image, or changed, is refused before a
//! chunk is fetched. The image's own signature still covers every byte of the result.
//!
//! This module is the format only: a bounded parser (every length checked against the bytes
//! before it is used) and the encoder, shared by `hnroot publish` and `hnroot stage`.
//!
//! Layout (little-endian):
//!
//! | bytes | field |
//! |-------|-------|
//! | 8 | magic `HNRIDX01` |
//! | 8 | image length in bytes |
//! | 4 | number of chunks `n` |
//! | 4, 4, 4 | the chunker's minimum, average and maximum chunk size |
//! | 32 | BLAKE3 of the image's signature file (`IMAGE.minisig`) as published |
//! | 36 × n | per chunk: its length (`u32`; the top bit set for a chunk of zeros) and BLAKE3 hash |

/// The first bytes of an index.
pub const MAGIC: [u8; 8] = *b"HNRIDX01";
/// Bytes before the first chunk entry.
pub const HEADER_LEN: usize = 8 + 8 + 4 + 12 + 32;
/// Bytes of one chunk entry.
pub const ENTRY_LEN: usize = 4 + 32;
/// The flag in an entry's length word that marks a chunk of zeros.
pub const ZERO_FLAG: u32 = 1 << 31;
/// The smallest chunk an index may declare as its minimum.
pub const MIN_CHUNK_FLOOR: u32 = 1024;
/// The largest minimum an index may declare.
pub const MIN_CHUNK_CEILING: u32 = 1 << 20;
/// The largest average an index may declare.
pub const AVG_CHUNK_CEILING: u32 = 4 << 20;
/// The largest chunk an index may declare as its maximum (a chunk is read into memory whole).
pub const MAX_CHUNK_CEILING: u32 = 16 << 20;

/// The chunker's sizes the index was made with (a seed is cut with the same ones).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ChunkSizes {
    /// No chunk but the last is shorter.
    pub min: u32,
    /// The size the chunker aims at.
    pub avg: u32,
    /// No chunk is longer.
    pub max: u32,
}

/// The sizes `hnroot publish` uses: 8 KiB, 32 KiB, 128 KiB. A changed file costs about one
/// average chunk per place it changed, and an ext4 image built by `mke2fs -d` changes in many
/// small places (one package shifts the inode numbers of the files after it, so every
/// directory block naming them changes): at 64 KiB (the default until 2026-12-07) one package
/// fetched 10.4 % of a Debian image, at 32 KiB 6.7 % (16 KiB: 4.3 %), with an index of 0.06 %
/// of the image (RAUC's is about 0.8 %) and stages no slower (`benches/delta.sh`, README).
/// Indexes made with other sizes stay readable: each carries its own.
pub const DEFAULT_SIZES: ChunkSizes = ChunkSizes {
    min: 8 << 10,
    avg: 32 << 10,
    max: 128 << 10,
};

/// Why an average chunk size cannot be published with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AverageError {
    /// Not a power of two (FastCDC's mask aims at a power of two: another average would be
    /// rounded, and the index would name sizes the chunker did not aim at).
    NotPowerOfTwo(u32),
    /// The sizes around it are outside the format's bounds.
    Bounds(ChunkSizes),
}

impl core::fmt::Display for AverageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AverageError::NotPowerOfTwo(avg) => write!(
                f,
                "an average chunk of {avg} bytes is not a power of two (4 KiB, 8 KiB, ... 4 MiB)"
            ),
            AverageError::Bounds(s) => write!(f, "{}", IndexError::Sizes(*s)),
        }
    }
}

impl ChunkSizes {
    /// The sizes around `avg` bytes, in [`DEFAULT_SIZES`]'s proportions: a minimum of a quarter
    /// of it, a maximum of four times it; refused unless `avg` is a power of two and the sizes
    /// fit the bounds an index is parsed with (so every index `hnroot publish` writes parses).
    pub fn around(avg: u32) -> Result<ChunkSizes, AverageError> {
        if !avg.is_power_of_two() {
            return Err(AverageError::NotPowerOfTwo(avg));
        }
        let sizes = ChunkSizes {
            min: avg / 4,
            avg,
            max: avg.saturating_mul(4),
        };
        sizes.check().map_err(|_| AverageError::Bounds(sizes))
    }

    /// The sizes when they are in order and within the format's bounds:
    /// [`MIN_CHUNK_FLOOR`] <= min <= avg <= max, min <= [`MIN_CHUNK_CEILING`],
    /// avg <= [`AVG_CHUNK_CEILING`], max <= [`MAX_CHUNK_CEILING`].
    pub fn check(self) -> Result<ChunkSizes, IndexError> {
        let ok = MIN_CHUNK_FLOOR <= self.min
            && self.min <= MIN_CHUNK_CEILING
            && self.avg <= AVG_CHUNK_CEILING
            && self.min <= self.avg
            && self.avg <= self.max
            && self.max <= MAX_CHUNK_CEILING;
        if ok {
            Ok(self)
        } else {
            Err(IndexError::Sizes(self))
        }
    }
}

/// One chunk of the image.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Chunk {
    /// Its first byte in the image.
    pub offset: u64,
    /// Its length.
    pub len: u32,
    /// BLAKE3 of its bytes.
    pub hash: [u8; 32],
    /// All its bytes are zero.
    pub zero: bool,
}

/// Why bytes are not an index.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IndexError {
    /// Fewer bytes than the header.
    Short {
        /// Bytes there are.
        len: usize,
    },
    /// Not `HNRIDX01`.
    Magic,
    /// The chunker's sizes are out of order or out of bounds.
    Sizes(ChunkSizes),
    /// The entries do not fill the rest exactly.
    Entries {
        /// Chunks the header declares.
        declared: u32,
        /// Bytes after the header.
        bytes: usize,
    },
    /// A chunk is empty, longer than the maximum, or shorter than the minimum without being
    /// the last.
    ChunkLength {
        /// Its number.
        index: u32,
        /// Its length.
        len: u32,
    },
    /// The chunks do not add up to the image's length.
    Total {
        /// Their sum.
        sum: u64,
        /// The image length the header declares.
        image_len: u64,
    },
}

impl core::fmt::Display for IndexError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            IndexError::Short { len } => write!(
                f,
                "{len} bytes, shorter than an index's {HEADER_LEN}-byte header"
            ),
            IndexError::Magic => f.write_str("does not start with HNRIDX01: not an hnroot index"),
            IndexError::Sizes(s) => write!(
                f,
                "chunk sizes min {} avg {} max {} are not {MIN_CHUNK_FLOOR} <= min <= avg <= max, min <= {MIN_CHUNK_CEILING}, avg <= {AVG_CHUNK_CEILING}, max <= {MAX_CHUNK_CEILING}",
                s.min, s.avg, s.max
            ),
            IndexError::Entries { declared, bytes } => write!(
                f,
                "declares {declared} chunks ({ENTRY_LEN} bytes each) but has {bytes} bytes of entries"
            ),
            IndexError::ChunkLength { index, len } => {
                write!(f, "chunk {index} is {len} bytes, outside the index's chunk sizes")
            }
            IndexError::Total { sum, image_len } => write!(
                f,
                "its chunks add up to {sum} bytes, not the {image_len} of the image it declares"
            ),
        }
    }
}

/// A parsed index, borrowing its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Index<'a> {
    /// The image's length in bytes.
    pub image_len: u64,
    /// The chunker's sizes.
    pub sizes: ChunkSizes,
    /// BLAKE3 of the image's signature file.
    pub signature_hash: [u8; 32],
    count: u32,
    entries: &'a [u8],
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(s) = bytes.get(at..at.saturating_add(4)) {
        b.copy_from_slice(s);
    }
    u32::from_le_bytes(b)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(s) = bytes.get(at..at.saturating_add(8)) {
        b.copy_from_slice(s);
    }
    u64::from_le_bytes(b)
}

fn hash_at(bytes: &[u8], at: usize) -> [u8; 32] {
    let mut h = [0u8; 32];
    if let Some(s) = bytes.get(at..at.saturating_add(32)) {
        h.copy_from_slice(s);
    }
    h
}

impl<'a> Index<'a> {
    /// Parse `bytes`, checking every length before it is used: the entries fill the rest
    /// exactly, each chunk is within the sizes (only the last may be shorter than the minimum),
    /// and the chunks add up to the image.
    pub fn parse(bytes: &'a [u8]) -> Result<Index<'a>, IndexError> {
        if bytes.len() < HEADER_LEN {
            return Err(IndexError::Short { len: bytes.len() });
        }
        if bytes.get(..8) != Some(&MAGIC[..]) {
            return Err(IndexError::Magic);
        }
        let image_len = u64_at(bytes, 8);
        let count = u32_at(bytes, 16);
        let sizes = ChunkSizes {
            min: u32_at(bytes, 20),
            avg: u32_at(bytes, 24),
            max: u32_at(bytes, 28),
        };
        let sizes = sizes.check()?;
        let signature_hash = hash_at(bytes, 32);
        let entries = bytes.get(HEADER_LEN..).unwrap_or(&[]);
        let fits = (count as usize).checked_mul(ENTRY_LEN) == Some(entries.len());
        if !fits {
            return Err(IndexError::Entries {
                declared: count,
                bytes: entries.len(),
            });
        }
        let index = Index {
            image_len,
            sizes,
            signature_hash,
            count,
            entries,
        };
        let mut sum = 0u64;
        for (i, chunk) in index.chunks().enumerate() {
            let number = u32::try_from(i).unwrap_or(u32::MAX);
            let last = number.saturating_add(1) == count;
            if chunk.len == 0 || chunk.len > sizes.max || (chunk.len < sizes.min && !last) {
                return Err(IndexError::ChunkLength {
                    index: number,
                    len: chunk.len,
                });
            }
            sum = sum.saturating_add(u64::from(chunk.len));
        }
        if sum != image_len {
            return Err(IndexError::Total { sum, image_len });
        }
        Ok(index)
    }

    /// How many chunks.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// No chunks (an empty image).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The chunks in order, with their offsets.
    pub fn chunks(&self) -> impl Iterator<Item = Chunk> + 'a {
        let entries = self.entries;
        let mut offset = 0u64;
        entries.chunks_exact(ENTRY_LEN).map(move |e| {
            let word = u32_at(e, 0);
            let chunk = Chunk {
                offset,
                len: word & !ZERO_FLAG,
                hash: hash_at(e, 4),
                zero: word & ZERO_FLAG != 0,
            };
            offset = offset.saturating_add(u64::from(chunk.len));
            chunk
        })
    }
}

/// The header of an index of `count` chunks over an image of `image_len` bytes.
pub fn encode_header(
    image_len: u64,
    count: u32,
    sizes: ChunkSizes,
    signature_hash: &[u8; 32],
) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    let fields: [&[u8]; 7] = [
        &MAGIC,
        &image_len.to_le_bytes(),
        &count.to_le_bytes(),
        &sizes.min.to_le_bytes(),
        &sizes.avg.to_le_bytes(),
        &sizes.max.to_le_bytes(),
        signature_hash,
    ];
    let mut at = 0usize;
    for f in fields {
        let end = at.saturating_add(f.len());
        if let Some(dst) = h.get_mut(at..end) {
            dst.copy_from_slice(f);
        }
        at = end;
    }
    h
}

/// One chunk's entry. `len` must be below [`ZERO_FLAG`] (the parser refuses what is not).
pub fn encode_entry(len: u32, zero: bool, hash: &[u8; 32]) -> [u8; ENTRY_LEN] {
    let mut e = [0u8; ENTRY_LEN];
    let word = (len & !ZERO_FLAG) | if zero { ZERO_FLAG } else { 0 };
    if let Some(dst) = e.get_mut(..4) {
        dst.copy_from_slice(&word.to_le_bytes());
    }
    if let Some(dst) = e.get_mut(4..) {
        dst.copy_from_slice(hash);
    }
    e
}

/// Where the bytes of one chunk come from when a stage assembles the image.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ChunkSource {
    /// A chunk of zeros: a hole, nothing read.
    Zero,
    /// An image already on hostpart holds a chunk with this hash.
    Seed,
    /// Fetched from the publisher.
    Fetch,
}

/// Where `chunk` comes from, given whether a seed holds its hash.
pub fn source_of(chunk: &Chunk, in_seed: bool) -> ChunkSource {
    if chunk.zero {
        ChunkSource::Zero
    } else if in_seed {
        ChunkSource::Seed
    } else {
        ChunkSource::Fetch
    }
}

#[cfg(test)]
mod tests {
    extern crate alloc;
    use super::*;
    use alloc::vec::Vec;

    fn build(image_len: u64, chunks: &[(u32, bool, u8)]) -> Vec<u8> {
        let mut v = Vec::new();
        let count = u32::try_from(chunks.len()).unwrap();
        v.extend_from_slice(&encode_header(image_len, count, DEFAULT_SIZES, &[7; 32]));
        for &(len, zero, h) in chunks {
            v.extend_from_slice(&encode_entry(len, zero, &[h; 32]));
        }
        v
    }

    #[test]
    fn round_trip_with_offsets() {
        let bytes = build(
            (64 << 10) + (20 << 10) + 100,
            &[(64 << 10, false, 1), (20 << 10, true, 2), (100, false, 3)],
        );
        let index = Index::parse(&bytes).unwrap();
        assert_eq!(index.len(), 3);
        assert_eq!(index.signature_hash, [7; 32]);
        let chunks: Vec<Chunk> = index.chunks().collect();
        assert_eq!(chunks[0].offset, 0);
        assert_eq!(chunks[1].offset, 64 << 10);
        assert!(chunks[1].zero && !chunks[0].zero);
        assert_eq!(chunks[2].offset, (84 << 10));
        assert_eq!(chunks[2].len, 100);
        assert_eq!(chunks[2].hash, [3; 32]);
        assert_eq!(source_of(&chunks[1], true), ChunkSource::Zero);
        assert_eq!(source_of(&chunks[0], true), ChunkSource::Seed);
        assert_eq!(source_of(&chunks[2], false), ChunkSource::Fetch);
    }

    #[test]
    fn every_length_is_checked() {
        let good = build(
            2 * (64 << 10),
            &[(64 << 10, false, 1), (64 << 10, false, 2)],
        );
        assert!(Index::parse(&good).is_ok());
        assert_eq!(
            Index::parse(&good[..HEADER_LEN - 1]).unwrap_err(),
            IndexError::Short {
                len: HEADER_LEN - 1
            }
        );
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(Index::parse(&bad).unwrap_err(), IndexError::Magic);
        // One byte of an entry missing.
        assert!(matches!(
            Index::parse(&good[..good.len() - 1]).unwrap_err(),
            IndexError::Entries { declared: 2, .. }
        ));
        // A count that would overflow the multiplication.
        let mut huge = good.clone();
        huge[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Index::parse(&huge).unwrap_err(),
            IndexError::Entries { .. }
        ));
        // The image length does not match the chunks.
        let wrong_total = build(
            3 * (64 << 10),
            &[(64 << 10, false, 1), (64 << 10, false, 2)],
        );
        assert!(matches!(
            Index::parse(&wrong_total).unwrap_err(),
            IndexError::Total { .. }
        ));
        // A short chunk that is not the last, and a chunk over the maximum.
        let short_first = build(100 + (64 << 10), &[(100, false, 1), (64 << 10, false, 2)]);
        assert_eq!(
            Index::parse(&short_first).unwrap_err(),
            IndexError::ChunkLength { index: 0, len: 100 }
        );
        let too_long = build(1 << 20, &[(1 << 20, false, 1)]);
        assert!(matches!(
            Index::parse(&too_long).unwrap_err(),
            IndexError::ChunkLength { .. }
        ));
        let empty_chunk = build(0, &[(0, false, 1)]);
        assert!(matches!(
            Index::parse(&empty_chunk).unwrap_err(),
            IndexError::ChunkLength { .. }
        ));
        // Sizes out of order.
        let mut sizes = good.clone();
        sizes[20..24].copy_from_slice(&(1u32 << 30).to_le_bytes());
        assert!(matches!(
            Index::parse(&sizes).unwrap_err(),
            IndexError::Sizes(_)
        ));
    }

    #[test]
    fn sizes_around_an_average_are_powers_of_two_within_the_bounds() {
        assert_eq!(ChunkSizes::around(32 << 10), Ok(DEFAULT_SIZES));
        assert_eq!(
            ChunkSizes::around(16 << 10),
            Ok(ChunkSizes {
                min: 4 << 10,
                avg: 16 << 10,
                max: 64 << 10
            })
        );
        // The smallest and the largest: min 1 KiB (the floor), max 16 MiB (the ceiling).
        assert!(ChunkSizes::around(4 << 10).is_ok());
        assert!(ChunkSizes::around(4 << 20).is_ok());
        assert!(matches!(
            ChunkSizes::around(2 << 10),
            Err(AverageError::Bounds(_))
        ));
        assert!(matches!(
            ChunkSizes::around(8 << 20),
            Err(AverageError::Bounds(_))
        ));
        assert_eq!(
            ChunkSizes::around(48 << 10),
            Err(AverageError::NotPowerOfTwo(48 << 10))
        );
        assert_eq!(ChunkSizes::around(0), Err(AverageError::NotPowerOfTwo(0)));
        assert!(matches!(
            ChunkSizes::around(1 << 31),
            Err(AverageError::Bounds(_))
        ));
        // Every size `around` accepts is one an index parses with, and no other power of two.
        for shift in 0..32 {
            let avg = 1u32 << shift;
            let accepted = ChunkSizes::around(avg).is_ok();
            assert_eq!(accepted, (12..=22).contains(&shift), "{avg}");
            if let Ok(sizes) = ChunkSizes::around(avg) {
                let mut v = Vec::new();
                v.extend_from_slice(&encode_header(u64::from(sizes.min), 1, sizes, &[0; 32]));
                v.extend_from_slice(&encode_entry(sizes.min, false, &[1; 32]));
                assert!(Index::parse(&v).is_ok(), "{sizes:?}");
            }
        }
    }

    #[test]
    fn every_truncation_and_every_byte_flip_is_parsed_without_panic() {
        let good = build((64 << 10) + 5, &[(64 << 10, false, 1), (5, false, 2)]);
        for n in 0..good.len() {
            let _ = Index::parse(&good[..n]);
        }
        for i in 0..good.len() {
            let mut b = good.clone();
            b[i] ^= 0xff;
            if let Ok(index) = Index::parse(&b) {
                let sum: u64 = index.chunks().map(|c| u64::from(c.len)).sum();
                assert_eq!(sum, index.image_len);
            }
        }
    }
}
