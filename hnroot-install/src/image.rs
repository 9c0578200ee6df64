//! `hnroot image build`: a root image from a directory tree (a stock `mmdebstrap` tree with a
//! Debian kernel in `/boot`, or an installation copied out). The tree is never changed: a new
//! filesystem is made in a file, loop-mounted, the tree copied into it with `cp -a` (owners,
//! modes, links, hard links, extended attributes), and what hnroot needs is added to the copy:
//! `/boot/kernel` and `/boot/initramfs` (hard links to the tree's newest kernel and its
//! hnroot-capable initrd, or hnroot's own initramfs built for that kernel), `/hostpart`,
//! `/data0 -> /hostpart/data`, fstab lines for the ESP and hostpart, and hnroot's CLI and units
//! when the tree lacks the package. The image is written under a temporary name and renamed
//! into place only when complete.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use hnroot_core::imagebuild::{self, MIB};
use hnroot_core::install::HostpartFs;
use hnroot_core::layout;
use hnroot_linux::{loopdev, mounts};

use crate::initramfs::{self, Compress, Spec};
use crate::modules::BOOT_MODULES;
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

/// Bytes the tree's files occupy (allocated blocks, each inode counted once), without
/// following links or crossing into other filesystems.
fn tree_size(root: &Path) -> Result<u64> {
    let dev = fs::symlink_metadata(root)?.dev();
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let entries =
            fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for entry in entries {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.dev() != dev {
                continue;
            }
            if meta.nlink() > 1 && !meta.is_dir() && !seen.insert(meta.ino()) {
                continue;
            }
            total = total.saturating_add(meta.blocks().saturating_mul(512));
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(total)
}

/// The tree's kernel: `boot/vmlinuz-<release>` (newest), resolved inside the tree, a regular
/// file; and `lib/modules/<release>` with depmod's index.
struct TreeKernel {
    release: String,
    /// The resolved path of the kernel, relative to the tree.
    vmlinuz: PathBuf,
    modules: PathBuf,
}

/// Resolve `rel` inside `root` (symlinks as the image will see them) to a path relative to
/// `root`, and check what it is.
fn resolve_in(root: &Path, rel: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    let mut pending: Vec<std::ffi::OsString> = rel
        .components()
        .rev()
        .map(|c| c.as_os_str().to_owned())
        .collect();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match part.to_str() {
            Some("/") | Some(".") | Some("") => continue,
            Some("..") => {
                out.pop();
                continue;
            }
            _ => {}
        }
        let candidate = out.join(&part);
        let meta = fs::symlink_metadata(root.join(&candidate))
            .with_context(|| format!("{} does not exist in the tree", candidate.display()))?;
        if meta.file_type().is_symlink() {
            hops += 1;
            if hops > 40 {
                bail!("{}: too many levels of symbolic links", rel.display());
            }
            let target = fs::read_link(root.join(&candidate))?;
            if target.is_absolute() {
                out = PathBuf::new();
            }
            pending.extend(target.components().rev().map(|c| c.as_os_str().to_owned()));
        } else {
            out = candidate;
        }
    }
    Ok(out)
}

fn tree_kernel(root: &Path) -> Result<TreeKernel> {
    let boot = root.join("boot");
    let names: Vec<String> = fs::read_dir(&boot)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    let release = imagebuild::pick_kernel(names.iter().map(String::as_str))
        .ok_or_else(|| {
            anyhow!(
                "looked for a kernel in {} (vmlinuz-<release>); found none: install one in the \
                 tree (for Debian: linux-image-amd64); nothing was written",
                boot.display()
            )
        })?
        .to_owned();
    let vmlinuz = resolve_in(root, Path::new(&format!("boot/vmlinuz-{release}")))?;
    let meta = fs::metadata(root.join(&vmlinuz))?;
    if !meta.is_file() || meta.len() == 0 {
        bail!(
            "boot/vmlinuz-{release} resolves to {} in the tree, which is not a kernel file",
            vmlinuz.display()
        );
    }
    let modules = resolve_in(root, Path::new(&format!("lib/modules/{release}")))
        .with_context(|| format!("the tree has no modules for kernel {release}"))?;
    if !root.join(&modules).join("modules.dep").is_file() {
        bail!(
            "{} has no modules.dep: run `depmod {release}` in the tree (the image build leaves \
             the tree as it is); nothing was written",
            root.join(&modules).display()
        );
    }
    Ok(TreeKernel {
        release,
        vmlinuz,
        modules,
    })
}

