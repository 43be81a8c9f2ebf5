//! `AppState`: the one handle every handler and transport shares — store, fan-out hubs,
//! certificates, limits, connection admission and the shutdown signal.

use std::sync::Arc;

use tokio::sync::watch;

use crate::admission::Admission;
use crate::auth::HashPool;
use crate::chat::hub::Hub;
use crate::chat::send_limit::SendLimiter;
use crate::chat::typing::Typing;
use crate::chat::users::Users;
use crate::client_addr::TrustedProxies;
use crate::config::Limits;
use crate::enforce::Enforcement;
use crate::http::login_limit::LoginLimiter;
use crate::http::signup_limit::SignupLimiter;
use crate::http::user_limit::UserLimiter;
use crate::store::Store;
use crate::tls::Certificates;

/// The shared state, behind one `Arc`: a clone is one reference count, and every connection,
/// stream and handler that keeps one holds a pointer, not a copy of every handle below (each
/// idle connection holds a few).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct Shared {
    pub store: Store,
    pub hub: Hub,
    /// Per-user events on the control stream.
    pub users: Users,
    pub typing: Arc<Typing>,
    pub certs: Arc<Certificates>,
    pub limits: Arc<Limits>,
    pub login_limiter: Arc<LoginLimiter>,
    pub signup_limiter: Arc<SignupLimiter>,
    /// Every argon2 hash and verification runs here.
    pub hash_pool: Arc<HashPool>,
    pub send_limiter: Arc<SendLimiter>,
    pub room_limiter: Arc<UserLimiter>,
    pub friend_limiter: Arc<UserLimiter>,
    pub join_limiter: Arc<UserLimiter>,
    /// The connection budgets of the public port and WebTransport; shutdown waits until every
    /// slot is back.
    pub admission: Arc<Admission>,
    /// Flips to `true` when the server starts shutting down.
    pub shutdown: watch::Receiver<bool>,
    /// The UDP port WebTransport listens on (for `/api/cert`).
    pub webtransport_port: u16,
    /// Message deletions per user (admins are not limited).
    pub delete_limiter: Arc<UserLimiter>,
    /// Live enforcement of moderation: the IP-ban list, closing connections
    /// ([`crate::enforce`]).
    pub enforcement: Enforcement,
    /// Whose `X-Forwarded-For` is believed ([`crate::client_addr`]).
    pub trusted_proxies: TrustedProxies,
    // idle (issue 9): one sweep closes silent connections, no timer per connection.
    /// The connections the heartbeat sweep watches ([`crate::chat::heartbeat`]).
    pub heartbeats: crate::chat::heartbeat::Heartbeats,
    // The fleet (issue 10).
    /// This node's side of the fleet (control events, health); `None` without `--redis`.
    pub fleet: Option<Arc<crate::fleet::Fleet>>,
    /// Set once every listener is accepting (the store is open before): `/readyz` answers
    /// 200 from then until shutdown begins.
    pub listening: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// Completes once the server starts shutting down.
    pub async fn shutting_down(&self) {
        let mut rx = self.shutdown.clone();
        // Ignore the guard: holding it across an await would make the future non-Send.
        let _ = rx.wait_for(|down| *down).await.map(|_| ());
    }
}
