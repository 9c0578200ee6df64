//! Which of several devices that answer to the same name (`LABEL=hostpart`, `LABEL=EFI-BOOT`)
//! to use. GRUB and the initramfs both ask here, so they never pick differently. The rule, in
//! order:
//!
//! 1. exactly one candidate: that one;
//! 2. exactly one carries the pin (the `PARTUUID` GRUB put on the kernel command line): that
//!    one;
//! 3. exactly one (of the pinned ones, if several are pinned) lies on the boot disk (the disk
//!    GRUB was started from; in the initramfs, the disk of the ESP GRUB named): that one, as
//!    systemd-gpt-auto-generator keeps to the boot loader's disk;
//! 4. otherwise a refusal that names every candidate: hnroot never guesses.

use core::fmt;

/// Most candidates a choice considers; a driver that finds more reports [`Choice::TooMany`].
pub const MAX_CANDIDATES: usize = 16;

/// What a driver knows about one device that matched.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Candidate {
    /// It carries the pin.
    pub pinned: bool,
    /// It lies on the boot disk.
    pub on_boot_disk: bool,
}

/// How the candidate was chosen.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ChosenBy {
    /// It was the only one.
    Only,
    /// It carries the pin.
    Pin,
    /// It lies on the boot disk.
    BootDisk,
}

/// The choice.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Choice {
    /// Use candidate `index`.
    Chosen {
        /// Index into the candidates as given.
        index: usize,
        /// Why.
        by: ChosenBy,
    },
    /// No candidate at all.
    NoneFound,
    /// Several, and no rule picks exactly one.
    Ambiguous {
        /// Candidates in all.
        count: usize,
        /// How many carry the pin.
        pinned: usize,
        /// How many of those considered (the pinned ones, or all) lie on the boot disk.
        on_boot_disk: usize,
    },
    /// More than [`MAX_CANDIDATES`] matched.
    TooMany {
        /// How many matched.
        count: usize,
    },
}

impl Choice {
    /// A stable name for logs and tests.
    pub const fn code(&self) -> &'static str {
        match self {
            Choice::Chosen {
                by: ChosenBy::Only, ..
            } => "only",
            Choice::Chosen {
                by: ChosenBy::Pin, ..
            } => "pin",
            Choice::Chosen {
                by: ChosenBy::BootDisk,
                ..
            } => "boot-disk",
            Choice::NoneFound => "none",
            Choice::Ambiguous { .. } => "ambiguous",
            Choice::TooMany { .. } => "too-many",
        }
    }
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Choice::Chosen {
                by: ChosenBy::Only, ..
            } => f.write_str("the only one"),
            Choice::Chosen {
                by: ChosenBy::Pin, ..
            } => f.write_str("the one with the PARTUUID the boot loader passed"),
            Choice::Chosen {
                by: ChosenBy::BootDisk,
                ..
            } => f.write_str("the one on the disk the boot loader started from"),
            Choice::NoneFound => f.write_str("none found"),
            Choice::Ambiguous {
                count,
                pinned,
                on_boot_disk,
            } => write!(
                f,
                "{count} candidates, {pinned} with the PARTUUID pin, {on_boot_disk} of those \
                 considered on the boot disk: refusing to guess (relabel all but one, or name \
                 the device)"
            ),
            Choice::TooMany { count } => write!(
                f,
                "{count} candidates, more than the {MAX_CANDIDATES} hnroot compares: refusing to \
                 guess (name the device)"
            ),
        }
    }
}

