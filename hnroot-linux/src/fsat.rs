//! The one file layer: every file hnroot opens, creates, replaces, links or removes inside a
//! tree, an image or hostpart goes through here, relative to a held directory descriptor.
//!
//! * Names in a directory ([`open_dir`], [`write_file`], [`empty`], ...) are single path
//!   components unless a function says it takes a relative path (`a/b/c`, walked one component
//!   at a time); no link is ever followed. What hostpart's host state, its copy in the shared
//!   repository and `hnroot sysprep`'s walk over a tree need.
//! * [`InRoot`] resolves paths inside another root (a tree to build an image from, the mounted
//!   copy of one, the new root before `switch_root`) with `openat2(RESOLVE_IN_ROOT |
//!   RESOLVE_NO_MAGICLINKS)`: a symbolic link resolves as it will once that root is `/`
//!   (absolute targets from the root, `..` never above it), never into the host. What it
//!   writes, links or removes is the last component itself: a link there is replaced or
//!   removed, never written through.
//! * Writes go to a temporary name beside the target, are synced, renamed into place
//!   (exclusively, or replacing) and the directory synced. A file with more than one link is
//!   never truncated or rewritten in place ([`empty`]): the other names keep their contents.
//! * Mount points are found by mount ID ([`mount_id`], `statx` `STATX_MNT_ID`), not by device
//!   number: a directory bind-mounted from the same filesystem is another mount.
//! * Files read from paths an operator names (keys, signatures) are opened non-blocking and
//!   read only when they are regular files, up to a stated size ([`read_regular`]).

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `renameat2` flag: fail if the destination exists.
const RENAME_NOREPLACE: libc::c_uint = 1;
/// `renameat2` flag: exchange the two names.
const RENAME_EXCHANGE: libc::c_uint = 2;

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

/// How many times [`openat2`] tries when the kernel could not rule out a race.
const OPENAT2_ATTEMPTS: usize = 128;

/// `openat2(dir, path, how)`, tried again when the kernel answers `EAGAIN`: with
/// `RESOLVE_IN_ROOT` or `RESOLVE_BENEATH` it does whenever a rename or a mount anywhere on the
/// machine happened while it walked a `..` (a symbolic link such as Debian's `/sbin/init ->
/// ../lib/systemd/systemd` has one), as it cannot then prove the walk stayed inside (openat2(2):
/// "the caller may choose to retry"). udev renaming its files while the initramfs checks the
/// image's init is such a race: a boot failed on it. Bounded: [`OPENAT2_ATTEMPTS`] tries.
pub fn openat2(
    dir: libc::c_int,
    path: &std::ffi::CStr,
    how: &libc::open_how,
) -> io::Result<OwnedFd> {
    let mut last = io::Error::from_raw_os_error(libc::EAGAIN);
    for _ in 0..OPENAT2_ATTEMPTS {
        match openat2_once(dir, path, how) {
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => last = e,
            done => return done,
        }
    }
    Err(io::Error::new(
        last.kind(),
        format!(
            "{last}: the path walk raced with renames or mounts elsewhere {OPENAT2_ATTEMPTS} \
             times in a row"
        ),
    ))
}

/// One `openat2(dir, path, how)` call, its `EAGAIN` not tried again ([`openat2`] does).
fn openat2_once(
    dir: libc::c_int,
    path: &std::ffi::CStr,
    how: &libc::open_how,
) -> io::Result<OwnedFd> {
    // SAFETY: a descriptor, a NUL-terminated path and an open_how of the size passed, all valid
    // for the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            path.as_ptr(),
            how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    owned(libc::c_int::try_from(fd).unwrap_or(-1))
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

/// What a `stat` says, in words for a message: `a regular file`, `a directory`, `a symbolic
/// link`, `a FIFO`, `a character device`, `a block device`, `a socket`.
pub fn describe(st: &libc::stat) -> &'static str {
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => "a regular file",
        libc::S_IFDIR => "a directory",
        libc::S_IFLNK => "a symbolic link",
        libc::S_IFIFO => "a FIFO",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFSOCK => "a socket",
        _ => "a file of an unknown type",
    }
}

