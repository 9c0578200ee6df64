//! The kernel command line GRUB writes and the one the initramfs reads are the same language:
//! whatever [`KernelArgs`] encodes, [`parse`] reads back exactly, without a complaint, also
//! with other parameters around it and whatever the order of the words.

use hnroot_core::cmdline::{parse, DeviceSpec, KernelArgs, MAX_KERNEL_ARGS_LEN};
use hnroot_core::name::ImageName;
use hnroot_core::plan::Booted;
use hnroot_core::uuid::{FsUuid, PartUuid};
use proptest::prelude::*;

fn fs_uuid() -> impl Strategy<Value = FsUuid> {
    prop_oneof![
        any::<[u8; 16]>()
            .prop_filter("blkid reports no nil UUID", |b| b.iter().any(|&x| x != 0))
            .prop_map(FsUuid::Uuid),
        any::<[u8; 4]>().prop_map(FsUuid::VolumeId),
    ]
}

fn part_uuid() -> impl Strategy<Value = PartUuid> {
    prop_oneof![
        any::<[u8; 16]>().prop_map(PartUuid::Gpt),
        (any::<u32>(), 1u8..=255).prop_map(|(signature, partition)| PartUuid::Mbr {
            signature,
            partition
        }),
    ]
}

fn kernel_args() -> impl Strategy<Value = KernelArgs> {
    (
        prop::sample::select(ImageName::ALL.to_vec()),
        fs_uuid(),
        prop::option::of(part_uuid()),
        prop::option::of(part_uuid()),
        1u8..=100,
        prop::sample::select(hnroot_core::ReasonCode::ALL[1..].to_vec()),
        prop::sample::select(hnroot_core::cmdline::BootVia::ALL.to_vec()),
        prop::option::of(any::<[u8; 32]>()),
    )
        .prop_map(
            |(name, uuid, hostpart, esp, tries, reason, via, root_hash)| KernelArgs {
                booted: Booted { name, uuid },
                hostpart,
                esp,
                tries,
                reason,
                via,
                root_hash,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn what_grub_writes_the_initramfs_reads(args in kernel_args(), before in "[a-z]{1,8}=[0-9]{1,3}", shuffle in any::<bool>()) {
        let text = args.to_string();
        prop_assert!(text.len() <= MAX_KERNEL_ARGS_LEN, "{}", text);
        prop_assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.= ".contains(&b)), "{}", text);
        let mut words: Vec<&str> = text.split(' ').collect();
        if shuffle {
            words.reverse();
        }
        let line = format!("BOOT_IMAGE=(loop)/boot/kernel {before} {} console=ttyS0 panic=10\n", words.join(" "));
        let p = parse(&line);
        prop_assert!(p.errors.is_empty(), "{:?} in {}", p.errors, line);
        prop_assert_eq!(p.booted, Some(args.booted));
        prop_assert_eq!(p.hostpart, args.hostpart.map(DeviceSpec::PartUuid));
        prop_assert_eq!(p.esp, args.esp.map(DeviceSpec::PartUuid));
        prop_assert_eq!(p.tries, Some(args.tries));
        prop_assert_eq!(p.reason, Some(args.reason));
        // The loader writes no hnroot.via=; a kexec says so.
        let via = (args.via == hnroot_core::cmdline::BootVia::Kexec).then_some(args.via);
        prop_assert_eq!(p.via, via);
        prop_assert_eq!(p.root_hash, args.root_hash);
    }
}
