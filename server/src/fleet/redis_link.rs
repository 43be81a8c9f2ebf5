//! The node's links to Redis, a single server or a Cluster, for sharded pub/sub. Topology:
//! `CLUSTER SLOTS` on a seed says which master serves which slots (a server without cluster
//! support serves them all). Publishing: one connection per master, each batch of commits
//! pipelined to the master of each channel's slot, in order. Subscribing: one RESP3 connection
//! per master with a partition on it, one `SSUBSCRIBE` per channel (a Cluster refuses several
//! channels of different slots in one command), its pushes handed to a callback.
//!
//! Nothing here reconnects by itself: a link that fails is dropped, and its owner
//! ([`crate::fleet`]) discovers the topology again and reconnects (redis-rs's own managers
//! resubscribe several channels in one command, which a Cluster refuses). Every connect and
//! every reply has a deadline.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, ProtocolVersion,
    PushInfo, RedisError, Value,
};

use super::partition::{self, CHANNELS};

/// How long a connection to Redis may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long any reply from Redis may take.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("bad Redis URL {url:?}: {source}")]
    Url { url: String, source: RedisError },
    #[error("no Redis URL given")]
    NoSeed,
    #[error("Redis: {0}")]
    Redis(#[from] RedisError),
    #[error("Redis: CLUSTER SLOTS answered something unreadable: {0}")]
    Topology(&'static str),
    #[error("Redis: no master serves slot {0}")]
    Unserved(u16),
}

/// The Redis servers to start from: `--redis` as one URL or several, comma-separated.
#[derive(Clone, Debug)]
pub struct Seeds(Vec<ConnectionInfo>);

impl Seeds {
    pub fn parse(urls: &str) -> Result<Seeds, LinkError> {
        let seeds = urls
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(|url| {
                url.into_connection_info().map_err(|source| LinkError::Url {
                    url: url.to_owned(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if seeds.is_empty() {
            return Err(LinkError::NoSeed);
        }
        Ok(Seeds(seeds))
    }
}

/// Which master serves which slot.
pub struct Topology {
    /// `(first slot, last slot, master)`, sorted by first slot.
    ranges: Vec<(u16, u16, ConnectionInfo)>,
}

impl Topology {
    /// Ask the seeds in turn until one answers.
    pub async fn discover(seeds: &Seeds) -> Result<Topology, LinkError> {
        let mut last = LinkError::NoSeed;
        for seed in &seeds.0 {
            match Self::ask(seed).await {
                Ok(topology) => return Ok(topology),
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    async fn ask(seed: &ConnectionInfo) -> Result<Topology, LinkError> {
        let mut connection = connect(seed, None).await?;
        let reply: Result<Value, RedisError> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut connection)
            .await;
        match reply {
            Ok(reply) => {
                let mut ranges = parse_slots(&reply, seed)?;
                ranges.sort_by_key(|(first, _, _)| *first);
                Ok(Topology { ranges })
            }
            Err(error)
                if error
                    .detail()
                    .is_some_and(|d| d.contains("cluster support disabled")) =>
            {
                Ok(Topology {
                    ranges: vec![(0, partition::SLOTS - 1, seed.clone())],
                })
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The master serving `slot`.
    pub fn owner(&self, slot: u16) -> Result<&ConnectionInfo, LinkError> {
        self.ranges
            .iter()
            .find(|(first, last, _)| (*first..=*last).contains(&slot))
            .map(|(_, _, master)| master)
            .ok_or(LinkError::Unserved(slot))
    }

    /// The master serving partition `index`'s channel.
    pub fn owner_of_partition(&self, index: usize) -> Result<&ConnectionInfo, LinkError> {
        self.owner(partition::slot(partition::channel(index).as_bytes()))
    }
}

/// `CLUSTER SLOTS`: `[[first, last, [host, port, id, ...], replicas...], ...]`.
fn parse_slots(
    reply: &Value,
    seed: &ConnectionInfo,
) -> Result<Vec<(u16, u16, ConnectionInfo)>, LinkError> {
    let Value::Array(ranges) = reply else {
        return Err(LinkError::Topology("not an array"));
    };
    ranges
        .iter()
        .map(|range| {
            let Value::Array(fields) = range else {
                return Err(LinkError::Topology("a range is not an array"));
            };
            let (Some(Value::Int(first)), Some(Value::Int(last)), Some(Value::Array(master))) =
                (fields.first(), fields.get(1), fields.get(2))
            else {
                return Err(LinkError::Topology("a range without slots and master"));
            };
            let slot = |n: &i64| u16::try_from(*n).ok().filter(|&s| s < partition::SLOTS);
            let (Some(first), Some(last)) = (slot(first), slot(last)) else {
                return Err(LinkError::Topology("a slot out of range"));
            };
            let host = match master.first() {
                Some(Value::BulkString(host)) => String::from_utf8_lossy(host).into_owned(),
                _ => return Err(LinkError::Topology("a master without a host")),
            };
            let Some(Value::Int(port)) = master.get(1) else {
                return Err(LinkError::Topology("a master without a port"));
            };
            let port = u16::try_from(*port).map_err(|_| LinkError::Topology("a bad port"))?;
            // An empty or unknown host means the address the seed was reached on.
            let host = match (host.as_str(), seed.addr()) {
                ("" | "?", ConnectionAddr::Tcp(seed_host, _)) => seed_host.clone(),
                _ => host,
            };
            Ok((
                first,
                last,
                seed.clone().set_addr(ConnectionAddr::Tcp(host, port)),
            ))
        })
        .collect()
}

/// A connection to `server`, RESP3 with its pushes handed to `pushes` when given.
async fn connect(
    server: &ConnectionInfo,
    pushes: Option<PushCallback>,
) -> Result<MultiplexedConnection, LinkError> {
    let mut info = server.clone();
    let mut config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    if let Some(pushes) = pushes {
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        info = info.set_redis_settings(settings);
        config = config.set_push_sender(move |push| {
            pushes(push);
            Ok::<(), ()>(())
        });
    }
    let client = redis::Client::open(info)?;
    Ok(client
        .get_multiplexed_async_connection_with_config(&config)
        .await?)
}

/// What a subscriber's connection does with each push (messages, confirmations, and a
/// `Disconnection` when the link drops). Called on the connection's reader: it must not block.
pub type PushCallback = std::sync::Arc<dyn Fn(PushInfo) + Send + Sync>;

fn key(server: &ConnectionInfo) -> String {
    server.addr().to_string()
}

/// The publishing side: a connection per master, opened when first needed.
pub struct Publisher {
    seeds: Seeds,
    topology: Option<Topology>,
    connections: HashMap<String, MultiplexedConnection>,
}

impl Publisher {
    pub fn new(seeds: Seeds) -> Publisher {
        Publisher {
            seeds,
            topology: None,
            connections: HashMap::new(),
        }
    }

    /// `SPUBLISH` each `(partition, payload)` on its partition's channel, pipelined per master
    /// in the order given. On any failure everything is forgotten (topology, connections), so
    /// the next call starts afresh; some of the batch may have been published (a receiver
    /// drops what it has delivered).
    pub async fn publish(&mut self, batch: &[(usize, Bytes)]) -> Result<(), LinkError> {
        let result = self.try_publish(batch).await;
        if result.is_err() {
            self.topology = None;
            self.connections.clear();
        }
        result
    }

    async fn try_publish(&mut self, batch: &[(usize, Bytes)]) -> Result<(), LinkError> {
        if self.topology.is_none() {
            self.topology = Some(Topology::discover(&self.seeds).await?);
        }
        let Some(topology) = &self.topology else {
            return Err(LinkError::NoSeed);
        };
        let mut pipelines: Vec<(ConnectionInfo, redis::Pipeline)> = Vec::new();
        for (index, payload) in batch {
            let owner = topology.owner_of_partition(*index)?;
            let at = match pipelines.iter().position(|(o, _)| o.addr() == owner.addr()) {
                Some(at) => at,
                None => {
                    pipelines.push((owner.clone(), redis::pipe()));
                    pipelines.len() - 1
                }
            };
            pipelines[at]
                .1
                .cmd("SPUBLISH")
                .arg(partition::channel(*index))
                .arg(payload.as_ref())
                .ignore();
        }
        for (owner, pipeline) in pipelines {
            let connection = match self.connections.entry(key(&owner)) {
                std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::hash_map::Entry::Vacant(entry) => {
                    entry.insert(connect(&owner, None).await?)
                }
            };
            pipeline.exec_async(connection).await?;
        }
        Ok(())
    }
}

/// A connection to `master` with each of `channels` subscribed, one per command.
async fn subscribe_on(
    master: &ConnectionInfo,
    channels: &[usize],
    pushes: PushCallback,
) -> Result<MultiplexedConnection, LinkError> {
    let mut connection = connect(master, Some(pushes)).await?;
    for &index in channels {
        redis::cmd("SSUBSCRIBE")
            .arg(partition::channel(index))
            .exec_async(&mut connection)
            .await?;
    }
    Ok(connection)
}

/// The subscribing side: every partition's channel subscribed, each on its master's
/// connection. Dropping it closes the connections.
pub struct Subscription {
    connections: Vec<MultiplexedConnection>,
    /// How many channels could not be subscribed (their master unreachable or unknown).
    missing: usize,
}

impl Subscription {
    /// Subscribe every channel (the partitions' and the control channel), one per command,
    /// their pushes to `pushes`. A master that cannot be reached (a Cluster shard down) costs
    /// only its channels ([`Subscription::is_complete`]); an error only if none could be had.
    pub async fn open(seeds: &Seeds, pushes: PushCallback) -> Result<Subscription, LinkError> {
        let topology = Topology::discover(seeds).await?;
        let mut by_master: Vec<(ConnectionInfo, Vec<usize>)> = Vec::new();
        let mut missing = 0;
        let mut last_error = None;
        for index in 0..CHANNELS {
            let owner = match topology.owner_of_partition(index) {
                Ok(owner) => owner,
                Err(error) => {
                    missing += 1;
                    last_error = Some(error);
                    continue;
                }
            };
            match by_master.iter_mut().find(|(o, _)| o.addr() == owner.addr()) {
                Some((_, partitions)) => partitions.push(index),
                None => by_master.push((owner.clone(), vec![index])),
            }
        }
        let mut connections = Vec::with_capacity(by_master.len());
        for (master, partitions) in by_master {
            let count = partitions.len();
            match subscribe_on(&master, &partitions, pushes.clone()).await {
                Ok(connection) => connections.push(connection),
                Err(error) => {
                    missing += count;
                    last_error = Some(error);
                }
            }
        }
        match (connections.is_empty(), last_error) {
            (true, Some(error)) => Err(error),
            _ => Ok(Subscription {
                connections,
                missing,
            }),
        }
    }

    /// Whether every channel is subscribed.
    pub fn is_complete(&self) -> bool {
        self.missing == 0
    }

    /// Whether every connection still answers (a `PING` each, within the reply deadline).
    pub async fn ping(&mut self) -> Result<(), LinkError> {
        for connection in &mut self.connections {
            redis::cmd("PING").exec_async(connection).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn cluster_slots_are_read_with_the_seed_host_for_an_empty_one() {
        let seed = "redis://:secret@127.0.0.1:7000/"
            .into_connection_info()
            .unwrap();
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                Value::Array(vec![bulk("127.0.0.1"), Value::Int(7000), bulk("id0")]),
            ]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(16383),
                Value::Array(vec![bulk(""), Value::Int(7001), bulk("id1")]),
                Value::Array(vec![bulk("127.0.0.1"), Value::Int(7002), bulk("replica")]),
            ]),
        ]);
        let ranges = parse_slots(&reply, &seed).unwrap();
        assert_eq!(ranges.len(), 2);
        assert_eq!((ranges[1].0, ranges[1].1), (5461, 16383));
        assert_eq!(
            ranges[1].2.addr(),
            &ConnectionAddr::Tcp("127.0.0.1".into(), 7001)
        );
        assert_eq!(ranges[1].2.redis_settings().password(), Some("secret"));
        let topology = Topology { ranges };
        assert_eq!(
            topology.owner(100).unwrap().addr(),
            &ConnectionAddr::Tcp("127.0.0.1".into(), 7000)
        );
    }

    #[test]
    fn unreadable_cluster_slots_are_refused() {
        let seed = "redis://127.0.0.1:7000".into_connection_info().unwrap();
        for reply in [
            Value::Okay,
            Value::Array(vec![Value::Int(1)]),
            Value::Array(vec![Value::Array(vec![
                Value::Int(0),
                Value::Int(16384),
                Value::Array(vec![bulk("h"), Value::Int(1)]),
            ])]),
            Value::Array(vec![Value::Array(vec![
                Value::Int(0),
                Value::Int(10),
                Value::Array(vec![bulk("h"), Value::Int(70000)]),
            ])]),
        ] {
            assert!(parse_slots(&reply, &seed).is_err(), "{reply:?}");
        }
    }

    #[test]
    fn seeds_are_one_or_more_urls() {
        assert_eq!(Seeds::parse("redis://a:1, redis://b:2").unwrap().0.len(), 2);
        assert!(matches!(Seeds::parse(" , "), Err(LinkError::NoSeed)));
        assert!(matches!(
            Seeds::parse("http://x"),
            Err(LinkError::Url { .. })
        ));
    }
}
