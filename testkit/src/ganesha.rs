//! An NFSv4 server on the host's 127.0.0.1 for guests on QEMU's user network (they mount
//! `10.0.2.2:/warehouse` with `port=`): Debian's NFS-Ganesha with its VFS backend, in user
//! space (the build machine's kernel has no nfsd), one export of a directory under the suite's
//! work directory, its configuration, log and recovery state there too, run in the foreground
//! and stopped when dropped. TCP only, NFSv4 only (no rpcbind needed), no grace period (a fresh
//! server has no clients to recover), root not squashed (the guests' hnroot runs as root).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::nginx::wait_listening;

/// Bound on Ganesha's start (its port answering).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The path the export has in the NFSv4 pseudo filesystem.
pub const PSEUDO: &str = "/warehouse";

/// A running NFS-Ganesha.
#[derive(Debug)]
pub struct Ganesha {
    child: Child,
    /// The port on 127.0.0.1.
    pub port: u16,
    /// The exported directory.
    pub export: PathBuf,
    log: PathBuf,
}

impl Ganesha {
    /// Export `export` as [`PSEUDO`] on 127.0.0.1:`port`, with configuration and logs in `dir`.
    pub fn start(export: &Path, port: u16, dir: &Path) -> Result<Ganesha> {
        let dir = crate::buildenv::fresh_dir(dir)?;
        let recovery = dir.join("recovery");
        fs::create_dir_all(&recovery)?;
        let conf = dir.join("ganesha.conf");
        let log = dir.join("ganesha.log");
        fs::write(
            &conf,
            format!(
                "NFS_CORE_PARAM {{\n  Protocols = 4;\n  NFS_Port = {port};\n  Bind_addr = 127.0.0.1;\n  \
                 Enable_NLM = false;\n  Enable_RQUOTA = false;\n  Enable_UDP = false;\n}}\n\
                 NFSV4 {{\n  Graceless = true;\n  RecoveryBackend = fs;\n  RecoveryRoot = {};\n  \
                 Allow_Numeric_Owners = true;\n  Only_Numeric_Owners = true;\n}}\n\
                 NFS_KRB5 {{ Active_krb5 = false; }}\n\
                 EXPORT {{\n  Export_Id = 1;\n  Path = {};\n  Pseudo = {PSEUDO};\n  Access_Type = RW;\n  \
                 Squash = No_Root_Squash;\n  SecType = sys;\n  Protocols = 4;\n  Transports = TCP;\n  \
                 FSAL {{ Name = VFS; }}\n}}\n\
                 LOG {{ Default_Log_Level = WARN; }}\n",
                recovery.display(),
                export.display()
            ),
        )?;
        let mut child = Command::new("ganesha.nfsd")
            .arg("-F")
            .arg("-f")
            .arg(&conf)
            .arg("-L")
            .arg(&log)
            .arg("-p")
            .arg(dir.join("ganesha.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("ganesha.stderr"))?)
            .spawn()
            .context("cannot start ganesha.nfsd (Debian packages nfs-ganesha, nfs-ganesha-vfs; cargo xtask deps)")?;
        if let Err(e) = wait_listening("ganesha.nfsd", &mut child, port, START_TIMEOUT) {
            let _ = child.kill();
            let _ = child.wait();
            let said = fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = said.lines().rev().take(15).collect();
            return Err(e.context(format!(
                "ganesha's log {}:\n{}",
                log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )));
        }
        Ok(Ganesha {
            child,
            port,
            export: export.to_owned(),
            log,
        })
    }

    /// The fstab line a guest on QEMU's user network mounts the export with at `/warehouse`.
    pub fn guest_fstab_line(&self) -> String {
        format!(
            "10.0.2.2:{PSEUDO} /warehouse nfs4 vers=4.1,proto=tcp,port={},_netdev,nofail,\
             x-systemd.mount-timeout=60 0 0",
            self.port
        )
    }

    /// The server's log, for messages.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Ganesha {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
