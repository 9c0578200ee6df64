//! `hnroot image build`: a root image from a directory tree (see `hnroot_install::image`). The
//! core picks the kernel and the size (`hnroot_core::imagebuild`); the tree is never changed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use hnroot_core::install::HostpartFs;
use hnroot_core::uuid::FsUuid;
use hnroot_install::image::{self, BuildRequest, InitramfsChoice};

use crate::{say, warn};

/// `hnroot image ...`.
#[derive(clap::Subcommand, Debug)]
pub enum ImageCommand {
    /// Build a root image from a directory tree (a stock mmdebstrap tree with a kernel in
    /// /boot, or an installation copied out). Runs as root (the image is loop-mounted); the
    /// tree is left as it is.
    Build(BuildArgs),
    /// Seal an image: append its dm-verity hash tree and a manifest (version, UUID, SHA-256 of
    /// /boot/kernel and /boot/initramfs, the tree's root hash) signed with the publisher's
    /// minisign key. GRUB then checks what it boots and the kernel reads the image through
    /// dm-verity. Sign the whole file afterwards, as for any image (minisign -Sm IMAGE).
    Seal(SealArgs),
}

/// How a seal is signed (`hnroot image seal`, `hnroot image build --seal`).
#[derive(clap::Args, Debug, Clone)]
pub struct SealKeyArgs {
    /// The publisher's minisign secret key (minisign asks for its password, if any).
    #[arg(long, value_name = "KEY")]
    sign_key: Option<PathBuf>,
    /// The version the seal states [default: IMAGE_VERSION of the image's os-release].
    #[arg(long, value_name = "VERSION")]
    version: Option<String>,
    /// Check the new seal with this public key (the one in /etc/hnroot/keys on the servers).
    #[arg(long, value_name = "PUB")]
    public_key: Option<PathBuf>,
}

/// Options of `hnroot image seal`.
#[derive(clap::Args, Debug)]
pub struct SealArgs {
    /// The image file (the tree and the seal are appended to it).
    image: PathBuf,
    #[command(flatten)]
    key: SealKeyArgs,
}

/// Options of `hnroot image build`.
#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    /// The tree.
    #[arg(long, value_name = "DIR")]
    root: PathBuf,
    /// The image file to write (replaced only once the new one is complete).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// The image's filesystem: ext4, btrfs or xfs.
    #[arg(long, value_name = "FS", default_value = "ext4", value_parser = parse_fs)]
    fs: HostpartFs,
    /// The image's size (bytes, or with K, M, G, T) [default: the tree + 25 % + 256 MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    size: Option<u64>,
    /// Where /boot/initramfs comes from.
    #[arg(long, value_enum, default_value = "auto")]
    initramfs: InitramfsChoice,
    /// The static hnroot-init for hnroot's own initramfs.
    #[arg(
        long = "init",
        value_name = "FILE",
        default_value = "/usr/lib/hnroot/hnroot-init"
    )]
    hnroot_init: PathBuf,
    /// The hnroot CLI to put into an image whose tree lacks the hnroot package [default: this
    /// program].
    #[arg(long, value_name = "FILE")]
    cli: Option<PathBuf>,
    /// The image's filesystem UUID [default: a fresh one]. With SOURCE_DATE_EPOCH set, an ext4
    /// image of the same tree is then the same bytes at every build.
    #[arg(long, value_name = "UUID", value_parser = parse_uuid)]
    uuid: Option<FsUuid>,
    /// Seal the built image (see `hnroot image seal`); needs --sign-key.
    #[arg(long)]
    seal: bool,
    #[command(flatten)]
    key: SealKeyArgs,
}

fn parse_uuid(s: &str) -> Result<FsUuid, String> {
    match FsUuid::parse(s) {
        Ok(u @ FsUuid::Uuid(_)) if !u.is_nil() => Ok(u),
        Ok(_) => Err(format!(
            "{s}: an image's UUID is 128 bits and not all zero \
             (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"
        )),
        Err(e) => Err(format!("{s}: not a UUID: {e}")),
    }
}

