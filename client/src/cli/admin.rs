//! The moderation commands of `quibble-chat` (admins only): `promote`, `demote`, `ban`,
//! `unban`, `bans`, `ip-ban add|list|remove` and `audit`, each one REST call. Output lines are
//! tab-separated like the server's `quibble admin` prints them; times are RFC 3339 UTC and a
//! missing end or reason is `-`.

use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use quibble_client::{Ban, IpBan, Role};

use super::account::Session;
use super::args::IpBanCommand;
use super::emit;
use super::format::escape_field;

/// `promote` (`admin`) or `demote` USER; prints `ROLE<TAB>USER`.
pub async fn set_role(session: &Session, user: &str, admin: bool) -> anyhow::Result<()> {
    let (api, token) = (&session.api, session.token());
    let changed = if admin {
        api.promote(token, user).await
    } else {
        api.demote(token, user).await
    }
    .with_context(|| format!("cannot change the role of {user:?}"))?;
    let role = match changed.role {
        Role::Admin => "admin",
        Role::User => "user",
        Role::Other => "other",
    };
    emit(&format!("{role}\t{}", escape_field(&changed.username)))
}

pub async fn ban(
    session: &Session,
    user: &str,
    reason: &str,
    duration_secs: Option<u64>,
) -> anyhow::Result<()> {
    let ban = session
        .api
        .ban(session.token(), user, reason, duration_secs)
        .await
        .with_context(|| format!("cannot ban {user:?}"))?;
    emit(&format!(
        "banned\t{}\t{}\t{}",
        escape_field(&ban.user.username),
        until(ban.until_ms),
        escape_field(&ban.reason)
    ))
}

pub async fn unban(session: &Session, user: &str) -> anyhow::Result<()> {
    let unbanned = session
        .api
        .unban(session.token(), user)
        .await
        .with_context(|| format!("cannot unban {user:?}"))?;
    let word = if unbanned.changed {
        "unbanned"
    } else {
        "not banned"
    };
    emit(&format!(
        "{word}\t{}",
        escape_field(&unbanned.user.username)
    ))
}

/// `USER<TAB>UNTIL|-<TAB>BY<TAB>REASON` per active ban.
pub async fn bans(session: &Session) -> anyhow::Result<()> {
    let bans = session
        .api
        .bans(session.token())
        .await
        .context("cannot list the bans")?;
    for Ban {
        user,
        reason,
        until_ms,
        by,
        ..
    } in bans
    {
        emit(&format!(
            "{}\t{}\t{}\t{}",
            escape_field(&user.username),
            until(until_ms),
            escape_field(&by),
            escape_field(&reason)
        ))?;
    }
    Ok(())
}

pub async fn ip_ban(session: &Session, command: &IpBanCommand) -> anyhow::Result<()> {
    let (api, token) = (&session.api, session.token());
    match command {
        IpBanCommand::Add {
            network,
            reason,
            duration,
        } => {
            let ban = api
                .add_ip_ban(token, network, reason, *duration)
                .await
                .with_context(|| format!("cannot ban {network:?}"))?;
            emit(&format!(
                "banned\t{}\t{}\t{}",
                ban.network,
                until(ban.until_ms),
                escape_field(&ban.reason)
            ))
        }
        IpBanCommand::List => {
            let bans = api
                .ip_bans(token)
                .await
                .context("cannot list the IP bans")?;
            for IpBan {
                network,
                reason,
                until_ms,
                by,
                ..
            } in bans
            {
                emit(&format!(
                    "{network}\t{}\t{}\t{}",
                    until(until_ms),
                    escape_field(&by),
                    escape_field(&reason)
                ))?;
            }
            Ok(())
        }
        IpBanCommand::Remove { network } => {
            let removed = api
                .remove_ip_ban(token, network)
                .await
                .with_context(|| format!("cannot remove the ban of {network:?}"))?;
            let word = if removed.changed {
                "removed"
            } else {
                "not banned"
            };
            emit(&format!("{word}\t{}", removed.network))
        }
    }
}

/// The newest `limit` entries: `ID<TAB>TIME<TAB>ACTOR<TAB>ACTION<TAB>TARGET<TAB>REASON|-`.
pub async fn audit(session: &Session, limit: u32) -> anyhow::Result<()> {
    let page = session
        .api
        .audit(session.token(), limit, None)
        .await
        .context("cannot read the audit log")?;
    for entry in page.entries {
        emit(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            entry.id,
            time(entry.at_ms),
            escape_field(&entry.actor),
            escape_field(&entry.action),
            escape_field(&entry.target),
            entry.reason.as_deref().map_or("-".into(), escape_field)
        ))?;
    }
    Ok(())
}

/// A Unix time in ms as RFC 3339 UTC, to the second.
fn time(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// An end time, or `-` for none.
fn until(until_ms: Option<u64>) -> String {
    until_ms.map_or_else(|| "-".to_owned(), time)
}
