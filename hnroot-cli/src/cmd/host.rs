//! `hnroot host ...`: this server's identity, kept in its host state on hostpart
//! (`/hostpart/data/host`, see `hnroot_core::identity`).
//!
//! * `hnroot host show`: what the host state holds, and the identity plan of the next boot.
//! * `hnroot host keys`: create the missing SSH host keys in the host state with the image's
//!   `ssh-keygen` (run by `hnroot-host-keys.service` before sshd).
//! * `hnroot host sync`: compare the host state with its copy in the shared repository
//!   (`/warehouse/hosts/<hostname>/`): take what only the repository has, publish what only
//!   the host has, report conflicts and never overwrite either side (run by
//!   `hnroot-host-sync.service` once `/warehouse` is mounted).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use hnroot_core::cmdline;
use hnroot_core::hostname::Hostname;
use hnroot_core::hostsync::{self, MAX_SYNC_FILES, MAX_SYNC_FILE_BYTES};
use hnroot_core::identity::{self, Item, SSH_KEYS};
use hnroot_core::layout;
use hnroot_install::tool::run_with_hint;
use hnroot_linux::exec::{run_steps, OnFailure};
use hnroot_linux::fsat::{self, Kind};
use hnroot_linux::host_state::{self, HostObserved};
use hnroot_linux::hostpart::Hostpart;
use serde_json::{json, Value};

use crate::locate::{self, Location};
use crate::{say, warn};

/// `hnroot host ...`.
#[derive(clap::Subcommand, Debug)]
pub enum HostCommand {
    /// What this host's state on hostpart holds (hostname, machine ID, SSH host keys, network,
    /// Puppet, further files) and how the next boot projects it.
    Show(ShowArgs),
    /// Create the SSH host keys missing from the host state (rsa, ecdsa, ed25519) with
    /// ssh-keygen; keys already there are never replaced. Run by hnroot-host-keys.service.
    Keys(KeysArgs),
    /// Sync the host state with the shared repository (WAREHOUSE/hosts/<hostname>/): take
    /// what only the repository has, publish what only the host has; a file both have
    /// differently is a conflict, reported, and neither side is changed. Run by
    /// hnroot-host-sync.service.
    Sync(SyncArgs),
}

/// Options of `hnroot host show`.
#[derive(clap::Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    loc: Location,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Options of `hnroot host keys`.
#[derive(clap::Args, Debug)]
pub struct KeysArgs {
    #[command(flatten)]
    loc: Location,
}

