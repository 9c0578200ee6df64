//! criterion benchmarks of the decision core and its C ABI: what GRUB and the initramfs pay per
//! boot for deciding, planning and the boot-state codec.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use hnroot_benches::{trial_block, update_observation, STAGED};
use hnroot_core::bootstate::{Block, BootState};
use hnroot_core::cmdline;
use hnroot_core::decide::{decide, Config};
use hnroot_core::name::ImageName;
use hnroot_core::plan::{plan, Booted};
use hnroot_ffi::{
    hnroot_args, hnroot_boot_parts, hnroot_buffer, hnroot_decide, hnroot_decision,
    hnroot_decision_text, hnroot_image_seen, hnroot_observation, hnroot_uuid, HNROOT_ARGS_ABSENT,
    HNROOT_ARGS_READ, HNROOT_CMDLINE_LEN, HNROOT_STATE_FILE_READ, HNROOT_TEXT_LEN,
};

fn core(c: &mut Criterion) {
    let obs = update_observation();
    let config = Config::default();
    c.bench_function("decide (update)", |b| {
        b.iter(|| decide(black_box(&obs), black_box(&config)))
    });
    let booted = Some(Booted {
        name: ImageName::New,
        uuid: STAGED,
    });
    c.bench_function("plan (update)", |b| {
        b.iter(|| plan(black_box(&obs), black_box(booted)))
    });
    let block = trial_block();
    c.bench_function("boot state decode", |b| {
        b.iter(|| Block::decode(black_box(&block)).map(|b| b.seen()))
    });
    let state = BootState::committed(STAGED);
    c.bench_function("boot state encode", |b| {
        b.iter(|| {
            let mut bytes = block;
            Block::encode_into(black_box(&mut bytes), black_box(&state))
        })
    });
    let line = "BOOT_IMAGE=(loop)/boot/kernel console=ttyS0 hnroot.image=hn-root-new.img \
                hnroot.uuid=b2b2b2b2-b2b2-b2b2-b2b2-b2b2b2b2b2b2 \
                hnroot.hostpart=PARTUUID=0fc63daf-8483-4772-8e79-3d69d8477de4 panic=10 quiet";
    c.bench_function("command line parse", |b| {
        b.iter(|| cmdline::parse(black_box(line)))
    });
}

fn ffi(c: &mut Criterion) {
    let mut obs = hnroot_observation::default();
    let seen = |u: hnroot_core::uuid::FsUuid| hnroot_image_seen {
        kind: hnroot_ffi::HNROOT_IMAGE_BOOTABLE,
        uuid: hnroot_uuid::from_core(Some(u)),
        ..hnroot_image_seen::default()
    };
    obs.images[0] = seen(hnroot_benches::CURRENT);
    obs.images[2] = seen(STAGED);
    let block = trial_block();
    let defaults = b"console=ttyS0 panic=10";
    let none = hnroot_args {
        kind: HNROOT_ARGS_ABSENT,
        bytes: std::ptr::null(),
        len: 0,
    };
    let parts = hnroot_boot_parts {
        hostpart_partuuid: c"0fc63daf-8483-4772-8e79-3d69d8477de4".as_ptr().cast(),
        esp_partuuid: std::ptr::null(),
        defaults: hnroot_args {
            kind: HNROOT_ARGS_READ,
            bytes: defaults.as_ptr(),
            len: defaults.len(),
        },
        fleet_defaults: none,
        host: none,
        images: [none; 5],
    };
    c.bench_function("ffi hnroot_decide (update, both command lines)", |b| {
        b.iter(|| {
            let mut out = hnroot_decision::default();
            let (mut msg, mut record) = ([0u8; HNROOT_TEXT_LEN], [0u8; HNROOT_TEXT_LEN]);
            let (mut line, mut fallback) = ([0u8; HNROOT_CMDLINE_LEN], [0u8; HNROOT_CMDLINE_LEN]);
            let buf = |b: &mut [u8]| hnroot_buffer {
                bytes: b.as_mut_ptr(),
                len: b.len(),
            };
            let text = hnroot_decision_text {
                message: buf(&mut msg),
                record: buf(&mut record),
                cmdline: buf(&mut line),
                fallback_cmdline: buf(&mut fallback),
            };
            // SAFETY: every pointer is valid for the lengths passed.
            unsafe {
                hnroot_decide(
                    &obs,
                    HNROOT_STATE_FILE_READ,
                    block.as_ptr(),
                    block.len(),
                    &parts,
                    &mut out,
                    &text,
                )
            }
        })
    });
}

/// An ext4 image made by mkfs.ext4, in memory.
fn ext4_image() -> Vec<u8> {
    let path = std::env::temp_dir().join(format!("hnroot-bench-{}.ext4", std::process::id()));
    let status = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "hostpart"])
        .arg(&path)
        .arg("16M")
        .status()
        .expect("mkfs.ext4 runs");
    assert!(status.success(), "mkfs.ext4 failed");
    let bytes = std::fs::read(&path).expect("read the image");
    let _ = std::fs::remove_file(&path);
    bytes
}

fn ffi_probe(c: &mut Criterion) {
    let image = ext4_image();
    c.bench_function("ffi hnroot_fs_probe (ext4, from memory)", |b| {
        b.iter(|| {
            let mut p = hnroot_ffi::hnroot_fs_probe {
                magic: 0,
                opaque: [0; 128],
            };
            let (mut off, mut len) = (0u64, 0u32);
            // SAFETY: every pointer is valid for the lengths passed.
            unsafe {
                hnroot_ffi::hnroot_fs_probe_init(&mut p, image.len() as u64);
                while hnroot_ffi::hnroot_fs_probe_step(&mut p, &mut off, &mut len)
                    == hnroot_ffi::hnroot_result::HNROOT_RESULT_NEED_READ
                {
                    let start = (off as usize).min(image.len());
                    let end = (start + len as usize).min(image.len());
                    hnroot_ffi::hnroot_fs_probe_feed(
                        &mut p,
                        image[start..end].as_ptr(),
                        end - start,
                    );
                }
                let mut info: hnroot_ffi::hnroot_fs_info = std::mem::zeroed();
                hnroot_ffi::hnroot_fs_probe_result(&mut p, &mut info);
                black_box(info.outcome)
            }
        })
    });
}

criterion_group!(benches, core, ffi, ffi_probe);
criterion_main!(benches);
