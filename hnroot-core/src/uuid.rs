//! Filesystem identities (UUIDs) in the binary form the probes read and in blkid's textual form.
//! Image identity in hnroot is the filesystem UUID of the image; this type never guesses one.

use core::fmt;

/// A filesystem identifier as blkid reports it in `UUID=`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum FsUuid {
    /// A 128-bit UUID (ext2/3/4, XFS, btrfs, GPT): `01234567-89ab-cdef-0123-456789abcdef`.
    Uuid([u8; 16]),
    /// A FAT volume serial number, bytes in display order: `ABCD-1234`.
    VolumeId([u8; 4]),
}

/// Why a textual UUID was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum UuidParseError {
    /// Neither 36 characters (`8-4-4-4-12`) nor 9 (`XXXX-XXXX`).
    Length {
        /// Characters found.
        found: usize,
    },
    /// A character that is neither a hex digit nor a dash in the right place.
    Character {
        /// 0-based position of the offending character.
        position: usize,
    },
}

impl core::error::Error for UuidParseError {}

impl fmt::Display for UuidParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UuidParseError::Length { found } => write!(
                f,
                "expected 36 characters (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), 11 (xxxxxxxx-NN) or 9 (XXXX-XXXX), found {found}"
            ),
            UuidParseError::Character { position } => {
                write!(f, "unexpected character at position {position}")
            }
        }
    }
}

/// Dash positions of the 128-bit textual form.
const UUID_DASHES: [usize; 4] = [8, 13, 18, 23];
const UUID_TEXT_LEN: usize = 36;
const VOLUME_ID_TEXT_LEN: usize = 9;
const VOLUME_ID_DASH: usize = 4;

impl FsUuid {
    /// Parse blkid's textual form. Hex digits may be upper or lower case.
    pub fn parse(text: &str) -> Result<FsUuid, UuidParseError> {
        let bytes = text.as_bytes();
        match bytes.len() {
            UUID_TEXT_LEN => parse_hex_groups(bytes, &UUID_DASHES).map(FsUuid::Uuid),
            VOLUME_ID_TEXT_LEN => parse_hex_groups(bytes, &[VOLUME_ID_DASH]).map(FsUuid::VolumeId),
            found => Err(UuidParseError::Length { found }),
        }
    }

    /// True when every byte is zero: blkid does not report such a UUID at all.
    pub fn is_nil(&self) -> bool {
        self.as_bytes().iter().all(|&b| b == 0)
    }

    /// The raw bytes (16 or 4).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            FsUuid::Uuid(b) => b,
            FsUuid::VolumeId(b) => b,
        }
    }
}

/// Parse `N` bytes of hex, with a dash at each of `dashes` and nowhere else.
fn parse_hex_groups<const N: usize>(
    text: &[u8],
    dashes: &[usize],
) -> Result<[u8; N], UuidParseError> {
    let mut out = [0u8; N];
    let mut digits = 0usize;
    for (position, &c) in text.iter().enumerate() {
        if dashes.contains(&position) {
            if c != b'-' {
                return Err(UuidParseError::Character { position });
            }
            continue;
        }
        let value = hex_value(c).ok_or(UuidParseError::Character { position })?;
        let byte = out
            .get_mut(digits / 2)
            .ok_or(UuidParseError::Length { found: text.len() })?;
        *byte = if digits % 2 == 0 {
            value << 4
        } else {
            *byte | value
        };
        digits = digits.wrapping_add(1);
    }
    if digits != N.wrapping_mul(2) {
        return Err(UuidParseError::Length { found: text.len() });
    }
    Ok(out)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c.wrapping_sub(b'0')),
        b'a'..=b'f' => Some(c.wrapping_sub(b'a').wrapping_add(10)),
        b'A'..=b'F' => Some(c.wrapping_sub(b'A').wrapping_add(10)),
        _ => None,
    }
}

impl fmt::Display for FsUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsUuid::Uuid(b) => {
                for (i, byte) in b.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        f.write_str("-")?;
                    }
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
            FsUuid::VolumeId([a, b, c, d]) => write!(f, "{a:02X}{b:02X}-{c:02X}{d:02X}"),
        }
    }
}

