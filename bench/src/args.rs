//! The command line of `quibble-bench` (clap derive), the help text that explains every figure
//! of the report, and the exact command line as typed, for the top of the report.

use clap::{Args, Parser, Subcommand, ValueEnum};
use quibble_client::{TransportChoice, TransportKind};

/// What the figures of a report mean; shown by `--help`.
const FIGURES: &str = "\
Figures (one column per transport; with --transport both, WT/WS is WebTransport's figure divided
by WebSocket's, both measured in this one invocation: below 1 means WebTransport's is lower):
  sent / planned      messages the bots handed to their clients / rooms x users x (warmup + messages)
  acked               sends the server acknowledged as durable (Sent, after its commit)
  rejected            sends the server refused for good (e.g. invalid_input). A rate_limited send is
                      not one: the client resends it after the server's hint, so it shows as ack
                      latency (by default the server allows 50 messages/s per user in bursts of
                      200, which caps --rate)
  unanswered          sends with neither an ack nor a rejection when the run stopped
  delivered/expected  distinct (member, message) arrivals / what is owed: every message that was
                      not rejected, to every member of its room, its author included
  lost                expected - delivered
  duplicated          arrivals of a message the member already had
  out of order        first arrivals of a message after a later one of the same author (at that
                      member): every server here keeps one author's order
  unexpected          arrivals of a message this run did not send to that room
  errors              disconnects, stream rejoins, server errors, epoch resets seen by the bots
  acked msgs/s        acks of measured messages per second, from the first measured send to the
                      last measured ack
  delivered msgs/s    deliveries of measured messages per second, from the first measured send
                      to the last measured delivery
Latencies (ms in the table, microseconds in --json; p50 p90 p99 p99.9 max) are of measured
messages only (the first --warmup messages of every user are sent and checked, not measured),
from the send call to the event as the receiving bot's application sees it; all bots live in
this one process, so their clocks agree:
  ack                 send -> Sent at the author: a round trip plus the server's durable commit
  fan-out             send -> Message at each other member of the room
  connect+join        per bot: open the transport, Hello -> Welcome, Join -> Joined
  late connect+join   (--scenario late-joiners) the same for the members that join once the
                      measured window began, under the others' load; their Joined replays the
                      room from its first message and they must receive every message (replay
                      plus live). Their arrivals are counted in delivered/lost but left out of
                      the fan-out latency
