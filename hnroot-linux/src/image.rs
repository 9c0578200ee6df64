//! The facts of one image file, gathered the Linux way, judged by the core
//! (`hnroot_core::verdict`), exactly as GRUB gathers them: what the name is (a symbolic link
//! resolved inside hostpart as GRUB's drivers resolve it: relative to the top directory,
//! absolute targets from hostpart's root, never out of it), the file's length, the core's
//! prober on its bytes, and whether `boot/kernel` and `boot/initramfs` are files in it (read
//! with ext4-view for ext2/3/4, through a read-only loop mount for XFS and btrfs). It also reads
//! what `hnroot status` shows beside the verdict: the label and the `os-release` version.
//! Nothing here decides; nothing here writes.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use hnroot_core::bootline::{self, ArgsFile};
use hnroot_core::layout;
use hnroot_core::probe::{FsOutcome, FsType};
use hnroot_core::verdict::{self, BootFileSeen, BootFiles, Entry, ImageFacts, Probe, Verdict};

use crate::fsat::{self, InRoot};
use crate::loopdev;
use crate::mounts;
use crate::probe::Device;

/// `os-release` fields an image's version is read from (systemd's names for image-based
/// systems).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct OsRelease {
    /// `IMAGE_ID`.
    pub image_id: Option<String>,
    /// `IMAGE_VERSION`.
    pub image_version: Option<String>,
    /// `PRETTY_NAME`.
    pub pretty_name: Option<String>,
}

impl OsRelease {
    /// Parse `KEY=value` lines (values may be quoted), keeping the fields above.
    pub fn parse(text: &str) -> OsRelease {
        let mut out = OsRelease::default();
        for line in text.lines().take(200) {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value)
                .chars()
                .filter(|c| !c.is_control())
                .take(128)
                .collect::<String>();
            let slot = match key.trim() {
                "IMAGE_ID" => &mut out.image_id,
                "IMAGE_VERSION" => &mut out.image_version,
                "PRETTY_NAME" => &mut out.pretty_name,
                _ => continue,
            };
            *slot = Some(value);
        }
        out
    }

    /// `IMAGE_ID IMAGE_VERSION` (or what there is of it).
    pub fn version(&self) -> Option<String> {
        match (&self.image_id, &self.image_version) {
            (Some(id), Some(v)) => Some(format!("{id} {v}")),
            (None, Some(v)) => Some(v.clone()),
            (Some(id), None) => Some(id.clone()),
            (None, None) => None,
        }
    }
}

/// What was found at a kernel-arguments file (an image's, the host's), owning its bytes; the
/// core judges them (`hnroot_core::bootline`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum ArgsRead {
    /// No such file.
    #[default]
    Absent,
    /// Something there that cannot be read as a file.
    Unreadable,
    /// Longer than `bootline::MAX_ARGS_FILE_LEN`.
    TooLong,
    /// Its first `bootline::MAX_ARGS_FILE_LEN + 1` bytes (one more tells it is too long).
    Bytes(Vec<u8>),
}

impl ArgsRead {
    /// As the core takes it.
    pub fn as_file(&self) -> ArgsFile<'_> {
        match self {
            ArgsRead::Absent => ArgsFile::Absent,
            ArgsRead::Unreadable => ArgsFile::Unreadable,
            ArgsRead::TooLong => ArgsFile::TooLong,
            ArgsRead::Bytes(b) if b.len() > bootline::MAX_ARGS_FILE_LEN => ArgsFile::TooLong,
            ArgsRead::Bytes(b) => ArgsFile::Text(b),
        }
    }

    /// From what reading a file gave: its bytes, not there, or an error.
    pub fn from_result(read: io::Result<Vec<u8>>) -> ArgsRead {
        match read {
            Ok(b) => ArgsRead::Bytes(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => ArgsRead::Absent,
            Err(_) => ArgsRead::Unreadable,
        }
    }
}

/// The kernel-arguments file at `rel` in the directory `dir`, opened as GRUB opens it (links
/// resolved inside that filesystem): its first bytes, absent, or unreadable. As for GRUB,
/// whatever does not open as a regular file (nothing, a directory, a link that leads nowhere or
/// out) is absent; only a file whose read fails is unreadable.
pub fn read_args_in(dir: &OwnedFd, rel: &str) -> ArgsRead {
    let Ok(file) = open_in_root(dir, rel) else {
        return ArgsRead::Absent;
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return ArgsRead::Absent;
    }
    let mut b = Vec::new();
    ArgsRead::from_result(
        io::Read::read_to_end(
            &mut io::Read::take(file, bootline::MAX_ARGS_FILE_LEN as u64 + 1),
            &mut b,
        )
        .map(|_| b),
    )
}

