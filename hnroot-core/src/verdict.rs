//! Is this image file bootable? The one verdict GRUB, the initramfs, `hnroot status`/`explain`
//! and `hnroot stage` all apply, from the facts each of them reads: what the directory entry
//! is, how long the file is, what the filesystem prober found in it, and whether the image's
//! own kernel and initramfs could be opened. Nothing here reads anything.
//!
//! The facts are gathered in order and a driver may stop as soon as one refuses: a missing
//! entry needs no open, a file without a filesystem needs no look for a kernel.
//! [`needs_boot_files`] tells a driver whether to look at the boot files at all.
//!
//! An image name may be a regular file, a hard link, or a symbolic link that resolves to a
//! regular file inside hostpart (as GRUB's filesystem drivers resolve it: relative to the top
//! directory, absolute targets from hostpart's root, never out of it). A directory is refused
//! (`not-a-file`); so is anything else that does not open as a regular file (`unopenable`: a
//! device node, FIFO or socket, a link that leads nowhere, out of hostpart, to a directory or
//! to a special file), as one fact, because GRUB cannot tell these apart. A file counts only when
//! the prober finds exactly one filesystem of a type the kernel can mount as root and GRUB can
//! read (ext2/3/4, XFS, btrfs), with a UUID, that fits in the file (a copy cut short is
//! refused even when its superblock is intact), holding [`layout::KERNEL_PATH`] and
//! [`layout::INITRAMFS_PATH`], each a regular file of at least one byte ([`boot_file`]: the one
//! rule for boot files, applied by GRUB, the initramfs, `hnroot stage`, `hnroot status` and
//! `hnroot image build` alike).
//!
//! [`layout::KERNEL_PATH`]: crate::layout::KERNEL_PATH
//! [`layout::INITRAMFS_PATH`]: crate::layout::INITRAMFS_PATH

use core::fmt;

use crate::observe::ImageSeen;
use crate::probe::ext::ExtFeatures;
use crate::probe::{FsOutcome, FsType, FsTypes, OtherType};
use crate::seal::{SealProblem, SealSeen};
use crate::uuid::FsUuid;

/// What the directory says about an image name, and what opening it as a regular file (a
/// symbolic link resolved the way GRUB resolves it) gives. Only what every driver can tell:
/// GRUB's listing says whether the name itself is a directory, and its open either gives a
/// regular file or fails, without saying why in a way that holds across its filesystem drivers.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Entry {
    /// No such name.
    Absent,
    /// A regular file (possibly reached through a symbolic link) of this many bytes.
    File {
        /// Its length in bytes.
        length: u64,
    },
    /// The name itself is a directory (a link to a directory is [`Entry::Unopenable`]).
    Directory,
    /// The name is there and is not a directory, but it does not open as a regular file inside
    /// hostpart: a device node, FIFO or socket; a link that does not lead to a regular file
    /// inside hostpart (dangling, looping, leaving hostpart, leading to a directory or to a
    /// special file); an open that failed. One fact, because GRUB's drivers cannot tell these
    /// apart: ext2/3/4's and XFS's skip entries of other types when they look a name up ("file
    /// not found", as for a link that leads nowhere), btrfs's says "not a regular file", as
    /// every driver does for a link to a directory.
    Unopenable,
}

/// What the filesystem prober made of the file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Probe<'a> {
    /// Not run (an earlier fact refused the file).
    NotRun,
    /// The file could not be read.
    ReadError,
    /// The prober's answer.
    Done(&'a FsOutcome),
}

/// What a driver saw at one boot file's path inside an image (or the tree an image is built
/// from), symbolic links followed as the boot follows them (inside the image).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum BootFileSeen {
    /// Nothing there (or a link that leads nowhere inside the image).
    Absent,
    /// A regular file of this many bytes.
    File {
        /// Its length in bytes.
        length: u64,
    },
    /// A directory.
    Directory,
    /// A device node, FIFO or socket.
    Special,
    /// Symbolic links that loop, or nest deeper than the reader follows.
    LinkLoop,
    /// The filesystem could not be read there.
    ReadError,
}

