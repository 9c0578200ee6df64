//! Cuts a file into content-defined chunks (FastCDC 2020, the `fastcdc` crate's cut function,
//! normalisation level 1) for the delta index and for finding a new image's chunks in the
//! images on hostpart. It never writes, and it cuts exactly where `fastcdc::v2020::StreamCDC`
//! cuts the whole file (tested against it), so an index made here and seeds cut by an older
//! hnroot agree.
//!
//! What makes it cheaper than `StreamCDC` over a `BufReader` (which copies every chunk out of
//! its buffer and moves the rest of the buffer down after each one):
//! * the file is read in large buffers and each chunk is cut and handed out in place;
//! * the file's holes (`SEEK_DATA`/`SEEK_HOLE`; an image is about a third zeros) are not read:
//!   a chunk whose whole window (the `max` bytes the cut looks at) lies in a hole is all zeros
//!   and ends where a cut over `max` zeros ends, the same length every time, so such chunks
//!   are counted, not read;
//! * a range of the file can be cut on its own ([`Cutter::cut_range`]), so that a seed is cut
//!   on several threads: a range's first chunks only line up with the whole file's cut once
//!   the content brings them back to the same cut point (within a chunk or two), which costs a
//!   seed a chunk or two at each split and nothing else.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use anyhow::{bail, Context, Result};
use fastcdc::v2020::{cut, select_masks, Normalization};
use hnroot_core::delta::ChunkSizes;

/// Bytes read at once (at least twice the largest chunk).
const READ_BLOCK: usize = 8 << 20;

/// One chunk, as the cutter hands it out.
#[derive(Debug)]
pub enum Piece<'a> {
    /// A chunk read from the file.
    Data {
        /// Its first byte in the file.
        offset: u64,
        /// Its bytes.
        bytes: &'a [u8],
    },
    /// A chunk inside one of the file's holes: `len` zeros, not read (it starts where the
    /// previous piece ended).
    Hole {
        /// Its length ([`Cutter::hole_chunk`]).
        len: u32,
    },
}

/// The cut with one set of chunk sizes.
#[derive(Clone, Copy, Debug)]
pub struct Cutter {
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
    /// Where a cut over `max` zeros falls.
    zero_cut: usize,
}

impl Cutter {
    /// The cutter for `sizes` (an index's, already checked by the core's bounds).
    pub fn new(sizes: ChunkSizes) -> Cutter {
        let (min, avg, max) = (sizes.min as usize, sizes.avg as usize, sizes.max as usize);
        let (mask_s, mask_l) = select_masks(avg, Normalization::Level1);
        let mut c = Cutter {
            min,
            avg,
            max,
            mask_s,
            mask_l,
            zero_cut: max,
        };
        c.zero_cut = c.cut(&vec![0u8; max]).max(1);
        c
    }

    /// Where the chunk that starts with `window` (the next `max` bytes, fewer at the file's
    /// end) ends.
    fn cut(&self, window: &[u8]) -> usize {
        let (_, n) = cut(
            window,
            self.min,
            self.avg,
            self.max,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
        );
        n
    }

    /// The length of a chunk inside a hole.
    pub fn hole_chunk(&self) -> u32 {
        u32::try_from(self.zero_cut).unwrap_or(u32::MAX)
    }

