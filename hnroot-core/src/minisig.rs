//! minisign public keys and signatures, read and verified without I/O or allocation: what GRUB's
//! `hnroot.mod` and the Linux side use to check a seal's manifest. It never reads a key file or
//! a signature file itself (the driver hands the bytes in) and never signs (the publisher's
//! `minisign -S` does).
//!
//! The formats (minisign's own documentation): a public key is an optional `untrusted comment:`
//! line and one base64 line of 42 bytes: `Ed` (2), the key ID (8), the Ed25519 key (32). A
//! signature is four lines: `untrusted comment: ...`, base64 of 74 bytes (`Ed` for a signature
//! of the message itself, `ED` for one of its BLAKE2b-512 hash, minisign's default since 0.10;
//! the key ID, 8; the Ed25519 signature, 64), `trusted comment: TEXT`, and base64 of the 64-byte
//! global signature of the signature followed by `TEXT`. Both signatures must verify.
//!
//! Ed25519 is `ed25519-compact` (Frank Denis's, minisign's author: pure Rust, `no_std`, no
//! dependencies, strict about non-canonical signatures); BLAKE2b-512 is RustCrypto's `blake2`.

use blake2::{Blake2b512, Digest};
use core::fmt;

/// The Ed25519 key ID minisign prints (8 bytes, shown as 16 hex digits, little-endian order).
pub type KeyId = [u8; 8];

const KEY_BYTES: usize = 42;
const SIG_BYTES: usize = 74;
const GLOBAL_SIG_BYTES: usize = 64;
const ALG_PLAIN: [u8; 2] = *b"Ed";
const ALG_PREHASHED: [u8; 2] = *b"ED";
const UNTRUSTED: &[u8] = b"untrusted comment: ";
const TRUSTED: &[u8] = b"trusted comment: ";
/// The longest trusted comment read (minisign's own limit is 1024 bytes of the line).
pub const TRUSTED_COMMENT_MAX: usize = 1024;
/// The most trusted keys a loader holds (its `seal-keys` file).
pub const MAX_TRUSTED_KEYS: usize = 16;
/// The longest key or signature text read.
pub const TEXT_MAX: usize = 2048;

/// A minisign public key.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PublicKey {
    /// Its key ID.
    pub key_id: KeyId,
    /// The Ed25519 public key.
    pub key: [u8; 32],
}

/// A minisign signature, as read.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Signature<'a> {
    /// `ED`: the signature is of the message's BLAKE2b-512 hash.
    pub prehashed: bool,
    /// The ID of the key that made it.
    pub key_id: KeyId,
    /// The Ed25519 signature of the message (or its hash).
    pub signature: [u8; 64],
    /// The trusted comment (without `trusted comment: `), covered by `global`.
    pub trusted_comment: &'a [u8],
    /// The Ed25519 signature of `signature` followed by `trusted_comment`.
    pub global: [u8; 64],
}

/// Why a key or a signature was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MinisigError {
    /// Longer than [`TEXT_MAX`], or not the lines the format has.
    Shape(&'static str),
    /// A line that should be base64 is not, or decodes to the wrong length.
    Base64(&'static str),
    /// An algorithm other than `Ed`/`ED`.
    Algorithm([u8; 2]),
    /// The signature was made by a key that is not the one given.
    KeyId {
        /// The signature's key ID.
        signed_by: KeyId,
    },
    /// The Ed25519 signature of the message does not verify.
    Message,
    /// The global signature (over the trusted comment) does not verify.
    TrustedComment,
}

impl core::error::Error for MinisigError {}

impl fmt::Display for MinisigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MinisigError::Shape(what) => write!(f, "not a minisign {what}"),
            MinisigError::Base64(what) => {
                write!(f, "the {what} line is not valid base64 of the right length")
            }
            MinisigError::Algorithm(a) => {
                write!(f, "unknown signature algorithm {:?} (expected Ed or ED)", a)
            }
            MinisigError::KeyId { signed_by } => {
                write!(f, "signed by key {}, not this key", KeyIdHex(*signed_by))
            }
            MinisigError::Message => f.write_str("the signature does not match the signed bytes"),
            MinisigError::TrustedComment => {
                f.write_str("the trusted comment's signature does not verify")
            }
        }
    }
}

