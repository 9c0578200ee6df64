//! util-linux's own blkid test corpus: every filesystem image of a type hnroot knows gives
//! exactly the TYPE, LABEL, LABEL_FATBOOT and UUID of its `expected/` file; every other image is
//! reported as unknown (never as one of our types); the partition table images give the
//! expected partitions. The corpus is Debian's `util-linux` source package at the installed
//! version, fetched by `cargo xtask blkid-corpus` (and by `cargo xtask test`, which passes its
//! directory in `HNROOT_BLKID_CORPUS` and requires it). Images are decompressed at test time
//! with `xz -dc` into a temporary directory.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use hnroot_core::probe::{
    FsInfo, FsOutcome, FsProber, FsType, PartitionKind, ProbeStep, PtOutcome, PtProber,
    MAX_FS_READS,
};
use hnroot_core::PartUuid;

/// Filesystem images in util-linux 2.38.1's corpus (Debian 12); a change means the corpus
/// changed: look at it.
const FS_IMAGES: usize = 109;
/// Partition table images in it.
const PT_IMAGES: usize = 7;

/// The corpus directory (`expected/`, `images-fs/`, `images-pt/`), or `None` when it was not
/// fetched and nothing requires it: then the corpus tests say so in one line and pass.
fn corpus() -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("HNROOT_BLKID_CORPUS") else {
        assert!(
            std::env::var_os("HNROOT_REQUIRE_BLKID_CORPUS").is_none(),
            "HNROOT_REQUIRE_BLKID_CORPUS is set but HNROOT_BLKID_CORPUS is not"
        );
        eprintln!(
            "probe_corpus: skipped: util-linux's blkid corpus is not here; `cargo xtask \
             blkid-corpus` fetches it and prints the directory to pass as HNROOT_BLKID_CORPUS \
             (`cargo xtask test` does both)"
        );
        return None;
    };
    let dir = PathBuf::from(dir);
    for part in ["expected", "images-fs", "images-pt"] {
        assert!(
            dir.join(part).is_dir(),
            "HNROOT_BLKID_CORPUS={}: no {part}/ there (expected/, images-fs/, images-pt/)",
            dir.display()
        );
    }
    Some(dir)
}

/// Decompress `xz` into `dir`, returning the image path.
fn unxz(xz: &Path, dir: &Path) -> PathBuf {
    let name = xz
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches(".xz");
    let out = dir.join(name);
    let file = File::create(&out).unwrap();
    let status = Command::new("xz")
        .arg("-dc")
        .arg(xz)
        .stdout(file)
        .status()
        .expect("run xz");
    assert!(status.success(), "xz -dc {} failed", xz.display());
    out
}

fn read_at(file: &File, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => panic!("read: {e}"),
        }
    }
    buf.truncate(got);
    buf
}

fn probe_fs(path: &Path) -> (FsOutcome, u32) {
    let file = File::open(path).unwrap();
    let size = file.metadata().unwrap().len();
    let mut prober = FsProber::new(size);
    let mut reads = 0;
    loop {
        match prober.step() {
            ProbeStep::Read(r) => {
                reads += 1;
                assert!(reads <= MAX_FS_READS, "prober does not finish");
                prober.feed(&read_at(&file, r.offset, r.len));
            }
            ProbeStep::Done(out) => return (out, reads),
        }
    }
}

/// Probe `path` step by step, asking [`FsProber::may_find`] before every read whether a search
/// for `wanted` may stop there: a stop is sound only when the finished probe does not find a
/// filesystem `wanted` accepts. Returns the reads a search for `wanted` makes, or the problem.
fn early_stop_is_sound(
    path: &Path,
    what: &str,
    wanted: impl Fn(&FsInfo) -> bool,
) -> Result<u32, String> {
    let file = File::open(path).unwrap();
    let size = file.metadata().unwrap().len();
    let mut prober = FsProber::new(size);
    let mut stopped_after = None;
    let mut reads = 0;
    let outcome = loop {
        if stopped_after.is_none() && !prober.may_find(&wanted) {
            stopped_after = Some(reads);
        }
        match prober.step() {
            ProbeStep::Read(r) => {
                reads += 1;
                assert!(reads <= MAX_FS_READS, "prober does not finish");
                prober.feed(&read_at(&file, r.offset, r.len));
            }
            ProbeStep::Done(out) => break out,
        }
    };
    let found = outcome.info().is_some_and(&wanted);
    match stopped_after {
        Some(after) if found => Err(format!(
            "a search for {what} would stop after {after} reads, yet the whole probe finds it: \
             {outcome:?}"
        )),
        Some(after) => Ok(after),
        None if !found && prober.may_find(&wanted) => Err(format!(
            "the finished probe ({outcome:?}) does not have {what}, yet may_find still says it may"
        )),
        None => Ok(reads),
    }
}

