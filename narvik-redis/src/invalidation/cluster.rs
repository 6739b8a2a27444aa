//! Tracking on a cluster: `BCAST` tracking is per node, so one tracking connection to every
//! primary, and the hub healthy only while all of them are up and the slots are where they
//! were when tracking started (a failover or a resharding moves writes to a node that may not
//! be tracked, so any change of the slot table is a loss and a rebuild).

use std::collections::BTreeSet;

use redis::{ConnectionAddr, ConnectionInfo};

use super::*;

/// How often every primary is asked for its slot table (it is also their heartbeat).
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// One session: the slot table from any node, a tracking connection to each primary, each
/// of which confirms the same table once tracking is on; then every push relayed until a
/// connection is lost, a table differs, or nobody listens.
pub(super) async fn session(
    seeds: &[ConnectionInfo],
    known: &mut Vec<ConnectionInfo>,
    settings: &Settings,
    hub: &InvalidationHub,
) -> Result<Unwatched, Loss> {
    let template = seeds.first().ok_or(Loss::NoNode)?;
    let topology = discover(known.iter().chain(seeds), settings).await?;
    let (sender, mut pushes) = mpsc::unbounded_channel();
    let mut links = Vec::new();
    let mut infos = Vec::new();
    for node in topology.primaries() {
        let info = node_info(template, node);
        let client = Client::open(info.clone()).map_err(Loss::Connect)?;
        let mut connection = open_tracking(&client, settings, &sender).await?;
        // Asked after tracking is on: a move before this answer is seen here, one after it
        // by the next check.
        check(&mut connection, &node.host, &topology).await?;
        links.push((connection, node.host.clone()));
        infos.push(info);
    }
    drop(sender);
    *known = infos;
    hub.subscribed();
    let mut checked = Instant::now();
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            push = pushes.recv() => {
                relay(push.ok_or(Loss::Closed)?, &settings.record_prefix, hub)?;
            }
            _ = ticks.tick() => {
                if hub.subscriber_count() == 0 {
                    return Ok(Unwatched);
                }
                if checked.elapsed() >= CHECK_EVERY {
                    for (connection, host) in &mut links {
                        check(connection, host, &topology).await?;
                    }
                    checked = Instant::now();
                }
            }
        }
    }
}

/// The slot table, from the first node that answers.
async fn discover<'a>(
    nodes: impl Iterator<Item = &'a ConnectionInfo>,
    settings: &Settings,
) -> Result<Topology, Loss> {
    let mut last = Loss::NoNode;
    for info in nodes {
        let asked = host_of(info);
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(DEADLINE));
        let attempt = async {
            let client = Client::open(info.clone()).map_err(Loss::Connect)?;
            let mut connection = client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map_err(Loss::Connect)?;
            slots(&mut connection, &asked).await
        };
        match attempt.await {
            Ok(topology) => return Ok(topology),
            Err(error) => last = error,
        }
    }
    Err(last)
}

/// Whether the node behind `connection` still serves the slots as `expected`.
async fn check(
    connection: &mut MultiplexedConnection,
    host: &str,
    expected: &Topology,
) -> Result<(), Loss> {
    if slots(connection, host).await? == *expected {
        Ok(())
    } else {
        Err(Loss::Topology)
    }
}

async fn slots(connection: &mut MultiplexedConnection, asked: &str) -> Result<Topology, Loss> {
    let reply: Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(connection)
        .await
        .map_err(Loss::command)?;
    Topology::parse(&reply, asked).ok_or(Loss::Unreadable)
}

/// The connection settings of a node: the address the cluster gives, everything else (TLS,
/// credentials, RESP3) as the nodes the store was given, as the cluster client does.
fn node_info(template: &ConnectionInfo, node: &Node) -> ConnectionInfo {
    let mut addr = template.addr().clone();
    match &mut addr {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            host.clone_from(&node.host);
            *port = node.port;
        }
        _ => addr = ConnectionAddr::Tcp(node.host.clone(), node.port),
    }
    template.clone().set_addr(addr)
}

