//! Delta staging: an image fetched chunk by chunk, taking every chunk the images already on
//! hostpart hold from them and only the rest from the publisher.
//!
//! The index format is the core's (`hnroot_core::delta`); this module has files cut into
//! chunks (`crate::chunker`, with the sizes the index names; the seeds on several threads),
//! hashes them (BLAKE3), and assembles the new image as a stream the stage's copy reads like
//! any other source: the copy still writes the partial file, leaves zeros as holes, resumes
//! after an interruption and feeds minisign's verifier every byte. A chunk is used only when
//! its hash is the index's: a seed that changed under the stage is fetched instead, a server
//! that sends other bytes stops the copy. The index itself is trusted only when the image's
//! publisher signed it and it names this image's signature.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hnroot_core::delta::{
    self, encode_entry, encode_header, source_of, Chunk, ChunkSizes, ChunkSource, Index,
};
use hnroot_core::name::ImageName;
use hnroot_core::verdict::Verdict;
use hnroot_linux::hostpart::{Hostpart, HostpartView};
use hnroot_linux::image::ImageReader;
use minisign_verify::{PublicKey, Signature};
use serde_json::json;

use crate::chunker::{Cutter, Piece};
use crate::progress::Progress;
use crate::source::{read_limited, Source};

/// The index's name beside the image: `IMAGE.hnidx`.
pub const INDEX_SUFFIX: &str = ".hnidx";
/// Largest index read (an image of 64 GiB at the smallest chunks the format allows).
const INDEX_MAX: usize = 160 << 20;
/// Most bytes of consecutive missing chunks asked for in one range request.
const MAX_RANGE: u64 = 8 << 20;
/// Most threads cutting the seeds.
const MAX_SCAN_THREADS: usize = 4;
/// Largest chunks by which a range of a seed runs on into the next.
const RANGE_OVERLAP: u64 = 4;

/// BLAKE3 of `bytes`.
pub fn hash(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

/// The index of the image `file`, whose signature file holds `signature` (what the index is
/// bound to).
pub fn index_of(
    file: &File,
    signature: &[u8],
    sizes: ChunkSizes,
) -> Result<(Vec<u8>, IndexSummary)> {
    let len = file.metadata().context("the image's length")?.len();
    let mut entries = Vec::new();
    let mut summary = IndexSummary::default();
    let cutter = Cutter::new(sizes);
    // Every chunk inside a hole is the same run of zeros.
    let hole_hash = hash(&vec![0u8; cutter.hole_chunk() as usize]);
    cutter.cut_file(file, |piece| {
        let (n, zero, h) = match piece {
            Piece::Data { bytes, .. } => (
                u32::try_from(bytes.len()).context("a chunk over 4 GiB")?,
                bytes.iter().all(|b| *b == 0),
                hash(bytes),
            ),
            Piece::Hole { len } => (len, true, hole_hash),
        };
        entries.extend_from_slice(&encode_entry(n, zero, &h));
        summary.chunks += 1;
        if zero {
            summary.zero_bytes += u64::from(n);
        }
        Ok(())
    })?;
    let count = u32::try_from(summary.chunks).context("more than 2^32 chunks")?;
    let mut out = Vec::with_capacity(delta::HEADER_LEN + entries.len());
    out.extend_from_slice(&encode_header(len, count, sizes, &hash(signature)));
    out.extend_from_slice(&entries);
    // What is written is what a stage will parse.
    Index::parse(&out).map_err(|e| anyhow::anyhow!("the index made for the image: {e}"))?;
    Ok((out, summary))
}

/// What an index holds.
#[derive(Default, Clone, Copy, Debug)]
pub struct IndexSummary {
    /// Chunks.
    pub chunks: u64,
    /// Bytes in chunks of zeros.
    pub zero_bytes: u64,
}

/// Bytes of the new image by where they came from.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Fetched from the publisher.
    pub fetched: u64,
    /// Copied from images on hostpart.
    pub reused: u64,
    /// Chunks of zeros (holes).
    pub zero: u64,
    /// Chunks a seed was expected to hold but did not (changed under the stage): fetched.
    pub refetched: u64,
    /// Range requests made.
    pub requests: u64,
}