/// Why one boot file is not one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum BootFileProblem {
    /// Nothing there (or a link that leads nowhere; GRUB cannot tell the other cases apart
    /// from this one and reports them all as missing).
    Absent,
    /// A regular file with no bytes: nothing to boot.
    Empty,
    /// A directory.
    Directory,
    /// A device node, FIFO or socket.
    Special,
    /// Symbolic links that loop or nest too deep.
    LinkLoop,
}

impl fmt::Display for BootFileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BootFileProblem::Absent => "is missing",
            BootFileProblem::Empty => "is an empty file (0 bytes)",
            BootFileProblem::Directory => "is a directory, not a file",
            BootFileProblem::Special => "is a device node, FIFO or socket, not a file",
            BootFileProblem::LinkLoop => {
                "is a symbolic link that loops (or nests too deeply to follow)"
            }
        })
    }
}

/// The verdict on one boot file.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum BootFile {
    /// A regular file with bytes in it.
    Usable,
    /// Not a boot file, and why.
    Missing(BootFileProblem),
    /// The filesystem could not be read far enough to tell.
    Unreadable,
}

/// The rule for one boot file (`boot/kernel`, `boot/initramfs`, or the tree's kernel an image
/// is built with): a regular file of at least one byte.
pub const fn boot_file(seen: BootFileSeen) -> BootFile {
    match seen {
        BootFileSeen::File { length: 0 } => BootFile::Missing(BootFileProblem::Empty),
        BootFileSeen::File { .. } => BootFile::Usable,
        BootFileSeen::Absent => BootFile::Missing(BootFileProblem::Absent),
        BootFileSeen::Directory => BootFile::Missing(BootFileProblem::Directory),
        BootFileSeen::Special => BootFile::Missing(BootFileProblem::Special),
        BootFileSeen::LinkLoop => BootFile::Missing(BootFileProblem::LinkLoop),
        BootFileSeen::ReadError => BootFile::Unreadable,
    }
}

/// Which boot files are missing, and why (at least one is).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum MissingBootFiles {
    /// `boot/kernel` (the initramfs is there).
    Kernel(BootFileProblem),
    /// `boot/initramfs` (the kernel is there).
    Initramfs(BootFileProblem),
    /// Both.
    Both {
        /// Why not `boot/kernel`.
        kernel: BootFileProblem,
        /// Why not `boot/initramfs`.
        initramfs: BootFileProblem,
    },
}

impl MissingBootFiles {
    /// Whether `boot/kernel` is among them.
    pub const fn kernel(&self) -> bool {
        matches!(
            self,
            MissingBootFiles::Kernel(_) | MissingBootFiles::Both { .. }
        )
    }

    /// Whether `boot/initramfs` is among them.
    pub const fn initramfs(&self) -> bool {
        matches!(
            self,
            MissingBootFiles::Initramfs(_) | MissingBootFiles::Both { .. }
        )
    }
}

impl fmt::Display for MissingBootFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let one = |f: &mut fmt::Formatter<'_>, path: &str, p: &BootFileProblem| match p {
            BootFileProblem::Absent => write!(f, "no {path}"),
            other => write!(f, "{path} {other}"),
        };
        match self {
            MissingBootFiles::Both {
                kernel: BootFileProblem::Absent,
                initramfs: BootFileProblem::Absent,
            } => f.write_str("neither boot/kernel nor boot/initramfs")?,
            MissingBootFiles::Both { kernel, initramfs } => {
                one(f, "boot/kernel", kernel)?;
                f.write_str("; ")?;
                one(f, "boot/initramfs", initramfs)?;
            }
            MissingBootFiles::Kernel(p) => one(f, "boot/kernel", p)?,
            MissingBootFiles::Initramfs(p) => one(f, "boot/initramfs", p)?,
        }
        f.write_str(" in it (every image carries its own)")
    }
}

