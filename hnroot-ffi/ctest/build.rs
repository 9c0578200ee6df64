//! Builds the C side of hnroot-ffi's ABI checks, for this test-only crate (never for GRUB):
//!
//! * `test_ffi.c`, compiled by `cc` against the committed `../include/hnroot.h` with the strict
//!   warnings the C test has always had and `-Dmain=hnroot_c_test_main`, into the static library
//!   `hnroot_c_test` that this crate links;
//! * `hnroot_h.rs`, `bindgen`'s Rust for that header, and `header_tables.rs`: its structs (as
//!   `layout!` calls naming every field bindgen saw), `#define`s and result numbers;
//! * `rust_tables.rs`: every `pub const HNROOT_*` and `hnroot_result` variant found in
//!   `../src`, valued by the compiled hnroot-ffi.
//!
//! bindgen loads libclang at run time. When it cannot, the build still succeeds without the
//! bindings (no `hnroot_ffi_bindgen` cfg) and says why in `HNROOT_FFI_CTEST_NO_LIBCLANG`, for
//! `tests/header_layout.rs` to skip or fail on; the script then runs again at every build until
//! libclang is there. A header bindgen cannot read fails the build.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bindgen::callbacks::{
    DeriveInfo, EnumVariantValue, FieldAttributeInfo, IntKind, ParseCallbacks, TypeKind,
};

fn main() {
    let crate_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env("OUT_DIR"));
    let ffi_dir = crate_dir
        .parent()
        .expect("hnroot-ffi/ctest lies inside hnroot-ffi")
        .to_path_buf();
    let include = ffi_dir.join("include");
    let header = include.join("hnroot.h");
    let program = crate_dir.join("test_ffi.c");
    let sources = ffi_dir.join("src");
    for path in [&header, &program, &sources] {
        println!("cargo::rerun-if-changed={}", path.display());
    }
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(hnroot_ffi_bindgen)");

    compile_c_program(&program, &include);
    write(&out_dir.join("rust_tables.rs"), &rust_tables(&sources));
    match bind_header(&header) {
        Ok((bindings, tables)) => {
            write(&out_dir.join("hnroot_h.rs"), &bindings);
            write(&out_dir.join("header_tables.rs"), &tables);
            println!("cargo::rustc-cfg=hnroot_ffi_bindgen");
        }
        Err(no_libclang) => {
            let why = no_libclang.replace(['\n', '\r'], " ");
            println!("cargo::rustc-env=HNROOT_FFI_CTEST_NO_LIBCLANG={why}");
            println!("cargo::warning=hnroot.h's layout check is not built: {why}");
            // A path that never exists: Cargo runs this script again at every build, so
            // installing libclang is noticed without a `cargo clean`.
            println!(
                "cargo::rerun-if-changed={}",
                out_dir.join("libclang-was-missing").display()
            );
        }
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("Cargo sets {name} for build scripts"))
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// `test_ffi.c` as the static library `hnroot_c_test` (Cargo is told to link it), its `main`
/// renamed so a Rust test can call it. Warnings are errors, as for every C file of hnroot.
fn compile_c_program(program: &Path, include: &Path) {
    let mut build = cc::Build::new();
    build.file(program).include(include).opt_level(1);
    for flag in [
        "-std=c11",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-Wmissing-prototypes",
        "-Wstrict-prototypes",
    ] {
        build.flag(flag);
    }
    build.define("main", "hnroot_c_test_main");
    build.compile("hnroot_c_test");
}

/// What bindgen saw while translating the header, recorded through its callbacks.
#[derive(Debug, Default)]
struct Seen {
    /// Struct names, in the header's order.
    structs: Vec<String>,
    /// (struct, field), in the header's order.
    fields: Vec<(String, String)>,
    /// Integer `#define`s.
    defines: Vec<(String, i64)>,
    /// String `#define`s, without their NUL.
    strings: Vec<(String, Vec<u8>)>,
    /// (enum, variant, value).
    variants: Vec<(String, String, i128)>,
}

#[derive(Debug)]
struct Recorder(Arc<Mutex<Seen>>);

