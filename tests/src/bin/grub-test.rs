//! `cargo xtask grub-test`: `hnroot.mod` built into hnroot's own GRUB (the loader kit's grub-mkimage),
//! booted under OVMF in QEMU (TCG), deciding on real disks. One VM carries one GPT disk per
//! scenario (ESP + hostpart, built rootless by the testkit's disk builder), and its GRUB image
//! embeds not the production `grub.cfg` (which would boot the first image it finds) but a
//! script that runs `time hnroot status` and `time hnroot select` on each disk, printing the
//! variables on the serial console ([`grubimage::test_script`]); the VM is booted several
//! times on the same disks so that trial counting must persist through GRUB's in-place writes.
//!
//! Checks compare stable codes and records, not sentences: every `hnroot: decision:` record
//! GRUB prints is compared key by key with the record of what `hnroot-core` decides on the
//! observation the scenario was built to be; every image GRUB refuses must be refused with the
//! scenario's `Refusal` code, and no other; the boot-state file is read back from the disk
//! image and decoded after each boot; the PARTUUIDs printed are the ones sgdisk wrote.
//!
//! One verdict: the scenarios include hostile hostparts (links inside, out of and around
//! hostpart, a hard link, a directory and a FIFO named like an image, a copy a few bytes
//! short, a revert marker that is a dangling link or a directory, a boot-state path that is a
//! directory). Each scenario's hostpart is also loop-mounted read-only from the very disk image
//! and observed by `hnroot-linux` as the initramfs and the CLI observe it: GRUB's verdict on
//! every image name (`hnroot status` prints them all) must be the Linux side's, field for
//! field, and GRUB's decision record must be the core's decision on the Linux side's
//! observation and boot-state judgement.
//!
//! Each boot also finds hostpart and the ESP by label (with the core's probers, reading
//! through GRUB): unique on the first boot; from the second boot on, one more disk carries a
//! second `hostpart` and a second `EFI-BOOT`, and both searches must refuse, naming both
//! devices. It never boots a kernel. It needs root (for the read-only loop mounts).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hnroot_core::bootline::{self, ArgsFile};
use hnroot_core::bootstate::{new_block, BootState, StateSeen, Trial, Tries};
use hnroot_core::cmdline::KernelArgs;
use hnroot_core::decide::{decide, Config, Decision};
use hnroot_core::device::Choice;
use hnroot_core::layout::REVERT_MARKER;
use hnroot_core::minisig::PublicKey;
use hnroot_core::name::ImageName;
use hnroot_core::observe::{ImageSeen, Observation};
use hnroot_core::plan::Booted;
use hnroot_core::uuid::FsUuid;
use hnroot_core::verdict::{MissingBootFiles, Refusal, Verdict};
use hnroot_install::grub::{FleetFile, REQUIRE_SEALED_FILE, SEAL_KEYS_FILE};
use hnroot_install::seal::SealRequest;
use hnroot_linux::hostpart::HostpartView;
use hnroot_linux::image::{Inspect, SealPolicy};
use regex::Regex;

use clap::Parser;
use hnroot_testkit::buildenv;
use hnroot_testkit::disk::{
    self, BuiltDisk, DiskSpec, EspSpec, HostFs, HostpartEntry, HostpartSpec, ImageFile, Uuid,
};
use hnroot_testkit::grubimage::{self, GrubImage};
use hnroot_testkit::inspect::StateEntry;
use hnroot_testkit::linuxview;
use hnroot_testkit::qemu::{Vm, VmSpec};
use hnroot_testkit::signing::Publisher;

/// Boots of the same disks: the staged image's three tries, then the rollback.
const BOOTS: usize = 4;
/// GRUB's number of the disk OVMF starts it from: the first one attached.
const BOOT_DISK: usize = 0;
/// One boot: OVMF, GRUB, every scenario's `hnroot status` and `hnroot select`, halt.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
/// Size of each tiny root image (an empty ext4 filesystem is all GRUB needs to see).
const IMAGE_MIB: u64 = 2;
const ESP_MIB: u64 = 40;

/// An image file as a scenario builds it.
#[derive(Clone, Copy, Debug)]
enum ImageKind {
    /// An ext4 filesystem with this UUID holding `/boot/kernel` and `/boot/initramfs`.
    Fs(Uuid),
    /// An ext4 filesystem with this UUID but no `/boot/kernel`: GRUB could not boot it.
    NoKernel(Uuid),
    /// An ext4 filesystem with this UUID whose `/boot/kernel` is an empty file: no kernel by
    /// the one rule for boot files, in GRUB as in `hnroot status`.
    EmptyKernel(Uuid),
    /// An `Fs` image made with `inline_data`, an incompatible ext feature GRUB's driver cannot
    /// read: refused by the one verdict, in GRUB as on Linux, before GRUB's driver is asked.
    GrubLacks(Uuid),
    /// A file of the same size that is no filesystem.
    Garbage,
    /// An `Fs` image without its last this many bytes: superblock, UUID and `/boot/kernel`
    /// are intact (GRUB could read the kernel), the filesystem's end is not there.
    Truncated(Uuid, u64),
    /// An `Fs` image sealed (`hnroot image seal`) with the key the loader trusts.
    Sealed(Uuid),
    /// An `Fs` image sealed with a key the loader does not hold.
    SealedOtherKey(Uuid),
    /// A `Sealed` image whose `/boot/kernel` was changed afterwards (one byte, in place).
    SealedKernelChanged(Uuid),
    /// A `Sealed` image whose `/boot/initramfs` was changed afterwards.
    SealedInitramfsChanged(Uuid),
}

impl ImageKind {
    /// The verdict this file should get, as the core's stable code.
    fn expect(self) -> Expect {
        match self {
            ImageKind::Fs(u) | ImageKind::Sealed(u) => Expect::Bootable(u),
            ImageKind::SealedOtherKey(_) => Expect::Refused("seal-unknown-key"),
            ImageKind::SealedKernelChanged(_) => Expect::Refused("seal-kernel-mismatch"),
            ImageKind::SealedInitramfsChanged(_) => Expect::Refused("seal-initramfs-mismatch"),
            ImageKind::NoKernel(_) | ImageKind::EmptyKernel(_) => {
                Expect::Refused("missing-boot-files")
            }
            ImageKind::GrubLacks(_) => Expect::Refused("grub-lacks-features"),
            ImageKind::Garbage => Expect::Refused("no-filesystem"),
            ImageKind::Truncated(..) => Expect::Refused("truncated"),
        }
    }
}

/// What a truncated image lacks: far more than GRUB's rounding to whole sectors.
const CUT: u64 = 64 * 1024;

/// What a scenario places at a path on hostpart.
#[derive(Clone, Debug)]
enum Place {
    /// An image file.
    Image(ImageKind),
    /// An empty regular file (the revert marker as `hnroot revert` makes it).
    Empty,
    /// A link, directory or FIFO.
    Entry(HostpartEntry),
}

/// The verdict a scenario expects on an image name that is there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Bootable, with this filesystem UUID.
    Bootable(Uuid),
    /// Refused with this `Refusal::code`.
    Refused(&'static str),
}

/// What a scenario places at the boot-state path on the ESP.
#[derive(Clone, Debug)]
enum StateFile {
    /// Nothing.
    Missing,
    /// A file of exactly these bytes.
    Bytes(Vec<u8>),
    /// A directory.
    Directory,
}

/// How the scenario's disk is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attach {
    ReadWrite,
    /// `readonly=on`: GRUB's write fails; the boot must go on.
    ReadOnly,
}

#[derive(Clone, Debug)]
struct Scenario {
    name: &'static str,
    /// Everything on hostpart besides `data/`: (path, what), in the order placed.
    hostpart: Vec<(String, Place)>,
    /// The verdict each image name that is there should get (the others are absent).
    expect: Vec<(ImageName, Expect)>,
    state: StateFile,
    /// `hnroot_reason` on the first boot, and the image chosen (None: select fails).
    first: (&'static str, Option<ImageName>),
    /// `--tries N` for `hnroot select` (None: the default).
    tries: Option<u8>,
    hostpart_label: &'static str,
    esp_label: &'static str,
    attach: Attach,
    /// `--require-sealed-file`: only sealed images boot.
    require_sealed: bool,
}

impl Scenario {
    fn new(name: &'static str, reason: &'static str, image: Option<ImageName>) -> Scenario {
        Scenario {
            name,
            hostpart: Vec::new(),
            expect: Vec::new(),
            state: StateFile::Bytes(vec![0; disk::BOOTSTATE_LEN]),
            first: (reason, image),
            tries: None,
            hostpart_label: "hp",
            esp_label: "esp",
            attach: Attach::ReadWrite,
            require_sealed: false,
        }
    }

    /// The image file `name`, built as `img` says.
    fn img(self, name: ImageName, img: ImageKind) -> Scenario {
        self.place(name, Place::Image(img), img.expect())
    }

