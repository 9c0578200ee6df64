//! `cargo xtask c-ffi-test`: compile `hnroot-ffi/tests/c/test_ffi.c` against the committed
//! header `hnroot-ffi/include/hnroot.h`, link it with hnroot-ffi built as a host static library,
//! run it, and fail unless it reports every check passed. It never regenerates the header
//! (`cargo xtask header --check` does the staleness check).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{grubmod, util};

/// Build the host staticlib (release profile: LTO, panic=abort) and return its path.
fn host_staticlib() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    util::step(
        "hnroot-ffi host staticlib",
        &[
            &cargo,
            "rustc",
            "-p",
            "hnroot-ffi",
            "--release",
            "--features",
            "panic-handler",
            "--crate-type",
            "staticlib",
        ],
    )?;
    let lib = grubmod::target_dir()
        .join("release")
        .join("libhnroot_ffi.a");
    if !lib.exists() {
        bail!("cargo built hnroot-ffi but {} is missing", lib.display());
    }
    Ok(lib)
}

/// Compile, link and run the C test program.
pub fn run() -> Result<()> {
    let lib = host_staticlib()?;
    let root = util::root();
    let source = root.join("hnroot-ffi/tests/c/test_ffi.c");
    let out_dir = grubmod::build_root().join("c-ffi-test");
    std::fs::create_dir_all(&out_dir)?;
    let exe = out_dir.join("test_ffi");
    grubmod::run(
        Command::new("gcc")
            .args([
                "-std=c11",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-Wmissing-prototypes",
                "-Wstrict-prototypes",
                "-O1",
                "-I",
            ])
            .arg(root.join("hnroot-ffi/include"))
            .arg(&source)
            .arg(&lib)
            .arg("-o")
            .arg(&exe),
    )
    .context("compiling test_ffi.c against hnroot.h")?;
    let out = Command::new(&exe)
        .output()
        .with_context(|| format!("running {}", exe.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprint!("{stderr}");
    println!("c-ffi-test: {}", stdout.trim());
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.ends_with("failed"))
        .context("test_ffi printed no 'N passed, M failed' line")?;
    let passed: usize = summary
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .context("unreadable summary line")?;
    if !out.status.success() || !summary.ends_with(" 0 failed") || passed == 0 {
        bail!(
            "the C FFI test failed ({}): {summary}\n{stderr}",
            out.status
        );
    }
    Ok(())
}