/// One image name, judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judged {
    /// The core's verdict.
    pub verdict: Verdict,
    /// Its filesystem label, escaped for printing (bootable images only).
    pub label: Option<String>,
    /// Its `os-release` (bootable images only, when it has one).
    pub os_release: Option<OsRelease>,
    /// Its own kernel arguments (`layout::IMAGE_ARGS_PATH`; bootable images only).
    pub args: ArgsRead,
    /// Judged under a seal policy, bootable, and its seal held: its dm-verity root hash (the
    /// loader puts it on the image's command line).
    pub root_hash: Option<[u8; 32]>,
}

impl Judged {
    fn absent() -> Judged {
        Judged {
            verdict: Verdict::Absent,
            label: None,
            os_release: None,
            args: ArgsRead::Absent,
            root_hash: None,
        }
    }
}

/// What is read inside an image besides its boot files.
#[derive(Clone, Debug, Default)]
struct Inside {
    os_release: Option<OsRelease>,
    args: ArgsRead,
}

/// Open `name` in the directory `dir` the way GRUB's drivers open it: a symbolic link is
/// followed inside the directory's filesystem only, absolute targets from the directory (the
/// filesystem's root, for hostpart's top directory), `..` never above it, never across a
/// mount. `O_NONBLOCK`: a FIFO never blocks the open.
pub fn open_in_root(dir: &OwnedFd, name: &str) -> io::Result<File> {
    open_in_root_as(dir, name, libc::O_RDONLY)
}

/// [`open_in_root`] with the access mode `access` (`O_RDONLY` or `O_RDWR`).
pub fn open_in_root_as(dir: &OwnedFd, name: &str, access: libc::c_int) -> io::Result<File> {
    let c = CString::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: zeroed open_how is valid (no flags, no mode, no resolve restrictions).
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (access | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_XDEV | libc::RESOLVE_NO_MAGICLINKS;
    crate::fsat::openat2(dir.as_raw_fd(), &c, &how).map(File::from)
}

/// What the directory entry `name` is, without following it: `None` when absent.
fn entry_kind(dir: &OwnedFd, name: &str) -> io::Result<Option<u32>> {
    let c = CString::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: zeroed `stat` is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor, NUL-terminated name, valid out-pointer.
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r == 0 {
        return Ok(Some(st.st_mode & libc::S_IFMT));
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENOENT) {
        Ok(None)
    } else {
        Err(e)
    }
}

/// Where read-only loop mounts for looking inside XFS and btrfs images go.
#[derive(Clone, Debug)]
pub struct Inspect {
    /// `/dev`, where `loop-control` and the loop devices are.
    pub dev: PathBuf,
    /// A directory for temporary mount points (`/run/hnroot`).
    pub scratch: PathBuf,
}

impl Default for Inspect {
    fn default() -> Inspect {
        Inspect {
            dev: PathBuf::from("/dev"),
            scratch: PathBuf::from("/run/hnroot"),
        }
    }
}

/// Judge image name `name` in hostpart's top directory `dir`, from the facts GRUB can gather
/// too: whether the name itself is a directory, and whether it opens as a regular file. A
/// device node, FIFO or socket, and a link that does not lead to a regular file (dangling,
/// looping, out of hostpart, to a directory or a special file) are all
/// [`Entry::Unopenable`], as in GRUB, whose drivers cannot tell them apart.
pub fn judge_name(dir: &OwnedFd, name: &str, inspect: &Inspect) -> Judged {
    judge_name_as(dir, name, inspect, None)
}

/// [`judge_name`] under a loader's seal policy ([`judge_file_sealed`]).
pub fn judge_name_as(
    dir: &OwnedFd,
    name: &str,
    inspect: &Inspect,
    policy: Option<&SealPolicy>,
) -> Judged {
    let entry = match entry_kind(dir, name) {
        Ok(None) => return Judged::absent(),
        Ok(Some(libc::S_IFDIR)) => Entry::Directory,
        Ok(Some(libc::S_IFREG | libc::S_IFLNK)) => match open_in_root(dir, name) {
            Ok(file) if file.metadata().is_ok_and(|m| m.is_file()) => {
                return judge_file_as(&file, inspect, policy)
            }
            Ok(_) | Err(_) => Entry::Unopenable,
        },
        Ok(Some(_)) | Err(_) => Entry::Unopenable,
    };
    judged(entry, Probe::NotRun, BootFiles::NotChecked)
}

fn judged(entry: Entry, probe: Probe<'_>, boot_files: BootFiles) -> Judged {
    Judged {
        verdict: verdict::judge(&ImageFacts {
            entry,
            probe,
            boot_files,
        }),
        label: None,
        os_release: None,
        args: ArgsRead::Absent,
        root_hash: None,
    }
}

/// The loader's seal policy, as `hnroot select --seal-keys --require-sealed-file` reads it from
/// its memdisk: the trusted keys, and whether only sealed images boot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SealPolicy {
    /// The trusted keys (none: a sealed image's key is unknown).
    pub keys: Vec<hnroot_core::minisig::PublicKey>,
    /// Only sealed images boot.
    pub require: bool,
}

