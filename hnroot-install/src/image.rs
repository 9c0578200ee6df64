//! `hnroot image build`: a root image from a directory tree (a stock `mmdebstrap` tree with a
//! Debian kernel in `/boot`, or an installation copied out). The tree is never changed: it is
//! staged under an overlay (the tree's own filesystem, bind-mounted read-only, below a scratch
//! upper layer) and what hnroot needs is added to the staged tree: `/boot/kernel` and
//! `/boot/initramfs` (hard links to the tree's newest kernel and its hnroot-capable initrd, or
//! hnroot's own initramfs built for that kernel), `/hostpart`, `/data0 -> /hostpart/data`,
//! fstab lines for the ESP and hostpart, and hnroot's CLI and units when the tree lacks the
//! package. Everything added or changed is stamped with `SOURCE_DATE_EPOCH`. The staged tree
//! is then written as the image's filesystem: ext4 from user space by `mke2fs -d`
//! ([`crate::e2repro`]: the same bytes at every build, given `--uuid` and the epoch); btrfs and
//! XFS made by mkfs, loop-mounted and filled with `cp -a` (owners, modes, links, hard links,
//! extended attributes), whose block allocation is the kernel's.
//!
//! Every path in the tree and in the staged copy goes through the file layer
//! (`hnroot_linux::fsat::InRoot`): the tree's symbolic links resolve inside the tree (or the
//! copy), as they will once it is the root, never into the build machine's files; what is
//! written, linked or removed is the name itself, never what a link there points at. The
//! output is checked before anything is built (a regular file or nothing, outside the tree),
//! written as `<name>.partial` beside it (created exclusively), judged by the one image
//! verdict (`hnroot_core::verdict`) and renamed into place only then.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use hnroot_core::imagebuild::{self, MIB};
use hnroot_core::install::HostpartFs;
use hnroot_core::layout;
use hnroot_core::uuid::FsUuid;
use hnroot_core::verdict::{self, BootFile, Verdict};
use hnroot_linux::fsat::{self, InRoot, Kind, ReadError};
use hnroot_linux::{loopdev, mounts};

use crate::initramfs::{self, Compress, Spec};
use crate::modules::{ModulesDir, BOOT_MODULES};
use crate::tool::run;

/// The unit that commits a healthy image (or ends a failed trial boot).
pub const MARK_GOOD_UNIT: (&str, &str) = (
    "hnroot-mark-good.service",
    include_str!("../../packaging/systemd/hnroot-mark-good.service"),
);

/// hnroot's systemd units, each enabled for `multi-user.target`: the one that commits a healthy
/// image, the one that creates the host's SSH host keys in its host state, the one that syncs
/// the host state with the shared repository.
pub const UNITS: [(&str, &str); 3] = [
    MARK_GOOD_UNIT,
    (
        "hnroot-host-keys.service",
        include_str!("../../packaging/systemd/hnroot-host-keys.service"),
    ),
    (
        "hnroot-host-sync.service",
        include_str!("../../packaging/systemd/hnroot-host-sync.service"),
    ),
];

/// systemd drop-ins every image gets (beside the tree's own files, never over one): the
/// deadline of the health checks (`boot-complete.target`'s job, 15 minutes) and the hardware
/// watchdog (`RuntimeWatchdogSec`, used when the machine has one).
pub const SYSTEMD_DROPINS: [(&str, &str); 2] = [
    (
        "etc/systemd/system/boot-complete.target.d/hnroot-health-timeout.conf",
        include_str!("../../packaging/systemd/boot-complete.target.d/hnroot-health-timeout.conf"),
    ),
    (
        "etc/systemd/system.conf.d/hnroot-watchdog.conf",
        include_str!("../../packaging/systemd/system.conf.d/hnroot-watchdog.conf"),
    ),
];

/// Where the tree has hnroot's initramfs-tools hook when the package is installed.
const ITOOLS_HOOK: &str = "usr/share/initramfs-tools/hooks/hnroot";
/// Where the tree has hnroot's dracut module when the package is installed.
const DRACUT_MODULE: &str = "usr/lib/dracut/modules.d/90hnroot";
/// dpkg's record of the installed hnroot package.
const PACKAGE_RECORD: &str = "var/lib/dpkg/info/hnroot.list";

/// Where `/boot/initramfs` comes from.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum InitramfsChoice {
    /// The tree's own initrd when hnroot's initramfs-tools or dracut integration is installed
    /// in it; otherwise hnroot's own.
    Auto,
    /// hnroot's own initramfs (`hnroot-init` as `/init`) with the tree's kernel modules.
    Hnroot,
    /// The tree's own initrd (`/boot/initrd.img-<release>`), which must contain hnroot-init.
    Tree,
}

/// What to build.
#[derive(Clone, Debug)]
pub struct BuildRequest {
    /// The tree.
    pub root: PathBuf,
    /// The image file to write.
    pub out: PathBuf,
    /// Its filesystem.
    pub fs: HostpartFs,
    /// Its size in bytes (`None`: the contents with the stated headroom).
    pub size: Option<u64>,
    /// Where `/boot/initramfs` comes from.
    pub initramfs: InitramfsChoice,
    /// The static `hnroot-init` for hnroot's own initramfs.
    pub hnroot_init: PathBuf,
    /// The `hnroot` CLI to put into an image whose tree lacks the package.
    pub cli: PathBuf,
    /// The filesystem's UUID (`None`: a fresh one).
    pub uuid: Option<FsUuid>,
    /// `SOURCE_DATE_EPOCH`: the time (seconds since 1970) the image's own metadata and every
    /// file hnroot adds or changes are stamped with (`None`: now). With `uuid`, an ext4 image of
    /// one tree is the same bytes at every build.
    pub epoch: Option<u64>,
}

