//! Finds the host's static busybox (Debian's busybox-static) and lists its applets, for the
//! initramfs and the test root images. It refuses a dynamically linked busybox: in an
//! initramfs that fails as an unexplained "cannot execute /init".

use std::fs;
use std::ops::Range;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::buildenv;

/// Where Debian's busybox-static installs the binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Applets that must not become links: the images provide their own `/init` or `/sbin/init`.
const SKIP_APPLETS: &[&str] = &["busybox", "init", "linuxrc"];

/// ELF64 header fields (little endian) used to find program headers.
const EI_MAGIC: Range<usize> = 0..4;
const EI_CLASS: usize = 4;
const EI_DATA: usize = 5;
const E_PHOFF: Range<usize> = 0x20..0x28;
const E_PHENTSIZE: Range<usize> = 0x36..0x38;
const E_PHNUM: Range<usize> = 0x38..0x3a;
const ELF64_HEADER_LEN: usize = 0x40;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const PT_INTERP: u32 = 3;
/// More program headers than this is not a busybox binary.
const MAX_PHNUM: usize = 64;

/// The static busybox binary and its applet names (links to create, `init` excluded).
#[derive(Debug, Clone)]
pub struct Busybox {
    /// `/bin/busybox`'s bytes.
    pub binary: Vec<u8>,
    /// Its applets, each a link to `busybox` in an image.
    pub applets: Vec<String>,
}

/// Read `/bin/busybox`, check that it is static, list its applets.
pub fn host() -> Result<Busybox> {
    let path = PathBuf::from(BUSYBOX);
    let binary = fs::read(&path)
        .with_context(|| format!("cannot read {BUSYBOX} (apt-get install busybox-static)"))?;
    if has_interpreter(&binary).with_context(|| format!("{BUSYBOX} is not an x86-64 ELF"))? {
        bail!(
            "{BUSYBOX} is dynamically linked (package busybox, not busybox-static); an initramfs \
             needs the static one: apt-get install busybox-static"
        );
    }
    let list = buildenv::run(Command::new(&path).arg("--list"))?;
    let applets: Vec<String> = list
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && !SKIP_APPLETS.contains(a))
        .map(str::to_string)
        .collect();
    for needed in [
        "sh",
        "mount",
        "insmod",
        "findfs",
        "losetup",
        "switch_root",
        "poweroff",
    ] {
        if !applets.iter().any(|a| a == needed) {
            bail!("{BUSYBOX} has no `{needed}` applet; the boot chain needs it");
        }
    }
    Ok(Busybox { binary, applets })
}

/// Whether an ELF64 little-endian binary is statically linked (has no PT_INTERP header).
pub fn is_static(elf: &[u8]) -> Result<bool> {
    has_interpreter(elf).map(|dynamic| !dynamic)
}

/// Whether an ELF64 little-endian binary has a PT_INTERP program header (is dynamic).
fn has_interpreter(elf: &[u8]) -> Result<bool> {
    if elf.len() < ELF64_HEADER_LEN {
        bail!("{} bytes is shorter than an ELF64 header", elf.len());
    }
    if elf.get(EI_MAGIC) != Some(b"\x7fELF".as_slice()) {
        bail!("no ELF magic");
    }
    if elf.get(EI_CLASS) != Some(&ELFCLASS64) || elf.get(EI_DATA) != Some(&ELFDATA2LSB) {
        bail!("not ELF64 little endian");
    }
    let phoff = usize::try_from(u64::from_le_bytes(field(elf, E_PHOFF)?))?;
    let phentsize = usize::from(u16::from_le_bytes(field(elf, E_PHENTSIZE)?));
    let phnum = usize::from(u16::from_le_bytes(field(elf, E_PHNUM)?));
    if phnum > MAX_PHNUM || phentsize < 4 {
        bail!("implausible program header table ({phnum} entries of {phentsize} bytes)");
    }
    for i in 0..phnum {
        let start = phoff
            .checked_add(i * phentsize)
            .context("program header offset overflows")?;
        let p_type = u32::from_le_bytes(field(elf, start..start + 4)?);
        if p_type == PT_INTERP {
            return Ok(true);
        }
    }
    Ok(false)
}

fn field<const N: usize>(bytes: &[u8], range: Range<usize>) -> Result<[u8; N]> {
    let (start, end) = (range.start, range.end);
    bytes
        .get(range)
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .with_context(|| format!("bytes {start}..{end} are past the end ({})", bytes.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_busybox_is_static_and_sh_is_dynamic() {
        let Ok(bb) = fs::read(BUSYBOX) else {
            eprintln!("skipping: no {BUSYBOX}");
            return;
        };
        assert!(!has_interpreter(&bb).unwrap());
        let sh = fs::read("/bin/sh").unwrap();
        assert!(has_interpreter(&sh).unwrap());
    }

    #[test]
    fn truncated_and_foreign_files_are_refused() {
        assert!(has_interpreter(b"\x7fELF").is_err());
        let mut not_elf = vec![0u8; ELF64_HEADER_LEN];
        not_elf[..4].copy_from_slice(b"MZ\0\0");
        assert!(has_interpreter(&not_elf)
            .unwrap_err()
            .to_string()
            .contains("magic"));
        let mut header_only = vec![0u8; ELF64_HEADER_LEN];
        header_only[..4].copy_from_slice(b"\x7fELF");
        header_only[EI_CLASS] = ELFCLASS64;
        header_only[EI_DATA] = ELFDATA2LSB;
        header_only[E_PHOFF].copy_from_slice(&0x1000u64.to_le_bytes());
        header_only[E_PHENTSIZE].copy_from_slice(&56u16.to_le_bytes());
        header_only[E_PHNUM].copy_from_slice(&1u16.to_le_bytes());
        assert!(has_interpreter(&header_only)
            .unwrap_err()
            .to_string()
            .contains("past the end"));
    }
}
