//! Part 2: `mkinitramfs` in a debootstrapped Debian 12 tree (made once, cached), with hnroot's
//! hook and script installed the package way and the administrator way; the images are
//! inspected with `lsinitramfs`/`unmkinitramfs`. It changes nothing on the host: the tree is
//! entered with `chroot`, and what the test put into it is removed again.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use hnroot_testkit::buildenv;

use crate::{
    copy_into, run_logged, write, DEBOOTSTRAP_TIMEOUT, HOOK, HOOK_MODULES, INITRAMFS_INIT,
    INITRAMFS_TOOLS_SHARE, INSTALLED_INIT, MAX_MOUNTS, MKINITRAMFS_TIMEOUT, SCRIPT, SUITE,
    TEST_CONF_MODULES, TREE_PACKAGES, TREE_STAMP,
};

/// A debootstrapped tree with a kernel.
#[derive(Debug, Clone)]
pub struct DebianTree {
    pub root: PathBuf,
    /// `uname -r` of its kernel.
    pub release: String,
    pub vmlinuz: PathBuf,
}

/// Mount points at or under `dir` (from /proc/self/mountinfo).
fn mounts_under(dir: &Path) -> Result<Vec<String>> {
    let info =
        fs::read_to_string("/proc/self/mountinfo").context("cannot read /proc/self/mountinfo")?;
    let prefix = dir.to_string_lossy().into_owned();
    Ok(info
        .lines()
        .take(MAX_MOUNTS)
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| m.replace("\\040", " "))
        .filter(|m| m == &prefix || m.starts_with(&format!("{prefix}/")))
        .collect())
}

/// Remove a chroot tree, refusing while anything is mounted in it.
fn remove_tree(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let mounted = mounts_under(dir)?;
    if !mounted.is_empty() {
        bail!(
            "not removing {}: still mounted in it: {} (unmount them first)",
            dir.display(),
            mounted.join(" ")
        );
    }
    fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))
}

