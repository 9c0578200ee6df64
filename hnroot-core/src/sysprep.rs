//! What makes an image one host's, and so must not be in an image that many servers boot: the
//! one list `hnroot sysprep` cleans (like virt-sysprep) and the leftover check looks for
//! (`hnroot sysprep` afterwards, `hnroot image build` and `hnroot stage` before an image is
//! published or staged, as a warning). Copied to many servers, these confuse the network and
//! the monitoring: duplicate machine IDs (journal, DHCP client IDs derived from them), duplicate
//! SSH host keys, one hostname everywhere, stale DHCP leases and interface names pinned to
//! another machine's MAC addresses, another host's configuration-management certificate.
//!
//! Each [`Entry`] names where to look inside the image's root (relative paths; one `*`
//! component matches every directory there, as in `home/*`), which names there, what to do, and
//! whether what it finds is host identity (checked) or only clutter (logs, histories, temporary
//! files: cleaned, not checked). The driver walks the image without following links and
//! carries the actions out; this module performs no I/O.

/// Which names in an entry's directory it covers.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Names {
    /// Exactly this name.
    Exact(&'static str),
    /// Names starting with this.
    Prefix(&'static str),
    /// Names ending with this.
    Suffix(&'static str),
    /// Names containing this.
    Contains(&'static str),
    /// Every name.
    Any,
}

impl Names {
    /// Whether `name` is covered.
    pub fn matches(self, name: &str) -> bool {
        match self {
            Names::Exact(n) => name == n,
            Names::Prefix(p) => name.starts_with(p),
            Names::Suffix(s) => name.ends_with(s),
            Names::Contains(c) => name.contains(c),
            Names::Any => true,
        }
    }
}

/// What is done to what an entry covers.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Action {
    /// Truncate a regular file to zero bytes, keeping it (its owner and mode) as the place the
    /// next boot puts the host's value: an empty `/etc/machine-id` is systemd's "not yet set".
    /// A leftover when non-empty.
    Empty,
    /// Remove it (a file, a link; a directory with everything in it). A leftover when present.
    Remove,
    /// Remove the regular files in it and below, keeping the directories (packages expect
    /// `/var/log/apt` and the like to exist). Clutter only.
    RemoveFiles,
    /// Remove the lines that set `certname` from a configuration file, keeping the rest. A
    /// leftover when such a line is there.
    DropCertname,
}

impl Action {
    /// A stable one-word name for JSON.
    pub const fn code(self) -> &'static str {
        match self {
            Action::Empty => "empty",
            Action::Remove => "remove",
            Action::RemoveFiles => "remove-files",
            Action::DropCertname => "drop-certname",
        }
    }
}

/// One kind of host-specific (or clutter) file.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Entry {
    /// The directory, relative to the image's root; a `*` component matches every directory
    /// there.
    pub dir: &'static str,
    /// The names in it this entry covers.
    pub names: Names,
    /// What is done to each.
    pub action: Action,
    /// Host identity (checked for afterwards and before publishing) rather than clutter.
    pub identity: bool,
    /// What it is, for the report (`SSH host keys`).
    pub what: &'static str,
}

const fn id(dir: &'static str, names: Names, action: Action, what: &'static str) -> Entry {
    Entry {
        dir,
        names,
        action,
        identity: true,
        what,
    }
}

const fn clutter(dir: &'static str, names: Names, action: Action, what: &'static str) -> Entry {
    Entry {
        dir,
        names,
        action,
        identity: false,
        what,
    }
}

/// Everything `hnroot sysprep` cleans, in the order it reports it.
pub const ENTRIES: [Entry; 24] = [
    id(
        "etc",
        Names::Exact("machine-id"),
        Action::Empty,
        "machine ID",
    ),
    id(
        "var/lib/dbus",
        Names::Exact("machine-id"),
        Action::Remove,
        "D-Bus machine ID",
    ),
    id("etc", Names::Exact("hostname"), Action::Empty, "hostname"),
    id(
        "etc/ssh",
        Names::Prefix("ssh_host_"),
        Action::Remove,
        "SSH host keys",
    ),
    id(
        "var/lib/dhcp",
        Names::Contains(".lease"),
        Action::Remove,
        "DHCP leases (ISC dhclient)",
    ),
    id(
        "var/lib/dhclient",
        Names::Contains(".lease"),
        Action::Remove,
        "DHCP leases (dhclient)",
    ),
    id(
        "var/lib/dhcpcd",
        Names::Contains(".lease"),
        Action::Remove,
        "DHCP leases (dhcpcd)",
    ),
    id(
        "var/lib/NetworkManager",
        Names::Contains(".lease"),
        Action::Remove,
        "DHCP leases (NetworkManager)",
    ),
    id(
        "etc/udev/rules.d",
        Names::Exact("70-persistent-net.rules"),
        Action::Remove,
        "persistent network interface names",
    ),
    id(
        "etc/puppetlabs/puppet/ssl",
        Names::Any,
        Action::Remove,
        "Puppet certificates",
    ),
    id(
        "var/lib/puppet/ssl",
        Names::Any,
        Action::Remove,
        "Puppet certificates",
    ),
    id(
        "etc/puppetlabs/puppet",
        Names::Exact("puppet.conf"),
        Action::DropCertname,
        "Puppet certname",
    ),
    id(
        "etc/puppet",
        Names::Exact("puppet.conf"),
        Action::DropCertname,
        "Puppet certname",
    ),
    id(
        "var/lib/systemd",
        Names::Exact("random-seed"),
        Action::Remove,
        "random seed",
    ),
    id(
        "var/lib/urandom",
        Names::Exact("random-seed"),
        Action::Remove,
        "random seed",
    ),
    id(
        "var/lib/systemd",
        Names::Exact("credential.secret"),
        Action::Remove,
        "systemd credential secret",
    ),
    clutter(
        "var/log/journal",
        Names::Any,
        Action::Remove,
        "journal files",
    ),
    clutter("var/log", Names::Any, Action::RemoveFiles, "logs"),
    clutter(
        "root",
        Names::Suffix("_history"),
        Action::Remove,
        "shell histories",
    ),
    clutter(
        "home/*",
        Names::Suffix("_history"),
        Action::Remove,
        "shell histories",
    ),
    clutter(
        "root",
        Names::Exact(".lesshst"),
        Action::Remove,
        "shell histories",
    ),
    clutter("tmp", Names::Any, Action::Remove, "temporary files"),
    clutter("var/tmp", Names::Any, Action::Remove, "temporary files"),
    clutter(
        "var/cache/debconf",
        Names::Suffix("-old"),
        Action::Remove,
        "debconf backups",
    ),
];