/// Set the access and modification times of `name` in `dir` to `secs` (whole seconds since
/// 1970), never following a link (a link's own times are set).
pub fn set_times(dir: &OwnedFd, name: &str, secs: i64) -> io::Result<()> {
    let c = cstr(name)?;
    let t = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: 0,
    };
    let times = [t, t];
    // SAFETY: valid descriptor, NUL-terminated name, two timespecs.
    check(unsafe {
        libc::utimensat(
            dir.as_raw_fd(),
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// `fstatat` of `name` in `dir`, never following a link: `None` when nothing has that name.
pub fn stat_at(dir: &OwnedFd, name: &str) -> io::Result<Option<libc::stat>> {
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
    if r == 0 {
        return Ok(Some(st));
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOENT) => Ok(None),
        _ => Err(e),
    }
}

/// The mount ID (`statx` `STATX_MNT_ID`) of `name` in `dir`, never following a link at `name`
/// (`""`: `dir` itself). A name that is a mount point has the ID of the mount on it: a
/// directory or file bind-mounted from the same filesystem (same device number) is told apart
/// from what surrounds it. Linux 5.8 and later.
pub fn mount_id(dir: &OwnedFd, name: &str) -> io::Result<u64> {
    mount_id_c(dir, &cstr(name)?)
}

/// [`mount_id`] of a name that need not be UTF-8.
pub fn mount_id_c(dir: &OwnedFd, c: &std::ffi::CStr) -> io::Result<u64> {
    let mut flags = libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT;
    if c.is_empty() {
        flags |= libc::AT_EMPTY_PATH;
    }
    // SAFETY: zeroed statx is a valid out-buffer.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor, NUL-terminated name, valid out-pointer of the kernel's layout.
    let r = unsafe {
        libc::syscall(
            libc::SYS_statx,
            dir.as_raw_fd(),
            c.as_ptr(),
            flags,
            libc::STATX_MNT_ID,
            &mut stx as *mut libc::statx,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    if stx.stx_mask & libc::STATX_MNT_ID == 0 {
        return Err(io::Error::other(
            "the kernel gives no mount ID (statx STATX_MNT_ID needs Linux 5.8 or later)",
        ));
    }
    Ok(stx.stx_mnt_id)
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

/// Open the directory the operator named at `path` (hostpart's mount point, a tree to clean):
/// the root every later name is resolved in. Links on the way are followed, as for any path a
/// command is given; everything below goes through the descriptor.
pub fn open_root(path: &std::path::Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: a NUL-terminated path; the result is owned below.
    owned(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })
}

/// `name` in `dir` as a handle only (`O_PATH`: nothing is read; a bind mount's source), never
/// through a link: what it is, is for the caller to check with [`fstat`].
pub fn open_handle(dir: &OwnedFd, name: &str) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    // SAFETY: valid descriptor and NUL-terminated name; the result is owned below.
    owned(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    })
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
    let st = fstat(&fd)?;
    if !matches!(kind_of(&st), Kind::File(_)) {
        return Err(io::Error::other(format!(
            "{}, not a regular file",
            describe(&st)
        )));
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

/// The mode, and the owner when it is to be set, of a file [`write_from`] makes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Meta {
    /// Permission bits.
    pub mode: libc::mode_t,
    /// Whether `mode` is set whatever the umask (`fchmod`); `false` leaves what the
    /// filesystem makes of it (FAT, whose mount options decide, refuses most `fchmod`s).
    pub exact: bool,
    /// Owner and group; `None`: the writer's.
    pub owner: Option<(libc::uid_t, libc::gid_t)>,
}

impl Meta {
    /// `mode` exactly, owned by the writer.
    pub const fn mode(mode: libc::mode_t) -> Meta {
        Meta {
            mode,
            exact: true,
            owner: None,
        }
    }

    /// What the filesystem makes of `mode` (the umask and its mount options), owned by the
    /// writer.
    pub const fn filesystem(mode: libc::mode_t) -> Meta {
        Meta {
            mode,
            exact: false,
            owner: None,
        }
    }
}

/// Exchange the names `a` and `b` in `dir` atomically (`renameat2(RENAME_EXCHANGE)`): both must
/// exist. On vfat (Linux 6.0 and later) this rewrites the two directory entries in place.
pub fn exchange(dir: &OwnedFd, a: &str, b: &str) -> io::Result<()> {
    let (ca, cb) = (cstr(a)?, cstr(b)?);
    let d = dir.as_raw_fd();
    // SAFETY: valid descriptors and NUL-terminated names; renameat2 has no other inputs.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            d,
            ca.as_ptr(),
            d,
            cb.as_ptr(),
            RENAME_EXCHANGE,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Create the regular file `name` in `dir` exclusively (never through a link, failing when it
/// exists), write `data`, and `fsync` it.
pub fn create_new(dir: &OwnedFd, name: &str, data: &[u8], mode: libc::mode_t) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid descriptor and NUL-terminated name; the result is owned below.
    let fd = owned(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            libc::c_uint::from(mode),
        )
    })?;
    let mut file = File::from(fd);
    file.write_all(data)?;
    file.sync_all()
}

/// `syncfs` of the filesystem `dir` is on: every write to it reaches the disk.
pub fn sync_fs(dir: &OwnedFd) -> io::Result<()> {
    // SAFETY: valid descriptor.
    check(unsafe { libc::syncfs(dir.as_raw_fd()) })
}

/// The whole regular file `name` in `dir` (at most `max` bytes) as the disk holds it: the
/// file's cached pages are dropped first (`POSIX_FADV_DONTNEED` after an `fsync`), so the bytes
/// are read from the device, not from what was just written into the cache.
pub fn read_from_disk(dir: &OwnedFd, name: &str, max: usize) -> io::Result<(Vec<u8>, bool)> {
    let file = open_file(dir, name)?;
    file.sync_all()?;
    // SAFETY: valid descriptor; advice has no memory effects.
    let r = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    let mut data = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    file.take(limit).read_to_end(&mut data)?;
    let more = data.len() > max;
    data.truncate(max);
    Ok((data, more))
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
    let max = u64::try_from(data.len()).unwrap_or(u64::MAX);
    write_from(dir, name, &mut &data[..], Meta::mode(mode), replace, max).map(|_| ())
}

/// [`write_file`] with the bytes of `src` (to its end) and `meta`: at most `max` bytes, or
/// nothing is written and the error says the limit. Returns the bytes written.
pub fn write_from(
    dir: &OwnedFd,
    name: &str,
    src: &mut dyn Read,
    meta: Meta,
    replace: bool,
    max: u64,
) -> io::Result<u64> {
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
            meta.mode as libc::c_uint,
        )
    })?;
    let mut file = File::from(fd);
    let written = copy_bounded(src, &mut file, max).and_then(|n| {
        if let Some((uid, gid)) = meta.owner {
            // SAFETY: valid descriptor.
            check(unsafe { libc::fchown(file.as_raw_fd(), uid, gid) })?;
        }
        if meta.exact {
            // The mode as asked, whatever the umask (after fchown, which clears set-id bits).
            // SAFETY: valid descriptor.
            check(unsafe { libc::fchmod(file.as_raw_fd(), meta.mode) })?;
        }
        file.sync_all()?;
        rename(dir, &temp, name, replace)?;
        Ok(n)
    });
    match written {
        Ok(n) => {
            sync_dir(dir)?;
            Ok(n)
        }
        Err(e) => {
            // SAFETY: valid descriptor and NUL-terminated name.
            unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) };
            Err(e)
        }
    }
}