/// Options of `hnroot host sync`.
#[derive(clap::Args, Debug)]
pub struct SyncArgs {
    #[command(flatten)]
    loc: Location,
    /// Where the shared repository is mounted.
    #[arg(long, value_name = "DIR", default_value = layout::WAREHOUSE_MOUNT)]
    warehouse: PathBuf,
    /// Only say what would be done.
    #[arg(long)]
    dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// The host state's path on this machine.
fn host_path(loc: &Location) -> PathBuf {
    loc.hostpart.join(layout::HOST_DIR)
}

/// The identity plan the next boot would carry out, as its lines, its record and JSON.
pub struct IdentityView {
    /// The steps, in words.
    pub steps: Vec<String>,
    /// JSON of the plan.
    pub json: Value,
    /// The notes' sentences.
    pub notes: Vec<String>,
    /// What is not projected, one line each.
    pub refused: Vec<String>,
}

/// Plan the next boot's identity work from what is on `hostpart` now: the running root is
/// looked at when `hostpart` is the running system's.
pub fn identity_view(loc: &Location, hostpart: &Hostpart) -> Result<(HostObserved, IdentityView)> {
    plan_view(loc, hostpart)
}

fn plan_view(loc: &Location, hostpart: &Hostpart) -> Result<(HostObserved, IdentityView)> {
    // The running root is looked at when hostpart is the running system's.
    let root = (loc.hostpart == Path::new(layout::HOSTPART_MOUNT)).then_some(Path::new("/"));
    let inputs = host_state::Inputs::gather(hostpart, root, Path::new("/sys"), Path::new("/dev"))
        .with_context(|| format!("cannot look at {}", host_path(loc).display()))?;
    let cmdline_text = locate::running_cmdline();
    let params = cmdline::parse(&cmdline_text);
    let view = inputs.with_plan(params.hostname, view_of);
    Ok((inputs.observed, view))
}

fn view_of(plan: &identity::IdentityPlan<'_>) -> IdentityView {
    let steps = host_state::describe(plan);
    let refused: Vec<String> = plan
        .refused
        .iter()
        .map(host_state::describe_refused)
        .collect();
    let json = json!({
        "record": plan.record().to_string(),
        "steps": plan.steps.iter().map(|s| json!({ "step": s.code(), "text": s.to_string() })).collect::<Vec<_>>(),
        "refused": refused,
        "notes": plan.notes.sentences().collect::<Vec<_>>(),
        "note_codes": plan.notes.codes().collect::<Vec<_>>(),
    });
    let notes = plan.notes.sentences().map(str::to_owned).collect();
    IdentityView {
        steps,
        json,
        notes,
        refused,
    }
}

fn entry_of(observed: &HostObserved, item: Item) -> identity::Entry {
    observed
        .items
        .iter()
        .find(|(i, _)| *i == item)
        .map_or(identity::Entry::Absent, |(_, e)| *e)
}

fn show(args: &ShowArgs) -> Result<()> {
    let hostpart = locate::open_hostpart(&args.loc)?;
    let (observed, plan) = identity_view(&args.loc, &hostpart)?;
    let path = host_path(&args.loc);
    let keys: Vec<&str> = match hostpart_ssh(&hostpart) {
        Some(dir) => SSH_KEYS
            .iter()
            .filter(|(_, f)| matches!(fsat::kind(&dir, f), Ok(Kind::File(_))))
            .map(|(t, _)| *t)
            .collect(),
        None => Vec::new(),
    };
    let trimmed = |t: &Option<String>| t.as_deref().map(|s| s.trim().to_owned());
    if args.json {
        let items: serde_json::Map<String, Value> = observed
            .items
            .iter()
            .map(|(i, e)| (i.code().to_owned(), json!(format!("{e:?}").to_lowercase())))
            .collect();
        let v = json!({
            "host_state": path.display().to_string(),
            "present": observed.dir == identity::Entry::Dir,
            "hostname": trimmed(&observed.hostname),
            "machine_id": trimmed(&observed.machine_id),
            "ssh_keys": keys,
            "items": items,
            "files": observed.files,
            "files_skipped": observed.files_skipped,
            "identity": plan.json,
        });
        say!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    say!("host state {}:", path.display());
    if observed.dir != identity::Entry::Dir {
        say!("  none yet: the next boot creates this server's identity (first boot)");
    } else {
        for item in Item::ALL {
            let e = entry_of(&observed, item);
            let value = match item {
                Item::Hostname => trimmed(&observed.hostname),
                Item::MachineId => trimmed(&observed.machine_id),
                Item::Ssh if e == identity::Entry::Dir => Some(if keys.is_empty() {
                    "no keys yet".to_owned()
                } else {
                    keys.join(", ")
                }),
                _ => None,
            };
            let seen = match e {
                identity::Entry::Absent => "-".to_owned(),
                identity::Entry::File => value.unwrap_or_else(|| "file".into()),
                identity::Entry::Dir => value.unwrap_or_else(|| "directory".into()),
                identity::Entry::Other => "NOT A FILE OR DIRECTORY".into(),
            };
            say!("  {:<20} {seen}", item.host_path());
        }
        for f in &observed.files {
            say!("  {:<20} -> /{f}", format!("{}/{f}", identity::FILES_DIR));
        }
    }
    say!("next boot's identity steps:");
    for (i, s) in plan.steps.iter().enumerate() {
        say!("  {}. {s}", i + 1);
    }
    for r in &plan.refused {
        say!("  not projected: {r}");
    }
    for n in &plan.notes {
        say!("  note: {n}");
    }
    Ok(())
}

fn hostpart_ssh(hostpart: &Hostpart) -> Option<OwnedFd> {
    let dir = host_state::open_dir(hostpart).ok().flatten()?;
    fsat::open_dir(&dir, Item::Ssh.host_path()).ok().flatten()
}

/// What to check when ssh-keygen cannot be started.
const SSH_KEYGEN_HINT: &str = "is openssh-client installed?";

/// The host state's hostname, for key comments and the repository's directory name.
fn hostname_of(hostpart: &Hostpart) -> Option<Hostname> {
    let dir = host_state::open_dir(hostpart).ok().flatten()?;
    let (data, more) = fsat::read_file(&dir, Item::Hostname.host_path(), 4096).ok()?;
    if more {
        return None;
    }
    Hostname::parse(std::str::from_utf8(&data).ok()?).ok()
}

fn keys(args: &KeysArgs) -> Result<()> {
    let hostpart = locate::open_hostpart(&args.loc)?;
    let host = host_state::open_dir(&hostpart)?.with_context(|| {
        format!(
            "{} does not exist: hnroot-init creates it at boot",
            host_path(&args.loc).display()
        )
    })?;
    let ssh = fsat::make_dir(&host, Item::Ssh.host_path(), 0o700)
        .with_context(|| format!("cannot create {}/ssh", host_path(&args.loc).display()))?;
    let ssh_path = host_path(&args.loc).join(Item::Ssh.host_path());
    let comment = format!(
        "root@{}",
        hostname_of(&hostpart).map_or_else(|| "hnroot".to_owned(), |h| h.to_string())
    );
    let mut made = 0;
    for (kind, file) in SSH_KEYS {
        if let Kind::File(_) = fsat::kind(&ssh, file)? {
            say!("hnroot: {file}: there");
            continue;
        }
        let temp = format!(".{file}{}", fsat::TEMP_SUFFIX);
        let temp_pub = format!("{temp}.pub");
        fsat::unlink(&ssh, &temp)?;
        fsat::unlink(&ssh, &temp_pub)?;
        run_with_hint(
            Command::new("ssh-keygen")
                .args(["-q", "-t", kind, "-N", "", "-C", &comment, "-f"])
                .arg(ssh_path.join(&temp)),
            SSH_KEYGEN_HINT,
        )?;
        // The public key first: a private key in place means the pair is complete.
        fsat::rename(&ssh, &temp_pub, &format!("{file}.pub"), true)
            .with_context(|| format!("cannot put {file}.pub in place"))?;
        fsat::rename(&ssh, &temp, file, false)
            .with_context(|| format!("cannot put {file} in place"))?;
        fsat::sync_dir(&ssh)?;
        let fingerprint = run_with_hint(
            Command::new("ssh-keygen")
                .arg("-l")
                .arg("-f")
                .arg(ssh_path.join(format!("{file}.pub"))),
            SSH_KEYGEN_HINT,
        )
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|e| format!("(no fingerprint: {e})"));
        say!("hnroot: created {file}: {fingerprint}");
        if let Some(note) = host_state::log(&hostpart, &format!("created {file} {fingerprint}")) {
            warn!("hnroot: {note}");
        }
        made += 1;
    }
    say!(
        "hnroot: {made} SSH host key(s) created in {}",
        ssh_path.display()
    );
    Ok(())
}

/// One path of a sync: the core's judgement.
struct SyncStep {
    path: String,
    action: hostsync::Action,
}

/// One path of a sync, carried out: what was done, or why not.
struct Synced {
    step: SyncStep,
    ok: bool,
    text: String,
}

/// Why a path of a sync was not brought in line.
#[derive(Debug)]
enum SyncProblem {
    /// The core judged it a conflict or not a file: reported, nothing written.
    Judged(hostsync::Action),
    /// The copy failed.
    Copy(anyhow::Error),
}

impl std::fmt::Display for SyncProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncProblem::Judged(action) => action.fmt(f),
            SyncProblem::Copy(e) => write!(f, "{e:#}"),
        }
    }
}

