//! One section added to a PE image (GRUB's EFI image, before it is signed): hnroot's version
//! record as `.hnroot`, readable without running the image (`hnroot_core::loader::find_section`).
//! The section header goes into the header area's free room (refused when there is none, never
//! by moving other sections), the data after the last byte of the file, aligned as the image
//! says; the image's size fields follow. A signature made afterwards covers the section.

use anyhow::{bail, ensure, Context, Result};
use hnroot_core::loader::section_table;
use std::ops::Range;

/// Offsets in the COFF header, from the PE signature's end.
const COFF_NUMBER_OF_SECTIONS: Range<usize> = 2..4;
/// In the optional header (PE32+).
const OPT_MAGIC: Range<usize> = 0..2;
const OPT_SIZE_OF_INITIALIZED_DATA: Range<usize> = 8..12;
const OPT_SECTION_ALIGNMENT: Range<usize> = 32..36;
const OPT_FILE_ALIGNMENT: Range<usize> = 36..40;
const OPT_SIZE_OF_IMAGE: Range<usize> = 56..60;
const OPT_SIZE_OF_HEADERS: Range<usize> = 60..64;
const OPT_CHECKSUM: Range<usize> = 64..68;
const PE32_PLUS: u16 = 0x20b;
const SECTION_HEADER_LEN: usize = 40;
/// Initialized data, readable.
const CHARACTERISTICS: u32 = 0x4000_0040;

fn get32(b: &[u8], at: usize, r: Range<usize>) -> Result<u32> {
    let s = b
        .get(at + r.start..at + r.end)
        .context("PE header field beyond the file")?;
    Ok(u32::from_le_bytes(s.try_into()?))
}

fn put32(b: &mut [u8], at: usize, r: Range<usize>, v: u32) -> Result<()> {
    b.get_mut(at + r.start..at + r.end)
        .context("PE header field beyond the file")?
        .copy_from_slice(&v.to_le_bytes());
    Ok(())
}

fn align(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

/// `image` with a section `name` holding `data` added.
pub fn add_section(image: &[u8], name: &[u8; 8], data: &[u8]) -> Result<Vec<u8>> {
    let (table, count) = section_table(image).map_err(|e| anyhow::anyhow!("{e}"))?;
    let pe = u32::from_le_bytes(image[0x3c..0x40].try_into()?) as usize;
    let coff = pe + 4;
    let opt = coff + 20;
    let magic = u16::from_le_bytes(
        image
            .get(opt + OPT_MAGIC.start..opt + OPT_MAGIC.end)
            .context("no optional header")?
            .try_into()?,
    );
    ensure!(
        magic == PE32_PLUS,
        "not a PE32+ image (optional header magic {magic:#x})"
    );
    let section_alignment = u64::from(get32(image, opt, OPT_SECTION_ALIGNMENT)?);
    let file_alignment = u64::from(get32(image, opt, OPT_FILE_ALIGNMENT)?);
    ensure!(
        section_alignment.is_power_of_two() && file_alignment.is_power_of_two(),
        "PE alignments {section_alignment:#x}/{file_alignment:#x} are not powers of two"
    );
    let size_of_headers = get32(image, opt, OPT_SIZE_OF_HEADERS)? as usize;
    let mut first_data = usize::MAX;
    let mut end_va = 0u64;
    for i in 0..usize::from(count) {
        let h = table + i * SECTION_HEADER_LEN;
        ensure!(
            image.get(h..h + 8) != Some(name.as_slice()),
            "the image already has a {} section",
            String::from_utf8_lossy(name).trim_end_matches('\0')
        );
        let vsize = u64::from(get32(image, h, 8..12)?);
        let va = u64::from(get32(image, h, 12..16)?);
        let raw_size = get32(image, h, 16..20)?;
        let raw_at = get32(image, h, 20..24)? as usize;
        if raw_size > 0 {
            first_data = first_data.min(raw_at);
        }
        end_va = end_va.max(va + vsize.max(u64::from(raw_size)));
    }
    let new_header = table + usize::from(count) * SECTION_HEADER_LEN;
    if new_header + SECTION_HEADER_LEN > size_of_headers.min(first_data) {
        bail!(
            "no room for one more section header: the headers end at {size_of_headers:#x}, the \
             first section's data starts at {first_data:#x}, the table would need \
             {:#x}",
            new_header + SECTION_HEADER_LEN
        );
    }
    ensure!(
        image[new_header..new_header + SECTION_HEADER_LEN]
            .iter()
            .all(|b| *b == 0),
        "the room after the section table is not empty"
    );
    let va = align(end_va, section_alignment);
    let raw_at = align(image.len() as u64, file_alignment);
    let raw_size = align(data.len() as u64, file_alignment);
    let mut out = image.to_vec();
    out.resize(raw_at as usize, 0);
    out.extend_from_slice(data);
    out.resize((raw_at + raw_size) as usize, 0);
    let h = new_header;
    out[h..h + 8].copy_from_slice(name);
    put32(&mut out, h, 8..12, u32::try_from(data.len())?)?;
    put32(&mut out, h, 12..16, u32::try_from(va)?)?;
    put32(&mut out, h, 16..20, u32::try_from(raw_size)?)?;
    put32(&mut out, h, 20..24, u32::try_from(raw_at)?)?;
    put32(&mut out, h, 36..40, CHARACTERISTICS)?;
    let n = count + 1;
    out[coff + COFF_NUMBER_OF_SECTIONS.start..coff + COFF_NUMBER_OF_SECTIONS.end]
        .copy_from_slice(&n.to_le_bytes());
    let image_size = align(va + data.len() as u64, section_alignment);
    put32(&mut out, opt, OPT_SIZE_OF_IMAGE, u32::try_from(image_size)?)?;
    let init = get32(&out, opt, OPT_SIZE_OF_INITIALIZED_DATA)?;
    put32(
        &mut out,
        opt,
        OPT_SIZE_OF_INITIALIZED_DATA,
        init.saturating_add(u32::try_from(raw_size)?),
    )?;
    // Firmware does not check it for EFI images; a stale value would only mislead.
    put32(&mut out, opt, OPT_CHECKSUM, 0)?;
    Ok(out)
}
