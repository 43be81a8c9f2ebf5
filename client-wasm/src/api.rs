//! The REST API (`docs/api.md`) over `fetch`, same-origin: account and room calls exported to
//! the page, and `/api/cert` for the WebTransport leg. Failures reject with a JS `Error`
//! carrying the API's stable `code` and the HTTP `status`.

use std::future::Future;
use std::pin::Pin;

use js_sys::{Array, JSON, Promise};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{Headers, RequestInit, Response};

use crate::js::{self, Obj};

/// Create an account; resolves to `Auth` (the user and a session token).
#[wasm_bindgen(unchecked_return_type = "Auth")]
pub async fn signup(username: String, password: String) -> Result<JsValue, JsValue> {
    credentials("/api/signup", username, password).await
}

/// Log in; resolves to `Auth` (the user and a session token).
#[wasm_bindgen(unchecked_return_type = "Auth")]
pub async fn login(username: String, password: String) -> Result<JsValue, JsValue> {
    credentials("/api/login", username, password).await
}

/// Revoke `token`.
#[wasm_bindgen]
pub async fn logout(token: String) -> Result<(), JsValue> {
    request("POST", "/api/logout", Some(&token), None)
        .await
        .map(drop)
}

/// The account `token` belongs to; rejects with code `unauthorized` if the token is void.
#[wasm_bindgen(unchecked_return_type = "User")]
pub async fn account(token: String) -> Result<JsValue, JsValue> {
    request("GET", "/api/account", Some(&token), None).await
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
#[wasm_bindgen(js_name = createRoom, unchecked_return_type = "Room")]
pub async fn create_room(token: String, name: String) -> Result<JsValue, JsValue> {
    let body = Obj::new().set("name", name).build();
    request("POST", "/api/rooms", Some(&token), Some(body)).await
}

/// `GET /api/friends`: friends and pending requests both ways.
#[wasm_bindgen(unchecked_return_type = "Promise<Friends>")]
pub fn friends(token: String) -> Promise {
    promise(async move { request("GET", "/api/friends", Some(&token), None).await })
}

/// `POST /api/users/add`: ask `username` to be friends, or accept their request; resolves to
/// `{status, user}` (`requested`, `already_requested`, `accepted`, `already_friends`).
#[wasm_bindgen(js_name = addFriend, unchecked_return_type = "Promise<FriendChange>")]
pub fn add_friend(token: String, username: String) -> Promise {
    promise(by_username("/api/users/add", token, username))
}

/// `POST /api/users/remove`: decline their request, cancel yours, or unfriend; resolves to
/// `{status, user}` (`declined`, `cancelled`, `unfriended`, `nothing`).
#[wasm_bindgen(js_name = removeFriend, unchecked_return_type = "Promise<FriendChange>")]
pub fn remove_friend(token: String, username: String) -> Promise {
    promise(by_username("/api/users/remove", token, username))
}

/// `POST /api/users/dm`: the DM with `username`, `{conversation, user, can_send}`; rejects
/// with `not_friends` if the two never were friends.
#[wasm_bindgen(js_name = openDm, unchecked_return_type = "Promise<Dm>")]
pub fn open_dm(token: String, username: String) -> Promise {
    promise(by_username("/api/users/dm", token, username))
}

/// `POST /api/rooms/{id}/join`: become a member (the room enters the conversation list).
#[wasm_bindgen(js_name = joinRoom, unchecked_return_type = "Promise<Membership>")]
pub fn join_room(token: String, room: f64) -> Promise {
    promise(by_id(token, "/api/rooms/", room, "/join", "POST"))
}

/// `POST /api/rooms/{id}/leave`: stop being a member.
#[wasm_bindgen(js_name = leaveRoom, unchecked_return_type = "Promise<Membership>")]
pub fn leave_room(token: String, room: f64) -> Promise {
    promise(by_id(token, "/api/rooms/", room, "/leave", "POST"))
}

/// `GET /api/conversations/{id}/receipts`: the members' cursors, for "seen by".
#[wasm_bindgen(
    js_name = memberReceipts,
    unchecked_return_type = "Promise<{receipts: MemberReceipt[]}>"
)]
pub fn member_receipts(token: String, conversation: f64) -> Promise {
    promise(by_id(
        token,
        "/api/conversations/",
        conversation,
        "/receipts",
        "GET",
    ))
}

/// A promise of a boxed future: the social calls share one copy of the promise glue (and of
/// `by_username` / `by_id`), which keeps the wasm small.
fn promise(f: impl Future<Output = Result<JsValue, JsValue>> + 'static) -> Promise {
    let f: Pin<Box<dyn Future<Output = Result<JsValue, JsValue>>>> = Box::pin(f);
    wasm_bindgen_futures::future_to_promise(f)
}

/// `GET /api/cert`: `{sha256_hex, not_after_ms, webtransport_port}`.
pub async fn cert() -> Result<JsValue, JsValue> {
    request("GET", "/api/cert", None, None).await
}

async fn credentials(path: &str, username: String, password: String) -> Result<JsValue, JsValue> {
    let body = Obj::new()
        .set("username", username)
        .set("password", password)
        .build();
    request("POST", path, None, Some(body)).await
}

async fn by_username(path: &str, token: String, username: String) -> Result<JsValue, JsValue> {
    let body = Obj::new().set("username", username).build();
    request("POST", path, Some(&token), Some(body)).await
}

/// `METHOD {prefix}{id}{suffix}`, the id a JS number.
async fn by_id(
    token: String,
    prefix: &str,
    id: f64,
    suffix: &str,
    method: &str,
) -> Result<JsValue, JsValue> {
    let path = format!("{prefix}{}{suffix}", js::id_from_js(id)?);
    request(method, &path, Some(&token), None).await
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
