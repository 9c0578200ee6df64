//! A host's name: what counts as valid (RFC 1123 labels, lowercase, at most
//! [`MAX_HOSTNAME_LEN`] bytes), how arbitrary text (a `hnroot.hostname=` parameter, a DMI
//! serial number, a MAC address) is turned into one, and which of those sources names a new
//! server on its first boot. The driver reads the sources; nothing here looks at a machine.

use core::fmt;

use crate::machineid::MachineId;

/// Longest hostname hnroot writes: one DNS label's limit, and under Linux's `HOST_NAME_MAX`
/// (64), so every tool that copies it into a fixed buffer keeps all of it.
pub const MAX_HOSTNAME_LEN: usize = 63;

/// Longest DNS label (RFC 1035).
const MAX_LABEL_LEN: usize = 63;

/// A valid hostname: dot-separated labels of `[a-z0-9-]`, none empty, none starting or ending
/// with `-`, not all digits and dots (it would read as an IPv4 address), 1 to
/// [`MAX_HOSTNAME_LEN`] bytes.
#[derive(Clone, Copy)]
pub struct Hostname {
    bytes: [u8; MAX_HOSTNAME_LEN],
    len: u8,
}

// Two names are equal when their text is: the bytes past `len` (left by a `pop`) are not the
// name. (Derived, they made `sanitize("\0\u{fffd}P.")` unequal to the `p` it is; found by the
// hostname fuzz target.)
impl PartialEq for Hostname {
    fn eq(&self, other: &Hostname) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Hostname {}

impl core::hash::Hash for Hostname {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hostname({:?})", self.as_str())
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a text is not a hostname as it stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum HostnameError {
    /// Nothing (or only whitespace).
    Empty,
    /// More than [`MAX_HOSTNAME_LEN`] bytes.
    TooLong,
    /// A character other than `a-z`, `0-9`, `-`, `.`, or a label that is empty or starts or
    /// ends with `-`; or it is all digits and dots.
    Malformed,
}

impl core::error::Error for HostnameError {}

impl fmt::Display for HostnameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostnameError::Empty => f.write_str("empty"),
            HostnameError::TooLong => {
                write!(f, "longer than {MAX_HOSTNAME_LEN} characters")
            }
            HostnameError::Malformed => f.write_str(
                "not a hostname: lowercase letters, digits and '-' in dot-separated labels, \
                 no label starting or ending with '-', not only digits",
            ),
        }
    }
}

impl Hostname {
    /// The name.
    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever stored (see `push`).
        self.bytes
            .get(..usize::from(self.len))
            .and_then(|b| core::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    /// Parse a hostname as the host state's `hostname` file holds it: the name, optionally
    /// followed by a newline (surrounding whitespace is ignored). Nothing is corrected: a file
    /// someone wrote by hand that is not a valid name is reported, not rewritten.
    pub fn parse(text: &str) -> Result<Hostname, HostnameError> {
        let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
        if text.is_empty() {
            return Err(HostnameError::Empty);
        }
        if text.len() > MAX_HOSTNAME_LEN {
            return Err(HostnameError::TooLong);
        }
        match sanitize(text) {
            Some(h) if h.as_str() == text => Ok(h),
            _ => Err(HostnameError::Malformed),
        }
    }

    fn empty() -> Hostname {
        Hostname {
            bytes: [0; MAX_HOSTNAME_LEN],
            len: 0,
        }
    }

    fn last(&self) -> Option<u8> {
        usize::from(self.len)
            .checked_sub(1)
            .and_then(|i| self.bytes.get(i).copied())
    }

    /// Append an ASCII byte; false when full.
    fn push(&mut self, b: u8) -> bool {
        debug_assert!(b.is_ascii());
        match self.bytes.get_mut(usize::from(self.len)) {
            Some(slot) => {
                *slot = b;
                self.len = self.len.saturating_add(1);
                true
            }
            None => false,
        }
    }

    fn pop(&mut self) {
        self.len = self.len.saturating_sub(1);
        if let Some(b) = self.bytes.get_mut(usize::from(self.len)) {
            *b = 0;
        }
    }

    /// Drop trailing `-` and `.`.
    fn trim_end(&mut self) {
        while matches!(self.last(), Some(b'-' | b'.')) {
            self.pop();
        }
    }

    fn is_numeric(&self) -> bool {
        self.as_str()
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.')
    }
}

/// Turn `text` into a hostname the way RFC 1123 allows one: ASCII letters lowercased, digits
/// kept, `.` separating labels, every run of other characters (spaces, `_`, `:`, `/`,
/// anything not ASCII) becoming one `-`; labels trimmed of `-` at either end and cut at 63
/// bytes, the whole cut at [`MAX_HOSTNAME_LEN`] bytes. `None` when nothing usable is left, or
/// only digits and dots.
pub fn sanitize(text: &str) -> Option<Hostname> {
    let mut out = Hostname::empty();
    let mut label_len: usize = 0;
    let mut pending_dash = false;
    for c in text.chars() {
        let b = if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase() as u8
        } else if c == '.' {
            if label_len > 0 {
                while out.last() == Some(b'-') {
                    out.pop();
                }
                if !out.push(b'.') {
                    break;
                }
            }
            label_len = 0;
            pending_dash = false;
            continue;
        } else {
            pending_dash = label_len > 0;
            continue;
        };
        if label_len >= MAX_LABEL_LEN {
            continue;
        }
        if pending_dash {
            if !out.push(b'-') {
                break;
            }
            label_len = label_len.saturating_add(1);
            pending_dash = false;
            if label_len >= MAX_LABEL_LEN {
                continue;
            }
        }
        if !out.push(b) {
            break;
        }
        label_len = label_len.saturating_add(1);
    }
    out.trim_end();
    (out.len > 0 && !out.is_numeric()).then_some(out)
}

