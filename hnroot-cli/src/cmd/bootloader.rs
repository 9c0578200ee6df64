//! `hnroot bootloader status|update|presign`: the boot loader on the ESP against the one this
//! system carries (the loader kit, `/usr/lib/hnroot/grub`; on a Secure Boot server without a
//! signing key, the loader its publisher signed, `/usr/lib/hnroot/presigned/BOOTX64.EFI`). The driver's contract as everywhere:
//! observe (the ESP's loader and its version record, the ESP's boot-state format, whether this
//! boot is committed), build the candidate image from the kit, ask the core
//! (`loader::judge_update`, `loader::update_steps`), print the plan, and have
//! `hnroot_linux::esp_loader` carry it out step by step; on a failed step, the core's answer
//! (`loader::after_failure`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use hnroot_core::bootstate;
use hnroot_core::cmdline;
use hnroot_core::counting::{self, Key};
use hnroot_core::decide::Config;
use hnroot_core::history::Operator;
use hnroot_core::layout;
use hnroot_core::loader::{self, EspSeen, Loader, Record, UpdateKind, UpdateRequest};
use hnroot_core::menu;
use hnroot_core::name::ImageName;
use hnroot_install::grub::{self, FleetFile, LoaderKit};
use hnroot_linux::esp_loader::{self, EspBoot};
use serde_json::{json, Value};

use crate::locate::{self, Location};
use crate::{say, warn};

/// `hnroot bootloader ...`.
#[derive(clap::Subcommand, Debug)]
pub enum BootloaderCommand {
    /// The loader on the ESP and the one this system carries, and whether the second may
    /// replace the first.
    Status(StatusArgs),
    /// Replace the ESP's loader with the one this system carries (only a newer one that reads
    /// the ESP's boot-state format, unless --allow-downgrade), safely against a power cut.
    Update(UpdateArgs),
    /// Build the loader from the kit, the fleet's files and the trusted keys, sign it for
    /// Secure Boot, and write it where the image carries it: the publisher's step, so that a
    /// Secure Boot server, which holds no signing key, can update its loader.
    Presign(PresignArgs),
}

/// Where the loaders are.
#[derive(clap::Args, Debug, Clone)]
pub struct Where {
    /// The mounted ESP.
    #[arg(long, value_name = "DIR", default_value = layout::ESP_MOUNT)]
    esp: PathBuf,
    #[command(flatten)]
    from: LoaderInputs,
    /// The loader the image's publisher signed (`hnroot bootloader presign`): written instead of
    /// one built here when the ESP's loader is signed and no --sign-key is given, if it is
    /// signed by the ESP's loader's certificate and built as the loader here would be.
    #[arg(long, value_name = "FILE", default_value = grub::PRESIGNED_LOADER)]
    presigned: PathBuf,
    #[command(flatten)]
    sign: SignArgs,
    #[command(flatten)]
    loc: Location,
}

/// What a loader is built from (this system's, or, for `presign`, the image's).
#[derive(clap::Args, Debug, Clone)]
pub struct LoaderInputs {
    /// The loader kit.
    #[arg(long, value_name = "DIR", default_value = grub::KIT_DIR)]
    kit: PathBuf,
    /// The fleet's files built into the loader (`(memdisk)/hnroot/NAME`), when the directory
    /// exists.
    #[arg(long, value_name = "DIR", default_value = FLEET_DIR)]
    fleet: PathBuf,
    /// The trusted minisign keys (*.pub) built into the loader as `(memdisk)/hnroot/seal-keys`,
    /// the keys it checks sealed images with.
    #[arg(long, value_name = "DIR", default_value = crate::cmd::stage::KEYS_DIR)]
    keys: PathBuf,
}

impl LoaderInputs {
    /// The inputs of the image whose tree is at `tree`: each left at its default (this
    /// system's path) becomes the same path in the tree.
    fn in_tree(&self, tree: &Path) -> LoaderInputs {
        let inside = |given: &Path, default: &str| {
            if given == Path::new(default) {
                tree.join(default.trim_start_matches('/'))
            } else {
                given.to_owned()
            }
        };
        LoaderInputs {
            kit: inside(&self.kit, grub::KIT_DIR),
            fleet: inside(&self.fleet, FLEET_DIR),
            keys: inside(&self.keys, crate::cmd::stage::KEYS_DIR),
        }
    }
}