/// A key ID as minisign prints it (`minisign -V` says "Key ID ..."): 16 upper-case hex digits,
/// the 8 bytes read as a little-endian number.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct KeyIdHex(pub KeyId);

impl fmt::Display for KeyIdHex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", u64::from_le_bytes(self.0))
    }
}

/// The non-empty lines of `text`, without their line ends (`\n` or `\r\n`).
fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|&c| c == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty())
}

impl PublicKey {
    /// Reads a `.pub` file (an `untrusted comment:` line and the key line) or the key line alone
    /// (as `minisign -P` takes it).
    pub fn parse(text: &[u8]) -> Result<PublicKey, MinisigError> {
        if text.len() > TEXT_MAX {
            return Err(MinisigError::Shape("public key (too long)"));
        }
        let mut it = lines(text).filter(|l| !l.starts_with(UNTRUSTED));
        let line = it
            .next()
            .ok_or(MinisigError::Shape("public key (no key line)"))?;
        if it.next().is_some() {
            return Err(MinisigError::Shape("public key (more than one key line)"));
        }
        let mut raw = [0u8; KEY_BYTES];
        if base64_decode(line, &mut raw) != Some(KEY_BYTES) {
            return Err(MinisigError::Base64("public key"));
        }
        let (alg, rest) = raw.split_at(2);
        let (id, key) = rest.split_at(8);
        if alg != ALG_PLAIN {
            return Err(MinisigError::Algorithm([raw[0], raw[1]]));
        }
        let mut out = PublicKey {
            key_id: [0; 8],
            key: [0; 32],
        };
        out.key_id.copy_from_slice(id);
        out.key.copy_from_slice(key);
        Ok(out)
    }

    /// Reads the trusted keys of a loader: `.pub` files one after another (each an optional
    /// `untrusted comment:` line and a key line), at most `out.len()` keys, into `out`; returns
    /// how many. Any line that is neither a comment nor a key refuses the whole list.
    pub fn parse_list(text: &[u8], out: &mut [PublicKey]) -> Result<usize, MinisigError> {
        let mut n = 0usize;
        for line in lines(text).filter(|l| !l.starts_with(UNTRUSTED)) {
            let slot = out
                .get_mut(n)
                .ok_or(MinisigError::Shape("key list (too many keys)"))?;
            *slot = PublicKey::parse(line)?;
            n = n.saturating_add(1);
        }
        Ok(n)
    }

    /// Verifies `sig` over `message` with this key: the signature of the message (or of its
    /// BLAKE2b-512 hash), then the global signature over the trusted comment.
    pub fn verify(&self, message: &[u8], sig: &Signature) -> Result<(), MinisigError> {
        if sig.key_id != self.key_id {
            return Err(MinisigError::KeyId {
                signed_by: sig.key_id,
            });
        }
        let pk = ed25519_compact::PublicKey::new(self.key);
        let signature = ed25519_compact::Signature::new(sig.signature);
        let checked = if sig.prehashed {
            let hash = Blake2b512::digest(message);
            pk.verify(hash.as_slice(), &signature)
        } else {
            pk.verify(message, &signature)
        };
        checked.map_err(|_| MinisigError::Message)?;
        // The global signature covers the signature bytes and then the comment: at most
        // 64 + TRUSTED_COMMENT_MAX bytes, assembled on the stack.
        let mut global_msg = [0u8; 64 + TRUSTED_COMMENT_MAX];
        let len = 64usize.saturating_add(sig.trusted_comment.len());
        let buf = global_msg
            .get_mut(..len)
            .ok_or(MinisigError::TrustedComment)?;
        let (head, tail) = buf.split_at_mut(64);
        head.copy_from_slice(&sig.signature);
        tail.copy_from_slice(sig.trusted_comment);
        pk.verify(&*buf, &ed25519_compact::Signature::new(sig.global))
            .map_err(|_| MinisigError::TrustedComment)
    }
}

