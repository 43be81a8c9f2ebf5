//! IP bans: addresses and CIDR ranges, IPv4 and IPv6, each with a reason, who added it, and an
//! optional end, added and removed with an audit entry in the same writer request.
//!
//! A network is stored under its canonical text (`ipnet::IpNet` truncated to its prefix:
//! `10.1.2.3/8` is `10.0.0.0/8`), so one range has one row. A ban with an end stops counting
//! once it passes ([`Redb::active_ip_bans`] leaves it out); the row stays until removed or
//! replaced, and expired rows are dropped when the table is full. The table holds at most
//! [`MAX_IP_BANS`] rows, since the running server keeps the active list in memory and checks
//! it on every request.

use ipnet::IpNet;
use redb::{ReadableTable, ReadableTableMetadata};

use super::accounts::require_admin;
use super::audit::{self, Actor, AuditAction, actor_identity};
use super::records::{IpBanRecord, decode, encode};
use super::tables::{IP_BANS, WriteTables};
use super::writer::Request;
use super::{Redb, StoreError};

/// The most IP bans stored at once.
pub const MAX_IP_BANS: usize = 10_000;

/// An address or range ban.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpBan {
    /// Canonical: truncated to its prefix.
    pub network: IpNet,
    pub reason: String,
    pub created_at_ms: u64,
    /// When it ends; `None`: when removed.
    pub until_ms: Option<u64>,
    /// Who added it: an admin's name at the time, or the operator.
    pub by: String,
}

impl Redb {
    pub async fn add_ip_ban(
        &self,
        actor: Actor,
        network: IpNet,
        reason: &str,
        duration_ms: Option<u64>,
    ) -> Result<IpBan, StoreError> {
        let reason = reason.to_owned();
        self.request(|reply| Request::AddIpBan {
            actor,
            network,
            reason,
            duration_ms,
            reply,
        })
        .await
    }

    pub async fn remove_ip_ban(&self, actor: Actor, network: IpNet) -> Result<bool, StoreError> {
        self.request(|reply| Request::RemoveIpBan {
            actor,
            network,
            reply,
        })
        .await
    }

    pub async fn active_ip_bans(&self, now_ms: u64) -> Result<Vec<IpBan>, StoreError> {
        self.read(move |txn| {
            let mut bans = Vec::new();
            for row in txn.open_table(IP_BANS)?.iter()? {
                let (network, bytes) = row?;
                let network: IpNet = network.value().parse().map_err(|_| {
                    StoreError::Corrupt(format!("ip ban under {:?}", network.value()))
                })?;
                let record: IpBanRecord<String> = decode("ip_bans", bytes.value())?;
                if record.until_ms.is_none_or(|until| until > now_ms) {
                    bans.push(IpBan {
                        network,
                        reason: record.reason,
                        created_at_ms: record.created_at_ms,
                        until_ms: record.until_ms,
                        by: record.by,
                    });
                }
            }
            Ok(bans)
        })
        .await
    }
}

/// Writer side of [`Redb::add_ip_ban`]; refuses before writing anything but expired rows.
pub(super) fn add(
    tables: &mut WriteTables<'_>,
    now_ms: u64,
    actor: Actor,
    network: IpNet,
    reason: &str,
    duration_ms: Option<u64>,
) -> Result<IpBan, StoreError> {
    require_admin(tables, actor)?;
    let network = network.trunc();
    let key = network.to_string();
    if tables.ip_bans.get(key.as_str())?.is_none() && full(tables)? {
        // Expired rows mean nothing: make room from them first.
        tables.ip_bans.retain(|_, bytes| {
            decode::<IpBanRecord<String>>("ip_bans", bytes)
                .map_or(true, |r| r.until_ms.is_none_or(|until| until > now_ms))
        })?;
        if full(tables)? {
            return Err(StoreError::TooMany("IP bans"));
        }
    }
    let (by_id, by) = actor_identity(tables, actor)?;
    let until_ms = duration_ms.map(|d| now_ms.saturating_add(d));
    let record = encode(&IpBanRecord {
        reason,
        created_at_ms: now_ms,
        until_ms,
        by_id,
        by: by.as_str(),
    })?;
    tables.ip_bans.insert(key.as_str(), record.as_slice())?;
    audit::record(
        tables,
        now_ms,
        actor,
        AuditAction::IpBanAdd,
        &key,
        Some(reason),
    )?;
    Ok(IpBan {
        network,
        reason: reason.to_owned(),
        created_at_ms: now_ms,
        until_ms,
        by,
    })
}

fn full(tables: &WriteTables<'_>) -> Result<bool, StoreError> {
    Ok(tables.ip_bans.len()? >= MAX_IP_BANS as u64)
}

/// Writer side of [`Redb::remove_ip_ban`]; refuses before writing anything.
pub(super) fn remove(
    tables: &mut WriteTables<'_>,
    now_ms: u64,
    actor: Actor,
    network: IpNet,
) -> Result<bool, StoreError> {
    require_admin(tables, actor)?;
    let key = network.trunc().to_string();
    let removed = tables.ip_bans.remove(key.as_str())?.is_some();
    if removed {
        audit::record(tables, now_ms, actor, AuditAction::IpBanRemove, &key, None)?;
    }
    Ok(removed)
}