/// Carry out one path of a sync (a dry run says what it would do).
fn sync_one(
    step: &SyncStep,
    local: &OwnedFd,
    remote: Option<&OwnedFd>,
    dry_run: bool,
) -> Result<String, SyncProblem> {
    let action = step.action;
    let copied = match (action, remote, dry_run) {
        (hostsync::Action::Take | hostsync::Action::Publish, _, true) => {
            return Ok(format!("would be {action}"))
        }
        (hostsync::Action::Take, Some(rd), false) => copy_file(rd, local, &step.path),
        (hostsync::Action::Publish, Some(rd), false) => copy_file(local, rd, &step.path),
        (hostsync::Action::Conflict | hostsync::Action::NotAFile, _, _) => {
            return Err(SyncProblem::Judged(action))
        }
        _ => Ok(()),
    };
    copied
        .map(|()| action.to_string())
        .map_err(SyncProblem::Copy)
}

/// Whether two regular files (relative to two directories) have the same contents.
fn same_contents(a: &OwnedFd, b: &OwnedFd, rel: &str) -> Result<bool> {
    let (pa, na) = fsat::split(rel);
    let open = |d: &OwnedFd| -> Result<std::fs::File> {
        let dir = match pa {
            Some(p) => fsat::open_path(d, p)?.context("vanished")?,
            None => fsat::open_dir(d, ".")?.context("vanished")?,
        };
        Ok(fsat::open_file(&dir, na)?)
    };
    let (mut fa, mut fb) = (open(a)?, open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    use std::io::Read;
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// Copy the regular file `rel` from `from` to `to` (exclusively: never replacing), whole, with
/// its mode: through a new file beside it, synced and renamed into place, or not at all (a file
/// larger than [`MAX_SYNC_FILE_BYTES`] is refused naming the limit). Missing directories are
/// made (0700 under `ssh/`, else 0755).
fn copy_file(from: &OwnedFd, to: &OwnedFd, rel: &str) -> Result<()> {
    let (parent, name) = fsat::split(rel);
    let src_dir = match parent {
        Some(p) => fsat::open_path(from, p)?.context("vanished")?,
        None => fsat::open_dir(from, ".")?.context("vanished")?,
    };
    let mut file = fsat::open_file(&src_dir, name)?;
    let meta = file.metadata()?;
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o7777
    };
    if meta.len() > MAX_SYNC_FILE_BYTES {
        bail!(
            "{} bytes, more than a sync copies ({MAX_SYNC_FILE_BYTES} bytes): neither side \
             changed; copy it by hand",
            meta.len()
        );
    }
    let dir_mode = if rel.starts_with("ssh/") {
        0o700
    } else {
        0o755
    };
    let dst_dir = match parent {
        Some(p) => fsat::make_path(to, p, dir_mode)?,
        None => fsat::open_dir(to, ".")?.context("vanished")?,
    };
    fsat::write_from(
        &dst_dir,
        name,
        &mut file,
        fsat::Meta::mode(mode),
        false,
        MAX_SYNC_FILE_BYTES,
    )
    .map_err(|e| anyhow::anyhow!("{e}; neither side changed"))?;
    Ok(())
}

/// The two sides of a sync: this host's state and its directory in the shared repository.
struct SyncSides {
    /// The host's name: its directory in the repository.
    name: Hostname,
    local: OwnedFd,
    /// The host's directory there (`None` in a dry run when it does not exist yet).
    remote: Option<OwnedFd>,
    remote_path: PathBuf,
}

/// Open both sides (`hosts/<hostname>` made unless a dry run).
fn sync_sides(args: &SyncArgs, hostpart: &Hostpart) -> Result<SyncSides> {
    let hosts = args.warehouse.join(layout::WAREHOUSE_HOSTS);
    // O_DIRECTORY: anything else (a FIFO on a shared filesystem) is refused, never opened.
    let opened = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&hosts)
    };
    let hosts_dir: OwnedFd = match opened {
        Ok(f) => f.into(),
        _ => bail!(
            "{} is not a directory: no shared repository to sync with (is it mounted?)",
            hosts.display()
        ),
    };
    let name = hostname_of(hostpart).with_context(|| {
        format!(
            "{}/hostname holds no valid hostname: cannot tell which directory of {} is this host's",
            host_path(&args.loc).display(),
            hosts.display()
        )
    })?;
    let local = match host_state::open_dir(hostpart)? {
        Some(d) => d,
        None => bail!("{} does not exist", host_path(&args.loc).display()),
    };
    let remote = if args.dry_run {
        fsat::open_dir(&hosts_dir, name.as_str())?
    } else {
        Some(fsat::make_dir(&hosts_dir, name.as_str(), 0o700)?)
    };
    Ok(SyncSides {
        remote_path: hosts.join(name.as_str()),
        name,
        local,
        remote,
    })
}

