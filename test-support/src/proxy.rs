//! A loopback proxy that injects faults, for chaos tests. It forwards TCP (HTTP, WebSocket) and
//! UDP (QUIC, so WebTransport) from its own address to a server's, and while faults are on it
//! delays, stalls and resets TCP connections and drops, delays (so reorders), duplicates and
//! blacks out UDP datagrams, at random but from a seed the test prints.
//!
//! Design: one accept task for TCP and one receive task for UDP, each owning its connections'
//! or flows' tasks in a `JoinSet`, so dropping the proxy ends everything. Each TCP connection
//! pumps both directions through a shared stall gate while a fault clock, ticking at random,
//! either stalls the connection for a while or resets it (`SO_LINGER` 0, so both peers see an
//! RST). Each UDP flow (one per client address) has its own upstream socket; every datagram in
//! either direction rolls for drop, duplicate and delay, and a per-flow fault clock starts
//! blackouts (everything dropped for a while). QUIC has no reset a middlebox could send, so
//! UDP faults test loss recovery, not reconnects.
//!
//! Listening on the server's port number on another loopback address (e.g. 127.0.0.2) lets a
//! client that learns the WebTransport port from `/api/cert` reach the proxy on both protocols.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until};

/// How often and how hard faults strike while they are on.
#[derive(Debug, Clone)]
pub struct Faults {
    /// Each forwarded TCP chunk waits up to this long.
    pub tcp_delay_max: Duration,
    /// Mean time between faults on one TCP connection.
    pub tcp_fault_every: Duration,
    /// The share of TCP faults that are resets (the rest are stalls).
    pub tcp_reset_share: f64,
    /// A TCP stall lasts up to this long.
    pub stall_max: Duration,
    /// Chance that a datagram is dropped.
    pub udp_drop: f64,
    /// Chance that a datagram is sent twice.
    pub udp_duplicate: f64,
    /// Chance that a datagram is held back (and so overtaken by later ones).
    pub udp_delay_share: f64,
    /// A held-back datagram waits up to this long.
    pub udp_delay_max: Duration,
    /// Mean time between blackouts of one UDP flow.
    pub udp_blackout_every: Duration,
    /// A blackout lasts up to this long.
    pub blackout_max: Duration,
}

impl Default for Faults {
    /// Rough weather that the clients must ride out within seconds.
    fn default() -> Self {
        Faults {
            tcp_delay_max: Duration::from_millis(30),
            tcp_fault_every: Duration::from_millis(2_500),
            tcp_reset_share: 0.5,
            stall_max: Duration::from_millis(1_500),
            udp_drop: 0.05,
            udp_duplicate: 0.02,
            udp_delay_share: 0.1,
            udp_delay_max: Duration::from_millis(80),
            udp_blackout_every: Duration::from_secs(3),
            blackout_max: Duration::from_millis(1_500),
        }
    }
}

/// What the proxy has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    pub tcp_connections: u64,
    pub resets: u64,
    pub stalls: u64,
    pub udp_flows: u64,
    pub datagrams: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub delayed: u64,
    pub blackouts: u64,
}

#[derive(Default)]
struct Counters {
    tcp_connections: AtomicU64,
    resets: AtomicU64,
    stalls: AtomicU64,
    udp_flows: AtomicU64,
    datagrams: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    delayed: AtomicU64,
    blackouts: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What every task of a proxy shares.
struct Control {
    on: AtomicBool,
    faults: Faults,
    seed: u64,
    /// Numbers connections and flows, each of which gets its own generator from the seed.
    next_rng: AtomicU64,
    counters: Counters,
}

impl Control {
    fn on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    fn rng(&self) -> StdRng {
        let n = self.next_rng.fetch_add(1, Ordering::Relaxed);
        StdRng::seed_from_u64(self.seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }
}

/// A running proxy; dropping it closes every connection it carries.
pub struct FaultProxy {
    /// The address it listens on, TCP and UDP.
    pub addr: SocketAddr,
    control: Arc<Control>,
    /// The accept and receive tasks; dropping the set aborts them and, with them, every
    /// connection's and flow's task.
    _tasks: JoinSet<()>,
}

impl FaultProxy {
    /// Listen on `listen` (TCP and UDP) and forward to `upstream`, faults off for now.
    pub async fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        faults: Faults,
        seed: u64,
    ) -> io::Result<FaultProxy> {
        let tcp = TcpListener::bind(listen).await?;
        let addr = tcp.local_addr()?;
        let udp = UdpSocket::bind(addr).await?;
        let control = Arc::new(Control {
            on: AtomicBool::new(false),
            faults,
            seed,
            next_rng: AtomicU64::new(0),
            counters: Counters::default(),
        });
        let mut tasks = JoinSet::new();
        tasks.spawn(accept_tcp(tcp, upstream, control.clone()));
        tasks.spawn(forward_udp(Arc::new(udp), upstream, control.clone()));
        Ok(FaultProxy {
            addr,
            control,
            _tasks: tasks,
        })
    }