/// Where a new server's hostname came from.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum HostnameSource {
    /// `hnroot.hostname=` on the kernel command line.
    Parameter,
    /// The DMI system serial number (`/sys/class/dmi/id/product_serial`).
    DmiSerial,
    /// The first network interface's MAC address.
    Mac,
    /// Nothing else was usable: derived from the machine ID.
    MachineId,
}

impl HostnameSource {
    /// A stable one-word name for logs and JSON.
    pub const fn code(self) -> &'static str {
        match self {
            HostnameSource::Parameter => "parameter",
            HostnameSource::DmiSerial => "dmi-serial",
            HostnameSource::Mac => "mac",
            HostnameSource::MachineId => "machine-id",
        }
    }
}

impl fmt::Display for HostnameSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HostnameSource::Parameter => "the hnroot.hostname= parameter",
            HostnameSource::DmiSerial => "the DMI serial number",
            HostnameSource::Mac => "the first MAC address",
            HostnameSource::MachineId => "the machine ID (no parameter, DMI serial or MAC)",
        })
    }
}

/// Serial numbers firmware reports when nobody set one (compared without case, after
/// trimming): they name a model, not a machine.
const PLACEHOLDER_SERIALS: [&str; 19] = [
    "",
    "0",
    "none",
    "n/a",
    "na",
    "null",
    "unknown",
    "invalid",
    "serial",
    "not specified",
    "not available",
    "not applicable",
    "to be filled by o.e.m.",
    "default string",
    "system serial number",
    "chassis serial number",
    "0123456789",
    "123456789",
    "1234567890",
];

/// Whether a DMI serial number names this machine: not one of the placeholders firmware
/// reports, not one character repeated (`00000000`, `XXXXXXXX`), at least 4 letters or
/// digits.
pub fn serial_is_usable(serial: &str) -> bool {
    let s = serial.trim();
    if PLACEHOLDER_SERIALS
        .iter()
        .any(|p| p.eq_ignore_ascii_case(s))
    {
        return false;
    }
    let mut alnum = s.bytes().filter(u8::is_ascii_alphanumeric);
    let Some(first) = alnum.next() else {
        return false;
    };
    let mut count: usize = 1;
    let mut varied = false;
    for b in alnum {
        count = count.saturating_add(1);
        varied |= !b.eq_ignore_ascii_case(&first);
    }
    varied && count >= 4
}

/// A MAC address as sysfs prints it (`52:54:00:12:34:56`).
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = text.trim().split(':');
    for slot in out.iter_mut() {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *slot = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Of the interfaces' MAC addresses, the one that names the machine: the lowest globally
/// administered address (burnt in by the vendor), else the lowest locally administered one;
/// never all zeros, never multicast. The order the driver lists them in does not matter, so
/// renaming interfaces never changes the choice.
pub fn first_mac<'a>(macs: impl IntoIterator<Item = &'a str>) -> Option<[u8; 6]> {
    let mut best: Option<(bool, [u8; 6])> = None;
    for mac in macs.into_iter().filter_map(parse_mac) {
        let [first, ..] = mac;
        if mac == [0; 6] || first & 0x01 != 0 {
            continue;
        }
        let local = first & 0x02 != 0;
        if best.is_none_or(|b| (local, mac) < b) {
            best = Some((local, mac));
        }
    }
    best.map(|(_, mac)| mac)
}

