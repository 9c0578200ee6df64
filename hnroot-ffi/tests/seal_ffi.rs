//! The seal through the C ABI, from real bytes: an ext4 image made by `mkfs.ext4 -d` with its
//! boot files, a tree by `veritysetup`, a manifest signed by `minisign`, judged by
//! `hnroot_seal_judge` with the key list a loader carries; then the verdict with the seal, and
//! the boot files' hashes as GRUB would check them as it reads them.

use std::path::Path;
use std::process::Command;

use hnroot_core::seal::{self, Manifest, Verity, MANIFEST_MAX, SEAL_BLOCK_LEN};
use hnroot_core::FsUuid;
use hnroot_ffi::*;
use sha2::{Digest, Sha256};

const UUID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A sealed image file, the public key text, and the kernel's bytes.
fn sealed_image(dir: &Path) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("boot")).unwrap();
    let kernel = b"a kernel, byte for byte".to_vec();
    std::fs::write(tree.join("boot/kernel"), &kernel).unwrap();
    std::fs::write(tree.join("boot/initramfs"), b"an initramfs").unwrap();
    let img = dir.join("v.img");
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-U", UUID, "-d"])
        .arg(&tree)
        .arg(&img)
        .arg("8M"));
    let data_bytes = std::fs::metadata(&img).unwrap().len();
    let out = run(Command::new("veritysetup")
        .args(["format", "--no-superblock", "--hash=sha256", "--salt=-"])
        .arg(format!("--data-blocks={}", data_bytes / 4096))
        .arg(format!("--hash-offset={data_bytes}"))
        .arg(&img)
        .arg(&img));
    let root = out
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .unwrap()
        .trim()
        .to_string();
    let mut root_hash = [0u8; 32];
    for (i, b) in root_hash.iter_mut().enumerate() {
        *b = u8::from_str_radix(&root[2 * i..2 * i + 2], 16).unwrap();
    }
    let manifest = Manifest {
        version: "2.1".try_into().unwrap(),
        uuid: FsUuid::parse(UUID).unwrap(),
        kernel_sha256: Sha256::digest(&kernel).into(),
        initramfs_sha256: Sha256::digest(b"an initramfs").into(),
        verity: Verity {
            data_bytes,
            hash_offset: data_bytes,
            salt: heapless::Vec::new(),
            root_hash,
        },
    };
    let mut text = [0u8; MANIFEST_MAX];
    let n = manifest.write(&mut text).unwrap();
    std::fs::write(dir.join("manifest"), &text[..n]).unwrap();
    let (p, s) = (dir.join("k.pub"), dir.join("k.key"));
    run(Command::new("minisign")
        .args(["-G", "-W", "-p"])
        .arg(&p)
        .arg("-s")
        .arg(&s));
    run(Command::new("minisign")
        .arg("-S")
        .arg("-s")
        .arg(&s)
        .arg("-m")
        .arg(dir.join("manifest")));
    let sig = std::fs::read(dir.join("manifest.minisig")).unwrap();
    let mut block = [0u8; SEAL_BLOCK_LEN];
    seal::write_block(&text[..n], &sig, &mut block).unwrap();
    let mut bytes = std::fs::read(&img).unwrap();
    assert_eq!(bytes.len() as u64, manifest.verity.seal_offset().unwrap());
    bytes.extend_from_slice(&block);
    assert!(root.len() == 64);
    (bytes, std::fs::read(&p).unwrap(), kernel)
}

fn probe(image: &[u8]) -> hnroot_fs_probe {
    let mut p = hnroot_fs_probe {
        magic: 0,
        opaque: [0; 128],
    };
    assert_eq!(
        unsafe { hnroot_fs_probe_init(&mut p, image.len() as u64) },
        hnroot_result::HNROOT_RESULT_OK
    );
    let (mut off, mut len) = (0u64, 0u32);
    while unsafe { hnroot_fs_probe_step(&mut p, &mut off, &mut len) }
        == hnroot_result::HNROOT_RESULT_NEED_READ
    {
        let start = (off as usize).min(image.len());
        let end = (start + len as usize).min(image.len());
        unsafe { hnroot_fs_probe_feed(&mut p, image[start..end].as_ptr(), end - start) };
    }
    p
}

fn judge(image: &[u8], keys: &[u8]) -> hnroot_seal {
    let mut p = probe(image);
    let mut out = hnroot_seal::default();
    let block = &image[image.len() - SEAL_BLOCK_LEN..];
    let r = unsafe {
        hnroot_seal_judge(
            &mut p,
            image.len() as u64,
            block.as_ptr(),
            keys.as_ptr(),
            keys.len(),
            &mut out,
        )
    };
    assert_eq!(r, hnroot_result::HNROOT_RESULT_OK);
    out
}

fn verdict_text(image: &[u8], seal: &hnroot_seal, require_sealed: u8) -> String {
    verdict(image, seal, require_sealed).1
}

