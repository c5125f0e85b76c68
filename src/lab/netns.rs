//! Anonymous network namespaces: create them, switch a thread into one and back, and name them by inode.
//!
//! A namespace here is never mounted under `/run/netns`: it lives exactly as long as some file
//! descriptor (or socket, or thread) refers to it, so a crash or `SIGKILL` of the process takes it
//! away with everything inside (veths, routes, conntrack, nftables).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

/// Path of the calling *thread's* network namespace. `/proc/self` would name the thread-group
/// leader, whose namespace differs from ours while we are inside [`NetnsGuard`].
const THREAD_NETNS: &str = "/proc/thread-self/ns/net";

/// Opens the calling thread's current network namespace as a file descriptor (close-on-exec).
pub(crate) fn open_current() -> io::Result<OwnedFd> {
    Ok(OwnedFd::from(File::open(THREAD_NETNS)?))
}

/// Switches the calling thread into the network namespace `ns`.
pub(crate) fn setns(ns: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain syscall on a valid descriptor; CLONE_NEWNET makes the kernel check the fd kind.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// While alive, the calling thread is in another network namespace; dropping it (also during a
/// panic unwind) moves the thread back to where it was.
///
/// It is deliberately `!Send`: the namespace switch belongs to the OS thread that made it.
pub(crate) struct NetnsGuard {
    home: OwnedFd,
    _not_send: std::marker::PhantomData<*const ()>,
}

/// Error kind returned when the thread could leave its namespace but never come back.
pub(crate) const CANNOT_RETURN: io::ErrorKind = io::ErrorKind::PermissionDenied;

/// Checks that the thread may `setns` back into `home`, by doing it now (a no-op switch).
///
/// Joining a namespace needs CAP_SYS_ADMIN in the user namespace that *owns* it. A process in an
/// unprivileged user namespace (e.g. under `unshare -r`) owns the lab namespaces it creates, but
/// not the host's namespace it started in: it could enter a lab and then be stuck there. Asking
/// first turns that into an error instead of an abort.
fn check_return(home: &OwnedFd) -> io::Result<()> {
    setns(home.as_fd()).map_err(|e| {
        if e.raw_os_error() == Some(libc::EPERM) {
            io::Error::new(CANNOT_RETURN, e)
        } else {
            e
        }
    })
}

/// Checks that the calling thread could leave its current namespace and come back.
pub(crate) fn check_return_home() -> io::Result<()> {
    check_return(&open_current()?)
}

impl NetnsGuard {
    /// Remembers the current namespace, then enters `target`.
    pub(crate) fn enter(target: BorrowedFd<'_>) -> io::Result<Self> {
        let home = open_current()?;
        check_return(&home)?;
        setns(target)?;
        Ok(Self {
            home,
            _not_send: std::marker::PhantomData,
        })
    }

    /// Remembers the current namespace, then moves the thread into a brand-new, empty one and
    /// returns a descriptor for it. The descriptor is what keeps the namespace alive afterwards.
    pub(crate) fn enter_new() -> io::Result<(Self, OwnedFd)> {
        let home = open_current()?;
        check_return(&home)?;
        // unshare(CLONE_NEWNET) only affects the calling thread, so this is safe in a
        // multi-threaded process (unlike CLONE_NEWUSER).
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        let guard = Self {
            home,
            _not_send: std::marker::PhantomData,
        };
        let fd = open_current()?;
        Ok((guard, fd))
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Err(e) = setns(self.home.as_fd()) {
            // A thread left inside a lab namespace would make every later socket on it land in
            // the lab (or the host's sockets in the lab): silently wrong measurements. Stop hard.
            eprintln!("tcphb: cannot return thread to its network namespace: {e}; aborting");
            std::process::abort();
        }
    }
}

/// Inode number of a namespace file descriptor: the kernel's stable identity of that namespace
/// (what `ip netns identify`, `lsns` and `/proc/*/ns/net` links show as `net:[INODE]`).
pub(crate) fn fd_ns_id(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let st = nix::sys::stat::fstat(fd).map_err(io::Error::from)?;
    Ok(st.st_ino)
}

/// Network namespace id (inode) of the calling thread.
pub fn current_netns_id() -> io::Result<u64> {
    Ok(std::fs::metadata(THREAD_NETNS)?.ino())
}

/// Network namespace id (inode) that the socket `fd` lives in, which is fixed when the socket is
/// created. Compare with [`current_netns_id`] and [`crate::lab::Lab::netns_id`].
///
/// Uses `ioctl(SIOCGSKNS)`, which hands back a namespace descriptor for the socket; it needs
/// `CAP_NET_ADMIN` over that namespace, which any process able to build a lab has.
pub fn socket_netns_id(fd: BorrowedFd<'_>) -> io::Result<u64> {
    // SAFETY: SIOCGSKNS takes no argument and returns a new fd or -1.
    let ns = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGSKNS as _) };
    if ns < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor; we own it.
    let ns = unsafe { OwnedFd::from_raw_fd(ns) };
    fd_ns_id(ns.as_fd())
}
