//! The host state's copy in a shared repository: when a cluster or network filesystem is
//! mounted at [`crate::layout::WAREHOUSE_MOUNT`] and holds `hosts/<hostname>/`, `hnroot host
//! sync` compares the host state with it file by file. What only the repository has is taken
//! (a replaced disk gets its network, Puppet and further files back); what only the host has is
//! published (a new server's identity, keys made at first boot); what both have alike is left;
//! what both have differently is a **conflict**: reported, and nothing is written on either side.
//! Local state is never overwritten.
//!
//! The driver lists both trees (regular files only, never following a link, bounded) and
//! compares contents; this module judges each path.

use core::fmt;

use crate::identity::{FILES_DIR, LOG_FILE, MAX_MIRROR_DEPTH, MAX_MIRROR_FILES};

/// Most files one sync looks at on either side: every item and the mirror tree, with room.
pub const MAX_SYNC_FILES: usize = 64 + MAX_MIRROR_FILES;

/// Largest file a sync copies (taken or published whole, or not at all: a file over this is
/// refused, naming the limit).
pub const MAX_SYNC_FILE_BYTES: u64 = 1 << 30;

/// Deepest path a sync walks into.
pub const MAX_SYNC_DEPTH: usize = MAX_MIRROR_DEPTH + 2;

/// One side's entry at a path.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Side {
    /// Nothing there.
    Absent,
    /// A regular file.
    File,
    /// Something else (a directory where the other side has a file, a link, a device).
    Other,
}

/// What a sync does with one path.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Action {
    /// Both have it alike.
    InSync,
    /// Only the repository has it: copy it into the host state.
    Take,
    /// Only the host has it: copy it into the repository.
    Publish,
    /// Both have it, differently: report; write nothing.
    Conflict,
    /// Not a regular file on one side: report; write nothing.
    NotAFile,
    /// Not host state (the host state's own log, a name outside the layout): left alone.
    Ignored,
}

impl Action {
    /// A stable one-word name for JSON and tests.
    pub const fn code(self) -> &'static str {
        match self {
            Action::InSync => "in-sync",
            Action::Take => "take",
            Action::Publish => "publish",
            Action::Conflict => "conflict",
            Action::NotAFile => "not-a-file",
            Action::Ignored => "ignored",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::InSync => "the same on both sides",
            Action::Take => "taken from the repository",
            Action::Publish => "published to the repository",
            Action::Conflict => {
                "CONFLICT: the host and the repository differ; neither was changed (copy the \
                 one you want over the other, then sync again)"
            }
            Action::NotAFile => "not a regular file on one side: left alone",
            Action::Ignored => "not host state: left alone",
        })
    }
}

/// Whether `rel` (a path inside the host state) is host state a sync carries: the fixed items
/// and the mirror tree, never the host state's own log, never a path with empty, `.` or `..`
/// components, at most [`MAX_SYNC_DEPTH`] deep.
pub fn syncable(rel: &str) -> bool {
    if rel.is_empty() || rel.chars().any(char::is_control) {
        return false;
    }
    let parts = rel.split('/');
    if parts.clone().count() > MAX_SYNC_DEPTH
        || parts.clone().any(|p| p.is_empty() || p == "." || p == "..")
    {
        return false;
    }
    let top = rel.split('/').next().unwrap_or("");
    if top == LOG_FILE || top.starts_with('.') {
        return false;
    }
    crate::identity::Item::ALL.iter().any(|item| {
        let p = item.host_path();
        rel == p || rel.strip_prefix(p).is_some_and(|r| r.starts_with('/'))
    }) || rel
        .strip_prefix(FILES_DIR)
        .is_some_and(|r| r.starts_with('/'))
}

/// Judge one path: how the host (`local`) and the repository (`remote`) have it, and whether
/// their contents are the same (only looked at when both are files).
pub fn judge(rel: &str, local: Side, remote: Side, same: bool) -> Action {
    if !syncable(rel) {
        return Action::Ignored;
    }
    match (local, remote) {
        (Side::File, Side::File) if same => Action::InSync,
        (Side::File, Side::File) => Action::Conflict,
        (Side::File, Side::Absent) => Action::Publish,
        (Side::Absent, Side::File) => Action::Take,
        (Side::Absent, Side::Absent) => Action::InSync,
        (Side::Other, _) | (_, Side::Other) => Action::NotAFile,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_state_is_never_overwritten() {
        use Side::*;
        assert_eq!(judge("hostname", File, File, true), Action::InSync);
        assert_eq!(judge("hostname", File, File, false), Action::Conflict);
        assert_eq!(judge("machine-id", File, Absent, false), Action::Publish);
        assert_eq!(
            judge("network/10-lan.network", Absent, File, false),
            Action::Take
        );
        assert_eq!(
            judge("ssh/ssh_host_rsa_key", Other, File, false),
            Action::NotAFile
        );
        assert_eq!(
            judge("ssh/ssh_host_rsa_key", File, Other, false),
            Action::NotAFile
        );
        for a in [
            judge("hostname", File, File, false),
            judge("hostname", Other, File, false),
        ] {
            assert_ne!(a, Action::Take, "a file the host has is never replaced");
        }
    }

    #[test]
    fn only_host_state_is_synced() {
        use Side::*;
        assert_eq!(judge("log", File, Absent, false), Action::Ignored);
        assert_eq!(judge("notes.txt", File, Absent, false), Action::Ignored);
        assert_eq!(
            judge(".hnroot-new.hostname", File, Absent, false),
            Action::Ignored
        );
        assert_eq!(
            judge("files/../../etc/x", Absent, File, false),
            Action::Ignored
        );
        assert_eq!(judge("files", Absent, File, false), Action::Ignored);
        assert_eq!(judge("hostnames", Absent, File, false), Action::Ignored);
        assert_eq!(judge("files/etc/hosts", Absent, File, false), Action::Take);
        assert_eq!(
            judge("puppet/ssl/certs/web01.pem", Absent, File, false),
            Action::Take
        );
        assert_eq!(judge("puppet/other", Absent, File, false), Action::Ignored);
        let deep = "files/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o";
        assert_eq!(judge(deep, Absent, File, false), Action::Ignored);
    }
}
