//! The WebSocket link (the fallback): the session's logical streams multiplexed over one
//! socket at `/ws`, one binary message per frame wrapped with `protocol::mux`, and a finish
//! message to end a stream, either way.

use js_sys::{ArrayBuffer, Uint8Array};
use quibble_protocol::limits::MAX_FRAME_LEN;
use quibble_protocol::mux::{self, CONTROL_STREAM};
use quibble_protocol::session::{StreamKey, Transmit};
use quibble_protocol::{ErrorCode, ServerFrame, codec};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use crate::client::{DriverRef, with_driver};
use crate::js::describe;
use crate::streams::{Route, StreamTable};

/// What one received WebSocket message means for the session.
pub(crate) enum Received {
    /// A frame on the current stream of a logical stream.
    Frame(StreamKey, ServerFrame),
    /// A stream ended (the server finished it, or it carried a malformed frame); the
    /// logical stream if the session must hear of it, and why.
    Ended(Option<StreamKey>, &'static str),
}

pub(crate) struct WsLink {
    generation: u64,
    socket: WebSocket,
    streams: StreamTable,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl WsLink {
    /// Open `ws(s)://<this page's host>/ws`; the driver hears of it through its callbacks.
    pub(crate) fn open(driver: DriverRef, generation: u64) -> Result<WsLink, String> {
        let location = web_sys::window()
            .ok_or("needs a browser window")?
            .location();
        let host = location.host().map_err(|e| describe(&e))?;
        let scheme = match location.protocol().map_err(|e| describe(&e))?.as_str() {
            "https:" => "wss",
            _ => "ws",
        };
        let socket = WebSocket::new(&format!("{scheme}://{host}/ws")).map_err(|e| describe(&e))?;
        socket.set_binary_type(BinaryType::Arraybuffer);

        let d = driver.clone();
        let on_open = Closure::<dyn FnMut()>::new(move || {
            with_driver(&d, |d| d.ws_opened(generation));
        });
        let d = driver.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            // Text messages are not part of the protocol: an empty message fails to parse.
            let data = event
                .data()
                .dyn_into::<ArrayBuffer>()
                .map(|buffer| Uint8Array::new(&buffer).to_vec())
                .unwrap_or_default();
            with_driver(&d, |d| d.ws_message(generation, &data));
        });
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
            let (code, text) = (event.code(), event.reason());
            let reason = match &text {
                r if r.is_empty() => format!("WebSocket closed ({code})"),
                r => format!("WebSocket closed ({code}): {r}"),
            };
            // 4000 + n: the protocol's error code n.
            let error = code
                .checked_sub(4000)
                .and_then(|n| ErrorCode::from_u32(n.into()));
            with_driver(&driver, |d| {
                if let Some(error) = error {
                    d.closed_with(generation, error, text);
                }
                d.ws_closed(generation, &reason);
            });
        });
        socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        Ok(WsLink {
            generation,
            socket,
            streams: StreamTable::new(),
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        })
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    pub(crate) fn send(&mut self, transmit: Transmit) {
        // Only an over-long frame fails to encode, and the client refuses over-long bodies.
        let Ok(frame) = codec::encode(&transmit.frame) else {
            return;
        };
        let id = match self.streams.route(&transmit) {
            Route::Existing(id) => id,
            Route::Open { id, replaces } => {
                if let Some(old) = replaces {
                    self.write(&mux::finish(old));
                }
                id
            }
        };
        self.write(&mux::wrap(id, &frame));
    }

    /// Make sense of one received message.
    pub(crate) fn receive(&mut self, message: &[u8]) -> Option<Received> {
        let Ok((id, frame)) = mux::split(message) else {
            return Some(Received::Ended(
                Some(StreamKey::Control),
                "malformed WebSocket message",
            ));
        };
        if frame.is_empty() {
            return Some(Received::Ended(
                self.end(id),
                "the server closed the control stream",
            ));
        }
        match codec::decode_exact::<ServerFrame>(frame, MAX_FRAME_LEN) {
            Ok(frame) => self.streams.live(id).map(|key| Received::Frame(key, frame)),
            Err(_) => Some(Received::Ended(self.end(id), "malformed frame")),
        }
    }

    /// Forget stream `id`, finishing our side if it was open (the control stream ends with
    /// the socket instead).
    fn end(&mut self, id: u64) -> Option<StreamKey> {
        let closed = self.streams.end(id);
        if closed.is_some() && id != CONTROL_STREAM {
            self.write(&mux::finish(id));
        }
        closed
    }

    fn write(&self, message: &[u8]) {
        // A failed send means the socket is closing; its close event reports that.
        let _ = self.socket.send_with_u8_array(message);
    }
}

impl Drop for WsLink {
    fn drop(&mut self) {
        self.socket.set_onopen(None);
        self.socket.set_onmessage(None);
        self.socket.set_onclose(None);
        let _ = self.socket.close_with_code(1000);
    }
}