/// What the driver found that could name a new server.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sources<'a> {
    /// `hnroot.hostname=`.
    pub parameter: Option<&'a str>,
    /// The DMI system serial number.
    pub dmi_serial: Option<&'a str>,
    /// The network interfaces' MAC addresses, as sysfs prints them.
    pub macs: &'a [&'a str],
}

/// The hostname of a new server: `hnroot.hostname=` when given (sanitised), else its DMI serial
/// number (when it names the machine), else `hn-` and its first MAC address, else `hn-` and
/// the first 12 digits of its machine ID (`None` when there is none either). The same machine
/// gets the same name from the same firmware, so a replaced disk comes back under its old name
/// (and finds its state in the shared repository).
pub fn choose(
    sources: &Sources<'_>,
    machine_id: Option<&MachineId>,
) -> Option<(Hostname, HostnameSource)> {
    if let Some(h) = sources.parameter.and_then(sanitize) {
        return Some((h, HostnameSource::Parameter));
    }
    if let Some(h) = sources
        .dmi_serial
        .filter(|s| serial_is_usable(s))
        .and_then(sanitize)
    {
        return Some((h, HostnameSource::DmiSerial));
    }
    let mut name = Hostname::empty();
    for b in *b"hn-" {
        name.push(b);
    }
    let source = match (first_mac(sources.macs.iter().copied()), machine_id) {
        (Some(mac), _) => {
            for b in mac {
                push_hex(&mut name, b);
            }
            HostnameSource::Mac
        }
        (None, Some(id)) => {
            for b in id.bytes().iter().take(6) {
                push_hex(&mut name, *b);
            }
            HostnameSource::MachineId
        }
        (None, None) => return None,
    };
    Some((name, source))
}