/// What was built.
#[derive(Clone, Debug)]
pub struct Built {
    /// The image's filesystem UUID (fresh).
    pub uuid: String,
    /// Its size in bytes.
    pub size: u64,
    /// Bytes the tree occupies.
    pub content: u64,
    /// The kernel release it boots.
    pub kernel: String,
    /// Where its initramfs came from.
    pub initramfs: String,
    /// `IMAGE_ID`/`IMAGE_VERSION` (or `PRETTY_NAME`) of its os-release.
    pub version: Option<String>,
    /// What was added or changed in the copy, one line each.
    pub notes: Vec<String>,
    /// Host-specific files the image holds (from the tree): `hnroot sysprep` removes them.
    pub leftovers: Vec<hnroot_linux::sysprep::Leftover>,
}

/// Most bytes of the tree's `/etc/fstab` read.
const MAX_FSTAB: usize = 1 << 20;

/// Most bytes of the hnroot CLI copied into an image.
const MAX_CLI: u64 = 256 << 20;

/// Deepest directory the tree walk goes into, and most parents looked at from the output.
const MAX_DEPTH: usize = 4096;

/// A directory's identity: device and inode.
type DirId = (u64, u64);

#[allow(clippy::unnecessary_cast)] // st_dev's and st_ino's widths differ between libcs.
fn id_of(st: &libc::stat) -> DirId {
    (st.st_dev as u64, st.st_ino as u64)
}

/// Where the image goes: the output's directory (held open), the output's name in it, and the
/// partial file's name beside it.
struct Output {
    dir: OwnedFd,
    dir_path: PathBuf,
    name: String,
    partial: String,
}

impl Output {
    fn partial_path(&self) -> PathBuf {
        self.dir_path.join(&self.partial)
    }
}

fn open_dir_path(path: &Path) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)
        .map(OwnedFd::from)
}

/// Check `--out` before anything is built: its directory exists and is not inside the tree
/// (`tree`: the tree's directory identity; walked up through `..`), and its name is nothing
/// yet or a regular file (replaced once the new image is complete), and no partial file of an
/// earlier build lies beside it.
fn check_output(out: &Path, tree: DirId, root: &Path) -> Result<Output> {
    let shown = out.display();
    let name = match out.file_name().and_then(|n| n.to_str()) {
        Some(n) if n != "." && n != ".." => n.to_owned(),
        _ => bail!("--out {shown} names no file (or not in UTF-8); nothing was written"),
    };
    let dir_path = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let dir = open_dir_path(&dir_path).with_context(|| {
        format!(
            "looked for the directory of --out {shown} at {}; it is not one; nothing was written",
            dir_path.display()
        )
    })?;
    // Inside the tree: the image would hold a copy of its own partial file, taken mid-build.
    let mut cur = fsat::open_dir(&dir, ".")?.context("the output directory vanished")?;
    for _ in 0..MAX_DEPTH {
        let here = id_of(&fsat::fstat(&cur)?);
        if here == tree {
            bail!(
                "--out {shown} is inside the tree {}: the image would hold a copy of itself, \
                 taken while it is written; write it outside the tree; nothing was written",
                root.display()
            );
        }
        let Some(up) = fsat::open_dir(&cur, "..")? else {
            break;
        };
        if id_of(&fsat::fstat(&up)?) == here {
            break;
        }
        cur = up;
    }
    match fsat::stat_at(&dir, &name)? {
        None => {}
        Some(st) if matches!(fsat::kind_of(&st), Kind::File(_)) => {}
        Some(st) => bail!(
            "--out {shown} is {}: hnroot writes the image as a regular file and replaces only a \
             regular file; name a file; nothing was written",
            fsat::describe(&st)
        ),
    }
    let partial = format!("{name}.partial");
    if fsat::stat_at(&dir, &partial)?.is_some() {
        bail!(
            "{} is there already: the partial file of an interrupted build of {name}? remove it \
             (if it is another file of that name, write the image elsewhere); nothing was written",
            dir_path.join(&partial).display()
        );
    }
    Ok(Output {
        dir,
        dir_path,
        name,
        partial,
    })
}

/// Bytes the tree's files occupy (allocated blocks, each inode counted once), without
/// following links or leaving the tree's filesystem (as `cp --one-file-system` copies it); and
/// whether the directory `watch` is one of the tree's.
fn tree_size(tree: &InRoot, watch: DirId) -> Result<(u64, bool)> {
    let top = fsat::open_dir(tree.fd(), ".")?.context("the tree vanished")?;
    let dev = id_of(&fsat::fstat(&top)?).0;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut contains = false;
    let mut stack = vec![(top, String::new(), 0usize)];
    while let Some((dir, path, depth)) = stack.pop() {
        if id_of(&fsat::fstat(&dir)?) == watch {
            contains = true;
        }
        let (names, _) = fsat::list(&dir, usize::MAX)
            .with_context(|| format!("cannot list {}/{path}", tree.path().display()))?;
        for name in names {
            let Some(st) = fsat::stat_at(&dir, &name)? else {
                continue;
            };
            let (d, ino) = id_of(&st);
            if d != dev {
                continue;
            }
            let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
            if st.st_nlink > 1 && !is_dir && !seen.insert(ino) {
                continue;
            }
            #[allow(clippy::unnecessary_cast)] // st_blocks' width differs between libcs.
            let blocks = st.st_blocks as u64;
            total = total.saturating_add(blocks.saturating_mul(512));
            if is_dir && depth < MAX_DEPTH {
                if let Some(sub) = fsat::open_dir(&dir, &name)? {
                    stack.push((sub, format!("{path}/{name}"), depth + 1));
                }
            }
        }
    }
    Ok((total, contains))
}

