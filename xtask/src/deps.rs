//! What a Debian 12 machine needs for hnroot's build, tests, benchmarks and demo, in one table:
//! every program any of them starts, and the Debian package it comes from (or rustup). `cargo
//! xtask deps` installs the packages of the table; `cargo xtask deps --check` then names any
//! program of the table that is still not on `PATH`. A unit test scans the repository for the
//! programs its code starts (`Command::new("...")` and the helpers that wrap it) and fails on
//! any the table lacks, so a fresh machine never stops on a missing tool.
//!
//! Idempotent and quick when everything is already there.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Result};

use hnroot_testkit::buildenv;

/// Where a program comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A Debian package.
    Debian(&'static str),
    /// The Rust toolchain (rustup), which the README's base already has.
    Rustup,
}

/// Every program the build, the tests, the benchmarks and the demo start on the host, and where
/// it comes from. Programs that run inside a guest or a chroot (busybox applets, mkinitramfs in
/// the debootstrapped tree) are the guest's business, not the host's.
pub const PROGRAMS: &[(&str, Source)] = &[
    ("ansible", Source::Debian("ansible-core")),
    ("ansible-galaxy", Source::Debian("ansible-core")),
    ("ansible-lint", Source::Debian("ansible-lint")),
    // The collection's modules and playbooks need the collections Debian's `ansible` ships
    // (ansible.builtin is in ansible-core); Ansible 7.7, the fleet suite's driver.
    ("ansible-playbook", Source::Debian("ansible")),
    ("apt-cache", Source::Debian("apt")),
    ("apt-get", Source::Debian("apt")),
    ("apt-mark", Source::Debian("apt")),
    ("as", Source::Debian("binutils")),
    // GRUB's build from Debian's source regenerates its build system as Debian's does
    // (`./autogen.sh`: autoreconf, automake, autopoint) and its module list needs GNU awk.
    ("automake", Source::Debian("automake")),
    ("autopoint", Source::Debian("autopoint")),
    ("autoreconf", Source::Debian("autoconf")),
    ("bash", Source::Debian("bash")),
    ("bison", Source::Debian("bison")),
    ("blkid", Source::Debian("util-linux")),
    ("btrfs", Source::Debian("btrfs-progs")),
    ("busybox", Source::Debian("busybox-static")),
    ("cargo", Source::Rustup),
    ("chroot", Source::Debian("coreutils")),
    ("cp", Source::Debian("coreutils")),
    ("cpio", Source::Debian("cpio")),
    ("dd", Source::Debian("coreutils")),
    ("debootstrap", Source::Debian("debootstrap")),
    ("debugfs", Source::Debian("e2fsprogs")),
    ("depmod", Source::Debian("kmod")),
    ("dpkg", Source::Debian("dpkg")),
    ("dpkg-deb", Source::Debian("dpkg")),
    ("dpkg-query", Source::Debian("dpkg")),
    ("dpkg-source", Source::Debian("dpkg-dev")),
    ("du", Source::Debian("coreutils")),
    ("dumpe2fs", Source::Debian("e2fsprogs")),
    ("e2fsck", Source::Debian("e2fsprogs")),
    ("e2label", Source::Debian("e2fsprogs")),
    ("efibootmgr", Source::Debian("efibootmgr")),
    ("fatlabel", Source::Debian("dosfstools")),
    ("flex", Source::Debian("flex")),
    // NFS-Ganesha: the fleet suite's /warehouse (NFSv4 in user space; the VFS backend below).
    ("ganesha.nfsd", Source::Debian("nfs-ganesha")),
    ("gawk", Source::Debian("gawk")),
    ("gcc", Source::Debian("gcc")),
    ("gettextize", Source::Debian("gettext")),
    ("git", Source::Debian("git")),
    ("hyperfine", Source::Debian("hyperfine")),
    ("id", Source::Debian("coreutils")),
    ("ld", Source::Debian("binutils")),
    ("losetup", Source::Debian("mount")),
    ("lsinitramfs", Source::Debian("initramfs-tools-core")),
    ("make", Source::Debian("make")),
    ("mcopy", Source::Debian("mtools")),
    ("minfo", Source::Debian("mtools")),
    ("minisign", Source::Debian("minisign")),
    ("mkfifo", Source::Debian("coreutils")),
    ("mkfs.btrfs", Source::Debian("btrfs-progs")),
    ("mkfs.ext2", Source::Debian("e2fsprogs")),
    ("mkfs.ext3", Source::Debian("e2fsprogs")),
    ("mkfs.ext4", Source::Debian("e2fsprogs")),
    ("mkfs.vfat", Source::Debian("dosfstools")),
    ("mkfs.xfs", Source::Debian("xfsprogs")),
    ("mmd", Source::Debian("mtools")),
    ("mmdebstrap", Source::Debian("mmdebstrap")),
    ("mount", Source::Debian("mount")),
    ("mountpoint", Source::Debian("util-linux")),
    // The C compiler cc-rs uses for the musl target (ring, under the static `hnroot` CLI in
    // the test images); testkit's static builds name it in CC_x86_64_unknown_linux_musl.
    ("musl-gcc", Source::Debian("musl-tools")),
    ("nginx", Source::Debian("nginx")),
    ("objcopy", Source::Debian("binutils")),
    // The Secure Boot tests' operator key and certificate.
    ("openssl", Source::Debian("openssl")),
    ("partx", Source::Debian("util-linux")),
    // pkg.m4 for GRUB's autogen.sh (its configure.ac uses PKG_CHECK_MODULES): without it
    // autoconf stops at "possibly undefined macro" (found by fresh-check on Debian 13 minbase).
    ("pkg-config", Source::Debian("pkgconf")),
    ("promtool", Source::Debian("prometheus")),
    ("python3", Source::Debian("python3")),
    ("qemu-system-x86_64", Source::Debian("qemu-system-x86")),
    ("rustup", Source::Rustup),
    // Secure Boot: the loader signed (`hnroot install --sign-key`) and checked.
    ("sbsign", Source::Debian("sbsigntool")),
    ("sbverify", Source::Debian("sbsigntool")),
    ("sfdisk", Source::Debian("fdisk")),
    ("sgdisk", Source::Debian("gdisk")),
    ("sh", Source::Debian("dash")),
    ("sha256sum", Source::Debian("coreutils")),
    ("ssh", Source::Debian("openssh-client")),
    ("ssh-keygen", Source::Debian("openssh-client")),
    ("strip", Source::Debian("binutils")),
    ("sync", Source::Debian("coreutils")),
    ("systemctl", Source::Debian("systemd")),
    // The version comparison's reference (hnroot-core/tests/version_systemd.rs).
    ("systemd-analyze", Source::Debian("systemd")),
    ("tar", Source::Debian("tar")),
    ("timeout", Source::Debian("coreutils")),
    ("touch", Source::Debian("coreutils")),
    ("truncate", Source::Debian("coreutils")),
    ("tune2fs", Source::Debian("e2fsprogs")),
    ("umount", Source::Debian("mount")),
    ("unmkinitramfs", Source::Debian("initramfs-tools-core")),
    ("unshare", Source::Debian("util-linux")),
    // dm-verity hash trees for sealed images (`hnroot image seal`, the seal tests).
    ("veritysetup", Source::Debian("cryptsetup-bin")),
    ("wipefs", Source::Debian("util-linux")),
    ("xfs_admin", Source::Debian("xfsprogs")),
    ("xfs_db", Source::Debian("xfsprogs")),
    ("xfs_repair", Source::Debian("xfsprogs")),
    ("xz", Source::Debian("xz-utils")),
    ("zstd", Source::Debian("zstd")),
];

