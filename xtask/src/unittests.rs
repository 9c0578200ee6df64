//! The workspace's unit and integration tests, built once by `cargo test --workspace --no-run`
//! and run two binaries at a time. cargo runs one test binary at a time, and the slow ones (the
//! CLI's image, stage and install tests, about 30 s each; the core's liveness check, 36 s) keep
//! one of the two cores idle: measured in CI, the machine was 51-60 % busy while they ran.
//! Running a subset by `cargo test -p` instead rebuilds much of the workspace (cargo unifies
//! features over the packages selected), so the binaries cargo built are started here as cargo
//! starts them: in their package's directory, with their package's `CARGO_MANIFEST_DIR`.
//! Each binary's output is printed whole when it ends; the doc tests run after, by cargo.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use hnroot_testkit::buildenv;

/// Test binaries run at once.
const JOBS: usize = 2;

/// A test binary cargo built.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TestBinary {
    /// `package: kind name`, as shown.
    label: String,
    executable: PathBuf,
    /// The package's directory (cargo runs a test binary there).
    package_dir: PathBuf,
}

/// The test binaries in `cargo test --no-run --message-format=json` output.
fn binaries_in(json: &str) -> Result<Vec<TestBinary>> {
    let mut out = Vec::new();
    for line in json.lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("cargo's message {line:?}"))?;
        if v["reason"] != "compiler-artifact" || v["profile"]["test"] != true {
            continue;
        }
        let Some(executable) = v["executable"].as_str() else {
            continue;
        };
        let manifest = v["manifest_path"]
            .as_str()
            .context("a compiler-artifact message without manifest_path")?;
        let package_dir = PathBuf::from(manifest)
            .parent()
            .context("a manifest path without a directory")?
            .to_owned();
        let package = package_dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let kind = v["target"]["kind"][0].as_str().unwrap_or("?");
        let name = v["target"]["name"].as_str().unwrap_or("?");
        out.push(TestBinary {
            label: format!("{package}: {kind} {name}"),
            executable: PathBuf::from(executable),
            package_dir,
        });
    }
    Ok(out)
}

/// Build the workspace's tests, run every test binary ([`JOBS`] at a time), then the doc tests;
/// `env` is given to all of them. Fails after all ran if any failed, naming them.
pub fn run(env: &[(&str, &OsStr)]) -> Result<()> {
    eprintln!("==> unit and integration tests (build): cargo test --workspace --no-run");
    let started = Instant::now();
    let built = Command::new("cargo")
        .args([
            "test",
            "--workspace",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .envs(env.iter().copied())
        .current_dir(buildenv::workspace_root())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo test --no-run")?;
    if !built.status.success() {
        bail!("building the workspace's tests failed ({})", built.status);
    }
    let binaries = binaries_in(&String::from_utf8_lossy(&built.stdout))?;
    if binaries.is_empty() {
        bail!("cargo test --no-run reported no test binary");
    }
    eprintln!(
        "<== unit and integration tests (build): {} binaries in {:.0} s",
        binaries.len(),
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let queue = Mutex::new(binaries.into_iter().collect::<VecDeque<_>>());
    let failed = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..JOBS {
            scope.spawn(|| loop {
                let Some(bin) = queue.lock().unwrap().pop_front() else {
                    return;
                };
                let one = Instant::now();
                let out = Command::new(&bin.executable)
                    .current_dir(&bin.package_dir)
                    .env("CARGO_MANIFEST_DIR", &bin.package_dir)
                    .envs(env.iter().copied())
                    .stdin(Stdio::null())
                    .output();
                let (ok, text) = match out {
                    Ok(o) => (
                        o.status.success(),
                        format!(
                            "{}{}",
                            String::from_utf8_lossy(&o.stdout),
                            String::from_utf8_lossy(&o.stderr)
                        ),
                    ),
                    Err(e) => (false, format!("cannot start it: {e}\n")),
                };
                // One binary's output in one piece, under its name.
                eprintln!(
                    "     Running {} ({}), {:.1} s{}\n{}",
                    bin.label,
                    bin.executable.display(),
                    one.elapsed().as_secs_f64(),
                    if ok { "" } else { ": FAILED" },
                    text.trim_end()
                );
                if !ok {
                    failed.lock().unwrap().push(bin.label.clone());
                }
            });
        }
    });
    eprintln!(
        "<== unit and integration tests (run, {JOBS} binaries at a time): {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let doc = buildenv::step_env("doc tests", &["cargo", "test", "--workspace", "--doc"], env);
    let failed = failed.into_inner().unwrap();
    if !failed.is_empty() {
        bail!("test binaries failed: {}", failed.join(", "));
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_binaries_are_read_from_cargo_s_messages() {
        let json = r#"{"reason":"compiler-artifact","package_id":"x","manifest_path":"/w/hnroot-cli/Cargo.toml","target":{"kind":["test"],"name":"stage_cli"},"profile":{"test":true},"executable":"/w/target/debug/deps/stage_cli-1"}
{"reason":"compiler-artifact","package_id":"y","manifest_path":"/w/hnroot-core/Cargo.toml","target":{"kind":["lib"],"name":"hnroot_core"},"profile":{"test":false},"executable":null}
{"reason":"compiler-artifact","package_id":"z","manifest_path":"/w/tests/Cargo.toml","target":{"kind":["bin"],"name":"e2e"},"profile":{"test":false},"executable":"/w/target/debug/e2e"}
{"reason":"build-finished","success":true}
"#;
        let found = binaries_in(json).unwrap();
        assert_eq!(
            found,
            vec![TestBinary {
                label: "hnroot-cli: test stage_cli".into(),
                executable: "/w/target/debug/deps/stage_cli-1".into(),
                package_dir: "/w/hnroot-cli".into(),
            }]
        );
    }
}