/// Judge an open file (an image name opened as GRUB would, or the source `hnroot stage`
/// copies).
pub fn judge_file(file: &File, inspect: &Inspect) -> Judged {
    judge_file_as(file, inspect, None)
}

/// Judge an open file as a loader with the seal policy `policy` does (GRUB's `judge_seal`):
/// a bootable image's seal is judged against the loader's keys and, when it holds, the SHA-256
/// of its boot files against the manifest's; the verdict is the core's `judge_sealed`.
pub fn judge_file_sealed(file: &File, inspect: &Inspect, policy: &SealPolicy) -> Judged {
    judge_file_as(file, inspect, Some(policy))
}

/// The seal fact of a bootable image `file` (its filesystem `outcome`, of type `fs_type`), as
/// GRUB gathers it: the seal block judged, then the boot files hashed while the seal holds, the
/// kernel first, with the root hash of a seal that held. `None`: the file could not be read
/// (unreadable, as GRUB finds it).
fn seal_fact(
    file: &File,
    outcome: &FsOutcome,
    fs_type: FsType,
    inspect: &Inspect,
    policy: &SealPolicy,
) -> Option<(verdict::SealFact, Option<[u8; 32]>)> {
    use hnroot_core::seal::{check_boot_file, BootFile, SealSeen};
    let seen = crate::seal::judge_file(file, outcome, &policy.keys).ok()?;
    let SealSeen::Sealed { manifest, .. } = &seen else {
        return Some((verdict::SealFact::of(&seen), None));
    };
    let (kernel, initramfs) = crate::seal::boot_file_hashes(file, fs_type, inspect).ok()?;
    for (which, sha256) in [(BootFile::Kernel, kernel), (BootFile::Initramfs, initramfs)] {
        if let Err(e) = check_boot_file(manifest, which, &sha256) {
            return Some((verdict::SealFact::Broken(e.problem), None));
        }
    }
    Some((verdict::SealFact::Sealed, Some(manifest.verity.root_hash)))
}

fn judge_file_as(file: &File, inspect: &Inspect, policy: Option<&SealPolicy>) -> Judged {
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(_) => return judged(Entry::Unopenable, Probe::NotRun, BootFiles::NotChecked),
    };
    if meta.is_dir() {
        return judged(Entry::Directory, Probe::NotRun, BootFiles::NotChecked);
    }
    if !meta.is_file() {
        return judged(Entry::Unopenable, Probe::NotRun, BootFiles::NotChecked);
    }
    let entry = Entry::File { length: meta.len() };
    let outcome = match file.try_clone().and_then(|f| {
        Device::from_file(f, Path::new("image"), meta.len(), 512).probe_fs(0, meta.len())
    }) {
        Ok(o) => o,
        Err(_) => return judged(entry, Probe::ReadError, BootFiles::NotChecked),
    };
    let Some(fs_type) = verdict::needs_boot_files(entry, &outcome) else {
        return judged(entry, Probe::Done(&outcome), BootFiles::NotChecked);
    };
    let (boot_files, inside) = look_inside(file, fs_type, inspect);
    let mut out = judged(entry, Probe::Done(&outcome), boot_files);
    if let (Some(policy), Verdict::Bootable(_)) = (policy, &out.verdict) {
        out = match seal_fact(file, &outcome, fs_type, inspect, policy) {
            Some((fact, root_hash)) => Judged {
                verdict: verdict::judge_sealed(
                    &ImageFacts {
                        entry,
                        probe: Probe::Done(&outcome),
                        boot_files,
                    },
                    fact,
                    policy.require,
                ),
                root_hash,
                ..out
            },
            None => judged(entry, Probe::ReadError, BootFiles::NotChecked),
        };
    }
    if matches!(out.verdict, Verdict::Bootable(_)) {
        out.label = outcome
            .info()
            .and_then(|i| i.label.as_ref())
            .map(ToString::to_string);
        out.os_release = inside.os_release;
        out.args = inside.args;
    }
    out
}