/// Options of `hnroot bootloader presign`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("written").required(true).args(["root", "out"])))]
pub struct PresignArgs {
    /// The image's kit, `/etc/hnroot/loader` and `/etc/hnroot/keys` (with --root, the tree's
    /// unless given).
    #[command(flatten)]
    from: LoaderInputs,
    /// The private key (PEM) whose certificate the servers' firmware `db` holds: the one that
    /// signed their loader.
    #[arg(long, value_name = "KEY")]
    sign_key: PathBuf,
    /// Its certificate (PEM).
    #[arg(long, value_name = "CERT")]
    sign_cert: PathBuf,
    /// The image's tree: the loader is built from its kit, fleet files and keys (unless given)
    /// and written in it at `usr/lib/hnroot/presigned/BOOTX64.EFI`, every directory on the way
    /// made or opened inside the tree, never through a link.
    #[arg(long, value_name = "TREE")]
    root: Option<PathBuf>,
    /// Where to write the signed loader instead (the directories as given; in an image's tree,
    /// at `usr/lib/hnroot/presigned/BOOTX64.EFI`).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Secure Boot: the key and certificate the loader is signed with (`sbsign`).
#[derive(clap::Args, Debug, Clone)]
pub struct SignArgs {
    /// Sign the loader for Secure Boot with this private key (PEM; its certificate in the
    /// firmware's db). A signed loader requires sealed images.
    #[arg(long, value_name = "KEY", requires = "sign_cert")]
    pub sign_key: Option<PathBuf>,
    /// The certificate of --sign-key (PEM).
    #[arg(long, value_name = "CERT", requires = "sign_key")]
    pub sign_cert: Option<PathBuf>,
}

impl SignArgs {
    /// The key, when the loader is to be signed.
    pub fn key(&self) -> Option<grub::SecureBootKey> {
        match (&self.sign_key, &self.sign_cert) {
            (Some(key), Some(cert)) => Some(grub::SecureBootKey {
                key: key.clone(),
                cert: cert.clone(),
            }),
            _ => None,
        }
    }

    /// What the core is told of the loader built with `fleet`: signed or not, and whether it
    /// requires sealed images.
    pub fn signing(&self, fleet: &[FleetFile]) -> loader::Signing {
        match self.key() {
            None => loader::Signing::Unsigned,
            Some(_) => loader::Signing::Signed {
                require_sealed: fleet.iter().any(|f| f.name == REQUIRE_SEALED_FILE),
            },
        }
    }
}

/// Where a fleet keeps the files it builds into every loader.
pub const FLEET_DIR: &str = "/etc/hnroot/loader";

/// Options of `hnroot bootloader status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    at: Where,
    /// One JSON object with stable field names.
    #[arg(long)]
    json: bool,
}

/// Options of `hnroot bootloader update`.
#[derive(clap::Args, Debug)]
pub struct UpdateArgs {
    #[command(flatten)]
    at: Where,
    /// Print the plan and write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Replace a newer loader with this older one.
    #[arg(long)]
    allow_downgrade: bool,
    /// Only when this boot is committed (no trial, the running image the one marked good):
    /// what `hnroot-bootloader-update.service` runs.
    #[arg(long)]
    if_committed: bool,
}

/// Bound on the fleet's files (count, bytes each).
const MAX_FLEET_FILES: usize = 32;
const MAX_FLEET_FILE: usize = 64 << 10;

/// The fleet's files in `dir` (none when it does not exist).
pub fn fleet_files(dir: &Path) -> Result<Vec<FleetFile>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        if files.len() >= MAX_FLEET_FILES {
            anyhow::bail!("{} holds more than {MAX_FLEET_FILES} files", dir.display());
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let data = std::fs::read(entry.path())
            .with_context(|| format!("reading {}", entry.path().display()))?;
        if data.len() > MAX_FLEET_FILE {
            anyhow::bail!(
                "{} is {} bytes; a fleet file for the loader is at most {MAX_FLEET_FILE}",
                entry.path().display(),
                data.len()
            );
        }
        files.push(FleetFile { name, data });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

pub use grub::{REQUIRE_SEALED_FILE, SEAL_KEYS_FILE};

/// The counting settings `hnroot install` builds into the loader (`(memdisk)/hnroot/counting`),
/// each over the fleet's `counting` file or the default.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CountingArgs {
    /// Boots a new image gets on trial before it is rolled back (1 to 100) [default: the
    /// fleet's counting file's, else 3].
    #[arg(long, value_name = "N", value_parser = counting_value(Key::Tries))]
    tries: Option<u32>,
    /// K: boots of the committed image without reaching healthy before GRUB boots the other
    /// committed image (1 to 100) [default: the fleet's, else 3].
    #[arg(long, value_name = "K", value_parser = counting_value(Key::BootLimit))]
    boot_limit: Option<u32>,
    /// Seconds GRUB waits before a boot once every committed image failed K boots, doubled at
    /// each further boot (1 to 86400) [default: the fleet's, else 60].
    #[arg(long, value_name = "SECONDS", value_parser = counting_value(Key::WaitFirst))]
    wait_first: Option<u32>,
    /// The longest of those waits (1 to 86400) [default: the fleet's, else 1800].
    #[arg(long, value_name = "SECONDS", value_parser = counting_value(Key::WaitMax))]
    wait_max: Option<u32>,
}

/// A value of `key` checked by the core's one parser of the counting file.
fn counting_value(key: Key) -> impl Fn(&str) -> Result<u32, String> + Clone {
    move |text| {
        key.value(text.as_bytes()).map_err(|_| {
            format!(
                "{} must be a whole number from 1 to {}, not {text:?}",
                key.name(),
                key.max()
            )
        })
    }
}

