//! Live enforcement of moderation, as methods of the shared state ([`Shared`]): ending live
//! connections at once — a user's (a ban, a password change), one session's (logout), or those
//! from banned addresses — and the in-memory list of IP bans that the REST middleware, the
//! WebSocket upgrade and the WebTransport session request consult on every attempt.
//!
//! Design: the live connections are the user hub's ([`crate::chat::users`], which every
//! authenticated connection is in with its token hash, client address and protocol version);
//! ending one puts `Error { code, reason }` last on its control stream and closes it with that
//! code. The ban list is replaced whole ([`Shared::reload_ip_bans`]: the store's active list,
//! at start and after each change, see [`crate::admin::perform`]) and read under a read lock;
//! expired rules stop matching by themselves ([`access::address_ban`] holds the rule; a list
//! of n rules costs n network comparisons per request). A connection that was signing in
//! while a sweep ran is not in the hub yet, so after joining it checks again
//! ([`Shared::recheck`]): its address against the list, and — only when a user or session was
//! closed meanwhile, which a counter tells — its session in the store.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use ipnet::IpNet;
use quibble_protocol::{ErrorCode, MODERATION_VERSION, UserId};

use crate::access;
use crate::admin::ops::rfc3339;
use crate::auth::TokenHash;
use crate::chat::stream::CloseReason;
use crate::chat::users::Peer;
use crate::fleet::control::Control;
use crate::state::Shared;
use crate::store::{IpBan, StoreError};
use crate::tls::unix_ms;

/// One IP ban as enforcement sees it: a network (a single address is a /32 or /128), why, and
/// until when (unix ms; `None`: until removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpBanRule {
    pub network: IpNet,
    pub reason: String,
    pub until_ms: Option<u64>,
}

impl IpBanRule {
    /// What a refused or cut peer is told: "this address is banned[ until TIME]: REASON".
    pub fn message(&self) -> String {
        match self.until_ms {
            Some(until) => format!(
                "this address is banned until {}: {}",
                rfc3339(until),
                self.reason
            ),
            None => format!("this address is banned: {}", self.reason),
        }
    }
}

impl From<IpBan> for IpBanRule {
    fn from(ban: IpBan) -> Self {
        IpBanRule {
            network: ban.network,
            reason: ban.reason,
            until_ms: ban.until_ms,
        }
    }
}

/// The state enforcement keeps (a field of [`Shared`]).
#[derive(Default)]
pub struct Enforcement {
    ip_bans: RwLock<Arc<Vec<IpBanRule>>>,
    /// Held while the list is read from the store and set, so that concurrent reloads end
    /// with the newest list (each reads after its own change was committed).
    reloading: tokio::sync::Mutex<()>,
    /// Bumped by every [`Shared::close_user`] and [`Shared::close_session`], before their
    /// sweep: a connection that saw it change while signing in re-reads its session.
    revocations: AtomicU64,
}

impl Enforcement {
    /// Read before a connection's session is looked up; give it to [`Shared::recheck`].
    pub fn revocations(&self) -> u64 {
        self.revocations.load(Ordering::SeqCst)
    }