/// The boot files of an image of type `fs_type`, and its `os-release`.
fn look_inside(file: &File, fs_type: FsType, inspect: &Inspect) -> (BootFiles, Inside) {
    match fs_type {
        FsType::Ext2 | FsType::Ext3 | FsType::Ext4 | FsType::Ext4dev => look_inside_ext(file),
        _ => look_inside_mounted(file, fs_type, inspect),
    }
}

/// Most bytes of `os-release` read.
const OS_RELEASE_MAX: usize = 16 * 1024;

fn look_inside_ext(file: &File) -> (BootFiles, Inside) {
    let Ok(copy) = file.try_clone() else {
        return (BootFiles::Unreadable, Inside::default());
    };
    let Ok(fs) = ext4_view::Ext4::load(Box::new(copy)) else {
        return (BootFiles::Unreadable, Inside::default());
    };
    ext_boot_files(&fs)
}

/// What ext4-view sees at `path` (links followed from the filesystem's root).
fn ext_seen(fs: &ext4_view::Ext4, path: &str) -> BootFileSeen {
    use ext4_view::{Ext4Error, FileType};
    match fs.metadata(path) {
        Ok(m) => match m.file_type() {
            FileType::Regular => BootFileSeen::File { length: m.len() },
            FileType::Directory => BootFileSeen::Directory,
            _ => BootFileSeen::Special,
        },
        Err(Ext4Error::NotFound | Ext4Error::NotADirectory) => BootFileSeen::Absent,
        Err(Ext4Error::TooManySymlinks) => BootFileSeen::LinkLoop,
        Err(_) => BootFileSeen::ReadError,
    }
}

/// The boot files, `os-release` and kernel arguments of a loaded ext2/3/4 filesystem.
fn ext_boot_files(fs: &ext4_view::Ext4) -> (BootFiles, Inside) {
    let boot = BootFiles::from_seen(
        ext_seen(fs, &format!("/{}", layout::KERNEL_PATH)),
        ext_seen(fs, &format!("/{}", layout::INITRAMFS_PATH)),
    );
    let os_release = ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|p| {
            let m = fs.metadata(*p).ok()?;
            if !m.file_type().is_regular_file() || m.len() > OS_RELEASE_MAX as u64 {
                return None;
            }
            fs.read(*p)
                .ok()
                .map(|b| OsRelease::parse(&String::from_utf8_lossy(&b)))
        });
    let path = format!("/{}", layout::IMAGE_ARGS_PATH);
    let args = match fs.metadata(path.as_str()) {
        Err(ext4_view::Ext4Error::NotFound) => ArgsRead::Absent,
        Ok(m) if m.file_type().is_regular_file() => match fs.read(path.as_str()) {
            Ok(mut b) => {
                b.truncate(bootline::MAX_ARGS_FILE_LEN + 1);
                ArgsRead::Bytes(b)
            }
            Err(_) => ArgsRead::Unreadable,
        },
        // GRUB opens what a name leads to: anything else is not a file it reads.
        Ok(_) | Err(_) => ArgsRead::Absent,
    };
    (boot, Inside { os_release, args })
}

