//! Media benchmark: N concurrent echo sessions and a load generator sending 20 ms G.711
//! packets to each, measuring end-to-end packet loss and the jitter the echo path adds.
//!
//! Two processes (so each can be pinned with `taskset`), started by `scripts/bench-media.sh`:
//!
//! ```text
//! media_bench server --calls N --threads T --seconds S --ports-file F [--mode workers|tasks]
//! media_bench load   --ports-file F --seconds S [--warmup W] [--sockets K]
//! ```
//!
//! Each generator packet carries a per-call counter in its first three payload bytes (µ-law
//! codes that survive decode → encode unchanged), so an echoed packet identifies the packet it
//! echoes. Loss = counters sent in the measured window that never came back. Jitter figures:
//! `interarrival` is |D| of RFC 3550 for the echo stream (arrival spacing against the server's
//! RTP timestamps: how evenly the server paces), `delay` is each echo's round trip minus the
//! smallest round trip of its call (what the jitter buffer and scheduling add on top of the
//! fixed buffering delay). Arrival times are the kernel's (SO_TIMESTAMPNS), so the generator
//! polling its sockets every 2 ms does not blur them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use voice::app::{CallContext, Echo};
use voice::media::rtp::RtpPacket;
use voice::media::{MediaConfig, MediaSession, PortPool};
use voice::sdp::{Codec, Direction, Negotiated};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("server") => server(&args),
        Some("load") => load(&args),
        _ => anyhow::bail!("usage: media_bench server|load [options] (see the file's docs)"),
    }
}

/// CPU seconds this process has used (user + system), from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn server(args: &[String]) -> anyhow::Result<()> {
    let calls: usize = arg(args, "--calls", 2000);
    let threads: usize = arg(args, "--threads", 2);
    let seconds: u64 = arg(args, "--seconds", 20);
    let base: u16 = arg(args, "--base-port", 20000);
    let ports_file: String = arg(args, "--ports-file", "/tmp/media_bench_ports".to_string());
    // `--mode tasks`: one worker task per leg (BoundMedia::start); default: shared workers.
    let per_leg_tasks = arg(args, "--mode", "workers".to_string()) == "tasks";
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let last = base as usize + 4 * calls;
        let pool = PortPool::new(LOCAL, base..=u16::try_from(last.min(65534))?)?;
        let negotiated = Negotiated {
            codec: Codec::Pcmu,
            payload_type: 0,
            telephone_event: Some(101),
            remote_rtp: None,
            remote_direction: Direction::SendRecv,
            direction: Direction::SendRecv,
            ptime_ms: 20,
            remote_ptime_ms: Some(20),
        };
        let config = MediaConfig {
            stats_interval: None,
            ..MediaConfig::default()
        };
        let workers = voice::media::MediaWorkers::new(threads)?;
        let mut sessions = Vec::with_capacity(calls);
        let mut ports = String::new();
        for _ in 0..calls {
            let bound = MediaSession::bind(&pool)?;
            ports.push_str(&format!("{}\n", bound.port()));
            let (handle, events) = if per_leg_tasks {
                bound.start(
                    &negotiated,
                    Box::new(Echo),
                    CallContext::default(),
                    config.clone(),
                )?
            } else {
                workers.start(
                    bound,
                    &negotiated,
                    Box::new(Echo),
                    CallContext::default(),
                    config.clone(),
                )?
            };
            sessions.push((handle, events));
        }
        std::fs::write(&ports_file, ports)?;
        let cpu0 = cpu_seconds();
        let t0 = Instant::now();
        println!("READY {calls} sessions on {threads} media worker threads");
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let cpu = cpu_seconds() - cpu0;
        let wall = t0.elapsed().as_secs_f64();
        let mut total = voice::media::MediaStats::default();
        let (mut jitter_sum, mut jitter_max, mut deep) = (0.0f64, 0.0f64, 0usize);
        let stops: Vec<_> = sessions
            .into_iter()
            .map(|(handle, _events)| tokio::spawn(handle.stop()))
            .collect();
        for stop in stops {
            let s = stop.await?;
            total.jitter.received += s.jitter.received;
            total.jitter.concealed += s.jitter.concealed;
            total.jitter.late += s.jitter.late;
            total.jitter.underruns += s.jitter.underruns;
            total.jitter.discarded += s.jitter.discarded;
            total.packets_sent += s.packets_sent;
            total.send_dropped += s.send_dropped;
            total.late_ticks += s.late_ticks;
            jitter_sum += s.jitter.jitter_ms;
            jitter_max = jitter_max.max(s.jitter.jitter_ms);
            deep += usize::from(s.jitter.target_frames > 2);
        }
        println!(
            "server: cpu {:.1}% of one core over {:.1} s; received {} late {} concealed {} \
             underruns {} discarded {}; sent {} send_dropped {}; ticks >5 ms late {}",
            100.0 * cpu / wall,
            wall,
            total.jitter.received,
            total.jitter.late,
            total.jitter.concealed,
            total.jitter.underruns,
            total.jitter.discarded,
            total.packets_sent,
            total.send_dropped,
            total.late_ticks
        );
        println!(
            "server: RFC 3550 jitter the legs measured: mean {:.2} ms, max {:.2} ms; \
             legs with a jitter buffer target above 2 packets: {deep}",
            jitter_sum / calls as f64,
            jitter_max
        );
        anyhow::Ok(())
    })
}