    /// `what` at the image name `name`, expected to be judged `expect`.
    fn place(mut self, name: ImageName, what: Place, expect: Expect) -> Scenario {
        self.hostpart.push((name.file_name().to_owned(), what));
        self.expect.push((name, expect));
        self
    }

    /// The image name `name` as a symbolic link to `target`, expected to be judged `expect`.
    fn link(self, name: ImageName, target: &str, expect: Expect) -> Scenario {
        let entry = HostpartEntry::Symlink(target.to_owned());
        self.place(name, Place::Entry(entry), expect)
    }

    /// `what` at a path that is no image name (a link's target, a second name).
    fn other(mut self, path: &str, what: Place) -> Scenario {
        self.hostpart.push((path.to_owned(), what));
        self
    }

    /// `system-revert` as `what`.
    fn revert(self, what: Place) -> Scenario {
        self.other(REVERT_MARKER, what)
    }

    fn state(mut self, state: BootState) -> Scenario {
        self.state = StateFile::Bytes(new_block(&state).to_vec());
        self
    }

    fn revert_requested(&self) -> bool {
        self.hostpart.iter().any(|(path, _)| path == REVERT_MARKER)
    }

    fn expected(&self, name: ImageName) -> Option<Expect> {
        self.expect
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, e)| *e)
    }

    /// What the module should see on hostpart (the boot state is read from the disk).
    fn observation(&self, state: StateSeen) -> Observation {
        let mut obs = Observation {
            revert_requested: self.revert_requested(),
            state,
            ..Observation::default()
        };
        for (name, expect) in &self.expect {
            let seen = match expect {
                Expect::Bootable(uuid) => ImageSeen::Bootable(fs_uuid(*uuid)),
                Expect::Refused(_) => ImageSeen::NotBootable,
            };
            obs.set(*name, seen);
        }
        obs
    }

    /// The loader's seal policy for this scenario, as the Linux side judges with it.
    fn seal_policy(&self, keys: &Keys) -> SealPolicy {
        SealPolicy {
            keys: vec![keys.trusted_key],
            require: self.require_sealed,
        }
    }

    fn tries(&self) -> u8 {
        self.tries.unwrap_or(hnroot_core::bootstate::DEFAULT_TRIES)
    }
}

fn fs_uuid(u: Uuid) -> FsUuid {
    FsUuid::Uuid(u.0)
}

fn scenarios() -> Result<Vec<Scenario>> {
    use ImageKind::{EmptyKernel, Fs, Garbage, GrubLacks, NoKernel, Truncated};
    use ImageName::{Broken, Cancelled, Current, New, Old};
    let (a, b, c) = (Uuid::random()?, Uuid::random()?, Uuid::random()?);
    let committed_a = BootState::committed(fs_uuid(a));
    let trial = |image: Uuid, left: u8, good: Option<Uuid>| {
        Tries::new(left, 3).map(|tries| {
            BootState::Trial(Trial {
                image: fs_uuid(image),
                tries,
                good: good.map(fs_uuid),
            })
        })
    };
    let trial = |image, left, good| trial(image, left, good).context("tries out of range");
    let mut normal = Scenario::new("normal", "normal", Some(Current))
        .img(Current, Fs(a))
        .state(committed_a);
    // The only filesystems labelled `hostpart` and `EFI-BOOT` until the duplicate disk is
    // attached (see `duplicate_labels`).
    normal.hostpart_label = disk::HOSTPART_LABEL;
    normal.esp_label = disk::ESP_LABEL;
    let update = Scenario::new("update", "update", Some(New))
        .img(Current, Fs(a))
        .img(New, Fs(b))
        .state(committed_a);
    let revert = Scenario::new("manual-revert", "manual-revert", Some(Old))
        .img(Current, Fs(a))
        .img(Old, Fs(c))
        .revert(Place::Empty)
        .state(committed_a);
    let refused = Scenario::new("revert-refused", "revert-refused", Some(Current))
        .img(Current, Fs(a))
        .revert(Place::Empty)
        .state(committed_a);
    let mut corrupt = Scenario::new("corrupt-state", "trial", Some(Current)).img(Current, Fs(a));
    corrupt.state = StateFile::Bytes(
        (0..disk::BOOTSTATE_LEN)
            .map(|i| (i * 7 + 3) as u8)
            .collect(),
    );
    let mut missing = Scenario::new("missing-state", "update", Some(New))
        .img(Current, Fs(a))
        .img(New, Fs(b));
    missing.state = StateFile::Missing;
    // Without a state file no try is counted, so every boot is trial 1 of 5.
    missing.tries = Some(5);
    let mut readonly = Scenario::new("read-only-disk", "update", Some(New))
        .img(Current, Fs(a))
        .img(New, Fs(b))
        .state(committed_a);
    readonly.attach = Attach::ReadOnly;

    // Hostile hostparts. Links resolve inside hostpart as GRUB's drivers resolve them:
    // relative to the top directory, absolute targets from hostpart's root, `..` never above
    // it; a target that exists only outside hostpart does not resolve.
    let links_inside = Scenario::new("links-inside", "normal", Some(Current))
        .other("backup.img", Place::Image(Fs(a)))
        .other("keep/old.img", Place::Image(Fs(c)))
        .link(Current, "backup.img", Expect::Bootable(a))
        .link(Old, "/keep/old.img", Expect::Bootable(c))
        .link(Broken, "../../../backup.img", Expect::Bootable(a))
        .state(committed_a);
    let unopenable = Expect::Refused("unopenable");
    let links_outside = Scenario::new("links-outside", "recovery", Some(Old))
        .link(Current, "/etc/hostname", unopenable)
        .link(New, "../../../../etc/passwd", unopenable)
        .link(Cancelled, "nowhere.img", unopenable)
        .link(Broken, "hn-root-broken.img", unopenable)
        .img(Old, Fs(c))
        .state(committed_a);
    // `ln hn-root.img backup.img`: two names of one file, both ordinary files.
    let hard_link = Scenario::new("hard-link", "normal", Some(Current))
        .img(Current, Fs(a))
        .other(
            "backup.img",
            Place::Entry(HostpartEntry::HardLink("hn-root.img".into())),
        )
        .other("keep/c.img", Place::Image(Fs(c)))
        .place(
            Old,
            Place::Entry(HostpartEntry::HardLink("keep/c.img".into())),
            Expect::Bootable(c),
        )
        .state(committed_a);
    // A name that is itself a directory is `not-a-file`; anything else that does not open as
    // a regular file is `unopenable` (GRUB's ext2 driver cannot tell a FIFO from a dangling
    // link, and sees a link to a directory as "not a regular file", like a FIFO on btrfs).
    let directory = Scenario::new("directory-image", "recovery", Some(Old))
        .place(
            Current,
            Place::Entry(HostpartEntry::Directory),
            Expect::Refused("not-a-file"),
        )
        .link(New, "data", unopenable)
        .img(Old, Fs(c))
        .state(committed_a);
    let fifo = Scenario::new("fifo-image", "recovery", Some(Old))
        .place(Current, Place::Entry(HostpartEntry::Fifo), unopenable)
        .other("pipe", Place::Entry(HostpartEntry::Fifo))
        .link(New, "pipe", unopenable)
        .img(Old, Fs(c))
        .state(committed_a);
    // GRUB's loopback disk rounds a file up to whole sectors: a cut under 512 bytes must
    // still be seen, from the file's own length.
    let short_cut = Scenario::new("short-cut-image", "recovery", Some(Old))
        .img(Current, Truncated(a, 100))
        .img(New, Truncated(b, 1))
        .img(Old, Fs(c))
        .state(committed_a);
    // The marker's name is what counts, whatever it is.
    let revert_link = Scenario::new("revert-marker-link", "manual-revert", Some(Old))
        .img(Current, Fs(a))
        .img(Old, Fs(c))
        .revert(Place::Entry(HostpartEntry::Symlink("nowhere".into())))
        .state(committed_a);
    let revert_dir = Scenario::new("revert-marker-directory", "manual-revert", Some(Old))
        .img(Current, Fs(a))
        .img(Old, Fs(c))
        .revert(Place::Entry(HostpartEntry::Directory))
        .state(committed_a);
    // A boot-state path GRUB cannot read as a file: corrupt, so hn-root.img is on trial; it
    // cannot be written either, and the boot goes on.
    let mut state_dir = Scenario::new("state-directory", "trial", Some(Current))
        .img(Current, Fs(a))
        .img(Old, Fs(c));
    state_dir.state = StateFile::Directory;

    // Sealed images (issue 23), the loader holding one trusted key: a seal that holds boots;
    // one by another key, or whose kernel or initramfs changed after sealing (one byte, the
    // filesystem otherwise intact), is not bootable. With --require-sealed-file an unsealed
    // image is not bootable either.
    let sealed = Scenario::new("sealed", "normal", Some(Current))
        .img(Current, ImageKind::Sealed(a))
        .img(Old, ImageKind::SealedKernelChanged(c))
        .img(Broken, ImageKind::SealedOtherKey(b))
        .state(committed_a);
    let mut require_sealed = Scenario::new("require-sealed", "recovery", Some(Old))
        .place(Current, Place::Image(Fs(a)), Expect::Refused("unsealed"))
        .img(Old, ImageKind::Sealed(c))
        .img(Broken, ImageKind::SealedInitramfsChanged(b))
        .state(committed_a);
    require_sealed.require_sealed = true;

    // `update` first: OVMF starts GRUB from the first disk, and `normal` (the one disk
    // labelled `hostpart`/`EFI-BOOT` on the first boot) must not be that disk, or from the
    // second boot on the boot-disk rule would pick it among the duplicates instead of
    // refusing (that rule is proven by the e2e scenario `two-hostparts`). The read-only disk
    // last (qemu.rs attaches the read-write ones).
    Ok(vec![
        update,
        normal,
        Scenario::new("trial", "trial", Some(Current))
            .img(Current, Fs(a))
            .img(Old, Fs(c))
            .state(trial(a, 2, Some(c))?),
        revert,
        refused,
        Scenario::new("trial-exhausted", "trial-exhausted", Some(Current))
            .img(Current, Fs(a))
            .state(trial(a, 0, None)?),
        Scenario::new("rollback", "automatic-rollback", Some(Old))
            .img(Current, Fs(a))
            .img(Old, Fs(c))
            .state(trial(a, 0, Some(c))?),
        Scenario::new("missing-image", "recovery", Some(Old))
            .img(Old, Fs(c))
            .state(BootState::committed(fs_uuid(c))),
        Scenario::new("unreadable-image", "recovery", Some(Old))
            .img(Current, Garbage)
            .img(Old, Fs(c))
            .state(committed_a),
        Scenario::new("image-without-kernel", "recovery", Some(Old))
            .img(Current, NoKernel(a))
            .img(Old, Fs(c))
            .state(committed_a),
        Scenario::new("image-with-empty-kernel", "recovery", Some(Old))
            .img(Current, EmptyKernel(a))
            .img(Old, Fs(c))
            .state(committed_a),
        Scenario::new("image-grub-cannot-read", "recovery", Some(Old))
            .img(Current, GrubLacks(a))
            .img(Old, Fs(c))
            .state(committed_a),
        Scenario::new("truncated-image", "recovery", Some(Old))
            .img(Current, Truncated(a, CUT))
            .img(Old, Fs(c))
            .state(committed_a),
        corrupt,
        missing,
        Scenario::new("nothing-bootable", "nothing-bootable", None)
            .img(Current, Garbage)
            .state(committed_a),
        links_inside,
        links_outside,
        hard_link,
        directory,
        fifo,
        short_cut,
        revert_link,
        revert_dir,
        state_dir,
        sealed,
        require_sealed,
        readonly,
    ])
}