/// The images on hostpart a new image's chunks are taken from.
struct Seeds {
    files: Vec<(ImageName, File)>,
    /// Hash → (seed, offset, length).
    by_hash: HashMap<[u8; 32], (usize, u64, u32)>,
}

/// A chunk a seed holds: its hash, offset and length.
type Found = ([u8; 32], u64, u32);

impl Seeds {
    /// Cut every bootable image on hostpart with `sizes`, remembering the chunks `wanted`.
    fn gather(
        hostpart: &Hostpart,
        view: &HostpartView,
        sizes: ChunkSizes,
        wanted: &HashSet<[u8; 32]>,
        progress: &Progress,
    ) -> Seeds {
        let mut files = Vec::new();
        for name in ImageName::ALL {
            if !matches!(
                view.image(name).map(|j| &j.verdict),
                Some(Verdict::Bootable(_))
            ) {
                continue;
            }
            match hostpart.open_image(name) {
                Ok(f) => files.push((name, f)),
                Err(e) => crate::warn!("hnroot: {}: {e}: not used as a seed", name.file_name()),
            }
        }
        if !files.is_empty() {
            progress.phase(&format!(
                "looking for the new image's chunks in {}",
                files
                    .iter()
                    .map(|(n, _)| n.file_name())
                    .collect::<Vec<_>>()
                    .join(" and ")
            ));
        }
        Seeds::cut(files, sizes, wanted)
    }