/// One generated call: where it sends and what came back.
struct Call {
    target: SocketAddr,
    /// Send time of counter k, in µs since the generator's epoch (0 = not sent).
    sent_at: Vec<AtomicU64>,
    got: Mutex<CallRx>,
}

#[derive(Default)]
struct CallRx {
    received: Vec<bool>,
    delays_us: Vec<u32>,
    last: Option<(u64, u32)>,
    interarrival_us: Vec<u32>,
}

/// Wall-clock microseconds: the clock the kernel's receive timestamps use.
fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A large receive buffer, so a generator thread kept off the CPU for a while by the other
/// processes does not lose echoes in its own socket (root may exceed rmem_max).
fn set_receive_buffer(sock: &UdpSocket, bytes: libc::c_int) {
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: a valid fd and a c_int option value of the size given.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&bytes as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return;
        }
    }
}

/// Asks the kernel to stamp each datagram's arrival (SO_TIMESTAMPNS).
fn enable_timestamps(sock: &UdpSocket) -> std::io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid fd and a c_int option value of the size given.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Datagrams per recvmmsg call.
const BATCH: usize = 64;

/// One non-blocking recvmmsg: fills `got` with (length, source port, kernel arrival time in
/// wall-clock µs) for `bufs[0..got.len()]`.
fn recv_batch(sock: &UdpSocket, bufs: &mut [[u8; 512]], got: &mut Vec<(usize, u16, u64)>) {
    got.clear();
    let n = bufs.len();
    // SAFETY: every pointer handed to recvmmsg points into live locals or `bufs`, each of
    // the size given; control messages are walked with the libc CMSG macros.
    unsafe {
        let mut addrs: Vec<libc::sockaddr_in> = vec![std::mem::zeroed(); n];
        let mut controls = vec![[0u64; 8]; n];
        let mut iovs: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = (0..n)
            .map(|i| {
                let mut m: libc::mmsghdr = std::mem::zeroed();
                m.msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_in).cast();
                m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as _;
                m.msg_hdr.msg_iov = &mut iovs[i];
                m.msg_hdr.msg_iovlen = 1;
                m.msg_hdr.msg_control = controls[i].as_mut_ptr().cast();
                m.msg_hdr.msg_controllen = std::mem::size_of_val(&controls[i]);
                m
            })
            .collect();
        let r = libc::recvmmsg(
            sock.as_raw_fd(),
            msgs.as_mut_ptr(),
            n as _,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        );
        for (i, m) in msgs.iter().enumerate().take(r.max(0) as usize) {
            let mut stamp = now_us();
            let mut c = libc::CMSG_FIRSTHDR(&m.msg_hdr);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                    let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                    stamp = ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000;
                }
                c = libc::CMSG_NXTHDR(&m.msg_hdr, c);
            }
            got.push((m.msg_len as usize, u16::from_be(addrs[i].sin_port), stamp));
        }
    }
}

