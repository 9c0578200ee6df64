//! Which kernel modules an initramfs needs, from depmod's index of one kernel
//! (`lib/modules/<release>/modules.dep`, `modules.softdep`, `modules.alias`, `modules.builtin`
//! and `modules.builtin.modinfo`): the wanted modules with their dependencies and `pre:`
//! softdeps, dependencies first; built-in modules and aliases need nothing. Every file is read
//! through the file layer ([`ModulesDir`]): in a tree or an image, links resolve inside it,
//! and only regular files of a bounded size are read.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use hnroot_linux::fsat::InRoot;

/// Most bytes of one file of a modules directory read (an index or a `.ko`).
const MAX_MODULE_FILE: usize = 256 << 20;

/// A kernel's `lib/modules/<release>` directory, read through the file layer. Inside a tree or
/// an image ([`ModulesDir::in_root`]) its links resolve inside that root, as the image's
/// kernel will see them, never into this machine's files; a directory of its own
/// ([`ModulesDir::at`]) is the root of its links.
#[derive(Debug)]
pub struct ModulesDir {
    root: InRoot,
    base: String,
}

impl ModulesDir {
    /// The modules directory `dir` (a kernel cache, `/lib/modules/$(uname -r)`).
    pub fn at(dir: &Path) -> Result<ModulesDir> {
        let root = InRoot::open(dir)
            .map_err(|e| anyhow!("cannot open the modules directory {}: {e}", dir.display()))?;
        Ok(ModulesDir {
            root,
            base: String::new(),
        })
    }

    /// The modules directory `rel` (`lib/modules/<release>`) of the tree or image at `root`.
    pub fn in_root(root: &Path, rel: &str) -> Result<ModulesDir> {
        let root =
            InRoot::open(root).map_err(|e| anyhow!("cannot open {}: {e}", root.display()))?;
        Ok(ModulesDir {
            root,
            base: rel.trim_matches('/').to_owned(),
        })
    }

    fn rel(&self, name: &str) -> String {
        if self.base.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.base)
        }
    }

    /// Where `name` is, for messages.
    pub fn shown(&self, name: &str) -> PathBuf {
        self.root.path().join(self.rel(name))
    }

    /// The bytes of the regular file `name` (relative to the directory).
    pub fn read(&self, name: &str) -> Result<Vec<u8>> {
        self.root
            .read(&self.rel(name), MAX_MODULE_FILE)
            .map_err(|e| anyhow!("cannot read {}: {e}", self.shown(name).display()))
    }

    /// The text of the regular file `name`.
    pub fn read_text(&self, name: &str) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.read(name)?).into_owned())
    }

    /// Whether `name` is a regular file.
    pub fn is_file(&self, name: &str) -> bool {
        matches!(
            self.root.kind(&self.rel(name)),
            Ok(hnroot_linux::fsat::Kind::File(_))
        )
    }
}

/// What hnroot's own initramfs loads to find hostpart and mount an image on a server: disk
/// controllers (virtio, NVMe, AHCI/SATA, SCSI disks, USB storage), loop, the filesystems of
/// hostpart, the images and the ESP (ext4, btrfs, XFS, vfat with the code pages FAT's defaults
/// need), overlayfs for the writable layer, and dm-verity for sealed images (loaded only when
/// one is booted). Checksum algorithms come in through
/// `modules.softdep`. A module this kernel has neither as a file nor built in is left out and
/// reported ([`modules_in_some`]).
pub const BOOT_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "virtio_scsi",
    "nvme",
    "ahci",
    "sd_mod",
    "usb_storage",
    "uas",
    "loop",
    "ext4",
    "btrfs",
    "xfs",
    "overlay",
    "vfat",
    "nls_cp437",
    "nls_ascii",
    "nls_iso8859_1",
    "nls_utf8",
    "dm_verity",
];

/// Bound on dependency depth when resolving modules (Debian's deepest chain is ~6).
const MAX_DEP_DEPTH: usize = 32;