    /// Cut `files` with `sizes`, remembering where the chunks `wanted` are (the first seed's
    /// copy of a chunk first). Each file is cut in as many ranges as there are CPUs, the
    /// ranges on that many threads; the holes of each are skipped (`crate::chunker`).
    fn cut(files: Vec<(ImageName, File)>, sizes: ChunkSizes, wanted: &HashSet<[u8; 32]>) -> Seeds {
        let cutter = Cutter::new(sizes);
        let threads = std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .clamp(1, MAX_SCAN_THREADS);
        // (seed, its length, first byte, end) of every range, seed by seed, in order; a
        // range is at least 64 largest chunks.
        let mut ranges = Vec::new();
        for (seed, (name, file)) in files.iter().enumerate() {
            let len = match file.metadata() {
                Ok(m) => m.len(),
                Err(e) => {
                    crate::warn!("hnroot: {}: {e}: not used as a seed", name.file_name());
                    continue;
                }
            };
            let step = len.div_ceil(threads as u64).max(64 * u64::from(sizes.max));
            // Each range but the last runs on into the next by a few largest chunks: the
            // next one's first chunks, cut from its first byte, line up with the whole
            // file's cut only after a chunk or two, and these are cut here as the whole
            // file's cut has them.
            let overlap = RANGE_OVERLAP * u64::from(sizes.max);
            let mut at = 0u64;
            while at < len {
                ranges.push((seed, len, at, (at + step + overlap).min(len)));
                at += step;
            }
        }
        let next = AtomicUsize::new(0);
        let cut_range = |&(seed, len, start, end): &(usize, u64, u64, u64)| {
            let mut found: Vec<Found> = Vec::new();
            let (_, file) = &files[seed];
            let cut = cutter.cut_range(file, len, start, end, |piece| {
                if let Piece::Data { offset, bytes } = piece {
                    let h = hash(bytes);
                    if wanted.contains(&h) {
                        found.push((h, offset, u32::try_from(bytes.len()).unwrap_or(u32::MAX)));
                    }
                }
                Ok(())
            });
            (found, cut.err())
        };
        let mut results: Vec<(usize, Vec<Found>, Option<anyhow::Error>)> =
            std::thread::scope(|scope| {
                let workers: Vec<_> = (0..threads.min(ranges.len()))
                    .map(|_| {
                        scope.spawn(|| {
                            let mut mine = Vec::new();
                            loop {
                                let i = next.fetch_add(1, Ordering::Relaxed);
                                let Some(range) = ranges.get(i) else {
                                    return mine;
                                };
                                let (found, failed) = cut_range(range);
                                mine.push((i, found, failed));
                            }
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .flat_map(|w| w.join().unwrap_or_default())
                    .collect()
            });
        results.sort_by_key(|(i, _, _)| *i);
        let mut by_hash = HashMap::new();
        let mut warned = HashSet::new();
        for (i, found, failed) in results {
            let seed = ranges[i].0;
            if let Some(e) = failed {
                if warned.insert(seed) {
                    crate::warn!(
                        "hnroot: {}: {e:#}: the chunks not found in it before are fetched instead",
                        files[seed].0.file_name()
                    );
                }
            }
            for (h, offset, len) in found {
                by_hash.entry(h).or_insert((seed, offset, len));
            }
        }
        Seeds { files, by_hash }
    }
}

/// A stage's delta: the index's chunks and where the ones hostpart has are.
pub struct Delta {
    chunks: Vec<Chunk>,
    seeds: Seeds,
    stats: std::cell::Cell<Stats>,
}

impl Delta {
    /// The delta for staging `source` signed by `key` (its signature file `signature`), when
    /// its publisher put a signed index beside it; `None`, saying why, when the stage
    /// downloads the whole image instead.
    pub fn prepare(
        source: &Source,
        key: &PublicKey,
        signature: &[u8],
        hostpart: &Hostpart,
        view: &HostpartView,
        timeout: Duration,
        progress: &Progress,
    ) -> Option<Delta> {
        let Source::Http { url, .. } = source else {
            return None;
        };
        let location = format!("{url}{INDEX_SUFFIX}");
        let bytes = match fetch_index(&location, key, timeout) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                progress.say(format_args!(
                    "hnroot: no index at {location}: downloading the whole image (`hnroot \
                     publish` makes one, so a stage fetches only what changed)"
                ));
                return None;
            }
            Err(e) => {
                crate::warn!(
                    "hnroot: the index {location} is refused ({e:#}): downloading the whole \
                     image instead; nothing of the index is used"
                );
                progress.event(
                    json!({ "event": "index-refused", "index": location, "why": format!("{e:#}") }),
                );
                return None;
            }
        };
        let delta = match Self::from_index(&bytes, source.len(), signature) {
            Ok(d) => d,
            Err(e) => {
                crate::warn!(
                    "hnroot: the index {location} is refused ({e:#}): downloading the whole \
                     image instead"
                );
                progress.event(
                    json!({ "event": "index-refused", "index": location, "why": format!("{e:#}") }),
                );
                return None;
            }
        };
        Some(delta.with_seeds(hostpart, view, &bytes, progress))
    }

    /// The chunks of `bytes` for an image of `len` bytes whose signature file is `signature`.
    fn from_index(bytes: &[u8], len: u64, signature: &[u8]) -> Result<Delta> {
        let index = Index::parse(bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
        if index.image_len != len {
            bail!(
                "it describes an image of {} bytes, the server's image has {len}",
                index.image_len
            );
        }
        if index.signature_hash != hash(signature) {
            bail!("it was made for an image with another signature (another build of it?)");
        }
        Ok(Delta {
            chunks: index.chunks().collect(),
            seeds: Seeds {
                files: Vec::new(),
                by_hash: HashMap::new(),
            },
            stats: std::cell::Cell::new(Stats::default()),
        })
    }

    fn with_seeds(
        mut self,
        hostpart: &Hostpart,
        view: &HostpartView,
        bytes: &[u8],
        progress: &Progress,
    ) -> Delta {
        let Ok(index) = Index::parse(bytes) else {
            return self;
        };
        let wanted = self
            .chunks
            .iter()
            .filter(|c| !c.zero)
            .map(|c| c.hash)
            .collect();
        let looking = Instant::now();
        self.seeds = Seeds::gather(hostpart, view, index.sizes, &wanted, progress);
        let looked = looking.elapsed().as_secs_f64();
        let mut plan = Stats::default();
        for c in &self.chunks {
            match source_of(c, self.seeds.by_hash.contains_key(&c.hash)) {
                ChunkSource::Zero => plan.zero += u64::from(c.len),
                ChunkSource::Seed => plan.reused += u64::from(c.len),
                ChunkSource::Fetch => plan.fetched += u64::from(c.len),
            }
        }
        progress.event(json!({ "event": "delta", "chunks": self.chunks.len(),
            "seeds": self.seeds.files.iter().map(|(n, _)| n.file_name()).collect::<Vec<_>>(),
            "bytes_in_seeds": plan.reused, "bytes_zero": plan.zero, "bytes_to_fetch": plan.fetched,
            "seconds_looking": looked }));
        progress.say(format_args!(
            "hnroot: {} chunks: {} MiB from the images on hostpart (found in {looked:.1} s), {} \
             MiB of zeros, {} MiB to fetch",
            self.chunks.len(),
            plan.reused >> 20,
            plan.zero >> 20,
            plan.fetched >> 20
        ));
        self
    }

    /// What was fetched and reused so far.
    pub fn stats(&self) -> Stats {
        self.stats.get()
    }

    /// The image's bytes from `offset`, fetching through `reader` what no seed holds.
    pub fn reader<'a>(&'a self, reader: Box<dyn ImageReader>, offset: u64) -> DeltaReader<'a> {
        DeltaReader {
            delta: self,
            remote: reader,
            pos: offset,
            buf: Vec::new(),
            at: 0,
            zero: false,
        }
    }

    fn count(&self, f: impl FnOnce(&mut Stats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }
}

/// Fetch the index at `location` and check its signature (`location.minisig`) with `key`:
/// `None` when there is no index.
fn fetch_index(location: &str, key: &PublicKey, timeout: Duration) -> Result<Option<Vec<u8>>> {
    let Some(bytes) = read_limited(location, timeout, INDEX_MAX)? else {
        return Ok(None);
    };
    let sig_location = format!("{location}.minisig");
    let sig = read_limited(&sig_location, timeout, 64 << 10)?
        .with_context(|| format!("no signature at {sig_location}: an index is trusted only when the image's publisher signed it"))?;
    let sig = Signature::decode(&String::from_utf8_lossy(&sig))
        .map_err(|e| anyhow::anyhow!("{sig_location} is not a minisign signature: {e}"))?;
    key.verify(&bytes, &sig, false).map_err(|e| {
        anyhow::anyhow!("{sig_location} does not verify with the key that signed the image: {e}")
    })?;
    Ok(Some(bytes))
}

/// The new image as a stream: chunks from seeds, zeros, or fetched, each checked against the
/// index. A read returns as many whole chunks as fit, all of zeros or none of zeros (so the
/// copy sees a run of zeros whole, as a hole), not one chunk per read: the copy's threads
/// then hand on a buffer per MiB, not per chunk, whatever the index's chunk size.
pub struct DeltaReader<'a> {
    delta: &'a Delta,
    remote: Box<dyn ImageReader>,
    pos: u64,
    /// The current chunk (or run of fetched chunks); `buf[at..]` is still to be read.
    buf: Vec<u8>,
    at: usize,
    /// `buf` is a chunk of zeros.
    zero: bool,
}

impl DeltaReader<'_> {
    /// The chunk holding byte `pos`.
    fn chunk_at(&self, pos: u64) -> Option<usize> {
        let chunks = &self.delta.chunks;
        let i = chunks.partition_point(|c| c.offset + u64::from(c.len) <= pos);
        (i < chunks.len()).then_some(i)
    }

