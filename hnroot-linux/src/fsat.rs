//! File operations relative to a held directory descriptor that never follow a link: what the
//! host state on hostpart, its copy in the shared repository and `hnroot sysprep`'s walk over
//! an image need. Names are single path components unless a function says it takes a relative
//! path (`a/b/c`, walked one component at a time). Writes go to a temporary name beside the
//! target, are synced, renamed into place (exclusively, or replacing) and the directory synced.
//!
//! [`InRoot`] resolves paths inside another root (the new root before `switch_root`) with
//! `openat2(RESOLVE_IN_ROOT)`: a symbolic link in the image resolves as it will once that root
//! is `/`, never into the initramfs.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `renameat2` flag: fail if the destination exists.
const RENAME_NOREPLACE: libc::c_uint = 1;

/// Suffix of the temporary names writes use (after a leading `.`): never a name hnroot reads.
pub const TEMP_SUFFIX: &str = ".hnroot-new";

/// What is at a name.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// Nothing.
    Absent,
    /// A regular file of this length.
    File(u64),
    /// A directory.
    Dir,
    /// A symbolic link (never followed).
    Link,
    /// A device, FIFO or socket.
    Other,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Absent => "nothing",
            Kind::File(_) => "a regular file",
            Kind::Dir => "a directory",
            Kind::Link => "a symbolic link",
            Kind::Other => "a special file",
        })
    }
}

