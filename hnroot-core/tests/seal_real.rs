//! The seal from real bytes: keys and signatures made by `minisign` itself (prehashed, its
//! default, and legacy), a hash tree made by `veritysetup` over a real ext4 filesystem, then one
//! byte changed and the exact refusal asserted.

use hnroot_core::minisig::{MinisigError, PublicKey, Signature};
use hnroot_core::seal::{self, Manifest, SealFacts, SealProblem, SealSeen, Verity, SEAL_BLOCK_LEN};
use hnroot_core::FsUuid;
use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn keypair(dir: &Path, name: &str) -> (std::path::PathBuf, PublicKey) {
    let (p, s) = (
        dir.join(format!("{name}.pub")),
        dir.join(format!("{name}.key")),
    );
    run(Command::new("minisign")
        .args(["-G", "-W", "-p"])
        .arg(&p)
        .arg("-s")
        .arg(&s));
    (s, PublicKey::parse(&std::fs::read(&p).unwrap()).unwrap())
}

fn sign(dir: &Path, key: &Path, message: &[u8], legacy: bool) -> Vec<u8> {
    let m = dir.join("message");
    std::fs::write(&m, message).unwrap();
    let mut cmd = Command::new("minisign");
    cmd.arg("-S")
        .arg("-s")
        .arg(key)
        .arg("-m")
        .arg(&m)
        .args(["-t", "fleet 1.10"]);
    if legacy {
        cmd.arg("-l");
    }
    run(&mut cmd);
    std::fs::read(dir.join("message.minisig")).unwrap()
}

#[test]
fn minisign_signatures_verify_and_one_changed_byte_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, key) = keypair(dir.path(), "fleet");
    let (_, other) = keypair(dir.path(), "other");
    let message = b"hnroot-seal 1\nimage-version 1.10\n";
    for legacy in [false, true] {
        let text = sign(dir.path(), &secret, message, legacy);
        let sig = Signature::parse(&text).unwrap();
        assert_eq!(sig.prehashed, !legacy);
        assert_eq!(sig.trusted_comment, b"fleet 1.10");
        key.verify(message, &sig).unwrap();
        let mut changed = message.to_vec();
        changed[20] ^= 1;
        assert_eq!(key.verify(&changed, &sig), Err(MinisigError::Message));
        assert_eq!(
            other.verify(message, &sig),
            Err(MinisigError::KeyId {
                signed_by: key.key_id
            })
        );
        // A trusted comment changed after signing: the global signature no longer covers it.
        let swapped = String::from_utf8(text.clone())
            .unwrap()
            .replace("fleet 1.10", "fleet 9.99");
        let sig = Signature::parse(swapped.as_bytes()).unwrap();
        assert_eq!(key.verify(message, &sig), Err(MinisigError::TrustedComment));
    }
}

/// A real ext4 filesystem, a real verity tree after it, a real signed manifest in the seal block:
/// judged `Sealed`; then each of the file's parts changed in turn.
#[test]
fn a_sealed_file_from_real_tools() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("v.img");
    let data_blocks: u64 = 8192; // 32 MiB
    let data_bytes = data_blocks * 4096;
    std::fs::File::create(&img)
        .unwrap()
        .set_len(data_bytes)
        .unwrap();
    let uuid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-U", uuid])
        .arg(&img));
    let salt = "5a".repeat(32);
    let out = run(Command::new("veritysetup")
        .args([
            "format",
            "--no-superblock",
            "--hash=sha256",
            "--data-block-size=4096",
        ])
        .args([
            "--hash-block-size=4096",
            &format!("--data-blocks={data_blocks}"),
        ])
        .args([
            &format!("--hash-offset={data_bytes}"),
            &format!("--salt={salt}"),
        ])
        .arg(&img)
        .arg(&img));
    let root = out
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .unwrap()
        .trim()
        .to_string();
    let tree_end = std::fs::metadata(&img).unwrap().len();
    assert_eq!(
        tree_end,
        data_bytes + seal::tree_blocks(data_blocks).unwrap() * 4096,
        "the core's tree size is veritysetup's"
    );
    let mut root_hash = [0u8; 32];
    for (i, b) in root_hash.iter_mut().enumerate() {
        *b = u8::from_str_radix(&root[2 * i..2 * i + 2], 16).unwrap();
    }
    let manifest = Manifest {
        version: "1.10".try_into().unwrap(),
        uuid: FsUuid::parse(uuid).unwrap(),
        kernel_sha256: [1; 32],
        initramfs_sha256: [2; 32],
        verity: Verity {
            data_bytes,
            hash_offset: data_bytes,
            salt: heapless::Vec::from_slice(&[0x5a; 32]).unwrap(),
            root_hash,
        },
    };
    assert_eq!(manifest.root_hash_hex().to_string(), root);
    let mut text = [0u8; seal::MANIFEST_MAX];
    let n = manifest.write(&mut text).unwrap();
    let (secret, key) = keypair(dir.path(), "fleet");
    let sig = sign(dir.path(), &secret, &text[..n], false);
    let mut block = [0u8; SEAL_BLOCK_LEN];
    seal::write_block(&text[..n], &sig, &mut block).unwrap();
    let file_len = tree_end + SEAL_BLOCK_LEN as u64;
    fn facts(block: &[u8], file_len: u64, fs_bytes: u64) -> SealFacts<'_> {
        SealFacts {
            file_len,
            last_block: Some(block),
            fs_uuid: FsUuid::parse("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0").unwrap(),
            fs_bytes,
        }
    }
    match seal::judge(&facts(&block, file_len, data_bytes), &[key]) {
        SealSeen::Sealed {
            manifest: m,
            key_id,
        } => {
            assert_eq!(m, manifest);
            assert_eq!(key_id, key.key_id);
        }
        other => panic!("{other:?}"),
    }
    let problem = |block: &[u8], len, keys: &[PublicKey]| match seal::judge(
        &facts(block, len, data_bytes),
        keys,
    ) {
        SealSeen::Broken(e) => e.problem,
        other => panic!("{other:?}"),
    };
    // One byte of the manifest: the signature no longer holds.
    let mut b = block;
    b[16 + 30] ^= 1;
    assert_eq!(problem(&b, file_len, &[key]), SealProblem::BadSignature);
    // Signed by a key the loader does not trust.
    let (_, other) = keypair(dir.path(), "other");
    assert_eq!(problem(&block, file_len, &[other]), SealProblem::UnknownKey);
    // A file cut short or grown: the layout is not the manifest's.
    assert_eq!(
        problem(&block, file_len + 4096, &[key]),
        SealProblem::Layout
    );
    // Another image's UUID.
    let f = SealFacts {
        fs_uuid: FsUuid::parse("11111111-2222-3333-4444-555555555555").unwrap(),
        ..facts(&block, file_len, data_bytes)
    };
    assert!(
        matches!(seal::judge(&f, &[key]), SealSeen::Broken(e) if e.problem == SealProblem::Uuid)
    );
    // No magic: unsealed.
    assert_eq!(
        seal::judge(&facts(&[0u8; SEAL_BLOCK_LEN], file_len, data_bytes), &[key]),
        SealSeen::Unsealed
    );
}
