//! Relax GOT-relative relocations in a relocatable x86-64 ELF object into direct PC-relative
//! ones, as a final link would, so that GRUB's module loader (which builds no GOT and rejects
//! `R_X86_64_GOTPCREL`, "unsupported relocation 0x9") accepts the object. It only rewrites
//! references to symbols the object itself defines, and never guesses: an instruction form it
//! does not know, or a symbol the object does not define, is an error naming both.
//!
//! The rewrites are the ones `ld` performs (x86-64 psABI, "Optimize GOTPCRELX Relocations"),
//! with the relocation offset and addend left where they are:
//!
//! | before                            | after                        | relocation  |
//! |-----------------------------------|------------------------------|-------------|
//! | `ff 15` `call *S@GOTPCREL(%rip)`  | `90 e8` `nop; call S`        | `PLT32`     |
//! | `ff 25` `jmp *S@GOTPCREL(%rip)`   | `90 e9` `nop; jmp S`         | `PLT32`     |
//! | `8b /r` `mov S@GOTPCREL(%rip),%r` | `8d /r` `lea S(%rip),%r`     | `PC32`      |
//!
//! Plain `R_X86_64_GOTPCREL` (what rustc's prebuilt `core` carries) does not promise the
//! instruction form the way `GOTPCRELX` does, so the pass checks the ModRM byte (RIP-relative,
//! `mod=00 rm=101`) and the addend (-4: the displacement ends the instruction) before touching
//! anything.
//!
//! The object is patched in place (instruction bytes and `r_info`); sections, symbols and sizes
//! are unchanged.

use std::path::Path;

use anyhow::{bail, Context, Result};
use object::elf::{self, FileHeader64};
use object::read::elf::{FileHeader, Rela, SectionHeader, Sym};
use object::LittleEndian as LE;

/// `R_X86_64_GOTPCREL`: what GRUB rejects.
const R_GOTPCREL: u32 = 9;
/// `R_X86_64_GOTPCRELX`: same, instruction form guaranteed (no REX prefix).
const R_GOTPCRELX: u32 = 41;
/// `R_X86_64_REX_GOTPCRELX`: same, with a REX prefix.
const R_REX_GOTPCRELX: u32 = 42;
const R_PC32: u32 = 2;
const R_PLT32: u32 = 4;

/// Byte size of one `Elf64_Rela` and the offset of `r_info` in it.
const RELA_SIZE: usize = 24;
const RELA_R_INFO: usize = 8;

const OP_NOP: u8 = 0x90;
const OP_CALL_REL32: u8 = 0xe8;
const OP_JMP_REL32: u8 = 0xe9;
const OP_GROUP5: u8 = 0xff;
const OP_MOV_LOAD: u8 = 0x8b;
const OP_LEA: u8 = 0x8d;
/// ModRM of `call *disp32(%rip)` (`/2`) and `jmp *disp32(%rip)` (`/4`).
const MODRM_CALL_RIP: u8 = 0x15;
const MODRM_JMP_RIP: u8 = 0x25;
/// `mod=00 rm=101`: RIP-relative, whatever the register field.
const MODRM_RIP_MASK: u8 = 0xc7;
const MODRM_RIP: u8 = 0x05;

/// What the pass rewrote.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Relaxed {
    /// `call *S@GOTPCREL(%rip)` made direct.
    pub calls: usize,
    /// `jmp *S@GOTPCREL(%rip)` made direct.
    pub jumps: usize,
    /// `mov S@GOTPCREL(%rip), %reg` made `lea`.
    pub loads: usize,
}

impl Relaxed {
    /// Relocations rewritten in all.
    pub fn total(&self) -> usize {
        self.calls + self.jumps + self.loads
    }
}

/// Relax the object file at `path` in place.
pub fn relax_file(path: &Path) -> Result<Relaxed> {
    let mut bytes =
        std::fs::read(path).with_context(|| format!("relax: cannot read {}", path.display()))?;
    let relaxed = relax(&mut bytes).with_context(|| format!("relax: {}", path.display()))?;
    std::fs::write(path, &bytes)
        .with_context(|| format!("relax: cannot write {}", path.display()))?;
    Ok(relaxed)
}

/// One planned change: bytes to write at a file offset.
struct Patch {
    at: usize,
    bytes: Vec<u8>,
}

