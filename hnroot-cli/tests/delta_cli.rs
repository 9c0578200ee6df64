//! `hnroot publish` and delta staging end to end: real ext4 images made by `mkfs.ext4 -d`,
//! signed with the `minisign` tool, served over HTTP on 127.0.0.1 by this test's server; the
//! stage takes from hostpart's images what they hold and fetches the rest, checked chunk by
//! chunk and verified whole. A tampered index is refused (the whole image is downloaded
//! instead), a changed chunk in the store and a server that answers another range stop the
//! stage before anything is published.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use support::*;

/// A hostpart holding v1 (UUID A), and v2 (UUID B: the same bulk, another UUID and version)
/// published with its signed index in `served/`.
struct Rig {
    _dir: tempfile::TempDir,
    hostpart: PathBuf,
    state: PathBuf,
    trusted: PathBuf,
    built: PathBuf,
    served: PathBuf,
}

const MIB: u64 = 16;

impl Rig {
    fn new() -> Rig {
        Rig::published(&[])
    }

    /// The rig with v2 published by `hnroot publish ... EXTRA`.
    fn published(extra: &[&str]) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let hostpart = d.join("hostpart");
        std::fs::create_dir_all(&hostpart).unwrap();
        image_sized(&hostpart.join("hn-root.img"), A, "1", MIB);
        let state = d.join("bootstate");
        let k = keys(d, "publisher");
        let trusted = trust(d, &k);
        let built = d.join("built");
        std::fs::create_dir(&built).unwrap();
        let v2 = built.join("v2.img");
        image_sized(&v2, B, "2.0", MIB);
        sign(&v2, &k, "fleet 2.0");
        let served = d.join("served");
        let mut publish = vec![
            "publish",
            v2.to_str().unwrap(),
            "--out",
            served.to_str().unwrap(),
            "--sign-key",
            k.secret.to_str().unwrap(),
        ];
        publish.extend_from_slice(extra);
        let said = ok(&publish);
        assert!(said.contains("published v2.img"), "{said}");
        for f in [
            "v2.img",
            "v2.img.minisig",
            "v2.img.hnidx",
            "v2.img.hnidx.minisig",
        ] {
            assert!(served.join(f).is_file(), "publish wrote no {f}: {said}");
        }
        ok(&[
            "bootstate",
            "init",
            "--hostpart",
            hostpart.to_str().unwrap(),
            "--bootstate",
            state.to_str().unwrap(),
        ]);
        Rig {
            _dir: dir,
            hostpart,
            state,
            trusted,
            built,
            served,
        }
    }

    fn stage(&self, url: &str) -> std::process::Output {
        hnroot(&[
            "stage",
            "--json",
            "--hostpart",
            self.hostpart.to_str().unwrap(),
            "--bootstate",
            self.state.to_str().unwrap(),
            "--keys",
            self.trusted.to_str().unwrap(),
            "--timeout",
            "20",
            url,
        ])
    }

    fn staged(&self) -> Option<Vec<u8>> {
        std::fs::read(self.hostpart.join("hn-root-new.img")).ok()
    }
}

/// The JSON event `name` of a stage's output.
fn event(out: &std::process::Output, name: &str) -> Option<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == name)
}

fn flip_byte(path: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0xff], at).unwrap();
}

#[test]
fn a_stage_fetches_only_what_hostpart_lacks_and_the_server_sends_less_than_the_image() {
    let rig = Rig::new();
    let server = Server::start(rig.served.clone(), Behaviour::default());
    let out = rig.stage(&server.url("v2.img"));
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let staged = event(&out, "staged").unwrap_or_else(|| panic!("no staged event: {t}"));
    let size = MIB << 20;
    let fetched = staged["bytes_fetched"].as_u64().unwrap();
    let reused = staged["bytes_reused"].as_u64().unwrap();
    assert_eq!(staged["delta"], true, "{t}");
    assert!(reused > size / 4, "{t}");
    assert!(fetched < size / 4, "{t}");
    // What the server sent: the probe of the image, the signatures, the index and the chunks
    // it fetched; far less than the image.
    let served = server.body_bytes.load(Ordering::SeqCst);
    assert!(
        served < size / 2,
        "the server sent {served} bytes for a {size}-byte image: {t}"
    );
    assert!(
        rig.staged().unwrap() == std::fs::read(rig.built.join("v2.img")).unwrap(),
        "the staged image is not v2 byte for byte"
    );
}

#[test]
fn a_tampered_index_is_refused_and_the_whole_image_downloaded() {
    let rig = Rig::new();
    let index = rig.served.join("v2.img.hnidx");
    let len = std::fs::metadata(&index).unwrap().len();
    flip_byte(&index, len - 1);
    let server = Server::start(rig.served.clone(), Behaviour::default());
    let out = rig.stage(&server.url("v2.img"));
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let refused = event(&out, "index-refused").unwrap_or_else(|| panic!("{t}"));
    assert!(
        refused["why"]
            .as_str()
            .unwrap()
            .contains("does not verify with the key that signed the image"),
        "{t}"
    );
    assert_eq!(event(&out, "staged").unwrap()["delta"], false, "{t}");
    assert!(rig.staged().unwrap() == std::fs::read(rig.built.join("v2.img")).unwrap());
}