/// What is at `rel` inside the tree or mounted image `root` (links followed inside it, as the
/// boot follows them).
pub fn seen_in_root(root: &InRoot, rel: &str) -> BootFileSeen {
    match root.stat(rel) {
        Ok(None) => BootFileSeen::Absent,
        Ok(Some(st)) => match fsat::kind_of(&st) {
            fsat::Kind::File(length) => BootFileSeen::File { length },
            fsat::Kind::Dir => BootFileSeen::Directory,
            _ => BootFileSeen::Special,
        },
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => BootFileSeen::LinkLoop,
        Err(_) => BootFileSeen::ReadError,
    }
}

/// The boot files and `os-release` of the image (or tree) at `root`, by the core's rule.
pub fn root_boot_files(root: &InRoot) -> (BootFiles, Option<OsRelease>) {
    let boot = BootFiles::from_seen(
        seen_in_root(root, layout::KERNEL_PATH),
        seen_in_root(root, layout::INITRAMFS_PATH),
    );
    (boot, os_release_in(root))
}

/// The `os-release` of the tree or image at `root` (`etc/os-release`, else
/// `usr/lib/os-release`, links followed inside it).
pub fn os_release_in(root: &InRoot) -> Option<OsRelease> {
    ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .find_map(|p| {
            let bytes = root.read(p, OS_RELEASE_MAX).ok()?;
            Some(OsRelease::parse(&String::from_utf8_lossy(&bytes)))
        })
}

/// The image's own kernel arguments inside the image (or tree) at `root`: as GRUB opens them,
/// whatever is not a regular file there is absent.
pub fn args_in(root: &InRoot) -> ArgsRead {
    match seen_in_root(root, layout::IMAGE_ARGS_PATH) {
        BootFileSeen::File { .. } => {
            match root.read(layout::IMAGE_ARGS_PATH, bootline::MAX_ARGS_FILE_LEN) {
                Ok(b) => ArgsRead::Bytes(b),
                Err(fsat::ReadError::TooLarge(_)) => ArgsRead::TooLong,
                Err(_) => ArgsRead::Unreadable,
            }
        }
        _ => ArgsRead::Absent,
    }
}

fn look_inside_mounted(file: &File, fs_type: FsType, inspect: &Inspect) -> (BootFiles, Inside) {
    if !matches!(fs_type, FsType::Xfs | FsType::Btrfs) {
        return (BootFiles::NoDriver, Inside::default());
    }
    let Ok(lo) = loopdev::attach(&inspect.dev, file, "hnroot-inspect", false) else {
        return (BootFiles::Unreadable, Inside::default());
    };
    if mounts::mkdir_p(&inspect.scratch).is_err() {
        return (BootFiles::Unreadable, Inside::default());
    }
    let Ok(dir) = tempdir_in(&inspect.scratch) else {
        return (BootFiles::Unreadable, Inside::default());
    };
    // Read-only device, and no journal or log replay: looking must not write.
    let mounted = mounts::mount_image_readonly(&lo.node, fs_type, &dir);
    drop(lo);
    let result = match mounted {
        Err(_) => (BootFiles::Unreadable, Inside::default()),
        Ok(()) => {
            // Links inside the image resolve inside it (absolute ones from its root, as GRUB
            // resolves them), never into this machine's files.
            let result = match InRoot::open(&dir) {
                Ok(root) => {
                    let (boot, os_release) = root_boot_files(&root);
                    let args = args_in(&root);
                    (boot, Inside { os_release, args })
                }
                Err(_) => (BootFiles::Unreadable, Inside::default()),
            };
            let _ = mounts::umount(&dir, libc::MNT_DETACH);
            result
        }
    };
    let _ = std::fs::remove_dir(&dir);
    result
}

/// A fresh directory under `base`.
pub(crate) fn tempdir_in(base: &Path) -> io::Result<PathBuf> {
    for n in 0..1000u32 {
        let dir = base.join(format!("inspect-{}-{n}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free inspection directory",
    ))
}

/// Judge the image file at `path` (following links as the operator named it): the source
/// of `hnroot stage`, `hnroot probe --verdict`.
pub fn judge_path(path: &Path, inspect: &Inspect) -> io::Result<Judged> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)?;
    Ok(judge_file(&file, inspect))
}

/// Random access to the bytes of an image that is not a local file (an HTTP source), for
/// probing it and reading ext2/3/4 inside it before it is copied.
pub trait ImageReader: Send {
    /// Its length in bytes.
    fn length(&self) -> u64;
    /// Exactly `buf.len()` bytes at `offset`.
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// An independent reader of the same bytes.
    fn boxed_clone(&self) -> Box<dyn ImageReader>;
}