/// Copy `src` to its end into `dst`; more than `max` bytes is an error naming the limit.
fn copy_bounded(src: &mut dyn Read, dst: &mut File, max: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 16];
    let mut done = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => return Ok(done),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        done = done.saturating_add(n as u64);
        if done > max {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("more than {max} bytes (the limit): nothing was written"),
            ));
        }
        dst.write_all(&buf[..n])?;
    }
}

/// Hard-link the file `from` in `from_dir` as `to` in `to_dir`, exclusively; neither name is
/// followed if it is a link.
pub fn link(from_dir: &OwnedFd, from: &str, to_dir: &OwnedFd, to: &str) -> io::Result<()> {
    let (f, t) = (cstr(from)?, cstr(to)?);
    // SAFETY: valid descriptors and NUL-terminated names.
    check(unsafe {
        libc::linkat(
            from_dir.as_raw_fd(),
            f.as_ptr(),
            to_dir.as_raw_fd(),
            t.as_ptr(),
            0,
        )
    })
}

/// Create the symbolic link `name` in `dir` pointing at `target`, exclusively.
pub fn symlink(target: &str, dir: &OwnedFd, name: &str) -> io::Result<()> {
    let (tg, n) = (cstr(target)?, cstr(name)?);
    // SAFETY: valid descriptor and NUL-terminated strings.
    check(unsafe { libc::symlinkat(tg.as_ptr(), dir.as_raw_fd(), n.as_ptr()) })
}

/// The target of the symbolic link `name` in `dir`; `None` when `name` is not a link.
pub fn read_link(dir: &OwnedFd, name: &str) -> io::Result<Option<String>> {
    let c = cstr(name)?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid descriptor, NUL-terminated name, a buffer of the length passed.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            c.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EINVAL | libc::ENOENT) => Ok(None),
            _ => Err(e),
        };
    }
    buf.truncate(usize::try_from(n).unwrap_or(0));
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// Why [`read_regular`] read nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Nothing is there.
    #[error("not there")]
    Absent,
    /// It is something else than a regular file (named: `a FIFO`, `a character device`...).
    #[error("{0}, not a regular file")]
    NotAFile(&'static str),
    /// It holds more than the limit.
    #[error("larger than {0} bytes")]
    TooLarge(usize),
    /// Opening or reading it failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// The bytes of the file at `path` (a link followed, as an operator's path is), only when it
/// is a regular file of at most `max` bytes. Opened non-blocking and without becoming a
/// controlling terminal: a FIFO, a device or a socket is named and never read, so nothing can
/// make this wait or read without end.
pub fn read_regular(path: &std::path::Path, max: usize) -> Result<Vec<u8>, ReadError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ReadError::Absent),
        Err(e) => return Err(ReadError::Io(e)),
    };
    let fd = OwnedFd::from(file);
    let st = fstat(&fd)?;
    if !matches!(kind_of(&st), Kind::File(_)) {
        return Err(ReadError::NotAFile(describe(&st)));
    }
    read_bounded(File::from(fd), max)
}

/// At most `max` bytes of `file` (a regular file), or [`ReadError::TooLarge`].
fn read_bounded(file: File, max: usize) -> Result<Vec<u8>, ReadError> {
    let mut data = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    file.take(limit).read_to_end(&mut data)?;
    if data.len() > max {
        return Err(ReadError::TooLarge(max));
    }
    Ok(data)
}

/// Create `name` in `dir` exclusively (it must not exist), never through a link, open for
/// reading and writing, with `mode` (after the umask).
pub fn create_exclusive(dir: &OwnedFd, name: &str, mode: libc::mode_t) -> io::Result<File> {
    let c = cstr(name)?;
    // SAFETY: valid descriptor and NUL-terminated name; the result is owned below.
    let fd = owned(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })?;
    Ok(File::from(fd))
}