/// Whether the image's own kernel and initramfs could be opened, through the driver the boot
/// will use (GRUB's filesystem module; on Linux a reader of that filesystem or a read-only
/// mount).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum BootFiles {
    /// Not looked at.
    NotChecked,
    /// Both are regular files with bytes in them.
    Present,
    /// One or both are not ([`boot_file`]).
    Missing(MissingBootFiles),
    /// The filesystem could not be read far enough to tell.
    Unreadable,
    /// The driver for this filesystem type is not available (GRUB: its module cannot be
    /// loaded).
    NoDriver,
    /// The driver reads the file as a different filesystem type than the prober.
    DriverDisagrees,
}

impl BootFiles {
    /// The boot files from what was seen at each path, by [`boot_file`].
    pub const fn from_seen(kernel: BootFileSeen, initramfs: BootFileSeen) -> BootFiles {
        match (boot_file(kernel), boot_file(initramfs)) {
            (BootFile::Unreadable, _) | (_, BootFile::Unreadable) => BootFiles::Unreadable,
            (BootFile::Usable, BootFile::Usable) => BootFiles::Present,
            (BootFile::Missing(k), BootFile::Usable) => {
                BootFiles::Missing(MissingBootFiles::Kernel(k))
            }
            (BootFile::Usable, BootFile::Missing(i)) => {
                BootFiles::Missing(MissingBootFiles::Initramfs(i))
            }
            (BootFile::Missing(kernel), BootFile::Missing(initramfs)) => {
                BootFiles::Missing(MissingBootFiles::Both { kernel, initramfs })
            }
        }
    }
}

/// Everything a driver found out about one image name.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ImageFacts<'a> {
    /// The directory entry.
    pub entry: Entry,
    /// The prober's answer on the file's bytes (its device size is the file's length).
    pub probe: Probe<'a>,
    /// The boot files inside.
    pub boot_files: BootFiles,
}

impl ImageFacts<'_> {
    /// Facts for a name that is not there.
    pub const ABSENT: ImageFacts<'static> = ImageFacts {
        entry: Entry::Absent,
        probe: Probe::NotRun,
        boot_files: BootFiles::NotChecked,
    };
}

/// A bootable image.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Bootable {
    /// Its filesystem UUID: its identity.
    pub uuid: FsUuid,
    /// Its filesystem type.
    pub fs_type: FsType,
    /// The file's length in bytes.
    pub length: u64,
}

/// Why an image file is refused. Each has a stable [`Refusal::code`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Refusal {
    /// The name is a directory.
    Directory,
    /// The name is there but does not open as a regular file inside hostpart (a device node,
    /// FIFO or socket, a link that does not lead to a regular file, a failed open).
    Unopenable,
    /// Reading the file failed.
    ReadError,
    /// No filesystem hnroot recognises (garbage, an empty file, a FIFO as GRUB sees it).
    NoFilesystem,
    /// Several valid superblocks: nothing can tell which one is meant.
    Ambivalent(FsTypes),
    /// A RAID, LVM or encrypted volume member.
    VolumeMember(OtherType),
    /// A filesystem the kernel does not boot as root or GRUB cannot read (FAT, a journal).
    UnsupportedFilesystem(FsType),
    /// The filesystem spans more bytes than the file holds: a copy cut short.
    Truncated {
        /// The filesystem's type.
        fs_type: FsType,
        /// Bytes the filesystem says it spans.
        fs_size: u64,
        /// Bytes the file holds.
        length: u64,
    },
    /// Its ext filesystem uses incompatible features GRUB's driver cannot read.
    GrubLacksFeatures {
        /// The filesystem's type.
        fs_type: FsType,
        /// The features.
        features: ExtFeatures,
    },
    /// No filesystem UUID, which is the image's identity.
    NoUuid(FsType),
    /// No usable `boot/kernel` or `boot/initramfs` in it.
    MissingBootFiles(MissingBootFiles),
    /// Its boot files could not be read.
    BootFilesUnreadable(FsType),
    /// The boot's driver for its filesystem type is not available.
    NoDriver(FsType),
    /// The boot's driver reads it as another filesystem.
    DriverDisagrees(FsType),
    /// The driver did not look at the boot files (a bug in the driver).
    BootFilesNotChecked,
    /// Its seal does not hold ([`crate::seal`]), or sealed images are required and it has
    /// none ([`SealProblem::Unsealed`]).
    Seal(SealProblem),
}

