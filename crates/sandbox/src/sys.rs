//! Thin wrappers over the raw system calls that neither std nor nix cover. Each wrapper
//! turns the libc return convention into an `io::Result` once, here.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A close-on-exec pipe: (read end, write end).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid, writable array of two ints as pipe2 requires.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }.into())?;
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Takes an exclusive `flock` on `fd` without waiting: `Ok(false)` when another open
/// file description holds it.
pub(crate) fn try_lock_exclusive(fd: &impl AsRawFd) -> io::Result<bool> {
    // SAFETY: flock only reads the descriptor number; no memory is passed.
    match check(unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }.into()) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(false),
        Err(e) => Err(e),
    }
}

/// SIGKILLs every process in the group led by `pgid`. Errors (group gone) are ignored.
pub(crate) fn kill_process_group(pgid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: killpg has no memory-safety preconditions; pgid > 1 never targets init or
    // the caller's own group by accident.
    unsafe { libc::killpg(pgid, libc::SIGKILL) };
}

/// A pidfd for `pid`, which stays valid (and unambiguous) after the pid is reused.
pub(crate) fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags by value and returns a new descriptor.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: the syscall succeeded, so `fd` is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Makes descriptor `target` (0, 1 or 2) `/dev/null`, open for reading and writing. Also
/// when `target` was closed: opening /dev/null then lands on it, and it is kept.
pub(crate) fn dev_null_onto(target: RawFd) -> io::Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    if null.as_raw_fd() == target {
        // Already in place: keep it open (and inheritable, as std opens it close-on-exec).
        let fd = std::os::fd::IntoRawFd::into_raw_fd(null);
        nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )?;
        return Ok(());
    }
    nix::unistd::dup2(null.as_raw_fd(), target)?;
    Ok(())
}

/// Sets how long a receive on `sock` may wait (zero: for ever).
pub(crate) fn set_receive_timeout(sock: &OwnedFd, timeout: std::time::Duration) -> io::Result<()> {
    let tv = nix::sys::time::TimeVal::new(timeout.as_secs() as i64, timeout.subsec_micros().into());
    nix::sys::socket::setsockopt(sock, nix::sys::socket::sockopt::ReceiveTimeout, &tv)
        .map_err(io::Error::from)
}

/// Discards every block of the block device `fd` (BLKDISCARD over its whole size): for a
/// loop device on a sparse image, the image's space goes back to the host.
pub(crate) fn discard_block_device(fd: BorrowedFd<'_>) -> io::Result<()> {
    const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
    const BLKDISCARD: libc::c_ulong = 0x1277;
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points to `size`.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), BLKGETSIZE64, &mut size as *mut u64) }.into())?;
    let range: [u64; 2] = [0, size];
    // SAFETY: BLKDISCARD reads two u64 (start, length) through the pointer, which points
    // to `range`.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), BLKDISCARD, range.as_ptr()) }.into())?;
    Ok(())
}

/// The pid (in our pid namespace) of the process behind a pidfd, from its fdinfo.
pub(crate) fn pidfd_pid(pidfd: &OwnedFd) -> io::Result<libc::pid_t> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd()))?;
    info.lines()
        .find_map(|line| line.strip_prefix("Pid:"))
        .and_then(|pid| pid.trim().parse().ok())
        .filter(|pid: &libc::pid_t| *pid > 0)
        .ok_or_else(|| io::Error::other("the process behind the pidfd is gone"))
}

/// Gives the root directory of a detached mount to `uid`:`gid` with `mode`.
pub(crate) fn chown_mount_root(
    mount: BorrowedFd<'_>,
    uid: u32,
    gid: u32,
    mode: u32,
) -> io::Result<()> {
    let root = nix::fcntl::openat(
        Some(mount.as_raw_fd()),
        ".",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    // SAFETY: openat returned a new descriptor that only we own.
    let root = unsafe { OwnedFd::from_raw_fd(root) };
    nix::unistd::fchown(
        root.as_raw_fd(),
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )?;
    nix::sys::stat::fchmod(
        root.as_raw_fd(),
        nix::sys::stat::Mode::from_bits_truncate(mode),
    )?;
    Ok(())
}

/// Sends `signal` to the process behind a pidfd.
pub(crate) fn pidfd_send_signal(pidfd: &OwnedFd, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: a null siginfo is allowed (the kernel fills in SI_USER); the fd is open.
    check(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })?;
    Ok(())
}

