//! The committed `hnroot.h`, turned back into Rust by bindgen (in the build script), against
//! hnroot-ffi's Rust definitions: every struct's size, alignment and field offsets, sizes and
//! types; every `#define` that has a Rust constant; every result number. A `repr` slip, a field
//! moved or retyped on either side, or a header not regenerated after a change fails here.
//! (A field that exists on one side only does not even build: see `layout!`.)

#[cfg(hnroot_ffi_bindgen)]
mod with_bindgen {
    #[allow(
        non_camel_case_types,
        non_upper_case_globals,
        non_snake_case,
        dead_code,
        clippy::all,
        clippy::pedantic
    )]
    mod c {
        include!(concat!(env!("OUT_DIR"), "/hnroot_h.rs"));
    }
    include!(concat!(env!("OUT_DIR"), "/header_tables.rs"));
    include!(concat!(env!("OUT_DIR"), "/rust_tables.rs"));

    use hnroot_ffi_ctest::Layout;

    /// bindgen names C's fixed-width integers as Rust's; `bool` stays `bool`.
    fn c_type(name: &str) -> String {
        name.replace("c_uchar", "u8")
            .replace("c_char", "i8")
            .replace("c_uint", "u32")
            .replace("c_int", "i32")
    }

    #[test]
    fn every_struct_of_the_header_is_laid_out_as_in_rust() {
        let header = header_structs();
        let rust = rust_structs();
        // hnroot-ffi's own count of `#[repr(C)] pub struct hnroot_*`: the header has them all.
        assert!(
            header.len() >= 13,
            "bindgen saw only {} structs in hnroot.h: {:?}",
            header.len(),
            header.iter().map(|l| l.name).collect::<Vec<_>>()
        );
        for (h, r) in header.iter().zip(&rust) {
            let show = |l: &Layout| format!("{l:#?}");
            assert_eq!(
                (h.size, h.align),
                (r.size, r.align),
                "struct {}: size and alignment differ between hnroot.h (C) {} and hnroot-ffi \
                 (Rust) {}",
                h.name,
                show(h),
                show(r)
            );
            assert_eq!(h.fields.len(), r.fields.len(), "struct {}", h.name);
            for (hf, rf) in h.fields.iter().zip(&r.fields) {
                assert_eq!(
                    (hf.offset, hf.size, hf.align),
                    (rf.offset, rf.size, rf.align),
                    "struct {} field {}: offset, size, alignment differ (C {hf:?}, Rust {rf:?})",
                    h.name,
                    hf.name
                );
                assert_eq!(
                    c_type(&hf.type_name),
                    rf.type_name,
                    "struct {} field {}: the header's type is not the Rust type",
                    h.name,
                    hf.name
                );
            }
        }
    }

    #[test]
    fn every_rust_constant_is_in_the_header_with_its_value() {
        assert!(!RUST_DEFINES.is_empty());
        for (name, value) in RUST_DEFINES {
            let header = HEADER_DEFINES.iter().find(|(n, _)| n == name);
            assert_eq!(
                header.map(|(_, v)| *v),
                Some(*value),
                "{name}: hnroot-ffi says {value}, hnroot.h says {header:?} \
                 (regenerate it: `cargo xtask header`)"
            );
        }
    }

    #[test]
    fn every_result_has_the_same_number_on_both_sides() {
        let mut rust: Vec<(&str, i128)> = RUST_RESULTS.to_vec();
        let mut header: Vec<(&str, i128)> = HEADER_RESULTS.to_vec();
        rust.sort();
        header.sort();
        assert!(rust.len() >= 10, "{rust:?}");
        assert_eq!(
            header, rust,
            "enum hnroot_result in hnroot.h and in hnroot-ffi differ (regenerate the header: \
             `cargo xtask header`)"
        );
    }

    #[test]
    fn the_string_defines_are_the_cores_layout_names() {
        // Every string constant the header exports is one of the core's layout names, spelt
        // there once (hnroot_core::layout), NUL-terminated in C.
        assert!(!HEADER_STRINGS.is_empty());
        for (name, bytes) in HEADER_STRINGS {
            let text = std::str::from_utf8(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                !text.is_empty() && !text.contains('\0'),
                "{name} = {text:?} in hnroot.h"
            );
        }
    }
}

/// Without libclang the layout check cannot be built: a plain `cargo test` says so and passes
/// this one test; `cargo xtask test` (HNROOT_REQUIRE_BINDGEN) fails.
#[cfg(not(hnroot_ffi_bindgen))]
#[test]
fn the_layout_check_needs_libclang() {
    let why = option_env!("HNROOT_FFI_CTEST_NO_LIBCLANG").unwrap_or("no reason recorded");
    assert!(
        std::env::var_os("HNROOT_REQUIRE_BINDGEN").is_none(),
        "hnroot.h's layout check was not built: {why} (`apt-get install libclang-dev`, or \
         `cargo xtask deps`)"
    );
    eprintln!("SKIPPED: hnroot.h's layout check was not built: {why}; `cargo xtask deps` installs libclang-dev");
}
