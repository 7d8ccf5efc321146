//! `TCP_NODELAY` on the connections to PostgreSQL.
//!
//! sqlx 0.9.0 stopped setting it (transact-rs/sqlx#4335). The fix, #4336, is merged upstream
//! but not in any release we can depend on. Without it, over TLS, a statement of ~64 KB or
//! more leaves as several records, and Nagle's algorithm holds the last one until the
//! server's delayed ACK, ~40 ms later. That was every PostgreSQL ingest run's p99 of ~115 ms
//! (BENCHMARKS.md, "PostgreSQL's 115 ms p99 found").
//!
//! sqlx does not hand out its socket, so after each new connection this sets the option on
//! every TCP socket of the process whose peer port is the database's. Those are all our own
//! connections to PostgreSQL, where the option is wanted anyway; a socket set twice is
//! harmless. This only works on Linux (`/proc/self/fd`); elsewhere it does nothing.
//! Remove it once a sqlx release sets the option again.

/// Sets `TCP_NODELAY` on the process's TCP sockets whose peer port is `port`; answers how
/// many it set.
#[cfg(target_os = "linux")]
pub fn set_on_sockets_to(port: u16) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    let mut set = 0;
    for entry in dir.flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        if is_socket && peer_port(fd) == Some(port) && set_nodelay(fd) {
            set += 1;
        }
    }
    set
}

/// Elsewhere: nothing.
#[cfg(not(target_os = "linux"))]
pub fn set_on_sockets_to(_port: u16) -> usize {
    0
}

/// The TCP peer port of `fd`, if it is a connected IPv4 or IPv6 socket.
#[cfg(target_os = "linux")]
fn peer_port(fd: i32) -> Option<u16> {
    // SAFETY: `getpeername` writes at most `len` bytes into `addr`, a zeroed
    // `sockaddr_storage` large enough for any address; a stale or foreign fd only makes it
    // fail.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let rc = unsafe {
        libc::getpeername(
            fd,
            &mut addr as *mut libc::sockaddr_storage as *mut libc::sockaddr,
            &mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    let storage = &addr as *const libc::sockaddr_storage;
    // SAFETY: the family says which address type the storage holds.
    match i32::from(addr.ss_family) {
        libc::AF_INET => Some(u16::from_be(unsafe {
            (*(storage as *const libc::sockaddr_in)).sin_port
        })),
        libc::AF_INET6 => Some(u16::from_be(unsafe {
            (*(storage as *const libc::sockaddr_in6)).sin6_port
        })),
        _ => None,
    }
}

#[cfg(target_os = "linux")]
fn set_nodelay(fd: i32) -> bool {
    let one: libc::c_int = 1;
    // SAFETY: a valid pointer to an int of the size given; a wrong fd only makes it fail.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn nodelay(fd: i32) -> bool {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                &mut v as *mut libc::c_int as *mut libc::c_void,
                &mut len,
            )
        };
        rc == 0 && v != 0
    }

    #[test]
    fn only_sockets_to_the_port_get_it() {
        use std::os::fd::AsRawFd;
        let db = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let to_db = std::net::TcpStream::connect(db.local_addr().unwrap()).unwrap();
        let to_other = std::net::TcpStream::connect(other.local_addr().unwrap()).unwrap();
        assert!(!nodelay(to_db.as_raw_fd()) && !nodelay(to_other.as_raw_fd()));
        assert!(set_on_sockets_to(db.local_addr().unwrap().port()) >= 1);
        assert!(nodelay(to_db.as_raw_fd()));
        assert!(!nodelay(to_other.as_raw_fd()));
    }
}
