//! hnroot's own initramfs: `hnroot-init` (static) as `/init`; the kernel modules the boot
//! needs for one kernel under `/lib/modules/<release>/` with a `modules.dep` limited to them and
//! the kernel's `modules.builtin`; `/etc/hnroot/modules` naming the modules to load (softdep
//! providers such as `crc32c_generic` included, since hnroot-init only follows `modules.dep`);
//! optionally a static busybox for the emergency shell at `/bin/sh`. The archive is written in
//! memory (rootless: `/dev/console` is a header, not a mknod) and compressed with zstd or gzip.
//! `hnroot image build` makes an image's `/boot/initramfs` with it, and the system tests their
//! boots.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::cpio;
use crate::modules::{self, ModuleSet, ModulesDir};

/// A static busybox: its bytes and the applets to link to it.
#[derive(Debug, Clone)]
pub struct Busybox {
    /// The binary.
    pub binary: Vec<u8>,
    /// Applet names (`sh`, `ls`, ...).
    pub applets: Vec<String>,
}

/// Inside the initramfs: the names of the modules hnroot-init loads, one per line.
pub const MODULE_LIST: &str = "etc/hnroot/modules";
/// Directories hnroot-init mounts on or creates things in.
const DIRS: &[&str] = &[
    "dev",
    "proc",
    "sys",
    "run",
    "hostpart",
    "newroot",
    "etc",
    "etc/hnroot",
];
/// zstd level: the archive is built once and read by GRUB through a loop device at every boot.
const ZSTD_LEVEL: &str = "-19";

/// How the cpio archive is compressed (the Debian kernel unpacks both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compress {
    /// `zstd -19`: what the tests use.
    Zstd,
    /// `gzip -9`.
    Gzip,
}

/// What goes into an initramfs.
#[derive(Debug, Clone)]
pub struct Spec {
    /// `/init`: the stripped static hnroot-init.
    pub init: PathBuf,
    /// The kernel's `lib/modules/<release>`, or `None` for an archive without modules.
    pub modules_dir: Option<PathBuf>,
    /// The tree or image `modules_dir` lies in (then `modules_dir` is relative to it, and links
    /// in it resolve inside it); `None`: `modules_dir` is a directory of its own.
    pub modules_root: Option<PathBuf>,
    /// Modules (or aliases) wanted; their dependencies and `pre:` softdeps are added.
    pub wanted: Vec<String>,
    /// A static busybox as `/bin/sh` with its applets (the emergency shell), if wanted.
    pub busybox: Option<Busybox>,
    /// How the archive is compressed.
    pub compress: Compress,
}

/// An initramfs that was written.
#[derive(Debug, Clone)]
pub struct Built {
    /// The compressed archive.
    pub path: PathBuf,
    /// Size of the cpio before compression (0 when taken from the cache unmeasured).
    pub cpio_bytes: u64,
    /// Size of the compressed file.
    pub compressed_bytes: u64,
    /// Size of `/init`.
    pub init_bytes: u64,
    /// `.ko` files inside, in load order (relative to `lib/modules/<release>`).
    pub modules: Vec<String>,
    /// Wanted modules that are built into the kernel.
    pub builtin: Vec<String>,
}

/// The release (`uname -r`) a `lib/modules/<release>` directory is for: its name.
pub fn release_of(modules_dir: &Path) -> Result<String> {
    let name = modules_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.is_empty() || !modules_dir.join("modules.dep").is_file() {
        bail!(
            "{} is not a lib/modules/<release> directory: looked for modules.dep in it \
             (run depmod for that kernel first)",
            modules_dir.display()
        );
    }
    Ok(name)
}

/// Build the initramfs described by `spec` at `out` (through a new file beside it and a
/// rename).
pub fn build(spec: &Spec, out: &Path) -> Result<Built> {
    let (compressed, mut built) = archive(spec)?;
    write_atomic(out, &compressed)?;
    built.path = out.to_path_buf();
    Ok(built)
}

/// The initramfs described by `spec`, compressed, and what is in it (`path` empty: it is not
/// written anywhere yet).
pub fn archive(spec: &Spec) -> Result<(Vec<u8>, Built)> {
    let init = fs::read(&spec.init)
        .with_context(|| format!("cannot read /init {}", spec.init.display()))?;
    let mut a = cpio::Archive::new();
    for dir in DIRS {
        a.dir(dir, 0o755)?;
    }
    // The kernel opens /dev/console for PID 1 before devtmpfs is mounted.
    a.char_dev("dev/console", 0o600, 5, 1)?;
    a.char_dev("dev/null", 0o666, 1, 3)?;
    a.file("init", 0o755, &init)?;
    if let Some(bb) = &spec.busybox {
        a.dir("bin", 0o755)?;
        a.file("bin/busybox", 0o755, &bb.binary)?;
        for applet in &bb.applets {
            a.symlink(&format!("bin/{applet}"), "busybox")?;
        }
    }
    let mut set = ModuleSet::default();
    if let Some(dir) = &spec.modules_dir {
        let (modules, release) = match &spec.modules_root {
            None => (ModulesDir::at(dir)?, release_of(dir)?),
            Some(root) => {
                let rel = dir.to_string_lossy();
                let m = ModulesDir::in_root(root, &rel)?;
                let release = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if release.is_empty() || !m.is_file("modules.dep") {
                    bail!(
                        "{} is not a lib/modules/<release> directory: looked for modules.dep in \
                         it (run depmod for that kernel first)",
                        m.shown("").display()
                    );
                }
                (m, release)
            }
        };
        let wanted: Vec<&str> = spec.wanted.iter().map(String::as_str).collect();
        set = modules::modules_in_dir(&modules, &release, &wanted)?;
        add_modules(&mut a, &modules, &release, &spec.wanted, &set)?;
    }
    let cpio = a.finish()?;
    let compressed = compress(&cpio, spec.compress)?;
    let built = Built {
        path: PathBuf::new(),
        cpio_bytes: cpio.len() as u64,
        compressed_bytes: compressed.len() as u64,
        init_bytes: init.len() as u64,
        modules: set.load_order,
        builtin: set.builtin,
    };
    Ok((compressed, built))
}

