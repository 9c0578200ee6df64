//! UEFI Secure Boot for the suites: an operator's signing key and certificate (made once with
//! `openssl`), and an OVMF variable store with that certificate enrolled as PK, KEK and db,
//! Debian's Secure Boot CA in db too, and Secure Boot on (made once with `virt-fw-vars` from
//! PyPI's `virt-firmware`, pinned, installed into a virtual environment under
//! `target/hnroot-build/`). The operator's key starts hnroot's loader; Debian's CA is what the
//! firmware checks Debian's signed kernels with when GRUB hands one to `LoadImage` (Debian's
//! GRUB does under Secure Boot). No Microsoft key is enrolled. Everything is cached under
//! `target/hnroot-build/secureboot/`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use hnroot_install::grub::SecureBootKey;

use crate::buildenv::{self, cached};

/// The `virt-firmware` release installed (PyPI).
pub const VIRT_FIRMWARE_VERSION: &str = "26.10";
/// OVMF's empty variable store the keys are enrolled into.
const VARS_TEMPLATE: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// The owner GUID written with each enrolled certificate.
const OWNER: &str = "6e2a7d1c-6b8f-4e0a-9d55-68a6a0f3b2c1";

/// The operator's Secure Boot key and the variable store that trusts it.
#[derive(Debug, Clone)]
pub struct SecureBoot {
    /// The key and certificate `sbsign` signs the loader with.
    pub key: SecureBootKey,
    /// OVMF variables: the certificate as PK, KEK and db; Secure Boot on.
    pub vars: PathBuf,
}

/// `virt-fw-vars`, installed once into its own virtual environment.
fn virt_fw_vars() -> Result<PathBuf> {
    let venv = buildenv::build_root().join(format!("virt-firmware-{VIRT_FIRMWARE_VERSION}"));
    let tool = venv.join("bin/virt-fw-vars");
    let _lock = buildenv::lock("virt-firmware")?;
    cached(
        &tool,
        &format!("virt-firmware {VIRT_FIRMWARE_VERSION}"),
        || {
            if venv.exists() {
                fs::remove_dir_all(&venv)
                    .with_context(|| format!("cannot remove {}", venv.display()))?;
            }
            // Debian's python3 with its venv module (package python3-venv), not one on PATH.
            buildenv::run(
                Command::new("/usr/bin/python3")
                    .args(["-m", "venv"])
                    .arg(&venv),
            )
            .context("python3 -m venv (package python3-venv)")?;
            buildenv::run(
                Command::new(venv.join("bin/pip"))
                    .args(["install", "--quiet", "--disable-pip-version-check"])
                    .arg(format!("virt-firmware=={VIRT_FIRMWARE_VERSION}")),
            )
            .context("pip install virt-firmware (PyPI)")?;
            Ok(())
        },
    )?;
    Ok(tool)
}

/// The test operator's key, certificate and variable store, made once.
pub fn get() -> Result<SecureBoot> {
    let dir = buildenv::build_root().join("secureboot");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let _lock = buildenv::lock("secureboot")?;
    let key = SecureBootKey {
        key: dir.join("db-key.pem"),
        cert: dir.join("db-cert.pem"),
    };
    cached(&key.cert, "secureboot db key v1", || {
        buildenv::run(
            Command::new("openssl")
                .args(["req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes"])
                .args(["-sha256", "-days", "36500"])
                .args(["-subj", "/CN=hnroot test operator Secure Boot db/"])
                .arg("-keyout")
                .arg(&key.key)
                .arg("-out")
                .arg(&key.cert),
        )
        .map(drop)
    })?;
    let vars = dir.join("OVMF_VARS_4M.hnroot-test.fd");
    let tool = virt_fw_vars()?;
    let cert_text = buildenv::read(&key.cert)?;
    cached(
        &vars,
        &format!(
            "secureboot vars v2 {VIRT_FIRMWARE_VERSION} {:016x}",
            buildenv::fnv1a(&cert_text)
        ),
        || enroll(&tool, &key.cert, &vars),
    )?;
    Ok(SecureBoot { key, vars })
}

/// Enroll `cert` as PK, KEK and db, and Debian's CA in db, into a copy of OVMF's empty store,
/// Secure Boot on.
fn enroll(tool: &Path, cert: &Path, out: &Path) -> Result<()> {
    buildenv::run(
        Command::new(tool)
            .args(["--input", VARS_TEMPLATE])
            .args(["--set-pk", OWNER])
            .arg(cert)
            .args(["--add-kek", OWNER])
            .arg(cert)
            .args(["--add-db", OWNER])
            .arg(cert)
            .args(["--distro-keys", "debian"])
            .arg("--secure-boot")
            .arg("--output")
            .arg(out),
    )
    .map(drop)
}