impl Recorder {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn ours(name: &str) -> bool {
    name.starts_with("HNROOT_") || name.starts_with("hnroot_")
}

impl ParseCallbacks for Recorder {
    fn int_macro(&self, name: &str, value: i64) -> Option<IntKind> {
        if ours(name) {
            self.seen().defines.push((name.to_owned(), value));
        }
        None
    }

    fn str_macro(&self, name: &str, value: &[u8]) {
        if ours(name) {
            self.seen().strings.push((name.to_owned(), value.to_vec()));
        }
    }

    fn enum_variant_name(
        &self,
        enum_name: Option<&str>,
        variant: &str,
        value: EnumVariantValue,
    ) -> Option<String> {
        let value = match value {
            EnumVariantValue::Boolean(b) => i128::from(b),
            EnumVariantValue::Signed(v) => i128::from(v),
            EnumVariantValue::Unsigned(v) => i128::from(v),
        };
        let name = enum_name
            .unwrap_or("")
            .trim_start_matches("enum ")
            .to_owned();
        self.seen().variants.push((name, variant.to_owned(), value));
        None
    }

    fn add_derives(&self, info: &DeriveInfo<'_>) -> Vec<String> {
        if info.kind == TypeKind::Struct {
            self.seen().structs.push(info.name.to_owned());
        }
        Vec::new()
    }

    fn field_attributes(&self, info: &FieldAttributeInfo<'_>) -> Vec<String> {
        if info.type_kind == TypeKind::Struct {
            self.seen()
                .fields
                .push((info.type_name.to_owned(), info.field_name.to_owned()));
        }
        Vec::new()
    }
}

/// bindgen's Rust for `header` and the tables of what it held; `Err` with the reason when
/// libclang could not be loaded. Any other failure stops the build.
fn bind_header(header: &Path) -> Result<(String, String), String> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let builder = bindgen::Builder::default()
        .header(header.display().to_string())
        .clang_arg("-std=c11")
        .allowlist_type("hnroot_.*")
        .allowlist_var("HNROOT_.*")
        .use_core()
        .generate_comments(false)
        .formatter(bindgen::Formatter::None)
        .parse_callbacks(Box::new(Recorder(Arc::clone(&seen))))
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    // bindgen panics when it cannot load libclang; that is the one failure that is not the
    // header's fault.
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let generated =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || builder.generate()));
    std::panic::set_hook(previous_hook);
    let bindings = match generated {
        Ok(Ok(bindings)) => bindings,
        Ok(Err(e)) => panic!(
            "bindgen could not translate {}: {e} (a libclang without its own headers such as \
             stddef.h comes from an incomplete install: `apt-get install libclang-dev`)",
            header.display()
        ),
        Err(payload) => {
            let text = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            if text.contains("libclang") {
                return Err(format!("bindgen found no libclang ({text})"));
            }
            panic!("bindgen panicked reading {}: {text}", header.display());
        }
    };
    let seen = std::mem::take(&mut *seen.lock().unwrap_or_else(|e| e.into_inner()));
    Ok((bindings.to_string(), header_tables(&seen)))
}

/// Each struct bindgen saw (once, in the header's order) with its fields in order.
fn struct_fields(seen: &Seen) -> Vec<(&str, Vec<&str>)> {
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for name in &seen.structs {
        if !done.insert(name) {
            continue;
        }
        let mut fields: Vec<&str> = Vec::new();
        for (owner, field) in &seen.fields {
            if owner == name && !fields.contains(&field.as_str()) {
                fields.push(field);
            }
        }
        assert!(
            !fields.is_empty(),
            "bindgen reported struct {name} of hnroot.h without fields"
        );
        out.push((name.as_str(), fields));
    }
    out
}