#[test]
fn a_changed_chunk_in_the_store_stops_the_stage_before_anything_is_published() {
    let rig = Rig::new();
    // A byte of v2 that hn-root.img does not hold (its os-release version): in a fetched
    // chunk. Found in the served image, then changed there.
    let v2 = std::fs::read(rig.served.join("v2.img")).unwrap();
    let needle = b"IMAGE_VERSION=2.0";
    let at = v2.windows(needle.len()).position(|w| w == needle).unwrap() as u64;
    flip_byte(&rig.served.join("v2.img"), at + 14);
    let server = Server::start(rig.served.clone(), Behaviour::default());
    let out = rig.stage(&server.url("v2.img"));
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("not the index's chunk"), "{t}");
    assert!(rig.staged().is_none(), "{t}");
}

#[test]
fn a_server_answering_another_range_is_not_used() {
    let rig = Rig::new();
    let server = Server::start(
        rig.served.clone(),
        Behaviour {
            misstate_range: true,
            ..Behaviour::default()
        },
    );
    let out = rig.stage(&server.url("v2.img"));
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("it answered with the range bytes 1-"), "{t}");
    assert!(rig.staged().is_none(), "{t}");
}

/// The chunker's (min, avg, max) an index names in its header.
fn index_sizes(index: &Path) -> (u32, u32, u32) {
    let b = std::fs::read(index).unwrap();
    let at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    (at(20), at(24), at(28))
}

/// A stage from the rig's index: delta, most of it reused, v2 byte for byte.
fn stages_by_delta(rig: &Rig) {
    let server = Server::start(rig.served.clone(), Behaviour::default());
    let out = rig.stage(&server.url("v2.img"));
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let staged = event(&out, "staged").unwrap_or_else(|| panic!("no staged event: {t}"));
    assert_eq!(staged["delta"], true, "{t}");
    let size = MIB << 20;
    assert!(staged["bytes_reused"].as_u64().unwrap() > size / 4, "{t}");
    assert!(staged["bytes_fetched"].as_u64().unwrap() < size / 4, "{t}");
    assert!(
        rig.staged().unwrap() == std::fs::read(rig.built.join("v2.img")).unwrap(),
        "the staged image is not v2 byte for byte"
    );
}

#[test]
fn chunk_avg_sets_the_index_s_sizes_and_a_stage_cuts_its_seeds_with_them() {
    let index = |rig: &Rig| rig.served.join("v2.img.hnidx");
    let default = Rig::new();
    assert_eq!(
        index_sizes(&index(&default)),
        (8 << 10, 32 << 10, 128 << 10)
    );
    let rig = Rig::published(&["--chunk-avg", "8"]);
    assert_eq!(index_sizes(&index(&rig)), (2 << 10, 8 << 10, 32 << 10));
    // A quarter of the chunks' size: about four times as many entries.
    let (small, large) = (
        std::fs::metadata(index(&rig)).unwrap().len(),
        std::fs::metadata(index(&default)).unwrap().len(),
    );
    assert!(
        small > 3 * large,
        "index at 8 KiB {small} bytes, at 32 KiB {large}"
    );
    stages_by_delta(&rig);
}

#[test]
fn an_index_with_the_sizes_before_32_kib_still_stages() {
    // 16/64/256 KiB: every index `hnroot publish` wrote before its default became 32 KiB.
    let rig = Rig::published(&["--chunk-avg", "64"]);
    assert_eq!(
        index_sizes(&rig.served.join("v2.img.hnidx")),
        (16 << 10, 64 << 10, 256 << 10)
    );
    stages_by_delta(&rig);
}

#[test]
fn a_chunk_avg_that_is_no_power_of_two_or_out_of_bounds_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let k = keys(d, "publisher");
    let v2 = d.join("v2.img");
    image_sized(&v2, B, "2.0", 4);
    sign(&v2, &k, "fleet 2.0");
    let served = d.join("served");
    for (avg, said) in [
        ("48", "not a power of two"),
        ("0", "not a power of two"),
        ("2", "are not 1024 <= min <= avg <= max"),
        ("8192", "avg <= 4194304"),
        ("4194304", "over 4 GiB"),
    ] {
        let out = hnroot(&[
            "publish",
            v2.to_str().unwrap(),
            "--out",
            served.to_str().unwrap(),
            "--sign-key",
            k.secret.to_str().unwrap(),
            "--chunk-avg",
            avg,
        ]);
        let t = text(&out);
        assert!(!out.status.success(), "--chunk-avg {avg}: {t}");
        assert!(t.contains(&format!("--chunk-avg {avg}: ")), "{t}");
        assert!(t.contains(said), "--chunk-avg {avg}: {t}");
        assert!(t.contains("nothing was published"), "{t}");
        assert!(
            !served.exists(),
            "--chunk-avg {avg} wrote {}",
            served.display()
        );
    }
}