Scenarios (--scenario): fan-out (default): --rooms rooms of --users-per-room bots; hot-room:
the same number of bots, all in one room; late-joiners: as fan-out, with a share
(--late-fraction) of every room joining late, after the first measured message.
--duration SECS sends at --rate for that long (rate x duration messages per user) instead of
--messages. --plot FILE.svg draws the fan-out latency's percentile curve, one line per run.
Server cost (only with --server-pid; the server must run on this machine, Linux /proc). Read
once when the first measured message is sent (after the warmup) and once when everything owed
has arrived, for each transport's run on its own; WT/WS as above:
  server CPU-us/delivery  server user+system CPU time (/proc/PID/stat) over that window /
                      measured deliveries (first arrivals of measured messages at every member,
                      the author's own copy included: messages x room size)
  server CPU-us/ack   the same CPU time / acknowledged measured messages
  server CPU %        that CPU time over the window's length, in % of one core (can exceed 100)
  server RSS MiB      the server's VmRSS (/proc/PID/status) at the end of the window
  server RSS KiB/conn that RSS / the run's connections (bots): the whole server, an upper
                      bound; `idle` measures what one more connection costs
With several --server-pid (the nodes of a fleet) every server figure is of them all: their CPU
time and RSS summed.
A fleet: --server given more than once (or comma-separated) spreads the bots over the nodes, bot
i on node i mod N (a room's members on different nodes); accounts and rooms are made through the
first node, which shares its store with the others.

Exit status: 0 only if every run finished before --timeout and nothing was lost, duplicated,
unexpected, rejected or left unanswered, and no error occurred; 1 otherwise.
The bots' accounts and rooms (bench-<random>-<n>) stay in the server's store: benchmark a
throwaway data directory. With --accounts FILE the accounts (bench-<n>) are kept for the next
run; every account is signed in before the first run starts.";

/// Load generator and benchmark for the Quibble chat server.
#[derive(Debug, Parser)]
#[command(name = "quibble-bench", version, after_help = FIGURES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Rooms of bots chatting: each bot sends its messages at a fixed rate; every ack and
    /// every delivery is timed and checked (each message reaches every member exactly once).
    #[command(after_help = FIGURES)]
    Chat(ChatArgs),
    /// Idle connections: open N authenticated connections that each join a room and then only
    /// keep alive (heartbeats), and report what they cost the server in resident memory.
    #[command(after_help = IDLE_FIGURES)]
    Idle(IdleArgs),
    /// The chat scenario against Quibble (WebTransport, WebSocket) and Node's `ws` and
    /// Socket.IO 4 servers (bench/peers/), one at a time, each started and measured here:
    /// latencies, throughput and server CPU per delivery side by side.
    #[command(after_help = crate::versus::VERSUS_HELP)]
    Versus(crate::versus::VersusArgs),
    /// Durable ingest: senders keep --in-flight sends unanswered for a measured window;
    /// reports acknowledged (fsynced) messages/s, ack latency and the store's commits.
    #[command(after_help = crate::ingest::INGEST_FIGURES)]
    Ingest(crate::ingest::IngestArgs),
}

/// What the figures of an idle report mean; shown by `idle --help`.
const IDLE_FIGURES: &str = "\
Figures:
  opened              connections that were welcomed and joined their room / --connections
  handshakes/s        connections opened / the seconds from the first connect to the last
                      Joined, with --at-once handshakes in flight (the idle ramp's setup rate)
  connect+join        per connection (ms): open the transport, Hello -> Welcome, Join -> Joined
                      (p50 p90 p99 p99.9 max)
  ramp                the same per quarter of the connections, in the order they joined: the
                      count reached, when (s), that quarter's handshakes/s and connect+join
  alive               connections still up after the hold, none of them having dropped
  server RSS          the server's resident memory (VmRSS in /proc/PID/status, so the server
                      must run on this machine; only with --server-pid): before the first
                      connection (after the sign-ups, or with --accounts the token checks),
                      once all joined, after --hold seconds of idling, and a moment after all
                      were closed
  per connection      (RSS once joined, or after the hold) - RSS before, divided by the
                      connections opened: what one idle, joined connection costs the server

Exit status: 0 only if every connection was opened, stayed up through the hold, and (with
--max-bytes-per-connection) the cost after the hold is within that budget; 1 otherwise.
Each WebSocket connection needs an open file in this process (a TCP socket); WebTransport
sessions share UDP sockets (--sessions-per-socket): the soft open-file limit is raised to the
hard limit first. The accounts and rooms (bench-<random>-<n>) stay in the server's store:
benchmark a throwaway data directory.
With --accounts FILE the accounts (bench-<n>) are kept for the next run: reusing them spares
the server the password hashes of sign-ups, whose memory would stay in its RSS.";

#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    /// Server base URL.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:4433")]
    pub server: String,
    /// Realtime transport of every connection.
    #[arg(long, value_enum)]
    pub transport: OneTransport,
    /// Connections to open.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub connections: u32,
    /// Accounts the connections are spread over (connection i is user i mod U); each user
    /// has a room of its own, which its connections join.
    #[arg(long, value_name = "U", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub users: u32,
    /// The server's process id, to read its resident memory from /proc/PID/status.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// Seconds the joined connections stay open and idle (heartbeats only) before the
    /// second reading.
    #[arg(long, value_name = "SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(0..=3_600))]
    pub hold: u64,
    /// Fail (exit 1) if one idle connection costs the server more than this many bytes
    /// after the hold (needs --server-pid).
    #[arg(long, value_name = "BYTES", requires = "server_pid")]
    pub max_bytes_per_connection: Option<u64>,
    /// Keep the bots' accounts in FILE (JSON lines, mode 0600: it holds session tokens) and
    /// reuse them on later runs against the same server: stored tokens the server still
    /// accepts cost it nothing, only missing or revoked ones are signed up (or logged in).
    /// The bots are then named bench-<n> and leave their rooms at the end.
    #[arg(long, value_name = "FILE")]
    pub accounts: Option<std::path::PathBuf>,
    /// Connections being opened at once (handshakes in flight); the server must allow as
    /// many unauthenticated connections from this address (max_unauthenticated_per_ip).
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub at_once: u32,
    /// WebTransport sessions sharing one UDP socket (client endpoint) of this process.
    #[arg(long, value_name = "N", default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub sessions_per_socket: u32,
    /// Print the result as JSON on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Bound on the whole invocation; when it passes the benchmark stops, closes what it
    /// opened and exits 1.
    #[arg(long, value_name = "SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Ramp against the Node `ws` peer (bench/peers/ws-server.mjs) listening on
    /// 127.0.0.1:PORT instead of Quibble at --server: its WebSocket upgrade and `joined`
    /// message per connection, no accounts (--transport websocket; --server-pid: the node
    /// process). The reference for Quibble's connect+Hello+Join rate.
    #[arg(long, value_name = "PORT")]
    pub ws_peer: Option<u16>,
}