/// `lib/modules/<release>/`: the `.ko` files of `set`, `modules.dep` lines for exactly them,
/// the kernel's `modules.builtin`, and `/etc/hnroot/modules`: the wanted modules and the ones
/// only a softdep pulls in (hnroot-init follows `modules.dep` itself, not softdeps), in load
/// order. Hard dependencies are left to hnroot-init, so a driver it loads only when needed
/// (btrfs for a btrfs hostpart) brings its dependencies (raid6_pq, xor) only then.
fn add_modules(
    a: &mut cpio::Archive,
    dir: &ModulesDir,
    release: &str,
    wanted: &[String],
    set: &ModuleSet,
) -> Result<()> {
    let base = format!("lib/modules/{release}");
    a.dir("lib", 0o755)?;
    a.dir("lib/modules", 0o755)?;
    a.dir(&base, 0o755)?;
    let mut made = BTreeSet::new();
    for ko in &set.load_order {
        let parts: Vec<&str> = ko.split('/').collect();
        for depth in 1..parts.len() {
            let sub = format!("{base}/{}", parts[..depth].join("/"));
            if made.insert(sub.clone()) {
                a.dir(&sub, 0o755)?;
            }
        }
        let data = dir.read(ko)?;
        a.file(&format!("{base}/{ko}"), 0o644, &data)?;
    }
    let included: BTreeSet<&str> = set.load_order.iter().map(String::as_str).collect();
    let dep_path = dir.shown("modules.dep");
    let dep = dir.read_text("modules.dep")?;
    let mut kept = String::new();
    for line in dep.lines() {
        if let Some((ko, _)) = line.split_once(':') {
            if included.contains(ko.trim()) {
                kept.push_str(line);
                kept.push('\n');
            }
        }
    }
    if kept.lines().count() != included.len() {
        bail!(
            "{} lists {} of the {} modules resolved for the initramfs",
            dep_path.display(),
            kept.lines().count(),
            included.len()
        );
    }
    a.file(&format!("{base}/modules.dep"), 0o644, kept.as_bytes())?;
    let builtin = dir.read("modules.builtin")?;
    a.file(&format!("{base}/modules.builtin"), 0o644, &builtin)?;
    // Built-in modules are named so the boot log says they are present; built-in *aliases*
    // (`sha256` for sha256_generic) are left out: hnroot-init knows modules, not aliases.
    let builtin_names: BTreeSet<String> = String::from_utf8_lossy(&builtin)
        .lines()
        .map(modules::ko_module_name)
        .collect();
    // What the wanted modules reach through modules.dep alone; the rest came by softdep.
    let hard: std::collections::BTreeMap<&str, Vec<&str>> = kept
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(ko, deps)| (ko.trim(), deps.split_whitespace().collect()))
        .collect();
    let wanted_names: BTreeSet<String> =
        wanted.iter().map(|w| modules::ko_module_name(w)).collect();
    let mut reached: BTreeSet<&str> = BTreeSet::new();
    let mut todo: Vec<&str> = set
        .load_order
        .iter()
        .map(String::as_str)
        .filter(|ko| wanted_names.contains(&modules::ko_module_name(ko)))
        .collect();
    while let Some(ko) = todo.pop() {
        if reached.insert(ko) {
            todo.extend(hard.get(ko).into_iter().flatten().copied());
        }
    }
    let mut list = String::from(
        "# Modules hnroot-init loads at boot, in load order, their modules.dep dependencies \
         implied (written by hnroot's initramfs builder).\n",
    );
    let names = set
        .builtin
        .iter()
        .filter(|name| builtin_names.contains(*name))
        .cloned()
        .chain(
            set.load_order
                .iter()
                .filter(|ko| {
                    wanted_names.contains(&modules::ko_module_name(ko))
                        || !reached.contains(ko.as_str())
                })
                .map(|ko| modules::ko_module_name(ko)),
        );
    for name in names {
        list.push_str(&name);
        list.push('\n');
    }
    a.file(MODULE_LIST, 0o644, list.as_bytes())?;
    Ok(())
}