/// The tree's kernel: `boot/vmlinuz-<release>` (newest), a kernel by the one rule for boot
/// files (links followed inside the tree); and `lib/modules/<release>` with depmod's index.
struct TreeKernel {
    release: String,
    /// `boot/vmlinuz-<release>`, relative to the tree (links in it resolve inside the tree,
    /// and inside its copy alike).
    vmlinuz: String,
    /// `lib/modules/<release>`.
    modules: String,
}

fn tree_kernel(tree: &InRoot) -> Result<TreeKernel> {
    let root = tree.path().display();
    let names = tree
        .list("boot", 100_000)
        .map(|(n, _)| n)
        .unwrap_or_default();
    let release = imagebuild::pick_kernel(names.iter().map(String::as_str))
        .ok_or_else(|| {
            anyhow!(
                "looked for a kernel in {root}/boot (vmlinuz-<release>, links followed inside \
                 the tree); found none: install one in the tree (for Debian: linux-image-amd64); \
                 nothing was written"
            )
        })?
        .to_owned();
    let vmlinuz = format!("boot/vmlinuz-{release}");
    match verdict::boot_file(hnroot_linux::image::seen_in_root(tree, &vmlinuz)) {
        BootFile::Usable => {}
        BootFile::Missing(problem) => bail!(
            "{root}/{vmlinuz} {problem} (links followed inside the tree): it is not a kernel; \
             nothing was written"
        ),
        BootFile::Unreadable => bail!("{root}/{vmlinuz} cannot be read; nothing was written"),
    }
    let modules = format!("lib/modules/{release}");
    if tree.kind(&modules).ok() != Some(Kind::Dir) {
        bail!(
            "the tree has no modules for kernel {release} (looked for {root}/{modules}, links \
             followed inside the tree); nothing was written"
        );
    }
    if !matches!(
        tree.kind(&format!("{modules}/modules.dep")),
        Ok(Kind::File(_))
    ) {
        bail!(
            "{root}/{modules} has no modules.dep: run `depmod {release}` in the tree (the image \
             build leaves the tree as it is); nothing was written"
        );
    }
    Ok(TreeKernel {
        release,
        vmlinuz,
        modules,
    })
}

/// `IMAGE_ID IMAGE_VERSION`, else `PRETTY_NAME`, from the tree's os-release.
fn os_version(tree: &InRoot) -> Option<String> {
    let os = hnroot_linux::image::os_release_in(tree)?;
    os.version().or(os.pretty_name)
}

/// A mounted loop device over the image, unmounted and detached when dropped.
struct MountedImage {
    mnt: tempfile::TempDir,
    _lo: loopdev::LoopDevice,
}

impl Drop for MountedImage {
    fn drop(&mut self) {
        let _ = mounts::umount(self.mnt.path(), 0);
    }
}

/// An error on `rel` inside the image, saying where.
fn in_image(rel: &str, e: std::io::Error) -> anyhow::Error {
    let hint = match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR) => {
            " (a directory on the way is missing, or is a symbolic link to where the tree has \
             nothing: links are followed inside the tree, never into this machine's files)"
        }
        _ => "",
    };
    anyhow!("/{} in the image: {e}{hint}", rel.trim_start_matches('/'))
}

/// Whether the tree's initrd `rel` contains hnroot-init (lsinitramfs lists it). It is read
/// through the file layer into a scratch copy, which lsinitramfs reads.
fn initrd_has_hnroot(tree: &InRoot, rel: &str) -> Result<bool> {
    let mut src = tree
        .open_file(rel)
        .map_err(|e| anyhow!("{}/{rel}: {e}", tree.path().display()))?;
    let mut copy = tempfile::NamedTempFile::new().context("cannot make a scratch file")?;
    std::io::copy(&mut src, copy.as_file_mut())
        .with_context(|| format!("cannot read {}/{rel}", tree.path().display()))?;
    copy.as_file_mut().flush()?;
    let listing = run(Command::new("lsinitramfs").arg(copy.path()))?;
    Ok(listing
        .lines()
        .any(|l| l.trim_end().ends_with("usr/sbin/hnroot-init")))
}

