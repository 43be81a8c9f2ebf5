//! The REST API (`docs/api.md`) over `fetch`, same-origin: account, room, friend, moderation
//! and admin calls exported to the page, and `/api/cert` for the WebTransport leg. Failures
//! reject with a JS `Error` carrying the API's stable `code` and the HTTP `status` (e.g.
//! `address_banned`, 403, from any call made from a banned address).
//!
//! The exported calls return promises built by one function ([`call`]): one future type and
//! one copy of the promise glue for all of them, which keeps the wasm small.

use std::future::Future;
use std::pin::Pin;

use js_sys::{Array, JSON, Promise};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{Headers, RequestInit, Response};

use crate::js::{self, Obj};

/// Create an account; resolves to `Auth` (the user and a session token).
#[wasm_bindgen(unchecked_return_type = "Promise<Auth>")]
pub fn signup(username: String, password: String) -> Promise {
    credentials("/api/signup", username, password)
}

/// Log in; resolves to `Auth` (the user and a session token); rejects with `banned` (the
/// message says why and until when) while the account is banned.
#[wasm_bindgen(unchecked_return_type = "Promise<Auth>")]
pub fn login(username: String, password: String) -> Promise {
    credentials("/api/login", username, password)
}

/// Revoke `token`.
#[wasm_bindgen(unchecked_return_type = "Promise<void>")]
pub fn logout(token: String) -> Promise {
    call("POST", "/api/logout".into(), Some(token), None)
}

/// The account `token` belongs to (with its `role`); rejects with code `unauthorized` if the
/// token is void.
#[wasm_bindgen(unchecked_return_type = "Promise<User>")]
pub fn account(token: String) -> Promise {
    call("GET", "/api/account".into(), Some(token), None)
}

/// One page of the room list: resolves to `{rooms: Room[], next: number | null}`, rooms in
/// ascending id (creation) order after the room id `after` (from the start when absent); pass
/// `next` as `after` for the following page (`null`: this was the last).
#[wasm_bindgen(js_name = listRooms, unchecked_return_type = "RoomPage")]
pub async fn list_rooms(token: String, after: Option<f64>) -> Result<JsValue, JsValue> {
    let path = match after {
        // Room ids are integers; JS hands them over as numbers.
        Some(after) if after.is_finite() && after >= 0.0 => {
            format!("/api/rooms?after={}", after.trunc())
        }
        _ => "/api/rooms".to_owned(),
    };
    let body = request("GET", &path, Some(&token), None).await?;
    if Array::is_array(&js::get(&body, "rooms")) {
        Ok(body)
    } else {
        Err(js::error(
            "bad_response",
            "the room list is malformed",
            None,
        ))
    }
}

/// Create a room; resolves to the new `Room`.
#[wasm_bindgen(js_name = createRoom, unchecked_return_type = "Promise<Room>")]
pub fn create_room(token: String, name: String) -> Promise {
    let body = Obj::new().set("name", name).build();
    call("POST", "/api/rooms".into(), Some(token), Some(body))
}

/// `GET /api/friends`: friends and pending requests both ways.
#[wasm_bindgen(unchecked_return_type = "Promise<Friends>")]
pub fn friends(token: String) -> Promise {
    call("GET", "/api/friends".into(), Some(token), None)
}

/// `POST /api/users/add`: ask `username` to be friends, or accept their request; resolves to
/// `{status, user}` (`requested`, `already_requested`, `accepted`, `already_friends`).
#[wasm_bindgen(js_name = addFriend, unchecked_return_type = "Promise<FriendChange>")]
pub fn add_friend(token: String, username: String) -> Promise {
    by_username("/api/users/add", token, username)
}

/// `POST /api/users/remove`: decline their request, cancel yours, or unfriend; resolves to
/// `{status, user}` (`declined`, `cancelled`, `unfriended`, `nothing`).
#[wasm_bindgen(js_name = removeFriend, unchecked_return_type = "Promise<FriendChange>")]
pub fn remove_friend(token: String, username: String) -> Promise {
    by_username("/api/users/remove", token, username)
}

/// `POST /api/users/dm`: the DM with `username`, `{conversation, user, can_send}`; rejects
/// with `not_friends` if the two never were friends, `not_allowed` if either blocks the other.
#[wasm_bindgen(js_name = openDm, unchecked_return_type = "Promise<Dm>")]
pub fn open_dm(token: String, username: String) -> Promise {
    by_username("/api/users/dm", token, username)
}

/// `POST /api/rooms/{id}/join`: become a member (the room enters the conversation list).
#[wasm_bindgen(js_name = joinRoom, unchecked_return_type = "Promise<Membership>")]
pub fn join_room(token: String, room: f64) -> Promise {
    by_ids("POST", token, &[room], |[room]| {
        format!("/api/rooms/{room}/join")
    })
}