    /// Turn faults on or off (traffic keeps flowing either way).
    pub fn set_faults(&self, on: bool) {
        self.control.on.store(on, Ordering::Relaxed);
    }

    pub fn stats(&self) -> FaultStats {
        let c = &self.control.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        FaultStats {
            tcp_connections: get(&c.tcp_connections),
            resets: get(&c.resets),
            stalls: get(&c.stalls),
            udp_flows: get(&c.udp_flows),
            datagrams: get(&c.datagrams),
            dropped: get(&c.dropped),
            duplicated: get(&c.duplicated),
            delayed: get(&c.delayed),
            blackouts: get(&c.blackouts),
        }
    }
}

/// A moment until which traffic is held (TCP stall) or dropped (UDP blackout).
#[derive(Clone)]
struct Gate(Arc<Mutex<Instant>>);

impl Gate {
    fn new() -> Gate {
        Gate(Arc::new(Mutex::new(Instant::now())))
    }

    fn close_until(&self, until: Instant) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = until;
    }

    fn closed_until(&self) -> Option<Instant> {
        let until = *self.0.lock().unwrap_or_else(PoisonError::into_inner);
        (until > Instant::now()).then_some(until)
    }
}

/// A random wait around `mean` (uniform over half to one and a half of it).
fn around(rng: &mut StdRng, mean: Duration) -> Duration {
    mean.mul_f64(rng.random_range(0.5..1.5))
}

fn up_to(rng: &mut StdRng, max: Duration) -> Duration {
    max.mul_f64(rng.random_range(0.0..1.0))
}

async fn accept_tcp(listener: TcpListener, upstream: SocketAddr, control: Arc<Control>) {
    let mut links = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                bump(&control.counters.tcp_connections);
                links.spawn(tcp_link(client, upstream, control.clone()));
            }
            // Reap finished connections so the set does not grow.
            Some(_) = links.join_next(), if !links.is_empty() => {}
        }
    }
}

/// Carry one TCP connection until both sides finish or the fault clock resets it.
async fn tcp_link(mut client: TcpStream, upstream: SocketAddr, control: Arc<Control>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        let _ = client.set_zero_linger();
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let gate = Gate::new();
    let reset = {
        let (mut client_read, mut client_write) = client.split();
        let (mut server_read, mut server_write) = server.split();
        let up = pump(
            &mut client_read,
            &mut server_write,
            &gate,
            &control,
            control.rng(),
        );
        let down = pump(
            &mut server_read,
            &mut client_write,
            &gate,
            &control,
            control.rng(),
        );
        tokio::select! {
            _ = async { tokio::join!(up, down) } => false,
            () = tcp_fault_clock(&gate, &control, control.rng()) => true,
        }
    };
    if reset {
        bump(&control.counters.resets);
        let _ = client.set_zero_linger();
        let _ = server.set_zero_linger();
    }
}