impl Refusal {
    /// A stable name for logs, JSON and tests.
    pub const fn code(&self) -> &'static str {
        match self {
            Refusal::Directory => "not-a-file",
            Refusal::Unopenable => "unopenable",
            Refusal::ReadError => "read-error",
            Refusal::NoFilesystem => "no-filesystem",
            Refusal::Ambivalent(_) => "ambivalent",
            Refusal::VolumeMember(_) => "volume-member",
            Refusal::UnsupportedFilesystem(_) => "unsupported-filesystem",
            Refusal::Truncated { .. } => "truncated",
            Refusal::GrubLacksFeatures { .. } => "grub-lacks-features",
            Refusal::NoUuid(_) => "no-uuid",
            Refusal::MissingBootFiles(_) => "missing-boot-files",
            Refusal::BootFilesUnreadable(_) => "boot-files-unreadable",
            Refusal::NoDriver(_) => "no-driver",
            Refusal::DriverDisagrees(_) => "driver-disagrees",
            Refusal::BootFilesNotChecked => "boot-files-not-checked",
            Refusal::Seal(p) => p.code(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Directory => f.write_str("a directory, not an image file"),
            Refusal::Unopenable => f.write_str(
                "does not open as a regular file inside hostpart (a device node, FIFO or \
                 socket, or a symbolic link that does not lead to a file inside hostpart)",
            ),
            Refusal::ReadError => f.write_str("reading it failed"),
            Refusal::NoFilesystem => f.write_str(
                "no ext2/3/4, XFS or btrfs filesystem in it (garbage, empty, or not an image)",
            ),
            Refusal::Ambivalent(types) => write!(
                f,
                "valid superblocks of {types}: ambiguous (wipefs the stale signature)"
            ),
            Refusal::VolumeMember(t) => write!(f, "a {t} volume, not a filesystem"),
            Refusal::UnsupportedFilesystem(t) => write!(
                f,
                "a {t} filesystem: root images are ext2/3/4, XFS or btrfs"
            ),
            Refusal::Truncated {
                fs_type,
                fs_size,
                length,
            } => write!(
                f,
                "truncated: its {fs_type} filesystem spans {fs_size} bytes, the file holds \
                 {length} ({} missing; an incomplete copy?)",
                fs_size.saturating_sub(*length)
            ),
            Refusal::GrubLacksFeatures { fs_type, features } => {
                write!(
                    f,
                    "its {fs_type} filesystem uses features GRUB cannot read: {features}"
                )?;
                if features.unknown_bits() != 0 {
                    write!(f, "; unknown incompat bits {:#x}", features.unknown_bits())?;
                }
                f.write_str(" (build it with hnroot image build, which turns them off)")
            }
            Refusal::NoUuid(t) => write!(
                f,
                "its {t} filesystem has no UUID, and hnroot identifies images by UUID"
            ),
            Refusal::MissingBootFiles(m) => write!(f, "{m}"),
            Refusal::BootFilesUnreadable(t) => write!(
                f,
                "its {t} filesystem cannot be read far enough to find boot/kernel"
            ),
            Refusal::NoDriver(t) => write!(f, "no driver for its {t} filesystem is available"),
            Refusal::DriverDisagrees(t) => write!(
                f,
                "the filesystem driver does not read it as the {t} filesystem the prober found"
            ),
            Refusal::BootFilesNotChecked => {
                f.write_str("its boot files were not checked (a bug in hnroot)")
            }
            Refusal::Seal(SealProblem::Unsealed) => f.write_str(
                "it is not sealed, and this loader boots sealed images only (hnroot install \
                 --require-sealed): seal it with hnroot image seal",
            ),
            Refusal::Seal(p) => write!(
                f,
                "its seal does not hold ({p}): changed after it was sealed, or sealed with a key \
                 this loader does not trust"
            ),
        }
    }
}