fn rewrite_fstab(image: &InRoot, notes: &mut Vec<String>) -> Result<()> {
    let old = match image.read("etc/fstab", MAX_FSTAB) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(ReadError::Absent) => String::new(),
        Err(e) => bail!("/etc/fstab in the tree: {e}: hnroot rewrites it (fix the tree)"),
    };
    let mut out = String::new();
    imagebuild::rewrite_fstab(&old, &mut out, |line| {
        notes.push(format!(
            "fstab: commented out `{line}` (hnroot mounts the root, the ESP and hostpart)"
        ))
    })
    .map_err(|_| anyhow!("cannot compose the new fstab"))?;
    image
        .write("etc/fstab", out.as_bytes(), 0o644)
        .map_err(|e| in_image("etc/fstab", e))?;
    notes.push(format!(
        "fstab: {} and {} by label",
        layout::HOSTPART_MOUNT,
        layout::ESP_MOUNT
    ));
    // hostpart is mounted by the initramfs and holds the root's writable layer until the final
    // shutdown: without default dependencies (Conflicts=umount.target) systemd leaves it to
    // systemd-shutdown, which syncs it and remounts it read-only, instead of failing to unmount
    // it in the ordinary shutdown (a FAILED line on every shutdown). `x-initrd.mount` would
    // say the same, but systemd reads a mounted filesystem's options from the kernel, which
    // never sees that one.
    let unit = mount_unit_name(layout::HOSTPART_MOUNT);
    let dropin = format!("etc/systemd/system/{unit}.d/hnroot.conf");
    image
        .write(
            &dropin,
            format!(
                "# hnroot: {hp} is mounted by the initramfs and holds the root's writable layer: it\n\
                 # stays mounted until the final shutdown (systemd-shutdown syncs it and remounts it\n\
                 # read-only).\n\
                 [Unit]\nDefaultDependencies=no\nBefore=local-fs.target\n",
                hp = layout::HOSTPART_MOUNT
            )
            .as_bytes(),
            0o644,
        )
        .map_err(|e| in_image(&dropin, e))?;
    notes.push(format!(
        "{unit}: left mounted until the final shutdown (/{dropin})"
    ));
    Ok(())
}

/// The drop-ins of [`SYSTEMD_DROPINS`], each unless the tree has a file of that name already.
fn add_systemd_dropins(image: &InRoot, notes: &mut Vec<String>) -> Result<()> {
    for (rel, text) in SYSTEMD_DROPINS {
        if image.kind_here(rel).map_err(|e| in_image(rel, e))? != Kind::Absent {
            notes.push(format!("/{rel}: the tree's own kept"));
            continue;
        }
        if let Some((dir, _)) = rel.rsplit_once('/') {
            image.make_dir(dir).map_err(|e| in_image(dir, e))?;
        }
        image
            .write(rel, text.as_bytes(), 0o644)
            .map_err(|e| in_image(rel, e))?;
    }
    notes.push(
        "systemd: health checks end after 15 minutes (boot-complete.target JobTimeoutSec), \
         hardware watchdog on (RuntimeWatchdogSec=1min, used when the machine has one)"
            .to_owned(),
    );
    Ok(())
}

/// systemd's mount unit name for an absolute path without characters to escape (`/hostpart`
/// -> `hostpart.mount`, `/boot/loader` -> `boot-loader.mount`).
fn mount_unit_name(path: &str) -> String {
    format!("{}.mount", path.trim_matches('/').replace('/', "-"))
}

fn install_hnroot_files(req: &BuildRequest, image: &InRoot, notes: &mut Vec<String>) -> Result<()> {
    let cli = "usr/sbin/hnroot";
    let mut src = File::open(&req.cli)
        .with_context(|| format!("cannot read the hnroot CLI {}", req.cli.display()))?;
    image
        .write_from(cli, &mut src, 0o755, MAX_CLI)
        .map_err(|e| in_image(cli, e))?;
    let units = "usr/lib/systemd/system";
    let wants = "etc/systemd/system/multi-user.target.wants";
    image.make_dir(wants).map_err(|e| in_image(wants, e))?;
    for (name, text) in UNITS {
        let unit = format!("{units}/{name}");
        image
            .write(&unit, text.as_bytes(), 0o644)
            .map_err(|e| in_image(&unit, e))?;
        let link = format!("{wants}/{name}");
        if image.kind_here(&link).map_err(|e| in_image(&link, e))? == Kind::Absent {
            image
                .symlink(&format!("/{unit}"), &link)
                .map_err(|e| in_image(&link, e))?;
        }
    }
    let keys = "etc/hnroot/keys";
    image.make_dir(keys).map_err(|e| in_image(keys, e))?;
    notes.push(format!(
        "the tree lacks the hnroot package: added /usr/sbin/hnroot (from {}), {} (enabled), \
         /etc/hnroot/keys",
        req.cli.display(),
        UNITS.map(|(n, _)| n).join(", ")
    ));
    Ok(())
}

/// Build the image `req` describes; `say` gets a line per phase.
pub fn build(req: &BuildRequest, say: &mut dyn FnMut(&str)) -> Result<Built> {
    let root = &req.root;
    let tree = match InRoot::open(root) {
        Ok(t) => t,
        Err(e) => bail!(
            "looked for the tree at {}; it is not a directory ({e}); nothing was written",
            root.display()
        ),
    };
    let tree_id = id_of(&fsat::fstat(tree.fd())?);
    let out = check_output(&req.out, tree_id, root)?;
    let out_id = id_of(&fsat::fstat(&out.dir)?);
    let kernel = tree_kernel(&tree)?;
    let tree_initrd = tree_initrd(req, &tree, &kernel)?;
    let use_tree = tree_initrd.is_some();
    let (content, holds_out) = tree_size(&tree, out_id)?;
    if holds_out {
        bail!(
            "--out {} is inside the tree {} (through a mount of one of its directories): the \
             image would hold a copy of itself, taken while it is written; write it outside the \
             tree; nothing was written",
            req.out.display(),
            root.display()
        );
    }
    let size = imagebuild::image_size(content, req.size).map_err(|e| anyhow!("{e}"))?;
    let version = os_version(&tree);
    say(&format!(
        "tree {}: {} MiB, kernel {}, {}; image {} MiB {}",
        root.display(),
        content.div_ceil(MIB),
        kernel.release,
        version.as_deref().unwrap_or("no os-release"),
        size / MIB,
        req.fs.as_str()
    ));

    let image = fsat::create_exclusive(&out.dir, &out.partial, 0o644).with_context(|| {
        format!(
            "cannot create {} (exclusively); nothing was written",
            out.partial_path().display()
        )
    })?;
    let result = image
        .set_len(size)
        .with_context(|| format!("cannot size {}", out.partial_path().display()))
        .and_then(|()| {
            fill(
                req,
                &tree,
                &image,
                &out.partial_path(),
                &kernel,
                tree_initrd.as_deref(),
                say,
            )
        })
        .and_then(|found| {
            let bootable = judge_built(&image)?;
            fsat::rename(&out.dir, &out.partial, &out.name, true)
                .and_then(|()| fsat::sync_dir(&out.dir))
                .with_context(|| {
                    format!(
                        "cannot rename {} to {}",
                        out.partial_path().display(),
                        req.out.display()
                    )
                })?;
            Ok((found, bootable))
        });
    let ((mut notes, leftovers), bootable) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = fsat::unlink(&out.dir, &out.partial);
            return Err(e);
        }
    };
    notes.sort();
    Ok(Built {
        uuid: bootable.uuid.to_string(),
        size,
        content,
        kernel: kernel.release.clone(),
        initramfs: if use_tree {
            format!(
                "the tree's initrd.img-{} (hnroot integration)",
                kernel.release
            )
        } else {
            "hnroot's own (hnroot-init with the tree's modules)".to_owned()
        },
        version,
        notes,
        leftovers,
    })
}