impl CountingArgs {
    /// `fleet` with its counting file set from these options over its own settings (none
    /// given: `fleet` as it is); what the loader will count with, for people.
    pub fn apply(&self, mut fleet: Vec<FleetFile>) -> Result<(Vec<FleetFile>, String)> {
        let current = match fleet.iter().find(|f| f.name == counting::FILE_NAME) {
            Some(f) => counting::parse(&f.data)
                .map_err(|e| anyhow!("the fleet's {} file: {e}", counting::FILE_NAME))?,
            None => Config::default(),
        };
        if self.tries.is_none()
            && self.boot_limit.is_none()
            && self.wait_first.is_none()
            && self.wait_max.is_none()
        {
            return Ok((fleet, counting::Summary(&current).to_string()));
        }
        // In range by counting_value: the narrowing never saturates.
        let narrow = |n: u32| u8::try_from(n).unwrap_or(u8::MAX);
        let c = Config {
            tries: self.tries.map_or(current.tries, narrow),
            boot_limit: self.boot_limit.map_or(current.boot_limit, narrow),
            wait_first: self.wait_first.unwrap_or(current.wait_first),
            wait_max: self.wait_max.unwrap_or(current.wait_max),
        };
        fleet.retain(|f| f.name != counting::FILE_NAME);
        fleet.push(FleetFile {
            name: counting::FILE_NAME.into(),
            data: counting::Text(&c).to_string().into_bytes(),
        });
        fleet.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((fleet, counting::Summary(&c).to_string()))
    }
}

/// GRUB's menu countdown `hnroot install` builds into the loader
/// (`(memdisk)/hnroot/menu-timeout`), over the fleet's `menu-timeout` file or the default.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct MenuArgs {
    /// Seconds GRUB shows its menu before booting (0 to 600; 0 boots at once, nobody can
    /// reach the menu) [default: the fleet's menu-timeout file's, else 2].
    #[arg(long, value_name = "SECONDS", value_parser = menu_seconds)]
    menu_timeout: Option<u16>,
}

/// A countdown checked by the core's one reader of the menu-timeout file.
fn menu_seconds(text: &str) -> Result<u16, String> {
    menu::seconds(text.as_bytes()).ok_or_else(|| {
        format!(
            "--menu-timeout must be a whole number of seconds from 0 to {}, not {text:?}",
            menu::MAX_SECONDS
        )
    })
}

impl MenuArgs {
    /// `fleet` with its menu-timeout file set from `--menu-timeout` (not given: `fleet` as it
    /// is); the countdown the loader will use, for people.
    pub fn apply(&self, mut fleet: Vec<FleetFile>) -> Result<(Vec<FleetFile>, String)> {
        let Some(seconds) = self.menu_timeout else {
            let current = match fleet.iter().find(|f| f.name == menu::FILE_NAME) {
                Some(f) => menu::parse(&f.data)
                    .map_err(|e| anyhow!("the fleet's {} file: {e}", menu::FILE_NAME))?,
                None => menu::DEFAULT_SECONDS,
            };
            return Ok((fleet, menu::Summary(current).to_string()));
        };
        fleet.retain(|f| f.name != menu::FILE_NAME);
        fleet.push(FleetFile {
            name: menu::FILE_NAME.into(),
            data: menu::Text(seconds).to_string().into_bytes(),
        });
        fleet.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((fleet, menu::Summary(seconds).to_string()))
    }
}