/// Copy one direction, waiting at the gate and for the per-chunk delay; pass the end on.
async fn pump(
    from: &mut (impl AsyncReadExt + Unpin),
    to: &mut (impl AsyncWriteExt + Unpin),
    gate: &Gate,
    control: &Control,
    mut rng: StdRng,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(until) = gate.closed_until() {
            sleep_until(until).await;
        }
        if control.on() {
            sleep(up_to(&mut rng, control.faults.tcp_delay_max)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Strike a TCP connection now and then while faults are on: stall it, or return to have it
/// reset.
async fn tcp_fault_clock(gate: &Gate, control: &Control, mut rng: StdRng) {
    let faults = &control.faults;
    loop {
        sleep(around(&mut rng, faults.tcp_fault_every)).await;
        if !control.on() {
            continue;
        }
        if rng.random_bool(faults.tcp_reset_share) {
            return;
        }
        bump(&control.counters.stalls);
        gate.close_until(Instant::now() + up_to(&mut rng, faults.stall_max));
    }
}

/// One UDP client's flow: its own socket towards the server and its blackout gate.
struct Flow {
    upstream: Arc<UdpSocket>,
    blackout: Gate,
}

async fn forward_udp(front: Arc<UdpSocket>, upstream: SocketAddr, control: Arc<Control>) {
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut readers = JoinSet::new();
    let mut rng = control.rng();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let Ok((n, client)) = front.recv_from(&mut buf).await else {
            continue;
        };
        let flow = match flows.entry(client) {
            Entry::Occupied(flow) => flow.into_mut(),
            Entry::Vacant(slot) => {
                let Ok(socket) = UdpSocket::bind(SocketAddr::new(upstream.ip(), 0)).await else {
                    continue;
                };
                if socket.connect(upstream).await.is_err() {
                    continue;
                }
                bump(&control.counters.udp_flows);
                let flow = Flow {
                    upstream: Arc::new(socket),
                    blackout: Gate::new(),
                };
                readers.spawn(udp_flow_back(
                    flow.upstream.clone(),
                    front.clone(),
                    client,
                    flow.blackout.clone(),
                    control.clone(),
                ));
                slot.insert(flow)
            }
        };
        let to = Target::Upstream(flow.upstream.clone());
        send_datagram(&buf[..n], to, &flow.blackout, &control, &mut rng).await;
    }
}

/// Carry a flow's datagrams from the server back to its client, and run its blackouts.
async fn udp_flow_back(
    upstream: Arc<UdpSocket>,
    front: Arc<UdpSocket>,
    client: SocketAddr,
    blackout: Gate,
    control: Arc<Control>,
) {
    let mut rng = control.rng();
    let mut clock_rng = control.rng();
    let mut buf = vec![0u8; 64 * 1024];
    let faults = &control.faults;
    let mut next_blackout = Instant::now() + around(&mut clock_rng, faults.udp_blackout_every);
    loop {
        tokio::select! {
            received = upstream.recv(&mut buf) => {
                let Ok(n) = received else { continue };
                let to = Target::Client(front.clone(), client);
                send_datagram(&buf[..n], to, &blackout, &control, &mut rng).await;
            }
            () = sleep_until(next_blackout) => {
                if control.on() {
                    bump(&control.counters.blackouts);
                    blackout.close_until(Instant::now() + up_to(&mut clock_rng, faults.blackout_max));
                }
                next_blackout = Instant::now() + around(&mut clock_rng, faults.udp_blackout_every);
            }
        }
    }
}

/// Where a datagram goes.
#[derive(Clone)]
enum Target {
    Upstream(Arc<UdpSocket>),
    Client(Arc<UdpSocket>, SocketAddr),
}

impl Target {
    async fn send(&self, datagram: &[u8]) {
        // A lost datagram is what UDP is allowed to do; the peers recover.
        let _ = match self {
            Target::Upstream(socket) => socket.send(datagram).await,
            Target::Client(socket, to) => socket.send_to(datagram, *to).await,
        };
    }
}

/// Send one datagram, unless faults drop it; maybe twice, maybe late.
async fn send_datagram(
    datagram: &[u8],
    to: Target,
    blackout: &Gate,
    control: &Control,
    rng: &mut StdRng,
) {
    bump(&control.counters.datagrams);
    if !control.on() {
        to.send(datagram).await;
        return;
    }
    let faults = &control.faults;
    if blackout.closed_until().is_some() || rng.random_bool(faults.udp_drop) {
        bump(&control.counters.dropped);
        return;
    }
    if rng.random_bool(faults.udp_duplicate) {
        bump(&control.counters.duplicated);
        to.send(datagram).await;
    }
    if rng.random_bool(faults.udp_delay_share) {
        bump(&control.counters.delayed);
        let delay = up_to(rng, faults.udp_delay_max);
        let datagram = datagram.to_vec();
        // Detached, but it ends within `udp_delay_max`.
        tokio::spawn(async move {
            sleep(delay).await;
            to.send(&datagram).await;
        });
        return;
    }
    to.send(datagram).await;
}
