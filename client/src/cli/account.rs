//! Getting from the command line to a logged-in session: credentials, login and logout, room
//! lookup by name, and the realtime connection options.

use anyhow::{Context, anyhow, bail};
use quibble_client::{Api, Client, ClientOptions, Dm, Login, Room, TlsRoots};

use super::args::Cli;
use super::format::find_room;

/// A logged-in user of one server.
pub struct Session {
    pub api: Api,
    pub login: Login,
}

/// `--user` and `--password`, both required for scripted commands.
pub fn credentials(cli: &Cli) -> anyhow::Result<(String, String)> {
    let user = cli
        .user
        .clone()
        .ok_or_else(|| anyhow!("--user is required"))?;
    let password = cli
        .password
        .clone()
        .ok_or_else(|| anyhow!("--password (or QUIBBLE_PASSWORD) is required"))?;
    Ok((user, password))
}

/// The REST client for `--server`, trusting the system's roots and `--ca-cert`.
pub fn api(cli: &Cli) -> anyhow::Result<Api> {
    let tls = TlsRoots::from_option(cli.ca_cert.as_deref())?;
    Ok(Api::with_tls(&cli.server, tls)?)
}

impl Session {
    pub async fn login(api: Api, user: &str, password: &str) -> anyhow::Result<Session> {
        let login = api.login(user, password).await.context("login failed")?;
        Ok(Session { api, login })
    }

    pub fn token(&self) -> &str {
        &self.login.token
    }

    pub async fn rooms(&self) -> anyhow::Result<Vec<Room>> {
        self.api
            .rooms(self.token())
            .await
            .context("cannot list the rooms")
    }

    /// The room called `name` (case-insensitive).
    pub async fn room(&self, name: &str) -> anyhow::Result<Room> {
        let rooms = self.rooms().await?;
        match find_room(&rooms, name) {
            Some(room) => Ok(room.clone()),
            None => bail!("unknown room {name:?}"),
        }
    }

    pub async fn create_room(&self, name: &str) -> anyhow::Result<Room> {
        self.api
            .create_room(self.token(), name)
            .await
            .with_context(|| format!("cannot create room {name:?}"))
    }

    /// The DM with `user` (a friend, or a former one).
    pub async fn dm(&self, user: &str) -> anyhow::Result<Dm> {
        self.api
            .dm(self.token(), user)
            .await
            .with_context(|| format!("no DM with {user:?}"))
    }

    /// Open the realtime connection, trusting what the REST client trusts.
    pub async fn connect(&self, cli: &Cli) -> anyhow::Result<Client> {
        let options = ClientOptions::new(cli.server.clone(), self.token())
            .transport(cli.transport)
            .api(self.api.clone());
        Client::connect(options)
            .await
            .context("cannot open the realtime connection")
    }

    /// Revoke the token (best effort: it expires anyway).
    pub async fn logout(self) {
        if let Err(e) = self.api.logout(&self.login.token).await {
            tracing::debug!("logout failed: {e}");
        }
    }
}
