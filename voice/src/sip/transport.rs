//! UDP and TCP listeners on one port: they frame, parse and check every message, answer
//! what must be refused (400, 483, 513) themselves, and hand the rest to the user agent
//! through a bounded channel. Sending never waits: a full TCP writer queue or a full UDP
//! socket buffer drops the message, and SIP's own retransmissions recover it.

use super::framing::{frame_datagram, frame_stream, FrameLimits, Framed, Head};
use super::message::{check_request, parse, Inbound};
use super::response::{build_response, ResponseParts};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch, Semaphore};

/// How a message reached us, and so how to answer it.
#[derive(Debug, Clone)]
pub enum Conn {
    Udp,
    Tcp(TcpConn),
}

/// The writer side of one accepted TCP connection.
#[derive(Debug, Clone)]
pub struct TcpConn {
    pub id: u64,
    tx: mpsc::Sender<Vec<u8>>,
}

/// The far end of a message: its source address and the connection it came on.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    pub conn: Conn,
}

impl Peer {
    /// The Via transport token for this peer's connection.
    pub fn transport_name(&self) -> &'static str {
        match self.conn {
            Conn::Udp => "UDP",
            Conn::Tcp(_) => "TCP",
        }
    }

    pub fn is_reliable(&self) -> bool {
        matches!(self.conn, Conn::Tcp(_))
    }
}

/// A parsed and checked message handed to the user agent.
#[derive(Debug)]
pub struct Received {
    pub message: Inbound,
    pub peer: Peer,
}

/// Settings of the listeners.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    pub limits: FrameLimits,
    /// More Via headers than this is a loop or an attack: 483.
    pub max_vias: usize,
    /// Open TCP connections at most; more are closed on accept.
    pub max_tcp_connections: usize,
    /// Open TCP connections from one source IP at most; more are closed on accept.
    pub max_tcp_per_source: usize,
    /// A TCP connection that sends nothing for this long is closed (keep-alive CRLFs count).
    pub tcp_idle_timeout: std::time::Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            limits: FrameLimits::default(),
            max_vias: 70,
            max_tcp_connections: 1024,
            max_tcp_per_source: 32,
            tcp_idle_timeout: std::time::Duration::from_secs(300),
        }
    }
}

/// Counters of what the listeners did with what they read.
#[derive(Debug, Default)]
pub struct TransportStats {
    pub accepted: AtomicU64,
    /// Answered by the listener itself (400, 483, 513).
    pub refused: AtomicU64,
    /// Dropped without an answer (unaddressable, malformed responses, queue full).
    pub dropped: AtomicU64,
    /// New INVITEs answered 503 because the call store was behind (overload shed early).
    pub shed: AtomicU64,
}