/// Relax every GOT-relative relocation in `bytes` (a relocatable x86-64 ELF object).
pub fn relax(bytes: &mut [u8]) -> Result<Relaxed> {
    let (patches, relaxed) = plan(bytes)?;
    for patch in patches {
        let end = patch.at + patch.bytes.len();
        let dst = bytes
            .get_mut(patch.at..end)
            .with_context(|| format!("patch at file offset {:#x} is out of bounds", patch.at))?;
        dst.copy_from_slice(&patch.bytes);
    }
    Ok(relaxed)
}

/// The ELF header of an x86-64 relocatable object, refused otherwise.
fn x86_64_object(data: &[u8]) -> Result<(&FileHeader64<LE>, LE)> {
    let header = FileHeader64::<LE>::parse(data).context("not a 64-bit little-endian ELF file")?;
    let endian = header.endian().context("ELF endianness")?;
    if header.e_machine(endian) != elf::EM_X86_64 {
        bail!(
            "not an x86-64 object (e_machine {:?})",
            header.e_machine(endian)
        );
    }
    if header.e_type(endian) != elf::ET_REL {
        bail!(
            "not a relocatable object (e_type {:?})",
            header.e_type(endian)
        );
    }
    Ok((header, endian))
}

/// The direct form of an instruction that reaches a symbol through the GOT (its two bytes
/// before the displacement) and its new relocation type; `None` for any other instruction.
fn direct_form(opcode: u8, modrm: u8, relaxed: &mut Relaxed) -> Option<([u8; 2], u32)> {
    match (opcode, modrm) {
        (OP_GROUP5, MODRM_CALL_RIP) => {
            relaxed.calls += 1;
            Some(([OP_NOP, OP_CALL_REL32], R_PLT32))
        }
        (OP_GROUP5, MODRM_JMP_RIP) => {
            relaxed.jumps += 1;
            Some(([OP_NOP, OP_JMP_REL32], R_PLT32))
        }
        (OP_MOV_LOAD, m) if m & MODRM_RIP_MASK == MODRM_RIP => {
            relaxed.loads += 1;
            Some(([OP_LEA, modrm], R_PC32))
        }
        _ => None,
    }
}