    /// A seed's copy of `chunk` into `buf`, when a seed has it and it still has the index's
    /// hash; false otherwise (`buf` then holds no chunk).
    fn seed_copy(&mut self, chunk: &Chunk) -> bool {
        let Some(&(seed, offset, len)) = self.delta.seeds.by_hash.get(&chunk.hash) else {
            return false;
        };
        let Some((_, file)) = self.delta.seeds.files.get(seed) else {
            return false;
        };
        // Every byte is read over: no need to clear what is there.
        self.buf.resize(len as usize, 0);
        let ok = file.read_exact_at(&mut self.buf, offset).is_ok() && hash(&self.buf) == chunk.hash;
        if !ok {
            self.delta.count(|s| s.refetched += 1);
            self.buf.clear();
        }
        ok
    }

    /// Fetch chunks `first..` (as many consecutive ones no seed holds as fit one request, at
    /// least `first`) and check each; returns the bytes and the chunks they cover.
    fn fetch(&mut self, first: usize, seedless: bool) -> io::Result<(Vec<u8>, usize)> {
        let chunks = &self.delta.chunks;
        let mut end = first + 1;
        let mut bytes = u64::from(chunks[first].len);
        while let Some(c) = chunks.get(end) {
            let more = !seedless
                && source_of(c, self.delta.seeds.by_hash.contains_key(&c.hash))
                    == ChunkSource::Fetch;
            if !more || bytes + u64::from(c.len) > MAX_RANGE {
                break;
            }
            bytes += u64::from(c.len);
            end += 1;
        }
        let start = chunks[first].offset;
        let mut data = vec![0u8; bytes as usize];
        self.remote.read_exact_at(start, &mut data)?;
        self.delta.count(|s| {
            s.fetched += bytes;
            s.requests += 1;
        });
        let mut at = 0usize;
        for (i, c) in chunks[first..end].iter().enumerate() {
            let piece = &data[at..at + c.len as usize];
            if hash(piece) != c.hash {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the server sent bytes {}-{} that are not the index's chunk {} (its hash \
                         differs): it serves other bytes than the image it published; the copy \
                         stops and nothing is published",
                        c.offset,
                        c.offset + u64::from(c.len) - 1,
                        first + i
                    ),
                ));
            }
            at += c.len as usize;
        }
        Ok((data, end))
    }

    /// Fill the buffer with the next run of chunks of one kind, from the chunk holding `pos`.
    fn refill(&mut self) -> io::Result<bool> {
        let Some(first) = self.chunk_at(self.pos) else {
            return Ok(false);
        };
        let chunk = self.delta.chunks[first];
        self.zero = chunk.zero;
        match source_of(&chunk, self.delta.seeds.by_hash.contains_key(&chunk.hash)) {
            ChunkSource::Zero => {
                self.delta.count(|s| s.zero += u64::from(chunk.len));
                self.buf.clear();
                self.buf.resize(chunk.len as usize, 0);
            }
            ChunkSource::Seed => {
                if self.seed_copy(&chunk) {
                    self.delta.count(|s| s.reused += u64::from(chunk.len));
                } else {
                    self.buf = self.fetch(first, true)?.0;
                }
            }
            ChunkSource::Fetch => self.buf = self.fetch(first, false)?.0,
        }
        // Resuming inside a chunk: skip what the partial file already holds.
        self.at = (self.pos - chunk.offset) as usize;
        Ok(true)
    }
}