/// The disk attached from the second boot on: a second filesystem labelled `hostpart` and a
/// second `EFI-BOOT`, so that both searches by label meet two candidates.
fn duplicate_labels() -> Result<Scenario> {
    let mut dup = Scenario::new("duplicate-labels", "normal", Some(ImageName::Current))
        .img(ImageName::Current, ImageKind::Fs(Uuid::random()?));
    dup.hostpart_label = disk::HOSTPART_LABEL;
    dup.esp_label = disk::ESP_LABEL;
    Ok(dup)
}

/// What a root image holds for GRUB: `/boot/kernel` (never booted here) and `/boot/initramfs`,
/// each with bytes in it (an empty one is no boot file).
const KERNEL_STAND_IN: &[u8] = b"hnroot grub-test: stands in for a kernel; never booted\n";
const INITRAMFS_STAND_IN: &[u8] = b"hnroot grub-test: stands in for an initramfs\n";

/// The publishers of the sealed images: the one whose public key the loader trusts, and
/// another (key pairs made once, kept in the build cache).
struct Keys {
    trusted: Publisher,
    trusted_key: PublicKey,
    other: Publisher,
}

impl Keys {
    fn get() -> Result<Keys> {
        let dir = buildenv::build_root().join("grub-test-keys");
        let trusted = Publisher::in_dir(&dir.join("trusted"))?;
        let other = Publisher::in_dir(&dir.join("other"))?;
        let trusted_key = PublicKey::parse(&trusted.public_key()?)
            .map_err(|e| anyhow::anyhow!("the test publisher's key: {e}"))?;
        Ok(Keys {
            trusted,
            trusted_key,
            other,
        })
    }

    /// The loader's memdisk files: the trusted key, and the require-sealed marker (used only
    /// by the scenarios that name it).
    fn fleet(&self) -> Result<Vec<FleetFile>> {
        Ok(vec![
            FleetFile {
                name: SEAL_KEYS_FILE.into(),
                data: self.trusted.public_key()?,
            },
            FleetFile {
                name: REQUIRE_SEALED_FILE.into(),
                data: b"1\n".to_vec(),
            },
            FleetFile {
                name: hnroot_core::menu::FILE_NAME.into(),
                data: MENU_TIMEOUT.to_vec(),
            },
            FleetFile {
                name: format!("{}-bad", hnroot_core::menu::FILE_NAME),
                data: MENU_TIMEOUT_BAD.to_vec(),
            },
        ])
    }
}

/// Seal the image at `path` with `publisher`'s key, as `hnroot image seal` does.
fn seal_image(path: &Path, publisher: &Publisher) -> Result<()> {
    hnroot_install::seal::seal(
        &SealRequest {
            image: path.to_owned(),
            sign_key: publisher.secret_key().to_owned(),
            version: Some("1".into()),
            public_key: Some(publisher.public.clone()),
        },
        &Inspect::default(),
    )
    .with_context(|| format!("sealing {}", path.display()))?;
    Ok(())
}

/// Change one byte of `text` (found once) in the file at `path`, in place.
fn change_in_place(path: &Path, text: &[u8]) -> Result<()> {
    let mut bytes = fs::read(path)?;
    let at = bytes
        .windows(text.len())
        .position(|w| w == text)
        .with_context(|| format!("{} does not hold {:?}", path.display(), text))?;
    bytes[at] ^= 0x20;
    fs::write(path, bytes)?;
    Ok(())
}

fn build_image(path: &Path, img: ImageKind, keys: &Keys) -> Result<()> {
    let file = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.set_len(IMAGE_MIB * disk::MIB)?;
    drop(file);
    let uuid = match img {
        ImageKind::Fs(uuid)
        | ImageKind::NoKernel(uuid)
        | ImageKind::EmptyKernel(uuid)
        | ImageKind::GrubLacks(uuid)
        | ImageKind::Truncated(uuid, _)
        | ImageKind::Sealed(uuid)
        | ImageKind::SealedOtherKey(uuid)
        | ImageKind::SealedKernelChanged(uuid)
        | ImageKind::SealedInitramfsChanged(uuid) => uuid,
        ImageKind::Garbage => {
            let garbage: Vec<u8> = (0..IMAGE_MIB * disk::MIB)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect();
            fs::write(path, garbage)?;
            return Ok(());
        }
    };
    let stage = path.with_extension("staging");
    if stage.exists() {
        fs::remove_dir_all(&stage)?;
    }
    fs::create_dir_all(stage.join("boot"))?;
    fs::write(stage.join("boot/initramfs"), INITRAMFS_STAND_IN)?;
    match img {
        ImageKind::NoKernel(_) | ImageKind::Garbage => {}
        ImageKind::EmptyKernel(_) => fs::write(stage.join("boot/kernel"), b"")?,
        _ => fs::write(stage.join("boot/kernel"), KERNEL_STAND_IN)?,
    }
    buildenv::run(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-U", &uuid.to_string(), "-L", "hn-root"])
            .args(["-O", "^metadata_csum_seed,^orphan_file,^has_journal"])
            .args(match img {
                ImageKind::GrubLacks(_) => &["-O", "inline_data"][..],
                _ => &[],
            })
            .arg("-d")
            .arg(&stage)
            .arg(path),
    )?;
    fs::remove_dir_all(&stage)?;
    match img {
        ImageKind::Truncated(_, cut) => fs::OpenOptions::new()
            .write(true)
            .open(path)?
            .set_len(IMAGE_MIB * disk::MIB - cut)?,
        ImageKind::Sealed(_) => seal_image(path, &keys.trusted)?,
        ImageKind::SealedOtherKey(_) => seal_image(path, &keys.other)?,
        ImageKind::SealedKernelChanged(_) => {
            seal_image(path, &keys.trusted)?;
            change_in_place(path, KERNEL_STAND_IN)?
        }
        ImageKind::SealedInitramfsChanged(_) => {
            seal_image(path, &keys.trusted)?;
            change_in_place(path, INITRAMFS_STAND_IN)?
        }
        _ => {}
    }
    Ok(())
}

