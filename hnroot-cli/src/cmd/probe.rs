//! `hnroot probe [--json] PATH...`: what blkid would say about each block device or image
//! file (type, label, FAT boot label, UUID), and for a partitioned disk each partition's
//! number, offset, size, PARTLABEL, PARTUUID and filesystem. JSON keys are blkid's names in
//! lower case, plus hnroot's own `missing_bytes` for a filesystem that spans more than its
//! device or file holds (a truncated copy, which blkid reports as whole). Reads only; never
//! writes.

use std::path::PathBuf;
use std::process::ExitCode;

use hnroot_core::probe::{FsOutcome, Partition, PartitionKind};
use hnroot_core::PartUuid;
use hnroot_linux::probe::{Device, DiskReport};
use serde_json::{json, Map, Value};

/// Arguments of `hnroot probe`.
#[derive(clap::Args, Debug)]
pub struct ProbeArgs {
    /// Print JSON (one array, an object per path) instead of text.
    #[arg(long)]
    json: bool,
    /// Block devices or image files.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

/// blkid's filesystem tags for an outcome on `device_size` bytes, and `missing_bytes`.
fn fs_fields(fs: &FsOutcome, device_size: u64, out: &mut Map<String, Value>) {
    match fs {
        FsOutcome::Found(i) => {
            if let Some(missing) = i.missing_bytes(device_size) {
                out.insert("missing_bytes".into(), json!(missing));
            }
            out.insert("type".into(), json!(i.fs_type.as_str()));
            if let Some(l) = &i.label {
                out.insert("label".into(), json!(l.to_string()));
            }
            if let Some(l) = &i.label_fatboot {
                out.insert("label_fatboot".into(), json!(l.to_string()));
            }
            if let Some(u) = &i.uuid {
                out.insert("uuid".into(), json!(u.to_string()));
            }
        }
        FsOutcome::Other(t) => {
            out.insert("type".into(), json!(t.as_str()));
        }
        FsOutcome::Ambivalent(types) => {
            let names: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
            out.insert("ambivalent".into(), json!(names));
        }
        FsOutcome::Unknown => {}
    }
}

fn part_fields(p: &Partition, out: &mut Map<String, Value>) {
    out.insert("number".into(), json!(p.number));
    out.insert("offset".into(), json!(p.start));
    out.insert("size".into(), json!(p.size));
    if let Some(n) = &p.name {
        out.insert("partlabel".into(), json!(n.to_string()));
    }
    if let Some(u) = &p.partuuid {
        out.insert("partuuid".into(), json!(u.to_string()));
    }
    match p.kind {
        PartitionKind::Gpt { type_guid, .. } => {
            out.insert(
                "parttype".into(),
                json!(PartUuid::Gpt(type_guid).to_string()),
            );
        }
        PartitionKind::Mbr { sys_type, .. } => {
            out.insert("parttype".into(), json!(format!("0x{sys_type:x}")));
        }
    }
}

fn to_json(path: &str, r: &DiskReport) -> Value {
    let mut o = Map::new();
    o.insert("path".into(), json!(path));
    o.insert("size".into(), json!(r.size));
    fs_fields(&r.fs, r.size, &mut o);
    if let Some(t) = &r.table {
        o.insert("pttype".into(), json!(t.kind.as_str()));
        if let Some(u) = t.kind.ptuuid() {
            o.insert("ptuuid".into(), json!(u));
        }
        let parts: Vec<Value> = r
            .partitions
            .iter()
            .map(|(p, fs)| {
                let mut po = Map::new();
                part_fields(p, &mut po);
                fs_fields(fs, p.size, &mut po);
                Value::Object(po)
            })
            .collect();
        o.insert("partitions".into(), Value::Array(parts));
    }
    Value::Object(o)
}

/// `TYPE="vfat" LABEL="EFI-BOOT" ...`, blkid's export style on one line, and what a
/// filesystem lacks on `device_size` bytes.
fn fs_text(fs: &FsOutcome, device_size: u64) -> String {
    match fs {
        FsOutcome::Found(i) => {
            let mut s = format!("TYPE=\"{}\"", i.fs_type);
            if let Some(l) = &i.label {
                s.push_str(&format!(" LABEL=\"{l}\""));
            }
            if let Some(l) = &i.label_fatboot {
                s.push_str(&format!(" LABEL_FATBOOT=\"{l}\""));
            }
            if let Some(u) = &i.uuid {
                s.push_str(&format!(" UUID=\"{u}\""));
            }
            if let Some(missing) = i.missing_bytes(device_size) {
                s.push_str(&format!(
                    " (truncated: the filesystem spans {} bytes, {missing} of them are missing)",
                    i.size.unwrap_or(0)
                ));
            }
            s
        }
        FsOutcome::Other(t) => format!("TYPE=\"{t}\""),
        FsOutcome::Ambivalent(types) => {
            format!("ambivalent: more than one filesystem ({types}); blkid reports none")
        }
        FsOutcome::Unknown => "no filesystem".into(),
    }
}

fn to_text(path: &str, r: &DiskReport) -> String {
    let mut s = format!("{path}: size {} {}", r.size, fs_text(&r.fs, r.size));
    if let Some(t) = &r.table {
        s.push_str(&format!(" PTTYPE=\"{}\"", t.kind.as_str()));
        if let Some(u) = t.kind.ptuuid() {
            s.push_str(&format!(" PTUUID=\"{u}\""));
        }
    }
    s.push('\n');
    for (p, fs) in &r.partitions {
        s.push_str(&format!(
            "  {:>3} offset {} size {}",
            p.number, p.start, p.size
        ));
        if let Some(n) = &p.name {
            s.push_str(&format!(" PARTLABEL=\"{n}\""));
        }
        if let Some(u) = &p.partuuid {
            s.push_str(&format!(" PARTUUID=\"{u}\""));
        }
        s.push_str(&format!(" {}\n", fs_text(fs, p.size)));
    }
    s
}

/// Run `hnroot probe`: 0 when every path was read, 1 when one could not be.
pub fn run(args: &ProbeArgs) -> ExitCode {
    let mut failed = false;
    let mut reports = Vec::new();
    for path in &args.paths {
        let shown = path.display().to_string();
        match Device::open(path).and_then(|mut d| d.probe_disk()) {
            Ok(r) => {
                if args.json {
                    reports.push(to_json(&shown, &r));
                } else {
                    crate::say!("{}", to_text(&shown, &r).trim_end_matches('\n'));
                }
            }
            Err(e) => {
                crate::warn!("hnroot probe: {shown}: {e}; skipped");
                failed = true;
            }
        }
    }
    if args.json {
        match serde_json::to_string_pretty(&Value::Array(reports)) {
            Ok(text) => crate::say!("{text}"),
            Err(e) => {
                crate::warn!("hnroot probe: cannot write JSON: {e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
