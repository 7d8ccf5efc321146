//! The RTP port range from configuration, handed out one even port per call leg.
//!
//! RTP takes the even port and RTCP `port + 1` (RFC 3550 §11); a port whose pair cannot be
//! bound is skipped. A lease returns its port to the back of the free list when dropped, so a
//! port is reused as late as possible and stray packets of an ended call rarely reach a new
//! one. A port another process holds is skipped (its bind fails) and retried later.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};

/// Why no port could be had.
#[derive(Debug, thiserror::Error)]
pub enum PortPoolError {
    /// The configured range holds no even port above 1.
    #[error("RTP port range {first}-{last} holds no even port")]
    EmptyRange {
        /// First port of the range.
        first: u16,
        /// Last port of the range.
        last: u16,
    },
    /// Every port is leased, or every free one failed to bind.
    #[error("no free RTP port ({leased} leased, {failed} failed to bind)")]
    Exhausted {
        /// Ports currently leased.
        leased: usize,
        /// Free ports whose bind failed on this attempt.
        failed: usize,
    },
}

impl PortPoolError {
    /// Exhaustion can clear as calls end; an empty range is a configuration error.
    pub fn is_transient(&self) -> bool {
        matches!(self, PortPoolError::Exhausted { .. })
    }
}

#[derive(Debug)]
struct Inner {
    ip: IpAddr,
    total: usize,
    free: Mutex<VecDeque<u16>>,
}

/// The two sockets of a leg.
#[derive(Debug)]
pub struct RtpSockets {
    /// RTP, on the even port.
    pub rtp: UdpSocket,
    /// RTCP, on the port after it.
    pub rtcp: UdpSocket,
}

/// A pool of RTP ports on one local address. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PortPool {
    inner: Arc<Inner>,
}

/// A leased port; dropping it gives the port back.
#[derive(Debug)]
pub struct PortLease {
    port: u16,
    inner: Arc<Inner>,
}

impl PortLease {
    /// The leased (RTP) port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        if let Ok(mut free) = self.inner.free.lock() {
            free.push_back(self.port);
        }
    }
}

impl PortPool {
    /// A pool over the even ports of `range` on `ip`.
    pub fn new(ip: IpAddr, range: RangeInclusive<u16>) -> Result<PortPool, PortPoolError> {
        let (first, last) = (*range.start(), *range.end());
        let free: VecDeque<u16> = range
            .filter(|p| p % 2 == 0 && *p > 1 && *p < u16::MAX)
            .collect();
        if free.is_empty() {
            return Err(PortPoolError::EmptyRange { first, last });
        }
        Ok(PortPool {
            inner: Arc::new(Inner {
                ip,
                total: free.len(),
                free: Mutex::new(free),
            }),
        })
    }

    /// Ports not leased right now.
    pub fn available(&self) -> usize {
        self.inner.free.lock().map(|f| f.len()).unwrap_or(0)
    }

    /// Binds the next free pair: RTP on the even port, RTCP on the next (both non-blocking).
    pub fn bind(&self) -> Result<(RtpSockets, PortLease), PortPoolError> {
        let mut failed = Vec::new();
        let result = loop {
            let next = self.inner.free.lock().ok().and_then(|mut f| f.pop_front());
            let Some(port) = next else {
                break Err(PortPoolError::Exhausted {
                    leased: self.inner.total - self.available() - failed.len(),
                    failed: failed.len(),
                });
            };
            let open = |p: u16| {
                UdpSocket::bind(SocketAddr::new(self.inner.ip, p))
                    .and_then(|s| s.set_nonblocking(true).map(|()| s))
            };
            match open(port).and_then(|rtp| {
                Ok(RtpSockets {
                    rtp,
                    rtcp: open(port + 1)?,
                })
            }) {
                Ok(sockets) => {
                    break Ok((
                        sockets,
                        PortLease {
                            port,
                            inner: Arc::clone(&self.inner),
                        },
                    ))
                }
                Err(_) => failed.push(port),
            }
        };
        if let Ok(mut free) = self.inner.free.lock() {
            free.extend(failed);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn hands_out_even_ports_and_takes_them_back_last() {
        // A range in the dynamic area unlikely to be busy; taken ports are skipped anyway.
        let pool = PortPool::new(LOCAL, 41001..=41008).unwrap();
        assert_eq!(pool.available(), 4);
        let (s1, l1) = pool.bind().unwrap();
        assert_eq!(l1.port() % 2, 0);
        assert_eq!(s1.rtp.local_addr().unwrap().port(), l1.port());
        assert_eq!(s1.rtcp.local_addr().unwrap().port(), l1.port() + 1);
        let (_s2, l2) = pool.bind().unwrap();
        assert_ne!(l1.port(), l2.port());
        assert_eq!(pool.available(), 2);
        let first = l1.port();
        drop((s1, l1));
        assert_eq!(pool.available(), 3);
        let (_s3, l3) = pool.bind().unwrap();
        assert_ne!(l3.port(), first, "a returned port goes to the back");
    }

    #[test]
    fn exhaustion_and_busy_ports() {
        let pool = PortPool::new(LOCAL, 41020..=41023).unwrap();
        // Another process (here: a plain socket) holds 41021, the RTCP port of 41020.
        let squatter = UdpSocket::bind((LOCAL, 41021));
        let (_s, lease) = pool.bind().unwrap();
        if squatter.is_ok() {
            assert_eq!(lease.port(), 41022);
        }
        let err = pool.bind().unwrap_err();
        assert!(err.is_transient());
        assert!(matches!(err, PortPoolError::Exhausted { .. }), "{err}");
        drop(lease);
        assert!(pool.bind().is_ok() || squatter.is_ok());
    }

    #[test]
    fn a_range_without_even_ports_is_refused() {
        let err = PortPool::new(LOCAL, 41031..=41031).unwrap_err();
        assert!(!err.is_transient());
    }
}