/// The verdict on one image name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Verdict {
    /// No such name.
    Absent,
    /// It boots.
    Bootable(Bootable),
    /// It is there but does not boot, and why.
    Refused(Refusal),
}

impl Verdict {
    /// What the decision needs.
    pub fn seen(&self) -> ImageSeen {
        match self {
            Verdict::Absent => ImageSeen::Absent,
            Verdict::Bootable(b) => ImageSeen::Bootable(b.uuid),
            Verdict::Refused(_) => ImageSeen::NotBootable,
        }
    }

    /// A stable name: `absent`, `bootable` or the refusal's code.
    pub const fn code(&self) -> &'static str {
        match self {
            Verdict::Absent => "absent",
            Verdict::Bootable(_) => "bootable",
            Verdict::Refused(r) => r.code(),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Absent => f.write_str("absent"),
            Verdict::Bootable(b) => write!(f, "{} UUID={} ({} bytes)", b.fs_type, b.uuid, b.length),
            Verdict::Refused(r) => write!(f, "not bootable: {r}"),
        }
    }
}

/// Filesystem types a root image may have: the kernel mounts them as root, GRUB reads them.
pub const fn bootable_type(t: FsType) -> bool {
    matches!(
        t,
        FsType::Ext2 | FsType::Ext3 | FsType::Ext4 | FsType::Ext4dev | FsType::Xfs | FsType::Btrfs
    )
}

/// What the file and the prober say, before the boot files are looked at.
fn judge_filesystem(length: u64, outcome: &FsOutcome) -> Result<(FsType, FsUuid), Refusal> {
    let info = match outcome {
        FsOutcome::Found(info) => info,
        FsOutcome::Unknown => return Err(Refusal::NoFilesystem),
        FsOutcome::Ambivalent(types) => return Err(Refusal::Ambivalent(*types)),
        FsOutcome::Other(other) => return Err(Refusal::VolumeMember(*other)),
    };
    let t = info.fs_type;
    if !bootable_type(t) {
        return Err(Refusal::UnsupportedFilesystem(t));
    }
    if let Some(missing) = info.missing_bytes(length) {
        return Err(Refusal::Truncated {
            fs_type: t,
            fs_size: length.saturating_add(missing),
            length,
        });
    }
    if !info.grub_lacks.is_empty() {
        return Err(Refusal::GrubLacksFeatures {
            fs_type: t,
            features: info.grub_lacks,
        });
    }
    match info.uuid {
        Some(uuid) if !uuid.is_nil() => Ok((t, uuid)),
        _ => Err(Refusal::NoUuid(t)),
    }
}

/// Whether a driver must look for the boot files: `Some(type)` (the filesystem driver to use)
/// when everything before them is fine, `None` when the verdict is already known.
pub fn needs_boot_files(entry: Entry, outcome: &FsOutcome) -> Option<FsType> {
    match entry {
        Entry::File { length } => judge_filesystem(length, outcome).ok().map(|(t, _)| t),
        _ => None,
    }
}