/// Compress with the zstd or gzip CLI (one frame / member, which every kernel unpacks).
pub fn compress(data: &[u8], how: Compress) -> Result<Vec<u8>> {
    let argv: &[&str] = match how {
        Compress::Zstd => &["zstd", "-q", ZSTD_LEVEL, "--stdout", "-"],
        Compress::Gzip => &["gzip", "-9", "-n", "--stdout"],
    };
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {} (cargo xtask deps)", argv[0]))?;
    let mut stdin = child
        .stdin
        .take()
        .with_context(|| format!("{} has no stdin", argv[0]))?;
    // Feed stdin from a thread so a full stdout pipe cannot deadlock us.
    let input = data.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child
        .wait_with_output()
        .with_context(|| format!("waiting for {}", argv[0]))?;
    match feeder.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => bail!("writing to {} failed: {e}", argv[0]),
        Err(_) => bail!("the thread feeding {} panicked", argv[0]),
    }
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// Write `data` to `path` through a new file created exclusively beside it (named after it,
/// never an existing file's name) and a rename.
fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?
        .to_string_lossy()
        .into_owned();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".partial")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a new file beside {}", path.display()))?;
    tmp.write_all(data)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", tmp.path().display()))?;
    tmp.persist(path)
        .map_err(|e| anyhow::anyhow!("cannot rename to {}: {}", path.display(), e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_is_the_directory_name_and_needs_modules_dep() {
        let dir = tempfile::tempdir().unwrap();
        let rel = dir.path().join("6.1.0-test");
        fs::create_dir(&rel).unwrap();
        let err = release_of(&rel).unwrap_err().to_string();
        assert!(err.contains("looked for modules.dep"), "{err}");
        fs::write(rel.join("modules.dep"), "").unwrap();
        assert_eq!(release_of(&rel).unwrap(), "6.1.0-test");
    }

    #[test]
    fn archive_holds_init_modules_and_a_filtered_modules_dep() {
        if Command::new("zstd").arg("-V").output().is_err()
            || Command::new("cpio").arg("--version").output().is_err()
        {
            eprintln!("skipping: zstd or cpio missing");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let rel = dir.path().join("6.1.0-t");
        fs::create_dir_all(rel.join("kernel/fs")).unwrap();
        for (name, body) in [
            (
                "modules.dep",
                "kernel/fs/a.ko: kernel/fs/b.ko\nkernel/fs/b.ko:\nkernel/fs/e.ko:\n\
                 kernel/fs/unused.ko:\n",
            ),
            ("modules.softdep", "softdep a pre: c d-alias e\n"),
            ("modules.alias", ""),
            (
                "modules.builtin",
                "kernel/fs/c.ko\nkernel/fs/d_generic.ko\n",
            ),
            ("modules.builtin.modinfo", "d_generic.alias=d-alias\0"),
            ("kernel/fs/a.ko", "AAAA"),
            ("kernel/fs/b.ko", "BB"),
            ("kernel/fs/e.ko", "E"),
            ("kernel/fs/unused.ko", "U"),
        ] {
            fs::write(rel.join(name), body).unwrap();
        }
        let init = dir.path().join("init");
        fs::write(&init, b"\x7fELF-not-really").unwrap();
        let out = dir.path().join("initramfs.zst");
        let built = build(
            &Spec {
                init,
                modules_dir: Some(rel),
                modules_root: None,
                wanted: vec!["a".into()],
                busybox: None,
                compress: Compress::Zstd,
            },
            &out,
        )
        .unwrap();
        assert_eq!(
            built.modules,
            ["kernel/fs/e.ko", "kernel/fs/b.ko", "kernel/fs/a.ko"]
        );
        assert_eq!(built.builtin, ["c", "d-alias"]);
        let cpio = Command::new("zstd")
            .args(["-d", "-q", "--stdout"])
            .arg(&out)
            .output()
            .unwrap()
            .stdout;
        let extract = dir.path().join("x");
        fs::create_dir(&extract).unwrap();
        let mut child = Command::new("cpio")
            .args(["-i", "-d", "--quiet", "--no-absolute-filenames"])
            .current_dir(&extract)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&cpio).unwrap();
        assert!(child.wait().unwrap().success());
        let base = extract.join("lib/modules/6.1.0-t");
        assert_eq!(
            fs::read_to_string(base.join("modules.dep")).unwrap(),
            "kernel/fs/a.ko: kernel/fs/b.ko\nkernel/fs/b.ko:\nkernel/fs/e.ko:\n"
        );
        assert!(base.join("kernel/fs/a.ko").is_file());
        assert!(!base.join("kernel/fs/unused.ko").exists());
        let list = fs::read_to_string(extract.join(MODULE_LIST)).unwrap();
        let names: Vec<&str> = list.lines().filter(|l| !l.starts_with('#')).collect();
        // b comes with a through modules.dep; c (built in) and e only through a softdep.
        assert_eq!(names, ["c", "e", "a"]);
        assert_eq!(
            fs::read(extract.join("init")).unwrap(),
            b"\x7fELF-not-really"
        );
        for d in DIRS {
            assert!(extract.join(d).is_dir(), "{d}");
        }
    }
}