/// One realtime transport (`idle` measures one at a time: a second run in the same server
/// would reuse memory the first one left to the allocator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OneTransport {
    Webtransport,
    Websocket,
}

impl OneTransport {
    pub fn kind(self) -> TransportKind {
        match self {
            OneTransport::Webtransport => TransportKind::WebTransport,
            OneTransport::Websocket => TransportKind::WebSocket,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ChatArgs {
    /// Server base URL. Several (repeated or comma-separated) are the nodes of one fleet: bot
    /// i connects to node i mod N; accounts and rooms are made through the first node.
    #[arg(
        long,
        value_name = "URL",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:4433"
    )]
    pub server: Vec<String>,
    /// The shape of the load: fan-out (many rooms), hot-room (every bot in one room),
    /// late-joiners (fan-out with some members joining during the measured window).
    #[arg(long, value_enum, default_value_t = ScenarioKind::FanOut)]
    pub scenario: ScenarioKind,
    /// With --scenario late-joiners: the share of each room's members that join late (at
    /// least one per room, and at least one member on time).
    #[arg(long, value_name = "FRACTION", default_value_t = 0.25, value_parser = parse_fraction)]
    pub late_fraction: f64,
    /// Send at --rate for this many seconds instead of a number of --messages.
    #[arg(long, value_name = "SECS", conflicts_with = "messages", value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub duration: Option<u32>,
    /// Write the fan-out latency's percentile curve (one line per transport) to FILE as SVG.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<std::path::PathBuf>,
    /// WebTransport bots sharing one UDP socket (client endpoint) of this process.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub sessions_per_socket: u32,
    /// Realtime transport; `both` runs the identical scenario once per transport (WebTransport
    /// first) and reports the ratios, the only comparison worth making on a shared machine.
    #[arg(long, value_enum, default_value_t = TransportArg::Both)]
    pub transport: TransportArg,
    /// Rooms, each with its own bots.
    #[arg(long, value_name = "R", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub rooms: u32,
    /// Bots (users) per room.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub users_per_room: u32,
    /// Measured messages each user sends.
    #[arg(long, value_name = "M", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub messages: u32,
    /// Messages per second per user, fractional allowed (0.3: one every 3.3 s); 0: as fast as
    /// acks allow, with at most --in-flight unanswered messages per user.
    #[arg(long, value_name = "PER_SECOND", default_value_t = 20.0, value_parser = parse_rate)]
    pub rate: f64,
    /// Unanswered messages a user may have outstanding with --rate 0.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub in_flight: u32,
    /// Bytes of each message's text (at least the few a message needs to be told apart).
    #[arg(long, value_name = "BYTES", default_value_t = 100, value_parser = clap::value_parser!(u32).range(16..=4096))]
    pub message_size: u32,
    /// Messages each user sends first, checked for delivery but left out of the latencies
    /// and throughput.
    #[arg(long, value_name = "M", default_value_t = 0)]
    pub warmup: u32,
    /// Keep the bots' accounts in FILE (JSON lines, mode 0600: it holds session tokens) and
    /// reuse them on later runs against the same server: stored tokens the server still
    /// accepts cost it nothing, only missing or revoked ones are signed up (or logged in).
    /// The bots are then named bench-<n> and leave their rooms at the end.
    #[arg(long, value_name = "FILE")]
    pub accounts: Option<std::path::PathBuf>,
    /// Print the result as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Bound on the whole invocation, setup included; when it passes the benchmark stops and
    /// reports what it has (and exits 1) [default: 120; for versus, scaled to what it runs:
    /// its servers, bots, messages and sweep steps].
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
    /// Run this load generator on one CPU and (versus) every server under test on another
    /// (`taskset -c`), one core each; with chat, start the server under `taskset -c` yourself
    /// on the CPU it names. Needs two CPUs.
    #[arg(long)]
    pub pin: bool,
    /// The server's process id (on this machine), to report its CPU time and memory over
    /// each transport's measured window from /proc/PID/stat and /proc/PID/status. Several
    /// (repeated or comma-separated; a fleet's nodes): their CPU time and memory are summed.
    #[arg(long, value_name = "PID", value_delimiter = ',')]
    pub server_pid: Vec<u32>,
}

/// `chat`'s bound on the whole invocation when --timeout is not given.
pub const CHAT_TIMEOUT_SECS: u64 = 120;

impl ChatArgs {
    /// --timeout, or `chat`'s default.
    pub fn timeout(&self) -> u64 {
        self.timeout.unwrap_or(CHAT_TIMEOUT_SECS)
    }