/// Open the regular file `name` in `dir` for reading and writing (created with `mode` when
/// `create` and it is missing), never through a link, non-blocking; `None` when it is missing
/// and not to be created. Anything but a regular file is refused, saying what it is.
pub fn open_file_rw(
    dir: &OwnedFd,
    name: &str,
    create: bool,
    mode: libc::mode_t,
) -> io::Result<Option<File>> {
    let c = cstr(name)?;
    let mut flags = libc::O_RDWR | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
    if create {
        flags |= libc::O_CREAT;
    }
    // SAFETY: valid descriptor and NUL-terminated name; the result is owned below.
    let fd = match owned(unsafe {
        libc::openat(dir.as_raw_fd(), c.as_ptr(), flags, mode as libc::c_uint)
    }) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) && !create => return Ok(None),
        Err(e) => return Err(e),
    };
    let st = fstat(&fd)?;
    if !matches!(kind_of(&st), Kind::File(_)) {
        return Err(io::Error::other(format!(
            "{}, not a regular file",
            describe(&st)
        )));
    }
    Ok(Some(File::from(fd)))
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

/// How [`empty`] made a file empty.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Emptied {
    /// It had one link: truncated in place (owner, mode, extended attributes kept).
    Truncated,
    /// It had this many links (a hard-link clone shares it): a new empty file with the same
    /// owner and mode was renamed over this name; the other names keep the old contents.
    Replaced(u64),
}

/// Make the regular file `name` in `dir` empty, never through a link and never changing
/// another name's file: one link, truncated in place; more, replaced (see [`Emptied`]).
pub fn empty(dir: &OwnedFd, name: &str) -> io::Result<Emptied> {
    let c = cstr(name)?;
    // O_PATH first: nothing is opened for writing until the links are counted.
    // SAFETY: valid descriptor and NUL-terminated name; the result is owned below.
    let fd = owned(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    })?;
    let st = fstat(&fd)?;
    if !matches!(kind_of(&st), Kind::File(_)) {
        return Err(io::Error::other(format!(
            "{}, not a regular file",
            describe(&st)
        )));
    }
    #[allow(clippy::useless_conversion)] // st_nlink's width differs between libcs.
    let links = u64::from(st.st_nlink);
    if links > 1 {
        let meta = Meta {
            mode: st.st_mode & 0o7777,
            exact: true,
            owner: Some((st.st_uid, st.st_gid)),
        };
        write_from(dir, name, &mut io::empty(), meta, true, 0)?;
        return Ok(Emptied::Replaced(links));
    }
    // SAFETY: valid descriptor and NUL-terminated name; the result is owned below.
    let file = owned(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    })?;
    let now = fstat(&file)?;
    if now.st_ino != st.st_ino || now.st_dev != st.st_dev || now.st_nlink != st.st_nlink {
        return Err(io::Error::other(
            "it changed while being emptied (another link, or replaced): left as it is",
        ));
    }
    // SAFETY: valid descriptor.
    check(unsafe { libc::ftruncate(file.as_raw_fd(), 0) })?;
    // SAFETY: valid descriptor.
    check(unsafe { libc::fsync(file.as_raw_fd()) })?;
    Ok(Emptied::Truncated)
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

/// Open (creating if `create`, mode 0755) the directory `name` in `dir`, never following a
/// link.
pub fn subdir(dir: &OwnedFd, name: &str, create: bool) -> io::Result<OwnedFd> {
    if create {
        return make_dir(dir, name, 0o755);
    }
    open_dir(dir, name)?.ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
}

/// Delete the directory tree `name` in `dir` through descriptors only, never following a link
/// and never entering another mount (`mnt`: the mount ID of `dir`'s, see
/// [`mount_id`]; a directory bind-mounted from the same filesystem is another
/// mount). At most `budget` entries. Returns the entries removed.
pub fn remove_tree(dir: &OwnedFd, name: &str, mnt: u64, budget: &mut usize) -> usize {
    if mount_id(dir, name).ok() != Some(mnt) {
        return 0;
    }
    let Ok(sub) = subdir(dir, name, false) else {
        return 0;
    };
    let mut removed = remove_children(&sub, mnt, budget, 0);
    drop(sub);
    if let Ok(n) = cstr(name) {
        // SAFETY: valid descriptor and name.
        if unsafe { libc::unlinkat(dir.as_raw_fd(), n.as_ptr(), libc::AT_REMOVEDIR) } == 0 {
            removed += 1;
        }
    }
    removed
}