impl<'a> Signature<'a> {
    /// Reads a `.minisig` file: its four lines, checked in order.
    pub fn parse(text: &'a [u8]) -> Result<Signature<'a>, MinisigError> {
        if text.len() > TEXT_MAX {
            return Err(MinisigError::Shape("signature (too long)"));
        }
        let mut it = lines(text);
        let untrusted = it.next().ok_or(MinisigError::Shape("signature (empty)"))?;
        if !untrusted.starts_with(UNTRUSTED) {
            return Err(MinisigError::Shape("signature (no untrusted comment line)"));
        }
        let sig_line = it
            .next()
            .ok_or(MinisigError::Shape("signature (no signature line)"))?;
        let trusted = it
            .next()
            .ok_or(MinisigError::Shape("signature (no trusted comment)"))?;
        let trusted_comment = trusted
            .strip_prefix(TRUSTED)
            .ok_or(MinisigError::Shape("signature (no trusted comment)"))?;
        if trusted_comment.len() > TRUSTED_COMMENT_MAX {
            return Err(MinisigError::Shape("signature (trusted comment too long)"));
        }
        let global_line = it
            .next()
            .ok_or(MinisigError::Shape("signature (no global signature)"))?;
        if it.next().is_some() {
            return Err(MinisigError::Shape("signature (more than four lines)"));
        }
        let mut raw = [0u8; SIG_BYTES];
        if base64_decode(sig_line, &mut raw) != Some(SIG_BYTES) {
            return Err(MinisigError::Base64("signature"));
        }
        let mut global = [0u8; GLOBAL_SIG_BYTES];
        if base64_decode(global_line, &mut global) != Some(GLOBAL_SIG_BYTES) {
            return Err(MinisigError::Base64("global signature"));
        }
        let (_alg, rest) = raw.split_at(2);
        let (id, signature_bytes) = rest.split_at(8);
        let prehashed = match [raw[0], raw[1]] {
            ALG_PLAIN => false,
            ALG_PREHASHED => true,
            other => return Err(MinisigError::Algorithm(other)),
        };
        let mut key_id = [0u8; 8];
        key_id.copy_from_slice(id);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(signature_bytes);
        Ok(Signature {
            prehashed,
            key_id,
            signature,
            trusted_comment,
            global,
        })
    }
}

fn base64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c.wrapping_sub(b'A')),
        b'a'..=b'z' => Some(c.wrapping_sub(b'a').wrapping_add(26)),
        b'0'..=b'9' => Some(c.wrapping_sub(b'0').wrapping_add(52)),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Decodes standard base64 with padding into `out`; `None` on any invalid character, a wrong
/// length, non-zero trailing bits, or output that does not fit.
fn base64_decode(text: &[u8], out: &mut [u8]) -> Option<usize> {
    if text.len() % 4 != 0 {
        return None;
    }
    let padding = text.iter().rev().take_while(|&&c| c == b'=').count();
    if padding > 2 {
        return None;
    }
    let body = text.get(..text.len().saturating_sub(padding))?;
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    let mut written = 0usize;
    for &c in body {
        acc = (acc << 6) | u32::from(base64_value(c)?);
        bits = bits.saturating_add(6);
        if bits >= 8 {
            bits = bits.saturating_sub(8);
            let byte = u8::try_from((acc >> bits) & 0xff).ok()?;
            *out.get_mut(written)? = byte;
            written = written.saturating_add(1);
            acc &= (1u32 << bits).wrapping_sub(1);
        }
    }
    // What is left over must be the zero bits of the padding.
    if acc != 0 || bits >= 6 {
        return None;
    }
    Some(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_known_values() {
        let mut out = [0u8; 8];
        assert_eq!(base64_decode(b"TWFu", &mut out), Some(3));
        assert_eq!(&out[..3], b"Man");
        assert_eq!(base64_decode(b"TWE=", &mut out), Some(2));
        assert_eq!(&out[..2], b"Ma");
        assert_eq!(base64_decode(b"TQ==", &mut out), Some(1));
        assert_eq!(
            base64_decode(b"TR==", &mut out),
            None,
            "non-zero trailing bits"
        );
        assert_eq!(base64_decode(b"TQ=", &mut out), None);
        assert_eq!(base64_decode(b"T*==", &mut out), None);
        assert_eq!(
            base64_decode(b"TWFuTWFuTWFu", &mut out),
            None,
            "does not fit"
        );
    }
}
