//! Load the kernel modules the boot needs from the initramfs's `/lib/modules/<release>`,
//! resolving dependencies from `modules.dep`, with `finit_module`. The list of modules wanted
//! is `/etc/hnroot/modules` (written by `cargo xtask initramfs`), one name per line.
//!
//! Compressed modules (`.ko.xz`, `.ko.zst`, `.ko.gz`, as Debian 13's kernel ships them) are
//! not decompressed here: they go to `finit_module` as they are, with
//! `MODULE_INIT_COMPRESSED_FILE`, and the kernel decompresses them itself
//! (`CONFIG_MODULE_DECOMPRESS`, Linux 6.0 and later; the initramfs builder checks the kernel's
//! configuration). No decompressor in PID 1, and the signature inside the module is checked
//! by the kernel as for any other module.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Most modules resolved in one boot (bounds the dependency walk).
pub const MAX_MODULES: usize = 512;

/// `MODULE_INIT_COMPRESSED_FILE`: let the kernel decompress `.ko.xz`/`.ko.zst`/`.ko.gz`.
const MODULE_INIT_COMPRESSED_FILE: libc::c_uint = 4;

/// What happened to one module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Loaded {
    /// Inserted now.
    Inserted(String),
    /// Already in the kernel (built in, or loaded before).
    Present(String),
}

/// Why the modules could not all be loaded.
#[derive(Debug)]
pub struct KmodError {
    /// The module.
    pub module: String,
    /// What went wrong.
    pub why: String,
}

impl std::fmt::Display for KmodError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "module {}: {}", self.module, self.why)
    }
}

/// Canonical module name: file stem without `.ko*`, `-` as `_`.
pub fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = base.split(".ko").next().unwrap_or(base);
    stem.replace('-', "_")
}

/// `modules.dep`: module name → (relative path, dependencies' relative paths).
pub fn parse_modules_dep(text: &str) -> HashMap<String, (String, Vec<String>)> {
    let mut map = HashMap::new();
    for line in text.lines().take(1 << 16) {
        let Some((module, deps)) = line.split_once(':') else {
            continue;
        };
        let module = module.trim();
        if module.is_empty() {
            continue;
        }
        let deps = deps.split_whitespace().map(str::to_owned).collect();
        map.insert(module_name(module), (module.to_owned(), deps));
    }
    map
}

/// Load order for `wanted`: every dependency before its user, each module once. Names not in
/// `modules.dep` are returned separately (built into the kernel, or missing).
pub fn resolve(
    dep: &HashMap<String, (String, Vec<String>)>,
    wanted: &[String],
) -> (Vec<String>, Vec<String>) {
    let mut order: Vec<String> = Vec::new();
    let mut unknown = Vec::new();
    // Iterative post-order walk; `visiting` breaks cycles (modules.dep has none, but a damaged
    // file must not hang PID 1).
    let mut done: HashMap<String, bool> = HashMap::new();
    for name in wanted {
        let name = module_name(name);
        if !dep.contains_key(&name) {
            unknown.push(name);
            continue;
        }
        let mut stack: Vec<(String, usize)> = vec![(name, 0)];
        while let Some((current, next)) = stack.pop() {
            if order.len() >= MAX_MODULES {
                break;
            }
            if done.get(&current) == Some(&true) {
                continue;
            }
            done.insert(current.clone(), false);
            let deps = dep.get(&current).map(|(_, d)| d.as_slice()).unwrap_or(&[]);
            if let Some(d) = deps.get(next) {
                stack.push((current.clone(), next + 1));
                let d = module_name(d);
                if !done.contains_key(&d) {
                    stack.push((d, 0));
                }
            } else {
                done.insert(current.clone(), true);
                order.push(current);
            }
        }
    }
    (
        order
            .into_iter()
            .map(|m| dep.get(&m).map(|(p, _)| p.clone()).unwrap_or(m))
            .collect(),
        unknown,
    )
}

/// Insert the module file at `path` (relative paths are under `dir`).
fn insert(dir: &Path, rel: &str) -> io::Result<bool> {
    let path: PathBuf = dir.join(rel);
    let file = File::open(&path)?;
    let flags = if rel.ends_with(".ko") {
        0
    } else {
        MODULE_INIT_COMPRESSED_FILE
    };
    let params = c"";
    // SAFETY: a valid open descriptor and a NUL-terminated (empty) parameter string.
    let r = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            file.as_raw_fd(),
            params.as_ptr(),
            flags,
        )
    };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EEXIST) {
        return Ok(false);
    }
    if flags == MODULE_INIT_COMPRESSED_FILE
        && matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL))
    {
        return Err(io::Error::new(
            e.kind(),
            format!(
                "{e} (a compressed module: this kernel may not decompress modules itself, \
                 CONFIG_MODULE_DECOMPRESS and the format's CONFIG_MODULE_COMPRESS_*)"
            ),
        ));
    }
    Err(e)
}