    fn rules(&self) -> Arc<Vec<IpBanRule>> {
        Arc::clone(&self.ip_bans.read().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The code a connection of protocol `version` is told: `Banned` is `Unauthorized` before
/// [`MODERATION_VERSION`] (such a client cannot decode it).
pub fn code_for_version(code: ErrorCode, version: u16) -> ErrorCode {
    if code == ErrorCode::Banned && version < MODERATION_VERSION {
        ErrorCode::Unauthorized
    } else {
        code
    }
}

impl Shared {
    /// Ends every live connection of `user`, except those authenticated with `except`, with
    /// `code` and `reason`, here and on every other node of a fleet. Call once the change (ban,
    /// revoked sessions) is committed.
    pub fn close_user(
        &self,
        user: UserId,
        except: Option<TokenHash>,
        code: ErrorCode,
        reason: &str,
    ) {
        self.tell_fleet(Control::CloseUser {
            user,
            except: except.map(|t| t.0),
            code,
            reason: reason.to_owned(),
        });
        self.close_user_here(user, except, code, reason);
    }

    /// [`Shared::close_user`] on this node only.
    pub fn close_user_here(
        &self,
        user: UserId,
        except: Option<TokenHash>,
        code: ErrorCode,
        reason: &str,
    ) {
        self.enforcement.revocations.fetch_add(1, Ordering::SeqCst);
        let ended = self.users.close_where(Some(user), code, |peer| {
            (Some(peer.token) != except).then_some(reason)
        });
        tracing::info!(user = user.0, %code, ended, "closed a user's live connections");
    }

    /// Ends every live connection authenticated with `token`, here and on every other node of
    /// a fleet. Call once the session is gone from the store.
    pub fn close_session(&self, token: TokenHash, code: ErrorCode, reason: &str) {
        self.tell_fleet(Control::CloseSession {
            token: token.0,
            code,
            reason: reason.to_owned(),
        });
        self.close_session_here(token, code, reason);
    }

    /// [`Shared::close_session`] on this node only.
    pub fn close_session_here(&self, token: TokenHash, code: ErrorCode, reason: &str) {
        self.enforcement.revocations.fetch_add(1, Ordering::SeqCst);
        let ended = self
            .users
            .close_where(None, code, |peer| (peer.token == token).then_some(reason));
        tracing::debug!(%code, ended, "closed a session's live connections");
    }

    /// Replaces the IP-ban list, and ends the live connections from addresses that a rule new
    /// to the list bans now, with `Banned` and the rule's message.
    pub fn set_ip_bans(&self, rules: Vec<IpBanRule>) {
        let rules = Arc::new(rules);
        let old = std::mem::replace(
            &mut *self
                .enforcement
                .ip_bans
                .write()
                .unwrap_or_else(|p| p.into_inner()),
            Arc::clone(&rules),
        );
        let known: HashSet<(IpNet, Option<u64>)> =
            old.iter().map(|r| (r.network, r.until_ms)).collect();
        let new: Vec<IpBanRule> = rules
            .iter()
            .filter(|r| !known.contains(&(r.network, r.until_ms)))
            .cloned()
            .collect();
        if new.is_empty() {
            return;
        }
        let now = unix_ms(SystemTime::now());
        let messages: Vec<String> = new.iter().map(IpBanRule::message).collect();
        let ended = self.users.close_where(None, ErrorCode::Banned, |peer| {
            access::address_ban(&new, peer.addr, now).map(|i| messages[i].as_str())
        });
        tracing::info!(rules = rules.len(), ended, "IP bans updated");
    }

    /// Reads the active IP bans from the store and sets them ([`Shared::set_ip_bans`]): at
    /// start, and after every change to them (here or, in a fleet, on another node).
    pub async fn reload_ip_bans(&self) -> Result<(), StoreError> {
        let _serial = self.enforcement.reloading.lock().await;
        let bans = self
            .store
            .active_ip_bans(unix_ms(SystemTime::now()))
            .await?;
        self.set_ip_bans(bans.into_iter().map(IpBanRule::from).collect());
        Ok(())
    }

    /// The message to refuse `ip` with, if it is banned now.
    pub fn address_ban(&self, ip: IpAddr) -> Option<String> {
        let rules = self.enforcement.rules();
        access::address_ban(&rules, ip, unix_ms(SystemTime::now())).map(|i| rules[i].message())
    }

    /// For a connection that just joined the user hub: refuses it (the code for its version,
    /// and why) if its address is banned now, or if its session was revoked while it signed
    /// in — looked up again only when `revocations_before` (read before its session was) is
    /// no longer current.
    pub async fn recheck(&self, peer: &Peer, revocations_before: u64) -> Result<(), CloseReason> {
        if let Some(message) = self.address_ban(peer.addr) {
            let code = code_for_version(ErrorCode::Banned, peer.version);
            return Err(CloseReason::error(code, message));
        }
        if self.enforcement.revocations() == revocations_before {
            return Ok(());
        }
        match self
            .store
            .session_user(&peer.token, unix_ms(SystemTime::now()))
            .await
        {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(CloseReason::error(
                ErrorCode::Unauthorized,
                "the session was revoked",
            )),
            Err(e) => {
                tracing::error!("session lookup failed: {e}");
                Err(CloseReason::error(
                    ErrorCode::Internal,
                    "cannot check the token now",
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_why_and_until_when() {
        let rule = IpBanRule {
            network: "192.0.2.0/24".parse().unwrap(),
            reason: "spam".into(),
            until_ms: None,
        };
        assert_eq!(rule.message(), "this address is banned: spam");
        let until = IpBanRule {
            until_ms: Some(1_796_119_200_000),
            ..rule
        };
        assert_eq!(
            until.message(),
            "this address is banned until 2026-12-01T10:00:00Z: spam"
        );
    }

    fn rule(network: &str, until_ms: Option<u64>) -> IpBanRule {
        IpBanRule {
            network: network.parse().unwrap(),
            reason: network.into(),
            until_ms,
        }
    }

    #[test]
    fn a_rule_bans_its_network_until_it_ends_v4_and_v6() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let rules = [
            rule("127.0.0.0/8", Some(2_000)),
            rule("::1/128", None),
            rule("2001:db8:1::/48", None),
            rule("192.0.2.7/32", None),
        ];
        let ban = |s: &str, now| access::address_ban(&rules, ip(s), now);
        assert_eq!(ban("127.0.0.1", 1_999), Some(0));
        assert_eq!(ban("127.255.1.2", 0), Some(0));
        // Expired rules stop matching by time, with no sweep.
        assert_eq!(ban("127.0.0.1", 2_000), None);
        // A dual-stack socket's view of an IPv4 peer is that peer.
        assert_eq!(ban("::ffff:127.0.0.1", 1_000), Some(0));
        assert_eq!(ban("::ffff:192.0.2.7", 1_000), Some(3));
        assert_eq!(ban("192.0.2.8", 1_000), None);
        assert_eq!(ban("::1", u64::MAX), Some(1));
        assert_eq!(ban("::2", 0), None);
        assert_eq!(ban("2001:db8:1:ffff::9", 0), Some(2));
        assert_eq!(ban("2001:db8:2::1", 0), None);
        assert_eq!(access::address_ban(&[], ip("127.0.0.1"), 0), None);
    }

    #[test]
    fn banned_is_unauthorized_for_clients_before_moderation() {
        assert_eq!(
            code_for_version(ErrorCode::Banned, MODERATION_VERSION),
            ErrorCode::Banned
        );
        assert_eq!(
            code_for_version(ErrorCode::Banned, MODERATION_VERSION - 1),
            ErrorCode::Unauthorized
        );
        assert_eq!(
            code_for_version(ErrorCode::Unauthorized, 1),
            ErrorCode::Unauthorized
        );
    }
}
