//! `hnroot image build`: the judgements of turning a directory tree into a root image — which
//! of the tree's kernels boots it, how large the image is, and which of the tree's fstab lines
//! hnroot's own lines replace. The CLI observes the tree (its `/boot`, its size, its fstab) and
//! carries out the copy. Whether the kernel is a kernel at all is the one rule for boot files,
//! [`crate::verdict::boot_file`].

use core::fmt;

use crate::layout;
use crate::version;

/// One mebibyte.
pub const MIB: u64 = 1 << 20;

/// Headroom over the tree's contents, in percent: room for what the image's own packages write
/// under `/var` and `/etc` at first boot (most writes go to the writable layer on hostpart, but
/// a `hnroot.rw` boot writes into the image itself) and for the filesystem's own metadata.
pub const HEADROOM_PERCENT: u64 = 25;

/// Fixed headroom on top: journal, inode tables and the boot files added to the tree.
pub const HEADROOM_FIXED: u64 = 256 * MIB;

/// The smallest image any of the three filesystems makes without complaint (XFS refuses
/// filesystems under 300 MiB since xfsprogs 5.19).
pub const MIN_IMAGE: u64 = 320 * MIB;

/// The kernel release named by a `/boot` entry (`vmlinuz-<release>`), if it is one.
pub fn kernel_release(file_name: &str) -> Option<&str> {
    let release = file_name.strip_prefix("vmlinuz-")?;
    (!release.is_empty() && !release.ends_with(".old") && !release.contains('/')).then_some(release)
}

/// Of the `/boot` entries `names`, the kernel that boots the image: the highest release (what
/// Debian's `/vmlinuz` symlink points at after an upgrade), releases compared as versions are
/// ([`version::compare`], the rules of `systemd-analyze compare-versions`).
pub fn pick_kernel<'a, I>(names: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    names
        .into_iter()
        .filter_map(kernel_release)
        .max_by(|a, b| version::compare(a.as_bytes(), b.as_bytes()))
}

/// Why an image size does not work.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SizeError {
    /// `--size` is smaller than the contents with their headroom.
    TooSmall {
        /// What was asked.
        requested: u64,
        /// What the contents need.
        needed: u64,
    },
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeError::TooSmall { requested, needed } => write!(
                f,
                "--size {} MiB is too small: the tree and hnroot's boot files need {} MiB with \
                 {HEADROOM_PERCENT} % + {} MiB headroom",
                requested / MIB,
                needed.div_ceil(MIB),
                HEADROOM_FIXED / MIB
            ),
        }
    }
}

/// The size of the image for `content` bytes (the tree and the boot files, in allocated
/// blocks): the contents plus [`HEADROOM_PERCENT`] and [`HEADROOM_FIXED`], at least
/// [`MIN_IMAGE`], rounded up to a MiB; or `requested` when it is at least that.
pub fn image_size(content: u64, requested: Option<u64>) -> Result<u64, SizeError> {
    let needed = content
        .saturating_add((content / 100).saturating_mul(HEADROOM_PERCENT))
        .saturating_add(HEADROOM_FIXED)
        .max(MIN_IMAGE);
    let needed = needed.div_ceil(MIB).saturating_mul(MIB);
    match requested {
        None => Ok(needed),
        Some(r) if r >= needed => Ok(r.div_ceil(MIB).saturating_mul(MIB)),
        Some(r) => Err(SizeError::TooSmall {
            requested: r,
            needed,
        }),
    }
}

/// Mount points whose fstab lines a built image cannot use: the root (the initramfs mounts
/// the image), the ESP and hostpart (hnroot's own lines name them by label), and where a
/// tree's boot partitions were mounted.
pub const REPLACED_MOUNTS: [&str; 5] = [
    "/",
    layout::ESP_MOUNT,
    layout::HOSTPART_MOUNT,
    "/boot/efi",
    "/boot",
];

/// The prefix of a tree's fstab line that the image build commented out.
pub const FSTAB_COMMENTED: &str = "# (hnroot image build) ";

/// Whether a line of a tree's fstab stays as it is (`false`: it is commented out): comments,
/// blank lines and lines of other mount points stay.
pub fn fstab_keeps(line: &str) -> bool {
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return true;
    }
    match trimmed.split_whitespace().nth(1) {
        None => true,
        Some(mount_point) => !REPLACED_MOUNTS.contains(&mount_point),
    }
}

