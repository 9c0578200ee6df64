//! The boot parts of one Debian release: everything the QEMU scenarios, the demo and the disk
//! command boot, built once per release and cached under
//! `target/hnroot-build/boot-parts/<suite>/` — the release's Debian kernel, hnroot's standalone
//! initramfs for it, the production [`GrubImage`] (hnroot's own GRUB from the loader kit, the
//! same for every release, the production `grub-module/grub.cfg` verbatim), the `hnroot` CLI, and test root images (one per
//! version, each with its own ext4 UUID, signed by the test publisher whose public key every
//! image trusts, each carrying the virtio NIC's driver and a script that brings the network
//! up) — and, from them, the disk a scenario asks for ([`DiskContents`]: which test images
//! under which names, the boot state written with the core's codec, markers, data and the
//! actions the test init runs), made by [`disk::build`].
//! It builds files and never boots them: booting them is [`crate::console`], inspecting them
//! afterwards [`crate::inspect`].

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hnroot_core::bootstate::{new_block, BootState, Trial, Tries};
use hnroot_core::layout::{IMAGE_ARGS_PATH, REVERT_MARKER};
use hnroot_core::name::ImageName;
use hnroot_core::uuid::FsUuid;

use crate::buildenv::{self, cached, fnv1a, read};
use crate::busybox;
use crate::disk::{
    self, BuiltDisk, BuiltFs, DiskSpec, EspSpec, HostFs, HostpartSpec, ImageFile, RootImageSpec,
    Uuid,
};
use crate::grubimage::{self, GrubImage};
use crate::initramfs;
use crate::kernel::{self, Kernel};
use crate::release::Debian;
use crate::signing::{self, Publisher};

/// Where the hnroot CLI is installed in the test images (as the README's systemd unit expects).
pub const CLI_IN_IMAGE: &str = "usr/sbin/hnroot";
/// Where scenarios keep image files the test init stages with `hnroot stage` (on hostpart),
/// each with its signature beside it.
pub const STAGE_DIR: &str = "data/e2e";
/// Where the test images keep the publisher's public key: in `hnroot stage`'s default
/// trusted-keys directory.
pub const KEY_IN_IMAGE: &str = "etc/hnroot/keys/hnroot-test.pub";
/// The script in the test images that brings QEMU's user network up (see [`net_up_script`]).
pub const NET_UP_IN_IMAGE: &str = "usr/sbin/hnroot-test-net-up";
/// A file of known blocks in every test image, for the sealed-image tests to change one of
/// after sealing: [`VERITY_PROBE_BLOCKS`] blocks of 4 KiB, block `i` filled with the line
/// [`verity_probe_line`]`(i)`.
pub const VERITY_PROBE_IN_IMAGE: &str = "usr/share/hnroot-test/verity-probe";
/// The probe file's 4 KiB blocks.
pub const VERITY_PROBE_BLOCKS: usize = 16;

/// The line block `i` of the probe file repeats (29 bytes).
pub fn verity_probe_line(i: usize) -> String {
    format!("hnroot verity probe block {i:02}\n")
}

/// The probe file's bytes.
pub fn verity_probe() -> Vec<u8> {
    let mut out = Vec::with_capacity(VERITY_PROBE_BLOCKS * 4096);
    for i in 0..VERITY_PROBE_BLOCKS {
        let line = verity_probe_line(i);
        let block: Vec<u8> = line.bytes().cycle().take(4096).collect();
        out.extend_from_slice(&block);
    }
    out
}
/// The kernel arguments every test image carries (`usr/lib/hnroot/kernel-args`):
/// `no_timer_check` skips the kernel's IO-APIC timer check, which a TCG guest on a loaded host
/// fails ("IO-APIC + timer doesn't work!", a panic before any hnroot code runs), as virtual
/// machines commonly do.
pub const TEST_IMAGE_ARGS: &str =
    "# hnroot's test images: a TCG guest on a busy host\nno_timer_check\n";