/// Most entries one directory pattern expands to (`home/*`), and most names acted on in one
/// directory: bounds the walk over an image someone filled with junk.
pub const MAX_MATCHES: usize = 4096;

/// Whether a configuration line sets Puppet's `certname` (`certname = web01.example.com`,
/// in any section, with any spacing).
pub fn is_certname_line(line: &str) -> bool {
    line.trim_start()
        .strip_prefix("certname")
        .is_some_and(|rest| rest.trim_start().starts_with('='))
}

/// What the driver found for an entry that the leftover check judges.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Found {
    /// A regular file of this many bytes.
    File {
        /// Its length.
        len: u64,
        /// Whether a line of it sets `certname` (only read for [`Action::DropCertname`]).
        certname: bool,
    },
    /// Something else (a directory, a link, a device).
    Other,
}

/// Whether what the driver found for `entry` makes the image host-specific: identity entries
/// only (clutter is never a leftover).
pub fn leftover(entry: &Entry, found: Found) -> bool {
    if !entry.identity {
        return false;
    }
    match (entry.action, found) {
        (Action::Empty, Found::File { len, .. }) => len > 0,
        (Action::Empty, Found::Other) => false,
        (Action::DropCertname, Found::File { certname, .. }) => certname,
        (Action::DropCertname, Found::Other) => false,
        (Action::Remove | Action::RemoveFiles, _) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_covers_what_the_issue_names() {
        let whats: std::vec::Vec<&str> = ENTRIES.iter().map(|e| e.what).collect();
        for needed in [
            "machine ID",
            "SSH host keys",
            "hostname",
            "DHCP leases (ISC dhclient)",
            "persistent network interface names",
            "logs",
            "shell histories",
            "Puppet certificates",
            "random seed",
        ] {
            assert!(whats.contains(&needed), "{needed}");
        }
        for e in ENTRIES {
            assert!(
                !e.dir.starts_with('/') && !e.dir.contains("..") && !e.dir.is_empty(),
                "{e:?}"
            );
            assert!(
                !e.dir.starts_with("boot") && !e.dir.starts_with("usr"),
                "sysprep never touches the image's software or boot files: {e:?}"
            );
            assert!(e.dir.split('/').filter(|c| *c == "*").count() <= 1);
            assert!(
                !(e.identity && e.action == Action::RemoveFiles),
                "an identity entry is a leftover by what it names, not by what is below it"
            );
        }
    }

    #[test]
    fn names() {
        let keys = Names::Prefix("ssh_host_");
        assert!(keys.matches("ssh_host_ed25519_key"));
        assert!(keys.matches("ssh_host_ed25519_key.pub"));
        assert!(!keys.matches("sshd_config"));
        assert!(Names::Contains(".lease").matches("dhclient.eth0.leases"));
        assert!(Names::Contains(".lease").matches("internal-1234.lease"));
        assert!(!Names::Contains(".lease").matches("dhclient.conf"));
        assert!(Names::Suffix("_history").matches(".bash_history"));
        assert!(!Names::Suffix("_history").matches(".bashrc"));
    }

    #[test]
    fn certname_lines() {
        assert!(is_certname_line("certname = web01.example.com"));
        assert!(is_certname_line("  certname=web01"));
        assert!(!is_certname_line("# certname = web01"));
        assert!(!is_certname_line("certname_x = 1"));
        assert!(!is_certname_line("server = puppet"));
    }

    #[test]
    fn what_counts_as_left_over() {
        let machine_id = ENTRIES.iter().find(|e| e.what == "machine ID").unwrap();
        assert!(!leftover(
            machine_id,
            Found::File {
                len: 0,
                certname: false
            }
        ));
        assert!(leftover(
            machine_id,
            Found::File {
                len: 33,
                certname: false
            }
        ));
        let keys = ENTRIES.iter().find(|e| e.what == "SSH host keys").unwrap();
        assert!(leftover(
            keys,
            Found::File {
                len: 0,
                certname: false
            }
        ));
        let conf = ENTRIES
            .iter()
            .find(|e| e.action == Action::DropCertname)
            .unwrap();
        assert!(!leftover(
            conf,
            Found::File {
                len: 99,
                certname: false
            }
        ));
        assert!(leftover(
            conf,
            Found::File {
                len: 99,
                certname: true
            }
        ));
        let logs = ENTRIES.iter().find(|e| e.what == "logs").unwrap();
        assert!(!leftover(
            logs,
            Found::File {
                len: 99,
                certname: false
            }
        ));
    }
}
