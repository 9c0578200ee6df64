//! The publisher of the test images: a minisign key pair made once with the `minisign` tool a
//! publisher would use (no password, `minisign -G -W`), kept in the build cache so the images
//! that trust its public key stay cached, and `minisign -Sm` signatures (prehashed) beside the
//! images it publishes. It signs files; it never verifies anything (that is `hnroot stage`'s
//! job, in the guest).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::buildenv;

/// The suffix minisign gives a signature (`IMAGE.minisig`), where `hnroot stage` looks for it.
pub const SIGNATURE_SUFFIX: &str = ".minisig";

/// A publisher's key pair on the host.
#[derive(Debug, Clone)]
pub struct Publisher {
    /// The public key file (`minisign -p`), as it goes into a trusted-keys directory.
    pub public: PathBuf,
    secret: PathBuf,
}

impl Publisher {
    /// The key pair in `dir` (`publisher.pub`, `publisher.key`), made there if it is not.
    pub fn in_dir(dir: &Path) -> Result<Publisher> {
        let public = dir.join("publisher.pub");
        let secret = dir.join("publisher.key");
        if public.is_file() && secret.is_file() {
            return Ok(Publisher { public, secret });
        }
        // Made in a scratch directory and moved in, so an interrupted run leaves no half pair.
        let scratch = buildenv::fresh_dir(&dir.join("publisher.partial"))?;
        let (p, s) = (scratch.join("publisher.pub"), scratch.join("publisher.key"));
        buildenv::run(
            Command::new("minisign")
                .args(["-G", "-W", "-f", "-p"])
                .arg(&p)
                .arg("-s")
                .arg(&s),
        )
        .context("making the test images' publisher key pair")?;
        fs::rename(&s, &secret)
            .and_then(|()| fs::rename(&p, &public))
            .with_context(|| format!("cannot move the key pair into {}", dir.display()))?;
        fs::remove_dir_all(&scratch)
            .with_context(|| format!("cannot remove {}", scratch.display()))?;
        Ok(Publisher { public, secret })
    }

    /// The secret key file (`minisign -S -s`; no password), for `hnroot image seal
    /// --sign-key`.
    pub fn secret_key(&self) -> &Path {
        &self.secret
    }

    /// The public key file's bytes.
    pub fn public_key(&self) -> Result<Vec<u8>> {
        buildenv::read(&self.public)
    }

    /// `minisign -Sm file -t comment`: writes and returns `file.minisig`.
    pub fn sign(&self, file: &Path, comment: &str) -> Result<PathBuf> {
        if comment.contains('\n') {
            bail!("a trusted comment is one line: {comment:?}");
        }
        buildenv::run(
            Command::new("minisign")
                .arg("-S")
                .arg("-s")
                .arg(&self.secret)
                .arg("-m")
                .arg(file)
                .args(["-t", comment]),
        )
        .with_context(|| format!("signing {}", file.display()))?;
        let signature = signature_of(file);
        if !signature.is_file() {
            bail!(
                "minisign wrote no {} for {}",
                signature.display(),
                file.display()
            );
        }
        Ok(signature)
    }
}

/// Where the signature of `file` is by minisign's convention.
pub fn signature_of(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(SIGNATURE_SUFFIX);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_sits_beside_its_file_and_names_the_comment() {
        if Command::new("minisign").arg("-v").output().is_err() {
            eprintln!("skipping: no minisign");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let publisher = Publisher::in_dir(dir.path()).unwrap();
        let again = Publisher::in_dir(dir.path()).unwrap();
        assert_eq!(
            publisher.public_key().unwrap(),
            again.public_key().unwrap(),
            "the cached pair is reused, not replaced"
        );
        let file = dir.path().join("v9.img");
        fs::write(&file, b"an image").unwrap();
        let sig = publisher.sign(&file, "hnroot test v9").unwrap();
        assert_eq!(sig, dir.path().join("v9.img.minisig"));
        let text = fs::read_to_string(&sig).unwrap();
        assert!(text.contains("trusted comment: hnroot test v9"), "{text}");
        assert!(publisher.sign(&file, "two\nlines").is_err());
    }
}