/// Sends a batch of datagrams with sendmmsg (one system call for a slot's packets).
fn send_batch(sock: &UdpSocket, batch: &[(Vec<u8>, SocketAddr)]) {
    // SAFETY: as in recv_batch: all pointers point into `batch` or locals that outlive the call.
    unsafe {
        let mut addrs: Vec<libc::sockaddr_in> = batch
            .iter()
            .map(|(_, a)| {
                let mut sa: libc::sockaddr_in = std::mem::zeroed();
                sa.sin_family = libc::AF_INET as _;
                sa.sin_port = a.port().to_be();
                sa.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
                sa
            })
            .collect();
        let mut iovs: Vec<libc::iovec> = batch
            .iter()
            .map(|(b, _)| libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = (0..batch.len())
            .map(|i| {
                let mut m: libc::mmsghdr = std::mem::zeroed();
                m.msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_in).cast();
                m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as _;
                m.msg_hdr.msg_iov = &mut iovs[i];
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        let mut done = 0;
        while done < msgs.len() {
            let r = libc::sendmmsg(
                sock.as_raw_fd(),
                msgs[done..].as_mut_ptr(),
                (msgs.len() - done) as _,
                0,
            );
            if r <= 0 {
                break;
            }
            done += r as usize;
        }
    }
}

fn encode_counter(k: usize) -> [u8; 3] {
    [
        0x80 + (k % 127) as u8,
        0x80 + (k / 127 % 127) as u8,
        0x80 + (k / 127 / 127 % 127) as u8,
    ]
}

fn decode_counter(b: &[u8]) -> Option<usize> {
    let d = |x: u8| (0x80..=0xFE).contains(&x).then(|| usize::from(x - 0x80));
    Some(d(*b.first()?)? + 127 * d(*b.get(1)?)? + 127 * 127 * d(*b.get(2)?)?)
}

fn percentile(v: &mut [u32], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    f64::from(v[i]) / 1000.0
}

fn load(args: &[String]) -> anyhow::Result<()> {
    let seconds: u64 = arg(args, "--seconds", 15);
    let warmup: u64 = arg(args, "--warmup", 2);
    let sockets: usize = arg(args, "--sockets", 4);
    let ports_file: String = arg(args, "--ports-file", "/tmp/media_bench_ports".to_string());
    let ports: Vec<u16> = std::fs::read_to_string(&ports_file)?
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let n = ports.len();
    let per_call = ((warmup + seconds) * 50) as usize;
    let calls: Arc<Vec<Call>> = Arc::new(
        ports
            .iter()
            .map(|&p| Call {
                target: SocketAddr::new(LOCAL, p),
                sent_at: (0..per_call).map(|_| AtomicU64::new(0)).collect(),
                got: Mutex::new(CallRx {
                    received: vec![false; per_call],
                    ..CallRx::default()
                }),
            })
            .collect(),
    );
    let done = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let socks: Vec<Arc<UdpSocket>> = (0..sockets)
        .map(|_| UdpSocket::bind((LOCAL, 0)).map(Arc::new))
        .collect::<Result<_, _>>()?;
    for (s, sock) in socks.iter().enumerate() {
        enable_timestamps(sock)?;
        set_receive_buffer(sock, 16 << 20);
        // Receiver: match echoes to counters.
        let (sock_rx, calls_rx, done_rx) = (sock.clone(), calls.clone(), done.clone());
        let first_k = (warmup * 50) as usize;
        let index: std::collections::HashMap<u16, usize> = ports
            .iter()
            .enumerate()
            .filter(|(i, _)| i % sockets == s)
            .map(|(i, p)| (*p, i))
            .collect();
        threads.push(std::thread::spawn(move || {
            let mut bufs = vec![[0u8; 512]; BATCH];
            let mut got = Vec::with_capacity(BATCH);
            let start = now_us();
            while !done_rx.load(Ordering::Relaxed) {
                recv_batch(&sock_rx, &mut bufs, &mut got);
                if got.is_empty() {
                    // Nothing queued: poll again shortly. Not blocking in recv means the
                    // server's send never pays for waking this thread (loopback delivers in
                    // the sender's context); arrival times come from the kernel anyway.
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
                for (i, &(len, port, now)) in got.iter().enumerate() {
                    let buf = &bufs[i];
                    let (Ok(p), Some(&c)) = (RtpPacket::parse(&buf[..len]), index.get(&port))
                    else {
                        continue;
                    };
                    let call = &calls_rx[c];
                    let mut rx = call.got.lock().unwrap();
                    let measuring = now > start + warmup * 1_000_000;
                    if let (Some((t_prev, ts_prev)), true) = (rx.last, measuring) {
                        let send_gap = u64::from(p.timestamp.wrapping_sub(ts_prev)) * 125;
                        let d = now as i64 - t_prev as i64 - send_gap as i64;
                        if send_gap < 1_000_000 {
                            rx.interarrival_us.push(d.unsigned_abs() as u32);
                        }
                    }
                    rx.last = Some((now, p.timestamp));
                    let Some(k) = decode_counter(p.payload) else {
                        continue; // silence before the first echo
                    };
                    if k < per_call && !rx.received[k] {
                        let sent = call.sent_at[k].load(Ordering::Relaxed);
                        if sent > 0 {
                            rx.received[k] = true;
                            if k >= first_k {
                                rx.delays_us.push(now.saturating_sub(sent) as u32);
                            }
                        }
                    }
                }
            }
        }));
        // Sender: every 20 ms one packet per call, spread over the period in 1 ms slots.
        let (sock_tx, calls_tx) = (sock.clone(), calls.clone());
        threads.push(std::thread::spawn(move || {
            let mine: Vec<usize> = (0..n).filter(|i| i % sockets == s).collect();
            let mut batch: Vec<(Vec<u8>, SocketAddr)> = Vec::new();
            let mut payload = [0xA0u8; 160];
            let start = Instant::now();
            for k in 0..per_call {
                for slot in 0..20usize {
                    let due = start + Duration::from_micros((k * 20_000 + slot * 1000) as u64);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    batch.clear();
                    for &c in mine.iter().skip(slot).step_by(20) {
                        payload[..3].copy_from_slice(&encode_counter(k));
                        let mut buf = Vec::with_capacity(172);
                        RtpPacket {
                            marker: k == 0,
                            payload_type: 0,
                            sequence: k as u16,
                            timestamp: (k * 160) as u32,
                            ssrc: c as u32,
                            payload: &payload,
                        }
                        .write(&mut buf);
                        let call = &calls_tx[c];
                        call.sent_at[k].store(now_us(), Ordering::Relaxed);
                        batch.push((buf, call.target));
                    }
                    send_batch(&sock_tx, &batch);
                }
            }
        }));
    }
    println!(
        "load: {n} calls, {sockets} sockets, {warmup} s warm-up + {seconds} s measured, 50 packets/s each"
    );
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    std::thread::sleep(Duration::from_secs(warmup + seconds) + Duration::from_millis(1500));
    println!(
        "load: generator cpu {:.1}% of one core",
        100.0 * (cpu_seconds() - cpu0) / t0.elapsed().as_secs_f64()
    );
    done.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let first = (warmup * 50) as usize;
    // Leave out the last 10 packets of each call: still in flight when sending stopped.
    let last = per_call - 10;
    let (mut sent, mut lost) = (0u64, 0u64);
    let mut delays = Vec::new();
    let mut inter = Vec::new();
    for call in calls.iter() {
        let rx = call.got.lock().unwrap();
        for k in first..last {
            if call.sent_at[k].load(Ordering::Relaxed) > 0 {
                sent += 1;
                if !rx.received[k] {
                    lost += 1;
                }
            }
        }
        let min = rx.delays_us.iter().copied().min().unwrap_or(0);
        delays.extend(rx.delays_us.iter().map(|d| d - min));
        inter.extend_from_slice(&rx.interarrival_us);
    }
    println!(
        "load: sent {sent} in the window, lost {lost} ({:.4}%)",
        100.0 * lost as f64 / sent.max(1) as f64
    );
    println!(
        "load: added delay over each call's minimum: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&mut delays, 0.5),
        percentile(&mut delays, 0.99),
        percentile(&mut delays, 1.0)
    );
    println!(
        "load: echo interarrival |D| (RFC 3550): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&mut inter, 0.5),
        percentile(&mut inter, 0.99),
        percentile(&mut inter, 1.0)
    );
    Ok(())
}