/// The modules to load for a wanted list, resolved against one kernel.
#[derive(Debug, Clone, Default)]
pub struct ModuleSet {
    /// Wanted modules (or softdep aliases) that are built into this kernel: nothing to load.
    pub builtin: Vec<String>,
    /// .ko paths relative to `modules_dir`, dependencies before dependents.
    pub load_order: Vec<String>,
}

/// [`modules_in`] for every wanted module this kernel has; the ones it has neither as a file
/// nor built in are returned by name instead of failing the whole set.
pub fn modules_in_some(
    modules_dir: &ModulesDir,
    release: &str,
    wanted: &[&str],
) -> Result<(ModuleSet, Vec<String>)> {
    let index = ModuleIndex::load(modules_dir)?;
    let mut resolver = Resolver {
        index: &index,
        release,
        done: BTreeSet::new(),
        out: ModuleSet::default(),
    };
    let mut missing = Vec::new();
    for name in wanted {
        if !index.knows(name) {
            missing.push((*name).to_owned());
            continue;
        }
        resolver.want(name, 0, &mut Vec::new())?;
    }
    Ok((resolver.out, missing))
}

/// The modules to load for `wanted` against any depmod'ed `lib/modules/<release>` directory (the cached
/// Debian kernel's, or the host's `/lib/modules/$(uname -r)`).
pub fn modules_in(modules_dir: &Path, release: &str, wanted: &[&str]) -> Result<ModuleSet> {
    modules_in_dir(&ModulesDir::at(modules_dir)?, release, wanted)
}

/// [`modules_in`] for a [`ModulesDir`].
pub fn modules_in_dir(
    modules_dir: &ModulesDir,
    release: &str,
    wanted: &[&str],
) -> Result<ModuleSet> {
    let index = ModuleIndex::load(modules_dir)?;
    let mut resolver = Resolver {
        index: &index,
        release,
        done: BTreeSet::new(),
        out: ModuleSet::default(),
    };
    for name in wanted {
        resolver.want(name, 0, &mut Vec::new())?;
    }
    Ok(resolver.out)
}

/// The module name of a `.ko` path (`kernel/fs/nls/nls_iso8859-1.ko` -> `nls_iso8859_1`).
pub fn ko_module_name(ko_path: &str) -> String {
    module_name(ko_path)
}

/// Module names are compared with '-' and '_' equal, as the kernel does.
fn norm(name: &str) -> String {
    name.replace('-', "_")
}

fn module_name(ko_path: &str) -> String {
    let file = ko_path.rsplit('/').next().unwrap_or(ko_path);
    norm(file.split(".ko").next().unwrap_or(file))
}

/// The parts of depmod's output the resolver reads.
#[derive(Debug, Default)]
struct ModuleIndex {
    /// module name -> (its .ko path, the .ko paths it needs)
    deps: HashMap<String, (String, Vec<String>)>,
    /// module name -> names/aliases to load before it
    softdep_pre: HashMap<String, Vec<String>>,
    /// alias -> providing module names, in file order
    aliases: BTreeMap<String, Vec<String>>,
    /// built-in module names
    builtin: BTreeSet<String>,
    /// aliases provided by built-in modules
    builtin_aliases: BTreeSet<String>,
}

impl ModuleIndex {
    /// Whether `name` is a module of this kernel (a file or built in) or an alias of one.
    fn knows(&self, name: &str) -> bool {
        let module = norm(name);
        self.deps.contains_key(&module)
            || self.builtin.contains(&module)
            || self.builtin_aliases.contains(name)
            || self.aliases.contains_key(name)
    }