/// The scenario's disk, through the one disk builder: its image files in `dir/<name>/`, a
/// 24 MiB ext4 hostpart, a 40 MiB ESP with `grub` and the scenario's labels and boot state.
fn build_scenario(s: &Scenario, grub: &GrubImage, keys: &Keys, dir: &Path) -> Result<BuiltDisk> {
    let dir = dir.join(s.name);
    fs::create_dir_all(&dir)?;
    let mut host = HostpartSpec::new(HostFs::Ext4);
    host.label = s.hostpart_label.to_owned();
    host.size_mib = Some(24);
    for (i, (path, what)) in s.hostpart.iter().enumerate() {
        match what {
            Place::Image(img) => {
                let built = dir.join(format!("{i}.img"));
                build_image(&built, *img, keys)?;
                host = if path.contains('/') {
                    host.image_at(path, &built)
                } else {
                    host.image(path, &built)
                };
            }
            Place::Empty => host.files.push(ImageFile::new(path, 0o644, Vec::new())),
            Place::Entry(entry) => host = host.entry(path, entry.clone()),
        }
    }
    let mut esp = EspSpec::new(grub);
    esp.label = s.esp_label.to_owned();
    esp.size_mib = ESP_MIB;
    esp.bootstate = match &s.state {
        StateFile::Bytes(bytes) => Some(bytes.clone()),
        StateFile::Missing | StateFile::Directory => None,
    };
    if let StateFile::Directory = s.state {
        esp.dirs.push(disk::BOOTSTATE_PATH.to_owned());
    }
    disk::build(
        &DiskSpec {
            name: s.name.to_owned(),
            esp,
            hostpart: host,
        },
        &dir,
    )
}

/// The boot-state path of a scenario's ESP now, and hnroot-linux's judgement of it.
#[derive(Clone, Debug)]
struct StateNow {
    entry: StateEntry,
    linux: StateSeen,
}

fn state_now(built: &BuiltDisk, copy: &Path) -> Result<StateNow> {
    let (entry, linux) = linuxview::boot_state(built, copy)?;
    Ok(StateNow { entry, linux })
}

/// The variables a `result` line shows, with the prefix `P`.
fn result_vars(p: &str) -> String {
    format!(
        "reason=${p}reason image=${p}image uuid=${p}uuid fallback=${p}fallback_image \
         fallback_uuid=${p}fallback_uuid fallbacks=[${p}fallbacks] hostpart=${p}hostpart \
         esp=${p}esp partuuid=${p}partuuid esp_partuuid=${p}esp_partuuid tries=${p}tries \
         menu_timeout=${p}menu_timeout"
    )
}

/// The embedded configuration: for each disk, `time hnroot status` (every image's verdict and
/// the decision, nothing written) then `time hnroot select` and the variables; then the
/// searches by label (timed too); then `hnroot status` on one disk after its select; then
/// power off. Every variable is cleared before each command so that a value cannot be left
/// over from the one before.
fn test_cfg(scenarios: &[Scenario], label_disk: usize, status_disk: usize) -> String {
    let clear = |p: &str| {
        [
            "reason",
            "image",
            "uuid",
            "fallback_image",
            "fallback_uuid",
            "fallbacks",
            "hostpart",
            "esp",
            "partuuid",
            "esp_partuuid",
            "tries",
            "menu_timeout",
        ]
        .map(|v| format!("set {p}{v}=\n"))
        .concat()
    };
    // Debian's GRUB 2.12 names the boot location $fw_path, 2.06 $cmdpath: one is empty.
    let mut cfg = String::from(
        "# hnroot GRUB-level test configuration (tests/src/bin/grub-test.rs).\n\
         set pager=0\n\
         echo \"hnroot-test: grub up\"\n\
         echo \"hnroot-test: cmdpath ${cmdpath}${fw_path}\"\n",
    );
    let block = |name: &str, command: &str, p: &str| {
        format!(
            "{clear}echo \"hnroot-test: begin {name}\"\n\
             if time {command}; then\n\
             \x20 echo \"hnroot-test: result {name} rc=0 {vars}\"\n\
             else\n\
             \x20 echo \"hnroot-test: result {name} rc=1 {vars}\"\n\
             fi\n\
             echo \"hnroot-test: end {name}\"\n",
            clear = clear(p),
            vars = result_vars(p)
        )
    };
    for (i, s) in scenarios.iter().enumerate() {
        let args = format!(
            "--hostpart (hd{i},gpt2) --esp (hd{i},gpt1){}{SEAL_KEYS_ARG}{}",
            s.tries.map_or(String::new(), |n| format!(" --tries {n}")),
            if s.require_sealed {
                REQUIRE_SEALED_ARG
            } else {
                ""
            }
        );
        cfg.push_str(&block(
            &verdicts_block(i),
            &format!("hnroot status --set-prefix vd_ {args}"),
            "vd_",
        ));
        cfg.push_str(&block(
            &format!("hd{i}"),
            &format!("hnroot select {args}"),
            "hnroot_",
        ));
    }
    cfg.push_str(&block(
        "label-both",
        &format!("hnroot select --set-prefix lbl_ {MENU_TIMEOUT_ARG}"),
        "lbl_",
    ));
    cfg.push_str(&block(
        "label-esp",
        &format!(
            "hnroot select --set-prefix esp_ --hostpart (hd{label_disk},gpt2) \
             {MENU_TIMEOUT_BAD_ARG}"
        ),
        "esp_",
    ));
    cfg.push_str(&block(
        "status",
        &format!(
            "hnroot status --set-prefix st_ --hostpart (hd{status_disk},gpt2) \
             --esp (hd{status_disk},gpt1)"
        ),
        "st_",
    ));
    cfg.push_str("echo \"hnroot-test: done\"\nhalt\n");
    cfg
}

/// Every scenario's loader trusts the key in its memdisk, as the production grub.cfg's does.
const SEAL_KEYS_ARG: &str = " --seal-keys (memdisk)/hnroot/seal-keys";
/// The scenarios that require sealed images name the marker in the memdisk.
const REQUIRE_SEALED_ARG: &str = " --require-sealed-file (memdisk)/hnroot/require-sealed";

/// The fleet's menu countdown (`label-both`), and a file the core refuses (`label-esp`): the
/// files in every scenario's memdisk ([`Keys::fleet`]).
const MENU_TIMEOUT_ARG: &str = "--menu-timeout-file (memdisk)/hnroot/menu-timeout";
const MENU_TIMEOUT_BAD_ARG: &str = "--menu-timeout-file (memdisk)/hnroot/menu-timeout-bad";
const MENU_TIMEOUT: &[u8] = b"# fleet\n7\n";
const MENU_TIMEOUT_BAD: &[u8] = b"7 s\n";

/// The name of the console block of `hnroot status` on disk `i`.
fn verdicts_block(i: usize) -> String {
    format!("vd-hd{i}")
}

/// What one `begin..end` block of the console says.
#[derive(Debug, Default)]
struct ConsoleBlock {
    text: String,
    result: String,
    elapsed: Option<String>,
}

/// GRUB's EFI console wraps lines at 80 columns on word boundaries, dropping the space: put
/// every line that does not start with a known prefix back onto the one before it.
fn unwrap_lines(log: &str) -> Vec<String> {
    const STARTS: [&str; 4] = ["hnroot:", "hnroot-test:", "Elapsed time:", "error:"];
    let mut lines: Vec<String> = Vec::new();
    let mut inside = false;
    for line in log.lines() {
        let line = line.trim_end_matches('\r');
        let starts = STARTS.iter().any(|p| line.starts_with(p));
        match lines.last_mut() {
            Some(last) if inside && !starts && !line.is_empty() => {
                last.push(' ');
                last.push_str(line);
            }
            _ => lines.push(line.to_owned()),
        }
        inside = starts || (inside && !line.is_empty());
    }
    lines
}

fn blocks(log: &str) -> Vec<(String, ConsoleBlock)> {
    let begin = Regex::new(r"hnroot-test: begin (\S+)").unwrap_or_else(|_| unreachable!());
    let mut out: Vec<(String, ConsoleBlock)> = Vec::new();
    for line in unwrap_lines(log) {
        let line = line.as_str();
        if let Some(c) = begin.captures(line) {
            out.push((c[1].to_owned(), ConsoleBlock::default()));
            continue;
        }
        let Some((_, block)) = out.last_mut() else {
            continue;
        };
        if line.contains("hnroot-test: end ") {
            continue;
        }
        if let Some(rest) = line.split("hnroot-test: result ").nth(1) {
            block.result = rest.to_owned();
        } else if let Some(rest) = line.split("Elapsed time: ").nth(1) {
            block.elapsed = Some(rest.trim().to_owned());
        } else {
            block.text.push_str(line);
            block.text.push('\n');
        }
    }
    out
}

fn field<'a>(result: &'a str, key: &str) -> &'a str {
    result
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or("")
}

/// `cargo xtask grub-test`: hnroot's one GRUB (the same on every Debian release; nothing is
/// booted past GRUB, so no release's kernel plays a part).
#[derive(Debug, Parser)]
#[command(
    name = "grub-test",
    about = "hnroot's GRUB (built from Debian's pinned grub2 source, hnroot.mod built in): every \
             decision scenario under OVMF + QEMU."
)]
struct Args {}