/// Packages that provide files rather than programs, with the file that proves each is there.
pub const FILES: &[(&str, &str)] = &[
    ("/usr/share/OVMF/OVMF_CODE_4M.fd", "ovmf"),
    ("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd", "ovmf"),
    // The virtual environment `virt-fw-vars` (PyPI's virt-firmware) is installed into, to
    // enroll the Secure Boot tests' keys into OVMF's variables.
    ("/usr/share/doc/python3-venv/copyright", "python3-venv"),
    // klibc's shell for the initramfs-tools fake-root runs (the `sh` of an initramfs built
    // without busybox) and its shared library.
    ("/usr/lib/klibc/bin/sh", "klibc-utils"),
    // libclang for bindgen (hnroot-ffi/ctest reads hnroot.h back into Rust); the package is
    // Debian's pointer to its current clang.
    ("/usr/share/doc/libclang-dev/copyright", "libclang-dev"),
    // NFS-Ganesha's VFS backend, which exports a directory of this machine.
    (
        "/usr/lib/x86_64-linux-gnu/ganesha/libfsalvfs.so",
        "nfs-ganesha-vfs",
    ),
];

/// Rust targets needed besides the host's.
pub const RUST_TARGETS: &[&str] = &["x86_64-unknown-none", "x86_64-unknown-linux-musl"];

