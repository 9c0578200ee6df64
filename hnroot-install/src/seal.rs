//! Sealing an image (`hnroot image seal`, `hnroot image build --seal`): the dm-verity hash tree
//! appended after the filesystem by `veritysetup format`, the manifest composed by the core
//! (`hnroot_core::seal`) and signed by the publisher's `minisign -S`, the seal block written
//! last. The filesystem's bytes are never written: a failure before the seal block is in place
//! cuts the file back to the filesystem, which leaves the image as it was.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use hnroot_core::minisig::PublicKey;
use hnroot_core::seal::{
    self, version_is_valid, Manifest, SealSeen, Verity, Version, MANIFEST_MAX, SEAL_BLOCK_LEN,
    VERITY_BLOCK,
};
use hnroot_core::verdict::Verdict;
use hnroot_linux::image::{self, Inspect};
use hnroot_linux::seal as facts;

use crate::tool;

/// What to seal and with which key.
#[derive(Debug, Clone)]
pub struct SealRequest {
    /// The image file (changed in place: the tree and the seal block are appended).
    pub image: PathBuf,
    /// The publisher's minisign secret key (`minisign -S -s KEY`; a password is asked for on the
    /// terminal when the key has one).
    pub sign_key: PathBuf,
    /// The image's version [default: `IMAGE_VERSION` of its os-release].
    pub version: Option<String>,
    /// A public key to check the new seal with (the one `hnroot stage` and the loader will use).
    pub public_key: Option<PathBuf>,
}

/// A sealed image.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// Its manifest.
    pub manifest: Manifest,
    /// Bytes of the hash tree.
    pub tree_bytes: u64,
    /// The file's length now.
    pub file_len: u64,
}

/// Seal `req.image`.
pub fn seal(req: &SealRequest, inspect: &Inspect) -> Result<Sealed> {
    let name = req.image.display().to_string();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&req.image)
        .with_context(|| format!("opening {name} to seal it"))?;
    // An image a loop device uses (the running hn-root.img, one mounted elsewhere) is not
    // changed under it.
    let users = hnroot_linux::loopdev::backed_by(&file)
        .with_context(|| format!("cannot tell whether {name} is in use"))?;
    if !users.is_empty() {
        let nodes: Vec<String> = users.iter().map(|a| a.node.display().to_string()).collect();
        bail!(
            "{name} backs the loop device {} (in use: mounted, or the running system's image): \
             seal a copy, or detach the device first (losetup -d); nothing was written",
            nodes.join(", ")
        );
    }
    let judged = image::judge_file(&file, inspect);
    let bootable = match judged.verdict {
        Verdict::Bootable(b) => b,
        Verdict::Refused(r) => bail!(
            "{name} is not bootable ({}): {r}; nothing was written",
            r.code()
        ),
        Verdict::Absent => bail!("{name} vanished; nothing was written"),
    };
    let version = match (
        req.version.clone(),
        judged
            .os_release
            .as_ref()
            .and_then(|o| o.image_version.clone()),
    ) {
        (Some(v), _) | (None, Some(v)) => v,
        (None, None) => bail!(
            "{name} has no IMAGE_VERSION in its os-release and no --version was given: a sealed \
             image carries a signed version; nothing was written"
        ),
    };
    if !version_is_valid(&version) {
        bail!(
            "{version:?} is not a version hnroot seals (1 to 64 ASCII letters, digits and . , _ - \
             + ~ ^); nothing was written"
        );
    }
    let version =
        Version::try_from(version.as_str()).map_err(|_| anyhow::anyhow!("version too long"))?;
    let outcome = facts::probe(&file)?;
    let info = outcome.info().context("no filesystem")?;
    let fs_bytes = info.size.context("the filesystem does not say its size")?;
    let data_bytes = fs_bytes.div_ceil(u64::from(VERITY_BLOCK)) * u64::from(VERITY_BLOCK);
    let (file_len, last) = facts::last_block(&file)?;
    if last.as_deref().is_some_and(|b| b.starts_with(&seal::MAGIC)) {
        bail!("{name} is sealed already (it ends with a seal block); nothing was written");
    }
    if file_len != data_bytes {
        bail!(
            "{name} is {file_len} bytes and its filesystem {fs_bytes} (whole 4 KiB blocks: \
             {data_bytes}): hnroot seals an image that is its filesystem and nothing else, as \
             `hnroot image build` makes it; nothing was written"
        );
    }
    let (kernel_sha256, initramfs_sha256) =
        facts::boot_file_hashes(&file, bootable.fs_type, inspect)
            .with_context(|| format!("hashing the boot files of {name}"))?;
    let mut salt = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut salt))
        .context("reading a salt from /dev/urandom")?;
    let mut manifest = Manifest {
        version,
        uuid: bootable.uuid,
        kernel_sha256,
        initramfs_sha256,
        verity: Verity {
            data_bytes,
            hash_offset: data_bytes,
            salt: heapless::Vec::from_slice(&salt).map_err(|_| anyhow::anyhow!("salt"))?,
            root_hash: [0; 32],
        },
    };
    let result = append_seal(&file, &req.image, &mut manifest, &req.sign_key);
    if let Err(e) = result {
        // Only what was appended goes: the filesystem's bytes were never written.
        let undo = file.set_len(data_bytes).and_then(|()| file.sync_all());
        return Err(match undo {
            Ok(()) => e.context(format!("{name} was cut back to its filesystem, as it was")),
            Err(u) => e.context(format!(
                "cutting {name} back to its {data_bytes} bytes of filesystem failed too ({u}): \
                 `truncate -s {data_bytes} {name}` restores it"
            )),
        });
    }
    let sealed_len = file.metadata()?.len();
    if let Some(public) = &req.public_key {
        check_with(&file, &outcome, public)?;
    }
    let tree_bytes =
        seal::tree_blocks(manifest.verity.data_blocks()).unwrap_or(0) * u64::from(VERITY_BLOCK);
    Ok(Sealed {
        manifest,
        tree_bytes,
        file_len: sealed_len,
    })
}