/// The tree's own initrd (`boot/initrd.img-RELEASE`) when the image boots with it, or `None`
/// for hnroot's own initramfs (as `--initramfs` says; by default the tree's when the tree has
/// hnroot's initramfs integration); refused when the choice cannot be honoured.
fn tree_initrd(req: &BuildRequest, tree: &InRoot, kernel: &TreeKernel) -> Result<Option<String>> {
    let has_integration = matches!(tree.kind(ITOOLS_HOOK), Ok(Kind::File(_)))
        || tree.kind(DRACUT_MODULE).ok() == Some(Kind::Dir);
    let initrd = format!("boot/initrd.img-{}", kernel.release);
    let present = matches!(tree.kind(&initrd), Ok(Kind::File(_)));
    let use_tree = match (req.initramfs, present) {
        (InitramfsChoice::Hnroot, _) => false,
        (InitramfsChoice::Tree, false) => {
            bail!("--initramfs tree: the tree has no {initrd}; nothing was written")
        }
        (InitramfsChoice::Tree, true) => true,
        (InitramfsChoice::Auto, true) => has_integration,
        (InitramfsChoice::Auto, false) => false,
    };
    if use_tree {
        if !initrd_has_hnroot(tree, &initrd)? {
            bail!(
                "{}/{initrd} holds no hnroot-init: it was made without hnroot's initramfs \
                 integration; run update-initramfs (or dracut) in the tree after installing \
                 hnroot, or pass --initramfs hnroot; nothing was written",
                req.root.display()
            );
        }
        return Ok(Some(initrd));
    }
    if !req.hnroot_init.is_file() {
        bail!(
            "looked for hnroot-init at {} (for hnroot's own initramfs); it is not there: install \
             the hnroot package or pass --init FILE; nothing was written",
            req.hnroot_init.display()
        );
    }
    Ok(None)
}

/// The built image judged as GRUB, the initramfs and `hnroot stage` judge it: bootable, or
/// the build fails saying why.
fn judge_built(image: &File) -> Result<verdict::Bootable> {
    let judged = hnroot_linux::image::judge_file(image, &hnroot_linux::image::Inspect::default());
    match judged.verdict {
        Verdict::Bootable(b) => Ok(b),
        other => bail!(
            "the built image is not bootable ({}): {other}; it is removed",
            other.code()
        ),
    }
}

