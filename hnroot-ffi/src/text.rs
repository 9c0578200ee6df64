//! Fixed-size text buffers for messages handed to C: no allocation, truncation detected.

use core::fmt;

use hnroot_core::name::ImageName;

use crate::hnroot_result;

/// A line of at most `N` bytes of UTF-8 built with `write!`.
pub struct Line<const N: usize> {
    buf: [u8; N],
    len: usize,
    overflowed: bool,
}

impl<const N: usize> Line<N> {
    /// Empty.
    pub const fn new() -> Self {
        Line {
            buf: [0; N],
            len: 0,
            overflowed: false,
        }
    }

    /// Copy as a NUL-terminated string into `buf`; `BUFFER_TOO_SHORT` (and nothing written) if it
    /// does not fit, `NULL_ARGUMENT` if `buf` is NULL.
    ///
    /// # Safety
    /// `buf` must be NULL or point to `buf_len` writable bytes.
    pub unsafe fn copy_to_c(&self, buf: *mut u8, buf_len: usize) -> hnroot_result {
        if buf.is_null() {
            return hnroot_result::HNROOT_RESULT_NULL_ARGUMENT;
        }
        if self.overflowed || buf_len <= self.len {
            return hnroot_result::HNROOT_RESULT_BUFFER_TOO_SHORT;
        }
        // SAFETY: `buf` holds `buf_len > self.len` bytes (checked above) and does not overlap
        // our own buffer, which lives on the Rust side.
        unsafe {
            core::ptr::copy_nonoverlapping(self.buf.as_ptr(), buf, self.len);
            *buf.add(self.len) = 0;
        }
        hnroot_result::HNROOT_RESULT_OK
    }
}

impl<const N: usize> Default for Line<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Write for Line<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.saturating_add(s.len());
        match self.buf.get_mut(self.len..end) {
            Some(dst) => {
                dst.copy_from_slice(s.as_bytes());
                self.len = end;
                Ok(())
            }
            None => {
                self.overflowed = true;
                Err(fmt::Error)
            }
        }
    }
}

/// The image's file name with a trailing NUL, for C.
pub fn c_name(name: ImageName) -> &'static [u8] {
    match name {
        ImageName::Current => b"hn-root.img\0",
        ImageName::Old => b"hn-root-old.img\0",
        ImageName::New => b"hn-root-new.img\0",
        ImageName::Cancelled => b"hn-root-cancelled.img\0",
        ImageName::Broken => b"hn-root-broken.img\0",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn c_names_match_the_core() {
        for name in ImageName::ALL {
            let c = c_name(name);
            assert_eq!(&c[..c.len() - 1], name.file_name().as_bytes());
        }
    }

    #[test]
    fn overflow_is_detected_and_nothing_is_copied() {
        let mut line = Line::<8>::new();
        assert!(write!(line, "0123456789").is_err());
        let mut out = [0xffu8; 16];
        let r = unsafe { line.copy_to_c(out.as_mut_ptr(), out.len()) };
        assert_eq!(r, hnroot_result::HNROOT_RESULT_BUFFER_TOO_SHORT);
        assert_eq!(out, [0xff; 16]);
        let mut line = Line::<8>::new();
        write!(line, "abc").unwrap();
        let mut out = [0xffu8; 3];
        let r = unsafe { line.copy_to_c(out.as_mut_ptr(), out.len()) };
        assert_eq!(r, hnroot_result::HNROOT_RESULT_BUFFER_TOO_SHORT);
        let mut out = [0xffu8; 4];
        let r = unsafe { line.copy_to_c(out.as_mut_ptr(), out.len()) };
        assert_eq!(r, hnroot_result::HNROOT_RESULT_OK);
        assert_eq!(&out, b"abc\0");
    }
}