/// The debootstrapped tree, made once and cached; rebuilt when the mirror or package list
/// changes or a previous build did not finish.
pub(crate) fn get(work: &Path, mirror: &str) -> Result<DebianTree> {
    let root = work.join(format!("debian-{SUITE}"));
    let recipe =
        format!("debootstrap --variant=minbase --include={TREE_PACKAGES} {SUITE} {mirror}\n");
    let stamp = root.join(TREE_STAMP);
    if fs::read_to_string(&stamp).ok().as_deref() != Some(recipe.as_str()) {
        remove_tree(&root)?;
        let partial = root.with_extension("partial");
        remove_tree(&partial)?;
        eprintln!(
            "==> initramfs-tools-test: {} (once; ~3 min, ~800 MiB)",
            recipe.trim()
        );
        let log = work.join("debootstrap.log");
        let (status, output) = run_logged(
            Command::new("debootstrap")
                .args(["--variant=minbase", &format!("--include={TREE_PACKAGES}")])
                .arg(SUITE)
                .arg(&partial)
                .arg(mirror),
            DEBOOTSTRAP_TIMEOUT,
            &log,
        )?;
        let left = mounts_under(&partial)?;
        if !left.is_empty() {
            bail!(
                "debootstrap left mounts in {}: {}; unmount them and retry",
                partial.display(),
                left.join(" ")
            );
        }
        if !status.success() {
            let tail: Vec<&str> = output.lines().rev().take(20).collect();
            bail!(
                "debootstrap of {SUITE} from {mirror} failed ({status}); log {}, last lines:\n{}",
                log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        fs::rename(&partial, &root)
            .with_context(|| format!("cannot move {} to {}", partial.display(), root.display()))?;
        buildenv::write_atomic(&stamp, recipe.as_bytes())?;
    }
    let modules = root.join("lib/modules");
    let mut releases: Vec<String> = fs::read_dir(&modules)
        .with_context(|| format!("cannot list {}", modules.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    releases.sort();
    let [release] = releases.as_slice() else {
        bail!(
            "{} holds {} kernels ({}), expected exactly one; delete {} to rebuild the tree",
            modules.display(),
            releases.len(),
            releases.join(" "),
            root.display()
        );
    };
    let vmlinuz = root.join("boot").join(format!("vmlinuz-{release}"));
    if !vmlinuz.is_file() {
        bail!(
            "{} has modules for {release} but no {}; delete it to rebuild",
            root.display(),
            vmlinuz.display()
        );
    }
    Ok(DebianTree {
        root: root.clone(),
        release: release.clone(),
        vmlinuz,
    })
}

/// The two images built.
#[derive(Debug, Clone)]
pub struct Images {
    /// Hook and script under `/usr/share/initramfs-tools/`.
    pub package: PathBuf,
    /// Hook and script under the `CONFDIR`.
    pub confdir: PathBuf,
}

/// Where in the tree the test puts things; removed again by [`Installed::drop`].
struct Installed {
    paths: Vec<PathBuf>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        for p in self.paths.iter().rev() {
            let result = if p.is_dir() {
                fs::remove_dir_all(p)
            } else {
                fs::remove_file(p)
            };
            if let Err(e) = result {
                if e.kind() != std::io::ErrorKind::NotFound {
                    eprintln!("warning: cannot remove {}: {e}", p.display());
                }
            }
        }
    }
}

/// In the tree: `/usr/lib/hnroot/hnroot-init`, and a `CONFDIR` at `/etc/hnroot-initramfs-tools/<name>`
/// copied from `/etc/initramfs-tools` with `MODULES=list` and the test disk drivers.
fn conf_dir(tree: &DebianTree, name: &str, with_hnroot: bool) -> Result<PathBuf> {
    let rel = PathBuf::from("etc/hnroot-initramfs-tools").join(name);
    let dir = tree.root.join(&rel);
    buildenv::fresh_dir(&dir)?;
    let base = tree.root.join("etc/initramfs-tools");
    let conf = fs::read_to_string(base.join("initramfs.conf"))
        .with_context(|| format!("cannot read {}/initramfs.conf", base.display()))?;
    if !conf.lines().any(|l| l.starts_with("MODULES=")) {
        bail!(
            "{}/initramfs.conf has no MODULES= line to replace",
            base.display()
        );
    }
    let conf: String = conf
        .lines()
        .map(|l| {
            if l.starts_with("MODULES=") {
                "MODULES=list".to_string()
            } else {
                l.to_string()
            }
        })
        .map(|l| l + "\n")
        .collect();
    write(&dir.join("initramfs.conf"), 0o644, conf.as_bytes())?;
    let modules: String = TEST_CONF_MODULES.iter().map(|m| format!("{m}\n")).collect();
    write(&dir.join("modules"), 0o644, modules.as_bytes())?;
    for sub in ["conf.d", "hooks", "scripts"] {
        fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("cannot create {}", dir.join(sub).display()))?;
    }
    if with_hnroot {
        copy_into(
            &buildenv::workspace_root().join(HOOK),
            &dir.join("hooks/hnroot"),
            0o755,
        )?;
        copy_into(
            &buildenv::workspace_root().join(SCRIPT),
            &dir.join("scripts/hnroot"),
            0o644,
        )?;
    }
    Ok(PathBuf::from("/").join(rel))
}

/// `chroot TREE mkinitramfs -d CONFDIR -o OUT RELEASE` with a clean environment.
fn mkinitramfs(
    tree: &DebianTree,
    confdir: &Path,
    out_in_tree: &str,
    log: &Path,
) -> Result<(bool, String)> {
    let (status, output) = run_logged(
        Command::new("chroot")
            .arg(&tree.root)
            .args(["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"])
            .arg("mkinitramfs")
            .arg("-d")
            .arg(confdir)
            .args(["-o", out_in_tree, &tree.release]),
        MKINITRAMFS_TIMEOUT,
        log,
    )?;
    Ok((status.success(), output))
}

/// Check an image: listing, extracted bytes, modules.
fn inspect(tree: &DebianTree, image: &Path, init: &Path, scratch: &Path) -> Result<()> {
    let listing = buildenv::run(Command::new("lsinitramfs").arg(image))?;
    let entries: Vec<&str> = listing.lines().map(str::trim).collect();
    for needed in ["init", "scripts/hnroot", INITRAMFS_INIT, "conf/modules"] {
        if !entries.contains(&needed) {
            bail!(
                "{}: no {needed} among its {} entries (lsinitramfs)",
                image.display(),
                entries.len()
            );
        }
    }
    let builtin_path = tree
        .root
        .join("lib/modules")
        .join(&tree.release)
        .join("modules.builtin");
    let builtin = fs::read_to_string(&builtin_path)
        .with_context(|| format!("cannot read {}", builtin_path.display()))?;
    let norm = |s: &str| s.replace('-', "_");
    let is_builtin = |m: &str| {
        builtin.lines().any(|l| {
            let file = l.rsplit('/').next().unwrap_or(l);
            norm(file.split(".ko").next().unwrap_or(file)) == m
        })
    };
    let module_prefix = format!("usr/lib/modules/{}/", tree.release);
    for m in HOOK_MODULES.iter().chain(TEST_CONF_MODULES) {
        let present = entries.iter().any(|e| {
            e.starts_with(&module_prefix)
                && e.rsplit('/')
                    .next()
                    .and_then(|f| f.split(".ko").next().filter(|_| f.contains(".ko")))
                    .is_some_and(|stem| norm(stem) == *m)
        });
        if !present && !is_builtin(m) {
            bail!(
                "{}: module {m} is neither in the image (under {module_prefix}) nor built into \
                 kernel {}",
                image.display(),
                tree.release
            );
        }
    }
    let x = buildenv::fresh_dir(scratch)?;
    buildenv::run(Command::new("unmkinitramfs").arg(image).arg(&x))?;
    // With an early (microcode) archive unmkinitramfs splits into early/ and main/.
    let main = if x.join("main").is_dir() {
        x.join("main")
    } else {
        x.clone()
    };
    let same = |inside: &str, outside: &Path| -> Result<()> {
        let a = fs::read(main.join(inside))
            .with_context(|| format!("cannot read {inside} extracted from {}", image.display()))?;
        let b = fs::read(outside).with_context(|| format!("cannot read {}", outside.display()))?;
        if a != b {
            bail!(
                "{}: {inside} ({} bytes) differs from {} ({} bytes)",
                image.display(),
                a.len(),
                outside.display(),
                b.len()
            );
        }
        Ok(())
    };
    same("scripts/hnroot", &buildenv::workspace_root().join(SCRIPT))?;
    same(INITRAMFS_INIT, init)?;
    let conf_modules = fs::read_to_string(main.join("conf/modules"))
        .context("cannot read the extracted conf/modules")?;
    for module in ["loop", "dm_verity"] {
        if !conf_modules.lines().any(|l| l.trim() == module) {
            bail!(
                "{}: conf/modules does not load {module} at boot (force_load):\n{conf_modules}",
                image.display()
            );
        }
    }
    let tools_init =
        fs::read_to_string(main.join("init")).context("cannot read the extracted init")?;
    if !tools_init.contains(". \"/scripts/${BOOT}\"") {
        bail!(
            "{}: /init is not initramfs-tools' (it does not source /scripts/${{BOOT}})",
            image.display()
        );
    }
    fs::remove_dir_all(&x).with_context(|| format!("cannot remove {}", x.display()))?;
    Ok(())
}

/// Build and inspect the images; returns them.
pub(crate) fn mkinitramfs_tests(tree: &DebianTree, init: &Path, work: &Path) -> Result<Images> {
    let share = tree
        .root
        .join(INITRAMFS_TOOLS_SHARE.trim_start_matches('/'));
    let installed_init = tree.root.join(INSTALLED_INIT);
    let mut installed = Installed {
        paths: vec![
            tree.root.join("usr/lib/hnroot"),
            tree.root.join("etc/hnroot-initramfs-tools"),
        ],
    };
    copy_into(init, &installed_init, 0o755)?;

    // Package layout: /usr/share/initramfs-tools/{hooks,scripts}/hnroot.
    let hook = share.join("hooks/hnroot");
    let script = share.join("scripts/hnroot");
    installed.paths.push(hook.clone());
    installed.paths.push(script.clone());
    copy_into(&buildenv::workspace_root().join(HOOK), &hook, 0o755)?;
    copy_into(&buildenv::workspace_root().join(SCRIPT), &script, 0o644)?;
    let conf = conf_dir(tree, "package", false)?;
    let package = work.join("initrd-package.img");
    let (ok, out) = mkinitramfs(
        tree,
        &conf,
        "/tmp/hnroot-initrd.img",
        &work.join("mkinitramfs-package.log"),
    )?;
    if !ok {
        bail!("mkinitramfs with hnroot under {INITRAMFS_TOOLS_SHARE} failed:\n{out}");
    }
    move_out(tree, "/tmp/hnroot-initrd.img", &package)?;
    inspect(tree, &package, init, &work.join("unpacked"))?;
    fs::remove_file(&hook).with_context(|| format!("cannot remove {}", hook.display()))?;
    fs::remove_file(&script).with_context(|| format!("cannot remove {}", script.display()))?;

    // Administrator layout: CONFDIR/{hooks,scripts}/hnroot.
    let conf = conf_dir(tree, "confdir", true)?;
    let confdir = work.join("initrd-confdir.img");
    let (ok, out) = mkinitramfs(
        tree,
        &conf,
        "/tmp/hnroot-initrd.img",
        &work.join("mkinitramfs-confdir.log"),
    )?;
    if !ok {
        bail!(
            "mkinitramfs with hnroot in CONFDIR {} failed:\n{out}",
            conf.display()
        );
    }
    move_out(tree, "/tmp/hnroot-initrd.img", &confdir)?;
    inspect(tree, &confdir, init, &work.join("unpacked"))?;

    // No hnroot-init: the hook must stop the build and say where it looked.
    fs::remove_file(&installed_init)
        .with_context(|| format!("cannot remove {}", installed_init.display()))?;
    let (ok, out) = mkinitramfs(
        tree,
        &conf,
        "/tmp/hnroot-initrd-bad.img",
        &work.join("mkinitramfs-missing.log"),
    )?;
    let _ = fs::remove_file(tree.root.join("tmp/hnroot-initrd-bad.img"));
    let want = format!("E: hnroot: no executable hnroot-init at /{INSTALLED_INIT}");
    if ok || !out.contains(&want) {
        bail!(
            "mkinitramfs without hnroot-init {}; expected a failure saying `{want}`; output:\n{out}",
            if ok { "succeeded" } else { "failed otherwise" }
        );
    }
    drop(installed);
    Ok(Images { package, confdir })
}

fn move_out(tree: &DebianTree, in_tree: &str, to: &Path) -> Result<()> {
    let from = tree.root.join(in_tree.trim_start_matches('/'));
    if fs::rename(&from, to).is_err() {
        fs::copy(&from, to)
            .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
        fs::remove_file(&from).with_context(|| format!("cannot remove {}", from.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_under_matches_whole_components() {
        let all = mounts_under(Path::new("/")).unwrap();
        assert!(all.iter().any(|m| m == "/"));
        assert!(mounts_under(Path::new("/no-such-dir-hnroot"))
            .unwrap()
            .is_empty());
    }
}