/// The verdict. Pure; the same facts always give the same verdict.
pub fn judge(facts: &ImageFacts<'_>) -> Verdict {
    let length = match facts.entry {
        Entry::Absent => return Verdict::Absent,
        Entry::Directory => return Verdict::Refused(Refusal::Directory),
        Entry::Unopenable => return Verdict::Refused(Refusal::Unopenable),
        Entry::File { length } => length,
    };
    let outcome = match facts.probe {
        Probe::NotRun | Probe::ReadError => return Verdict::Refused(Refusal::ReadError),
        Probe::Done(outcome) => outcome,
    };
    let (fs_type, uuid) = match judge_filesystem(length, outcome) {
        Ok(found) => found,
        Err(refusal) => return Verdict::Refused(refusal),
    };
    let refusal = match facts.boot_files {
        BootFiles::Present => {
            return Verdict::Bootable(Bootable {
                uuid,
                fs_type,
                length,
            })
        }
        BootFiles::NotChecked => Refusal::BootFilesNotChecked,
        BootFiles::Missing(m) => Refusal::MissingBootFiles(m),
        BootFiles::Unreadable => Refusal::BootFilesUnreadable(fs_type),
        BootFiles::NoDriver => Refusal::NoDriver(fs_type),
        BootFiles::DriverDisagrees => Refusal::DriverDisagrees(fs_type),
    };
    Verdict::Refused(refusal)
}

/// What a driver knows of an image's seal, for [`judge_sealed`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum SealFact {
    /// The driver does not check seals here (the verdict is the plain one).
    NotChecked,
    /// No seal block.
    Unsealed,
    /// The seal holds ([`crate::seal::judge`]).
    Sealed,
    /// The seal does not hold.
    Broken(SealProblem),
}

impl SealFact {
    /// The fact a seal judgement gives.
    pub fn of(seen: &SealSeen) -> SealFact {
        match seen {
            SealSeen::Unsealed => SealFact::Unsealed,
            SealSeen::Sealed { .. } => SealFact::Sealed,
            SealSeen::Broken(e) => SealFact::Broken(e.problem),
        }
    }
}