fn fill(
    req: &BuildRequest,
    tree: &InRoot,
    file: &File,
    path: &Path,
    kernel: &TreeKernel,
    tree_initrd: Option<&str>,
    say: &mut dyn FnMut(&str),
) -> Result<(Vec<String>, Vec<hnroot_linux::sysprep::Leftover>)> {
    let mut notes = Vec::new();
    let has_package = matches!(tree.kind(PACKAGE_RECORD), Ok(Kind::File(_)));
    let epoch = match req.epoch {
        Some(e) => e,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    let epoch = i64::try_from(epoch).map_err(|_| {
        anyhow!(
            "SOURCE_DATE_EPOCH={epoch} is past any time a filesystem holds; nothing was written"
        )
    })?;
    let staging = Staging::new(tree)?;
    let m = staging.merged.as_path();
    let image = InRoot::open(m).context("cannot open the staged tree")?;
    add_boot_files(req, &image, m, kernel, tree_initrd, &mut notes, say)?;
    add_layout(&image, &mut notes)?;
    rewrite_fstab(&image, &mut notes)?;
    add_systemd_dropins(&image, &mut notes)?;
    if !has_package {
        install_hnroot_files(req, &image, &mut notes)?;
    }
    // One host's identity copied from the tree (the build host's name, SSH host keys made by a
    // package's postinst): reported, for `hnroot sysprep` to remove before publishing.
    let leftovers = hnroot_linux::sysprep::leftovers(m)
        .with_context(|| "cannot check the new image for host-specific files")?;
    drop(image);
    let stamped = staging.stamp(epoch)?;
    notes.push(format!(
        "{stamped} paths hnroot added or changed stamped with {} (SOURCE_DATE_EPOCH{})",
        epoch,
        if req.epoch.is_some() {
            ""
        } else {
            " not set: now"
        }
    ));
    match req.fs {
        HostpartFs::Ext4 => {
            say("writing the ext4 filesystem from the staged tree (mke2fs -d)");
            crate::e2repro::write(path, m, req.uuid.as_ref(), epoch, &staging.root_meta)?;
        }
        HostpartFs::Btrfs | HostpartFs::Xfs => {
            crate::disk::make_fs_with(path, req.fs, "hn-root", req.uuid.as_ref())?;
            copy_through_mount(req.fs, file, m, say)?;
        }
    }
    drop(staging);
    file.sync_all()?;
    Ok((notes, leftovers))
}

/// btrfs and XFS: the filesystem made by mkfs, loop-mounted and the staged tree copied in by
/// the kernel (`cp -a`), whose block allocation and times are its own: not byte-reproducible.
fn copy_through_mount(
    fs: HostpartFs,
    file: &File,
    staged: &Path,
    say: &mut dyn FnMut(&str),
) -> Result<()> {
    let lo = loopdev::attach(Path::new("/dev"), file, "hnroot-image-build", true).context(
        "cannot attach the new image to a loop device (hnroot image build runs as root)",
    )?;
    if let loopdev::LoopIo::Buffered(_) = lo.io {
        say(&format!("{}: {}", lo.node.display(), lo.io));
    }
    let mnt = tempfile::Builder::new()
        .prefix("hnroot-image-")
        .tempdir()
        .context("cannot make a mount point")?;
    mounts::mount(&lo.node, mnt.path(), Some(fs.as_str()), 0, None)?;
    let mounted = MountedImage { mnt, _lo: lo };
    let m = mounted.mnt.path();
    say("copying the staged tree (cp -a)");
    let mut src = staged.as_os_str().to_owned();
    src.push("/.");
    run(Command::new("cp")
        .args(["-a", "--sparse=always", "--one-file-system"])
        .arg(&src)
        .arg(m))?;
    let image = InRoot::open(m).context("cannot open the mounted image")?;
    image.sync_fs().context("syncfs of the new image")?;
    Ok(())
}

/// The tree as the image will hold it, without writing the tree: the tree's own filesystem
/// (a read-only bind mount of the directory held open, so mounts inside the tree are not
/// carried, as `cp --one-file-system` did not carry them) under an overlay whose upper layer,
/// a scratch directory, receives what hnroot adds or changes. Unmounted when dropped.
struct Staging {
    /// Holds `lower`, `upper`, `work` and `merged`.
    _scratch: tempfile::TempDir,
    lower: PathBuf,
    upper: PathBuf,
    merged: PathBuf,
    /// Mode, owner of the tree's top directory (the image's root directory takes them).
    root_meta: RootMeta,
    /// Which of `lower`, `merged` are mounted (unmounted in reverse).
    mounted: Vec<PathBuf>,
}

/// The tree's top directory: its permission bits and owner.
#[derive(Clone, Copy, Debug)]
pub struct RootMeta {
    /// `st_mode & 0o7777`.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

impl Staging {
    fn new(tree: &InRoot) -> Result<Staging> {
        let scratch = tempfile::Builder::new()
            .prefix("hnroot-stage-")
            .tempdir()
            .context("cannot make a scratch directory to stage the tree in")?;
        let base = scratch.path().to_owned();
        if base
            .to_str()
            .is_none_or(|p| p.contains([',', ':', '\\', ' ']))
        {
            bail!(
                "the scratch directory {} holds a character overlayfs options cannot carry \
                 (',', ':', '\\', a space, or not UTF-8): set TMPDIR to a plain path; nothing \
                 was written",
                base.display()
            );
        }
        let st = fsat::fstat(tree.fd())?;
        let root_meta = RootMeta {
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
        };
        let mut staging = Staging {
            _scratch: scratch,
            lower: base.join("lower"),
            upper: base.join("upper"),
            merged: base.join("merged"),
            root_meta,
            mounted: Vec::new(),
        };
        for d in [
            &staging.lower,
            &staging.upper,
            &base.join("work"),
            &staging.merged,
        ] {
            std::fs::create_dir(d).with_context(|| format!("cannot make {}", d.display()))?;
        }
        // The image's root directory is the upper layer's: it takes the tree's mode and owner.
        std::os::unix::fs::chown(&staging.upper, Some(st.st_uid), Some(st.st_gid))
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(
                    &staging.upper,
                    std::fs::Permissions::from_mode(root_meta.mode),
                )
            })
            .with_context(|| format!("cannot set the mode of {}", staging.upper.display()))?;
        // The directory held open, not its path again: nothing can swap it in between.
        {
            use std::os::fd::AsRawFd;
            let held = PathBuf::from(format!("/proc/self/fd/{}", tree.fd().as_raw_fd()));
            mounts::bind(&held, &staging.lower)
                .with_context(|| format!("cannot bind-mount the tree {}", tree.path().display()))?;
        }
        staging.mounted.push(staging.lower.clone());
        mounts::remount(&staging.lower, libc::MS_BIND | libc::MS_RDONLY)
            .context("cannot make the tree's bind mount read-only")?;
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            staging.lower.display(),
            staging.upper.display(),
            base.join("work").display()
        );
        mounts::mount(
            Path::new("overlay"),
            &staging.merged,
            Some("overlay"),
            0,
            Some(&options),
        )
        .context("cannot stage the tree under an overlay (is overlayfs available?)")?;
        staging.mounted.push(staging.merged.clone());
        Ok(staging)
    }

    /// Stamp every path in the upper layer (what hnroot added or changed, and the directories
    /// holding them) with `epoch` as its access and modification time; how many.
    fn stamp(&self, epoch: i64) -> Result<usize> {
        let top = fsat::open_root(&self.upper)?;
        let mut count = 0usize;
        let mut stack = vec![(top, 0usize)];
        while let Some((dir, depth)) = stack.pop() {
            let (names, _) = fsat::list(&dir, usize::MAX)?;
            for name in names {
                let Some(st) = fsat::stat_at(&dir, &name)? else {
                    continue;
                };
                if st.st_mode & libc::S_IFMT == libc::S_IFDIR && depth < MAX_DEPTH {
                    if let Some(sub) = fsat::open_dir(&dir, &name)? {
                        stack.push((sub, depth + 1));
                    }
                }
                fsat::set_times(&dir, &name, epoch)
                    .with_context(|| format!("cannot stamp {name} in {}", self.upper.display()))?;
                count += 1;
            }
        }
        // The top directory (the image's root) too.
        fsat::set_times(&fsat::open_root(&self.upper)?, ".", epoch)?;
        Ok(count)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        while let Some(m) = self.mounted.pop() {
            if mounts::umount(&m, 0).is_err() {
                let _ = mounts::umount(&m, libc::MNT_DETACH);
            }
        }
    }
}