/// `POST /api/rooms/{id}/leave`: stop being a member.
#[wasm_bindgen(js_name = leaveRoom, unchecked_return_type = "Promise<Membership>")]
pub fn leave_room(token: String, room: f64) -> Promise {
    by_ids("POST", token, &[room], |[room]| {
        format!("/api/rooms/{room}/leave")
    })
}

/// `GET /api/conversations/{id}/receipts`: the members' cursors, for "seen by".
#[wasm_bindgen(
    js_name = memberReceipts,
    unchecked_return_type = "Promise<{receipts: MemberReceipt[]}>"
)]
pub fn member_receipts(token: String, conversation: f64) -> Promise {
    by_ids("GET", token, &[conversation], |[c]| {
        format!("/api/conversations/{c}/receipts")
    })
}

/// `DELETE /api/conversations/{id}/messages/{seq}`: delete a message (one's own; any as an
/// admin); resolves to `{conversation, seq, deleted: true}`, also when it already was; rejects
/// with `forbidden` for another user's message. Everyone joined gets a `deleted` event.
#[wasm_bindgen(js_name = deleteMessage, unchecked_return_type = "Promise<Deletion>")]
pub fn delete_message(token: String, conversation: f64, seq: f64) -> Promise {
    by_ids("DELETE", token, &[conversation, seq], |[c, seq]| {
        format!("/api/conversations/{c}/messages/{seq}")
    })
}

/// `POST /api/users/block`: stop everything from `username` reaching this user (their
/// messages arrive as hidden markers); ends a friendship. Resolves to `BlockChange`.
#[wasm_bindgen(unchecked_return_type = "Promise<BlockChange>")]
pub fn block(token: String, username: String) -> Promise {
    by_username("/api/users/block", token, username)
}

/// `POST /api/users/unblock`; resolves to `BlockChange`.
#[wasm_bindgen(unchecked_return_type = "Promise<BlockChange>")]
pub fn unblock(token: String, username: String) -> Promise {
    by_username("/api/users/unblock", token, username)
}

/// `GET /api/blocks`: `{blocks: Blocked[]}`, the users this user blocks.
#[wasm_bindgen(unchecked_return_type = "Promise<{blocks: Blocked[]}>")]
pub fn blocks(token: String) -> Promise {
    call("GET", "/api/blocks".into(), Some(token), None)
}

/// `POST /api/users/ban` (admins): ban `username` for `reason` (1-500 characters), for
/// `durationSecs` or for good; their live connections close with `Banned`. Resolves to `Ban`;
/// rejects with `target_is_admin` for an admin (demote first).
#[wasm_bindgen(unchecked_return_type = "Promise<Ban>")]
pub fn ban(
    token: String,
    username: String,
    reason: String,
    #[wasm_bindgen(js_name = durationSecs)] duration_secs: Option<f64>,
) -> Promise {
    let body = with_reason(("username", username), reason, duration_secs);
    call("POST", "/api/users/ban".into(), Some(token), Some(body))
}

/// `POST /api/users/unban` (admins): resolves to `{user, changed}`.
#[wasm_bindgen(unchecked_return_type = "Promise<{user: UserRef, changed: boolean}>")]
pub fn unban(token: String, username: String) -> Promise {
    by_username("/api/users/unban", token, username)
}

/// `GET /api/admin/bans` (admins): `{bans: Ban[]}`, the active bans.
#[wasm_bindgen(unchecked_return_type = "Promise<{bans: Ban[]}>")]
pub fn bans(token: String) -> Promise {
    call("GET", "/api/admin/bans".into(), Some(token), None)
}

/// `GET /api/admin/ip-bans` (admins): `{ip_bans: IpBan[]}`.
#[wasm_bindgen(js_name = ipBans, unchecked_return_type = "Promise<{ip_bans: IpBan[]}>")]
pub fn ip_bans(token: String) -> Promise {
    call("GET", "/api/admin/ip-bans".into(), Some(token), None)
}

/// `POST /api/admin/ip-bans` (admins): ban an address or CIDR range (`network`, IPv4 or IPv6;
/// a plain address is one host) for `reason`, for `durationSecs` or for good. Resolves to
/// `IpBan`; rejects with `invalid_network`.
#[wasm_bindgen(js_name = addIpBan, unchecked_return_type = "Promise<IpBan>")]
pub fn add_ip_ban(
    token: String,
    network: String,
    reason: String,
    #[wasm_bindgen(js_name = durationSecs)] duration_secs: Option<f64>,
) -> Promise {
    let body = with_reason(("network", network), reason, duration_secs);
    call("POST", "/api/admin/ip-bans".into(), Some(token), Some(body))
}

/// `POST /api/admin/ip-bans/remove` (admins): resolves to `{network, changed}`.
#[wasm_bindgen(
    js_name = removeIpBan,
    unchecked_return_type = "Promise<{network: string, changed: boolean}>"
)]
pub fn remove_ip_ban(token: String, network: String) -> Promise {
    let body = Obj::new().set("network", network).build();
    call(
        "POST",
        "/api/admin/ip-bans/remove".into(),
        Some(token),
        Some(body),
    )
}