    fn load(dir: &ModulesDir) -> Result<Self> {
        let read = |name: &str| dir.read_text(name);
        let mut index = Self::default();
        for line in read("modules.dep")?.lines() {
            let Some((ko, deps)) = line.split_once(':') else {
                continue;
            };
            let deps = deps.split_whitespace().map(str::to_string).collect();
            index.deps.insert(module_name(ko), (ko.to_string(), deps));
        }
        for line in read("modules.softdep")?.lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some("softdep") {
                continue;
            }
            let Some(module) = words.next() else { continue };
            let mut in_pre = false;
            for word in words {
                match word {
                    "pre:" => in_pre = true,
                    "post:" => in_pre = false,
                    w if in_pre => index
                        .softdep_pre
                        .entry(norm(module))
                        .or_default()
                        .push(w.to_string()),
                    _ => {}
                }
            }
        }
        for line in read("modules.alias")?.lines() {
            let mut words = line.split_whitespace();
            if let (Some("alias"), Some(alias), Some(module)) =
                (words.next(), words.next(), words.next())
            {
                index
                    .aliases
                    .entry(alias.to_string())
                    .or_default()
                    .push(norm(module));
            }
        }
        for line in read("modules.builtin")?.lines() {
            if !line.trim().is_empty() {
                index.builtin.insert(module_name(line.trim()));
            }
        }
        // modules.builtin.modinfo: NUL-separated "module.key=value"; aliases of built-ins.
        let modinfo = dir.read("modules.builtin.modinfo")?;
        for record in modinfo.split(|b| *b == 0) {
            let record = String::from_utf8_lossy(record);
            if let Some((_, alias)) = record.split_once(".alias=") {
                index.builtin_aliases.insert(alias.to_string());
            }
        }
        Ok(index)
    }
}

struct Resolver<'a> {
    index: &'a ModuleIndex,
    release: &'a str,
    /// Module names already placed in `out.load_order` (or found built in).
    done: BTreeSet<String>,
    out: ModuleSet,
}

