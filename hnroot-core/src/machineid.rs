//! The machine ID (`/etc/machine-id`, machine-id(5)): 128 bits written as 32 lowercase hex
//! digits and a newline. A new one is made from random bytes the driver reads (the core has
//! no randomness of its own), formatted as systemd formats its own: a version 4 UUID.

use core::fmt;

/// A machine ID; never all zeros.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct MachineId([u8; 16]);

/// Why a text is not a machine ID.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MachineIdError {
    /// Empty: systemd's "uninitialized" state, not an ID.
    Empty,
    /// Not 32 lowercase hex digits (and an optional newline), or all zeros.
    Malformed,
}

impl core::error::Error for MachineIdError {}

impl fmt::Display for MachineIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MachineIdError::Empty => f.write_str("empty"),
            MachineIdError::Malformed => {
                f.write_str("not 32 lowercase hexadecimal digits (or all zeros)")
            }
        }
    }
}

impl MachineId {
    /// A new machine ID from 16 random bytes: the version and variant bits of a random
    /// (version 4) UUID set, as `systemd-machine-id-setup` does.
    pub fn from_random(mut bytes: [u8; 16]) -> MachineId {
        if let Some(b) = bytes.get_mut(6) {
            *b = (*b & 0x0f) | 0x40;
        }
        if let Some(b) = bytes.get_mut(8) {
            *b = (*b & 0x3f) | 0x80;
        }
        MachineId(bytes)
    }

    /// Parse the contents of a machine-id file: 32 lowercase hex digits, optionally followed
    /// by one newline.
    pub fn parse(text: &str) -> Result<MachineId, MachineIdError> {
        let digits = text.strip_suffix('\n').unwrap_or(text);
        if digits.is_empty() {
            return Err(MachineIdError::Empty);
        }
        if digits.len() != 32 {
            return Err(MachineIdError::Malformed);
        }
        let mut out = [0u8; 16];
        for (slot, pair) in out.iter_mut().zip(digits.as_bytes().chunks_exact(2)) {
            let mut v: u8 = 0;
            for &c in pair {
                let d = match c {
                    b'0'..=b'9' => c.wrapping_sub(b'0'),
                    b'a'..=b'f' => c.wrapping_sub(b'a').wrapping_add(10),
                    _ => return Err(MachineIdError::Malformed),
                };
                v = (v << 4) | d;
            }
            *slot = v;
        }
        if out == [0; 16] {
            return Err(MachineIdError::Malformed);
        }
        Ok(MachineId(out))
    }

    /// The 16 bytes.
    pub fn bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for MachineId {
    /// The 32 hex digits (the file adds a newline).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MachineId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn a_new_id_is_a_version_4_uuid_and_reads_back() {
        let id = MachineId::from_random([0xff; 16]);
        let text = id.to_string();
        assert_eq!(text, "ffffffffffff4fffbfffffffffffffff");
        assert_eq!(MachineId::parse(&std::format!("{text}\n")), Ok(id));
        assert_eq!(MachineId::parse(&text), Ok(id));
        let zero = MachineId::from_random([0; 16]);
        assert_eq!(zero.to_string(), "00000000000040008000000000000000");
    }

    #[test]
    fn malformed_ids_are_refused() {
        assert_eq!(MachineId::parse(""), Err(MachineIdError::Empty));
        assert_eq!(MachineId::parse("\n"), Err(MachineIdError::Empty));
        for bad in [
            "uninitialized\n",
            "0123456789ABCDEF0123456789abcdef",
            "0123456789abcdef0123456789abcde",
            "0123456789abcdef0123456789abcdef0",
            "00000000000000000000000000000000",
            "0123456789abcdef0123456789abcdef\n\n",
            "0123456789abcdef 123456789abcdef",
        ] {
            assert_eq!(
                MachineId::parse(bad),
                Err(MachineIdError::Malformed),
                "{bad:?}"
            );
        }
    }
}