/// The verdict with the image's seal: a bootable image whose seal is broken is refused, and so
/// is an unsealed one when `require_sealed` (`hnroot install --require-sealed`); everything
/// else is [`judge`]'s verdict. GRUB applies it before the decision, so a refused image is
/// one the decision boots around (the next image boots; the console and the record say why).
pub fn judge_sealed(facts: &ImageFacts<'_>, seal: SealFact, require_sealed: bool) -> Verdict {
    match (judge(facts), seal) {
        (Verdict::Bootable(_), SealFact::Broken(p)) => Verdict::Refused(Refusal::Seal(p)),
        (Verdict::Bootable(_), SealFact::Unsealed | SealFact::NotChecked) if require_sealed => {
            Verdict::Refused(Refusal::Seal(SealProblem::Unsealed))
        }
        (v, _) => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{FsInfo, Label};

    #[test]
    fn a_broken_seal_or_a_missing_one_when_required_is_not_bootable() {
        let o = found(FsType::Ext4, Some(U), Some(1 << 20));
        let f = ImageFacts {
            entry: Entry::File { length: 1 << 20 },
            probe: Probe::Done(&o),
            boot_files: BootFiles::Present,
        };
        let refused = |v: Verdict| match v {
            Verdict::Refused(r) => r.code(),
            other => panic!("{other:?}"),
        };
        assert!(matches!(
            judge_sealed(&f, SealFact::Sealed, true),
            Verdict::Bootable(_)
        ));
        assert!(matches!(
            judge_sealed(&f, SealFact::Unsealed, false),
            Verdict::Bootable(_)
        ));
        assert_eq!(
            refused(judge_sealed(&f, SealFact::Unsealed, true)),
            "unsealed"
        );
        assert_eq!(
            refused(judge_sealed(
                &f,
                SealFact::Broken(SealProblem::Kernel),
                false
            )),
            "seal-kernel-mismatch"
        );
        // An image refused for its own reasons keeps that reason.
        let none = FsOutcome::Unknown;
        let g = ImageFacts {
            probe: Probe::Done(&none),
            ..f
        };
        assert_eq!(
            refused(judge_sealed(
                &g,
                SealFact::Broken(SealProblem::Kernel),
                true
            )),
            "no-filesystem"
        );
    }

    const U: FsUuid = FsUuid::Uuid([7; 16]);

    fn found(t: FsType, uuid: Option<FsUuid>, size: Option<u64>) -> FsOutcome {
        FsOutcome::Found(FsInfo {
            fs_type: t,
            label: Label::from_bytes(b"root"),
            label_fatboot: None,
            uuid,
            size,
            io_unit: Some(4096),
            grub_lacks: ExtFeatures::empty(),
        })
    }

    fn facts(entry: Entry, outcome: &FsOutcome, boot: BootFiles) -> Verdict {
        judge(&ImageFacts {
            entry,
            probe: Probe::Done(outcome),
            boot_files: boot,
        })
    }

    #[test]
    fn an_ext4_image_with_features_grub_cannot_read_is_refused_naming_them() {
        let mut o = found(FsType::Ext4, Some(U), Some(1 << 20));
        if let FsOutcome::Found(i) = &mut o {
            i.grub_lacks = ExtFeatures::INLINE_DATA;
        }
        let e = Entry::File { length: 1 << 20 };
        // Refused before the boot files are looked for: GRUB's driver would not open it.
        assert_eq!(needs_boot_files(e, &o), None);
        let v = facts(e, &o, BootFiles::Present);
        assert_eq!(v.code(), "grub-lacks-features");
        let text = std::string::ToString::to_string(&v);
        assert!(
            text.contains("uses features GRUB cannot read: inline_data"),
            "{text}"
        );
    }

    #[test]
    fn a_whole_ext4_image_with_its_boot_files_boots() {
        let o = found(FsType::Ext4, Some(U), Some(1 << 20));
        let e = Entry::File { length: 1 << 20 };
        assert_eq!(needs_boot_files(e, &o), Some(FsType::Ext4));
        assert_eq!(
            facts(e, &o, BootFiles::Present),
            Verdict::Bootable(Bootable {
                uuid: U,
                fs_type: FsType::Ext4,
                length: 1 << 20
            })
        );
        assert_eq!(
            facts(e, &o, BootFiles::Present).seen(),
            ImageSeen::Bootable(U)
        );
    }

    #[test]
    fn every_refusal_in_the_order_the_facts_are_gathered() {
        let good = found(FsType::Xfs, Some(U), Some(4096));
        let file = Entry::File { length: 4096 };
        let cases: [(Entry, FsOutcome, BootFiles, &str); 14] = [
            (
                Entry::Directory,
                good.clone(),
                BootFiles::Present,
                "not-a-file",
            ),
            (
                Entry::Unopenable,
                good.clone(),
                BootFiles::Present,
                "unopenable",
            ),
            (
                file,
                FsOutcome::Unknown,
                BootFiles::Present,
                "no-filesystem",
            ),
            (
                file,
                FsOutcome::Ambivalent(FsTypes::of(FsType::Xfs)),
                BootFiles::Present,
                "ambivalent",
            ),
            (
                file,
                FsOutcome::Other(OtherType::CryptoLuks),
                BootFiles::Present,
                "volume-member",
            ),
            (
                file,
                found(FsType::Vfat, Some(U), Some(4096)),
                BootFiles::Present,
                "unsupported-filesystem",
            ),
            (
                Entry::File { length: 4095 },
                good.clone(),
                BootFiles::Present,
                "truncated",
            ),
            (
                file,
                found(FsType::Xfs, None, Some(4096)),
                BootFiles::Present,
                "no-uuid",
            ),
            (
                file,
                found(FsType::Xfs, Some(FsUuid::Uuid([0; 16])), None),
                BootFiles::Present,
                "no-uuid",
            ),
            (
                file,
                good.clone(),
                BootFiles::Missing(MissingBootFiles::Kernel(BootFileProblem::Empty)),
                "missing-boot-files",
            ),
            (
                file,
                good.clone(),
                BootFiles::Unreadable,
                "boot-files-unreadable",
            ),
            (file, good.clone(), BootFiles::NoDriver, "no-driver"),
            (
                file,
                good.clone(),
                BootFiles::DriverDisagrees,
                "driver-disagrees",
            ),
            (
                file,
                good.clone(),
                BootFiles::NotChecked,
                "boot-files-not-checked",
            ),
        ];
        for (entry, outcome, boot, code) in cases {
            let v = facts(entry, &outcome, boot);
            assert_eq!(v.code(), code, "{entry:?} {outcome:?} {boot:?}: {v}");
            assert_eq!(v.seen(), ImageSeen::NotBootable);
        }
        assert_eq!(judge(&ImageFacts::ABSENT), Verdict::Absent);
        assert_eq!(
            judge(&ImageFacts {
                entry: file,
                probe: Probe::ReadError,
                boot_files: BootFiles::NotChecked
            })
            .code(),
            "read-error"
        );
    }

    #[test]
    fn one_rule_for_boot_files() {
        use BootFileSeen as S;
        assert_eq!(boot_file(S::File { length: 1 }), BootFile::Usable);
        assert_eq!(
            boot_file(S::File { length: 0 }),
            BootFile::Missing(BootFileProblem::Empty)
        );
        assert_eq!(
            boot_file(S::Directory),
            BootFile::Missing(BootFileProblem::Directory)
        );
        assert_eq!(
            boot_file(S::Special),
            BootFile::Missing(BootFileProblem::Special)
        );
        assert_eq!(
            boot_file(S::LinkLoop),
            BootFile::Missing(BootFileProblem::LinkLoop)
        );
        assert_eq!(boot_file(S::ReadError), BootFile::Unreadable);
        let file = S::File { length: 9 };
        assert_eq!(BootFiles::from_seen(file, file), BootFiles::Present);
        assert_eq!(
            BootFiles::from_seen(S::File { length: 0 }, file),
            BootFiles::Missing(MissingBootFiles::Kernel(BootFileProblem::Empty))
        );
        assert_eq!(
            BootFiles::from_seen(S::Absent, S::ReadError),
            BootFiles::Unreadable
        );
        let o = found(FsType::Ext4, Some(U), Some(4096));
        let v = facts(
            Entry::File { length: 4096 },
            &o,
            BootFiles::from_seen(S::LinkLoop, file),
        );
        assert_eq!(
            v.code(),
            "missing-boot-files",
            "a loop is missing, as GRUB sees it"
        );
        assert!(
            std::format!("{v}").contains("boot/kernel is a symbolic link that loops"),
            "{v}"
        );
    }

    #[test]
    fn a_cut_under_one_sector_is_still_truncated() {
        // GRUB's loopback rounds a file up to whole sectors; the length it reports here is the
        // file's own, so 100 missing bytes are seen.
        let o = found(FsType::Ext4, Some(U), Some(1 << 20));
        let v = facts(
            Entry::File {
                length: (1 << 20) - 100,
            },
            &o,
            BootFiles::Present,
        );
        assert_eq!(
            v,
            Verdict::Refused(Refusal::Truncated {
                fs_type: FsType::Ext4,
                fs_size: 1 << 20,
                length: (1 << 20) - 100
            })
        );
        assert!(std::format!("{v}").contains("100 missing"), "{v}");
        assert_eq!(needs_boot_files(Entry::File { length: 5 }, &o), None);
    }

    #[test]
    fn messages_name_what_was_found() {
        let m = std::format!(
            "{}",
            Refusal::MissingBootFiles(MissingBootFiles::Initramfs(BootFileProblem::Absent))
        );
        assert_eq!(m, "no boot/initramfs in it (every image carries its own)");
        let m = std::format!(
            "{}",
            Refusal::MissingBootFiles(MissingBootFiles::Both {
                kernel: BootFileProblem::Directory,
                initramfs: BootFileProblem::LinkLoop
            })
        );
        assert!(
            m.starts_with("boot/kernel is a directory, not a file; boot/initramfs is a symbolic link that loops"),
            "{m}"
        );
        let m = std::format!("{}", Refusal::UnsupportedFilesystem(FsType::Vfat));
        assert!(m.contains("vfat"), "{m}");
    }
}