/// Every path on either side, judged by the core.
fn sync_steps(sides: &SyncSides) -> Vec<SyncStep> {
    let local_files = host_state::list_tree(&sides.local, MAX_SYNC_FILES);
    let remote_files = sides
        .remote
        .as_ref()
        .map(|r| host_state::list_tree(r, MAX_SYNC_FILES))
        .unwrap_or_default();
    let mut paths: Vec<&str> = local_files
        .iter()
        .chain(&remote_files)
        .map(|(p, _)| p.as_str())
        .collect();
    paths.sort();
    paths.dedup();
    let side = |list: &[(String, Kind)], p: &str| match list.iter().find(|(q, _)| q == p) {
        None => hostsync::Side::Absent,
        Some((_, Kind::File(_))) => hostsync::Side::File,
        Some(_) => hostsync::Side::Other,
    };
    paths
        .into_iter()
        .map(|p| {
            let (l, r) = (side(&local_files, p), side(&remote_files, p));
            let same = match (&sides.remote, l, r) {
                (Some(rd), hostsync::Side::File, hostsync::Side::File) => {
                    same_contents(&sides.local, rd, p).unwrap_or(false)
                }
                _ => false,
            };
            SyncStep {
                path: p.to_owned(),
                action: hostsync::judge(p, l, r, same),
            }
        })
        .collect()
}