/// Why the listeners could not start.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot bind {protocol} on {addr}")]
    Bind {
        protocol: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The sending side, cheap to clone.
#[derive(Debug, Clone)]
pub struct Transport {
    udp: Arc<UdpSocket>,
    local: SocketAddr,
    pub stats: Arc<TransportStats>,
}

impl Transport {
    /// The address both listeners are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Sends without waiting.
    pub fn send(&self, peer: &Peer, bytes: Vec<u8>) {
        match &peer.conn {
            Conn::Udp => match self.udp.try_send_to(&bytes, peer.addr) {
                Ok(_) => {}
                // A full socket buffer: drop, as the network would; SIP retransmits.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => tracing::debug!(error = %e, to = %peer.addr, "udp send failed"),
            },
            Conn::Tcp(tcp) => {
                if tcp.tx.try_send(bytes).is_err() {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Binds UDP and TCP on the same address; with port 0, on the same free port.
pub async fn bind(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), TransportError> {
    let bind_err = |protocol, addr, source| TransportError::Bind {
        protocol,
        addr,
        source,
    };
    let mut last = None;
    for _ in 0..20 {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|e| bind_err("UDP", addr, e))?;
        let chosen = udp.local_addr().map_err(|e| bind_err("UDP", addr, e))?;
        match TcpListener::bind(chosen).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 => last = Some(e),
            Err(e) => return Err(bind_err("TCP", chosen, e)),
        }
    }
    let source = last.unwrap_or_else(|| std::io::Error::other("no free port"));
    Err(bind_err("TCP", addr, source))
}

/// Starts both listeners; they stop when `shutdown` turns true.
pub fn spawn(
    udp: UdpSocket,
    tcp: TcpListener,
    config: TransportConfig,
    local_vias: Vec<SocketAddr>,
    out: mpsc::Sender<Received>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<Transport> {
    let local = udp.local_addr()?;
    let transport = Transport {
        udp: Arc::new(udp),
        local,
        stats: Arc::new(TransportStats::default()),
    };
    let checker = Arc::new(Checker {
        config,
        local_vias,
        transport: transport.clone(),
        out,
    });
    tokio::spawn(udp_loop(Arc::clone(&checker), shutdown.clone()));
    tokio::spawn(tcp_accept_loop(tcp, checker, shutdown));
    Ok(transport)
}

/// What both listeners share: limits, our own addresses, the way out.
struct Checker {
    config: TransportConfig,
    local_vias: Vec<SocketAddr>,
    transport: Transport,
    out: mpsc::Sender<Received>,
}

enum Verdict {
    Pass(Box<Received>),
    Answered,
    Dropped,
}

impl Checker {
    fn refuse(&self, head: Option<&Head>, peer: &Peer, status: u16, reason: &str) -> Verdict {
        match head {
            Some(head) if head.is_addressable() => {
                let bytes = build_response(head, peer.addr, &ResponseParts::new(status, reason));
                self.transport.send(peer, bytes);
                self.transport.stats.refused.fetch_add(1, Ordering::Relaxed);
                Verdict::Answered
            }
            _ => {
                self.transport.stats.dropped.fetch_add(1, Ordering::Relaxed);
                Verdict::Dropped
            }
        }
    }

    fn check(&self, raw: super::framing::RawMessage, peer: Peer) -> Verdict {
        let message = match parse(raw) {
            Ok(m) => m,
            Err(e) => {
                let reason = format!("Bad Request ({})", e.kind);
                return self.refuse(Some(&e.head), &peer, 400, &reason);
            }
        };
        if message.method().is_some() {
            if let Err(refusal) = check_request(&message, &self.local_vias, self.config.max_vias) {
                let (status, reason) = refusal.status();
                return self.refuse(Some(&message.head), &peer, status, reason);
            }
        }
        Verdict::Pass(Box::new(Received { message, peer }))
    }

    fn framing_error(&self, e: super::framing::FrameError, peer: &Peer) -> Verdict {
        let reason = match e.kind.status() {
            513 => format!("Message Too Large ({})", e.kind),
            _ => format!("Bad Request ({})", e.kind),
        };
        self.refuse(e.head.as_ref(), peer, e.kind.status(), &reason)
    }
}

async fn udp_loop(checker: Arc<Checker>, mut shutdown: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 65_536];
    let udp = Arc::clone(&checker.transport.udp);
    loop {
        let (len, addr) = tokio::select! {
            r = udp.recv_from(&mut buf) => match r {
                Ok(r) => r,
                // ICMP errors surface here on some systems; the socket stays usable.
                Err(_) => continue,
            },
            _ = shutdown.changed() => return,
        };
        let peer = Peer {
            addr,
            conn: Conn::Udp,
        };
        let verdict = match frame_datagram(&buf[..len], &checker.config.limits) {
            Ok(raw) => checker.check(raw, peer),
            Err(e) => checker.framing_error(e, &peer),
        };
        if let Verdict::Pass(received) = verdict {
            checker
                .transport
                .stats
                .accepted
                .fetch_add(1, Ordering::Relaxed);
            if checker.out.try_send(*received).is_err() {
                // Overloaded: the sender retransmits over UDP.
                checker
                    .transport
                    .stats
                    .dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

async fn tcp_accept_loop(
    listener: TcpListener,
    checker: Arc<Checker>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(checker.config.max_tcp_connections));
    let per_source = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let mut next_id = 0u64;
    let mut backoff = std::time::Duration::ZERO;
    loop {
        let (stream, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(r) => {
                    backoff = std::time::Duration::ZERO;
                    r
                }
                Err(e) => {
                    // Out of file descriptors, typically: retrying at once would spin a
                    // core. Back off (up to a second) and let connections close.
                    backoff = (backoff * 2).clamp(std::time::Duration::from_millis(10), std::time::Duration::from_secs(1));
                    tracing::warn!(error = %e, ?backoff, "SIP TCP accept failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => continue,
                        _ = shutdown.changed() => return,
                    }
                }
            },
            _ = shutdown.changed() => return,
        };
        let dropped = || {
            checker
                .transport
                .stats
                .dropped
                .fetch_add(1, Ordering::Relaxed)
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            dropped();
            continue;
        };
        let Some(source) =
            SourceSlot::take(&per_source, addr.ip(), checker.config.max_tcp_per_source)
        else {
            dropped();
            continue;
        };
        next_id += 1;
        let checker = Arc::clone(&checker);
        let shutdown = shutdown.clone();
        let id = next_id;
        tokio::spawn(tcp_connection(
            stream,
            addr,
            id,
            checker,
            shutdown,
            (permit, source),
        ));
    }
}

type SourceCounts = Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>;

/// One TCP connection's place in its source's count; given back on drop.
struct SourceSlot {
    counts: SourceCounts,
    ip: std::net::IpAddr,
}

impl SourceSlot {
    fn take(counts: &SourceCounts, ip: std::net::IpAddr, cap: usize) -> Option<SourceSlot> {
        let mut map = counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = map.entry(ip).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            counts: Arc::clone(counts),
            ip,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut map = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Serves one connection. `slots` (its place in the global and per-source counts) are given
/// back as soon as the peer stops sending (close, idle timeout, lost framing), not when the
/// last transaction holding the write half lets go (which can be up to 32 s later).
async fn tcp_connection(
    stream: TcpStream,
    addr: SocketAddr,
    id: u64,
    checker: Arc<Checker>,
    mut shutdown: watch::Receiver<bool>,
    slots: (tokio::sync::OwnedSemaphorePermit, SourceSlot),
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(256);
    let write_task = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    });
    let peer = Peer {
        addr,
        conn: Conn::Tcp(TcpConn { id, tx }),
    };
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 8192];
    let idle = checker.config.tcp_idle_timeout;
    'read: loop {
        let n = tokio::select! {
            r = tokio::time::timeout(idle, reader.read(&mut chunk)) => match r {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => n,
            },
            _ = shutdown.changed() => break,
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            match frame_stream(&buf, &checker.config.limits) {
                Ok(Framed::NeedsMoreData) => break,
                Ok(Framed::KeepAlive(used)) => {
                    buf.drain(..used);
                }
                Ok(Framed::Message(raw, used)) => {
                    buf.drain(..used);
                    if let Verdict::Pass(received) = checker.check(*raw, peer.clone()) {
                        checker
                            .transport
                            .stats
                            .accepted
                            .fetch_add(1, Ordering::Relaxed);
                        // A stream can wait: backpressure reaches the sender through TCP.
                        if checker.out.send(*received).await.is_err() {
                            break 'read;
                        }
                    }
                }
                Err(e) => {
                    // The stream has lost its framing: answer if possible, then close.
                    checker.framing_error(e, &peer);
                    break 'read;
                }
            }
        }
    }
    drop(slots);
    drop(peer);
    let _ = write_task.await;
}
