//! Delta staging: an image fetched chunk by chunk, taking every chunk the images already on
//! hostpart hold from them and only the rest from the publisher.
//!
//! The index format is the core's (`hnroot_core::delta`); this module cuts files into chunks
//! (FastCDC, the `fastcdc` crate, with the sizes the index names), hashes them (BLAKE3), and
//! assembles the new image as a stream the stage's copy reads like any other source: the copy
//! still writes the partial file, leaves zeros as holes, resumes after an interruption and
//! feeds minisign's verifier every byte. A chunk is used only when its hash is the index's: a
//! seed that changed under the stage is fetched instead, a server that sends other bytes stops
//! the copy. The index itself is trusted only when the image's publisher signed it and it names
//! this image's signature.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::time::Duration;

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

use crate::progress::Progress;
use crate::source::{read_limited, Source};

/// The index's name beside the image: `IMAGE.hnidx`.
pub const INDEX_SUFFIX: &str = ".hnidx";
/// Largest index read (an image of 64 GiB at the smallest chunks the format allows).
const INDEX_MAX: usize = 160 << 20;
/// Most bytes of consecutive missing chunks asked for in one range request.
const MAX_RANGE: u64 = 8 << 20;

/// BLAKE3 of `bytes`.
pub fn hash(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

/// A file read from its first byte, whatever its descriptor's position.
struct FromStart<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for FromStart<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Cut `file` (from its first byte) into chunks with `sizes`, calling `each(offset, bytes)` in
/// order.
fn chunk_file(
    file: &File,
    sizes: ChunkSizes,
    mut each: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<()> {
    let reader = BufReader::with_capacity(4 << 20, FromStart { file, pos: 0 });
    let chunker = fastcdc::v2020::StreamCDC::new(
        reader,
        sizes.min as usize,
        sizes.avg as usize,
        sizes.max as usize,
    );
    for chunk in chunker {
        let chunk = chunk.map_err(|e| anyhow::anyhow!("reading to cut it into chunks: {e}"))?;
        each(chunk.offset, &chunk.data)?;
    }
    Ok(())
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
    chunk_file(file, sizes, |_, data| {
        let zero = data.iter().all(|b| *b == 0);
        let n = u32::try_from(data.len()).context("a chunk over 4 GiB")?;
        entries.extend_from_slice(&encode_entry(n, zero, &hash(data)));
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

impl Seeds {
    /// Cut every bootable image on hostpart with `sizes`, remembering the chunks `wanted`.
    fn gather(
        hostpart: &Hostpart,
        view: &HostpartView,
        sizes: ChunkSizes,
        wanted: &std::collections::HashSet<[u8; 32]>,
        progress: &Progress,
    ) -> Seeds {
        let mut seeds = Seeds {
            files: Vec::new(),
            by_hash: HashMap::new(),
        };
        for name in ImageName::ALL {
            if !matches!(
                view.image(name).map(|j| &j.verdict),
                Some(Verdict::Bootable(_))
            ) {
                continue;
            }
            let file = match hostpart.open_image(name) {
                Ok(f) => f,
                Err(e) => {
                    crate::warn!("hnroot: {}: {e}: not used as a seed", name.file_name());
                    continue;
                }
            };
            progress.phase(&format!(
                "looking for the new image's chunks in {}",
                name.file_name()
            ));
            seeds.add(name, file, sizes, wanted);
        }
        seeds
    }

    /// Cut `file` (the image `name`) with `sizes`, remembering where the chunks `wanted` are.
    fn add(
        &mut self,
        name: ImageName,
        file: File,
        sizes: ChunkSizes,
        wanted: &std::collections::HashSet<[u8; 32]>,
    ) {
        let n = self.files.len();
        let by_hash = &mut self.by_hash;
        let cut = chunk_file(&file, sizes, |offset, data| {
            let h = hash(data);
            if wanted.contains(&h) {
                let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
                by_hash.entry(h).or_insert((n, offset, len));
            }
            Ok(())
        });
        if let Err(e) = cut {
            crate::warn!(
                "hnroot: {}: {e:#}: its chunks are fetched instead",
                name.file_name()
            );
        }
        self.files.push((name, file));
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
        self.seeds = Seeds::gather(hostpart, view, index.sizes, &wanted, progress);
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
            "bytes_in_seeds": plan.reused, "bytes_zero": plan.zero, "bytes_to_fetch": plan.fetched }));
        progress.say(format_args!(
            "hnroot: {} chunks: {} MiB from the images on hostpart, {} MiB of zeros, {} MiB to fetch",
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
/// index.
pub struct DeltaReader<'a> {
    delta: &'a Delta,
    remote: Box<dyn ImageReader>,
    pos: u64,
    buf: Vec<u8>,
    at: usize,
}

impl DeltaReader<'_> {
    /// The chunk holding byte `pos`.
    fn chunk_at(&self, pos: u64) -> Option<usize> {
        let chunks = &self.delta.chunks;
        let i = chunks.partition_point(|c| c.offset + u64::from(c.len) <= pos);
        (i < chunks.len()).then_some(i)
    }

    /// A seed's copy of `chunk`, when a seed has it and it still has the index's hash.
    fn seed_copy(&self, chunk: &Chunk) -> Option<Vec<u8>> {
        let &(seed, offset, len) = self.delta.seeds.by_hash.get(&chunk.hash)?;
        let (_, file) = self.delta.seeds.files.get(seed)?;
        let mut data = vec![0u8; len as usize];
        let ok = file.read_exact_at(&mut data, offset).is_ok() && hash(&data) == chunk.hash;
        if !ok {
            self.delta.count(|s| s.refetched += 1);
            return None;
        }
        Some(data)
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
        let data = match source_of(&chunk, self.delta.seeds.by_hash.contains_key(&chunk.hash)) {
            ChunkSource::Zero => {
                self.delta.count(|s| s.zero += u64::from(chunk.len));
                vec![0u8; chunk.len as usize]
            }
            ChunkSource::Seed => match self.seed_copy(&chunk) {
                Some(d) => {
                    self.delta.count(|s| s.reused += u64::from(chunk.len));
                    d
                }
                None => self.fetch(first, true)?.0,
            },
            ChunkSource::Fetch => self.fetch(first, false)?.0,
        };
        // Resuming inside a chunk: skip what the partial file already holds.
        self.at = (self.pos - chunk.offset) as usize;
        self.buf = data;
        Ok(true)
    }
}

impl Read for DeltaReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut n = 0usize;
        while n < out.len() {
            if self.at >= self.buf.len() && !self.refill()? {
                break;
            }
            let take = (self.buf.len() - self.at).min(out.len() - n);
            out[n..n + take].copy_from_slice(&self.buf[self.at..self.at + take]);
            self.at += take;
            self.pos += take as u64;
            n += take;
            // A buffer of zeros ends a read, so that the copy sees it whole (a hole).
            if self.at >= self.buf.len() {
                break;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::FileExt;

    fn sizes() -> ChunkSizes {
        ChunkSizes {
            min: 2048,
            avg: 8192,
            max: 32768,
        }
    }

    /// Pseudo-random bytes (xorshift), so chunk boundaries fall where content says.
    fn noise(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
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
        delta.seeds.add(
            ImageName::Current,
            seed_file.try_clone().unwrap(),
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