/// What GRUB's decision record says of the kernel arguments when it boots a test image with the
/// production `grub.cfg`: its `--defaults` and the image's own file used, nothing refused.
pub const TEST_ARGS_RECORD: &str = "args=defaults,image refused=-";
/// The guest's address on QEMU's user network (static: no DHCP client runs).
pub const GUEST_ADDR: &str = "10.0.2.15/24";
/// The NIC's driver (and what it needs), from the test kernel, in every test image.
const NET_MODULES: &[&str] = &["virtio_net"];
/// Where a [`Behaviour::NoInit`] image's `/sbin/init` points: nothing there.
const NOWHERE: &str = "/lib/systemd/systemd";

/// How a test image behaves once its init runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Reports, runs the scenario's action, reboots or powers off.
    Good,
    /// Reports, then its init exits: the kernel panics ("Attempted to kill init!") and, with
    /// `panic=10` on the command line, reboots 10 s later. It never runs `hnroot mark-good`.
    InitExits,
    /// Its `/boot/kernel` is not a kernel (a build that went wrong): GRUB can read the image
    /// but its `linux` command fails, so the menu's fallback entry boots another image.
    BadKernel,
    /// Its `/sbin/init` is a symbolic link to nothing (a build that lost its init): GRUB and
    /// the kernel boot it, hnroot-init mounts it and finds no init to start.
    NoInit,
}

/// The block size of the test images' ext4 (`disk::build_root_image` makes 4 KiB blocks).
const TAMPER_BLOCK: u64 = 4096;
/// The file in an [`ImageContent::Directory`].
const DIRECTORY_NOTE: &str = "not-an-image";

/// What a [`Behaviour::BadKernel`] image holds as `/boot/kernel`.
const NOT_A_KERNEL: &[u8] = b"hnroot test image: this file is not a Linux kernel\n";

/// A test image to build.
#[derive(Debug, Clone, Copy)]
pub struct ImageDef {
    /// Printed by its test init (`booted version=...`); names it in scenarios.
    pub version: &'static str,
    /// What its init does.
    pub behaviour: Behaviour,
    /// Its own kernel arguments (`usr/lib/hnroot/kernel-args`), when not [`TEST_IMAGE_ARGS`].
    pub args: Option<&'static str>,
}

/// A built test image.
#[derive(Debug, Clone)]
pub struct TestImage {
    /// Its [`ImageDef::version`].
    pub version: String,
    /// The image file, its ext4 UUID and size.
    pub fs: BuiltFs,
    /// FNV-1a of the file: scenarios check that images come through a switch unchanged.
    pub digest: u64,
    /// Its minisign signature by [`BootParts::publisher`] (`<image>.minisig`).
    pub signature: PathBuf,
}

/// Everything the scenarios boot.
#[derive(Debug)]
pub struct BootParts {
    /// The Debian release the parts come from.
    pub release: Debian,
    /// `target/hnroot-build/boot-parts/<suite>`.
    pub cache: PathBuf,
    /// The Debian kernel in every test image.
    pub kernel: Kernel,
    /// hnroot's initramfs (`hnroot-init` as `/init`) in every test image.
    pub initramfs: initramfs::Built,
    /// The production GRUB image every scenario disk boots, built with the fleet setting that
    /// skips the menu ([`grubimage::Menu::Skipped`]).
    pub grub: GrubImage,
    /// The same with the product's menu countdown ([`grubimage::Menu::Default`]): for a disk
    /// whose story types at GRUB's menu ([`DiskContents::loader`]).
    pub grub_menu: GrubImage,
    /// The test images, in the order asked for.
    pub images: Vec<TestImage>,
    /// Who signs the test images; every image trusts its public key.
    pub publisher: Publisher,
    /// What each part cost (or `cached`), for the time table.
    pub timings: Vec<(String, Duration, bool)>,
}