struct ExtAdapter(Box<dyn ImageReader>);

impl ext4_view::Ext4Read for ExtAdapter {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        self.0
            .read_exact_at(start_byte, dst)
            .map_err(|e| Box::new(e) as _)
    }
}

/// The facts of a remote image as far as they can be read without copying it: its length, the
/// prober's answer, and for ext2/3/4 its boot files and `os-release` (read through the
/// reader). For XFS and btrfs the boot files are not checked here (`BootFiles::NotChecked`):
/// the copy is judged whole before it is used.
pub fn look_at_reader(
    reader: &mut dyn ImageReader,
) -> (Result<FsOutcome, io::Error>, BootFiles, Option<OsRelease>) {
    let len = reader.length();
    let mut prober = hnroot_core::probe::FsProber::new(len);
    let outcome = hnroot_core::probe::run(&mut prober, |r| {
        let end = r.offset.saturating_add(r.len as u64).min(len);
        let mut buf = vec![0u8; end.saturating_sub(r.offset) as usize];
        reader.read_exact_at(r.offset, &mut buf).map(|()| buf)
    });
    let outcome = match outcome {
        Ok(Some(o)) => o,
        Ok(None) => {
            return (
                Err(io::Error::other("the prober did not finish")),
                BootFiles::NotChecked,
                None,
            )
        }
        Err(e) => return (Err(e), BootFiles::NotChecked, None),
    };
    let entry = Entry::File { length: len };
    match verdict::needs_boot_files(entry, &outcome) {
        Some(FsType::Ext2 | FsType::Ext3 | FsType::Ext4 | FsType::Ext4dev) => {
            let (boot, inside) =
                match ext4_view::Ext4::load(Box::new(ExtAdapter(reader.boxed_clone()))) {
                    Ok(fs) => ext_boot_files(&fs),
                    Err(_) => (BootFiles::Unreadable, Inside::default()),
                };
            (Ok(outcome), boot, inside.os_release)
        }
        _ => (Ok(outcome), BootFiles::NotChecked, None),
    }
}