/// Brings the loopback interface of the current network namespace up.
pub(crate) fn set_loopback_up() -> io::Result<()> {
    // SAFETY: socket() takes plain integers and returns a new descriptor or -1.
    let fd = check(
        unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) }.into(),
    )?;
    // SAFETY: socket() succeeded, the descriptor is ours.
    let sock = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    // SAFETY: ifreq is plain old data, all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name from and writes the flags into `req`, which is
    // a valid ifreq for the duration of the call.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) }.into())?;
    // SAFETY: after SIOCGIFFLAGS the flags member of the union is the initialised one.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    // SAFETY: as above; SIOCSIFFLAGS only reads `req`.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) }.into())?;
    Ok(())
}

/// Kill this process with `signal` when its parent dies.
pub(crate) fn set_parent_death_signal(signal: libc::c_int) -> io::Result<()> {
    // SAFETY: PR_SET_PDEATHSIG takes the signal number by value.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) }.into())?;
    Ok(())
}

pub(crate) fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integers only.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }.into())?;
    Ok(())
}

/// Sets the securebits (see [`crate::privileges::SECUREBITS`]).
pub(crate) fn set_securebits(bits: u64) -> io::Result<()> {
    // SAFETY: PR_SET_SECUREBITS takes the bit mask by value.
    check(unsafe { libc::prctl(libc::PR_SET_SECUREBITS, bits as libc::c_ulong, 0, 0, 0) }.into())?;
    Ok(())
}

/// Drops every capability: bounding set, ambient set, then effective/permitted/inheritable.
pub(crate) fn drop_all_capabilities() -> io::Result<()> {
    for cap in 0..64 {
        // SAFETY: PR_CAPBSET_DROP takes the capability number by value.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            // EINVAL: past the last capability the kernel knows.
            if err.raw_os_error() == Some(libc::EINVAL) {
                break;
            }
            return Err(err);
        }
    }
    let clear_all = libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong;
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes integers only.
    let rc = unsafe { libc::prctl(libc::PR_CAP_AMBIENT, clear_all, 0, 0, 0) };
    check(rc.into())?;

    #[repr(C)]
    struct CapHeader {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct CapData {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset reads one header and, for version 3, two data structs; both are
    // valid, correctly laid out (#[repr(C)]) and live across the call.
    check(unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) })?;
    Ok(())
}

/// Closes every descriptor from `first` upwards.
pub(crate) fn close_from(first: RawFd) {
    // SAFETY: close_range only closes descriptors; the caller owns all of them at this
    // point (it is about to exec) and nothing uses them afterwards.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            0,
        )
    };
    if rc < 0 {
        for fd in first..1024 {
            // SAFETY: as above, closing descriptors nobody will use again.
            unsafe { libc::close(fd) };
        }
    }
}

/// Four random bytes from the kernel (0 if it has none to give, which only costs
/// uniqueness of a name, never safety).
pub(crate) fn random_u32() -> u32 {
    let mut buf = [0u8; 4];
    // SAFETY: getrandom writes at most buf.len() bytes into buf.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n == 4 {
        u32::from_ne_bytes(buf)
    } else {
        0
    }
}

/// An anonymous in-memory file holding `data`, positioned at its start.
pub(crate) fn memfd_with(name: &str, data: &[u8]) -> io::Result<OwnedFd> {
    use std::io::{Seek, Write};
    let name = std::ffi::CString::new(name).map_err(io::Error::other)?;
    // SAFETY: memfd_create reads the NUL-terminated name, which outlives the call.
    let fd = check(unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) }.into())?;
    // SAFETY: memfd_create just returned this descriptor and nothing else owns it.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
    file.write_all(data)?;
    file.rewind()?;
    Ok(OwnedFd::from(file))
}

/// Forks. Only call from a single-threaded process (the keeper).
pub(crate) fn fork() -> io::Result<Option<libc::pid_t>> {
    // SAFETY: the keeper is single-threaded (it is a fresh exec and never spawns threads),
    // so the child gets a consistent copy of all locks and allocator state.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        pid => Ok(Some(pid)),
    }
}

/// `_exit` without running destructors or atexit handlers (forked children).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and has no preconditions.
    unsafe { libc::_exit(code) }
}