    /// The plan these flags ask for (the scenario's rooms, late joiners and messages).
    pub fn plan(&self) -> anyhow::Result<crate::plan::Plan> {
        let messages = match self.duration {
            None => self.messages,
            Some(_) if self.rate <= 0.0 => {
                anyhow::bail!("--duration needs a --rate above 0 (it sends at that rate)")
            }
            Some(secs) => (f64::from(secs) * self.rate)
                .ceil()
                .clamp(1.0, f64::from(u32::MAX)) as u32,
        };
        let (rooms, members) = match self.scenario {
            ScenarioKind::FanOut | ScenarioKind::LateJoiners => (self.rooms, self.users_per_room),
            ScenarioKind::HotRoom => {
                let all = u64::from(self.rooms) * u64::from(self.users_per_room);
                let all = u32::try_from(all)
                    .map_err(|_| anyhow::anyhow!("{all} bots are too many for one room"))?;
                (1, all)
            }
        };
        let plan = crate::plan::Plan::new(rooms, members, self.warmup, messages)?;
        match self.scenario {
            ScenarioKind::LateJoiners => {
                let late = (f64::from(members) * self.late_fraction).ceil() as u32;
                plan.with_late(late.max(1))
            }
            ScenarioKind::FanOut | ScenarioKind::HotRoom => Ok(plan),
        }
    }
}

/// The `--scenario` presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScenarioKind {
    FanOut,
    HotRoom,
    LateJoiners,
}

/// `--late-fraction`: a share strictly between 0 and 1.
fn parse_fraction(text: &str) -> Result<f64, String> {
    let fraction: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(format!("`{text}` is not between 0 and 1"));
    }
    Ok(fraction)
}

/// `--rate`: a finite, non-negative number of messages per second, at most one a millisecond.
fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    if !rate.is_finite() || !(0.0..=1000.0).contains(&rate) {
        return Err(format!("`{text}` is not between 0 and 1000"));
    }
    Ok(rate)
}

/// The `--transport` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransportArg {
    Webtransport,
    Websocket,
    Both,
}