/// Everything the fleet builds into a loader: the files of `fleet_dir`, the trusted keys of
/// `keys_dir` as one `seal-keys` file (each key checked as the loader will read it; at most
/// the loader's 16), and the `require-sealed` marker when `require_sealed` (or when the
/// fleet's directory has one).
pub fn loader_fleet(
    fleet_dir: &Path,
    keys_dir: &Path,
    require_sealed: bool,
) -> Result<Vec<FleetFile>> {
    let mut files = fleet_files(fleet_dir)?;
    // GRUB would count with the defaults rather than a file it refuses: refused here, named,
    // before a loader is built with it. The settings GRUB reads are built in as their
    // canonical text (the core's `Text`, what `hnroot install` writes), whatever comments or
    // spacing the fleet's file has: loaders with the same settings carry the same bytes, which
    // is how a presigned loader is compared with the one a server would build.
    if let Some(f) = files.iter_mut().find(|f| f.name == counting::FILE_NAME) {
        let config = counting::parse(&f.data).map_err(|e| {
            anyhow!(
                "{}/{}: {e}; no loader was built (fix the file, or remove it to count with the \
                 defaults)",
                fleet_dir.display(),
                counting::FILE_NAME
            )
        })?;
        f.data = counting::Text(&config).to_string().into_bytes();
    }
    if let Some(f) = files.iter_mut().find(|f| f.name == menu::FILE_NAME) {
        let seconds = menu::parse(&f.data).map_err(|e| {
            anyhow!(
                "{}/{}: {e}; no loader was built (fix the file, or remove it for the default \
                 countdown of {} s)",
                fleet_dir.display(),
                menu::FILE_NAME,
                menu::DEFAULT_SECONDS
            )
        })?;
        f.data = menu::Text(seconds).to_string().into_bytes();
    }
    // GRUB asks only whether the marker is there.
    if let Some(f) = files.iter_mut().find(|f| f.name == REQUIRE_SEALED_FILE) {
        *f = require_sealed_file();
    }
    if files.iter().any(|f| f.name == SEAL_KEYS_FILE) {
        anyhow::bail!(
            "{} has a file named {SEAL_KEYS_FILE}: the loader's keys are built from the trusted \
             keys ({}); remove it",
            fleet_dir.display(),
            keys_dir.display()
        );
    }
    let (keys, skipped) = hnroot_linux::seal::load_keys(keys_dir).unwrap_or_default();
    for line in skipped {
        warn!("hnroot: {line}");
    }
    if keys.len() > hnroot_core::minisig::MAX_TRUSTED_KEYS {
        anyhow::bail!(
            "{} holds {} trusted keys; the loader holds at most {}",
            keys_dir.display(),
            keys.len(),
            hnroot_core::minisig::MAX_TRUSTED_KEYS
        );
    }
    if !keys.is_empty() {
        let mut data = Vec::new();
        for (path, _) in &keys {
            let mut text = hnroot_linux::fsat::read_regular(path, hnroot_linux::seal::KEY_MAX)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            if !text.ends_with(b"\n") {
                text.push(b'\n');
            }
            data.extend_from_slice(&text);
        }
        let mut check = [hnroot_core::minisig::PublicKey {
            key_id: [0; 8],
            key: [0; 32],
        }; hnroot_core::minisig::MAX_TRUSTED_KEYS];
        hnroot_core::minisig::PublicKey::parse_list(&data, &mut check).map_err(|e| {
            anyhow::anyhow!(
                "the trusted keys of {} do not read as a key list: {e}",
                keys_dir.display()
            )
        })?;
        files.push(FleetFile {
            name: SEAL_KEYS_FILE.into(),
            data,
        });
    }
    if require_sealed && !files.iter().any(|f| f.name == REQUIRE_SEALED_FILE) {
        files.push(require_sealed_file());
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// The require-sealed marker as the loader's memdisk holds it.
fn require_sealed_file() -> FleetFile {
    FleetFile {
        name: REQUIRE_SEALED_FILE.into(),
        data: b"1\n".to_vec(),
    }
}

/// The candidate loader built from the kit into a scratch directory, signed for Secure Boot
/// with `sign` when given: its bytes.
pub fn build_candidate(
    kit: &LoaderKit,
    fleet: &[FleetFile],
    sign: Option<&grub::SecureBootKey>,
) -> Result<Vec<u8>> {
    let work = tempfile::tempdir().context("cannot make a scratch directory")?;
    let efi = work.path().join("BOOTX64.EFI");
    grub::build_efi(
        kit,
        &kit.grub_cfg()?,
        &[],
        fleet,
        &work.path().join("build"),
        &efi,
    )?;
    if let Some(key) = sign {
        grub::sign_efi(&efi, key)?;
    }
    std::fs::read(&efi).with_context(|| format!("reading {}", efi.display()))
}

/// The loader an update would write, and how it is signed: built from the kit with `fleet`
/// (signed with `--sign-key` when given); or, when the ESP's loader is signed and no key is
/// given, the image's presigned loader (`--presigned`, when there is one), if the core lets it
/// stand in for the one built here ([`loader::judge_presigned`]). The inner error: the core's
/// refusal.
fn candidate(
    at: &Where,
    kit: &LoaderKit,
    fleet: &[FleetFile],
    on_esp: Option<&[u8]>,
) -> Result<Result<(Vec<u8>, loader::Signing), loader::UpdateRefusal>> {
    let esp_signed = on_esp.is_some_and(|b| loader::authenticode_signed(b).unwrap_or(false));
    let presigned = match (esp_signed, at.sign.key()) {
        // Read only where it could be used.
        (true, None) => read_presigned(&at.presigned)?,
        _ => None,
    };
    let source = loader::source(esp_signed, at.sign.key().is_some(), presigned.is_some());
    if let (loader::Source::Presigned, Some(presigned), Some(esp)) = (source, presigned, on_esp) {
        let built = build_candidate(kit, fleet, None)?;
        let facts = presigned_facts(&presigned, &built, esp);
        if let Err(r) = loader::judge_presigned(facts) {
            return Ok(Err(r));
        }
        say!(
            "hnroot: the image's presigned loader ({}): signed by the ESP's loader's \
             certificate, built as this server's loader would be",
            at.presigned.display()
        );
        let signing = loader::Signing::Signed {
            require_sealed: fleet.iter().any(|f| f.name == REQUIRE_SEALED_FILE),
        };
        return Ok(signing.check().map(|()| (presigned, signing)));
    }
    let signing = at.sign.signing(fleet);
    // A signed loader that would boot unsealed images is refused before anything is built.
    if let Err(r) = signing.check() {
        return Ok(Err(r));
    }
    Ok(Ok((
        build_candidate(kit, fleet, at.sign.key().as_ref())?,
        signing,
    )))
}

/// The largest presigned loader read (hnroot's GRUB is a few MiB).
const PRESIGNED_MAX: usize = 64 << 20;

/// The presigned loader at `path`, `None` when there is none.
fn read_presigned(path: &Path) -> Result<Option<Vec<u8>>> {
    match hnroot_linux::fsat::read_regular(path, PRESIGNED_MAX) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(hnroot_linux::fsat::ReadError::Absent) => Ok(None),
        Err(e) => Err(anyhow!(
            "the presigned loader {}: {e}; nothing written",
            path.display()
        )),
    }
}

/// What the core needs to know of the presigned loader: against the loader built here
/// (`built`, unsigned: its version record and memdisk) and the ESP's (its signer).
fn presigned_facts(presigned: &[u8], built: &[u8], esp: &[u8]) -> loader::Presigned {
    fn record(image: &[u8]) -> Option<&[u8]> {
        loader::find_section(image, &loader::SECTION_NAME)
            .ok()
            .flatten()
    }
    fn memdisk(image: &[u8]) -> Option<&[u8]> {
        hnroot_core::memdisk::memdisk(image).ok()
    }
    loader::Presigned {
        signed: loader::authenticode_signed(presigned).unwrap_or(false),
        same_record: record(presigned).is_some() && record(presigned) == record(built),
        same_memdisk: memdisk(presigned).is_some() && memdisk(presigned) == memdisk(built),
        same_signer: loader::same_signer(esp, presigned).unwrap_or(false),
    }
}

/// `hnroot bootloader presign`: the loader a server would build from the image's kit, fleet
/// files and keys (requiring sealed images, as a signed loader must), signed, written into the
/// image's tree (`--root`) or to `--out` (a new file renamed into place).
fn presign(args: &PresignArgs) -> Result<()> {
    let from = match &args.root {
        Some(tree) => args.from.in_tree(tree),
        None => args.from.clone(),
    };
    let kit = LoaderKit::at(&from.kit)?;
    let fleet = loader_fleet(&from.fleet, &from.keys, true)?;
    let key = grub::SecureBootKey {
        key: args.sign_key.clone(),
        cert: args.sign_cert.clone(),
    };
    let image = build_candidate(&kit, &fleet, Some(&key))?;
    // The file layer's write: a temporary name beside it, synced, renamed into place; a link
    // at the name is replaced, never written through.
    let (dir, name, shown) = match (&args.root, &args.out) {
        (Some(tree), _) => {
            // In the tree, every directory on the way is the tree's own: made where missing,
            // and a link where one should be is refused (it could lead anywhere on this
            // machine), as `hnroot image build` treats a tree.
            let rel = grub::PRESIGNED_LOADER.trim_start_matches('/');
            let (dir_rel, name) = rel.rsplit_once('/').unwrap_or(("", rel));
            let root = hnroot_linux::fsat::open_root(tree)
                .with_context(|| format!("cannot open the tree {}", tree.display()))?;
            let dir = hnroot_linux::fsat::make_path(&root, dir_rel, 0o755).with_context(|| {
                format!(
                    "cannot make {dir_rel} in the tree {} (a link on the way is never \
                     followed: make it a directory); nothing was written",
                    tree.display()
                )
            })?;
            (dir, name.to_owned(), tree.join(rel))
        }
        (None, Some(out)) => {
            let name = out
                .file_name()
                .and_then(|n| n.to_str())
                .with_context(|| format!("--out {}: not a file name", out.display()))?;
            let parent = match out.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            // The directories are the publisher's, as given.
            let dir = hnroot_linux::fsat::open_root(parent)
                .with_context(|| format!("cannot open {}", parent.display()))?;
            (dir, name.to_owned(), out.clone())
        }
        (None, None) => anyhow::bail!("give --root TREE or --out FILE"),
    };
    hnroot_linux::fsat::write_file(&dir, &name, &image, 0o644, true)
        .with_context(|| format!("cannot write {}", shown.display()))?;
    say!(
        "hnroot: presigned loader {} ({} KiB) written to {}; ship it in the image at {} \
         (a Secure Boot server's loader update writes it when its own loader is signed by the \
         same certificate and it carries the server's settings)",
        record_text(&kit.record()?),
        image.len().div_ceil(1024),
        shown.display(),
        grub::PRESIGNED_LOADER
    );
    Ok(())
}

/// Whether `hn-root.img` boots under the ESP's loader (`on_esp`; its seal policy from its
/// memdisk) and under the loader built with `fleet` (its `seal-keys` and `require-sealed`), as
/// hostpart is judged under each policy. No hostpart (an install in progress): alike.
fn committed_boots(
    loc: &Location,
    on_esp: Option<&[u8]>,
    fleet: &[FleetFile],
) -> loader::CommittedBoots {
    use hnroot_core::verdict::Verdict;
    use hnroot_linux::image::SealPolicy;
    let Ok(hostpart) = locate::open_hostpart(loc) else {
        return loader::CommittedBoots::ALIKE;
    };
    let boots = |policy: Option<&SealPolicy>| {
        let view = match policy {
            Some(p) => hostpart.observe_sealed(p),
            None => hostpart.observe(),
        };
        view.ok()
            .and_then(|v| {
                v.image(ImageName::Current)
                    .map(|j| matches!(j.verdict, Verdict::Bootable(_)))
            })
            .unwrap_or(false)
    };
    let now = match on_esp {
        Some(bytes) => match esp_loader::seal_policy_of(bytes) {
            Ok(policy) => boots(Some(&policy)),
            // A loader whose policy cannot be read: judged without one.
            Err(_) => boots(None),
        },
        None => boots(None),
    };
    let mut keys = [hnroot_core::minisig::PublicKey {
        key_id: [0; 8],
        key: [0; 32],
    }; hnroot_core::minisig::MAX_TRUSTED_KEYS];
    let n = fleet
        .iter()
        .find(|f| f.name == SEAL_KEYS_FILE)
        .map_or(Ok(0), |f| {
            hnroot_core::minisig::PublicKey::parse_list(&f.data, &mut keys)
        })
        .unwrap_or(0);
    let after = SealPolicy {
        keys: keys.get(..n).unwrap_or_default().to_vec(),
        require: fleet.iter().any(|f| f.name == REQUIRE_SEALED_FILE),
    };
    loader::CommittedBoots {
        now,
        after: boots(Some(&after)),
    }
}

/// The ESP's boot-state file's format (`None`: none, or not hnroot's).
fn state_format(esp: &Path) -> Option<u16> {
    let bytes = std::fs::read(esp.join(layout::BOOTSTATE_PATH)).ok()?;
    bootstate::format_seen(&bytes)
}

/// Whether this boot runs the committed image, as the core judges it from hostpart, the boot
/// state and the kernel command line.
fn committed(loc: &Location) -> Result<bool> {
    let params_text = locate::running_cmdline();
    let params = cmdline::parse(&params_text);
    let hostpart = locate::open_hostpart(loc)?;
    let view = hostpart.observe()?;
    let (state, _) = locate::read_state(loc, &params);
    let current = view.observation(state).bootable(ImageName::Current);
    Ok(loader::boot_is_committed(
        &state,
        current,
        params.booted.map(|b| b.uuid),
    ))
}

fn loader_json(l: &Loader<'_>) -> Value {
    match l {
        Loader::Absent => json!({ "state": "absent" }),
        Loader::Unrecorded => json!({ "state": "unrecorded" }),
        Loader::Unreadable => json!({ "state": "unreadable" }),
        Loader::Recorded(r) => record_json(r),
    }
}

fn record_json(r: &Record<'_>) -> Value {
    json!({
        "state": "recorded",
        "hnroot": r.hnroot.to_string(),
        "grub": r.grub,
        "bootstate_reads": [r.reads.0, r.reads.1],
        "bootstate_writes": r.writes,
    })
}

fn loader_text(l: &Loader<'_>) -> String {
    match l {
        Loader::Absent => "none".to_owned(),
        Loader::Unrecorded => {
            "a loader without hnroot's version record (installed by an hnroot before it)".to_owned()
        }
        Loader::Unreadable => "not a PE image hnroot can read".to_owned(),
        Loader::Recorded(r) => record_text(r),
    }
}

fn record_text(r: &Record<'_>) -> String {
    format!(
        "hnroot {}, GRUB {}, reads boot-state formats {}-{}, writes {}",
        r.hnroot, r.grub, r.reads.0, r.reads.1, r.writes
    )
}

/// The ESP's loader as the core sees it: what it is, the boot-state format beside it, and
/// whether it is byte for byte `candidate`.
fn esp_seen<'a>(esp: &Path, on_esp: Option<&'a [u8]>, candidate: &[u8]) -> EspSeen<'a> {
    EspSeen {
        loader: loader::identify(on_esp),
        state_format: state_format(esp),
        identical: on_esp == Some(candidate),
        signed: on_esp.is_some_and(|b| loader::authenticode_signed(b).unwrap_or(false)),
    }
}

