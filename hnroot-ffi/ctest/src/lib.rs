//! # hnroot-ffi-ctest
//!
//! hnroot-ffi's C ABI checked from C's side, by plain `cargo test`; it never builds anything for
//! GRUB and is never a dependency of a program.
//!
//! * `test_ffi.c` (beside this crate's `Cargo.toml`) is compiled by the build script with the
//!   `cc` crate against the committed `include/hnroot.h`, with `-Dmain=hnroot_c_test_main`, into
//!   a static library; [`run_c_program`] calls that `main` in the test's own process, where it
//!   calls hnroot-ffi's real functions (this crate links hnroot-ffi as every Rust caller does).
//!   `tests/c_program.rs` makes its images and asserts every check passed.
//! * The build script also runs `bindgen` on the committed header; `tests/header_layout.rs`
//!   compares every struct's size, alignment and field offsets, every `#define` and every
//!   result number with the Rust definitions, using [`Layout`] descriptions made by [`layout!`]
//!   for both sides.
//!
//! Nothing here knows the expected numbers: both sides are measured, then compared.

use std::ffi::{c_char, c_int, CString};

// `test_ffi.c` calls hnroot-ffi's functions: link the crate wherever this one is linked.
use hnroot_ffi as _;

extern "C" {
    /// `main` of `test_ffi.c`, renamed by the build script.
    fn hnroot_c_test_main(argc: c_int, argv: *mut *mut c_char) -> c_int;
    /// Checks that passed, counted by `test_ffi.c`.
    static hnroot_c_test_passed: c_int;
    /// Checks that failed (and setup steps that failed), counted by `test_ffi.c`.
    static hnroot_c_test_failed: c_int;
}

/// What one run of `test_ffi.c` reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CReport {
    /// `main`'s return value: 0 when nothing failed.
    pub status: i32,
    /// Checks that passed.
    pub passed: i32,
    /// Checks that failed.
    pub failed: i32,
}

/// Run `test_ffi.c`'s `main` with `args` as `argv[1..]` (`argv[0]` is `test_ffi`) and return its
/// counters. Call it once per process: the counters are the C program's globals and only grow.
pub fn run_c_program(args: &[&str]) -> CReport {
    let owned: Vec<CString> = std::iter::once("test_ffi")
        .chain(args.iter().copied())
        .map(|a| CString::new(a).expect("no NUL inside a command-line argument"))
        .collect();
    let mut argv: Vec<*mut c_char> = owned.iter().map(|a| a.as_ptr().cast_mut()).collect();
    argv.push(std::ptr::null_mut());
    let argc = c_int::try_from(owned.len()).expect("a handful of arguments");
    // SAFETY: `argv` holds `argc` NUL-terminated strings that outlive the call, then NULL, as
    // C's `main` expects; the program only reads them.
    let status = unsafe { hnroot_c_test_main(argc, argv.as_mut_ptr()) };
    // SAFETY: plain `int`s of the C program, written only while `main` ran, which has returned.
    let (passed, failed) = unsafe { (hnroot_c_test_passed, hnroot_c_test_failed) };
    CReport {
        status,
        passed,
        failed,
    }
}

/// The layout of one struct, as the compiler laid it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The type's name without its module path (`hnroot_uuid`).
    pub name: &'static str,
    /// `size_of`.
    pub size: usize,
    /// `align_of`.
    pub align: usize,
    /// Every field, in the order they were named.
    pub fields: Vec<FieldLayout>,
}

/// The layout of one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldLayout {
    /// The field's name.
    pub name: &'static str,
    /// `offset_of`.
    pub offset: usize,
    /// `size_of` its type.
    pub size: usize,
    /// `align_of` its type.
    pub align: usize,
    /// Its type's name, module paths removed (`[u8; 257]`, `hnroot_uuid`, `bool`).
    pub type_name: String,
}

/// Size, alignment and bare type name of the field that `get` projects to; only `F` matters.
pub fn field_of<T, F>(_get: fn(&T) -> &F) -> (usize, usize, String) {
    (
        std::mem::size_of::<F>(),
        std::mem::align_of::<F>(),
        bare_type_name(std::any::type_name::<F>()),
    )
}

/// A type name without module paths: `[a::b::hnroot_uuid; 4]` is `[hnroot_uuid; 4]`.
pub fn bare_type_name(name: &str) -> String {
    let mut out = String::new();
    let mut word = String::new();
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
        } else if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            word.clear();
        } else {
            out.push_str(&word);
            word.clear();
            out.push(c);
        }
    }
    out.push_str(&word);
    out
}

/// The [`Layout`] of struct `$module::$ty` with the fields named. The list must name every
/// field: an exhaustive pattern over the type stops the build when one is left out, so a field
/// added later cannot go unchecked.
#[macro_export]
macro_rules! layout {
    ($module:ident :: $ty:ident { $($field:ident),+ $(,)? }) => {{
        #[allow(dead_code)]
        fn every_field_is_named(value: &$module::$ty) {
            let $module::$ty { $($field: _),+ } = value;
        }
        $crate::Layout {
            name: stringify!($ty),
            size: ::std::mem::size_of::<$module::$ty>(),
            align: ::std::mem::align_of::<$module::$ty>(),
            fields: vec![$({
                let (size, align, type_name) = $crate::field_of(|v: &$module::$ty| &v.$field);
                $crate::FieldLayout {
                    name: stringify!($field),
                    offset: ::std::mem::offset_of!($module::$ty, $field),
                    size,
                    align,
                    type_name,
                }
            }),+],
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_type_names_lose_their_module_paths_only() {
        assert_eq!(bare_type_name("u8"), "u8");
        assert_eq!(
            bare_type_name("[header_layout::c::hnroot_uuid; 4]"),
            "[hnroot_uuid; 4]"
        );
        assert_eq!(bare_type_name("hnroot_ffi::hnroot_uuid"), "hnroot_uuid");
        assert_eq!(bare_type_name("[u64; 128]"), "[u64; 128]");
    }

    mod two {
        #[allow(dead_code)]
        #[repr(C)]
        pub struct pair {
            pub a: u8,
            pub b: u32,
        }
    }

    #[test]
    fn a_layout_measures_the_type() {
        let l = layout!(two::pair { a, b });
        assert_eq!((l.name, l.size, l.align), ("pair", 8, 4));
        let fields: Vec<_> = l
            .fields
            .iter()
            .map(|f| (f.name, f.offset, f.size, f.align, f.type_name.as_str()))
            .collect();
        assert_eq!(fields, [("a", 0, 1, 1, "u8"), ("b", 4, 4, 4, "u32")]);
    }
}