/// An image file as a scenario places it on hostpart. Derived contents are kept next to the
/// disk as `<file name>.source`, to compare with what hostpart holds afterwards.
#[derive(Debug, Clone)]
pub enum ImageContent {
    /// The test image of this version.
    Image(&'static str),
    /// The first `bytes` of the test image of this version (a copy cut short).
    Truncated(&'static str, u64),
    /// `bytes` of pseudo-random data: no filesystem.
    Garbage(u64),
    /// A directory (holding one file) where an image file should be.
    Directory,
    /// A file the scenario prepared (a sealed copy of a test image, say).
    File(PathBuf),
}

/// The boot-state file on the ESP as a scenario starts.
#[derive(Debug, Clone)]
pub enum StateInit {
    /// Written with the core's codec: the image of this version is committed (good).
    Committed(&'static str),
    /// Written with the core's codec: the image of version `image` on trial with
    /// `tries_left` of the production trial length left, `good` the image recorded good.
    Trial {
        /// The image on trial.
        image: &'static str,
        /// Tries it has left.
        tries_left: u8,
        /// The image recorded good, if any.
        good: Option<&'static str>,
    },
    /// Exactly these bytes.
    Bytes(Vec<u8>),
    /// No file at all.
    Missing,
}

/// What a scenario puts on its disk, in terms of the test images.
#[derive(Debug, Clone)]
pub struct DiskContents {
    /// Names the disk and its work directory.
    pub name: String,
    /// hostpart's filesystem.
    pub fs: HostFs,
    /// hostpart's label (`hostpart` unless the scenario is about labels).
    pub label: String,
    /// Image files on hostpart: (name, content).
    pub images: Vec<(ImageName, ImageContent)>,
    /// Whether `system-revert` is on hostpart.
    pub revert_marker: bool,
    /// The boot-state file.
    pub state: StateInit,
    /// Versions copied to `data/e2e/<version>.img`, for the test init to `hnroot stage`.
    pub stage_sources: Vec<&'static str>,
    /// The test init's actions, one per boot that reaches them (see [`disk::test_init`]).
    pub actions: Vec<String>,
    /// Image files given the immutable attribute (`chattr +i`: they cannot be renamed);
    /// ext4 hostparts only.
    pub immutable: Vec<ImageName>,
    /// Another `EFI/BOOT/BOOTX64.EFI` than the production image (an older loader to update).
    pub loader: Option<PathBuf>,
    /// Further files on hostpart: (relative path, source file).
    pub hostpart_files: Vec<(String, PathBuf)>,
}

impl DiskContents {
    /// hostpart of `fs` with `hn-root.img` = `current`, committed in the boot state.
    pub fn committed(name: &str, fs: HostFs, current: &'static str) -> Self {
        Self {
            name: name.to_string(),
            fs,
            label: disk::HOSTPART_LABEL.to_string(),
            images: vec![(ImageName::Current, ImageContent::Image(current))],
            revert_marker: false,
            state: StateInit::Committed(current),
            stage_sources: Vec::new(),
            actions: Vec::new(),
            immutable: Vec::new(),
            loader: None,
            hostpart_files: Vec::new(),
        }
    }

    /// The same with `name` holding `content` (replacing what it held).
    pub fn with(mut self, name: ImageName, content: ImageContent) -> Self {
        self.images.retain(|(n, _)| *n != name);
        self.images.push((name, content));
        self
    }

    /// The same without an image file `name`.
    pub fn without(mut self, name: ImageName) -> Self {
        self.images.retain(|(n, _)| *n != name);
        self
    }
}

impl BootParts {
    /// Build (or take from the cache) everything the scenarios need, with `defs` as images.
    pub fn build(release: Debian, defs: &[ImageDef]) -> Result<BootParts> {
        let _lock = buildenv::lock(&format!("boot-parts-{}", release.suite()))?;
        let cache = buildenv::build_root()
            .join("boot-parts")
            .join(release.suite());
        fs::create_dir_all(&cache).with_context(|| format!("cannot create {}", cache.display()))?;
        let mut timings = Vec::new();
        let mut timed = |what: &str, started: Instant, cached: bool| {
            timings.push((what.to_string(), started.elapsed(), cached));
        };

        let t = Instant::now();
        let cached_kernels: Vec<PathBuf> = fs::read_dir(kernel::cache_dir(release))
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        let kernel = kernel::fetch_for(release)?;
        timed(
            &format!("kernel {} (Debian {})", kernel.release, kernel.deb_version),
            t,
            cached_kernels
                .iter()
                .any(|dir| kernel.vmlinuz.starts_with(dir)),
        );

        let t = Instant::now();
        let init = initramfs::static_binary("hnroot-init", "hnroot-init")?;
        let cli = initramfs::static_binary("hnroot-cli", "hnroot")?;
        timed("hnroot-init and hnroot (musl, release)", t, false);

        let t = Instant::now();
        let wanted = initramfs::default_modules();
        let init_bytes = read(&init)?;
        let initramfs_path = cache.join("initramfs.zst");
        let key = format!(
            "initramfs v3 {} {:016x} {}",
            kernel.release,
            fnv1a(&init_bytes),
            wanted.join(",")
        );
        let spec = initramfs::Spec {
            init: init.clone(),
            modules_dir: Some(kernel.modules_dir.clone()),
            modules_root: None,
            wanted,
            busybox: None,
            compress: initramfs::Compress::Zstd,
        };
        let mut built_initramfs = None;
        let hit = cached(&initramfs_path, &key, || {
            built_initramfs = Some(initramfs::build(&spec, &initramfs_path)?);
            Ok(())
        })?;
        // Debian 13's modules are .ko.xz: hnroot-init loads them through the kernel's own
        // decompressor, which this kernel must have.
        let module_format =
            kernel.module_format(&kernel.modules_for(&spec_modules(&spec))?.load_order)?;
        let initramfs = match built_initramfs {
            Some(b) => b,
            None => {
                let wanted: Vec<&str> = spec.wanted.iter().map(String::as_str).collect();
                let set = kernel.modules_for(&wanted)?;
                initramfs::Built {
                    path: initramfs_path.clone(),
                    cpio_bytes: 0,
                    compressed_bytes: fs::metadata(&initramfs_path)?.len(),
                    init_bytes: init_bytes.len() as u64,
                    modules: set.load_order,
                    builtin: set.builtin,
                }
            }
        };
        timed(
            &format!(
                "initramfs ({} KiB zstd, hnroot-init {} KiB, {} modules {})",
                initramfs.compressed_bytes.div_ceil(1024),
                initramfs.init_bytes.div_ceil(1024),
                initramfs.modules.len(),
                match module_format {
                    kernel::ModuleFormat::Plain => "as .ko".to_string(),
                    kernel::ModuleFormat::Compressed(how) =>
                        format!("{how}-compressed, decompressed by the kernel"),
                }
            ),
            t,
            hit,
        );

        let t = Instant::now();
        let grub = grubimage::production(grubimage::Menu::Skipped)?;
        let grub_menu = grubimage::production(grubimage::Menu::Default)?;
        timed(
            &format!(
                "hnroot.mod ({} bytes) + BOOTX64.EFI (menu skipped, and with the default countdown)",
                grub.module.size
            ),
            t,
            grub.cached && grub_menu.cached,
        );

        let t = Instant::now();
        let publisher = Publisher::in_dir(&cache)?;
        let busybox_digest = fnv1a(&read(Path::new(busybox::BUSYBOX))?);
        let initramfs_digest = fnv1a(&read(&initramfs.path)?);
        // What every test image carries besides its kernel, initramfs and init: the CLI, the
        // publisher's key where `hnroot stage` looks for trusted keys, its own kernel arguments
        // (read by GRUB through the loopback: every boot exercises them), the NIC's driver and
        // the script that brings the network up.
        let mut common = vec![
            ImageFile::new(CLI_IN_IMAGE, 0o755, read(&cli)?),
            ImageFile::new(KEY_IN_IMAGE, 0o644, publisher.public_key()?),
            ImageFile::new(IMAGE_ARGS_PATH, 0o644, TEST_IMAGE_ARGS),
            ImageFile::new(VERITY_PROBE_IN_IMAGE, 0o644, verity_probe()),
        ];
        let net = kernel.modules_for(NET_MODULES)?;
        for ko in &net.load_order {
            common.push(ImageFile::new(
                &format!("lib/modules/{}/{ko}", kernel.release),
                0o644,
                read(&kernel.modules_dir.join(ko))?,
            ));
        }
        common.push(ImageFile::new(
            NET_UP_IN_IMAGE,
            0o755,
            net_up_script(&kernel.release, &net.load_order),
        ));
        let common_digest = common.iter().fold(fnv1a(b""), |h, f| {
            h ^ fnv1a(f.path.as_bytes()).rotate_left(7) ^ fnv1a(&f.contents).rotate_left(13)
        });
        let mut images = Vec::new();
        let mut all_cached = true;
        let not_a_kernel = cache.join("not-a-kernel");
        fs::write(&not_a_kernel, NOT_A_KERNEL.repeat(1024))
            .with_context(|| format!("cannot write {}", not_a_kernel.display()))?;
        for def in defs {
            let kernel_file = match def.behaviour {
                Behaviour::BadKernel => not_a_kernel.clone(),
                Behaviour::Good | Behaviour::InitExits | Behaviour::NoInit => {
                    kernel.vmlinuz.clone()
                }
            };
            let extra = match def.behaviour {
                Behaviour::Good | Behaviour::BadKernel | Behaviour::NoInit => String::new(),
                Behaviour::InitExits => format!(
                    "echo \"hnroot-test: {} is broken on purpose: its init exits now (kernel \
                     panic; panic=10 reboots)\"\nexit 1",
                    def.version
                ),
            };
            let init_link = (def.behaviour == Behaviour::NoInit).then(|| NOWHERE.to_string());
            let out = cache.join(format!("{}.img", def.version));
            let key = format!(
                "image v4 {} {:016x} {:016x} {:016x} {:016x} {:016x} {init_link:?} {:?}",
                kernel.release,
                fnv1a(&read(&kernel_file)?),
                initramfs_digest,
                fnv1a(disk::test_init(def.version, &extra).as_bytes()),
                common_digest,
                busybox_digest,
                def.args,
            );
            let mut spec = RootImageSpec::new(def.version, &kernel_file, &initramfs.path);
            spec.init_extra = extra.clone();
            spec.init_link = init_link;
            spec.files
                .extend(common.iter().cloned().map(|f| match def.args {
                    Some(args) if f.path == IMAGE_ARGS_PATH => {
                        ImageFile::new(IMAGE_ARGS_PATH, 0o644, args)
                    }
                    _ => f,
                }));
            let hit = cached(&out, &key, || {
                disk::build_root_image(&spec, &out).map(|_| ())
            })?;
            all_cached &= hit;
            let bytes = read(&out)?;
            let digest = fnv1a(&bytes);
            let signature = signing::signature_of(&out);
            let sig_key = format!(
                "signature v1 {digest:016x} {:016x}",
                fnv1a(&publisher.public_key()?)
            );
            cached(&signature, &sig_key, || {
                publisher
                    .sign(&out, &format!("hnroot test image {}", def.version))
                    .map(|_| ())
            })?;
            images.push(TestImage {
                version: def.version.to_string(),
                fs: BuiltFs {
                    path: out.clone(),
                    uuid: disk::ext4_uuid(&out)?,
                    size: bytes.len() as u64,
                },
                digest,
                signature,
            });
        }
        for (i, a) in images.iter().enumerate() {
            if let Some(b) = images[..i].iter().find(|b| b.fs.uuid == a.fs.uuid) {
                bail!(
                    "test images {} and {} share the UUID {}: delete {} and rebuild",
                    b.version,
                    a.version,
                    a.fs.uuid,
                    a.fs.path.display()
                );
            }
        }
        timed(
            &format!(
                "{} test images ({})",
                images.len(),
                images
                    .iter()
                    .map(|i| format!("{} {} MiB", i.version, i.fs.size / disk::MIB))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            t,
            all_cached,
        );
        Ok(BootParts {
            release,
            cache,
            kernel,
            initramfs,
            grub,
            grub_menu,
            images,
            publisher,
            timings,
        })
    }

    /// The test image of this version.
    pub fn image(&self, version: &str) -> Result<&TestImage> {
        self.images
            .iter()
            .find(|i| i.version == version)
            .ok_or_else(|| anyhow!("the boot parts have no test image of version {version:?}"))
    }

    /// The version of the test image with this UUID.
    pub fn version_of(&self, uuid: &FsUuid) -> Option<&str> {
        self.images
            .iter()
            .find(|i| FsUuid::Uuid(i.fs.uuid.0) == *uuid)
            .map(|i| i.version.as_str())
    }

    /// The core's UUID of a test image.
    pub fn uuid(&self, version: &str) -> Result<FsUuid> {
        Ok(FsUuid::Uuid(self.image(version)?.fs.uuid.0))
    }

    /// Trial length GRUB uses with the production grub.cfg.
    pub fn tries(&self) -> u8 {
        self.grub.tries()
    }

    /// Build the disk `contents` describes in a fresh `work/<name>/`.
    pub fn disk(&self, contents: &DiskContents, work: &Path) -> Result<BuiltDisk> {
        let dir = buildenv::fresh_dir(&work.join(&contents.name))?;
        let mut host = HostpartSpec::new(contents.fs);
        host.label = contents.label.clone();
        for (name, content) in &contents.images {
            let source = match content {
                ImageContent::Directory => {
                    host.files.push(ImageFile::new(
                        &format!("{}/{DIRECTORY_NOTE}", name.file_name()),
                        0o644,
                        DIRECTORY_NOTE.as_bytes(),
                    ));
                    continue;
                }
                ImageContent::Image(v) => self.image(v)?.fs.path.clone(),
                ImageContent::File(path) => path.clone(),
                ImageContent::Truncated(v, bytes) => {
                    let path = dir.join(format!("{}.source", name.file_name()));
                    let data = read(&self.image(v)?.fs.path)?;
                    let cut = usize::try_from(*bytes)?.min(data.len());
                    fs::write(&path, &data[..cut])
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    path
                }
                ImageContent::Garbage(bytes) => {
                    let path = dir.join(format!("{}.source", name.file_name()));
                    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
                    let data: Vec<u8> = (0..*bytes)
                        .map(|_| {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            x as u8
                        })
                        .collect();
                    fs::write(&path, data)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    path
                }
            };
            host = host.image(name.file_name(), &source);
        }
        for v in &contents.stage_sources {
            let image = self.image(v)?;
            host = host
                .image_at(&format!("{STAGE_DIR}/{v}.img"), &image.fs.path)
                .image_at(
                    &format!("{STAGE_DIR}/{v}.img{}", signing::SIGNATURE_SUFFIX),
                    &image.signature,
                );
        }
        host.immutable = contents
            .immutable
            .iter()
            .map(|n| n.file_name().to_string())
            .collect();
        if contents.revert_marker {
            host.files
                .push(ImageFile::new(REVERT_MARKER, 0o644, Vec::new()));
        }
        if !contents.actions.is_empty() {
            if contents.actions.iter().any(|a| a.contains('\n')) {
                bail!("{}: an action must be one line", contents.name);
            }
            let text: String = contents.actions.iter().map(|a| format!("{a}\n")).collect();
            host.files
                .push(ImageFile::new(disk::ACTIONS_PATH, 0o644, text.into_bytes()));
        }
        for (path, source) in &contents.hostpart_files {
            host.copies.push((path.clone(), source.clone()));
        }
        let mut esp = EspSpec::new(&self.grub);
        if let Some(loader) = &contents.loader {
            esp.bootx64 = loader.clone();
        }
        esp.bootstate = match &contents.state {
            StateInit::Committed(v) => Some(committed_block(self.uuid(v)?)),
            StateInit::Trial {
                image,
                tries_left,
                good,
            } => {
                let total = self.tries();
                let tries = Tries::new(*tries_left, total).with_context(|| {
                    format!("{}: {tries_left} tries left of {total}", contents.name)
                })?;
                let trial = Trial {
                    image: self.uuid(image)?,
                    tries,
                    good: good.map(|g| self.uuid(g)).transpose()?,
                };
                Some(new_block(&BootState::Trial(trial)).to_vec())
            }
            StateInit::Bytes(b) => Some(b.clone()),
            StateInit::Missing => None,
        };
        disk::build(
            &DiskSpec {
                name: contents.name.clone(),
                esp,
                hostpart: host,
            },
            &dir,
        )
    }

    /// A copy of the test image `version` with one byte of its `/boot/kernel` changed (a
    /// tampered kernel: the filesystem, its UUID and its boot files still look right), served
    /// with the signature of the original, as a man in the middle would serve it: written to
    /// `dir/<version>-tampered.img` and `.minisig`. Returns the copy and the byte's offset.
    pub fn tampered(&self, version: &str, dir: &Path) -> Result<(PathBuf, u64)> {
        let image = self.image(version)?;
        let out = dir.join(format!("{version}-tampered.img"));
        // The kernel's second block: well inside the file's data, never metadata.
        let bmap = buildenv::run(
            std::process::Command::new("debugfs")
                .arg("-R")
                .arg("bmap /boot/kernel 1")
                .arg(&image.fs.path),
        )?;
        let block: u64 = bmap
            .lines()
            .rev()
            .find_map(|l| l.trim().parse().ok())
            .filter(|b| *b > 0)
            .with_context(|| format!("debugfs bmap of /boot/kernel in {version} said {bmap:?}"))?;
        let offset = block * TAMPER_BLOCK + TAMPER_BLOCK / 2;
        let mut bytes = read(&image.fs.path)?;
        let at = usize::try_from(offset)?;
        let Some(byte) = bytes.get_mut(at) else {
            bail!("{version}: offset {offset} is past the image's end");
        };
        *byte ^= 0x5a;
        fs::write(&out, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
        fs::copy(&image.signature, signing::signature_of(&out))
            .with_context(|| format!("cannot copy {}", image.signature.display()))?;
        Ok((out, offset))
    }

    /// A second disk holding only a partition whose filesystem is labelled `label`, with
    /// `hn-root.img` = `version` (for the duplicate-label scenario).
    pub fn lone_hostpart_disk(
        &self,
        name: &str,
        label: &str,
        version: &'static str,
        work: &Path,
    ) -> Result<PathBuf> {
        let dir = buildenv::fresh_dir(&work.join(name))?;
        let mut host = HostpartSpec::new(HostFs::Ext4).image(
            ImageName::Current.file_name(),
            &self.image(version)?.fs.path,
        );
        host.label = label.to_string();
        disk::build_hostpart_only(&host, &dir)
    }
}

/// The script at [`NET_UP_IN_IMAGE`]: loads the NIC's driver (`load_order`, relative to the
/// kernel's `lib/modules/<release>`, skipping what is loaded), waits for `eth0` (bounded) and
/// gives it [`GUEST_ADDR`] by hand. No default route and no DNS: the guest reaches QEMU's
/// user network (the host's 127.0.0.1 as 10.0.2.2) and nothing beyond it.
pub fn net_up_script(release: &str, load_order: &[String]) -> String {
    let modules: Vec<&str> = load_order.iter().map(String::as_str).collect();
    format!(
        r#"#!/bin/sh
# hnroot test images (written by hnroot-testkit, testkit/src/bootparts.rs): bring QEMU's user
# network up by hand. No default route, no DNS: only 10.0.2.0/24 is reachable.
set -e
for ko in {modules}; do
  name=$(basename "$ko" .ko | tr - _)
  [ -d "/sys/module/$name" ] || insmod "/lib/modules/{release}/$ko"
done
n=0
while [ ! -e /sys/class/net/eth0 ]; do
  n=$((n + 1))
  if [ "$n" -gt 100 ]; then
    echo "hnroot-test: no eth0 10 s after loading its driver" >&2
    exit 1
  fi
  usleep 100000
done
ip link set lo up
ip link set eth0 up
ip addr add {addr} dev eth0
echo "hnroot-test: network up: eth0 {addr}"
"#,
        modules = modules.join(" "),
        addr = GUEST_ADDR,
    )
}

/// A boot-state block (the ESP's `hnroot/bootstate`) that records `good` as committed.
pub fn committed_block(good: FsUuid) -> Vec<u8> {
    new_block(&BootState::committed(good)).to_vec()
}

/// The UUID type of [`disk`] as the core's.
pub fn core_uuid(u: Uuid) -> FsUuid {
    FsUuid::Uuid(u.0)
}

/// The wanted module names of an initramfs spec, as the resolver takes them.
fn spec_modules(spec: &initramfs::Spec) -> Vec<&str> {
    spec.wanted.iter().map(String::as_str).collect()
}