/// Blocks until at least one descriptor is readable or hung up; returns which are.
pub(crate) fn poll_readable(fds: &[std::os::fd::BorrowedFd<'_>]) -> io::Result<Vec<bool>> {
    let mut pollfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `pollfds` is a valid array of `len` pollfd structs for the whole call.
    check(unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, -1) }.into())?;
    Ok(pollfds.iter().map(|p| p.revents != 0).collect())
}

/// `<linux/loop.h>`: the parts libc does not export.
mod loop_abi {
    pub const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
    pub const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
    pub const LO_FLAGS_AUTOCLEAR: u32 = 4;
    pub const LO_FLAGS_DIRECT_IO: u32 = 16;
    pub const LO_NAME_SIZE: usize = 64;
    pub const LO_KEY_SIZE: usize = 32;

    #[repr(C)]
    pub struct LoopInfo64 {
        pub lo_device: u64,
        pub lo_inode: u64,
        pub lo_rdevice: u64,
        pub lo_offset: u64,
        pub lo_sizelimit: u64,
        pub lo_number: u32,
        pub lo_encrypt_type: u32,
        pub lo_encrypt_key_size: u32,
        pub lo_flags: u32,
        pub lo_file_name: [u8; LO_NAME_SIZE],
        pub lo_crypt_name: [u8; LO_NAME_SIZE],
        pub lo_encrypt_key: [u8; LO_KEY_SIZE],
        pub lo_init: [u64; 2],
    }

    #[repr(C)]
    pub struct LoopConfig {
        pub fd: u32,
        pub block_size: u32,
        pub info: LoopInfo64,
        pub reserved: [u64; 8],
    }
}

/// Asks `/dev/loop-control` for the number of a free loop device (creating one if needed).
pub(crate) fn loop_get_free(control: &OwnedFd) -> io::Result<u32> {
    // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number or -1.
    let n = check(unsafe { libc::ioctl(control.as_raw_fd(), loop_abi::LOOP_CTL_GET_FREE) }.into())?;
    u32::try_from(n).map_err(|_| io::Error::other("loop device number out of range"))
}

/// Binds `backing` to the loop device `device` (LOOP_CONFIGURE, Linux 5.8+). The device
/// detaches itself when its last user closes it; with `direct_io` it bypasses the page
/// cache of the backing file.
pub(crate) fn loop_configure(
    device: &OwnedFd,
    backing: &OwnedFd,
    block_size: u32,
    direct_io: bool,
    name: &str,
) -> io::Result<()> {
    let backing_fd = u32::try_from(backing.as_raw_fd()).map_err(|_| io::Error::other("bad fd"))?;
    let mut flags = loop_abi::LO_FLAGS_AUTOCLEAR;
    if direct_io {
        flags |= loop_abi::LO_FLAGS_DIRECT_IO;
    }
    let mut file_name = [0u8; loop_abi::LO_NAME_SIZE];
    for (dst, src) in file_name
        .iter_mut()
        .zip(name.bytes().take(loop_abi::LO_NAME_SIZE - 1))
    {
        *dst = src;
    }
    let config = loop_abi::LoopConfig {
        fd: backing_fd,
        block_size,
        info: loop_abi::LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: 0,
            lo_sizelimit: 0,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: flags,
            lo_file_name: file_name,
            lo_crypt_name: [0; loop_abi::LO_NAME_SIZE],
            lo_encrypt_key: [0; loop_abi::LO_KEY_SIZE],
            lo_init: [0; 2],
        },
        reserved: [0; 8],
    };
    // SAFETY: LOOP_CONFIGURE reads one `struct loop_config`, which `LoopConfig` mirrors
    // field for field (#[repr(C)]); it lives across the call and both fds are open.
    let rc = unsafe {
        libc::ioctl(
            device.as_raw_fd(),
            loop_abi::LOOP_CONFIGURE,
            &config as *const loop_abi::LoopConfig,
        )
    };
    check(rc.into())?;
    Ok(())
}

/// `<linux/mount.h>` constants of the new mount API (Linux 5.2+) that libc lacks.
mod mount_abi {
    pub const FSOPEN_CLOEXEC: libc::c_uint = 1;
    pub const FSCONFIG_SET_FLAG: libc::c_uint = 0;
    pub const FSCONFIG_SET_STRING: libc::c_uint = 1;
    pub const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    pub const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    pub const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
    pub const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;
    pub const MOUNT_ATTR_NOATIME: libc::c_uint = 0x10;
    pub const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    pub const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
    pub const OPEN_TREE_CLONE: libc::c_uint = 1;
}