    /// Cut all of `file`.
    pub fn cut_file(&self, file: &File, each: impl FnMut(Piece<'_>) -> Result<()>) -> Result<()> {
        let len = file.metadata().context("the file's length")?.len();
        self.cut_range(file, len, 0, len, each)
    }

    /// Cut the chunks of `file` (`len` bytes) that start in `start..end`, in order, calling
    /// `each` with every one: the first starts at `start`, the last runs on past `end` to its
    /// own cut, as it does when the whole file is cut. A file that is shorter than `len` when
    /// read (changed under the cut) is an error. The file is read by position; looking for
    /// its holes moves its descriptor's offset (seek before reading it by that offset).
    pub fn cut_range(
        &self,
        file: &File,
        len: u64,
        start: u64,
        end: u64,
        mut each: impl FnMut(Piece<'_>) -> Result<()>,
    ) -> Result<()> {
        let end = end.min(len);
        let mut buf = vec![0u8; READ_BLOCK.max(2 * self.max)];
        // `buf[..filled]` holds the file's bytes from `buf_at`.
        let mut buf_at = start;
        let mut filled = 0usize;
        let mut holes = Holes::new(file, len);
        let mut pos = start;
        let max = self.max as u64;
        let zero_cut = self.zero_cut as u64;
        while pos < end {
            // Chunks whose whole window is in a hole: counted, not read.
            let zeros = holes.zeros_from(pos);
            if zeros >= max {
                let fit = (zeros - max) / zero_cut + 1;
                let before_end = (end - pos).div_ceil(zero_cut);
                for _ in 0..fit.min(before_end) {
                    each(Piece::Hole {
                        len: self.hole_chunk(),
                    })?;
                    pos += zero_cut;
                }
                continue;
            }
            let window_end = (pos + max).min(len);
            if pos < buf_at || window_end > buf_at + filled as u64 {
                // Keep what is still ahead, then read on from there.
                let keep = if pos >= buf_at && pos < buf_at + filled as u64 {
                    let from = (pos - buf_at) as usize;
                    buf.copy_within(from..filled, 0);
                    filled - from
                } else {
                    0
                };
                buf_at = pos;
                filled = keep;
                let want = ((len - buf_at) as usize).min(buf.len());
                while filled < want {
                    let n = file
                        .read_at(&mut buf[filled..want], buf_at + filled as u64)
                        .with_context(|| format!("reading at byte {}", buf_at + filled as u64))?;
                    if n == 0 {
                        bail!(
                            "the file ended at byte {} of the {len} it had: it changed while it \
                             was read",
                            buf_at + filled as u64
                        );
                    }
                    filled += n;
                }
            }
            let from = (pos - buf_at) as usize;
            let window = &buf[from..from + (window_end - pos) as usize];
            let n = self.cut(window);
            if n == 0 {
                break;
            }
            each(Piece::Data {
                offset: pos,
                bytes: &window[..n],
            })?;
            pos += n as u64;
        }
        Ok(())
    }
}

/// Where a file's holes are (`lseek` with `SEEK_DATA` and `SEEK_HOLE`), remembering the last
/// extent found. A filesystem that cannot say has no holes here: the file is read whole.
struct Holes<'a> {
    file: &'a File,
    len: u64,
    /// The last extent found: `[from, to)`, a hole or data.
    known: Option<(u64, u64, bool)>,
}

impl<'a> Holes<'a> {
    fn new(file: &'a File, len: u64) -> Holes<'a> {
        Holes {
            file,
            len,
            known: None,
        }
    }

    /// `lseek(at, whence)`: the offset, or the errno.
    fn seek(&self, at: u64, whence: libc::c_int) -> Result<u64, i32> {
        let at = libc::off_t::try_from(at).map_err(|_| libc::EOVERFLOW)?;
        // SAFETY: lseek on a descriptor this File owns; only its offset changes, and every read
        // here is positional (read_at), so nothing depends on that offset.
        let r = unsafe { libc::lseek(self.file.as_raw_fd(), at, whence) };
        u64::try_from(r).map_err(|_| std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }

    /// How many bytes from `at` are a hole (0 when `at` is in data). Only what the filesystem
    /// says is a hole is one: when it cannot say, or the file is no longer as long as it was,
    /// the rest is taken as data (and read: a file that shrank is then an error).
    fn zeros_from(&mut self, at: u64) -> u64 {
        if let Some((from, to, hole)) = self.known {
            if (from..to).contains(&at) {
                return if hole { to - at } else { 0 };
            }
        }
        if at >= self.len {
            return 0;
        }
        let data = match self.seek(at, libc::SEEK_DATA) {
            Ok(d) => d.min(self.len),
            // No data at or after `at`: a hole to the end, if the file still reaches it.
            Err(libc::ENXIO) if self.file.metadata().is_ok_and(|m| m.len() >= self.len) => self.len,
            Err(_) => {
                self.known = Some((at, self.len, false));
                return 0;
            }
        };
        if data > at {
            self.known = Some((at, data, true));
            return data - at;
        }
        let hole = self
            .seek(at, libc::SEEK_HOLE)
            .unwrap_or(self.len)
            .clamp(at + 1, self.len.max(at + 1));
        self.known = Some((at, hole, false));
        0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// Pseudo-random bytes (xorshift), so chunk boundaries fall where content says (the delta
    /// reader's tests use it too).
    pub(crate) fn noise(seed: u64, n: usize) -> Vec<u8> {
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

    fn sizes(avg: u32) -> ChunkSizes {
        ChunkSizes::around(avg).unwrap()
    }

    /// A sparse file: data, holes shorter and longer than the largest chunk, zeros written
    /// as data, and a hole at the end. Returns it and its bytes.
    fn sparse(max: usize) -> (File, Vec<u8>) {
        let mut f = tempfile::tempfile().unwrap();
        let mut bytes = Vec::new();
        let parts: [(usize, Option<u64>); 9] = [
            (3 * max + 1234, Some(1)),
            (max / 2, None),
            (5 * max + 77, Some(2)),
            (7 * max + 4096 * 3, None),
            (max + 10, Some(3)),
            (2 * max, Some(0)),
            (max, None),
            (4096, Some(4)),
            (9 * max + 5, None),
        ];
        for (n, what) in parts {
            let at = bytes.len() as u64;
            let part = match what {
                Some(0) => vec![0u8; n],
                Some(seed) => noise(seed, n),
                None => {
                    bytes.extend(std::iter::repeat_n(0u8, n));
                    continue;
                }
            };
            f.write_all_at(&part, at).unwrap();
            bytes.extend_from_slice(&part);
        }
        f.set_len(bytes.len() as u64).unwrap();
        f.flush().unwrap();
        (f, bytes)
    }

    /// (offset, length) of every chunk, and checks each piece against the file's bytes.
    fn pieces(c: &Cutter, f: &File, bytes: &[u8], start: u64, end: u64) -> Vec<(u64, usize)> {
        let mut out = Vec::new();
        let mut at = start as usize;
        c.cut_range(f, bytes.len() as u64, start, end, |p| {
            let n = match p {
                Piece::Data { offset, bytes: b } => {
                    assert_eq!(offset, at as u64, "pieces follow each other");
                    assert!(b == &bytes[at..at + b.len()], "bytes at {at}");
                    b.len()
                }
                Piece::Hole { len } => {
                    assert!(bytes[at..at + len as usize].iter().all(|b| *b == 0));
                    len as usize
                }
            };
            out.push((at as u64, n));
            at += n;
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn it_cuts_where_stream_cdc_cuts_the_whole_file_holes_and_all() {
        for avg in [4 << 10, 8 << 10, 64 << 10] {
            let s = sizes(avg);
            let c = Cutter::new(s);
            let (f, bytes) = sparse(s.max as usize);
            let theirs: Vec<(u64, usize)> = fastcdc::v2020::StreamCDC::new(
                std::io::Cursor::new(bytes.clone()),
                s.min as usize,
                s.avg as usize,
                s.max as usize,
            )
            .map(|c| {
                let c = c.unwrap();
                (c.offset, c.length)
            })
            .collect();
            let ours = pieces(&c, &f, &bytes, 0, bytes.len() as u64);
            assert_eq!(ours, theirs, "avg {avg}");
            // The holes were skipped: some chunks were counted, not read.
            let mut holes = 0;
            c.cut_file(&f, |p| {
                if matches!(p, Piece::Hole { .. }) {
                    holes += 1;
                }
                Ok(())
            })
            .unwrap();
            assert!(holes >= 10, "avg {avg}: {holes} chunks in holes");
        }
    }

    #[test]
    fn ranges_cover_the_file_and_line_up_with_the_whole_cut_after_a_split() {
        let s = sizes(8 << 10);
        let c = Cutter::new(s);
        let (f, bytes) = sparse(s.max as usize);
        let len = bytes.len() as u64;
        let whole = pieces(&c, &f, &bytes, 0, len);
        let mid = len / 2 + 999;
        let first = pieces(&c, &f, &bytes, 0, mid);
        let second = pieces(&c, &f, &bytes, mid, len);
        // The first range is the whole cut up to the first chunk reaching past the split.
        assert_eq!(first[..], whole[..first.len()]);
        let (o, n) = *first.last().unwrap();
        assert!(o < mid && o + n as u64 >= mid);
        // The second starts at the split and soon cuts where the whole cut does.
        assert_eq!(second[0].0, mid);
        let end = |p: &(u64, usize)| p.0 + p.1 as u64;
        let second_ends: Vec<u64> = second.iter().map(end).collect();
        let shared = whole
            .iter()
            .filter(|p| second_ends.contains(&end(p)))
            .count();
        assert!(
            shared + 3 >= whole.iter().filter(|p| p.0 >= mid).count(),
            "the second range never lines up with the whole cut"
        );
        assert_eq!(end(second.last().unwrap()), len);
    }

    #[test]
    fn a_file_shorter_than_said_is_an_error() {
        let s = sizes(4 << 10);
        let c = Cutter::new(s);
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&noise(5, 100_000)).unwrap();
        let e = c
            .cut_range(&f, 200_000, 0, 200_000, |_| Ok(()))
            .unwrap_err();
        assert!(
            format!("{e:#}").contains("changed while it was read"),
            "{e:#}"
        );
    }
}