fn push_hex(name: &mut Hostname, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for nibble in [b >> 4, b & 0x0f] {
        if let Some(&c) = HEX.get(usize::from(nibble)) {
            name.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Option<std::string::String> {
        sanitize(text).map(|h| std::string::ToString::to_string(&h))
    }

    #[test]
    fn names_equal_by_their_text_whatever_was_trimmed() {
        let trimmed = sanitize("\0\u{fffd}P.").unwrap();
        assert_eq!(trimmed.as_str(), "p");
        assert_eq!(Hostname::parse("p"), Ok(trimmed));
        assert_eq!(sanitize("p"), Some(trimmed));
    }

    #[test]
    fn sanitising_follows_rfc_1123() {
        assert_eq!(s("Web01").as_deref(), Some("web01"));
        assert_eq!(s("web_01 rack 3").as_deref(), Some("web-01-rack-3"));
        assert_eq!(s("--web--01--").as_deref(), Some("web-01"));
        assert_eq!(
            s("Web01.Example.COM.").as_deref(),
            Some("web01.example.com")
        );
        assert_eq!(s("a..b").as_deref(), Some("a.b"));
        assert_eq!(s("a-.b").as_deref(), Some("a.b"));
        assert_eq!(
            s("VMware-56 4d 2a ff").as_deref(),
            Some("vmware-56-4d-2a-ff")
        );
        assert_eq!(s("Grüße").as_deref(), Some("gr-e"));
        assert_eq!(s("  "), None);
        assert_eq!(s("---"), None);
        assert_eq!(s("10.0.0.1"), None, "reads as an address");
        assert_eq!(s("12345").as_deref(), None);
        assert_eq!(s("12345a").as_deref(), Some("12345a"));
    }

    #[test]
    fn sanitising_bounds_labels_and_the_whole() {
        let long = "a".repeat(100);
        let h = sanitize(&long).unwrap();
        assert_eq!(h.as_str().len(), 63);
        let dotted = std::format!("{}.{}", "b".repeat(40), "c".repeat(40));
        let h = sanitize(&dotted).unwrap();
        assert!(h.as_str().len() <= MAX_HOSTNAME_LEN, "{h}");
        assert!(!h.as_str().ends_with('.') && !h.as_str().ends_with('-'));
        assert_eq!(Hostname::parse(h.as_str()), Ok(h));
        // A separator exactly at the label's limit is dropped, not carried into the next label.
        let edge = std::format!("{}_x", "d".repeat(63));
        assert_eq!(sanitize(&edge).unwrap().as_str(), "d".repeat(63));
    }

    #[test]
    fn every_sanitised_name_parses_back_as_itself() {
        for text in [
            "Web01",
            "x_y z",
            "ä",
            "a.b.c",
            "ABC-123.example.org",
            "-a-.-b-",
            "serial: 4C4C4544-0042",
        ] {
            if let Some(h) = sanitize(text) {
                assert_eq!(Hostname::parse(h.as_str()), Ok(h), "{text:?}");
            }
        }
    }

    #[test]
    fn a_hand_written_file_is_checked_not_corrected() {
        assert_eq!(Hostname::parse("web01\n").unwrap().as_str(), "web01");
        assert_eq!(Hostname::parse("Web01\n"), Err(HostnameError::Malformed));
        assert_eq!(Hostname::parse("web_01"), Err(HostnameError::Malformed));
        assert_eq!(Hostname::parse("\n"), Err(HostnameError::Empty));
        assert_eq!(
            Hostname::parse(&"a".repeat(64)),
            Err(HostnameError::TooLong)
        );
        assert_eq!(Hostname::parse("-web"), Err(HostnameError::Malformed));
        assert_eq!(
            Hostname::parse("web01 web02"),
            Err(HostnameError::Malformed)
        );
    }

    #[test]
    fn placeholder_serials_name_no_machine() {
        for bad in [
            "",
            "0",
            "To Be Filled By O.E.M.",
            "Default string",
            "System Serial Number",
            "00000000",
            "XXXXXXXX",
            "xXxX",
            "ab",
            "Not Specified",
        ] {
            assert!(!serial_is_usable(bad), "{bad:?}");
        }
        for good in ["CZ1234ABCD", "VMware-56 4d 2a ff", "SRV-0003", "4C4C4544"] {
            assert!(serial_is_usable(good), "{good:?}");
        }
    }

    #[test]
    fn the_first_mac_is_the_lowest_burnt_in_one_whatever_the_order() {
        let macs = [
            "52:54:00:12:34:56",
            "00:25:90:aa:bb:01",
            "00:25:90:aa:bb:00",
        ];
        let want = Some([0x00, 0x25, 0x90, 0xaa, 0xbb, 0x00]);
        assert_eq!(first_mac(macs), want);
        let mut reversed = macs;
        reversed.reverse();
        assert_eq!(first_mac(reversed), want);
        assert_eq!(
            first_mac([
                "52:54:00:12:34:56",
                "00:00:00:00:00:00",
                "01:00:5e:00:00:01"
            ]),
            Some([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
            "locally administered when nothing else; never zero or multicast"
        );
        assert_eq!(first_mac(["garbage", "00:11:22:33:44", ""]), None);
    }

    #[test]
    fn a_new_server_is_named_by_parameter_serial_mac_then_machine_id() {
        let id = MachineId::from_random([0x11; 16]);
        let macs = ["52:54:00:12:34:56"];
        let all = Sources {
            parameter: Some("Web_07"),
            dmi_serial: Some("SRV-0003"),
            macs: &macs,
        };
        let name = |s: &Sources<'_>| {
            let (h, src) = choose(s, Some(&id)).unwrap();
            (std::string::ToString::to_string(&h), src)
        };
        assert_eq!(name(&all), ("web-07".into(), HostnameSource::Parameter));
        let no_param = Sources {
            parameter: Some("___"),
            ..all
        };
        assert_eq!(
            name(&no_param),
            ("srv-0003".into(), HostnameSource::DmiSerial),
            "an unusable parameter falls through"
        );
        let placeholder = Sources {
            parameter: None,
            dmi_serial: Some("To Be Filled By O.E.M."),
            ..all
        };
        assert_eq!(
            name(&placeholder),
            ("hn-525400123456".into(), HostnameSource::Mac)
        );
        let nothing = Sources::default();
        let (h, src) = choose(&nothing, Some(&id)).unwrap();
        assert_eq!(src, HostnameSource::MachineId);
        assert_eq!(h.as_str(), "hn-111111111111");
        assert_eq!(Hostname::parse(h.as_str()), Ok(h));
        assert_eq!(choose(&nothing, None), None);
    }
}