/// Choose among `candidates` (at most [`MAX_CANDIDATES`]; `count` is how many matched in all,
/// which may be more than were kept).
pub fn choose(candidates: &[Candidate], count: usize) -> Choice {
    if count > MAX_CANDIDATES || candidates.len() > MAX_CANDIDATES || candidates.len() < count {
        return Choice::TooMany { count };
    }
    match candidates {
        [] => return Choice::NoneFound,
        [_] => {
            return Choice::Chosen {
                index: 0,
                by: ChosenBy::Only,
            }
        }
        _ => {}
    }
    let pinned = candidates.iter().filter(|c| c.pinned).count();
    if pinned == 1 {
        if let Some(index) = candidates.iter().position(|c| c.pinned) {
            return Choice::Chosen {
                index,
                by: ChosenBy::Pin,
            };
        }
    }
    // Among the pinned ones when there are several (a cloned disk), else among all.
    let considered = |c: &&Candidate| pinned == 0 || c.pinned;
    let on_boot_disk = candidates
        .iter()
        .filter(considered)
        .filter(|c| c.on_boot_disk)
        .count();
    if on_boot_disk == 1 {
        if let Some(index) = candidates
            .iter()
            .position(|c| (pinned == 0 || c.pinned) && c.on_boot_disk)
        {
            return Choice::Chosen {
                index,
                by: ChosenBy::BootDisk,
            };
        }
    }
    Choice::Ambiguous {
        count: candidates.len(),
        pinned,
        on_boot_disk,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: Candidate = Candidate {
        pinned: false,
        on_boot_disk: false,
    };
    const BOOT: Candidate = Candidate {
        pinned: false,
        on_boot_disk: true,
    };
    const PIN: Candidate = Candidate {
        pinned: true,
        on_boot_disk: false,
    };
    const PIN_BOOT: Candidate = Candidate {
        pinned: true,
        on_boot_disk: true,
    };

    fn chosen(c: Choice) -> Option<(usize, ChosenBy)> {
        match c {
            Choice::Chosen { index, by } => Some((index, by)),
            _ => None,
        }
    }

    #[test]
    fn the_rules_in_order() {
        assert_eq!(choose(&[], 0), Choice::NoneFound);
        assert_eq!(chosen(choose(&[PLAIN], 1)), Some((0, ChosenBy::Only)));
        assert_eq!(chosen(choose(&[PLAIN, PIN], 2)), Some((1, ChosenBy::Pin)));
        assert_eq!(chosen(choose(&[BOOT, PIN], 2)), Some((1, ChosenBy::Pin)));
        assert_eq!(
            chosen(choose(&[PLAIN, BOOT], 2)),
            Some((1, ChosenBy::BootDisk))
        );
        assert_eq!(
            chosen(choose(&[PIN, PIN_BOOT, BOOT], 3)),
            Some((1, ChosenBy::BootDisk)),
            "two pinned (a cloned disk): the boot disk decides among them"
        );
        assert_eq!(
            choose(&[BOOT, BOOT], 2),
            Choice::Ambiguous {
                count: 2,
                pinned: 0,
                on_boot_disk: 2
            }
        );
        assert_eq!(choose(&[PLAIN, PLAIN], 2).code(), "ambiguous");
        assert_eq!(choose(&[PIN, PIN], 2).code(), "ambiguous");
        assert_eq!(choose(&[PLAIN; 2], 17), Choice::TooMany { count: 17 });
        assert_eq!(choose(&[PLAIN; 2], 3).code(), "too-many");
    }

    #[test]
    fn the_choice_does_not_depend_on_order() {
        let sets: [&[Candidate]; 4] = [
            &[PLAIN, PIN, BOOT],
            &[BOOT, PLAIN, PLAIN],
            &[PIN_BOOT, PIN, BOOT],
            &[PLAIN, BOOT, BOOT],
        ];
        for set in sets {
            let mut rev: std::vec::Vec<Candidate> = set.to_vec();
            rev.reverse();
            let a = choose(set, set.len());
            let b = choose(&rev, rev.len());
            match (a, b) {
                (Choice::Chosen { index: i, by: x }, Choice::Chosen { index: j, by: y }) => {
                    assert_eq!(set[i], rev[j]);
                    assert_eq!(x, y);
                }
                (a, b) => assert_eq!(a.code(), b.code()),
            }
        }
    }
}
