//! The host-state reader: the identity plan from arbitrary host-state contents (what each
//! item is, the text of `hostname` and `machine-id`, the mirror tree's names, the boot's name
//! sources). Never panics, and never plans to create a file the host state has (a file that is
//! there but not valid is reported, never replaced); the machine ID is copied into the new
//! root only when it is valid or was just made; every mirror path bound is one the core
//! allows.

#![no_main]

use hnroot_core::hostname::Sources;
use hnroot_core::identity::{self, Entry, HostSeen, IdentityStep, Item, RootSeen, Source};
use hnroot_core::machineid::MachineId;
use libfuzzer_sys::fuzz_target;

fn entry(b: u8) -> Entry {
    match b % 4 {
        0 => Entry::Absent,
        1 => Entry::File,
        2 => Entry::Dir,
        _ => Entry::Other,
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 12 {
        return;
    }
    let (head, rest) = data.split_at(12);
    let text = String::from_utf8_lossy(rest);
    // The text in parts: hostname, machine-id, mirror names, parameter, serial, MACs.
    let mut parts = text.split('\u{0}');
    let hostname = parts.next();
    let machine_id = parts.next();
    let files: Vec<&str> = parts.next().unwrap_or("").split('\n').take(300).collect();
    let parameter = parts.next();
    let serial = parts.next();
    let macs: Vec<&str> = parts.next().unwrap_or("").split(' ').take(8).collect();
    let mut host = HostSeen {
        dir: entry(head[0]),
        hostname: if head[1] & 1 == 1 { hostname } else { None },
        machine_id: if head[1] & 2 == 2 { machine_id } else { None },
        ssh_keys: usize::from(head[2] % 5),
        files: &files,
        files_skipped: usize::from(head[3]),
        ..HostSeen::default()
    };
    for (i, item) in Item::ALL.into_iter().enumerate() {
        host = host.with(item, entry(head[4 + i]));
    }
    let root = RootSeen {
        sshd: match head[11] % 3 {
            0 => None,
            1 => Some(false),
            _ => Some(true),
        },
    };
    let sources = Sources {
        parameter,
        dmi_serial: serial,
        macs: &macs,
    };
    let random = (head[1] & 4 == 4).then_some([head[11]; 16]);
    let plan = identity::plan(&host, &root, &sources, random);
    let _ = plan.record().to_string();
    let there = |item: Item| host.dir == Entry::Dir && host.entry(item) != Entry::Absent;
    let created_id = plan
        .steps
        .iter()
        .any(|s| matches!(s, IdentityStep::CreateMachineId(_)));
    for step in &plan.steps {
        let _ = step.to_string();
        match step {
            IdentityStep::CreateHostname { .. } => assert!(!there(Item::Hostname), "{step}"),
            IdentityStep::CreateMachineId(_) => assert!(!there(Item::MachineId), "{step}"),
            IdentityStep::CopyMachineId => assert!(
                created_id || host.machine_id.is_some_and(|t| MachineId::parse(t).is_ok()),
                "{step}"
            ),
            IdentityStep::Bind(Source::Mirror(rel)) => {
                assert!(identity::mirror_path_allowed(rel), "{rel:?}")
            }
            _ => {}
        }
    }
});