/// The tree (veritysetup), the manifest signed (minisign), the seal block written and synced.
fn append_seal(file: &File, path: &Path, manifest: &mut Manifest, sign_key: &Path) -> Result<()> {
    let v = &manifest.verity;
    let out = tool::run(
        Command::new("veritysetup")
            .args(["format", "--no-superblock", "--hash=sha256"])
            .arg(format!("--data-block-size={VERITY_BLOCK}"))
            .arg(format!("--hash-block-size={VERITY_BLOCK}"))
            .arg(format!("--data-blocks={}", v.data_blocks()))
            .arg(format!("--hash-offset={}", v.hash_offset))
            .arg(format!("--salt={}", manifest.salt_hex()))
            .arg(path)
            .arg(path),
    )?;
    let root = out
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .map(str::trim)
        .context("veritysetup printed no root hash")?;
    if root.len() != 64 {
        bail!("veritysetup's root hash {root:?} is not 32 bytes of hex");
    }
    for (i, b) in manifest.verity.root_hash.iter_mut().enumerate() {
        *b = u8::from_str_radix(root.get(2 * i..2 * i + 2).unwrap_or("x"), 16)
            .context("veritysetup's root hash")?;
    }
    let seal_offset = manifest.verity.seal_offset().context("tree size")?;
    let tree_end = file.metadata()?.len();
    if tree_end != seal_offset {
        bail!(
            "veritysetup left the file {tree_end} bytes long; the tree should end at {seal_offset}"
        );
    }
    let mut text = [0u8; MANIFEST_MAX];
    let n = manifest.write(&mut text)?;
    let dir = tempfile::tempdir()?;
    let m = dir.path().join("manifest");
    std::fs::write(&m, &text[..n])?;
    let comment = format!("hnroot-seal {} {}", manifest.version, manifest.uuid);
    // The terminal stays the signer's: minisign asks there for the key's password.
    let status = Command::new("minisign")
        .arg("-S")
        .arg("-s")
        .arg(sign_key)
        .arg("-m")
        .arg(&m)
        .args(["-t", &comment])
        .stdin(Stdio::inherit())
        .stdout(Stdio::null())
        .status()
        .context("cannot start minisign (is it installed?)")?;
    if !status.success() {
        bail!("minisign -S -s {} failed ({status})", sign_key.display());
    }
    let signature = std::fs::read(dir.path().join("manifest.minisig"))?;
    let mut block = [0u8; SEAL_BLOCK_LEN];
    seal::write_block(&text[..n], &signature, &mut block)?;
    file.write_all_at(&block, seal_offset)?;
    file.sync_all()?;
    Ok(())
}

/// Judge the new seal with `public` as `hnroot stage` will.
fn check_with(file: &File, outcome: &hnroot_core::probe::FsOutcome, public: &Path) -> Result<()> {
    let key = PublicKey::parse(&std::fs::read(public)?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", public.display()))?;
    match facts::judge_file(file, outcome, &[key])? {
        SealSeen::Sealed { .. } => Ok(()),
        other => bail!(
            "the new seal does not hold with {}: {}",
            public.display(),
            facts::describe(&other)
        ),
    }
}