impl Read for DeltaReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut n = 0usize;
        // Whether this read returns zeros (set by its first chunk).
        let mut zeros = None;
        while n < out.len() {
            if self.at >= self.buf.len() && !self.refill()? {
                break;
            }
            // Zeros and data never share a read, so that the copy sees the zeros whole.
            if *zeros.get_or_insert(self.zero) != self.zero {
                break;
            }
            let take = (self.buf.len() - self.at).min(out.len() - n);
            out[n..n + take].copy_from_slice(&self.buf[self.at..self.at + take]);
            self.at += take;
            self.pos += take as u64;
            n += take;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunker::tests::noise;
    use std::io::Write;
    use std::os::unix::fs::FileExt;

    fn sizes() -> ChunkSizes {
        ChunkSizes {
            min: 2048,
            avg: 8192,
            max: 32768,
        }
    }

    fn file_with(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    #[test]
    fn an_index_covers_the_image_and_marks_zeros() {
        let mut image = noise(1, 200_000);
        image.extend(std::iter::repeat_n(0u8, 100_000));
        image.extend(noise(2, 50_000));
        let f = file_with(&image);
        let (bytes, summary) = index_of(&f, b"sig", sizes()).unwrap();
        let index = Index::parse(&bytes).unwrap();
        assert_eq!(index.image_len, image.len() as u64);
        assert_eq!(index.signature_hash, hash(b"sig"));
        assert!(summary.zero_bytes >= 60_000, "{summary:?}");
        for c in index.chunks() {
            let piece = &image[c.offset as usize..(c.offset + u64::from(c.len)) as usize];
            assert_eq!(hash(piece), c.hash);
            assert_eq!(c.zero, piece.iter().all(|b| *b == 0));
        }
    }

    #[test]
    fn an_index_for_another_image_or_signature_is_refused() {
        let image = noise(3, 100_000);
        let (bytes, _) = index_of(&file_with(&image), b"sig", sizes()).unwrap();
        assert!(Delta::from_index(&bytes, image.len() as u64, b"sig").is_ok());
        let e = Delta::from_index(&bytes, image.len() as u64 + 1, b"sig")
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("describes an image of"), "{e:#}");
        let e = Delta::from_index(&bytes, image.len() as u64, b"other")
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("another signature"), "{e:#}");
    }

    /// The publisher's image in memory, read as a server would send it.
    struct Remote(Vec<u8>);

    impl ImageReader for Remote {
        fn length(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
            let at = offset as usize;
            buf.copy_from_slice(&self.0[at..at + buf.len()]);
            Ok(())
        }
        fn boxed_clone(&self) -> Box<dyn ImageReader> {
            Box::new(Remote(self.0.clone()))
        }
    }

    /// v1 (on hostpart) and v2 (v1 with 3000 bytes changed in the middle and zeros at the end).
    fn versions() -> (Vec<u8>, Vec<u8>) {
        let v1 = noise(7, 400_000);
        let mut v2 = v1.clone();
        for b in &mut v2[200_000..203_000] {
            *b = b.wrapping_add(1);
        }
        v2.extend(std::iter::repeat_n(0u8, 70_000));
        (v1, v2)
    }

    fn delta_over(seed: &[u8], image: &[u8]) -> (Delta, File) {
        let (bytes, _) = index_of(&file_with(image), b"sig", sizes()).unwrap();
        let mut delta = Delta::from_index(&bytes, image.len() as u64, b"sig").unwrap();
        let wanted = delta.chunks.iter().map(|c| c.hash).collect();
        let seed_file = file_with(seed);
        delta.seeds = Seeds::cut(
            vec![(ImageName::Current, seed_file.try_clone().unwrap())],
            sizes(),
            &wanted,
        );
        (delta, seed_file)
    }

    fn read_all(mut r: impl Read) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn the_image_is_assembled_from_seeds_zeros_and_fetched_chunks() {
        let (v1, v2) = versions();
        let (delta, _seed) = delta_over(&v1, &v2);
        let got = read_all(delta.reader(Box::new(Remote(v2.clone())), 0)).unwrap();
        assert!(got == v2, "the assembled image differs from v2");
        let s = delta.stats();
        assert_eq!(s.fetched + s.reused + s.zero, v2.len() as u64, "{s:?}");
        // The changed chunks and the one where the data meets the zeros: a fifth of the image.
        assert!(
            s.fetched < 100_000,
            "only around the changes is fetched: {s:?}"
        );
        assert!(s.reused > 300_000 && s.zero >= 40_000, "{s:?}");
        assert_eq!(s.refetched, 0);
        // Resuming in the middle of a chunk gives the rest, byte for byte.
        let (delta, _seed) = delta_over(&v1, &v2);
        let rest = read_all(delta.reader(Box::new(Remote(v2.clone())), 123_457)).unwrap();
        assert!(rest[..] == v2[123_457..]);
    }

    #[test]
    fn a_read_returns_whole_runs_of_chunks_and_never_zeros_with_data() {
        let (v1, v2) = versions();
        let (delta, _seed) = delta_over(&v1, &v2);
        let mut r = delta.reader(Box::new(Remote(v2.clone())), 0);
        let mut buf = vec![0u8; 1 << 20];
        // The data (seeded and fetched chunks alike, the last one running into the zeros) up
        // to the first chunk of zeros, in one read: many chunks of 8 KiB on average.
        let n = r.read(&mut buf).unwrap();
        assert!(n >= 400_000 && n < v2.len(), "{n}");
        assert!(buf[..n] == v2[..n]);
        let m = r.read(&mut buf).unwrap();
        assert!(m > 0 && buf[..m].iter().all(|b| *b == 0), "{m}");
        assert_eq!(n + m, v2.len(), "the zeros to the end in one read");
    }

    #[test]
    fn seeds_cut_in_ranges_on_several_threads_find_every_chunk() {
        // A seed of 6 MiB (on 2 CPUs two ranges of 3 MiB, on more CPUs more ranges of at
        // least 2 MiB, at these sizes), the new image the same with 3000 bytes changed.
        let v1 = noise(14, 6 << 20);
        let mut v2 = v1.clone();
        for b in &mut v2[3_000_000..3_003_000] {
            *b = b.wrapping_add(1);
        }
        let (delta, _seed) = delta_over(&v1, &v2);
        let got = read_all(delta.reader(Box::new(Remote(v2.clone())), 0)).unwrap();
        assert!(got == v2, "the assembled image differs from v2");
        let s = delta.stats();
        // Only the chunks the change touches are fetched; the splits between ranges cost
        // nothing (each range runs on into the next: without that, this seed's split costs
        // a chunk of 6931 bytes).
        let touched: u64 = delta
            .chunks
            .iter()
            .filter(|c| c.offset < 3_003_000 && c.offset + u64::from(c.len) > 3_000_000)
            .map(|c| u64::from(c.len))
            .sum();
        assert_eq!(s.fetched, touched, "{s:?}");
        assert_eq!(s.fetched + s.reused, v2.len() as u64, "{s:?}");
    }

    #[test]
    fn chunks_moved_by_an_insertion_are_found_and_those_in_place_too() {
        // 1 MiB and 2 MiB stretches of v1 in place around 5000 inserted bytes, which move the
        // 3 MiB after them; v1's last MiB left out.
        let v1 = noise(21, 7 << 20);
        let mut v2 = v1[..3 << 20].to_vec();
        v2.extend(noise(22, 5000));
        v2.extend_from_slice(&v1[3 << 20..6 << 20]);
        let (delta, _seed) = delta_over(&v1, &v2);
        // Of the chunks found in the seed: at the same offset, or moved.
        let (in_place, moved) = delta
            .chunks
            .iter()
            .filter_map(|c| delta.seeds.by_hash.get(&c.hash).map(|f| f.1 == c.offset))
            .fold((0, 0), |(same, other), at_same| {
                if at_same {
                    (same + 1, other)
                } else {
                    (same, other + 1)
                }
            });
        assert!(
            in_place > 250 && moved > 250,
            "{in_place} in place, {moved} moved"
        );
        let got = read_all(delta.reader(Box::new(Remote(v2.clone())), 0)).unwrap();
        assert!(got == v2, "the assembled image differs from v2");
        let s = delta.stats();
        assert!(s.fetched < 5000 + 6 * 32768, "{s:?}");
    }

    #[test]
    fn a_seed_that_changed_under_the_stage_is_fetched_instead() {
        let (v1, v2) = versions();
        let (delta, seed) = delta_over(&v1, &v2);
        // The seed is overwritten after it was cut (an image replaced during the stage).
        seed.write_all_at(&noise(99, 400_000), 0).unwrap();
        let got = read_all(delta.reader(Box::new(Remote(v2.clone())), 0)).unwrap();
        assert!(got == v2, "the assembled image differs from v2");
        let s = delta.stats();
        assert!(s.refetched > 0 && s.reused == 0, "{s:?}");
        assert_eq!(s.fetched + s.zero, v2.len() as u64, "{s:?}");
    }

    #[test]
    fn a_server_sending_other_bytes_stops_the_copy() {
        let (v1, v2) = versions();
        let (delta, _seed) = delta_over(&v1, &v2);
        let mut served = v2.clone();
        served[201_000] ^= 0xff;
        let e = read_all(delta.reader(Box::new(Remote(served)), 0)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("not the index's chunk"), "{e}");
    }
}