/// `header_tables.rs`, to be included where the bindings are the module `c`.
fn header_tables(seen: &Seen) -> String {
    let mut out = String::from(
        "/// Every struct of hnroot.h, laid out by rustc from bindgen's translation (the layout \
         C compilers give it), each with every field bindgen saw.\n\
         pub fn header_structs() -> Vec<hnroot_ffi_ctest::Layout> {\n    vec![\n",
    );
    let structs = struct_fields(seen);
    for (name, fields) in &structs {
        let _ = writeln!(
            out,
            "        hnroot_ffi_ctest::layout!(c::{name} {{ {} }}),",
            fields.join(", ")
        );
    }
    out.push_str("    ]\n}\n\n");
    // The same structs as hnroot-ffi defines them, named with the header's fields: `layout!`'s
    // exhaustive pattern stops the build when the Rust struct has a field the header lacks or
    // lacks one the header has.
    out.push_str(
        "/// Every struct of hnroot.h as hnroot-ffi defines it, laid out by rustc.\n\
         pub fn rust_structs() -> Vec<hnroot_ffi_ctest::Layout> {\n    vec![\n",
    );
    for (name, fields) in &structs {
        let _ = writeln!(
            out,
            "        hnroot_ffi_ctest::layout!(hnroot_ffi::{name} {{ {} }}),",
            fields.join(", ")
        );
    }
    out.push_str("    ]\n}\n\n");
    out.push_str("/// Every integer `#define` of hnroot.h, as bindgen evaluated it.\n");
    out.push_str("pub const HEADER_DEFINES: &[(&str, i128)] = &[\n");
    for (name, value) in &seen.defines {
        let _ = writeln!(out, "    ({name:?}, {value}),");
    }
    out.push_str("];\n\n/// Every string `#define` of hnroot.h, without its NUL.\n");
    out.push_str("pub const HEADER_STRINGS: &[(&str, &[u8])] = &[\n");
    for (name, value) in &seen.strings {
        let _ = writeln!(out, "    ({name:?}, &{value:?}),");
    }
    out.push_str("];\n\n/// Every enumerator of `enum hnroot_result` in hnroot.h.\n");
    out.push_str("pub const HEADER_RESULTS: &[(&str, i128)] = &[\n");
    for (owner, variant, value) in &seen.variants {
        if owner == "hnroot_result" {
            let _ = writeln!(out, "    ({variant:?}, {value}),");
        }
    }
    out.push_str("];\n");
    out
}

/// `rust_tables.rs`: the integer constants and result numbers hnroot-ffi defines, found by
/// reading its sources (`pub const HNROOT_*` at the start of a line, the variants of `pub enum
/// hnroot_result`) and valued by the compiled crate.
fn rust_tables(sources: &Path) -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(sources)
        .unwrap_or_else(|e| panic!("reading {}: {e}", sources.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    files.sort();
    let mut consts = Vec::new();
    let mut results = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let mut in_result_enum = false;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("pub const HNROOT_") {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                consts.push(format!("HNROOT_{name}"));
            } else if line.starts_with("pub enum hnroot_result") {
                in_result_enum = true;
            } else if in_result_enum && line.starts_with('}') {
                in_result_enum = false;
            } else if in_result_enum {
                let item = line.trim();
                if let Some((name, _)) = item.split_once('=') {
                    if item.starts_with("HNROOT_RESULT_") {
                        results.push(name.trim().to_owned());
                    }
                }
            }
        }
    }
    assert!(
        !consts.is_empty() && !results.is_empty(),
        "found no `pub const HNROOT_*` or no hnroot_result variant in {}: the scan no longer \
         recognises hnroot-ffi's sources",
        sources.display()
    );
    let mut out = String::from(
        "/// Every `pub const HNROOT_*` of hnroot-ffi, with its value.\n\
         pub const RUST_DEFINES: &[(&str, i128)] = &[\n",
    );
    for name in consts {
        let _ = writeln!(out, "    ({name:?}, hnroot_ffi::{name} as i128),");
    }
    out.push_str(
        "];\n\n/// Every variant of hnroot-ffi's `hnroot_result`, with its number.\n\
         pub const RUST_RESULTS: &[(&str, i128)] = &[\n",
    );
    for name in results {
        let _ = writeln!(
            out,
            "    ({name:?}, hnroot_ffi::hnroot_result::{name} as i128),"
        );
    }
    out.push_str("];\n");
    out
}
