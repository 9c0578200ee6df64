//! `hnroot metrics` and the stage's machine-readable answers orchestrators rely on, on real
//! images made by `mkfs.ext4 -d` and signed by `minisign`: the metrics name the staged image and
//! the last stage's bytes and pass `promtool check metrics` (Prometheus's own linter); `stage
//! --dry-run` writes nothing; an image already staged or running is refused with the stable
//! code `duplicate-uuid` naming its file.

mod support;

use std::process::Command;

use support::*;

/// `promtool check metrics` on `text`: its verdict (promtool is in xtask/src/deps.rs).
fn promtool(text: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs (Debian package prometheus; cargo xtask deps)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), text_of(&out))
}

fn text_of(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The JSON events a `--json` command printed, one per line.
fn events(out: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn metric(text: &str, name_and_labels: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name_and_labels} ")))
        .map(str::to_owned)
}

#[test]
fn metrics_of_a_staged_image_pass_promtool_and_stage_answers_with_codes() {
    let dir = tempfile::tempdir().unwrap();
    let hp = dir.path().join("hostpart");
    std::fs::create_dir(&hp).unwrap();
    let state = dir.path().join("bootstate");
    let (hp_s, st_s) = (hp.to_str().unwrap(), state.to_str().unwrap());
    let loc = ["--hostpart", hp_s, "--bootstate", st_s];
    image(&hp.join("hn-root.img"), A);
    ok(&[&["bootstate", "init"], &loc[..]].concat());
    let keys = keys(dir.path(), "publisher");
    let trusted = trust(dir.path(), &keys);
    let v2 = dir.path().join("v2.img");
    image_sized(&v2, B, "2", 12);
    sign(&v2, &keys, "fleet 2");
    let stage = |extra: &[&str]| {
        hnroot(
            &[
                &["stage", v2.to_str().unwrap(), "--json", "--keys"],
                &[trusted.to_str().unwrap()][..],
                extra,
                &loc[..],
            ]
            .concat(),
        )
    };

    // Before anything is staged: promtool accepts the file; nothing staged, committed.
    let before = ok(&[&["metrics"], &loc[..]].concat());
    let (fine, said) = promtool(&before);
    assert!(fine, "promtool check metrics refused:\n{said}\n{before}");
    assert_eq!(metric(&before, "hnroot_staged").as_deref(), Some("0"));
    assert_eq!(
        metric(&before, "hnroot_boot_state{state=\"committed\"}").as_deref(),
        Some("1")
    );
    assert_eq!(metric(&before, "hnroot_last_stage_bytes"), None);

    // --dry-run: what would happen, nothing written.
    let out = stage(&["--dry-run"]);
    assert!(out.status.success(), "{}", text_of(&out));
    let ev = events(&out);
    let would = ev
        .iter()
        .find(|e| e["event"] == "would-stage")
        .unwrap_or_else(|| panic!("no would-stage event: {}", text_of(&out)));
    assert_eq!(
        (would["uuid"].as_str(), would["version"].as_str()),
        (Some(B), Some("fleet 2"))
    );
    assert!(!hp.join("hn-root-new.img").exists());

    // The stage: its staged event carries the version and the bytes fetched.
    let out = stage(&[]);
    assert!(out.status.success(), "{}", text_of(&out));
    let ev = events(&out);
    let staged = ev.iter().find(|e| e["event"] == "staged").unwrap();
    let size = std::fs::metadata(&v2).unwrap().len();
    assert_eq!(staged["bytes_fetched"].as_u64(), Some(size));
    assert_eq!(staged["version"].as_str(), Some("fleet 2"));

    // Again: refused with the code an orchestrator maps to "nothing to change".
    let out = stage(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text_of(&out));
    let ev = events(&out);
    let refused = ev
        .iter()
        .find(|e| e["event"] == "refused")
        .unwrap_or_else(|| panic!("no refused event: {}", text_of(&out)));
    assert_eq!(
        (refused["code"].as_str(), refused["existing"].as_str()),
        (Some("duplicate-uuid"), Some("hn-root-new.img"))
    );

    let out = dir.path().join("node-exporter/hnroot.prom");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    ok(&[&["metrics", "--out", out.to_str().unwrap()], &loc[..]].concat());
    let after = std::fs::read_to_string(&out).unwrap();
    let (fine, said) = promtool(&after);
    assert!(fine, "promtool check metrics refused:\n{said}\n{after}");
    assert_eq!(metric(&after, "hnroot_staged").as_deref(), Some("1"));
    assert_eq!(
        metric(
            &after,
            &format!(
                "hnroot_staged_image_info{{file=\"hn-root-new.img\",uuid=\"{B}\",version=\"fleet 2\",image_version=\"2\"}}"
            )
        )
        .as_deref(),
        Some("1"),
        "{after}"
    );
    assert_eq!(
        metric(&after, "hnroot_last_stage_bytes"),
        Some(size.to_string())
    );
    // Only the file itself is left in the directory: the temporary one was renamed.
    let names: Vec<_> = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["hnroot.prom"]);
}

/// The alerting rules the README shows (`packaging/prometheus/hnroot-alerts.yml`) are valid for
/// Prometheus, and every metric they use is one `hnroot metrics` writes.
#[test]
fn the_alert_rules_pass_promtool_and_use_metrics_that_exist() {
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging/prometheus/hnroot-alerts.yml");
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool runs (Debian package prometheus; cargo xtask deps)");
    assert!(out.status.success(), "{}", text_of(&out));
    let dir = tempfile::tempdir().unwrap();
    let hp = dir.path().join("hostpart");
    std::fs::create_dir(&hp).unwrap();
    image(&hp.join("hn-root.img"), A);
    let state = dir.path().join("bootstate");
    let loc = [
        "--hostpart",
        hp.to_str().unwrap(),
        "--bootstate",
        state.to_str().unwrap(),
    ];
    ok(&[&["bootstate", "init"], &loc[..]].concat());
    let metrics = ok(&[&["metrics"], &loc[..]].concat());
    let text = std::fs::read_to_string(&rules).unwrap();
    let used: Vec<&str> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("hnroot_"))
        .collect();
    assert!(used.len() >= 4, "{used:?}");
    for name in used {
        assert!(
            metrics.contains(&format!("# TYPE {name} ")),
            "the rules use {name}, which hnroot metrics does not write:\n{metrics}"
        );
    }
}