/// `IMAGE_ID IMAGE_VERSION`, else `PRETTY_NAME`, from the tree's os-release.
fn os_version(root: &Path) -> Option<String> {
    let rel = resolve_in(root, Path::new("etc/os-release"))
        .or_else(|_| resolve_in(root, Path::new("usr/lib/os-release")))
        .ok()?;
    let text = fs::read_to_string(root.join(rel)).ok()?;
    let field = |k: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(k)?
                .strip_prefix('=')
                .map(|v| v.trim_matches('"').to_owned())
        })
    };
    match (field("IMAGE_ID"), field("IMAGE_VERSION")) {
        (Some(id), Some(v)) => Some(format!("{id} {v}")),
        (None, Some(v)) => Some(v),
        _ => field("PRETTY_NAME"),
    }
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

fn mkfs(fs: HostpartFs, file: &Path) -> Result<()> {
    match fs {
        HostpartFs::Ext4 => run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "hn-root"])
            .arg(file))?,
        HostpartFs::Btrfs => run(Command::new("mkfs.btrfs")
            .args(["-q", "-f", "-L", "hn-root"])
            .arg(file))?,
        HostpartFs::Xfs => run(Command::new("mkfs.xfs")
            .args(["-q", "-f", "-L", "hn-root"])
            .arg(file))?,
    };
    Ok(())
}

/// `linkat` the file at `from` (inside `mnt`) to `to` (inside `mnt`), replacing `to`.
fn hard_link(mnt: &Path, from: &Path, to: &Path) -> Result<()> {
    let dst = mnt.join(to);
    if fs::symlink_metadata(&dst).is_ok() {
        fs::remove_file(&dst).with_context(|| format!("cannot replace {}", to.display()))?;
    }
    fs::hard_link(mnt.join(from), &dst)
        .with_context(|| format!("cannot link {} to {}", to.display(), from.display()))
}

/// Whether the initrd at `path` contains hnroot-init (lsinitramfs lists it).
fn initrd_has_hnroot(path: &Path) -> Result<bool> {
    let listing = run(Command::new("lsinitramfs").arg(path))?;
    Ok(listing
        .lines()
        .any(|l| l.trim_end().ends_with("usr/sbin/hnroot-init")))
}