/// Delete everything in the directory `dir` that lies on the mount `mnt` (a mount ID), through
/// descriptors only, never entering another mount (nor removing a mount point: a file or
/// directory mounted over is left). Returns the entries removed.
pub fn remove_children(dir: &OwnedFd, mnt: u64, budget: &mut usize, depth: usize) -> usize {
    const MAX_DEPTH: usize = 64;
    if depth > MAX_DEPTH {
        return 0;
    }
    // SAFETY: `dup` of a valid descriptor; fdopendir takes ownership of the duplicate.
    let dup = unsafe { libc::dup(dir.as_raw_fd()) };
    if dup < 0 {
        return 0;
    }
    // SAFETY: a fresh descriptor; on success the stream owns it.
    let stream = unsafe { libc::fdopendir(dup) };
    if stream.is_null() {
        // SAFETY: fdopendir failed, so the duplicate is still ours.
        unsafe { libc::close(dup) };
        return 0;
    }
    // The duplicate shares its offset with `dir`: start from the beginning.
    // SAFETY: a valid stream.
    unsafe { libc::rewinddir(stream) };
    let mut names: Vec<CString> = Vec::new();
    loop {
        // SAFETY: a valid stream.
        let entry = unsafe { libc::readdir(stream) };
        if entry.is_null() || names.len() >= *budget {
            break;
        }
        // SAFETY: readdir returned a valid entry whose name is NUL-terminated.
        let name = unsafe { std::ffi::CStr::from_ptr((*entry).d_name.as_ptr()) };
        if name.to_bytes() != b"." && name.to_bytes() != b".." {
            names.push(name.to_owned());
        }
    }
    // SAFETY: a valid stream, closed once.
    unsafe { libc::closedir(stream) };
    let mut removed = 0;
    for name in names {
        if *budget == 0 {
            break;
        }
        *budget -= 1;
        if mount_id_c(dir, &name).ok() != Some(mnt) {
            continue;
        }
        // SAFETY: zeroed stat is a valid out-buffer.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid descriptor, NUL-terminated name, valid out-pointer.
        let r = unsafe {
            libc::fstatat(
                dir.as_raw_fd(),
                name.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if r != 0 {
            continue;
        }
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            // SAFETY: valid descriptor and name; the result is owned below.
            let fd = unsafe {
                libc::openat(
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            };
            if fd >= 0 {
                // SAFETY: a fresh descriptor we own.
                let sub = unsafe { OwnedFd::from_raw_fd(fd) };
                removed += remove_children(&sub, mnt, budget, depth + 1);
            }
            // SAFETY: valid descriptor and name.
            if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) } == 0 {
                removed += 1;
            }
        // SAFETY: valid descriptor and name.
        } else if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) } == 0 {
            removed += 1;
        }
    }
    removed
}

/// The mount ID of the mount holding `dir` (see [`mount_id`]).
pub fn mount_of(dir: &OwnedFd) -> Option<u64> {
    mount_id(dir, "").ok()
}

/// A root directory other than `/` (a tree, the mounted copy of an image, the new root),
/// held open, in which paths resolve as they will once it is `/`. Relative paths (`etc/fstab`;
/// a leading `/` is the root) are resolved with `openat2(RESOLVE_IN_ROOT |
/// RESOLVE_NO_MAGICLINKS)`; what is written, linked or removed is the last component itself,
/// never what a link there points at.
#[derive(Debug)]
pub struct InRoot {
    root: OwnedFd,
    path: std::path::PathBuf,
}