/// The prober's answer on an open image file (for callers that need the label or size).
pub fn probe_file(file: &File) -> io::Result<FsOutcome> {
    let len = file.metadata()?.len();
    Device::from_file(file.try_clone()?, Path::new("image"), len, 512).probe_fs(0, len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::process::Command;

    fn mkfs_ext4_with_boot(path: &Path, uuid: &str, boot: &[&str]) {
        mkfs_ext4_with(path, uuid, boot, &[]);
    }

    /// [`mkfs_ext4_with_boot`] with `extra` options for mkfs.
    fn mkfs_ext4_with(path: &Path, uuid: &str, boot: &[&str], extra: &[&str]) {
        let tree = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tree.path().join("boot")).unwrap();
        std::fs::create_dir_all(tree.path().join("etc")).unwrap();
        for f in boot {
            std::fs::write(tree.path().join("boot").join(f), b"x").unwrap();
        }
        std::fs::write(
            tree.path().join("etc/os-release"),
            "PRETTY_NAME=\"Test\"\nIMAGE_ID=hn\nIMAGE_VERSION='7.1'\n",
        )
        .unwrap();
        let status = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-U", uuid, "-L", "root"])
            .args(extra)
            .arg("-d")
            .arg(tree.path())
            .arg(path)
            .arg("8M")
            .status()
            .unwrap();
        assert!(status.success());
    }

    const U1: &str = "11111111-2222-3333-4444-555555555555";

    fn dir_fd(path: &Path) -> OwnedFd {
        OwnedFd::from(File::open(path).unwrap())
    }

    #[test]
    fn a_real_ext4_image_with_and_without_its_boot_files() {
        let d = tempfile::tempdir().unwrap();
        mkfs_ext4_with_boot(&d.path().join("hn-root.img"), U1, &["kernel", "initramfs"]);
        mkfs_ext4_with_boot(&d.path().join("hn-root-new.img"), U1, &["kernel"]);
        let fd = dir_fd(d.path());
        let j = judge_name(&fd, "hn-root.img", &Inspect::default());
        assert_eq!(j.verdict.code(), "bootable", "{}", j.verdict);
        assert_eq!(j.label.as_deref(), Some("root"));
        assert_eq!(
            j.os_release
                .as_ref()
                .and_then(OsRelease::version)
                .as_deref(),
            Some("hn 7.1")
        );
        let j = judge_name(&fd, "hn-root-new.img", &Inspect::default());
        assert_eq!(j.verdict.code(), "missing-boot-files", "{}", j.verdict);
        // Whole, with its boot files, but with small files kept in their inodes: GRUB's ext2
        // driver would refuse to open it.
        mkfs_ext4_with(
            &d.path().join("hn-root-broken.img"),
            U1,
            &["kernel", "initramfs"],
            &["-O", "inline_data"],
        );
        let j = judge_name(&fd, "hn-root-broken.img", &Inspect::default());
        assert_eq!(j.verdict.code(), "grub-lacks-features", "{}", j.verdict);
        assert_eq!(
            judge_name(&fd, "hn-root-old.img", &Inspect::default()).verdict,
            Verdict::Absent
        );
    }

    #[test]
    fn links_resolve_inside_hostpart_as_in_grub() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        mkfs_ext4_with_boot(&d.path().join("backup.img"), U1, &["kernel", "initramfs"]);
        mkfs_ext4_with_boot(&outside.path().join("x.img"), U1, &["kernel", "initramfs"]);
        symlink("backup.img", d.path().join("hn-root.img")).unwrap();
        // Absolute: resolved from hostpart's root, as GRUB does; there is no /backup.img
        // outside to find.
        symlink("/backup.img", d.path().join("hn-root-old.img")).unwrap();
        symlink(
            outside.path().join("x.img"),
            d.path().join("hn-root-new.img"),
        )
        .unwrap();
        symlink(
            "../../../../etc/passwd",
            d.path().join("hn-root-broken.img"),
        )
        .unwrap();
        std::fs::hard_link(
            d.path().join("backup.img"),
            d.path().join("hn-root-cancelled.img"),
        )
        .unwrap();
        let fd = dir_fd(d.path());
        let code = |n| judge_name(&fd, n, &Inspect::default()).verdict.code();
        assert_eq!(code("hn-root.img"), "bootable");
        assert_eq!(code("hn-root-old.img"), "bootable");
        assert_eq!(
            code("hn-root-new.img"),
            "unopenable",
            "a link out of hostpart"
        );
        assert_eq!(
            code("hn-root-broken.img"),
            "unopenable",
            ".. stops at hostpart's root"
        );
        assert_eq!(
            code("hn-root-cancelled.img"),
            "bootable",
            "hard links are files"
        );
    }

    #[test]
    fn directories_fifos_and_cut_copies_are_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("hn-root.img")).unwrap();
        let fifo = CString::new(d.path().join("hn-root-new.img").to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        std::fs::create_dir(d.path().join("data")).unwrap();
        symlink("data", d.path().join("hn-root-broken.img")).unwrap();
        symlink("hn-root-new.img", d.path().join("hn-root-cancelled.img")).unwrap();
        mkfs_ext4_with_boot(
            &d.path().join("hn-root-old.img"),
            U1,
            &["kernel", "initramfs"],
        );
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(d.path().join("hn-root-old.img"))
            .unwrap();
        f.set_len((8 << 20) - 100).unwrap();
        let fd = dir_fd(d.path());
        let code = |n| judge_name(&fd, n, &Inspect::default()).verdict.code();
        assert_eq!(code("hn-root.img"), "not-a-file");
        // As GRUB sees them: names that do not open as regular files, whatever they are.
        assert_eq!(
            code("hn-root-new.img"),
            "unopenable",
            "a FIFO, and the open did not block"
        );
        assert_eq!(
            code("hn-root-broken.img"),
            "unopenable",
            "a link to a directory"
        );
        assert_eq!(
            code("hn-root-cancelled.img"),
            "unopenable",
            "a link to a FIFO"
        );
        assert_eq!(code("hn-root-old.img"), "truncated", "100 bytes short");
    }

    #[test]
    fn os_release_fields() {
        let o = OsRelease::parse("IMAGE_ID=\"fleet\"\nIMAGE_VERSION=2026.11\nX=y\nbad line\n");
        assert_eq!(o.version().as_deref(), Some("fleet 2026.11"));
        assert_eq!(OsRelease::parse("").version(), None);
    }
}