/// `/boot/kernel` (a hard link of the tree's) and `/boot/initramfs` (a hard link of the tree's
/// initrd, or hnroot's own built for the tree's kernel and modules).
fn add_boot_files(
    req: &BuildRequest,
    image: &InRoot,
    m: &Path,
    kernel: &TreeKernel,
    tree_initrd: Option<&str>,
    notes: &mut Vec<String>,
    say: &mut dyn FnMut(&str),
) -> Result<()> {
    image.make_dir("boot").map_err(|e| in_image("boot", e))?;
    image
        .hard_link(&kernel.vmlinuz, layout::KERNEL_PATH)
        .map_err(|e| in_image(layout::KERNEL_PATH, e))?;
    notes.push(format!(
        "/{}: a hard link of /{} (links in the tree resolved inside it)",
        layout::KERNEL_PATH,
        kernel.vmlinuz
    ));
    if let Some(initrd) = tree_initrd {
        image
            .hard_link(initrd, layout::INITRAMFS_PATH)
            .map_err(|e| in_image(layout::INITRAMFS_PATH, e))?;
        notes.push(format!(
            "/{}: a hard link of /{initrd}",
            layout::INITRAMFS_PATH
        ));
    } else {
        say("building hnroot's own initramfs for the tree's kernel");
        let modules = ModulesDir::in_root(m, &kernel.modules)?;
        let (_, missing) =
            crate::modules::modules_in_some(&modules, &kernel.release, BOOT_MODULES)?;
        let wanted: Vec<String> = BOOT_MODULES
            .iter()
            .filter(|w| !missing.iter().any(|m| m == *w))
            .map(|s| (*s).to_owned())
            .collect();
        let (bytes, built) = initramfs::archive(&Spec {
            init: req.hnroot_init.clone(),
            modules_dir: Some(PathBuf::from(&kernel.modules)),
            modules_root: Some(m.to_owned()),
            wanted,
            busybox: None,
            compress: Compress::Zstd,
        })?;
        image
            .write(layout::INITRAMFS_PATH, &bytes, 0o644)
            .map_err(|e| in_image(layout::INITRAMFS_PATH, e))?;
        notes.push(format!(
            "/{}: hnroot's own, {} KiB, {} modules{}",
            layout::INITRAMFS_PATH,
            built.compressed_bytes.div_ceil(1024),
            built.modules.len(),
            if missing.is_empty() {
                String::new()
            } else {
                format!(" (kernel {} has no {})", kernel.release, missing.join(", "))
            }
        ));
    }
    Ok(())
}