fn rewrite_fstab(mnt: &Path, notes: &mut Vec<String>) -> Result<()> {
    let path = mnt.join("etc/fstab");
    let old = fs::read_to_string(&path).unwrap_or_default();
    let ours = [
        "/",
        layout::ESP_MOUNT,
        layout::HOSTPART_MOUNT,
        "/boot/efi",
        "/boot",
    ];
    let mut out = String::new();
    for line in old.lines() {
        let mount_point = line.split_whitespace().nth(1);
        let keep = line.trim_start().starts_with('#')
            || line.trim().is_empty()
            || mount_point.is_none_or(|m| !ours.contains(&m));
        if keep {
            out.push_str(line);
            out.push('\n');
        } else {
            notes.push(format!(
                "fstab: commented out `{line}` (hnroot mounts the root, the ESP and hostpart)"
            ));
            out.push_str(&format!("# (hnroot image build) {line}\n"));
        }
    }
    // The ESP keeps systemd's device timeout (90 s): its device unit appears only once udevd runs
    // in the real root, which under a slow start (QEMU without KVM: about 25 s after the job
    // began) outlasted the 10 s this once had, and /boot/loader was never mounted. `nofail`
    // already keeps the boot from waiting for it.
    out.push_str(&format!(
        "# hnroot: the root is an image on hostpart, mounted by the initramfs with a writable layer\n\
         # on hostpart; hostpart itself is already mounted at {hp} when systemd starts.\n\
         LABEL={hl} {hp} auto defaults,nofail 0 0\n\
         LABEL={el} {ep} vfat umask=0077,nofail 0 0\n",
        hp = layout::HOSTPART_MOUNT,
        hl = layout::HOSTPART_LABEL,
        el = layout::ESP_LABEL,
        ep = layout::ESP_MOUNT,
    ));
    fs::write(&path, out).with_context(|| format!("cannot write {}", path.display()))?;
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
    let dropin = mnt.join(format!("etc/systemd/system/{unit}.d/hnroot.conf"));
    fs::create_dir_all(dropin.parent().context("a drop-in has a directory")?)?;
    fs::write(
        &dropin,
        format!(
            "# hnroot: {hp} is mounted by the initramfs and holds the root's writable layer: it\n\
             # stays mounted until the final shutdown (systemd-shutdown syncs it and remounts it\n\
             # read-only).\n\
             [Unit]\nDefaultDependencies=no\nBefore=local-fs.target\n",
            hp = layout::HOSTPART_MOUNT
        ),
    )
    .with_context(|| format!("cannot write {}", dropin.display()))?;
    notes.push(format!(
        "{unit}: left mounted until the final shutdown (/etc/systemd/system/{unit}.d/hnroot.conf)"
    ));
    Ok(())
}

/// systemd's mount unit name for an absolute path without characters to escape (`/hostpart`
/// -> `hostpart.mount`, `/boot/loader` -> `boot-loader.mount`).
fn mount_unit_name(path: &str) -> String {
    format!("{}.mount", path.trim_matches('/').replace('/', "-"))
}