/// Every Debian package of [`PROGRAMS`] and [`FILES`], sorted, without repeats.
pub fn packages() -> Vec<&'static str> {
    let mut out: Vec<&str> = PROGRAMS
        .iter()
        .filter_map(|(_, s)| match s {
            Source::Debian(p) => Some(*p),
            Source::Rustup => None,
        })
        .chain(FILES.iter().map(|(_, p)| *p))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The package a program comes from, if the table knows the program.
#[cfg(test)]
pub fn source_of(program: &str) -> Option<Source> {
    PROGRAMS
        .iter()
        .find(|(name, _)| *name == program)
        .map(|(_, s)| *s)
}

/// Install missing packages and Rust targets.
pub fn ensure() -> Result<()> {
    let wanted = packages();
    let missing: Vec<&str> = wanted.iter().copied().filter(|p| !installed(p)).collect();
    if !missing.is_empty() {
        if !buildenv::is_root() {
            bail!(
                "missing Debian packages: {} (run as root, or: apt-get install {})",
                missing.join(" "),
                missing.join(" ")
            );
        }
        buildenv::step("apt-get update", &["apt-get", "update", "-q"])?;
        let mut argv = vec!["apt-get", "install", "-y", "-q", "--no-install-recommends"];
        argv.extend(&missing);
        buildenv::step("install Debian packages", &argv)?;
    }
    let have = buildenv::output(&["rustup", "target", "list", "--installed"])?;
    for target in RUST_TARGETS {
        if !have.lines().any(|l| l.trim() == *target) {
            buildenv::step("add Rust target", &["rustup", "target", "add", target])?;
        }
    }
    Ok(())
}

/// `cargo xtask deps --check`: install, then name every program and file of the table that is
/// still missing.
pub fn check() -> Result<()> {
    ensure()?;
    let path = search_path();
    let mut missing = Vec::new();
    for (program, source) in PROGRAMS {
        if find_program(program, &path).is_none() {
            let from = match source {
                Source::Debian(p) => format!("Debian package {p}"),
                Source::Rustup => "the Rust toolchain (rustup)".to_string(),
            };
            missing.push(format!("{program} (from {from})"));
        }
    }
    for (file, package) in FILES {
        if !Path::new(file).exists() {
            missing.push(format!("{file} (from Debian package {package})"));
        }
    }
    if !missing.is_empty() {
        bail!(
            "deps --check: after installing, {} of {} programs and files are still missing: {}",
            missing.len(),
            PROGRAMS.len() + FILES.len(),
            missing.join(", ")
        );
    }
    println!(
        "deps --check: all {} programs on PATH and {} files present; {} Debian packages, Rust \
         targets {}",
        PROGRAMS.len(),
        FILES.len(),
        packages().len(),
        RUST_TARGETS.join(", ")
    );
    Ok(())
}

/// `PATH`, plus the sbin directories a root shell has (some programs live there).
fn search_path() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for extra in ["/usr/local/sbin", "/usr/sbin", "/sbin"] {
        if !dirs.iter().any(|d| d == Path::new(extra)) {
            dirs.push(PathBuf::from(extra));
        }
    }
    dirs
}