impl TransportArg {
    /// The transports to run, in order.
    pub fn kinds(self) -> Vec<TransportKind> {
        match self {
            TransportArg::Webtransport => vec![TransportKind::WebTransport],
            TransportArg::Websocket => vec![TransportKind::WebSocket],
            TransportArg::Both => vec![TransportKind::WebTransport, TransportKind::WebSocket],
        }
    }
}

/// The client's setting that uses exactly `kind` (no fallback).
pub fn choice(kind: TransportKind) -> TransportChoice {
    match kind {
        TransportKind::WebTransport => TransportChoice::WebTransport,
        TransportKind::WebSocket => TransportChoice::WebSocket,
    }
}

/// The name of a transport as the command line and the JSON spell it.
pub fn transport_name(kind: TransportKind) -> &'static str {
    match kind {
        TransportKind::WebTransport => "webtransport",
        TransportKind::WebSocket => "websocket",
    }
}

/// The command line of this process, quoted so that a shell would run it again (the program
/// by its file name, not wherever cargo put it).
pub fn command_line() -> String {
    let words: Vec<String> = std::env::args_os()
        .enumerate()
        .map(|(i, arg)| {
            let path = std::path::Path::new(&arg);
            match path.file_name() {
                Some(name) if i == 0 => name.to_string_lossy().into_owned(),
                _ => arg.to_string_lossy().into_owned(),
            }
        })
        .collect();
    join_quoted(&words)
}