/// The mount points of hostpart and the ESP, and `/data0` as a link into hostpart.
fn add_layout(image: &InRoot, notes: &mut Vec<String>) -> Result<()> {
    for dir in [layout::HOSTPART_MOUNT, layout::ESP_MOUNT] {
        image.make_dir(dir).map_err(|e| in_image(dir, e))?;
    }
    let data0 = layout::DATA_LINK.trim_start_matches('/');
    let want = format!("{}/{}", layout::HOSTPART_MOUNT, layout::DATA_DIR);
    match image.kind_here(data0).map_err(|e| in_image(data0, e))? {
        Kind::Absent => {
            image
                .symlink(&want, data0)
                .map_err(|e| in_image(data0, e))?;
            notes.push(format!("{} -> {want}", layout::DATA_LINK));
        }
        Kind::Link if image.read_link(data0).ok().flatten().as_deref() == Some(want.as_str()) => {}
        _ => bail!(
            "the tree has {} already, and not as a link to {want}: move it away; nothing was \
             written",
            layout::DATA_LINK
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn mount_unit_names_are_systemds() {
        assert_eq!(mount_unit_name(layout::HOSTPART_MOUNT), "hostpart.mount");
        assert_eq!(mount_unit_name(layout::ESP_MOUNT), "boot-loader.mount");
    }

    #[test]
    fn the_kernel_is_found_through_links_inside_the_tree_only() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let r = t.path();
        // The host has a kernel and modules where the tree's links point; the tree has none.
        fs::create_dir_all(outside.path().join("boot")).unwrap();
        fs::write(outside.path().join("boot/vmlinuz-6.1.0-9-amd64"), b"k").unwrap();
        fs::create_dir_all(outside.path().join("modules/6.1.0-9-amd64")).unwrap();
        fs::write(
            outside.path().join("modules/6.1.0-9-amd64/modules.dep"),
            b"",
        )
        .unwrap();
        std::os::unix::fs::symlink(outside.path().join("boot"), r.join("boot")).unwrap();
        let tree = InRoot::open(r).unwrap();
        let err = tree_kernel(&tree).err().unwrap().to_string();
        assert!(err.contains("found none"), "{err}");
        // Relative links up and out stop at the tree's root.
        fs::remove_file(r.join("boot")).unwrap();
        fs::create_dir_all(r.join("boot")).unwrap();
        std::os::unix::fs::symlink(
            "../../../../../../../../../../".to_owned()
                + outside
                    .path()
                    .join("boot/vmlinuz-6.1.0-9-amd64")
                    .to_str()
                    .unwrap(),
            r.join("boot/vmlinuz-6.1.0-9-amd64"),
        )
        .unwrap();
        let err = tree_kernel(&tree).err().unwrap().to_string();
        assert!(
            err.contains("boot/vmlinuz-6.1.0-9-amd64 is missing (links followed inside the tree)"),
            "{err}"
        );
        // An absolute link is the tree's own root: inside the tree it leads to a kernel.
        fs::remove_file(r.join("boot/vmlinuz-6.1.0-9-amd64")).unwrap();
        fs::create_dir_all(r.join("kernels")).unwrap();
        fs::write(r.join("kernels/k"), b"kernel").unwrap();
        std::os::unix::fs::symlink("/kernels/k", r.join("boot/vmlinuz-6.1.0-9-amd64")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("modules"),
            r.join("lib-modules-elsewhere"),
        )
        .unwrap();
        fs::create_dir_all(r.join("lib")).unwrap();
        std::os::unix::fs::symlink("/lib-modules-elsewhere", r.join("lib/modules")).unwrap();
        let err = tree_kernel(&tree).err().unwrap().to_string();
        assert!(err.contains("no modules for kernel 6.1.0-9-amd64"), "{err}");
    }

    #[test]
    fn a_kernel_that_is_no_kernel_is_refused_by_the_one_rule() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("boot")).unwrap();
        let tree = InRoot::open(r).unwrap();
        let k = r.join("boot/vmlinuz-6.1.0-9-amd64");
        fs::write(&k, b"").unwrap();
        let err = tree_kernel(&tree).err().unwrap().to_string();
        assert!(err.contains("is an empty file (0 bytes)"), "{err}");
        fs::remove_file(&k).unwrap();
        fs::create_dir(&k).unwrap();
        let err = tree_kernel(&tree).err().unwrap().to_string();
        assert!(err.contains("is a directory, not a file"), "{err}");
        fs::remove_dir(&k).unwrap();
        std::os::unix::fs::symlink("vmlinuz-6.1.0-9-amd64", &k).unwrap();
        let err = tree_kernel(&tree).err().unwrap().to_string();
        assert!(err.contains("is a symbolic link that loops"), "{err}");
    }

    #[test]
    fn a_tree_without_a_kernel_is_refused_naming_what_is_missing() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("boot")).unwrap();
        let tree = InRoot::open(t.path()).unwrap();
        let err = tree_kernel(&tree).err().unwrap().to_string();
        assert!(
            err.contains("vmlinuz-<release>") && err.contains("nothing was written"),
            "{err}"
        );
        fs::write(t.path().join("boot/vmlinuz-6.1.0-9-amd64"), b"k").unwrap();
        let err = tree_kernel(&tree).err().unwrap().to_string();
        assert!(
            err.contains("no modules for kernel 6.1.0-9-amd64"),
            "{err:#}"
        );
    }

    #[test]
    fn the_output_is_checked_before_anything_is_built() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("tree");
        fs::create_dir_all(root.join("srv/out")).unwrap();
        let tree = InRoot::open(&root).unwrap();
        let id = id_of(&fsat::fstat(tree.fd()).unwrap());
        let err = |out: &Path| check_output(out, id, &root).err().unwrap().to_string();
        let e = err(&root.join("srv/out/v.img"));
        assert!(e.contains("inside the tree"), "{e}");
        std::os::unix::fs::symlink(root.join("srv"), t.path().join("into-tree")).unwrap();
        let e = err(&t.path().join("into-tree/out/v.img"));
        assert!(e.contains("inside the tree"), "through a link: {e}");
        fs::create_dir(t.path().join("dir.img")).unwrap();
        let e = err(&t.path().join("dir.img"));
        assert!(e.contains("is a directory"), "{e}");
        let e = err(Path::new("/dev/null"));
        assert!(e.contains("is a character device"), "{e}");
        let e = err(&t.path().join("nowhere/v.img"));
        assert!(e.contains("looked for the directory of --out"), "{e}");
        fs::write(t.path().join("v.img.partial"), b"x").unwrap();
        let e = err(&t.path().join("v.img"));
        assert!(e.contains("v.img.partial is there already"), "{e}");
        // Another output's partial file is nobody's business.
        fs::write(t.path().join("data.img.partial"), b"x").unwrap();
        let o = check_output(&t.path().join("data.bin"), id, &root).unwrap();
        assert_eq!(o.partial, "data.bin.partial");
        fs::write(t.path().join("old.img"), b"x").unwrap();
        check_output(&t.path().join("old.img"), id, &root).unwrap();
    }
}