fn verdict(image: &[u8], seal: &hnroot_seal, require_sealed: u8) -> (hnroot_image_seen, String) {
    let mut p = probe(image);
    let facts = hnroot_image_facts {
        entry: HNROOT_ENTRY_FILE,
        probe: HNROOT_PROBE_DONE,
        boot_files: HNROOT_BOOT_FILES_PRESENT,
        length: image.len() as u64,
        seal: seal.kind,
        seal_problem: seal.problem,
        require_sealed,
        root_hash: seal.root_hash,
    };
    let mut seen = hnroot_image_seen {
        kind: 9,
        ..hnroot_image_seen::default()
    };
    let mut text = [0u8; 512];
    let r =
        unsafe { hnroot_image_verdict(&facts, &mut p, &mut seen, text.as_mut_ptr(), text.len()) };
    assert_eq!(r, hnroot_result::HNROOT_RESULT_OK);
    let text = std::ffi::CStr::from_bytes_until_nul(&text)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    (seen, text)
}

#[test]
fn a_sealed_image_judged_through_the_c_abi() {
    let dir = tempfile::tempdir().unwrap();
    let (image, key, kernel) = sealed_image(dir.path());
    // The loader's key list: an unrelated key first, then the publisher's.
    let other = dir.path().join("o.pub");
    run(Command::new("minisign")
        .args(["-G", "-W", "-p"])
        .arg(&other)
        .arg("-s")
        .arg(dir.path().join("o.key")));
    let mut keys = std::fs::read(&other).unwrap();
    keys.extend_from_slice(&key);
    let s = judge(&image, &keys);
    assert_eq!(s.kind, HNROOT_SEAL_SEALED);
    assert_eq!(&s.version[..4], b"2.1\0");
    // The seal's root hash (veritysetup's) reaches the observation GRUB hands the decision.
    let manifest = seal::read_block(&image[image.len() - SEAL_BLOCK_LEN..])
        .unwrap()
        .unwrap();
    let root = Manifest::parse(manifest.manifest).unwrap().verity.root_hash;
    assert_eq!(s.root_hash, root);
    let (seen, _) = verdict(&image, &s, 0);
    assert!(seen.sealed && seen.kind == HNROOT_IMAGE_BOOTABLE);
    assert_eq!(seen.root_hash, root);
    assert!(
        verdict_text(&image, &s, 1).starts_with("ext4 UUID="),
        "{}",
        verdict_text(&image, &s, 1)
    );

    // The kernel as GRUB reads it: its hash matches; one byte changed does not.
    let (mut ok, mut problem) = (9u8, 9u8);
    let good: [u8; 32] = Sha256::digest(&kernel).into();
    assert_eq!(
        unsafe {
            hnroot_seal_check_file(
                &s,
                HNROOT_BOOT_FILE_KERNEL,
                good.as_ptr(),
                &mut ok,
                &mut problem,
            )
        },
        hnroot_result::HNROOT_RESULT_OK
    );
    assert_eq!((ok, problem), (1, 0));
    let mut changed = kernel.clone();
    changed[3] ^= 1;
    let bad: [u8; 32] = Sha256::digest(&changed).into();
    unsafe {
        hnroot_seal_check_file(
            &s,
            HNROOT_BOOT_FILE_KERNEL,
            bad.as_ptr(),
            &mut ok,
            &mut problem,
        )
    };
    assert_eq!((ok, problem), (0, 8));
    let broken = hnroot_seal {
        kind: HNROOT_SEAL_BROKEN,
        problem,
        ..s
    };
    assert!(verdict_text(&image, &broken, 0).starts_with("not bootable (seal-kernel-mismatch)"));

    // Only the other key: unknown key, not bootable.
    let s = judge(&image, &std::fs::read(&other).unwrap());
    assert_eq!((s.kind, s.problem), (HNROOT_SEAL_BROKEN, 4));
    assert!(verdict_text(&image, &s, 0).starts_with("not bootable (seal-unknown-key)"));

    // One byte of the manifest changed: the signature fails.
    let mut tampered = image.clone();
    let at = tampered.len() - SEAL_BLOCK_LEN + 16 + 20;
    tampered[at] ^= 1;
    let s = judge(&tampered, &keys);
    assert_eq!((s.kind, s.problem), (HNROOT_SEAL_BROKEN, 5));

    // The same filesystem without its tree and seal: unsealed; bootable unless required.
    let plain = &image[..8 << 20];
    let mut p = probe(plain);
    let mut out = hnroot_seal::default();
    let block = &plain[plain.len() - SEAL_BLOCK_LEN..];
    unsafe {
        hnroot_seal_judge(
            &mut p,
            plain.len() as u64,
            block.as_ptr(),
            keys.as_ptr(),
            keys.len(),
            &mut out,
        )
    };
    assert_eq!(out.kind, HNROOT_SEAL_UNSEALED);
    assert!(verdict_text(plain, &out, 0).starts_with("ext4 UUID="));
    assert!(verdict_text(plain, &out, 1).starts_with("not bootable (unsealed)"));

    // A key list with a line that is no key: the loader was assembled wrong; nothing judged.
    let mut p = probe(&image);
    let junk = b"untrusted comment: x\nnot a key\n";
    let r = unsafe {
        hnroot_seal_judge(
            &mut p,
            image.len() as u64,
            block.as_ptr(),
            junk.as_ptr(),
            junk.len(),
            &mut out,
        )
    };
    assert_eq!(r, hnroot_result::HNROOT_RESULT_INVALID_ARGUMENT);
}