fn plan(data: &[u8]) -> Result<(Vec<Patch>, Relaxed)> {
    let (header, endian) = x86_64_object(data)?;
    let sections = header.sections(endian, data).context("section table")?;
    let symbols = sections
        .symbols(endian, data, elf::SHT_SYMTAB)
        .context("symbol table")?;

    let mut patches = Vec::new();
    let mut relaxed = Relaxed::default();
    let mut refused = Vec::new();
    for rela_section in sections.iter() {
        if rela_section.sh_type(endian) != elf::SHT_RELA {
            continue;
        }
        let target_index = object::SectionIndex(rela_section.sh_info(endian) as usize);
        let target = sections
            .section(target_index)
            .context("relocation section names no valid target section")?;
        let name = sections.section_name(endian, target);
        let target_name = String::from_utf8_lossy(name.unwrap_or(b"<unnamed>")).into_owned();
        let rela_offset = rela_section.sh_offset(endian) as usize;
        let Some((relas, _)) = rela_section.rela(endian, data).context("relocations")? else {
            continue;
        };
        for (i, rela) in relas.iter().enumerate() {
            let r_type = rela.r_type(endian, false).0;
            if !matches!(r_type, R_GOTPCREL | R_GOTPCRELX | R_REX_GOTPCRELX) {
                continue;
            }
            let r_sym = rela.r_sym(endian, false);
            let symbol = symbols
                .symbol(object::SymbolIndex(r_sym as usize))
                .with_context(|| format!("relocation {i} in {target_name}: symbol {r_sym}"))?;
            let name = String::from_utf8_lossy(symbols.symbol_name(endian, symbol).unwrap_or(b"?"))
                .into_owned();
            let offset = rela.r_offset(endian);
            let site = format!("{target_name}+{offset:#x} (`{name}`)");
            let defined_here = !symbol.is_undefined(endian)
                && !symbol.is_common(endian)
                && symbol.st_shndx(endian) != elf::SHN_ABS;
            if !defined_here {
                refused.push(format!(
                    "{site}: `{name}` is not defined in this object, so its address is only known \
                     through a GOT, which GRUB does not build"
                ));
                continue;
            }
            let addend = rela.r_addend(endian);
            if addend != -4 {
                refused.push(format!(
                    "{site}: addend {addend}, expected -4 (displacement ending the instruction)"
                ));
                continue;
            }
            if target.sh_type(endian) == elf::SHT_NOBITS {
                bail!("{site}: relocation in a section without file data");
            }
            let section_start = target.sh_offset(endian) as usize;
            let section_size = target.sh_size(endian) as usize;
            let offset = usize::try_from(offset).context("relocation offset")?;
            if offset < 2 || offset + 4 > section_size {
                refused.push(format!(
                    "{site}: offset outside the section ({section_size} bytes) or without room \
                     for an opcode before it"
                ));
                continue;
            }
            let at = section_start + offset - 2;
            let [opcode, modrm] = data
                .get(at..at + 2)
                .and_then(|b| <[u8; 2]>::try_from(b).ok())
                .context("section data out of bounds")?;
            let Some((new_bytes, new_type)) = direct_form(opcode, modrm, &mut relaxed) else {
                refused.push(format!(
                    "{site}: instruction bytes {opcode:02x} {modrm:02x} are not `call *`, \
                     `jmp *` or `mov` through the GOT"
                ));
                continue;
            };
            patches.push(Patch {
                at,
                bytes: new_bytes.to_vec(),
            });
            let r_info = (u64::from(r_sym) << 32) | u64::from(new_type);
            patches.push(Patch {
                at: rela_offset + i * RELA_SIZE + RELA_R_INFO,
                bytes: r_info.to_le_bytes().to_vec(),
            });
        }
    }
    if !refused.is_empty() {
        bail!(
            "{} GOT-relative relocation(s) cannot be made direct; the module would not load \
             in GRUB:\n  {}",
            refused.len(),
            refused.join("\n  ")
        );
    }
    Ok((patches, relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::process::Command;

    use object::{Object, ObjectSection, RelocationFlags};

    /// Assemble `source` with GNU as (`extra` arguments), returning the object's bytes.
    fn assemble(name: &str, source: &str, extra: &[&str]) -> (PathBuf, Vec<u8>) {
        let dir = std::env::temp_dir().join(format!("hnroot-relax-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("t.s");
        let obj = dir.join("t.o");
        std::fs::write(&src, source).unwrap();
        let out = Command::new("as")
            .args(extra)
            .arg("-o")
            .arg(&obj)
            .arg(&src)
            .output()
            .expect("GNU as (binutils) is needed for these tests");
        assert!(
            out.status.success(),
            "as failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (dir, std::fs::read(&obj).unwrap())
    }

    /// (offset, r_type) of every relocation of `.text`, and its bytes.
    fn text(bytes: &[u8]) -> (Vec<(u64, u32)>, Vec<u8>) {
        let file = object::File::parse(bytes).unwrap();
        let text = file.section_by_name(".text").unwrap();
        let relocs = text
            .relocations()
            .map(|(offset, r)| match r.flags() {
                RelocationFlags::Elf { r_type } => (offset, r_type.0),
                other => panic!("not ELF: {other:?}"),
            })
            .collect();
        (relocs, text.data().unwrap().to_vec())
    }

    const THREE_FORMS: &str = "
        .text
        .globl f
    f:  call *g@GOTPCREL(%rip)
        jmp *g@GOTPCREL(%rip)
        mov g@GOTPCREL(%rip), %rax
        mov g@GOTPCREL(%rip), %r11d
    g:  ret
    ";

    fn check_three_forms(as_args: &[&str], before: [u32; 4]) {
        let (_, mut bytes) = assemble(&as_args.concat(), THREE_FORMS, as_args);
        let (relocs, code) = text(&bytes);
        assert_eq!(
            relocs,
            vec![
                (2, before[0]),
                (8, before[1]),
                (15, before[2]),
                (22, before[3])
            ]
        );
        assert_eq!(&code[..2], &[0xff, 0x15]);
        assert_eq!(&code[6..8], &[0xff, 0x25]);
        assert_eq!(&code[12..15], &[0x48, 0x8b, 0x05]);
        assert_eq!(&code[19..22], &[0x44, 0x8b, 0x1d]);

        let relaxed = relax(&mut bytes).unwrap();
        assert_eq!(
            relaxed,
            Relaxed {
                calls: 1,
                jumps: 1,
                loads: 2
            }
        );
        let (relocs, code) = text(&bytes);
        assert_eq!(
            relocs,
            vec![(2, R_PLT32), (8, R_PLT32), (15, R_PC32), (22, R_PC32)]
        );
        assert_eq!(&code[..2], &[OP_NOP, OP_CALL_REL32]);
        assert_eq!(&code[6..8], &[OP_NOP, OP_JMP_REL32]);
        assert_eq!(&code[12..15], &[0x48, OP_LEA, 0x05]);
        assert_eq!(&code[19..22], &[0x44, OP_LEA, 0x1d]);
        // The displacements (filled in by the relocations) and the rest are untouched.
        assert_eq!(code[26], 0xc3);
        // Relaxing again finds nothing left to do.
        assert_eq!(relax(&mut bytes).unwrap(), Relaxed::default());
    }

    #[test]
    fn plain_gotpcrel_as_rustc_core_has_it() {
        check_three_forms(
            &["-mrelax-relocations=no"],
            [R_GOTPCREL, R_GOTPCREL, R_GOTPCREL, R_GOTPCREL],
        );
    }

    #[test]
    fn gotpcrelx_as_current_assemblers_emit_it() {
        check_three_forms(
            &["-mrelax-relocations=yes"],
            [R_GOTPCRELX, R_GOTPCRELX, R_REX_GOTPCRELX, R_REX_GOTPCRELX],
        );
    }

    #[test]
    fn undefined_symbol_is_refused_and_nothing_changes() {
        let (_, mut bytes) = assemble(
            "undef",
            ".text\n call *memcpy@GOTPCREL(%rip)\n ret\n",
            &["-mrelax-relocations=no"],
        );
        let original = bytes.clone();
        let err = format!("{:#}", relax(&mut bytes).unwrap_err());
        assert!(
            err.contains("`memcpy` is not defined in this object"),
            "{err}"
        );
        assert!(err.contains(".text+0x2"), "{err}");
        assert_eq!(bytes, original);
    }

    #[test]
    fn unknown_instruction_forms_are_refused() {
        // `add` through the GOT: a final link could only keep the GOT here.
        let (_, mut bytes) = assemble(
            "add",
            ".text\n add g@GOTPCREL(%rip), %rax\ng: ret\n",
            &["-mrelax-relocations=no"],
        );
        let err = format!("{:#}", relax(&mut bytes).unwrap_err());
        assert!(err.contains("instruction bytes 03 05"), "{err}");
        // An immediate after the displacement: addend -5, not -4.
        let (_, mut bytes) = assemble(
            "cmp",
            ".text\n cmpb $1, g@GOTPCREL(%rip)\ng: ret\n",
            &["-mrelax-relocations=no"],
        );
        let err = format!("{:#}", relax(&mut bytes).unwrap_err());
        assert!(err.contains("addend -5"), "{err}");
    }

    #[test]
    fn relaxed_code_runs_and_reaches_the_same_functions() {
        // main: load the address of `forty` through the GOT and call it, call `one` through
        // the GOT, tail-jump through the GOT into `add`, which returns 42 from rdi+rax.
        let source = "
            .text
            .globl main
        main:
            push %rbx
            mov forty@GOTPCREL(%rip), %rax
            call *%rax
            mov %eax, %ebx
            call *one@GOTPCREL(%rip)
            add %ebx, %eax
            mov %eax, %edi
            pop %rbx
            jmp *add_one@GOTPCREL(%rip)
        forty:
            mov $40, %eax
            ret
        one:
            mov $1, %eax
            ret
        add_one:
            lea 1(%rdi), %eax
            ret
            .section .note.GNU-stack,\"\",@progbits
        ";
        let (dir, mut bytes) = assemble("run", source, &["-mrelax-relocations=no"]);
        assert_eq!(relax(&mut bytes).unwrap().total(), 3);
        let obj = dir.join("relaxed.o");
        let exe = dir.join("relaxed");
        std::fs::write(&obj, &bytes).unwrap();
        let link = Command::new("gcc")
            .args(["-no-pie", "-o"])
            .arg(&exe)
            .arg(&obj)
            .output()
            .expect("gcc is needed for this test");
        assert!(
            link.status.success(),
            "{}",
            String::from_utf8_lossy(&link.stderr)
        );
        let status = Command::new(&exe).status().unwrap();
        assert_eq!(status.code(), Some(42));
    }
}