/// The image's fstab from the tree's (`old`): every line of it kept or commented out
/// ([`fstab_keeps`]; `commented` is told each one commented out), then hnroot's lines for
/// hostpart and the ESP by label, both `nofail`.
pub fn rewrite_fstab<W: fmt::Write>(
    old: &str,
    out: &mut W,
    mut commented: impl FnMut(&str),
) -> fmt::Result {
    for line in old.lines() {
        if fstab_keeps(line) {
            writeln!(out, "{line}")?;
        } else {
            commented(line);
            writeln!(out, "{FSTAB_COMMENTED}{line}")?;
        }
    }
    // The ESP keeps systemd's device timeout (90 s): its device unit appears only once udevd
    // runs in the real root, which under a slow start (QEMU without KVM: about 25 s after the
    // job began) outlasted the 10 s this once had, and /boot/loader was never mounted. `nofail`
    // already keeps the boot from waiting for it.
    write!(
        out,
        "# hnroot: the root is an image on hostpart, mounted by the initramfs with a writable layer\n\
         # on hostpart; hostpart itself is already mounted at {hp} when systemd starts.\n\
         LABEL={hl} {hp} auto defaults,nofail 0 0\n\
         LABEL={el} {ep} vfat umask=0077,nofail 0 0\n",
        hp = layout::HOSTPART_MOUNT,
        hl = layout::HOSTPART_LABEL,
        el = layout::ESP_LABEL,
        ep = layout::ESP_MOUNT,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use core::cmp::Ordering;

    fn rel_cmp(a: &str, b: &str) -> Ordering {
        version::compare(a.as_bytes(), b.as_bytes())
    }

    #[test]
    fn releases_compare_as_versions() {
        assert_eq!(
            rel_cmp("6.1.0-57-amd64", "6.1.0-9-amd64"),
            Ordering::Greater
        );
        assert_eq!(
            rel_cmp("6.12.9+deb13-amd64", "6.1.0-57-amd64"),
            Ordering::Greater
        );
        assert_eq!(rel_cmp("6.1.0-57-amd64", "6.1.0-57-amd64"), Ordering::Equal);
        assert_eq!(
            rel_cmp("6.1.0-057-amd64", "6.1.0-57-amd64"),
            Ordering::Equal
        );
        assert_eq!(rel_cmp("6.1.0", "6.1.0-1"), Ordering::Less);
    }

    #[test]
    fn the_newest_kernel_of_boot_is_picked() {
        let boot = [
            "config-6.1.0-9-amd64",
            "vmlinuz-6.1.0-9-amd64",
            "vmlinuz-6.1.0-57-amd64",
            "vmlinuz-6.1.0-10-amd64",
            "initrd.img-6.1.0-57-amd64",
            "vmlinuz-6.1.0-99-amd64.old",
            "vmlinuz-",
        ];
        assert_eq!(pick_kernel(boot), Some("6.1.0-57-amd64"));
        assert_eq!(pick_kernel(["System.map-6.1.0-9-amd64"]), None);
    }

    #[test]
    fn fstab_lines_of_the_root_esp_and_boot_are_commented_out_the_rest_kept() {
        let old = "# a comment\n\n/dev/sda1 / ext4 errors=remount-ro 0 1\n\
                   UUID=x /boot/efi vfat umask=0077 0 1\n/dev/sdb1 /srv xfs defaults 0 2\n\
                   lonely\n";
        let mut out = std::string::String::new();
        let mut commented = std::vec::Vec::new();
        rewrite_fstab(old, &mut out, |l| {
            commented.push(std::string::String::from(l))
        })
        .unwrap();
        assert_eq!(
            commented,
            [
                "/dev/sda1 / ext4 errors=remount-ro 0 1",
                "UUID=x /boot/efi vfat umask=0077 0 1"
            ]
        );
        assert!(
            out.starts_with("# a comment\n\n# (hnroot image build) /dev/sda1 / ext4"),
            "{out}"
        );
        assert!(
            out.contains("\n/dev/sdb1 /srv xfs defaults 0 2\nlonely\n"),
            "{out}"
        );
        assert!(
            out.contains("LABEL=hostpart /hostpart auto defaults,nofail 0 0\n"),
            "{out}"
        );
        assert!(
            out.ends_with("LABEL=EFI-BOOT /boot/loader vfat umask=0077,nofail 0 0\n"),
            "{out}"
        );
    }

    #[test]
    fn size_has_the_stated_headroom_and_respects_a_sufficient_request() {
        let content = 1000 * MIB;
        let needed = image_size(content, None).unwrap();
        assert_eq!(needed, 1000 * MIB + 250 * MIB + HEADROOM_FIXED);
        assert_eq!(image_size(content, Some(4096 * MIB)), Ok(4096 * MIB));
        assert_eq!(
            image_size(content, Some(1024 * MIB)),
            Err(SizeError::TooSmall {
                requested: 1024 * MIB,
                needed
            })
        );
        assert_eq!(image_size(1, None), Ok(MIN_IMAGE));
        assert_eq!(image_size(content, Some(needed + 1)), Ok(needed + MIB));
    }
}