impl Resolver<'_> {
    fn want(&mut self, name: &str, depth: usize, chain: &mut Vec<String>) -> Result<()> {
        if depth > MAX_DEP_DEPTH {
            bail!(
                "module dependencies deeper than {MAX_DEP_DEPTH}: {}",
                chain.join(" -> ")
            );
        }
        let module = norm(name);
        if self.done.contains(&module) {
            return Ok(());
        }
        if chain.contains(&module) {
            bail!(
                "module dependency cycle: {} -> {module}",
                chain.join(" -> ")
            );
        }
        if self.index.builtin.contains(&module) {
            self.done.insert(module.clone());
            self.out.builtin.push(module);
            return Ok(());
        }
        if let Some((ko, hard)) = self.index.deps.get(&module) {
            chain.push(module.clone());
            let pre = self
                .index
                .softdep_pre
                .get(&module)
                .cloned()
                .unwrap_or_default();
            for soft in &pre {
                self.want(soft, depth + 1, chain)?;
            }
            for dep in hard {
                self.want(&module_name(dep), depth + 1, chain)?;
            }
            chain.pop();
            self.done.insert(module);
            self.out.load_order.push(ko.clone());
            return Ok(());
        }
        if self.index.builtin_aliases.contains(name) {
            self.done.insert(module);
            self.out.builtin.push(name.to_string());
            return Ok(());
        }
        if let Some(providers) = self.index.aliases.get(name) {
            let chosen = providers
                .iter()
                .find(|p| p.ends_with("_generic"))
                .or_else(|| providers.first())
                .cloned()
                .ok_or_else(|| anyhow!("alias {name} has an empty provider list"))?;
            return self.want(&chosen, depth + 1, chain);
        }
        bail!(
            "module {name:?} is neither built into kernel {} nor in its modules.dep, and no \
             module provides it as an alias (wanted via {})",
            self.release,
            if chain.is_empty() {
                "the wanted list".to_string()
            } else {
                chain.join(" -> ")
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn index_dir(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            fs::write(dir.path().join(name), content).unwrap();
        }
        dir
    }

    /// A miniature of Debian 6.1's real files: ext4 -> jbd2/mbcache/crc16, softdep crc32c whose
    /// providers are crc32c_intel (listed first) and crc32c_generic; sha256 built in.
    fn debian_like() -> tempfile::TempDir {
        index_dir(&[
            (
                "modules.dep",
                b"kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko\n\
kernel/lib/crc16.ko:\nkernel/fs/mbcache.ko:\nkernel/fs/jbd2/jbd2.ko:\n\
kernel/arch/x86/crypto/crc32c-intel.ko:\nkernel/crypto/crc32c_generic.ko:\n\
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n\
kernel/drivers/virtio/virtio_ring.ko:\n\
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n\
kernel/fs/nls/nls_iso8859-1.ko:\n",
            ),
            (
                "modules.softdep",
                b"# comment\nsoftdep ext4 pre: crypto-crc32c\nsoftdep jbd2 pre: crypto-crc32c\n\
softdep btrfs pre: sha256 crypto-crc32c post: foo\n",
            ),
            (
                "modules.alias",
                b"alias crypto-crc32c crc32c_intel\nalias crypto-crc32c crc32c_generic\n\
alias crypto-sha256 sha256_ssse3\n",
            ),
            ("modules.builtin", b"kernel/crypto/sha256_generic.ko\n"),
            (
                "modules.builtin.modinfo",
                b"sha256_generic.alias=crypto-sha256\0sha256_generic.alias=sha256\0",
            ),
        ])
    }

    fn resolve(dir: &Path, wanted: &[&str]) -> Result<ModuleSet> {
        let index = ModuleIndex::load(&ModulesDir::at(dir)?)?;
        let mut r = Resolver {
            index: &index,
            release: "test",
            done: BTreeSet::new(),
            out: ModuleSet::default(),
        };
        for w in wanted {
            r.want(w, 0, &mut Vec::new())?;
        }
        Ok(r.out)
    }

    #[test]
    fn links_in_a_tree_resolve_inside_it_and_only_regular_files_are_read() {
        let tree = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        let m = tree.path().join("lib/modules/6.1.0-t");
        fs::create_dir_all(&m).unwrap();
        fs::write(host.path().join("modules.dep"), b"kernel/x.ko:\n").unwrap();
        // An absolute link to the host's file: inside the tree it leads nowhere.
        std::os::unix::fs::symlink(host.path().join("modules.dep"), m.join("modules.dep")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", m.join("modules.alias")).unwrap();
        let dir = ModulesDir::in_root(tree.path(), "lib/modules/6.1.0-t").unwrap();
        let e = dir.read("modules.dep").unwrap_err().to_string();
        assert!(e.contains("not there"), "{e}");
        assert!(!dir.is_file("modules.dep"));
        // /dev/zero inside the tree is nothing; a device node there is never read.
        let e = dir.read("modules.alias").unwrap_err().to_string();
        assert!(e.contains("not there"), "{e}");
        fs::create_dir_all(tree.path().join("dev")).unwrap();
        let fifo = std::ffi::CString::new(tree.path().join("dev/zero").to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let e = dir.read("modules.alias").unwrap_err().to_string();
        assert!(e.contains("a FIFO, not a regular file"), "{e}");
    }

    #[test]
    fn dependencies_and_softdeps_come_first_generic_preferred() {
        let dir = debian_like();
        let set = resolve(dir.path(), &["virtio_blk", "ext4", "nls_iso8859_1"]).unwrap();
        assert_eq!(
            set.load_order,
            [
                "kernel/drivers/virtio/virtio_ring.ko",
                "kernel/drivers/virtio/virtio.ko",
                "kernel/drivers/block/virtio_blk.ko",
                "kernel/crypto/crc32c_generic.ko",
                "kernel/lib/crc16.ko",
                "kernel/fs/mbcache.ko",
                "kernel/fs/jbd2/jbd2.ko",
                "kernel/fs/ext4/ext4.ko",
                "kernel/fs/nls/nls_iso8859-1.ko",
            ]
        );
        assert!(set.builtin.is_empty());
    }

    #[test]
    fn builtin_modules_and_aliases_need_nothing() {
        let dir = debian_like();
        let set = resolve(dir.path(), &["sha256_generic", "sha256"]).unwrap();
        assert!(set.load_order.is_empty());
        assert_eq!(set.builtin, ["sha256_generic", "sha256"]);
    }

    #[test]
    fn unknown_module_is_named_in_the_error() {
        let dir = debian_like();
        let err = resolve(dir.path(), &["no_such_fs"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"no_such_fs\""), "{err}");
        assert!(err.contains("wanted list"), "{err}");
    }

    #[test]
    fn modules_a_kernel_lacks_are_named_not_fatal() {
        let dir = debian_like();
        let (set, missing) = modules_in_some(
            &ModulesDir::at(dir.path()).unwrap(),
            "test",
            &["virtio_blk", "no_such_hba", "sha256"],
        )
        .unwrap();
        assert_eq!(missing, ["no_such_hba"]);
        assert_eq!(
            set.load_order.last().unwrap(),
            "kernel/drivers/block/virtio_blk.ko"
        );
        assert_eq!(set.builtin, ["sha256"]);
    }

    /// Debian 13's 6.12 lines for btrfs, as its depmod writes them: `.ko.xz` files, one
    /// `softdep` line per soft dependency, `sha256` built in.
    #[test]
    fn compressed_modules_and_one_softdep_per_line_as_debian_13_writes_them() {
        let dir = index_dir(&[
            (
                "modules.dep",
                b"kernel/fs/btrfs/btrfs.ko.xz: kernel/crypto/xor.ko.xz kernel/lib/raid6/raid6_pq.ko.xz kernel/lib/libcrc32c.ko.xz\n\
kernel/crypto/blake2b_generic.ko.xz:\nkernel/crypto/crc32c_generic.ko.xz:\n\
kernel/arch/x86/crypto/crc32c-intel.ko.xz:\nkernel/crypto/xxhash_generic.ko.xz:\n\
kernel/crypto/xor.ko.xz:\nkernel/lib/libcrc32c.ko.xz:\nkernel/lib/raid6/raid6_pq.ko.xz:\n",
            ),
            (
                "modules.softdep",
                b"softdep btrfs pre: blake2b-256\nsoftdep btrfs pre: sha256\n\
softdep btrfs pre: xxhash64\nsoftdep btrfs pre: crypto-crc32c\n",
            ),
            (
                "modules.alias",
                b"alias crypto-crc32c crc32c_intel\nalias blake2b-256 blake2b_generic\n\
alias crypto-crc32c crc32c_generic\nalias xxhash64 xxhash_generic\n",
            ),
            ("modules.builtin", b"kernel/crypto/sha256_generic.ko\n"),
            ("modules.builtin.modinfo", b"sha256_generic.alias=sha256\0"),
        ]);
        let set = resolve(dir.path(), &["btrfs"]).unwrap();
        assert_eq!(
            set.load_order,
            [
                "kernel/crypto/blake2b_generic.ko.xz",
                "kernel/crypto/xxhash_generic.ko.xz",
                "kernel/crypto/crc32c_generic.ko.xz",
                "kernel/crypto/xor.ko.xz",
                "kernel/lib/raid6/raid6_pq.ko.xz",
                "kernel/lib/libcrc32c.ko.xz",
                "kernel/fs/btrfs/btrfs.ko.xz",
            ]
        );
        assert_eq!(set.builtin, ["sha256"]);
        assert_eq!(
            ko_module_name("kernel/arch/x86/crypto/crc32c-intel.ko.xz"),
            "crc32c_intel"
        );
    }

    #[test]
    fn cycles_are_reported_not_followed() {
        let dir = index_dir(&[
            ("modules.dep", b"a.ko: b.ko\nb.ko: a.ko\n"),
            ("modules.softdep", b""),
            ("modules.alias", b""),
            ("modules.builtin", b""),
            ("modules.builtin.modinfo", b""),
        ]);
        let err = resolve(dir.path(), &["a"]).unwrap_err().to_string();
        assert!(err.contains("cycle: a -> b -> a"), "{err}");
    }
}