fn install_hnroot_files(req: &BuildRequest, mnt: &Path, notes: &mut Vec<String>) -> Result<()> {
    let cli = mnt.join("usr/sbin/hnroot");
    fs::create_dir_all(mnt.join("usr/sbin"))?;
    fs::copy(&req.cli, &cli)
        .with_context(|| format!("cannot copy the hnroot CLI from {}", req.cli.display()))?;
    fs::set_permissions(&cli, fs::Permissions::from_mode(0o755))?;
    let units = mnt.join("usr/lib/systemd/system");
    fs::create_dir_all(&units)?;
    let wants = mnt.join("etc/systemd/system/multi-user.target.wants");
    fs::create_dir_all(&wants)?;
    for (name, text) in UNITS {
        fs::write(units.join(name), text)?;
        let link = wants.join(name);
        if fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("/usr/lib/systemd/system/{name}"), &link)?;
        }
    }
    fs::create_dir_all(mnt.join("etc/hnroot/keys"))?;
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
    if !fs::metadata(root).map(|m| m.is_dir()).unwrap_or(false) {
        bail!(
            "looked for the tree at {}; it is not a directory; nothing was written",
            root.display()
        );
    }
    let kernel = tree_kernel(root)?;
    let has_package = root.join(PACKAGE_RECORD).is_file();
    let has_integration = root.join(ITOOLS_HOOK).is_file() || root.join(DRACUT_MODULE).is_dir();
    let tree_initrd = resolve_in(
        root,
        Path::new(&format!("boot/initrd.img-{}", kernel.release)),
    )
    .ok()
    .filter(|p| root.join(p).is_file());
    let use_tree = match (req.initramfs, &tree_initrd) {
        (InitramfsChoice::Hnroot, _) => false,
        (InitramfsChoice::Tree, None) => bail!(
            "--initramfs tree: the tree has no boot/initrd.img-{}; nothing was written",
            kernel.release
        ),
        (InitramfsChoice::Tree, Some(_)) => true,
        (InitramfsChoice::Auto, Some(_)) => has_integration,
        (InitramfsChoice::Auto, None) => false,
    };
    if use_tree {
        let initrd = root.join(tree_initrd.as_ref().context("no initrd")?);
        if !initrd_has_hnroot(&initrd)? {
            bail!(
                "{} holds no hnroot-init: it was made without hnroot's initramfs integration; run \
                 update-initramfs (or dracut) in the tree after installing hnroot, or pass \
                 --initramfs hnroot; nothing was written",
                initrd.display()
            );
        }
    } else if !req.hnroot_init.is_file() {
        bail!(
            "looked for hnroot-init at {} (for hnroot's own initramfs); it is not there: install \
             the hnroot package or pass --init FILE; nothing was written",
            req.hnroot_init.display()
        );
    }
    let content = tree_size(root)?;
    let size = imagebuild::image_size(content, req.size).map_err(|e| anyhow!("{e}"))?;
    let version = os_version(root);
    say(&format!(
        "tree {}: {} MiB, kernel {}, {}; image {} MiB {}",
        root.display(),
        content.div_ceil(MIB),
        kernel.release,
        version.as_deref().unwrap_or("no os-release"),
        size / MIB,
        req.fs.as_str()
    ));

    let partial = req.out.with_extension("img.partial");
    let _ = fs::remove_file(&partial);
    fs::File::create(&partial)
        .and_then(|f| f.set_len(size))
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let result = fill(
        req,
        &partial,
        &kernel,
        use_tree,
        &tree_initrd,
        has_package,
        say,
    );
    let (mut notes, leftovers) = match result {
        Ok(n) => n,
        Err(e) => {
            let _ = fs::remove_file(&partial);
            return Err(e);
        }
    };
    let uuid = run(Command::new("blkid")
        .args(["-p", "-s", "UUID", "-o", "value"])
        .arg(&partial))?
    .trim()
    .to_owned();
    fs::rename(&partial, &req.out).with_context(|| {
        format!(
            "cannot rename {} to {}",
            partial.display(),
            req.out.display()
        )
    })?;
    notes.sort();
    Ok(Built {
        uuid,
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

fn fill(
    req: &BuildRequest,
    file: &Path,
    kernel: &TreeKernel,
    use_tree: bool,
    tree_initrd: &Option<PathBuf>,
    has_package: bool,
    say: &mut dyn FnMut(&str),
) -> Result<(Vec<String>, Vec<hnroot_linux::sysprep::Leftover>)> {
    let mut notes = Vec::new();
    mkfs(req.fs, file)?;
    let image = fs::OpenOptions::new().read(true).write(true).open(file)?;
    let lo = loopdev::attach(Path::new("/dev"), &image, "hnroot-image-build", true).context(
        "cannot attach the new image to a loop device (hnroot image build runs as root)",
    )?;
    let mnt = tempfile::Builder::new()
        .prefix("hnroot-image-")
        .tempdir()
        .context("cannot make a mount point")?;
    mounts::mount(&lo.node, mnt.path(), Some(req.fs.as_str()), 0, None)?;
    let mounted = MountedImage { mnt, _lo: lo };
    let m = mounted.mnt.path();
    say("copying the tree (cp -a)");
    let mut src = req.root.as_os_str().to_owned();
    src.push("/.");
    run(Command::new("cp")
        .args(["-a", "--sparse=always"])
        .arg(&src)
        .arg(m))?;
    fs::create_dir_all(m.join("boot"))?;
    hard_link(m, &kernel.vmlinuz, Path::new(layout::KERNEL_PATH))?;
    notes.push(format!(
        "/{} -> {} (hard link)",
        layout::KERNEL_PATH,
        kernel.vmlinuz.display()
    ));
    if use_tree {
        let initrd = tree_initrd.as_ref().context("no initrd")?;
        hard_link(m, initrd, Path::new(layout::INITRAMFS_PATH))?;
        notes.push(format!(
            "/{} -> {} (hard link)",
            layout::INITRAMFS_PATH,
            initrd.display()
        ));
    } else {
        say("building hnroot's own initramfs for the tree's kernel");
        let wanted: Vec<String> = BOOT_MODULES.iter().map(|s| (*s).to_owned()).collect();
        let modules_dir = m.join(&kernel.modules);
        let (_, missing) =
            crate::modules::modules_in_some(&modules_dir, &kernel.release, BOOT_MODULES)?;
        let wanted: Vec<String> = wanted
            .into_iter()
            .filter(|w| !missing.contains(w))
            .collect();
        let built = initramfs::build(
            &Spec {
                init: req.hnroot_init.clone(),
                modules_dir: Some(modules_dir),
                wanted,
                busybox: None,
                compress: Compress::Zstd,
            },
            &m.join(layout::INITRAMFS_PATH),
        )?;
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
    fs::create_dir_all(m.join(layout::HOSTPART_MOUNT.trim_start_matches('/')))?;
    fs::create_dir_all(m.join(layout::ESP_MOUNT.trim_start_matches('/')))?;
    let data0 = m.join(layout::DATA_LINK.trim_start_matches('/'));
    let want = format!("{}/{}", layout::HOSTPART_MOUNT, layout::DATA_DIR);
    match fs::read_link(&data0) {
        Ok(t) if t == Path::new(&want) => {}
        Ok(_) | Err(_) if fs::symlink_metadata(&data0).is_ok() => {
            bail!(
                "the tree has {} already, and not as a link to {want}: move it away; nothing was \
                 written",
                layout::DATA_LINK
            )
        }
        _ => {
            std::os::unix::fs::symlink(&want, &data0)?;
            notes.push(format!("{} -> {want}", layout::DATA_LINK));
        }
    }
    rewrite_fstab(m, &mut notes)?;
    if !has_package {
        install_hnroot_files(req, m, &mut notes)?;
    }
    // One host's identity copied from the tree (the build host's name, SSH host keys made by a
    // package's postinst): reported, for `hnroot sysprep` to remove before publishing.
    let leftovers = hnroot_linux::sysprep::leftovers(m)
        .with_context(|| "cannot check the new image for host-specific files")?;
    // SAFETY: syncfs on a valid descriptor.
    let dir = fs::File::open(m)?;
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error()).context("syncfs of the new image");
    }
    drop(dir);
    drop(mounted);
    image.sync_all()?;
    Ok((notes, leftovers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_unit_names_are_systemds() {
        assert_eq!(mount_unit_name(layout::HOSTPART_MOUNT), "hostpart.mount");
        assert_eq!(mount_unit_name(layout::ESP_MOUNT), "boot-loader.mount");
    }

    #[test]
    fn links_resolve_inside_the_tree() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("boot")).unwrap();
        fs::write(r.join("boot/vmlinuz-6.1.0-57-amd64"), b"k").unwrap();
        std::os::unix::fs::symlink("boot/vmlinuz-6.1.0-57-amd64", r.join("vmlinuz")).unwrap();
        std::os::unix::fs::symlink("/vmlinuz", r.join("boot/abs")).unwrap();
        std::os::unix::fs::symlink("../../../../etc/passwd", r.join("boot/escape")).unwrap();
        assert_eq!(
            resolve_in(r, Path::new("vmlinuz")).unwrap(),
            Path::new("boot/vmlinuz-6.1.0-57-amd64")
        );
        assert_eq!(
            resolve_in(r, Path::new("boot/abs")).unwrap(),
            Path::new("boot/vmlinuz-6.1.0-57-amd64"),
            "an absolute link is the tree's root, not the host's"
        );
        assert!(
            resolve_in(r, Path::new("boot/escape")).is_err(),
            "a link out of the tree stays inside it (and finds nothing there)"
        );
    }

    #[test]
    fn a_tree_without_a_kernel_is_refused_naming_what_is_missing() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("boot")).unwrap();
        let err = tree_kernel(t.path()).err().unwrap().to_string();
        assert!(
            err.contains("vmlinuz-<release>") && err.contains("nothing was written"),
            "{err}"
        );
        fs::write(t.path().join("boot/vmlinuz-6.1.0-9-amd64"), b"k").unwrap();
        let err = tree_kernel(t.path()).err().unwrap().to_string();
        assert!(
            err.contains("no modules for kernel 6.1.0-9-amd64"),
            "{err:#}"
        );
    }
}