fn host_of(info: &ConnectionInfo) -> String {
    match info.addr() {
        ConnectionAddr::Tcp(host, _) | ConnectionAddr::TcpTls { host, .. } => host.clone(),
        _ => String::new(),
    }
}

/// A primary, as `CLUSTER SLOTS` names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Node {
    id: String,
    host: String,
    port: u16,
}

/// The slot ranges and their primaries, in slot order.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Topology(Vec<(i64, i64, Node)>);

impl Topology {
    /// Reads a `CLUSTER SLOTS` reply (RESP2 or RESP3): `None` for anything unexpected, and
    /// for a node serving no slots (the cluster is not formed yet). An empty endpoint means
    /// the node asked (`asked`); `?` an endpoint the node does not know, which is no
    /// address to connect to.
    pub(super) fn parse(reply: &Value, asked: &str) -> Option<Self> {
        let Value::Array(entries) = reply else {
            return None;
        };
        let mut ranges = Vec::with_capacity(entries.len());
        for entry in entries {
            let Value::Array(fields) = entry else {
                return None;
            };
            let [Value::Int(start), Value::Int(end), Value::Array(primary), ..] = fields.as_slice()
            else {
                return None;
            };
            let [host, Value::Int(port), id, ..] = primary.as_slice() else {
                return None;
            };
            let host = match text(host)? {
                "" => asked,
                "?" => return None,
                host => host,
            };
            let node = Node {
                id: text(id)?.to_owned(),
                host: host.to_owned(),
                port: u16::try_from(*port).ok()?,
            };
            ranges.push((*start, *end, node));
        }
        if ranges.is_empty() {
            return None;
        }
        ranges.sort();
        Some(Self(ranges))
    }

    /// Every primary serving a slot, once.
    pub(super) fn primaries(&self) -> BTreeSet<&Node> {
        self.0.iter().map(|(_, _, node)| node).collect()
    }
}

fn text(value: &Value) -> Option<&str> {
    match value {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        Value::VerbatimString { text, .. } => Some(text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn range(start: i64, end: i64, host: &str, port: i64, id: &str) -> Value {
        Value::Array(vec![
            Value::Int(start),
            Value::Int(end),
            Value::Array(vec![
                bulk(host),
                Value::Int(port),
                bulk(id),
                Value::Map(vec![]),
            ]),
            // A replica: not tracked.
            Value::Array(vec![bulk("10.0.0.9"), Value::Int(7009), bulk("r")]),
        ])
    }

    #[test]
    fn slot_tables_are_read_in_slot_order_with_their_primaries() {
        let reply = Value::Array(vec![
            range(8192, 16383, "", 7001, "b"),
            range(0, 8191, "10.0.0.1", 7000, "a"),
        ]);
        let topology = Topology::parse(&reply, "seed").expect("readable");
        let primaries: Vec<(&str, &str, u16)> = topology
            .primaries()
            .into_iter()
            .map(|node| (node.id.as_str(), node.host.as_str(), node.port))
            .collect();
        assert_eq!(primaries, [("a", "10.0.0.1", 7000), ("b", "seed", 7001)]);
        let reordered = Value::Array(vec![
            range(0, 8191, "10.0.0.1", 7000, "a"),
            range(8192, 16383, "", 7001, "b"),
        ]);
        assert_eq!(Topology::parse(&reordered, "seed"), Some(topology));
    }

    #[test]
    fn unreadable_slot_tables_are_none() {
        for reply in [
            Value::Nil,
            Value::Array(vec![]),
            Value::Array(vec![range(0, 1, "?", 7000, "a")]),
            Value::Array(vec![range(0, 1, "h", 70000, "a")]),
            Value::Array(vec![Value::Array(vec![Value::Int(0), Value::Int(1)])]),
            Value::Array(vec![Value::Array(vec![
                Value::Int(0),
                Value::Int(1),
                Value::Array(vec![bulk("h"), bulk("7000"), bulk("a")]),
            ])]),
            Value::Array(vec![Value::Int(3)]),
        ] {
            assert_eq!(Topology::parse(&reply, "seed"), None, "{reply:?}");
        }
    }
}