/// A name as a C string.
pub fn cstr(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor the caller just got from the kernel and owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fstat` of a descriptor.
pub fn fstat(fd: &OwnedFd) -> io::Result<libc::stat> {
    // SAFETY: zeroed stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor and out-pointer.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// What a `stat` says.
pub fn kind_of(st: &libc::stat) -> Kind {
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => Kind::File(u64::try_from(st.st_size).unwrap_or(0)),
        libc::S_IFDIR => Kind::Dir,
        libc::S_IFLNK => Kind::Link,
        _ => Kind::Other,
    }
}

/// What `name` in `dir` is, without following a link.
pub fn kind(dir: &OwnedFd, name: &str) -> io::Result<Kind> {
    let c = cstr(name)?;
    // SAFETY: zeroed stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor, NUL-terminated name, valid out-pointer.
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOENT) => Ok(Kind::Absent),
            _ => Err(e),
        };
    }
    Ok(kind_of(&st))
}

/// What the relative path `rel` in `dir` is: [`Kind::Absent`] when a component on the way is
/// missing, [`Kind::Other`] when one on the way is not a directory (or a link).
pub fn kind_path(dir: &OwnedFd, rel: &str) -> io::Result<Kind> {
    let (parent, name) = split(rel);
    let parent = match parent {
        None => return kind(dir, name),
        Some(p) => p,
    };
    match open_path(dir, parent) {
        Ok(Some(d)) => kind(&d, name),
        Ok(None) => Ok(Kind::Absent),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::ELOOP)) => Ok(Kind::Other),
        Err(e) => Err(e),
    }
}

/// `a/b/c` as (`Some("a/b")`, `"c"`); `c` as (`None`, `"c"`).
pub fn split(rel: &str) -> (Option<&str>, &str) {
    match rel.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, rel),
    }
}

/// Open the directory `name` in `dir` (never through a link): `None` when it does not exist;
/// `ENOTDIR`/`ELOOP` when it is something else.
pub fn open_dir(dir: &OwnedFd, name: &str) -> io::Result<Option<OwnedFd>> {
    let c = cstr(name)?;
    // SAFETY: valid descriptor and NUL-terminated name; the result is owned below.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    match owned(fd) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Open the directory at the relative path `rel` in `dir`, one component at a time.
pub fn open_path(dir: &OwnedFd, rel: &str) -> io::Result<Option<OwnedFd>> {
    let mut cur = open_dir(dir, ".")?.ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        cur = match open_dir(&cur, part)? {
            Some(d) => d,
            None => return Ok(None),
        };
    }
    Ok(Some(cur))
}

/// Create the directory `name` in `dir` with `mode` unless it exists, and open it.
pub fn make_dir(dir: &OwnedFd, name: &str, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    // SAFETY: valid descriptor and NUL-terminated name.
    let r = unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode) };
    if r != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(e);
        }
    }
    open_dir(dir, name)?.ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
}

/// Create every missing directory of the relative path `rel` in `dir` (mode `mode`), and open
/// the last.
pub fn make_path(dir: &OwnedFd, rel: &str, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let mut cur = open_dir(dir, ".")?.ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        cur = make_dir(&cur, part, mode)?;
    }
    Ok(cur)
}

/// The names in `dir` (without `.` and `..`), at most `max`; the flag says whether there were
/// more.
pub fn list(dir: &OwnedFd, max: usize) -> io::Result<(Vec<String>, bool)> {
    // SAFETY: `dup` of a valid descriptor; fdopendir takes ownership of the duplicate.
    let dup = unsafe { libc::dup(dir.as_raw_fd()) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor; on success the stream owns it.
    let stream = unsafe { libc::fdopendir(dup) };
    if stream.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so the duplicate is still ours.
        unsafe { libc::close(dup) };
        return Err(e);
    }
    // The duplicate shares its offset with `dir`: start from the beginning.
    // SAFETY: a valid stream.
    unsafe { libc::rewinddir(stream) };
    let mut names = Vec::new();
    let mut more = false;
    loop {
        // SAFETY: a valid stream.
        let entry = unsafe { libc::readdir(stream) };
        if entry.is_null() {
            break;
        }
        // SAFETY: readdir returned a valid entry whose name is NUL-terminated.
        let name = unsafe { std::ffi::CStr::from_ptr((*entry).d_name.as_ptr()) };
        let bytes = name.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        if names.len() >= max {
            more = true;
            break;
        }
        names.push(String::from_utf8_lossy(bytes).into_owned());
    }
    // SAFETY: a valid stream, closed once.
    unsafe { libc::closedir(stream) };
    names.sort();
    Ok((names, more))
}

/// Open the regular file `name` in `dir` for reading, never through a link.
pub fn open_file(dir: &OwnedFd, name: &str) -> io::Result<File> {
    let c = cstr(name)?;
    // SAFETY: valid descriptor and NUL-terminated name; the result is owned below.
    let fd = owned(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    })?;
    if !matches!(kind_of(&fstat(&fd)?), Kind::File(_)) {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(File::from(fd))
}

/// The first `max` bytes of the regular file `name` in `dir`, and whether it had more.
pub fn read_file(dir: &OwnedFd, name: &str, max: usize) -> io::Result<(Vec<u8>, bool)> {
    let file = open_file(dir, name)?;
    let mut data = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    file.take(limit).read_to_end(&mut data)?;
    let more = data.len() > max;
    data.truncate(max);
    Ok((data, more))
}

/// `fsync` the directory `dir` (an `O_PATH` descriptor is reopened first).
pub fn sync_dir(dir: &OwnedFd) -> io::Result<()> {
    let d = open_dir(dir, ".")?.ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
    // SAFETY: valid descriptor.
    check(unsafe { libc::fsync(d.as_raw_fd()) })
}

/// `renameat2` within `dir`, with `RENAME_NOREPLACE` unless `replace`. A filesystem that does
/// not know the flag (NFS: the shared repository at `/warehouse` is often one) answers `EINVAL`;
/// then the same exclusive move is made with [`link_then_unlink`].
pub fn rename(dir: &OwnedFd, from: &str, to: &str, replace: bool) -> io::Result<()> {
    let (f, t) = (cstr(from)?, cstr(to)?);
    let flags = if replace { 0 } else { RENAME_NOREPLACE };
    let d = dir.as_raw_fd();
    // SAFETY: valid descriptors and NUL-terminated names; renameat2 has no other inputs.
    let r = unsafe { libc::syscall(libc::SYS_renameat2, d, f.as_ptr(), d, t.as_ptr(), flags) };
    if r != 0 {
        let e = io::Error::last_os_error();
        if !replace && e.raw_os_error() == Some(libc::EINVAL) {
            return link_then_unlink(dir, from, to);
        }
        return Err(e);
    }
    Ok(())
}

/// Move `from` to `to` in `dir` without replacing `to`, on filesystems without
/// `RENAME_NOREPLACE`: a hard link (which fails with `EEXIST` when `to` exists, atomically, as the
/// flag would), then `from` removed. A crash between the two leaves both names on the one file;
/// `from` is a temporary name the next write removes.
pub fn link_then_unlink(dir: &OwnedFd, from: &str, to: &str) -> io::Result<()> {
    let (f, t) = (cstr(from)?, cstr(to)?);
    let d = dir.as_raw_fd();
    // SAFETY: valid descriptors and NUL-terminated names; no flag: a link is never followed.
    check(unsafe { libc::linkat(d, f.as_ptr(), d, t.as_ptr(), 0) })?;
    // SAFETY: valid descriptor and NUL-terminated name.
    check(unsafe { libc::unlinkat(d, f.as_ptr(), 0) })
}

/// Write `data` as `name` in `dir` with `mode`: into a temporary name beside it, synced, then
/// renamed into place — exclusively (failing with `EEXIST` when `name` exists) unless
/// `replace` — and the directory synced. A crash leaves either the old state or the new file,
/// and at worst a temporary file that the next write replaces.
pub fn write_file(
    dir: &OwnedFd,
    name: &str,
    data: &[u8],
    mode: libc::mode_t,
    replace: bool,
) -> io::Result<()> {
    let temp = format!(".{name}{TEMP_SUFFIX}");
    let c = cstr(&temp)?;
    // A temporary file of an interrupted write: ours to replace.
    // SAFETY: valid descriptor and NUL-terminated name.
    unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) };
    // SAFETY: valid descriptor and NUL-terminated name; the result is owned below.
    let fd = owned(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })?;
    let mut file = File::from(fd);
    let written = file
        .write_all(data)
        .and_then(|()| {
            // The mode as asked, whatever the umask.
            // SAFETY: valid descriptor.
            check(unsafe { libc::fchmod(file.as_raw_fd(), mode) })
        })
        .and_then(|()| file.sync_all())
        .and_then(|()| rename(dir, &temp, name, replace));
    if let Err(e) = written {
        // SAFETY: valid descriptor and NUL-terminated name.
        unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) };
        return Err(e);
    }
    sync_dir(dir)
}

/// Append `line` and a newline to the regular file `name` in `dir` (created with `mode`),
/// unless it already holds `max` bytes; synced.
pub fn append_line(
    dir: &OwnedFd,
    name: &str,
    line: &str,
    mode: libc::mode_t,
    max: u64,
) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid descriptor and NUL-terminated name; the result is owned below.
    let fd = owned(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })?;
    match kind_of(&fstat(&fd)?) {
        Kind::File(len) if len >= max => {
            return Err(io::Error::other(format!(
                "{name} holds {max} bytes already"
            )))
        }
        Kind::File(_) => {}
        _ => return Err(io::Error::other("not a regular file")),
    }
    let mut file = File::from(fd);
    file.write_all(format!("{line}\n").as_bytes())?;
    file.sync_all()
}

/// Truncate the regular file `name` in `dir` to zero bytes (never through a link).
pub fn truncate(dir: &OwnedFd, name: &str) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid descriptor and NUL-terminated name; the result is owned below.
    let fd = owned(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    })?;
    if !matches!(kind_of(&fstat(&fd)?), Kind::File(_)) {
        return Err(io::Error::other("not a regular file"));
    }
    // SAFETY: valid descriptor.
    check(unsafe { libc::ftruncate(fd.as_raw_fd(), 0) })?;
    // SAFETY: valid descriptor.
    check(unsafe { libc::fsync(fd.as_raw_fd()) })
}

/// Remove the file or link `name` in `dir` (already gone is fine).
pub fn unlink(dir: &OwnedFd, name: &str) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid descriptor and NUL-terminated name.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENOENT) {
            return Err(e);
        }
    }
    Ok(())
}

/// A root directory other than `/` (the new root), held open, in which paths resolve as they
/// will once it is `/`.
#[derive(Debug)]
pub struct InRoot {
    root: OwnedFd,
}

impl InRoot {
    /// Hold the directory `path` open as a root.
    pub fn open(path: &std::path::Path) -> io::Result<InRoot> {
        let c = CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()))
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: NUL-terminated path; the result is owned below.
        let root = owned(unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        })?;
        Ok(InRoot { root })
    }

    /// `openat2(rel, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: links resolve inside the
    /// root, `..` stops at it.
    pub fn resolve(&self, rel: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
        let c = cstr(if rel.is_empty() { "." } else { rel })?;
        // SAFETY: zeroed open_how is valid (no flags, no mode, no resolve restrictions).
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = u64::try_from(flags | libc::O_CLOEXEC).unwrap_or(0);
        how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
        // SAFETY: valid descriptor, NUL-terminated path, a valid open_how of the size passed.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                self.root.as_raw_fd(),
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        owned(libc::c_int::try_from(fd).unwrap_or(-1))
    }

    /// What `rel` is (after links inside the root).
    pub fn kind(&self, rel: &str) -> io::Result<Kind> {
        match self.resolve(rel, libc::O_PATH) {
            Ok(fd) => Ok(kind_of(&fstat(&fd)?)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(Kind::Absent),
            Err(e) => Err(e),
        }
    }

    /// The directory `rel` (an `O_PATH` descriptor), created with its missing parents (mode
    /// 0755) where the root lacks them.
    pub fn make_dir(&self, rel: &str) -> io::Result<OwnedFd> {
        let mut prefix = String::new();
        let mut cur = self.resolve("", libc::O_PATH | libc::O_DIRECTORY)?;
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            cur = match self.resolve(&prefix, libc::O_PATH | libc::O_DIRECTORY) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let c = cstr(part)?;
                    // SAFETY: valid descriptor (O_PATH directories work as dirfd) and name.
                    let r = unsafe { libc::mkdirat(cur.as_raw_fd(), c.as_ptr(), 0o755) };
                    if r != 0 {
                        let e = io::Error::last_os_error();
                        if e.raw_os_error() != Some(libc::EEXIST) {
                            return Err(e);
                        }
                    }
                    self.resolve(&prefix, libc::O_PATH | libc::O_DIRECTORY)?
                }
                Err(e) => return Err(e),
            };
        }
        Ok(cur)
    }

    /// The regular file `rel` (an `O_PATH` descriptor), created empty (mode `mode`, with its
    /// missing parents) where the root lacks it.
    pub fn make_file(&self, rel: &str, mode: libc::mode_t) -> io::Result<OwnedFd> {
        match self.resolve(rel, libc::O_PATH) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        let (parent, name) = split(rel);
        let dir = self.make_dir(parent.unwrap_or(""))?;
        let c = cstr(name)?;
        // SAFETY: valid descriptor and NUL-terminated name; the result is owned (and closed).
        drop(owned(unsafe {
            libc::openat(
                dir.as_raw_fd(),
                c.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                mode as libc::c_uint,
            )
        })?);
        self.resolve(rel, libc::O_PATH)
    }

    /// Write `data` as `rel` (replacing what is there, with `mode`), parents created as needed.
    pub fn write(&self, rel: &str, data: &[u8], mode: libc::mode_t) -> io::Result<()> {
        let (parent, name) = split(rel);
        let dir = self.make_dir(parent.unwrap_or(""))?;
        write_file(&dir, name, data, mode, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_fd(p: &std::path::Path) -> OwnedFd {
        OwnedFd::from(File::open(p).unwrap())
    }

    #[test]
    fn the_move_without_rename_noreplace_is_exclusive_too() {
        let t = tempfile::tempdir().unwrap();
        let d = dir_fd(t.path());
        std::fs::write(t.path().join(".x.tmp"), b"new").unwrap();
        std::fs::write(t.path().join("x"), b"old").unwrap();
        let e = link_then_unlink(&d, ".x.tmp", "x").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
        assert_eq!(std::fs::read(t.path().join("x")).unwrap(), b"old");
        std::fs::remove_file(t.path().join("x")).unwrap();
        link_then_unlink(&d, ".x.tmp", "x").unwrap();
        assert_eq!(std::fs::read(t.path().join("x")).unwrap(), b"new");
        assert!(!t.path().join(".x.tmp").exists());
    }

    #[test]
    fn writes_are_exclusive_unless_replacing_and_never_through_links() {
        let t = tempfile::tempdir().unwrap();
        let d = dir_fd(t.path());
        write_file(&d, "a", b"one\n", 0o600, false).unwrap();
        let e = write_file(&d, "a", b"two\n", 0o600, false).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
        assert_eq!(std::fs::read(t.path().join("a")).unwrap(), b"one\n");
        write_file(&d, "a", b"two\n", 0o644, true).unwrap();
        assert_eq!(std::fs::read(t.path().join("a")).unwrap(), b"two\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(t.path().join("a"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o644
        );
        assert!(
            !t.path().join(format!(".a{TEMP_SUFFIX}")).exists(),
            "no temporary file left"
        );
        std::os::unix::fs::symlink("/etc/passwd", t.path().join("link")).unwrap();
        assert_eq!(kind(&d, "link").unwrap(), Kind::Link);
        assert!(read_file(&d, "link", 10).is_err());
        assert!(truncate(&d, "link").is_err());
        assert!(append_line(&d, "link", "x", 0o644, 100).is_err());
        assert_eq!(kind_path(&d, "a/b").unwrap(), Kind::Other);
        assert_eq!(kind_path(&d, "none/b").unwrap(), Kind::Absent);
        append_line(&d, "log", "first", 0o644, 10).unwrap();
        append_line(&d, "log", "second", 0o644, 10).unwrap();
        assert!(
            append_line(&d, "log", "third", 0o644, 10).is_err(),
            "bounded"
        );
        assert_eq!(
            std::fs::read_to_string(t.path().join("log")).unwrap(),
            "first\nsecond\n"
        );
        let (data, more) = read_file(&d, "log", 5).unwrap();
        assert_eq!((data.as_slice(), more), (&b"first"[..], true));
    }

    #[test]
    fn paths_in_another_root_resolve_inside_it() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        // An absolute link means the root's /, not the host's.
        std::os::unix::fs::symlink("/usr/lib/os-release", r.join("etc/os-release")).unwrap();
        std::os::unix::fs::symlink("../../../../..", r.join("etc/up")).unwrap();
        let root = InRoot::open(r).unwrap();
        assert_eq!(root.kind("etc/os-release").unwrap(), Kind::Absent);
        root.make_file("usr/lib/os-release", 0o644).unwrap();
        assert_eq!(root.kind("etc/os-release").unwrap(), Kind::File(0));
        root.make_dir("etc/up/made").unwrap();
        assert!(r.join("made").is_dir(), ".. stops at the root");
        root.write("etc/ssh/sshd_config.d/x.conf", b"HostKey y\n", 0o644)
            .unwrap();
        assert_eq!(
            std::fs::read(r.join("etc/ssh/sshd_config.d/x.conf")).unwrap(),
            b"HostKey y\n"
        );
        let fd = root.make_file("etc/hostname", 0o644).unwrap();
        assert_eq!(kind_of(&fstat(&fd).unwrap()), Kind::File(0));
    }
}
