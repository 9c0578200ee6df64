//! The core's vocabularies, each written once: a set of stable codes is one enum with one
//! number and one word per value (`stable_codes!`), a set of notes is one bitflags type with
//! one word and one sentence per flag (`notes!`). Every codec maps the same enum: the history
//! file stores the number, the FFI hands the number to C, the kernel command line, JSON and the
//! logs carry the word. A retired number stays in the enum's documentation and is never reused.

/// An enum of stable codes: `Variant = number => "word"`. Generates the enum (`#[repr(u8)]`),
/// `ALL`, `number`, `from_number`, `code`, `from_code`, `c_code` (the word as a static C string,
/// for the FFI) and a `Display` that writes the word.
macro_rules! stable_codes {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $number:literal => $code:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
        #[repr(u8)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant = $number, )+
        }

        impl $name {
            /// Every value, in number order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable number (the history file, the FFI).
            pub const fn number(self) -> u8 {
                self as u8
            }

            /// The value with this stable number.
            pub const fn from_number(number: u8) -> Option<$name> {
                match number {
                    $( $number => Some($name::$variant), )+
                    _ => None,
                }
            }

            /// The stable word (logs, JSON, the kernel command line).
            pub const fn code(self) -> &'static str {
                match self {
                    $( $name::$variant => $code, )+
                }
            }

            /// The value with this stable word.
            pub fn from_code(code: &str) -> Option<$name> {
                match code {
                    $( $code => Some($name::$variant), )+
                    _ => None,
                }
            }

            /// The stable word as a static NUL-terminated string.
            pub const fn c_code(self) -> &'static core::ffi::CStr {
                match self {
                    $( $name::$variant => $crate::codes::c_str(concat!($code, "\0")), )+
                }
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.code())
            }
        }
    };
}
pub(crate) use stable_codes;

/// A bitflags type of notes: `const FLAG = bit => ("word", "sentence");`. Generates the flags,
/// `codes` and `sentences` (in declaration order) and a `Display` that joins the sentences
/// with `; `.
macro_rules! notes {
    (
        $(#[$($meta:tt)*])*
        $vis:vis struct $name:ident: u32 {
            $( $(#[$($fmeta:tt)*])* const $flag:ident = $bit:expr => ($code:literal, $sentence:literal); )+
        }
    ) => {
        bitflags::bitflags! {
            $(#[$($meta)*])*
            #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
            $vis struct $name: u32 {
                $( $(#[$($fmeta)*])* const $flag = $bit; )+
            }
        }

        impl $name {
            /// Each note with its stable word and its sentence.
            const TABLE: &'static [($name, &'static str, &'static str)] =
                &[$( ($name::$flag, $code, $sentence), )+];

            /// The stable words of the notes set, in a fixed order.
            pub fn codes(self) -> impl Iterator<Item = &'static str> {
                Self::TABLE
                    .iter()
                    .filter(move |(flag, _, _)| self.contains(*flag))
                    .map(|(_, code, _)| *code)
            }

            /// The sentences of the notes set, in the same order.
            pub fn sentences(self) -> impl Iterator<Item = &'static str> {
                Self::TABLE
                    .iter()
                    .filter(move |(flag, _, _)| self.contains(*flag))
                    .map(|(_, _, text)| *text)
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                for (i, text) in self.sentences().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    f.write_str(text)?;
                }
                Ok(())
            }
        }
    };
}
pub(crate) use notes;

/// A static C string from a literal that ends in its only NUL (what `stable_codes!` builds
/// with `concat!`); the empty string if it does not, which no literal of the macro does.
pub const fn c_str(with_nul: &'static str) -> &'static core::ffi::CStr {
    match core::ffi::CStr::from_bytes_with_nul(with_nul.as_bytes()) {
        Ok(c) => c,
        Err(_) => c"",
    }
}

/// Codes separated by commas, `-` when there are none (the `notes=` of a record line).
pub(crate) fn write_codes<'a>(
    f: &mut core::fmt::Formatter<'_>,
    codes: impl Iterator<Item = &'a str>,
) -> core::fmt::Result {
    let mut any = false;
    for code in codes {
        f.write_str(if any { "," } else { "" })?;
        f.write_str(code)?;
        any = true;
    }
    if !any {
        f.write_str("-")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    stable_codes! {
        /// A vocabulary for the test.
        enum Fruit {
            /// One.
            Apple = 1 => "apple",
            /// Two.
            BloodOrange = 7 => "blood-orange",
        }
    }

    notes! {
        /// Notes for the test.
        struct Seen: u32 {
            /// A.
            const A = 1 << 0 => ("a", "saw a");
            /// B.
            const B = 1 << 3 => ("b", "saw b");
        }
    }

    #[test]
    fn a_code_has_one_number_and_one_word_both_ways() {
        for &f in Fruit::ALL {
            assert_eq!(Fruit::from_number(f.number()), Some(f));
            assert_eq!(Fruit::from_code(f.code()), Some(f));
            assert_eq!(f.c_code().to_str().unwrap(), f.code());
        }
        assert_eq!(Fruit::BloodOrange.number(), 7);
        assert_eq!(Fruit::from_number(2), None);
        assert_eq!(Fruit::from_code("pear"), None);
        assert_eq!(std::format!("{}", Fruit::BloodOrange), "blood-orange");
    }

    #[test]
    fn notes_give_words_and_sentences_in_declaration_order() {
        let both = Seen::B | Seen::A;
        assert_eq!(both.codes().collect::<std::vec::Vec<_>>(), ["a", "b"]);
        assert_eq!(std::format!("{both}"), "saw a; saw b");
        assert_eq!(std::format!("{}", Seen::empty()), "");
    }
}