/// Build everything, boot [`BOOTS`] times, check every scenario after every boot.
fn main() -> Result<()> {
    let _ = Args::parse();
    println!(
        "grub-test: hnroot's GRUB {}",
        hnroot_testkit::release::GRUB.version
    );
    let work = buildenv::build_root().join("grub-test");
    if work.exists() {
        fs::remove_dir_all(&work)?;
    }
    fs::create_dir_all(&work)?;

    let scenarios = scenarios()?;
    let label_disk = scenarios
        .iter()
        .position(|s| s.hostpart_label == disk::HOSTPART_LABEL)
        .context("no scenario labelled hostpart")?;
    // `hnroot status` runs after `select` on the disk whose trial is counted across boots: if
    // it wrote anything, that disk's boot state would not be what select wrote.
    let status_disk = scenarios
        .iter()
        .position(|s| s.name == "update")
        .context("no update scenario")?;
    let cfg = test_cfg(&scenarios, label_disk, status_disk);
    // Not the production grub.cfg: this script calls `hnroot select` and `hnroot status` on
    // each disk itself, prints what they set and halts; it boots nothing.
    let keys = Keys::get()?;
    let grub = grubimage::test_script(&cfg, &["time"], &keys.fleet()?, &work)?;
    println!("grub-test: hnroot.mod is {} bytes", grub.module.size);

    let mut built = Vec::new();
    for s in &scenarios {
        built.push(build_scenario(s, &grub, &keys, &work.join("disks"))?);
    }
    let duplicate = build_scenario(&duplicate_labels()?, &grub, &keys, &work.join("disks"))?;
    // Read-write disks first (qemu.rs attaches them), the read-only one next, the duplicate
    // labels last: GRUB numbers the disks in that order, which the PARTUUIDs printed confirm.
    let rw: Vec<&Path> = scenarios
        .iter()
        .zip(&built)
        .filter(|(s, _)| s.attach == Attach::ReadWrite)
        .map(|(_, b)| b.path.as_path())
        .collect();
    let order: Vec<usize> = (0..scenarios.len())
        .filter(|&i| scenarios[i].attach == Attach::ReadWrite)
        .chain((0..scenarios.len()).filter(|&i| scenarios[i].attach == Attach::ReadOnly))
        .collect();
    if order.iter().enumerate().any(|(pos, &i)| pos != i) {
        bail!("read-only scenarios must come last in the list (GRUB numbers disks in order)");
    }
    if label_disk == BOOT_DISK {
        bail!("the scenario labelled hostpart must not be on the disk GRUB starts from");
    }
    let labels = Labels {
        unique: label_disk,
        unique_disk: &built[label_disk],
        duplicate: scenarios.len(),
    };

    // The Linux side's view of every hostpart, from the same disk images (GRUB writes only
    // to the ESPs, so it holds for every boot).
    let linux: Vec<Result<HostpartView, String>> = scenarios
        .iter()
        .zip(&built)
        .map(|(s, b)| {
            let policy = s.seal_policy(&keys);
            linuxview::hostpart_as(b, &work.join("linux").join(s.name), Some(&policy))
                .map_err(|e| format!("{e:#}"))
        })
        .collect();

    let done = Regex::new("hnroot-test: done")?;
    let mut failures = Vec::new();
    let mut failed_checks = 0;
    let mut total = 0;
    let mut timings = Vec::new();
    let mut boot_times = Vec::new();
    let state_copy = |name: &str, when: &str| work.join("state").join(name).join(when);
    for boot in 1..=BOOTS {
        let duplicates_attached = boot > 1;
        let before: Vec<StateNow> = scenarios
            .iter()
            .zip(&built)
            .map(|(s, b)| state_now(b, &state_copy(s.name, "before")))
            .collect::<Result<_>>()?;
        let mut vm_spec = VmSpec::new(&format!("grub-test boot {boot}"), &rw, &work.join("vm"));
        vm_spec.no_reboot = true;
        let drive = |b: &BuiltDisk, ro: &str| {
            [
                "-drive".to_owned(),
                format!("file={},format=raw,if=virtio{ro}", b.path.display()),
            ]
        };
        for (s, b) in scenarios.iter().zip(&built) {
            if s.attach == Attach::ReadOnly {
                vm_spec.extra_args.extend(drive(b, ",readonly=on"));
            }
        }
        if duplicates_attached {
            vm_spec.extra_args.extend(drive(&duplicate, ""));
        }
        let started = Instant::now();
        let mut vm = Vm::start(&vm_spec)?;
        vm.wait_for(&done, BOOT_TIMEOUT)?;
        vm.wait_exit(Duration::from_secs(60))?;
        boot_times.push(started.elapsed());
        let log = vm.log();
        fs::write(work.join(format!("serial-boot{boot}.log")), &log)?;
        let found = blocks(&log);
        let find = |name: &str| found.iter().find(|(n, _)| n == name).map(|(_, b)| b);
        let mut record = |name: String, block: Option<&ConsoleBlock>, problems: Vec<String>| {
            total += 1;
            if let Some(t) = block.and_then(|b| b.elapsed.as_ref()) {
                timings.push(format!("boot {boot} {name}: {t}"));
            }
            if !problems.is_empty() {
                failed_checks += 1;
                let shown = block.map_or(String::new(), |b| format!("{}{}", b.text, b.result));
                failures.push(format!(
                    "boot {boot} {name}: {}\n{shown}",
                    problems.join("; ")
                ));
            }
        };
        for (i, (s, b)) in scenarios.iter().zip(&built).enumerate() {
            let dev = format!("hd{i}");
            let select = find(&dev);
            let problems = match select {
                None => vec![format!("no output for {dev}")],
                Some(block) => {
                    let after = state_now(b, &state_copy(s.name, "after"))?;
                    // In the first boot `hnroot select` also runs twice on the disk found by
                    // label (label-both, label-esp): each counts a boot (rule 9).
                    let extra = if i == label_disk && !duplicates_attached {
                        2
                    } else {
                        0
                    };
                    check_scenario(s, i, b, boot, &before[i], &after, block, extra)
                }
            };
            record(s.name.to_owned(), select, problems);
            let vd = verdicts_block(i);
            let status = find(&vd);
            let problems = match (status, select, &linux[i]) {
                (None, _, _) => vec![format!("no output for {vd}")],
                (_, None, _) => vec![format!("no output for {dev}")],
                (_, _, Err(e)) => vec![format!("no Linux view to compare with: {e}")],
                (Some(status), Some(select), Ok(view)) => {
                    check_verdicts(s, i, view, &before[i], status, select)
                }
            };
            record(format!("{} verdicts", s.name), status, problems);
        }
        let cmdpath = format!("hnroot-test: cmdpath (hd{BOOT_DISK},gpt1)/");
        let problems = if log.contains(&cmdpath) {
            Vec::new()
        } else {
            vec![format!(
                "expected `{cmdpath}...`: GRUB started from another disk"
            )]
        };
        record("cmdpath".to_owned(), None, problems);
        for name in ["label-both", "label-esp", "status"] {
            let block = find(name);
            let problems = match block {
                None => vec![format!("no output for {name}")],
                Some(block) if name == "status" => {
                    check_status(block, status_disk, &built[status_disk])
                }
                Some(block) => check_label(name, block, &labels, duplicates_attached),
            };
            record(name.to_owned(), block, problems);
        }
    }
    println!(
        "grub-test: {} disks, {BOOTS} boots of {}",
        scenarios.len() + 1,
        boot_times
            .iter()
            .map(|t| format!("{:.1} s", t.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("grub-test: `time hnroot status|select` per scenario (GRUB's clock, TCG):");
    for t in &timings {
        println!("  {t}");
    }
    if failed_checks > 0 {
        bail!(
            "grub-test: {failed_checks} of {total} checks failed (serial logs in {}):\n  {}",
            work.display(),
            failures.join("\n  ")
        );
    }
    println!("grub-test: {total} passed, 0 failed");
    Ok(())
}

/// Problems common to every block: no timing printed, GRUB autoloading filesystem modules.
fn common_problems(block: &ConsoleBlock) -> Vec<String> {
    let mut problems = Vec::new();
    if block.elapsed.is_none() {
        problems.push("no `Elapsed time` line from GRUB's `time`".to_owned());
    }
    if block.text.contains(".mod' not found") {
        problems.push(
            "GRUB tried to autoload filesystem modules (the core's prober should have \
             ruled the file out first)"
                .to_owned(),
        );
    }
    problems
}

/// The rest of the line GRUB printed about image `name` on disk `i`: its verdict, from
/// `hnroot: (hdI,gpt2)/NAME: VERDICT`.
fn verdict_line(text: &str, i: usize, name: ImageName) -> Option<&str> {
    let prefix = format!("hnroot: (hd{i},gpt2)/{}: ", name.file_name());
    text.lines().find_map(|l| l.strip_prefix(prefix.as_str()))
}

/// A verdict as (code, detail): GRUB prints `absent`, `ext4 UUID=... (N bytes)` or
/// `not bootable (CODE): why`.
fn grub_verdict(line: &str) -> (&str, &str) {
    if line == "absent" {
        return ("absent", "");
    }
    match line
        .strip_prefix("not bootable (")
        .and_then(|r| r.split_once("): "))
    {
        Some((code, why)) => (code, why),
        None => ("bootable", line),
    }
}

/// The same parts of a verdict reached on Linux, worded by the core as GRUB's are.
fn linux_verdict(v: &Verdict) -> (&'static str, String) {
    match v {
        Verdict::Absent => ("absent", String::new()),
        Verdict::Bootable(_) => ("bootable", v.to_string()),
        Verdict::Refused(Refusal::MissingBootFiles(m)) => {
            let r = Refusal::MissingBootFiles(as_grub_sees(*m));
            (r.code(), r.to_string())
        }
        Verdict::Refused(r) => (r.code(), r.to_string()),
    }
}

/// The missing boot files as GRUB can tell them: its open of a boot file gives a regular file
/// with bytes in it or fails, without saying why in a way that holds across its drivers, so
/// every reason (empty, a directory, a FIFO, a link loop) is "missing" there. Which files are
/// missing, and the code, must still agree.
fn as_grub_sees(m: MissingBootFiles) -> MissingBootFiles {
    use hnroot_core::verdict::BootFileProblem::Absent;
    match m {
        MissingBootFiles::Kernel(_) => MissingBootFiles::Kernel(Absent),
        MissingBootFiles::Initramfs(_) => MissingBootFiles::Initramfs(Absent),
        MissingBootFiles::Both { .. } => MissingBootFiles::Both {
            kernel: Absent,
            initramfs: Absent,
        },
    }
}

/// Whether GRUB's `hnroot: decision:` record in `text` is the record of `want` followed by
/// `args` (what composing the kernel command line used and refused, as the Linux side composes
/// it; `None`: those keys are not compared): `None` when it is, else which keys differ.
fn record_mismatch(text: &str, want: &Decision, args: Option<&str>, whose: &str) -> Option<String> {
    let want = format!("{} {}", want.record(), args.unwrap_or("args=* refused=*"));
    let Some(got) = text
        .lines()
        .find_map(|l| l.strip_prefix("hnroot: decision: "))
    else {
        return Some(format!(
            "no `hnroot: decision:` record; {whose} is `{want}`"
        ));
    };
    let got = got.trim();
    if got == want {
        return None;
    }
    let fields = |r: &str| -> BTreeMap<String, String> {
        r.split_whitespace()
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    };
    let (mut g, w) = (fields(got), fields(&want));
    // `*`: not compared.
    for (k, v) in &w {
        if v == "*" {
            g.insert(k.clone(), v.clone());
        }
    }
    let mut keys: Vec<&String> = g.keys().chain(w.keys()).collect();
    keys.sort_unstable();
    keys.dedup();
    let differ: Vec<String> = keys
        .into_iter()
        .filter(|k| g.get(*k) != w.get(*k))
        .map(|k| {
            let show = |m: &BTreeMap<String, String>| m.get(k).cloned().unwrap_or("(none)".into());
            format!("{k}={} where {whose} has {k}={}", show(&g), show(&w))
        })
        .collect();
    match (differ.is_empty(), g.len() == w.len()) {
        // Every key alike (`*` where not compared): the same record.
        (true, true) => None,
        (true, false) => Some(format!("decision record `{got}`; {whose} is `{want}`")),
        (false, _) => Some(format!("decision record: {}", differ.join(", "))),
    }
}

#[allow(clippy::too_many_arguments)]
fn check_scenario(
    s: &Scenario,
    i: usize,
    b: &BuiltDisk,
    boot: usize,
    before: &StateNow,
    after: &StateNow,
    block: &ConsoleBlock,
    extra_selects: usize,
) -> Vec<String> {
    let mut problems = common_problems(block);
    let mut fail = |what: String| problems.push(what);
    let obs = s.observation(before.entry.seen());
    let tries = s.tries();
    let decision = decide(
        &obs,
        &Config {
            tries,
            ..Config::default()
        },
    );
    if let Some(p) = record_mismatch(
        &block.text,
        &decision,
        None,
        "the core's decision on the scenario's observation",
    ) {
        fail(p);
    }
    // Without --menu-timeout-file select sets the default countdown; a failed select none.
    let menu_timeout = match field(&block.result, "rc") {
        "0" => hnroot_core::menu::DEFAULT_SECONDS.to_string(),
        _ => String::new(),
    };
    for (key, want) in [
        ("partuuid", b.hostpart.partuuid.to_string()),
        ("esp_partuuid", b.esp.partuuid.to_string()),
        ("tries", tries.to_string()),
        ("menu_timeout", menu_timeout),
    ] {
        let got = field(&block.result, key);
        if got != want {
            fail(format!(
                "{key}={got:?}, expected {want} (as sgdisk wrote / as asked)"
            ));
        }
    }
    match decision.boot() {
        Some(chosen) => {
            let code = chosen.reason.code().code();
            if field(&block.result, "rc") != "0" || field(&block.result, "reason") != code {
                fail(format!("expected rc=0 reason={code}"));
            }
            if field(&block.result, "image") != chosen.image.file_name()
                || field(&block.result, "uuid") != chosen.uuid.to_string()
            {
                fail(format!(
                    "expected image={} uuid={}",
                    chosen.image, chosen.uuid
                ));
            }
            let (fb, fb_uuid) = chosen
                .fallbacks
                .first()
                .map_or((String::new(), String::new()), |(n, u)| {
                    (n.file_name().to_owned(), u.to_string())
                });
            if field(&block.result, "fallback") != fb
                || field(&block.result, "fallback_uuid") != fb_uuid
            {
                fail(format!("expected fallback={fb} fallback_uuid={fb_uuid}"));
            }
        }
        None => {
            if field(&block.result, "rc") != "1"
                || field(&block.result, "reason") != "nothing-bootable"
            {
                fail("expected rc=1 reason=nothing-bootable".to_owned());
            }
        }
    }
    // What the scenario is about, on its first boot.
    if boot == 1 {
        let (reason, image) = s.first;
        let got_reason = decision.reason_code().code();
        let got_image = decision.boot().map(|c| c.image);
        if got_reason != reason || got_image != image {
            fail(format!(
                "scenario expects {reason} {image:?}; the core decides {got_reason} {got_image:?}"
            ));
        }
    }
    // `select` prints a line for each image it refuses, with the refusal's code; for no other.
    for name in ImageName::ALL {
        let printed = verdict_line(&block.text, i, name).map(grub_verdict);
        let want = match s.expected(name) {
            Some(Expect::Refused(code)) => Some(code),
            _ => None,
        };
        match (printed, want) {
            (Some((code, _)), Some(want)) if code == want => {}
            (None, None) => {}
            (got, want) => fail(format!(
                "{name}: GRUB printed {}, expected {}",
                got.map_or("no verdict".to_owned(), |(c, _)| format!("`{c}`")),
                want.map_or("no line (not refused)".to_owned(), |c| format!(
                    "`not bootable ({c})`"
                ))
            )),
        }
    }
    // The boot state on disk afterwards: what the core asked to write, where GRUB could; and
    // where it could not, GRUB says so and boots anyway.
    let state_path = format!("(hd{i},gpt1)/{}", disk::BOOTSTATE_PATH);
    let not_recording = format!("hnroot: not recording this boot in {state_path}: ");
    let said_not_recording = block.text.lines().any(|l| l.starts_with(&not_recording));
    let writable = matches!(before.entry, StateEntry::File(_)) && s.attach == Attach::ReadWrite;
    match decision.boot().and_then(|c| c.write) {
        Some(mut w) if writable => {
            // Later selects on the same disk in this boot decide again from what was written.
            for _ in 0..extra_selects {
                let again = decide(
                    &s.observation(StateSeen::Valid(w)),
                    &Config {
                        tries,
                        ..Config::default()
                    },
                );
                if let Some(next) = again.boot().and_then(|c| c.write) {
                    w = next;
                }
            }
            let state_after = after.entry.seen();
            if state_after != StateSeen::Valid(w) {
                fail(format!(
                    "boot state on disk {state_after:?}, expected {w:?}"
                ));
            }
            if said_not_recording {
                fail(format!(
                    "GRUB printed `{not_recording}...` on a writable file"
                ));
            }
        }
        wants => {
            if after.entry != before.entry {
                fail("the boot-state path changed although nothing could be written".to_owned());
            }
            if wants.is_some() && !said_not_recording {
                fail(format!(
                    "expected `{not_recording}...`: the state to write could not be written"
                ));
            }
            if wants.is_none() && said_not_recording {
                fail(format!(
                    "GRUB printed `{not_recording}...` with nothing to write"
                ));
            }
        }
    }
    // A boot-state path that cannot be read as a file is decided on as a corrupt one (checked
    // by the record above), and GRUB says why (no code: GRUB's own error text).
    let unreadable = format!("hnroot: boot state unreadable ({state_path}: ");
    let said_unreadable = block.text.lines().any(|l| l.starts_with(&unreadable));
    let is_dir = matches!(before.entry, StateEntry::Directory);
    if said_unreadable != is_dir {
        fail(format!(
            "GRUB {} `{unreadable}...` for a boot-state path that is {}",
            if said_unreadable {
                "printed"
            } else {
                "did not print"
            },
            if is_dir {
                "a directory"
            } else {
                "not a directory"
            }
        ));
    }
    problems
}

/// One verdict: GRUB's verdict on every image name (`hnroot status` prints them all) against
/// hnroot-linux's on the same hostpart, code and detail, and both against the scenario; the
/// revert marker and the boot-state path as Linux sees them; and GRUB's decision records
/// (status, then select) against the core's decision on what Linux observed.
fn check_verdicts(
    s: &Scenario,
    i: usize,
    linux: &HostpartView,
    before: &StateNow,
    status: &ConsoleBlock,
    select: &ConsoleBlock,
) -> Vec<String> {
    let mut problems = common_problems(status);
    for name in ImageName::ALL {
        let Some(judged) = linux.image(name) else {
            problems.push(format!("{name}: no verdict from hnroot-linux"));
            continue;
        };
        let (lcode, ldetail) = linux_verdict(&judged.verdict);
        match verdict_line(&status.text, i, name).map(grub_verdict) {
            None => problems.push(format!(
                "{name}: `hnroot status` printed no verdict (Linux: {lcode})"
            )),
            Some((gcode, _)) if gcode != lcode => problems.push(format!(
                "{name}: GRUB's verdict is {gcode}, Linux's is {lcode} ({ldetail})"
            )),
            Some((gcode, gdetail)) if gdetail != ldetail => problems.push(format!(
                "{name}: both {gcode}, but GRUB finds `{gdetail}`, Linux `{ldetail}`"
            )),
            Some(_) => {}
        }
        let want = s.expected(name);
        let as_expected = match (want, &judged.verdict) {
            (None, Verdict::Absent) => true,
            (Some(Expect::Bootable(u)), Verdict::Bootable(b)) => b.uuid == fs_uuid(u),
            (Some(Expect::Refused(code)), Verdict::Refused(r)) => r.code() == code,
            _ => false,
        };
        if !as_expected {
            problems.push(format!(
                "{name}: Linux's verdict is {lcode} {ldetail}; the scenario expects {}",
                want.map_or("absent".to_owned(), |e| format!("{e:?}"))
            ));
        }
    }
    if linux.revert_requested != s.revert_requested() {
        problems.push(format!(
            "hnroot-linux sees a revert request: {}; the scenario placed {}",
            linux.revert_requested,
            if s.revert_requested() {
                "system-revert"
            } else {
                "none"
            }
        ));
    }
    if before.linux != before.entry.seen() {
        problems.push(format!(
            "hnroot-linux judges the boot-state path {:?}; the core, on what is there, {:?}",
            before.linux,
            before.entry.seen()
        ));
    }
    let decision = decide(
        &linux.observation(before.linux),
        &Config {
            tries: s.tries(),
            ..Config::default()
        },
    );
    let whose = "the core's decision on hnroot-linux's observation";
    // The kernel command line as the Linux side composes it from what it read: the chosen
    // image's own arguments and the host's (the test script passes no defaults).
    let args = decision.boot().map_or_else(
        || "args=- refused=-".to_owned(),
        |b| {
            let extra = linux.extra_args(b.image, ArgsFile::Absent);
            let line = KernelArgs {
                booted: Booted {
                    name: b.image,
                    uuid: b.uuid,
                },
                hostpart: None,
                esp: None,
                tries: s.tries(),
                reason: b.reason.code(),
                via: hnroot_core::cmdline::BootVia::Loader,
                root_hash: None,
            };
            let mut text = String::new();
            bootline::compose(&line, &extra, &mut text)
                .map(|c| c.record().to_string())
                .unwrap_or_default()
        },
    );
    for (command, block) in [("status", status), ("select", select)] {
        if let Some(p) = record_mismatch(&block.text, &decision, Some(&args), whose) {
            problems.push(format!("{command}: {p}"));
        }
    }
    let (status_rc, select_rc) = (field(&status.result, "rc"), field(&select.result, "rc"));
    if status_rc != select_rc {
        problems.push(format!(
            "status rc={status_rc}, select rc={select_rc}: one decision, two outcomes"
        ));
    }
    problems
}

/// `hnroot status` prints the boot state and both PARTUUIDs (sgdisk's) and sets the variables.
fn check_status(block: &ConsoleBlock, disk: usize, b: &BuiltDisk) -> Vec<String> {
    let mut problems = common_problems(block);
    for text in [
        format!("hnroot: boot state (hd{disk},gpt1)/hnroot/bootstate: "),
        format!(
            "hnroot: hostpart (hd{disk},gpt2) PARTUUID {}, ESP (hd{disk},gpt1) PARTUUID {}, 3 \
             tries; module built for Debian grub2 {}",
            b.hostpart.partuuid,
            b.esp.partuuid,
            hnroot_testkit::release::GRUB.version
        ),
    ] {
        if !block.text.contains(&text) {
            problems.push(format!("expected `{text}`"));
        }
    }
    for (key, want) in [
        ("rc", "0".to_owned()),
        ("partuuid", b.hostpart.partuuid.to_string()),
        ("esp_partuuid", b.esp.partuuid.to_string()),
    ] {
        let got = field(&block.result, key);
        if got != want {
            problems.push(format!("{key}={got:?}, expected {want}"));
        }
    }
    problems
}

/// Where the searches by label should find, or refuse to guess.
struct Labels<'a> {
    /// GRUB's disk number of the only disk labelled `hostpart`/`EFI-BOOT` on the first boot.
    unique: usize,
    unique_disk: &'a BuiltDisk,
    /// GRUB's disk number of the disk with the duplicate labels (attached from boot 2 on).
    duplicate: usize,
}

/// `label-both` finds hostpart and the ESP by label; `label-esp` only the ESP (hostpart
/// given). Unique labels: the devices and PARTUUIDs sgdisk wrote. Duplicates: a refusal that
/// names both devices.
fn check_label(name: &str, block: &ConsoleBlock, l: &Labels, duplicates: bool) -> Vec<String> {
    let mut problems = common_problems(block);
    let (u, d) = (l.unique, l.duplicate);
    let rc = field(&block.result, "rc");
    if duplicates {
        let (label, part, option) = if name == "label-both" {
            ("hostpart", "gpt2", "--hostpart")
        } else {
            ("EFI-BOOT", "gpt1", "--esp")
        };
        // The core's refusal (the devices carry no pin and neither is on GRUB's disk), in the
        // core's words, after the devices GRUB names.
        let why = Choice::Ambiguous {
            count: 2,
            pinned: 0,
            on_boot_disk: 0,
        };
        let wanted = format!("error: filesystems labelled `{label}': ");
        let refusal = block.text.lines().find_map(|l| l.strip_prefix(&wanted));
        let parts = [
            format!("(hd{u},{part})"),
            format!("(hd{d},{part})"),
            format!("(GRUB started from hd{BOOT_DISK}): {why}; pass {option} DEVICE"),
        ];
        let missing: Vec<&String> = parts
            .iter()
            .filter(|p| !refusal.is_some_and(|line| line.contains(p.as_str())))
            .collect();
        if rc != "1" {
            problems.push(format!("rc={rc:?}, expected 1: the search must refuse"));
        }
        if !missing.is_empty() {
            problems.push(format!(
                "expected `{wanted}...` with {}",
                missing
                    .iter()
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        // A failed select leaves no countdown for grub.cfg (which then waits for a key).
        let menu = field(&block.result, "menu_timeout");
        if !menu.is_empty() {
            problems.push(format!("menu_timeout={menu:?} after a failed select"));
        }
        return problems;
    }
    let mut expect = vec![
        ("rc", "0".to_owned()),
        ("esp", format!("hd{u},gpt1")),
        ("esp_partuuid", l.unique_disk.esp.partuuid.to_string()),
    ];
    // The fleet's file's countdown; the refused file's default, and the console says why.
    let (menu_file, menu) = if name == "label-both" {
        (MENU_TIMEOUT, hnroot_core::menu::parse(MENU_TIMEOUT))
    } else {
        (MENU_TIMEOUT_BAD, hnroot_core::menu::parse(MENU_TIMEOUT_BAD))
    };
    match menu {
        Ok(seconds) => expect.push(("menu_timeout", seconds.to_string())),
        Err(e) => {
            expect.push((
                "menu_timeout",
                hnroot_core::menu::DEFAULT_SECONDS.to_string(),
            ));
            let said = format!(
                "hnroot: menu-timeout file refused ({e}): the menu waits {} s \
                 ((memdisk)/hnroot/menu-timeout-bad)",
                hnroot_core::menu::DEFAULT_SECONDS
            );
            if !block.text.contains(&said) {
                problems.push(format!(
                    "expected `{said}` for {:?}",
                    String::from_utf8_lossy(menu_file)
                ));
            }
        }
    }
    if name == "label-both" {
        expect.push(("hostpart", format!("hd{u},gpt2")));
        expect.push(("partuuid", l.unique_disk.hostpart.partuuid.to_string()));
    }
    for (key, want) in expect {
        let got = field(&block.result, key);
        if got != want {
            problems.push(format!("{key}={got:?}, expected {want}"));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `grub-module/grub.cfg` uses only variables that `hnroot.c` sets and that its header
    /// comment documents, and passes the initramfs everything it needs from GRUB.
    #[test]
    fn grub_cfg_variables_are_set_by_the_module_and_documented() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let cfg = fs::read_to_string(root.join("grub-module/grub.cfg")).unwrap();
        let module = fs::read_to_string(root.join("grub-module/hnroot.c")).unwrap();
        let header: String = cfg
            .lines()
            .take_while(|l| l.starts_with('#') || l.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        let used = Regex::new(r"\$\{hnroot_([a-z_]+)\}").unwrap();
        let mut names: Vec<&str> = used
            .captures_iter(&cfg)
            .map(|c| c.get(1).unwrap().as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        for needed in [
            "image",
            "hostpart",
            "cmdline",
            "fallback_image",
            "fallback_cmdline",
        ] {
            assert!(
                names.contains(&needed),
                "grub.cfg does not use hnroot_{needed}: {names:?}"
            );
        }
        for name in names {
            let set = format!("set_var (prefix, \"{name}\"");
            let set_uuid = format!("set_uuid_var (prefix, \"{name}\"");
            let set_cmdline = format!("set_cmdline_var (prefix, \"{name}\"");
            assert!(
                module.contains(&set)
                    || module.contains(&set_uuid)
                    || module.contains(&set_cmdline),
                "grub.cfg uses ${{hnroot_{name}}}, which hnroot.c never sets"
            );
            assert!(
                header.contains(&format!("#   hnroot_{name} ")),
                "grub.cfg's header does not document hnroot_{name}"
            );
        }
        let linux: Vec<&str> = cfg
            .lines()
            .filter(|l| l.trim_start().starts_with("linux "))
            .collect();
        assert_eq!(linux.len(), 2, "the default and the fallback entry");
        // The core composes hnroot's whole part of the command line (hnroot_core::cmdline::
        // KernelArgs, its round trip proven in hnroot-core/tests/cmdline_props.rs); grub.cfg
        // passes it on whole and adds no hnroot parameter of its own.
        for (line, var) in linux
            .iter()
            .zip(["${hnroot_cmdline}", "${hnroot_fallback_cmdline}"])
        {
            assert!(line.contains(var), "`{line}` lacks {var}");
            assert!(
                !line.contains("hnroot."),
                "`{line}` composes hnroot parameters itself"
            );
        }
    }

    #[test]
    fn test_cfg_clears_and_prints_every_variable() {
        let scenarios = scenarios().unwrap();
        let cfg = test_cfg(&scenarios, 0, 1);
        let i = scenarios.iter().position(|s| s.tries == Some(5)).unwrap();
        assert!(cfg.contains(&format!(
            "if time hnroot select --hostpart (hd{i},gpt2) --esp (hd{i},gpt1) --tries 5 \
             --seal-keys (memdisk)/hnroot/seal-keys; then"
        )));
        assert!(cfg.contains(&format!(
            "if time hnroot status --set-prefix vd_ --hostpart (hd{i},gpt2) --esp (hd{i},gpt1) \
             --tries 5 --seal-keys (memdisk)/hnroot/seal-keys; then"
        )));
        // Only the scenarios that require sealed images name the marker.
        let r = scenarios.iter().position(|s| s.require_sealed).unwrap();
        assert!(cfg.contains(&format!(
            "if time hnroot select --hostpart (hd{r},gpt2) --esp (hd{r},gpt1) --seal-keys \
             (memdisk)/hnroot/seal-keys --require-sealed-file (memdisk)/hnroot/require-sealed; then"
        )));
        assert_eq!(
            cfg.matches(REQUIRE_SEALED_ARG).count(),
            2 * scenarios.iter().filter(|s| s.require_sealed).count()
        );
        // Each disk's status block comes before its select block: both decide on the same
        // boot state.
        for i in 0..scenarios.len() {
            let status = cfg.find(&format!("begin {}\"", verdicts_block(i))).unwrap();
            let select = cfg.find(&format!("begin hd{i}\"")).unwrap();
            assert!(status < select, "disk {i}");
        }
        assert!(cfg.contains(&format!(
            "if time hnroot select --set-prefix lbl_ {MENU_TIMEOUT_ARG}; then"
        )));
        for var in [
            "partuuid",
            "esp_partuuid",
            "tries",
            "hostpart",
            "esp",
            "menu_timeout",
        ] {
            assert!(cfg.contains(&format!("set lbl_{var}=\n")), "{var}");
            assert!(cfg.contains(&format!(" {var}=$lbl_{var}")), "{var}");
        }
    }

    #[test]
    fn verdict_lines_parse_into_codes_as_the_core_words_them() {
        let text = "hnroot: (hd3,gpt2)/hn-root.img: not bootable (truncated): truncated: x\n\
                    hnroot: (hd3,gpt2)/hn-root-old.img: ext4 UUID=u (2097152 bytes)\n\
                    hnroot: (hd3,gpt2)/hn-root-new.img: absent\n";
        let line = |n| verdict_line(text, 3, n).map(grub_verdict);
        assert_eq!(
            line(ImageName::Current),
            Some(("truncated", "truncated: x"))
        );
        assert_eq!(
            line(ImageName::Old),
            Some(("bootable", "ext4 UUID=u (2097152 bytes)"))
        );
        assert_eq!(line(ImageName::New), Some(("absent", "")));
        assert_eq!(line(ImageName::Broken), None);
        assert_eq!(verdict_line(text, 13, ImageName::Current), None);
        // A refusal as the FFI words it for GRUB parses back into the core's code and text.
        let r = hnroot_core::verdict::Refusal::NoFilesystem;
        let printed = format!("not bootable ({}): {r}", r.code());
        let (code, detail) = linux_verdict(&Verdict::Refused(r));
        assert_eq!(grub_verdict(&printed), (code, detail.as_str()));
    }

    #[test]
    fn a_decision_record_that_differs_names_the_keys() {
        let s = &scenarios().unwrap()[0];
        let decision = decide(&s.observation(StateSeen::Absent), &Config::default());
        let record = format!("{} args=image refused=-", decision.record());
        let text = format!("hnroot: something\nhnroot: decision: {record}\n");
        let args = Some("args=image refused=-");
        assert_eq!(record_mismatch(&text, &decision, args, "core"), None);
        assert_eq!(record_mismatch(&text, &decision, None, "core"), None);
        let wrong = text.replace("notes=state-absent", "notes=-");
        let p = record_mismatch(&wrong, &decision, args, "core").unwrap();
        assert!(
            p.contains("notes=- where core has notes=state-absent"),
            "{p}"
        );
        let p = record_mismatch(&text, &decision, Some("args=- refused=-"), "core").unwrap();
        assert!(p.contains("args=image where core has args=-"), "{p}");
        let p = record_mismatch("hnroot: booting\n", &decision, args, "core").unwrap();
        assert!(p.starts_with("no `hnroot: decision:` record"), "{p}");
    }

    #[test]
    fn hostile_scenarios_expect_what_the_product_documents() {
        let all = scenarios().unwrap();
        let by_name = |n: &str| all.iter().find(|s| s.name == n).unwrap();
        // A revert marker in any form is a revert request.
        for n in [
            "revert-marker-link",
            "revert-marker-directory",
            "manual-revert",
        ] {
            assert!(by_name(n).revert_requested(), "{n}");
        }
        // Every image name a scenario places is expected to be judged; nothing else is.
        for s in &all {
            for (path, _) in &s.hostpart {
                let is_image = ImageName::from_file_name(path).is_some();
                let expected = ImageName::from_file_name(path).and_then(|n| s.expected(n));
                assert_eq!(is_image, expected.is_some(), "{} {path}", s.name);
            }
        }
    }
}

/// The README's commands run without options: every default must parse (clap turns a
/// `default_value_t` into text and parses it back, which once failed for `--debian`).
#[cfg(test)]
mod default_args {
    use clap::Parser;

    #[test]
    fn the_defaults_parse() {
        super::Args::try_parse_from(["grub-test"]).unwrap_or_else(|e| panic!("{e}"));
        assert!(super::Args::try_parse_from(["grub-test", "--debian", "12"]).is_err());
    }
}