/// The initramfs's modules for the running kernel, indexed once.
#[derive(Debug)]
pub struct Modules {
    dir: PathBuf,
    dep: HashMap<String, (String, Vec<String>)>,
    builtin: Vec<String>,
}

impl Modules {
    /// Index `dir` (`/lib/modules/<release>`): its `modules.dep` and `modules.builtin`.
    pub fn open(dir: &Path) -> io::Result<Modules> {
        let text = std::fs::read_to_string(dir.join("modules.dep")).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{}: {e}", dir.join("modules.dep").display()),
            )
        })?;
        let builtin = std::fs::read_to_string(dir.join("modules.builtin"))
            .map(|t| t.lines().map(module_name).collect())
            .unwrap_or_default();
        Ok(Modules {
            dir: dir.to_owned(),
            dep: parse_modules_dep(&text),
            builtin,
        })
    }

    /// Whether the initramfs has `name` (as a file or built into the kernel).
    pub fn has(&self, name: &str) -> bool {
        let name = module_name(name);
        self.dep.contains_key(&name) || self.builtin.contains(&name)
    }

    /// Load `wanted` and their dependencies. Modules built into the kernel are fine; a module
    /// that is neither built in nor present, or that the kernel refuses, is reported and the
    /// others are still loaded.
    pub fn load(&self, wanted: &[String]) -> (Vec<Loaded>, Vec<KmodError>) {
        let mut errors = Vec::new();
        let (order, unknown) = resolve(&self.dep, wanted);
        let mut loaded = Vec::new();
        for name in unknown {
            if self.builtin.contains(&name) {
                loaded.push(Loaded::Present(name));
            } else {
                errors.push(KmodError {
                    module: name,
                    why: "not in modules.dep nor modules.builtin of this initramfs".into(),
                });
            }
        }
        for rel in order {
            let name = module_name(&rel);
            match insert(&self.dir, &rel) {
                Ok(true) => loaded.push(Loaded::Inserted(name)),
                Ok(false) => loaded.push(Loaded::Present(name)),
                Err(e) => errors.push(KmodError {
                    module: name,
                    why: format!("{rel}: {e}"),
                }),
            }
        }
        (loaded, errors)
    }
}

/// The wanted list: one module per line, `#` comments.
pub fn read_wanted(path: &Path) -> io::Result<Vec<String>> {
    Ok(std::fs::read_to_string(path)?
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .take(MAX_MODULES)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko:
kernel/fs/mbcache.ko:
kernel/lib/crc16.ko:
kernel/drivers/block/virtio_blk.ko.xz: kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio.ko:
kernel/drivers/block/loop.ko:
";

    #[test]
    fn dependencies_come_first_and_each_module_once() {
        let dep = parse_modules_dep(DEP);
        let wanted: Vec<String> = ["virtio-blk", "ext4", "jbd2", "loop", "vfat"]
            .map(String::from)
            .to_vec();
        let (order, unknown) = resolve(&dep, &wanted);
        assert_eq!(
            order,
            [
                "kernel/drivers/virtio/virtio.ko",
                "kernel/drivers/block/virtio_blk.ko.xz",
                "kernel/lib/crc16.ko",
                "kernel/fs/mbcache.ko",
                "kernel/fs/jbd2/jbd2.ko",
                "kernel/fs/ext4/ext4.ko",
                "kernel/drivers/block/loop.ko",
            ]
        );
        assert_eq!(unknown, ["vfat"]);
    }

    #[test]
    fn a_cycle_in_a_damaged_modules_dep_terminates() {
        let dep = parse_modules_dep("a.ko: b.ko\nb.ko: a.ko\n");
        let (order, _) = resolve(&dep, &["a".to_owned()]);
        assert_eq!(order.len(), 2);
    }

    #[test]
    fn names() {
        assert_eq!(module_name("kernel/fs/nls/nls_cp437.ko.zst"), "nls_cp437");
        assert_eq!(module_name("virtio-blk"), "virtio_blk");
    }
}