/// `SOURCE_DATE_EPOCH` (reproducible-builds.org): whole seconds since 1970, or unset.
fn source_date_epoch() -> Result<Option<u64>> {
    match std::env::var_os("SOURCE_DATE_EPOCH") {
        None => Ok(None),
        Some(v) => match v.to_str().and_then(|t| t.trim().parse::<u64>().ok()) {
            Some(n) if n <= i32::MAX as u64 => Ok(Some(n)),
            _ => anyhow::bail!(
                "SOURCE_DATE_EPOCH={} is not a number of seconds since 1970 up to 2038 (ext4's \
                 times); unset it or set it to one (e.g. the tree's newest package's date); \
                 nothing was written",
                v.to_string_lossy()
            ),
        },
    }
}

fn parse_fs(s: &str) -> Result<HostpartFs, String> {
    HostpartFs::parse(s).ok_or_else(|| format!("{s}: an image is ext4, btrfs or xfs"))
}

/// `4G`, `512M`, `1048576`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s}: a size is a number with an optional K, M, G or T"))?;
    let shift = match unit {
        "" => 0,
        "K" | "k" | "KiB" => 10,
        "M" | "m" | "MiB" => 20,
        "G" | "g" | "GiB" => 30,
        "T" | "t" | "TiB" => 40,
        _ => return Err(format!("{s}: unknown unit {unit:?} (K, M, G or T)")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s}: too large"))
}

fn build(args: &BuildArgs) -> Result<()> {
    if args.seal && args.key.sign_key.is_none() {
        anyhow::bail!("--seal needs the publisher's minisign secret key: pass --sign-key KEY");
    }
    let cli = match &args.cli {
        Some(c) => c.clone(),
        None => std::env::current_exe()?,
    };
    let req = BuildRequest {
        root: args.root.clone(),
        out: args.out.clone(),
        fs: args.fs,
        size: args.size,
        initramfs: args.initramfs,
        hnroot_init: args.hnroot_init.clone(),
        cli,
        uuid: args.uuid,
        epoch: source_date_epoch()?,
    };
    let built = image::build(&req, &mut |line| say!("hnroot: {line}"))?;
    for note in &built.notes {
        say!("hnroot:   {note}");
    }
    say!(
        "hnroot: built {} ({} MiB {}, UUID {}, {} MiB of contents): kernel {}, initramfs {}{}",
        args.out.display(),
        built.size >> 20,
        args.fs.as_str(),
        built.uuid,
        built.content >> 20,
        built.kernel,
        built.initramfs,
        built
            .version
            .as_deref()
            .map(|v| format!(", version {v}"))
            .unwrap_or_default()
    );
    for line in hnroot_install::sysprep::warnings(&built.leftovers) {
        warn!("hnroot: warning: {line}");
    }
    if args.seal {
        seal_image(&args.out, &args.key)?;
    }
    say!(
        "hnroot: sign it for stage: minisign -Sm {} -t \"<image id> <version>\"",
        args.out.display()
    );
    Ok(())
}

fn seal_image(image: &std::path::Path, key: &SealKeyArgs) -> Result<()> {
    let Some(sign_key) = key.sign_key.clone() else {
        anyhow::bail!("sealing needs the publisher's minisign secret key: pass --sign-key KEY");
    };
    let req = hnroot_install::seal::SealRequest {
        image: image.to_path_buf(),
        sign_key,
        version: key.version.clone(),
        public_key: key.public_key.clone(),
    };
    let sealed = hnroot_install::seal::seal(&req, &hnroot_linux::image::Inspect::default())?;
    let m = &sealed.manifest;
    say!(
        "hnroot: sealed {} as version {} (UUID {}): dm-verity root hash {}, {} MiB of hash tree; \
         the file is now {} bytes{}",
        image.display(),
        m.version,
        m.uuid,
        m.root_hash_hex(),
        sealed.tree_bytes >> 20,
        sealed.file_len,
        if key.public_key.is_some() {
            "; the seal verifies with the public key given"
        } else {
            ""
        }
    );
    Ok(())
}

/// `hnroot image`.
pub fn image(cmd: &ImageCommand) -> ExitCode {
    let (verb, result) = match cmd {
        ImageCommand::Build(args) => ("build", build(args)),
        ImageCommand::Seal(args) => ("seal", seal_image(&args.image, &args.key)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            warn!("hnroot: image {verb}: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("4X").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