fn status(args: &StatusArgs) -> Result<()> {
    let kit = LoaderKit::at(&args.at.from.kit)?;
    let boot = EspBoot::open(&args.at.esp, false);
    let on_esp = match &boot {
        Ok(b) => b.read_loader()?,
        Err(_) => None,
    };
    // The loader an update would build: with what it keeps of the ESP's.
    let mut fleet = loader_fleet(&args.at.from.fleet, &args.at.from.keys, false)?;
    let kept = keep_esp_settings(&mut fleet, on_esp.as_deref(), &args.at.from.fleet);
    let new = kit.record()?;
    let request = UpdateRequest {
        allow_downgrade: false,
        if_committed: false,
        committed: false,
    };
    let (esp, verdict) = match candidate(&args.at, &kit, &fleet, on_esp.as_deref())? {
        Ok((candidate, signing)) => {
            let esp = esp_seen(&args.at.esp, on_esp.as_deref(), &candidate);
            let committed = committed_boots(&args.at.loc, on_esp.as_deref(), &fleet);
            let verdict = loader::judge_update(&esp, &new, signing, committed, &request);
            (esp, verdict)
        }
        Err(r) => (esp_seen(&args.at.esp, on_esp.as_deref(), &[]), Err(r)),
    };
    let path = args
        .at
        .esp
        .join(esp_loader::BOOT_DIR)
        .join(esp_loader::LOADER);
    // The ESP's menu countdown, as GRUB will read it from the loader's memdisk.
    let esp_menu = on_esp
        .as_deref()
        .map(esp_loader::menu_timeout_of)
        .and_then(Result::ok);
    if args.json {
        let v = json!({
            "esp_loader": loader_json(&esp.loader),
            "esp_path": path.display().to_string(),
            "esp_bootstate_format": esp.state_format,
            "esp_menu_timeout": esp_menu.as_ref().map(|(seconds, _)| seconds),
            "carried": record_json(&new),
            "kit": kit.dir.display().to_string(),
            "identical": esp.identical,
            "kept_from_esp": kept,
            "update": match verdict {
                Ok(k) => json!({ "kind": k.code() }),
                Err(r) => json!({ "refused": r.code(), "why": r.to_string() }),
            },
        });
        say!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    say!(
        "hnroot: loader on the ESP ({}): {}",
        path.display(),
        loader_text(&esp.loader)
    );
    if let Some((seconds, why)) = &esp_menu {
        say!(
            "hnroot: in the ESP's loader {}{}",
            menu::Summary(*seconds),
            why.as_ref().map_or(String::new(), |w| format!(" ({w})"))
        );
    }
    say!(
        "hnroot: ESP boot-state format: {}",
        esp.state_format
            .map_or("none (no boot-state file)".to_owned(), |f| f.to_string())
    );
    say!(
        "hnroot: loader this system carries ({}): {}",
        kit.dir.display(),
        record_text(&new)
    );
    for note in &kept {
        say!("hnroot: {note}");
    }
    match verdict {
        Ok(UpdateKind::UpToDate) => say!("hnroot: the ESP's loader is this one: nothing to update"),
        Ok(kind) => say!(
            "hnroot: compatible: `hnroot bootloader update` would write it ({})",
            kind.code()
        ),
        Err(r) => say!("hnroot: not compatible [{}]: {r}", r.code()),
    }
    Ok(())
}

fn update(args: &UpdateArgs) -> Result<()> {
    let kit = LoaderKit::at(&args.at.from.kit)?;
    let new = kit.record()?;
    let committed = if args.if_committed {
        committed(&args.at.loc)?
    } else {
        false
    };
    let request = UpdateRequest {
        allow_downgrade: args.allow_downgrade,
        if_committed: args.if_committed,
        committed,
    };
    // A trial refuses before anything is built.
    let nothing = EspSeen {
        loader: Loader::Absent,
        state_format: None,
        identical: false,
        signed: false,
    };
    if let Err(r @ loader::UpdateRefusal::NotCommitted) = loader::judge_update(
        &nothing,
        &new,
        loader::Signing::Unsigned,
        loader::CommittedBoots::ALIKE,
        &request,
    ) {
        say!(
            "hnroot: bootloader update: {r} [{}]; nothing written",
            r.code()
        );
        return Ok(());
    }
    let meta = std::fs::metadata(&args.at.esp).with_context(|| {
        format!(
            "looked for the mounted ESP at {}; pass --esp DIR",
            args.at.esp.display()
        )
    })?;
    if !meta.is_dir() {
        anyhow::bail!(
            "{} is not a directory (the mounted ESP)",
            args.at.esp.display()
        );
    }
    let boot = EspBoot::open(&args.at.esp, !args.dry_run)
        .with_context(|| format!("opening {}/{}", args.at.esp.display(), esp_loader::BOOT_DIR));
    let on_esp = match &boot {
        Ok(b) => b.read_loader()?,
        Err(_) if args.dry_run => None,
        Err(e) => return Err(anyhow!("{e:#}")),
    };
    let mut fleet = loader_fleet(&args.at.from.fleet, &args.at.from.keys, false)?;
    for note in keep_esp_settings(&mut fleet, on_esp.as_deref(), &args.at.from.fleet) {
        say!("hnroot: {note}");
    }
    let (candidate, signing) = match candidate(&args.at, &kit, &fleet, on_esp.as_deref())? {
        Ok(c) => c,
        Err(r) => return bail_refused(r).map(|_| ()),
    };
    let esp = esp_seen(&args.at.esp, on_esp.as_deref(), &candidate);
    say!(
        "hnroot: loader on the ESP: {}; this system carries: {}",
        loader_text(&esp.loader),
        record_text(&new)
    );
    say_counting_change(on_esp.as_deref(), &candidate);
    let committed = committed_boots(&args.at.loc, on_esp.as_deref(), &fleet);
    let kind = match loader::judge_update(&esp, &new, signing, committed, &request) {
        Ok(kind) => kind,
        // The service only ever moves forward: a committed boot of an older image (after a
        // revert) leaves the newer loader as it is, and says so without failing the unit.
        Err(r @ loader::UpdateRefusal::Downgrade { .. }) if args.if_committed => {
            say!(
                "hnroot: bootloader update: {r} [{}]; nothing written",
                r.code()
            );
            return Ok(());
        }
        Err(r) => bail_refused(r)?,
    };
    let steps = loader::update_steps(kind);
    if steps.is_empty() {
        say!("hnroot: the ESP's loader is already this one; nothing written");
        return Ok(());
    }
    say!(
        "hnroot: {} ({} KiB): {} steps",
        kind.code(),
        candidate.len().div_ceil(1024),
        steps.len()
    );
    for (i, step) in steps.iter().enumerate() {
        say!("hnroot: plan {}/{}: {step}", i + 1, steps.len());
    }
    if args.dry_run {
        say!("hnroot: --dry-run: nothing was written");
        return Ok(());
    }
    let boot = boot.map_err(|e| anyhow!("{e:#}"))?;
    write_loader(&boot, steps, &candidate)?;
    say!(
        "hnroot: the ESP's loader is now {} ({})",
        record_text(&new),
        boot.loader_path().display()
    );
    // The history lives on hostpart; a machine without one (an install in progress) has none.
    if let Ok(hostpart) = locate::open_hostpart(&args.at.loc) {
        crate::cmd::history::record(&hostpart, Operator::LoaderUpdated, None, None, None);
    }
    Ok(())
}

/// Add to `fleet` (the files the images' loader directory `fleet_dir` gives the new loader)
/// what the ESP's loader (`on_esp`) was built with and the images do not state, as the core
/// says ([`loader::carry_over`]): what was kept, a sentence each.
fn keep_esp_settings(
    fleet: &mut Vec<FleetFile>,
    on_esp: Option<&[u8]>,
    fleet_dir: &Path,
) -> Vec<String> {
    let mut kept = Vec::new();
    let Some(old) = on_esp else { return kept };
    // Kept as the settings they state, in their canonical text (as [`loader_fleet`] builds a
    // fleet's): a loader whose file had other comments or spacing counts alike.
    let old_counting = match hnroot_core::memdisk::file(old, counting::MEMDISK_PATH) {
        Ok(Some(text)) => counting::parse(text).ok(),
        _ => None,
    };
    let old_menu = match hnroot_core::memdisk::file(old, menu::MEMDISK_PATH) {
        Ok(Some(text)) => menu::parse(text).ok(),
        _ => None,
    };
    let esp = loader::Settings {
        require_sealed: esp_loader::seal_policy_of(old).is_ok_and(|p| p.require),
        counting: old_counting.is_some(),
        menu_timeout: old_menu.is_some(),
    };
    let images = loader::Settings {
        require_sealed: fleet.iter().any(|f| f.name == REQUIRE_SEALED_FILE),
        counting: fleet.iter().any(|f| f.name == counting::FILE_NAME),
        menu_timeout: fleet.iter().any(|f| f.name == menu::FILE_NAME),
    };
    let carried = loader::carry_over(images, esp);
    if carried.require_sealed {
        fleet.push(require_sealed_file());
        kept.push(format!(
            "the new loader requires sealed images, as the ESP's does ({} has no \
             {REQUIRE_SEALED_FILE} file; an update never drops the requirement, `hnroot install \
             --esp` without --require-sealed does)",
            fleet_dir.display()
        ));
    }
    if let (true, Some(c)) = (carried.counting, old_counting) {
        fleet.push(FleetFile {
            name: counting::FILE_NAME.into(),
            data: counting::Text(&c).to_string().into_bytes(),
        });
        kept.push(format!(
            "the new loader counts as the ESP's does, {} ({} has no {} file)",
            counting::Summary(&c),
            fleet_dir.display(),
            counting::FILE_NAME
        ));
    }
    if let (true, Some(seconds)) = (carried.menu_timeout, old_menu) {
        fleet.push(FleetFile {
            name: menu::FILE_NAME.into(),
            data: menu::Text(seconds).to_string().into_bytes(),
        });
        kept.push(format!(
            "in the new loader {}, as in the ESP's ({} has no {} file)",
            menu::Summary(seconds),
            fleet_dir.display(),
            menu::FILE_NAME
        ));
    }
    fleet.sort_by(|a, b| a.name.cmp(&b.name));
    kept
}

/// Say when the new loader counts otherwise than the ESP's (the images carry a `counting` file
/// of their own that says otherwise: it wins over the ESP's, [`loader::carry_over`]).
fn say_counting_change(on_esp: Option<&[u8]>, candidate: &[u8]) {
    let Some(old) = on_esp.and_then(|b| esp_loader::counting_of(b).ok()) else {
        return;
    };
    let Ok(new) = esp_loader::counting_of(candidate) else {
        return;
    };
    if old.0 != new.0 {
        say!(
            "hnroot: the new loader counts with {}, as the images' {FLEET_DIR}/{} says (the \
             ESP's: {})",
            counting::Summary(&new.0),
            counting::FILE_NAME,
            counting::Summary(&old.0)
        );
    }
}

/// Carry out the update's steps, saying what each did.
fn write_loader(boot: &EspBoot, steps: &[loader::LoaderStep], candidate: &[u8]) -> Result<()> {
    let total = steps.len();
    boot.run(steps, candidate, |i, step, what| {
        say!("hnroot: step {}/{total}: {}: {what}", i + 1, step.code());
    })
    .map_err(|f| anyhow!("{f}"))
}

fn bail_refused(r: loader::UpdateRefusal) -> Result<UpdateKind> {
    Err(anyhow!(
        "{r} [{}]; the ESP's loader is left as it is",
        r.code()
    ))
}

/// `hnroot bootloader ...`.
pub fn bootloader(cmd: &BootloaderCommand) -> ExitCode {
    let result = match cmd {
        BootloaderCommand::Status(a) => status(a),
        BootloaderCommand::Update(a) => update(a),
        BootloaderCommand::Presign(a) => presign(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            warn!("hnroot: bootloader: {e:#}");
            ExitCode::from(1)
        }
    }
}