/// Join words with spaces, single-quoting those a shell would otherwise split or expand.
fn join_quoted(words: &[String]) -> String {
    let quoted: Vec<String> = words
        .iter()
        .map(|word| {
            let plain = !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c));
            if plain {
                word.clone()
            } else {
                format!("'{}'", word.replace('\'', r"'\''"))
            }
        })
        .collect();
    quoted.join(" ")
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<ChatArgs, clap::Error> {
        let cli = Cli::try_parse_from(["quibble-bench", "chat"].iter().chain(args))?;
        let Command::Chat(args) = cli.command else {
            panic!("parsed `chat`")
        };
        Ok(args)
    }

    fn parse_idle(args: &[&str]) -> Result<IdleArgs, clap::Error> {
        let cli = Cli::try_parse_from(["quibble-bench", "idle"].iter().chain(args))?;
        let Command::Idle(args) = cli.command else {
            panic!("parsed `idle`")
        };
        Ok(args)
    }

    #[test]
    fn idle_options_parse_and_bad_values_are_refused() {
        let args = parse_idle(&["--transport", "websocket", "--connections", "100"]).unwrap();
        assert_eq!(args.transport.kind(), TransportKind::WebSocket);
        assert_eq!((args.connections, args.users, args.hold), (100, 4, 15));
        assert_eq!(
            (args.server_pid, args.max_bytes_per_connection),
            (None, None)
        );
        let args = parse_idle(&[
            "--transport",
            "webtransport",
            "--connections",
            "3",
            "--server-pid",
            "42",
            "--max-bytes-per-connection",
            "32768",
            "--json",
        ])
        .unwrap();
        assert_eq!(args.transport.kind(), TransportKind::WebTransport);
        assert_eq!(args.server_pid, Some(42));
        assert!(args.json);
        for bad in [
            &["--connections", "3"][..],
            &["--transport", "both", "--connections", "3"],
            &["--transport", "websocket"],
            &["--transport", "websocket", "--connections", "0"],
            &[
                "--transport",
                "websocket",
                "--connections",
                "3",
                "--users",
                "0",
            ],
            &[
                "--transport",
                "websocket",
                "--connections",
                "3",
                "--max-bytes-per-connection",
                "1",
            ],
        ] {
            assert!(parse_idle(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_documentation() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.server, ["http://127.0.0.1:4433"]);
        assert_eq!(args.transport, TransportArg::Both);
        assert_eq!(
            args.transport.kinds(),
            [TransportKind::WebTransport, TransportKind::WebSocket]
        );
        assert_eq!(
            (args.rooms, args.users_per_room, args.messages, args.rate),
            (4, 8, 100, 20.0)
        );
        assert_eq!((args.warmup, args.timeout(), args.json), (0, 120, false));
        assert!(args.server_pid.is_empty());
        assert_eq!(parse(&["--server-pid", "42"]).unwrap().server_pid, [42]);
        assert!(parse(&["--server-pid", "-1"]).is_err());
    }

    #[test]
    fn a_fleet_is_several_servers_and_pids_repeated_or_comma_separated() {
        let args = parse(&[
            "--server",
            "http://127.0.0.1:1",
            "--server",
            "http://127.0.0.1:2,http://127.0.0.1:3",
            "--server-pid",
            "11,12",
            "--server-pid",
            "13",
        ])
        .unwrap();
        assert_eq!(
            args.server,
            [
                "http://127.0.0.1:1",
                "http://127.0.0.1:2",
                "http://127.0.0.1:3"
            ]
        );
        assert_eq!(args.server_pid, [11, 12, 13]);
        assert!(parse(&["--server-pid", "11,x"]).is_err());
    }

    #[test]
    fn options_parse_and_bad_values_are_refused() {
        let args = parse(&[
            "--transport",
            "websocket",
            "--rate",
            "0",
            "--in-flight",
            "4",
        ])
        .unwrap();
        assert_eq!(args.transport.kinds(), [TransportKind::WebSocket]);
        assert_eq!((args.rate, args.in_flight), (0.0, 4));
        for bad in [
            &["--rooms", "0"][..],
            &["--users-per-room", "-1"],
            &["--messages", "0"],
            &["--transport", "quic"],
            &["--timeout", "0"],
            &["--in-flight", "0"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_help_explains_the_figures() {
        let help = Cli::command().render_long_help().to_string();
        for figure in [
            "lost",
            "duplicated",
            "fan-out",
            "connect+join",
            "WT/WS",
            "Exit status",
            "server CPU-us/delivery",
            "server RSS KiB/conn",
            "late connect+join",
            "hot-room",
            "--duration",
            "--plot",
            "node i mod N",
        ] {
            assert!(help.contains(figure), "--help does not explain {figure}");
        }
    }

    #[test]
    fn scenarios_shape_the_plan() {
        let plan = parse(&[]).unwrap().plan().unwrap();
        assert_eq!(
            (plan.rooms, plan.users_per_room, plan.late_per_room),
            (4, 8, 0)
        );
        let hot = parse(&["--scenario", "hot-room"]).unwrap().plan().unwrap();
        assert_eq!((hot.rooms, hot.users_per_room), (1, 32));
        let late = parse(&["--scenario", "late-joiners", "--late-fraction", "0.3"])
            .unwrap()
            .plan()
            .unwrap();
        // 30% of 8, rounded up.
        assert_eq!(
            (late.rooms, late.users_per_room, late.late_per_room),
            (4, 8, 3)
        );
        let lone = parse(&["--scenario", "late-joiners", "--users-per-room", "1"]).unwrap();
        assert!(
            lone.plan().is_err(),
            "a room of one cannot have a late joiner"
        );
        // 2.5 messages per second for 3 s: 8 messages (rounded up).
        let timed = parse(&["--duration", "3", "--rate", "2.5"])
            .unwrap()
            .plan()
            .unwrap();
        assert_eq!(timed.messages, 8);
        assert!(
            parse(&["--duration", "3", "--rate", "0"])
                .unwrap()
                .plan()
                .is_err()
        );
        assert!(parse(&["--duration", "3", "--messages", "5"]).is_err());
        for bad in [
            &["--late-fraction", "1"][..],
            &["--late-fraction", "0"],
            &["--duration", "0"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn command_lines_are_quoted_for_a_shell() {
        let words = [
            "quibble-bench",
            "chat",
            "--server",
            "http://h:1/",
            "it's",
            "",
        ]
        .map(String::from);
        assert_eq!(
            join_quoted(&words),
            r"quibble-bench chat --server http://h:1/ 'it'\''s' ''"
        );
    }
}