fn sync(args: &SyncArgs) -> Result<bool> {
    let hostpart = locate::open_hostpart(&args.loc)?;
    let _lock = hostpart.lock()?;
    let sides = sync_sides(args, &hostpart)?;
    let steps = sync_steps(&sides);
    let mut outcomes = Vec::with_capacity(steps.len());
    run_steps(
        &steps,
        OnFailure::GoOn,
        |step| sync_one(step, &sides.local, sides.remote.as_ref(), args.dry_run),
        |r| {
            outcomes.push(match r.outcome {
                Ok(t) => (true, t.to_owned()),
                Err(t) => (false, t.to_owned()),
            })
        },
    );
    let judged: Vec<Synced> = steps
        .into_iter()
        .zip(outcomes)
        .map(|(step, (ok, text))| Synced { step, ok, text })
        .collect();
    let moved: Vec<String> = judged
        .iter()
        .filter(|j| {
            j.ok && matches!(
                j.step.action,
                hostsync::Action::Take | hostsync::Action::Publish
            )
        })
        .map(|j| format!("{} {}", j.step.action.code(), j.step.path))
        .collect();
    if !args.dry_run && !moved.is_empty() {
        let line = format!(
            "sync with {}: {}",
            sides.remote_path.display(),
            moved.join(", ")
        );
        if let Some(note) = host_state::log(&hostpart, &line) {
            warn!("hnroot: {note}");
        }
    }
    report_sync(args, &sides, &judged);
    Ok(judged.iter().all(|j| j.ok))
}

/// What a sync did, path by path (JSON or lines), and a summary.
fn report_sync(args: &SyncArgs, sides: &SyncSides, judged: &[Synced]) {
    let problems = judged.iter().filter(|j| !j.ok).count();
    if args.json {
        let v = json!({
            "host": sides.name.as_str(),
            "repository": sides.remote_path.display().to_string(),
            "dry_run": args.dry_run,
            "files": judged.iter().map(|j| json!({
                "path": j.step.path,
                "action": j.step.action.code(),
                "ok": j.ok,
                "text": j.text,
            })).collect::<Vec<_>>(),
            "problems": problems,
        });
        say!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return;
    }
    for j in judged {
        match (j.ok, j.step.action) {
            (true, hostsync::Action::InSync) => {}
            (true, _) => say!("hnroot: {}: {}", j.step.path, j.text),
            (false, _) => warn!("hnroot: {}: {}", j.step.path, j.text),
        }
    }
    let count = |a: hostsync::Action| judged.iter().filter(|j| j.step.action == a).count();
    say!(
        "hnroot: host state {} and {}: {} in sync, {} taken, {} published, {problems} problem(s)",
        host_path(&args.loc).display(),
        sides.remote_path.display(),
        count(hostsync::Action::InSync),
        count(hostsync::Action::Take),
        count(hostsync::Action::Publish),
    );
}

/// `hnroot host`.
pub fn host(cmd: &HostCommand) -> ExitCode {
    let result = match cmd {
        HostCommand::Show(args) => show(args).map(|()| true),
        HostCommand::Keys(args) => keys(args).map(|()| true),
        HostCommand::Sync(args) => sync(args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            warn!("hnroot: {e:#}");
            ExitCode::from(2)
        }
    }
}