/// A partition's identity as blkid reports it in `PARTUUID=`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum PartUuid {
    /// A GPT partition's unique GUID: `01234567-89ab-cdef-0123-456789abcdef`.
    Gpt([u8; 16]),
    /// An MBR partition: disk signature and partition number, `1234abcd-01`.
    Mbr {
        /// The 32-bit disk signature at offset 440 of the MBR.
        signature: u32,
        /// Partition number, 1-based.
        partition: u8,
    },
}

const MBR_PARTUUID_LEN: usize = 11;

impl PartUuid {
    /// Parse blkid's textual form (upper or lower case hex).
    pub fn parse(text: &str) -> Result<PartUuid, UuidParseError> {
        let bytes = text.as_bytes();
        match bytes.len() {
            UUID_TEXT_LEN => parse_hex_groups(bytes, &UUID_DASHES).map(PartUuid::Gpt),
            MBR_PARTUUID_LEN => {
                let [a, b, c, d, partition] = parse_hex_groups::<5>(bytes, &[8])?;
                Ok(PartUuid::Mbr {
                    signature: u32::from_be_bytes([a, b, c, d]),
                    partition,
                })
            }
            found => Err(UuidParseError::Length { found }),
        }
    }
}

impl fmt::Display for PartUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartUuid::Gpt(b) => FsUuid::Uuid(*b).fmt(f),
            PartUuid::Mbr {
                signature,
                partition,
            } => write!(f, "{signature:08x}-{partition:02x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn round_trips_both_forms() {
        for text in [
            "a3d0e0c4-8f3e-4a57-9d2b-0c6a5f1e2b7d",
            "00000000-0000-0000-0000-000000000001",
        ] {
            assert_eq!(FsUuid::parse(text).unwrap().to_string(), text);
        }
        let vol = FsUuid::parse("ABCD-12ef").unwrap();
        assert_eq!(vol, FsUuid::VolumeId([0xab, 0xcd, 0x12, 0xef]));
        assert_eq!(vol.to_string(), "ABCD-12EF");
        let upper = FsUuid::parse("A3D0E0C4-8F3E-4A57-9D2B-0C6A5F1E2B7D").unwrap();
        assert_eq!(upper.to_string(), "a3d0e0c4-8f3e-4a57-9d2b-0c6a5f1e2b7d");
    }

    #[test]
    fn refuses_malformed_text() {
        assert_eq!(FsUuid::parse(""), Err(UuidParseError::Length { found: 0 }));
        assert_eq!(
            FsUuid::parse("a3d0e0c4-8f3e-4a57-9d2b-0c6a5f1e2b7d0"),
            Err(UuidParseError::Length { found: 37 })
        );
        assert_eq!(
            FsUuid::parse("a3d0e0c4+8f3e-4a57-9d2b-0c6a5f1e2b7d"),
            Err(UuidParseError::Character { position: 8 })
        );
        assert_eq!(
            FsUuid::parse("g3d0e0c4-8f3e-4a57-9d2b-0c6a5f1e2b7d"),
            Err(UuidParseError::Character { position: 0 })
        );
        assert_eq!(
            FsUuid::parse("ABCD+1234"),
            Err(UuidParseError::Character { position: 4 })
        );
        assert_eq!(
            FsUuid::parse("../../etc"),
            Err(UuidParseError::Character { position: 0 })
        );
    }

    #[test]
    fn partuuids_round_trip() {
        let mbr = PartUuid::parse("1234ABcd-02").unwrap();
        assert_eq!(
            mbr,
            PartUuid::Mbr {
                signature: 0x1234_abcd,
                partition: 2
            }
        );
        assert_eq!(mbr.to_string(), "1234abcd-02");
        let gpt = "0fc63daf-8483-4772-8e79-3d69d8477de4";
        assert_eq!(PartUuid::parse(gpt).unwrap().to_string(), gpt);
        assert_eq!(
            PartUuid::parse("1234abcd02"),
            Err(UuidParseError::Length { found: 10 })
        );
        assert_eq!(
            PartUuid::parse("1234abcd+02"),
            Err(UuidParseError::Character { position: 8 })
        );
    }

    #[test]
    fn nil_is_detected() {
        assert!(FsUuid::Uuid([0; 16]).is_nil());
        assert!(!FsUuid::VolumeId([0, 0, 0, 1]).is_nil());
    }
}