/// `GET /api/admin/audit` (admins): one page of the audit log, newest first,
/// `{entries: AuditEntry[], next: number | null}`; pass `next` as `before` for older entries.
#[wasm_bindgen(unchecked_return_type = "Promise<AuditPage>")]
pub fn audit(token: String, before: Option<f64>) -> Promise {
    match before {
        Some(before) => by_ids("GET", token, &[before], |[before]| {
            format!("/api/admin/audit?before={before}")
        }),
        None => call("GET", "/api/admin/audit".into(), Some(token), None),
    }
}

/// `POST /api/admin/promote` (admins): make `username` an admin; resolves to their `User`.
#[wasm_bindgen(unchecked_return_type = "Promise<User>")]
pub fn promote(token: String, username: String) -> Promise {
    by_username("/api/admin/promote", token, username)
}

/// `POST /api/admin/demote` (admins): make `username` a user again; resolves to their `User`.
#[wasm_bindgen(unchecked_return_type = "Promise<User>")]
pub fn demote(token: String, username: String) -> Promise {
    by_username("/api/admin/demote", token, username)
}

/// One API call as a promise. Every promise-returning call goes through here, so they share
/// one future type and one copy of the promise glue, which keeps the wasm small.
fn call(
    method: &'static str,
    path: String,
    token: Option<String>,
    body: Option<JsValue>,
) -> Promise {
    let f: Pin<Box<dyn Future<Output = Result<JsValue, JsValue>>>> =
        Box::pin(async move { request(method, &path, token.as_deref(), body).await });
    wasm_bindgen_futures::future_to_promise(f)
}

/// `GET /api/cert`: `{sha256_hex, not_after_ms, webtransport_port}`.
pub async fn cert() -> Result<JsValue, JsValue> {
    request("GET", "/api/cert", None, None).await
}

fn credentials(path: &str, username: String, password: String) -> Promise {
    let body = Obj::new()
        .set("username", username)
        .set("password", password)
        .build();
    call("POST", path.into(), None, Some(body))
}

/// `POST path {"username"}`.
fn by_username(path: &str, token: String, username: String) -> Promise {
    let body = Obj::new().set("username", username).build();
    call("POST", path.into(), Some(token), Some(body))
}

/// `METHOD path(ids)`, the ids JS numbers (a rejected promise if one is not an id).
fn by_ids<const N: usize>(
    method: &'static str,
    token: String,
    ids: &[f64; N],
    path: impl FnOnce([u64; N]) -> String,
) -> Promise {
    let mut checked = [0; N];
    for (id, js) in checked.iter_mut().zip(ids) {
        match js::id_from_js(*js) {
            Ok(value) => *id = value,
            Err(e) => return Promise::reject(&e.into()),
        }
    }
    call(method, path(checked), Some(token), None)
}

/// The body of a ban of a user or a network: `{<key>: value, reason, duration_secs?}` (no
/// duration: for good; the server checks both).
fn with_reason(
    (key, value): (&str, String),
    reason: String,
    duration_secs: Option<f64>,
) -> JsValue {
    let body = Obj::new().set(key, value).set("reason", reason);
    match duration_secs {
        Some(secs) => body.set("duration_secs", secs),
        None => body,
    }
    .build()
}

/// One API call: the parsed JSON body on success (`undefined` for 204).
async fn request(
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<JsValue>,
) -> Result<JsValue, JsValue> {
    let window =
        web_sys::window().ok_or_else(|| js::error("no_window", "needs a browser window", None))?;
    let init = RequestInit::new();
    init.set_method(method);
    let headers = Headers::new()?;
    headers.set("Accept", "application/json")?;
    if let Some(token) = token {
        headers.set("Authorization", &format!("Bearer {token}"))?;
    }
    if let Some(body) = body {
        headers.set("Content-Type", "application/json")?;
        init.set_body(&JSON::stringify(&body)?.into());
    }
    init.set_headers_headers(&headers);
    let response: Response = window
        .fetch_with_str_and_init(path, &init)
        .await
        .map_err(|e| js::error("network", &js::describe(&e), None))?
        .dyn_into()?;
    let status = response.status();
    if status == 204 {
        return Ok(JsValue::UNDEFINED);
    }
    let json = match response.json() {
        Ok(promise) => promise.await.ok(),
        Err(_) => None,
    };
    match json {
        Some(json) if response.ok() => Ok(json),
        Some(json) => {
            let error = js::get(&json, "error");
            let code = js::get(&error, "code")
                .as_string()
                .unwrap_or_else(|| format!("http_{status}"));
            let message = js::get(&error, "message")
                .as_string()
                .unwrap_or_else(|| response.status_text());
            Err(js::error(&code, &message, Some(status)))
        }
        None => Err(js::error(
            &format!("http_{status}"),
            &format!("HTTP {status}: the response is not JSON"),
            Some(status),
        )),
    }
}