/// An option for [`fs_mount_detached`].
pub(crate) enum FsOption<'a> {
    Flag(&'a str),
    String(&'a str, &'a str),
}

/// Creates a filesystem and returns it as a detached mount (nosuid, nodev, noatime):
/// a descriptor that belongs to no mount namespace until [`move_mount_to`] attaches it.
pub(crate) fn fs_mount_detached(fstype: &str, options: &[FsOption]) -> io::Result<OwnedFd> {
    let cstr = |s: &str| CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL));
    let fstype = cstr(fstype)?;
    // SAFETY: fsopen reads the NUL-terminated name and returns a new descriptor or -1.
    let fs = check(unsafe {
        libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), mount_abi::FSOPEN_CLOEXEC)
    })?;
    // SAFETY: fsopen succeeded; the descriptor is new and ours.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as RawFd) };
    for option in options {
        let (cmd, key, value) = match option {
            FsOption::Flag(key) => (mount_abi::FSCONFIG_SET_FLAG, cstr(key)?, None),
            FsOption::String(key, value) => (
                mount_abi::FSCONFIG_SET_STRING,
                cstr(key)?,
                Some(cstr(value)?),
            ),
        };
        let value_ptr = value.as_ref().map_or(std::ptr::null(), |v| v.as_ptr());
        // SAFETY: key and value are NUL-terminated strings (or null for a flag, as
        // FSCONFIG_SET_FLAG requires) that outlive the call; aux is unused (0).
        check(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                cmd,
                key.as_ptr(),
                value_ptr,
                0,
            )
        })?;
    }
    // SAFETY: FSCONFIG_CMD_CREATE takes no key or value.
    check(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            mount_abi::FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    })?;
    let attrs =
        mount_abi::MOUNT_ATTR_NOSUID | mount_abi::MOUNT_ATTR_NODEV | mount_abi::MOUNT_ATTR_NOATIME;
    // SAFETY: fsmount takes the configured fs context descriptor and integer flags and
    // returns a new descriptor or -1.
    let mnt = check(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            mount_abi::FSMOUNT_CLOEXEC,
            attrs,
        )
    })?;
    // SAFETY: fsmount succeeded; the descriptor is new and ours.
    Ok(unsafe { OwnedFd::from_raw_fd(mnt as RawFd) })
}

/// Attaches a detached mount (from [`fs_mount_detached`]) at `target`.
pub(crate) fn move_mount_to(mount: RawFd, target: &std::path::Path) -> io::Result<()> {
    let empty = CString::default();
    let target = CString::new(target.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: both paths are NUL-terminated strings that outlive the call; with
    // MOVE_MOUNT_F_EMPTY_PATH the empty source path names the `mount` descriptor itself.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mount,
            empty.as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            mount_abi::MOVE_MOUNT_F_EMPTY_PATH,
        )
    })?;
    Ok(())
}

/// Attaches a detached mount on top of the directory `target` refers to (which must be
/// in the caller's mount namespace).
pub(crate) fn move_mount_onto(mount: RawFd, target: RawFd) -> io::Result<()> {
    let empty = CString::default();
    // SAFETY: the empty paths are NUL-terminated and outlive the call; with both
    // *_EMPTY_PATH flags the descriptors themselves name source and target.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mount,
            empty.as_ptr(),
            target,
            empty.as_ptr(),
            mount_abi::MOVE_MOUNT_F_EMPTY_PATH | mount_abi::MOVE_MOUNT_T_EMPTY_PATH,
        )
    })?;
    Ok(())
}

/// A detached copy of the mount at `path` (open_tree with OPEN_TREE_CLONE), to attach
/// elsewhere with [`move_mount_onto`].
pub(crate) fn clone_mount(path: &std::path::Path) -> io::Result<OwnedFd> {
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: the path is a NUL-terminated string that outlives the call; open_tree
    // returns a new descriptor or -1.
    let fd = check(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            mount_abi::OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    })?;
    // SAFETY: open_tree succeeded; the descriptor is new and ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

#[cfg(test)]
mod loop_abi_tests {
    use super::loop_abi::*;

    #[test]
    fn loop_structs_match_the_kernel_layout() {
        // sizeof(struct loop_info64) == 232 and sizeof(struct loop_config) == 304 on every
        // 64-bit and 32-bit Linux ABI (the struct has only fixed-size fields).
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<LoopConfig>(), 304);
    }
}