/// `KEY=value` lines of an expected file.
fn expected(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// blkid's `_ENC` encoding: `\xNN` escapes, everything else literal.
fn decode_enc(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') && i + 3 < b.len() {
            out.push(u8::from_str_radix(&s[i + 2..i + 4], 16).unwrap());
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// `blkid -p -o export` of an image, as a map.
fn blkid_export(path: &Path) -> BTreeMap<String, String> {
    let out = Command::new("blkid")
        .args(["-p", "-o", "export"])
        .arg(path)
        .output()
        .expect("run blkid (util-linux)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `iso-multi-0-174-348-genisoimage` -> `low-probe-iso-multi-genisoimage-0`: the expected file
/// of a multi-session image's first session.
fn multi_session_name(name: &str) -> Option<String> {
    let (kind, rest) = name.split_once("-multi-")?;
    let mut parts: Vec<&str> = rest.split('-').collect();
    let tool = parts.pop()?;
    let first = parts.first()?;
    Some(format!("low-probe-{kind}-multi-{tool}-{first}"))
}

fn our_type(name: &str) -> Option<FsType> {
    FsType::ALL.into_iter().find(|t| t.as_str() == name)
}

#[test]
fn filesystem_images_match_blkid() {
    let Some(dir) = corpus() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut images: Vec<PathBuf> = std::fs::read_dir(dir.join("images-fs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".img.xz"))
        .collect();
    images.sort();
    let mut checked = 0;
    let mut ours = 0;
    let mut failures = Vec::new();
    for xz in &images {
        let name = xz
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches(".img.xz");
        // Multi-session images have one expected file per session (`-0`, `-174`, ...): the
        // first session is what a probe at offset 0 sees.
        let exp_path = [format!("low-probe-{name}")]
            .into_iter()
            .chain(multi_session_name(name))
            .map(|f| dir.join("expected").join(f))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{name}: no expected output in the corpus"));
        let exp = expected(&exp_path);
        let img = unxz(xz, tmp.path());
        let (got, reads) = probe_fs(&img);
        // A search by label or UUID that stops reading a device once it cannot match agrees
        // with the whole probe: for what the image has, and for what it has not.
        let mut searches = Vec::new();
        if let Some(info) = got.info() {
            if let Some(label) = info.label.clone() {
                searches.push(early_stop_is_sound(&img, "its own label", |i| {
                    i.is_labelled(label.as_bytes())
                }));
            }
            if let Some(uuid) = info.uuid {
                searches.push(early_stop_is_sound(&img, "its own UUID", |i| {
                    i.uuid == Some(uuid)
                }));
            }
        }
        searches.push(early_stop_is_sound(&img, "another label", |i| {
            i.is_labelled(b"hnroot-no-such-label")
        }));
        for search in &searches {
            if let Err(e) = search {
                failures.push(format!("{name}: {e}"));
            }
        }
        if let Some(Ok(other)) = searches.last() {
            if got.info().is_some() && *other >= reads && reads > 1 {
                // Not a failure: some formats need every read to know (FAT's label is in its
                // root directory). Shown so that the saving is visible.
                println!("{name:50} a search for another label reads all {reads}");
            }
        }
        std::fs::remove_file(&img).unwrap();
        checked += 1;
        let want_type = exp.get("ID_FS_TYPE").map(String::as_str).unwrap_or("");
        let summary = match &got {
            FsOutcome::Found(i) => format!(
                "{} label={:?} fatboot={:?} uuid={:?}",
                i.fs_type,
                i.label.as_ref().map(|l| l.to_string()),
                i.label_fatboot.as_ref().map(|l| l.to_string()),
                i.uuid.map(|u| u.to_string())
            ),
            other => format!("{other:?}"),
        };
        println!("{name:50} expected {want_type:18} got {summary} ({reads} reads)");
        match our_type(want_type) {
            Some(t) => {
                ours += 1;
                let FsOutcome::Found(info) = &got else {
                    failures.push(format!("{name}: expected {want_type}, got {got:?}"));
                    continue;
                };
                let label = exp.get("ID_FS_LABEL_ENC").map(|s| decode_enc(s));
                let fatboot = exp.get("ID_FS_LABEL_FATBOOT_ENC").map(|s| decode_enc(s));
                let uuid = exp.get("ID_FS_UUID").cloned();
                let checks = [
                    (
                        "TYPE",
                        Some(t.as_str().to_string()),
                        Some(info.fs_type.as_str().to_string()),
                    ),
                    (
                        "LABEL",
                        label.map(|l| format!("{l:?}")),
                        info.label.as_ref().map(|l| format!("{:?}", l.as_bytes())),
                    ),
                    (
                        "LABEL_FATBOOT",
                        fatboot.map(|l| format!("{l:?}")),
                        info.label_fatboot
                            .as_ref()
                            .map(|l| format!("{:?}", l.as_bytes())),
                    ),
                    ("UUID", uuid, info.uuid.map(|u| u.to_string())),
                ];
                for (field, want, have) in checks {
                    if want != have {
                        failures.push(format!("{name}: {field} expected {want:?}, got {have:?}"));
                    }
                }
            }
            None => {
                let agrees = match &got {
                    FsOutcome::Unknown => true,
                    // RAID, LVM and LUKS members: reported by name, as blkid does.
                    FsOutcome::Other(other) => other.as_str() == want_type,
                    _ => false,
                };
                if !agrees {
                    failures.push(format!(
                        "{name}: blkid says {want_type:?} (not ours), we said {got:?}"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "mismatches:\n{}", failures.join("\n"));
    assert_eq!(checked, FS_IMAGES, "the corpus changed size");
    println!("{checked} filesystem images checked, {ours} of hnroot's types");
}

/// One `#N: start size type ...` line of a `lowprobe-pt-*` file.
#[derive(Debug, PartialEq)]
struct ExpectedPart {
    number: u32,
    start: u64,
    size: u64,
    name: Option<String>,
    uuid: Option<String>,
    type_guid: Option<String>,
}

fn expected_parts(text: &str) -> Vec<ExpectedPart> {
    let quoted = |line: &str, key: &str| {
        let at = line.find(&format!("{key}='"))? + key.len() + 2;
        Some(line[at..at + line[at..].find('\'')?].to_string())
    };
    text.lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            let mut words = l.split_whitespace();
            let number = words.next().unwrap().trim_matches(|c| c == '#' || c == ':');
            ExpectedPart {
                number: number.parse().unwrap(),
                start: words.next().unwrap().parse().unwrap(),
                size: words.next().unwrap().parse().unwrap(),
                name: quoted(l, "name"),
                uuid: quoted(l, "uuid"),
                type_guid: quoted(l, "type"),
            }
        })
        .collect()
}

fn probe_pt(path: &Path) -> (PtOutcome, Vec<ExpectedPart>) {
    let file = File::open(path).unwrap();
    let size = file.metadata().unwrap().len();
    let mut prober = PtProber::new(size, 512);
    let out = loop {
        match prober.step() {
            ProbeStep::Read(r) => prober.feed(&read_at(&file, r.offset, r.len)),
            ProbeStep::Done(out) => break out,
        }
    };
    let as_expected = |p: hnroot_core::probe::Partition| ExpectedPart {
        number: p.number,
        start: p.start / 512,
        size: p.size / 512,
        name: p.name.map(|n| n.to_string()),
        uuid: p.partuuid.map(|u| u.to_string()),
        type_guid: match p.kind {
            PartitionKind::Gpt { type_guid, .. } => Some(PartUuid::Gpt(type_guid).to_string()),
            PartitionKind::Mbr { .. } => None,
        },
    };
    let parts = match out {
        PtOutcome::Gpt(t) => {
            let (off, len) = t.entries();
            let entries = read_at(&file, off, len);
            t.partitions(&entries).unwrap().map(as_expected).collect()
        }
        PtOutcome::Mbr(t) => {
            let mut parts: Vec<_> = t.primaries().map(as_expected).collect();
            if let Some(mut w) = t.logical() {
                loop {
                    match w.step() {
                        ProbeStep::Read(r) => w.feed(&read_at(&file, r.offset, r.len)),
                        ProbeStep::Done(Some(p)) => parts.push(as_expected(p)),
                        ProbeStep::Done(None) => break,
                    }
                }
            }
            parts
        }
        PtOutcome::ProtectiveMbrOnly | PtOutcome::None => Vec::new(),
    };
    (out, parts)
}

/// Where hnroot deliberately reads less than util-linux 2.38.1 on the partition-table corpus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PtDifference {
    /// A table type hnroot does not read: it must report no table (never a wrong one).
    NotRead,
    /// An MBR whose partitions from 5 on are BSD disklabel slices nested in a primary
    /// partition: hnroot reads the primaries only.
    NestedDisklabel,
}

/// Every partition-table image where hnroot differs from blkid, and why. hnroot finds hostpart
/// and the ESP on the disks of x86 servers, which carry GPT (or MBR); it reads nothing else.
const PT_DIFFERENCES: &[(&str, PtDifference, &str)] = &[
    (
        "atari-primary",
        PtDifference::NotRead,
        "Atari (AHDI) table: not a table an x86 server boots from",
    ),
    (
        "atari-xgm",
        PtDifference::NotRead,
        "Atari (AHDI, XGM extended) table: not a table an x86 server boots from",
    ),
    (
        "bsd",
        PtDifference::NotRead,
        "bare BSD disklabel: not a table an x86 server boots from",
    ),
    (
        "dos+bsd",
        PtDifference::NestedDisklabel,
        "partitions 5 and 6 are FreeBSD disklabel slices inside partition 2",
    ),
    (
        "sgi",
        PtDifference::NotRead,
        "SGI volume header: not a table an x86 server boots from",
    ),
    (
        "sun",
        PtDifference::NotRead,
        "Sun disklabel: not a table an x86 server boots from",
    ),
];

#[test]
fn partition_table_images_match_blkid() {
    let Some(dir) = corpus() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut images: Vec<String> = std::fs::read_dir(dir.join("images-pt"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".img.xz").map(str::to_owned))
        .collect();
    images.sort();
    assert_eq!(images.len(), PT_IMAGES, "the corpus changed: {images:?}");
    for (name, _, _) in PT_DIFFERENCES {
        assert!(
            images.iter().any(|i| i == name),
            "{name}: listed as a difference but not in the corpus"
        );
    }
    for image in &images {
        let text =
            std::fs::read_to_string(dir.join("expected").join(format!("lowprobe-pt-{image}")))
                .unwrap();
        let table = text
            .split(", ")
            .find_map(|f| f.strip_prefix("PT: "))
            .unwrap_or_else(|| panic!("{image}: no PT: in {text}"));
        let difference = PT_DIFFERENCES
            .iter()
            .find(|(n, _, _)| n == image)
            .map(|(_, d, why)| (*d, *why));
        let xz = dir.join("images-pt").join(format!("{image}.img.xz"));
        let img = unxz(&xz, tmp.path());
        let (out, parts) = probe_pt(&img);
        let (fs, _) = probe_fs(&img);
        let mut want = expected_parts(&text);
        println!(
            "{image}: blkid {table} with {} partitions; hnroot {out:?}",
            want.len()
        );
        match (table, &out, difference) {
            (_, PtOutcome::None, Some((PtDifference::NotRead, why))) => {
                assert!(
                    !want.is_empty(),
                    "{image}: listed as not read ({why}) but blkid finds nothing either"
                );
                want.clear();
            }
            (_, _, Some((PtDifference::NotRead, why))) => {
                panic!("{image}: hnroot does not read {table} tables ({why}), yet found {out:?}")
            }
            ("gpt", PtOutcome::Gpt(t), None) => {
                assert!(!t.from_backup());
                assert!(text.contains(&format!("id={}", t.disk_guid())), "{text}");
            }
            ("dos", PtOutcome::Mbr(t), d) => {
                assert!(text.contains(&format!("id={:08x}", t.disk_id)), "{text}");
                if let Some((PtDifference::NestedDisklabel, why)) = d {
                    let nested = want.iter().filter(|p| p.number > 4).count();
                    assert!(
                        nested > 0,
                        "{image}: listed as nested ({why}) but blkid has no slices"
                    );
                    want.retain(|p| p.number <= 4);
                }
            }
            _ => panic!("{image}: expected a {table} table, got {out:?}"),
        }
        for (got, want) in parts.iter().zip(&want) {
            assert_eq!(got, want, "{image}");
        }
        assert_eq!(parts.len(), want.len(), "{image}: {parts:?}");
        // The whole disk as blkid sees it (dos+bsd.img has a stale ext3 superblock in its
        // first sectors, which blkid reports next to the table).
        let blkid = blkid_export(&img);
        match (&fs, blkid.get("TYPE")) {
            (FsOutcome::Unknown, None) => {}
            (FsOutcome::Found(i), Some(t)) => {
                assert_eq!(i.fs_type.as_str(), t, "{image}");
                assert_eq!(
                    i.uuid.map(|u| u.to_string()).as_ref(),
                    blkid.get("UUID"),
                    "{image}"
                );
            }
            (FsOutcome::Unknown, Some(t)) if our_type(t).is_none() => {}
            _ => panic!("{image}: whole disk: blkid says {blkid:?}, we say {fs:?}"),
        }
        std::fs::remove_file(&img).unwrap();
    }
}