fn find_program(program: &str, path: &[PathBuf]) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    path.iter().map(|d| d.join(program)).find(|p| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;
    use std::collections::BTreeMap;

    /// Files under the workspace that hold code which starts programs: Rust sources and the
    /// benchmark scripts. Build output and fuzzing state are left out.
    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !matches!(
                    name.as_str(),
                    "target" | ".git" | "corpus" | "artifacts" | "node_modules"
                ) {
                    sources(&path, out);
                }
            } else if name.ends_with(".rs") || name.ends_with(".sh") {
                out.push(path);
            }
        }
        out.sort();
    }

    /// Where code starts a program whose name is not a string literal: the helpers that wrap
    /// `Command::new`. Their callers pass literal names, which the patterns below find; a new
    /// wrapper must be added here and its calling convention to the patterns.
    const WRAPPERS: &[(&str, usize)] = &[
        ("hnroot-cli/tests/probe_find_cli.rs", 2), // tool(cmd, ..), the binary under test
        ("hnroot-cli/tests/image_cli.rs", 2),      // run(&["prog", ..]); the binary under test
        ("hnroot-cli/tests/install_cli.rs", 1),    // run(&["prog", ..])
        ("hnroot-cli/tests/operator_cli.rs", 3),   // the binary under test
        ("hnroot-cli/tests/stage_cli.rs", 2), // the binary under test; mkfs: argv[0] of a literal list
        ("hnroot-cli/tests/support/mod.rs", 2), // the binary under test; Mounted::new(&["mkfs..", ..])
        ("hnroot-cli/tests/sysprep_cli.rs", 1), // run(&["prog", ..])
        ("hnroot-core/tests/probe_props.rs", 1), // tool in a literal list
        ("hnroot-ffi/src/probe.rs", 1),         // run(&["prog", ..])
        ("hnroot-install/src/grub.rs", 1),      // the loader kit's grub-mkimage
        ("hnroot-install/src/initramfs.rs", 1), // compress: argv[0] of a literal list (zstd, gzip)
        ("hnroot-linux/tests/blockdev_find.rs", 1), // run(cmd, ..)
        ("hnroot-linux/tests/support/mod.rs", 1), // run(&["prog", ..])
        ("hnroot-linux/tests/probe_real_tools.rs", 2), // run(cmd, ..), output(cmd, ..)
        ("initramfs/src/after_failure.rs", 1),  // the initramfs's own /bin/sh, in the guest
        ("hnroot-build/src/apt.rs", 1),         // /usr/lib/apt/apt-helper (apt)
        ("initramfs/tests/prepare.rs", 1),      // run(&["prog", ..])
        ("hnroot-build/src/buildenv.rs", 2),    // step(.., &["prog", ..]), output(&["prog", ..])
        ("testkit/src/busybox.rs", 1),          // /bin/busybox (busybox-static)
        ("testkit/src/previous.rs", 1),         // $CARGO, in the previous commit's tree
        ("hnroot-build/src/deb.rs", 1), // `sh -n`/`bash -n` of the dracut module (a literal list)
        ("hnroot-build/src/grubmod.rs", 5), // gcc, objcopy, strip as GRUB's Makefile names them; its verifier
        ("hnroot-build/src/binaries.rs", 1), // $CARGO
        ("hnroot-build/src/relax.rs", 1),   // a test program it just linked
        ("testkit/src/server.rs", 1),       // the hnroot binary under test (Offline::hnroot)
        ("tests/src/bin/bench-root.rs", 3), // the hnroot binary under test (image build, seal; install)
        ("testkit/src/secureboot.rs", 2), // pip and virt-fw-vars in the virtual environment it made
        ("tests/src/bin/distro.rs", 7),   // the hnroot binary under test (also presign, seal)
        ("tests/src/bin/fleet.rs", 4),    // the hnroot binary under test
        ("xtask/src/unittests.rs", 1),    // the test binaries cargo built
        ("tests/src/bin/e2e.rs", 3), // the hnroot binary under test (installed; publish; presign)
    ];

    /// A program started through a literal name: file, line, program.
    type Start = (String, usize, String);

    /// Programs started through literal names, and the count of non-literal starts per file.
    fn started_programs(root: &Path) -> (Vec<Start>, BTreeMap<String, usize>) {
        let literal = Regex::new(r#"Command::new\(\s*"([^"]+)"\s*\)"#).unwrap();
        // Helpers whose first argument is the program: tool("mkfs.ext4", ...).
        let helper = Regex::new(r#"\b(?:tool|run|output)\(\s*"([^"]+)"\s*,"#).unwrap();
        // Helpers that take an argv array: step("name", &["apt-get", ...]), run(&["dd", ...]).
        let argv =
            Regex::new(r#"\b(?:step\(\s*"[^"]*"\s*,\s*|(?:output|run|new)\(\s*)&\[\s*"([^"]+)""#)
                .unwrap();
        // Lists of argv arrays a helper runs in turn: make("x", 8, &[&["mkfs.ext4", ...]]),
        // also with the list on a line of its own.
        let argv_list = Regex::new(r#"(?:^\s*|\bmake\([^;]*)&\[\s*&\[\s*"([^"]+)""#).unwrap();
        let dynamic = Regex::new(r#"Command::new\(\s*[^"\s]"#).unwrap();
        // Benchmark scripts say what they need: for tool in a b c; do command -v ...
        let script = Regex::new(r"for tool in ([^;]+); do").unwrap();
        let mut files = Vec::new();
        sources(root, &mut files);
        let mut found = Vec::new();
        let mut wrappers: BTreeMap<String, usize> = BTreeMap::new();
        for file in files {
            let rel = file
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel == "xtask/src/deps.rs" {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                let mut names: Vec<String> = Vec::new();
                if rel.ends_with(".sh") {
                    if let Some(c) = script.captures(line) {
                        names.extend(c[1].split_whitespace().map(str::to_owned));
                    }
                } else {
                    for re in [&literal, &helper, &argv, &argv_list] {
                        names.extend(re.captures_iter(line).map(|c| c[1].to_owned()));
                    }
                    let dynamic_here = dynamic.find_iter(line).count();
                    if dynamic_here > 0 {
                        *wrappers.entry(rel.clone()).or_default() += dynamic_here;
                    }
                }
                for name in names {
                    // Paths are not looked up on PATH (./configure in GRUB's tree).
                    if !name.starts_with('/') && !name.starts_with("./") {
                        found.push((rel.clone(), n + 1, name));
                    }
                }
            }
        }
        (found, wrappers)
    }

    #[test]
    fn every_program_the_repository_starts_is_in_the_table() {
        let root = buildenv::workspace_root();
        let (found, wrappers) = started_programs(&root);
        assert!(
            found.len() > 50,
            "the scan found only {} program starts: it no longer recognises the code",
            found.len()
        );
        let missing: Vec<String> = found
            .iter()
            .filter(|(_, _, p)| source_of(p).is_none())
            .map(|(f, l, p)| format!("{f}:{l} starts `{p}`"))
            .collect();
        assert!(
            missing.is_empty(),
            "programs started by the repository but missing from xtask/src/deps.rs PROGRAMS \
             (a fresh machine would not have them): {}",
            missing.join("; ")
        );
        let expected: BTreeMap<String, usize> =
            WRAPPERS.iter().map(|(f, n)| (f.to_string(), *n)).collect();
        assert_eq!(
            wrappers, expected,
            "Command::new with a non-literal program: a new wrapper must be listed in WRAPPERS \
             and its callers' convention taught to the scan"
        );
    }

    #[test]
    fn the_scan_recognises_each_calling_convention() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("b")).unwrap();
        std::fs::write(
            dir.path().join("b/x.rs"),
            "Command::new(\"one\")\n step(\"s\", &[\"two\", \"a\"])\n output(&[\"three\"])\n \
             tool(\"four\", &[])\n run(&[\"five\", \"x\"])\n Command::new(\"/bin/sh\")\n \
             make(\"x\", 2, &[&[\"six\", \"IMG\"]])\n let x = Command::new(prog);\n \
             run(\"seven\", &[\"-n\"])\n hnroot(&[&[\"mark-good\"], &loc[..]].concat())\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b/bench.sh"),
            "for tool in eight nine; do command -v \"$tool\"; done\n",
        )
        .unwrap();
        let (found, wrappers) = started_programs(dir.path());
        let names: Vec<&str> = found.iter().map(|(_, _, p)| p.as_str()).collect();
        assert_eq!(
            names,
            ["eight", "nine", "one", "two", "three", "four", "five", "six", "seven"]
        );
        assert_eq!(wrappers.get("b/x.rs"), Some(&1));
    }

    #[test]
    fn the_table_is_sorted_and_has_no_repeats() {
        let names: Vec<&str> = PROGRAMS.iter().map(|(n, _)| *n).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
        assert!(packages().contains(&"kmod"), "depmod needs kmod");
    }
}