/// A path's last component, checked: one name, not `.` or `..`.
fn last_component(rel: &str) -> io::Result<(&str, &str)> {
    let rel = rel.trim_matches('/');
    let (parent, name) = match rel.rsplit_once('/') {
        Some((p, n)) => (p, n),
        None => ("", rel),
    };
    if name.is_empty() || name == "." || name == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{rel:?} does not end in a file name"),
        ));
    }
    Ok((parent, name))
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
        Ok(InRoot {
            root,
            path: path.to_owned(),
        })
    }

    /// Where the root is, for messages.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The root's directory descriptor.
    pub fn fd(&self) -> &OwnedFd {
        &self.root
    }

    /// `openat2(rel, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: links resolve inside the
    /// root, `..` stops at it.
    pub fn resolve(&self, rel: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
        let rel = rel.trim_start_matches('/');
        let c = cstr(if rel.is_empty() { "." } else { rel })?;
        // SAFETY: zeroed open_how is valid (no flags, no mode, no resolve restrictions).
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = u64::try_from(flags | libc::O_CLOEXEC).unwrap_or(0);
        how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
        openat2(self.root.as_raw_fd(), &c, &how)
    }

    /// What `rel` is, links followed inside the root. A link that loops is an error
    /// (`ELOOP`); a link that leads nowhere is [`Kind::Absent`].
    pub fn kind(&self, rel: &str) -> io::Result<Kind> {
        match self.stat(rel)? {
            Some(st) => Ok(kind_of(&st)),
            None => Ok(Kind::Absent),
        }
    }

    /// `stat` of `rel`, links followed inside the root: `None` when nothing is there.
    pub fn stat(&self, rel: &str) -> io::Result<Option<libc::stat>> {
        match self.resolve(rel, libc::O_PATH) {
            Ok(fd) => Ok(Some(fstat(&fd)?)),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The directory that holds `rel`'s last component (resolved inside the root; it must
    /// exist), as an `O_PATH` descriptor, and that component.
    pub fn parent<'r>(&self, rel: &'r str) -> io::Result<(OwnedFd, &'r str)> {
        let (parent, name) = last_component(rel)?;
        let dir = self.resolve(parent, libc::O_PATH | libc::O_DIRECTORY)?;
        Ok((dir, name))
    }

    /// What `rel`'s last component itself is (a link there is [`Kind::Link`]), the
    /// directories on the way resolved inside the root.
    pub fn kind_here(&self, rel: &str) -> io::Result<Kind> {
        let (dir, name) = match self.parent(rel) {
            Ok(found) => found,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                return Ok(Kind::Absent)
            }
            Err(e) => return Err(e),
        };
        kind(&dir, name)
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
        let (parent, name) = last_component(rel)?;
        let dir = self.make_dir(parent)?;
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

    /// Open the regular file `rel` for reading, links followed inside the root, non-blocking.
    pub fn open_file(&self, rel: &str) -> Result<File, ReadError> {
        let fd = match self.resolve(rel, libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY) {
            Ok(fd) => fd,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                return Err(ReadError::Absent)
            }
            Err(e) => return Err(ReadError::Io(e)),
        };
        let st = fstat(&fd)?;
        if !matches!(kind_of(&st), Kind::File(_)) {
            return Err(ReadError::NotAFile(describe(&st)));
        }
        Ok(File::from(fd))
    }

    /// The bytes of the regular file `rel` (links followed inside the root), at most `max`.
    pub fn read(&self, rel: &str, max: usize) -> Result<Vec<u8>, ReadError> {
        read_bounded(self.open_file(rel)?, max)
    }

    /// The names in the directory `rel` (links followed inside the root), at most `max`.
    pub fn list(&self, rel: &str, max: usize) -> io::Result<(Vec<String>, bool)> {
        let dir = self.resolve(rel, libc::O_RDONLY | libc::O_DIRECTORY)?;
        list(&dir, max)
    }

    /// Write `data` as `rel` (replacing what is there, a link included, with `mode`), parents
    /// created as needed.
    pub fn write(&self, rel: &str, data: &[u8], mode: libc::mode_t) -> io::Result<()> {
        let max = u64::try_from(data.len()).unwrap_or(u64::MAX);
        self.write_from(rel, &mut &data[..], mode, max).map(|_| ())
    }

    /// [`InRoot::write`] with the bytes of `src`, at most `max`.
    pub fn write_from(
        &self,
        rel: &str,
        src: &mut dyn Read,
        mode: libc::mode_t,
        max: u64,
    ) -> io::Result<u64> {
        self.write_as(rel, src, Meta::mode(mode), max)
    }

    /// [`InRoot::write_from`] with `meta` (the mode as the filesystem makes it, an owner).
    pub fn write_as(&self, rel: &str, src: &mut dyn Read, meta: Meta, max: u64) -> io::Result<u64> {
        let (parent, name) = last_component(rel)?;
        let dir = self.make_dir(parent)?;
        write_from(&dir, name, src, meta, true, max)
    }

    /// Hard-link the file `from` (links followed inside the root: the file they lead to) as
    /// `to`, replacing what `to` is (a link there included, never followed), through a
    /// temporary name and a rename. Both in this root's filesystem.
    pub fn hard_link(&self, from: &str, to: &str) -> io::Result<()> {
        let src = self.resolve(from, libc::O_PATH)?;
        let st = fstat(&src)?;
        if !matches!(kind_of(&st), Kind::File(_)) {
            return Err(io::Error::other(format!(
                "/{} is {}, not a regular file",
                from.trim_start_matches('/'),
                describe(&st)
            )));
        }
        let (dir, name) = self.parent(to)?;
        let temp = format!(".{name}{TEMP_SUFFIX}");
        unlink(&dir, &temp)?;
        let t = cstr(&temp)?;
        // The resolved file itself (AT_EMPTY_PATH on its descriptor): no second lookup that
        // could be raced or led elsewhere. Needs CAP_DAC_READ_SEARCH, as the image build has.
        // SAFETY: valid descriptors, an empty and a NUL-terminated name.
        check(unsafe {
            libc::linkat(
                src.as_raw_fd(),
                c"".as_ptr(),
                dir.as_raw_fd(),
                t.as_ptr(),
                libc::AT_EMPTY_PATH,
            )
        })?;
        if let Err(e) = rename(&dir, &temp, name, true) {
            let _ = unlink(&dir, &temp);
            return Err(e);
        }
        sync_dir(&dir)
    }

    /// Create the symbolic link `rel` pointing at `target`, exclusively (parents must exist).
    pub fn symlink(&self, target: &str, rel: &str) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        symlink(target, &dir, name)
    }

    /// The target of the symbolic link `rel` (`None`: not a link); the directories on the way
    /// resolved inside the root.
    pub fn read_link(&self, rel: &str) -> io::Result<Option<String>> {
        let (dir, name) = self.parent(rel)?;
        read_link(&dir, name)
    }

    /// Remove the file or link `rel` (a link is removed, never followed; already gone is fine).
    pub fn remove(&self, rel: &str) -> io::Result<()> {
        match self.parent(rel) {
            Ok((dir, name)) => unlink(&dir, name),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `syncfs` of the root's filesystem.
    pub fn sync_fs(&self) -> io::Result<()> {
        // SAFETY: valid descriptor.
        check(unsafe { libc::syncfs(self.root.as_raw_fd()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_fd(p: &std::path::Path) -> OwnedFd {
        OwnedFd::from(File::open(p).unwrap())
    }

    /// Debian's `/sbin/init -> ../lib/systemd/systemd` resolved inside a root while renames go
    /// on elsewhere on the machine (as udev's do while the initramfs checks the image's init):
    /// the kernel answers `EAGAIN` to some of the bare `openat2` calls (counted, so the test
    /// shows the race happened), and [`InRoot::resolve`] never fails.
    #[test]
    fn a_walk_that_races_with_renames_elsewhere_is_tried_again() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("usr/lib/systemd")).unwrap();
        std::fs::create_dir_all(r.join("usr/sbin")).unwrap();
        std::fs::write(r.join("usr/lib/systemd/systemd"), b"init").unwrap();
        std::os::unix::fs::symlink("usr/lib", r.join("lib")).unwrap();
        std::os::unix::fs::symlink("usr/sbin", r.join("sbin")).unwrap();
        std::os::unix::fs::symlink("../lib/systemd/systemd", r.join("usr/sbin/init")).unwrap();
        let in_root = InRoot::open(r).unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let (a, b) = (elsewhere.path().join("a"), elsewhere.path().join("b"));
        std::fs::write(&a, b"x").unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (mut bare_eagain, mut failed) = (0, Vec::new());
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::fs::rename(&a, &b).unwrap();
                    std::fs::rename(&b, &a).unwrap();
                }
            });
            let path = std::ffi::CString::new("sbin/init").unwrap();
            // SAFETY: zeroed open_how is valid.
            let mut how: libc::open_how = unsafe { std::mem::zeroed() };
            how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
            how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
            // At least 20,000 walks, and on until the race has shown at least once: on a
            // loaded machine the renaming thread may seldom run beside this one (up to 60 s).
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            let mut walks = 0u32;
            while (walks < 20_000 || bare_eagain == 0) && std::time::Instant::now() < deadline {
                walks += 1;
                let bare = openat2_once(in_root.fd().as_raw_fd(), &path, &how);
                if bare.is_err_and(|e| e.raw_os_error() == Some(libc::EAGAIN)) {
                    bare_eagain += 1;
                }
                if let Err(e) = in_root.resolve("/sbin/init", libc::O_PATH) {
                    failed.push(e.to_string());
                }
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        assert!(
            bare_eagain > 0,
            "the renames never raced with a walk in 60 s: the test shows nothing"
        );
        assert!(
            failed.is_empty(),
            "{} failed: {:?}",
            failed.len(),
            &failed[..1]
        );
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
        assert!(empty(&d, "link").is_err());
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
    fn emptying_a_shared_file_replaces_it_and_leaves_the_other_names() {
        let t = tempfile::tempdir().unwrap();
        let clone = tempfile::tempdir().unwrap();
        let d = dir_fd(t.path());
        std::fs::write(t.path().join("machine-id"), b"0123\n").unwrap();
        std::fs::hard_link(t.path().join("machine-id"), clone.path().join("machine-id")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            t.path().join("machine-id"),
            std::fs::Permissions::from_mode(0o444),
        )
        .unwrap();
        assert_eq!(empty(&d, "machine-id").unwrap(), Emptied::Replaced(2));
        assert_eq!(std::fs::read(t.path().join("machine-id")).unwrap(), b"");
        assert_eq!(
            std::fs::read(clone.path().join("machine-id")).unwrap(),
            b"0123\n",
            "the clone keeps its contents"
        );
        let mode = std::fs::metadata(t.path().join("machine-id"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o444, "the mode as it was");
        // One link: emptied in place (the same inode).
        use std::os::unix::fs::MetadataExt;
        let ino = std::fs::metadata(clone.path().join("machine-id"))
            .unwrap()
            .ino();
        let c = dir_fd(clone.path());
        assert_eq!(empty(&c, "machine-id").unwrap(), Emptied::Truncated);
        let after = std::fs::metadata(clone.path().join("machine-id")).unwrap();
        assert_eq!((after.ino(), after.len()), (ino, 0));
        // A FIFO is named, never opened for writing.
        let fifo = CString::new(t.path().join("fifo").to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let e = empty(&d, "fifo").unwrap_err().to_string();
        assert!(e.contains("a FIFO, not a regular file"), "{e}");
    }

    #[test]
    fn writes_are_bounded_and_leave_nothing_when_too_large() {
        let t = tempfile::tempdir().unwrap();
        let d = dir_fd(t.path());
        let data = vec![7u8; 100_000];
        let e =
            write_from(&d, "big", &mut &data[..], Meta::mode(0o600), false, 99_999).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge, "{e}");
        assert!(e.to_string().contains("more than 99999 bytes"), "{e}");
        assert_eq!(
            std::fs::read_dir(t.path()).unwrap().count(),
            0,
            "nothing left"
        );
        assert_eq!(
            write_from(&d, "big", &mut &data[..], Meta::mode(0o600), false, 100_000).unwrap(),
            100_000
        );
    }

    #[test]
    fn only_regular_files_are_read_from_an_operators_path() {
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("key.pub");
        let c = CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Nobody writes to the FIFO: a blocking open would wait forever.
        let e = read_regular(&fifo, 4096).unwrap_err();
        assert!(matches!(e, ReadError::NotAFile("a FIFO")), "{e}");
        std::os::unix::fs::symlink("/dev/zero", t.path().join("zero.pub")).unwrap();
        let e = read_regular(&t.path().join("zero.pub"), 4096).unwrap_err();
        assert!(
            matches!(e, ReadError::NotAFile("a character device")),
            "{e}"
        );
        std::fs::write(t.path().join("big"), vec![0u8; 4097]).unwrap();
        let e = read_regular(&t.path().join("big"), 4096).unwrap_err();
        assert!(matches!(e, ReadError::TooLarge(4096)), "{e}");
        assert!(matches!(
            read_regular(&t.path().join("none"), 1),
            Err(ReadError::Absent)
        ));
        std::fs::write(t.path().join("ok"), b"key").unwrap();
        assert_eq!(read_regular(&t.path().join("ok"), 3).unwrap(), b"key");
    }

    #[test]
    fn a_bind_mount_from_the_same_filesystem_is_another_mount() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: bind mounts need root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let host = t.path().join("host");
        let tree = t.path().join("tree");
        std::fs::create_dir_all(host.join("etc")).unwrap();
        std::fs::create_dir_all(tree.join("etc")).unwrap();
        std::fs::write(tree.join("etc/hostname"), b"x").unwrap();
        crate::mounts::mount(
            &host.join("etc"),
            &tree.join("etc"),
            None,
            libc::MS_BIND,
            None,
        )
        .unwrap();
        let d = dir_fd(&tree);
        let outer = mount_id(&d, "").unwrap();
        let inner = mount_id(&d, "etc");
        let _ = crate::mounts::umount(&tree.join("etc"), 0);
        assert_ne!(inner.unwrap(), outer, "same device, another mount");
        assert_eq!(
            mount_id(&d, "etc").unwrap(),
            outer,
            "unmounted: the tree's own again"
        );
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

    #[test]
    fn writes_links_and_removals_in_a_root_never_follow_the_last_link() {
        let t = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        let r = t.path();
        let victim = host.path().join("fstab");
        std::fs::write(&victim, b"the host's\n").unwrap();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::create_dir_all(r.join("boot")).unwrap();
        // A link named like the file written: replaced, the host's file untouched.
        std::os::unix::fs::symlink(&victim, r.join("etc/fstab")).unwrap();
        let root = InRoot::open(r).unwrap();
        assert_eq!(root.kind_here("etc/fstab").unwrap(), Kind::Link);
        assert_eq!(
            root.kind("etc/fstab").unwrap(),
            Kind::Absent,
            "no such file in the root"
        );
        root.write("etc/fstab", b"ours\n", 0o644).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"the host's\n");
        assert_eq!(std::fs::read(r.join("etc/fstab")).unwrap(), b"ours\n");
        // A directory that is an absolute link to the host's: resolved in the root, where it
        // leads nowhere, so nothing is written.
        std::os::unix::fs::symlink(host.path(), r.join("hostdir")).unwrap();
        assert!(root.write("hostdir/fstab", b"x", 0o644).is_err());
        assert!(root.remove("hostdir/fstab").is_ok());
        assert_eq!(std::fs::read(&victim).unwrap(), b"the host's\n");
        // Relative links at several depths stop at the root.
        std::fs::create_dir_all(r.join("a/b/c")).unwrap();
        std::os::unix::fs::symlink("../../../../../../..", r.join("a/b/c/up")).unwrap();
        root.write("a/b/c/up/top", b"t", 0o644).unwrap();
        assert!(r.join("top").is_file());
        // A hard link of the file a link leads to, replacing a link at the new name.
        std::fs::write(r.join("boot/vmlinuz-1"), b"kernel").unwrap();
        std::os::unix::fs::symlink("boot/vmlinuz-1", r.join("vmlinuz")).unwrap();
        std::os::unix::fs::symlink(&victim, r.join("boot/kernel")).unwrap();
        root.hard_link("vmlinuz", "boot/kernel").unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            std::fs::metadata(r.join("boot/kernel")).unwrap().ino(),
            std::fs::metadata(r.join("boot/vmlinuz-1")).unwrap().ino()
        );
        assert_eq!(std::fs::read(&victim).unwrap(), b"the host's\n");
        // Removing a link removes the link.
        std::os::unix::fs::symlink(&victim, r.join("etc/gone")).unwrap();
        root.remove("etc/gone").unwrap();
        assert!(victim.exists());
        root.symlink("/hostpart/data", "data0").unwrap();
        assert_eq!(
            root.read_link("data0").unwrap().as_deref(),
            Some("/hostpart/data")
        );
        assert!(root.symlink("/x", "data0").is_err(), "exclusive");
        // Reads follow links inside the root only.
        std::os::unix::fs::symlink(&victim, r.join("etc/os-release")).unwrap();
        assert!(matches!(
            root.read("etc/os-release", 100),
            Err(ReadError::Absent)
        ));
    }
}
