//! The WebTransport link: a session at `https://<host>:<port>/wt`, pinned to the hash from
//! `/api/cert` when the server's certificate is self-signed; one client-opened bidirectional
//! stream for control (opened first, so the server sees it first) and one per conversation.
//! Frames are length-prefixed on the streams and reassembled with `Decoder`, since the browser
//! keeps no message boundaries.

use std::collections::HashMap;

use js_sys::Uint8Array;
use js_sys::futures::spawn_local;
use quibble_protocol::mux::CONTROL_STREAM;
use quibble_protocol::session::{StreamKey, Transmit};
use quibble_protocol::{Decoder, ErrorCode, ServerFrame, codec};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{
    ReadableStreamDefaultReader, ReadableStreamReadResult, WebTransport,
    WebTransportBidirectionalStream, WebTransportHash, WebTransportOptions,
    WritableStreamDefaultWriter,
};

use crate::api;
use crate::cert_hash::parse_sha256_hex;
use crate::client::{DriverRef, Link, Transport, with_driver};
use crate::js::{self, describe};
use crate::streams::{Route, StreamTable};

/// The sending half of a stream.
enum Writer {
    /// The stream is being created: frames wait here. With `finish`, our side is to be
    /// finished as soon as it is open.
    Opening {
        queued: Vec<Vec<u8>>,
        finish: bool,
    },
    Open(WritableStreamDefaultWriter),
}

pub(crate) struct WtLink {
    driver: DriverRef,
    generation: u64,
    transport: WebTransport,
    streams: StreamTable,
    /// Our open sending sides.
    writers: HashMap<u64, Writer>,
    /// The control stream's reader, until [`WtLink::start`] hands it to its read loop.
    control_reader: Option<ReadableStreamDefaultReader>,
}

/// The WebTransport leg of connect attempt `generation`: reports to the driver whether it is
/// ready (with its control stream open) or failed.
pub(crate) async fn connect(driver: DriverRef, generation: u64, port: Option<u16>) {
    match open(&driver, generation, port).await {
        Ok(Some(link)) => {
            with_driver(&driver, |d| d.leg_ready(generation, Link::Wt(link)));
        }
        Ok(None) => {}
        Err(reason) => {
            let reason = format!("WebTransport: {reason}");
            with_driver(&driver, |d| {
                d.leg_failed(generation, Transport::WebTransport, &reason);
            });
        }
    }
}

/// Open the session and its control stream; `None` if the race ended meanwhile.
async fn open(
    driver: &DriverRef,
    generation: u64,
    port: Option<u16>,
) -> Result<Option<WtLink>, String> {
    let cert = api::cert()
        .await
        .map_err(|e| format!("no certificate info: {}", describe(&e)))?;
    let window = web_sys::window().ok_or("needs a browser window")?;
    let hostname = window.location().hostname().map_err(|e| describe(&e))?;
    let port = match port {
        Some(port) => port,
        None => js::get(&cert, "webtransport_port")
            .as_f64()
            .and_then(|p| js::id_from_js(p).ok())
            .and_then(|p| u16::try_from(p).ok())
            .ok_or("the server announced no WebTransport port")?,
    };
    let options = WebTransportOptions::new();
    // A self-signed certificate (the server publishes its expiry) is pinned by its hash; a
    // CA-issued one is verified by the browser as any other.
    if js::get(&cert, "not_after_ms").as_f64().is_some() {
        let hash = js::get(&cert, "sha256_hex")
            .as_string()
            .as_deref()
            .and_then(parse_sha256_hex)
            .ok_or("the certificate hash is malformed")?;
        let pin = WebTransportHash::new();
        pin.set_algorithm("sha-256");
        pin.set_value_u8_array(&Uint8Array::from(&hash[..]));
        options.set_server_certificate_hashes(&[pin]);
    }
    let url = format!("https://{hostname}:{port}/wt");
    let transport = WebTransport::new_with_options(&url, &options).map_err(|e| describe(&e))?;
    spawn_local(watch_closed(driver.clone(), generation, transport.clone()));
    if with_driver(driver, |d| d.wt_created(generation, &transport)) != Some(true) {
        transport.close();
        return Ok(None);
    }
    transport.ready().await.map_err(|e| describe(&e))?;
    let control = transport
        .create_bidirectional_stream()
        .await
        .map_err(|e| describe(&e))?;
    let (writer, reader) = halves(&control).map_err(|e| describe(&e))?;
    Ok(Some(WtLink {
        driver: driver.clone(),
        generation,
        transport,
        streams: StreamTable::new(),
        writers: HashMap::from([(CONTROL_STREAM, Writer::Open(writer))]),
        control_reader: Some(reader),
    }))
}

/// Report the end of the session (this also settles `closed`, so that a failed handshake
/// leaves no unhandled rejection behind).
async fn watch_closed(driver: DriverRef, generation: u64, transport: WebTransport) {
    let (reason, error) = match transport.closed().await {
        Ok(info) => {
            let text = info.get_reason().unwrap_or_default();
            // The session's close code is the protocol's error code (0: none).
            let error = info.get_close_code().and_then(ErrorCode::from_u32);
            let reason = match text.as_str() {
                "" => "WebTransport closed".to_owned(),
                text => format!("WebTransport closed: {text}"),
            };
            (reason, error.map(|code| (code, text)))
        }
        Err(e) => (format!("WebTransport: {}", describe(&e)), None),
    };
    with_driver(&driver, |d| {
        if let Some((code, text)) = error {
            d.closed_with(generation, code, text);
        }
        d.wt_closed(generation, &reason);
    });
}

fn halves(
    stream: &WebTransportBidirectionalStream,
) -> Result<(WritableStreamDefaultWriter, ReadableStreamDefaultReader), JsValue> {
    let writer = stream.writable().get_writer()?;
    let reader = ReadableStreamDefaultReader::new(&stream.readable())?;
    Ok((writer, reader))
}

impl WtLink {
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The link won its race: start reading the control stream.
    pub(crate) fn start(&mut self) {
        if let Some(reader) = self.control_reader.take() {
            spawn_local(read_loop(
                self.driver.clone(),
                self.generation,
                CONTROL_STREAM,
                reader,
            ));
        }
    }

    pub(crate) fn send(&mut self, transmit: Transmit) {
        // Only an over-long frame fails to encode, and the client refuses over-long bodies.
        let Ok(frame) = codec::encode(&transmit.frame) else {
            return;
        };
        match self.streams.route(&transmit) {
            Route::Existing(id) => match self.writers.get_mut(&id) {
                Some(Writer::Opening { queued, .. }) => queued.push(frame),
                Some(Writer::Open(writer)) => write(writer, &frame),
                None => {}
            },
            Route::Open { id, replaces } => {
                if let Some(old) = replaces {
                    self.finish(old);
                }
                self.writers.insert(
                    id,
                    Writer::Opening {
                        queued: vec![frame],
                        finish: false,
                    },
                );
                spawn_local(open_stream(
                    self.driver.clone(),
                    self.generation,
                    id,
                    self.transport.clone(),
                ));
            }
        }
    }

    /// The logical stream of stream `id`, if it is current.
    pub(crate) fn live(&self, id: u64) -> Option<StreamKey> {
        self.streams.live(id)
    }

    /// Stream `id` is created: flush what waited for it. Returns whether to read it.
    pub(crate) fn opened(&mut self, id: u64, writer: WritableStreamDefaultWriter) -> bool {
        match self.writers.remove(&id) {
            Some(Writer::Opening { queued, finish }) => {
                for frame in &queued {
                    write(&writer, frame);
                }
                if finish {
                    settle(writer.close());
                } else {
                    self.writers.insert(id, Writer::Open(writer));
                }
                true
            }
            // Given up while it was being created.
            _ => {
                settle(writer.abort());
                false
            }
        }
    }

    /// Stream `id` is over (the server ended it, or `abort`: we give it up); our side is
    /// finished (or aborted) too. Returns the logical stream the session must hear of.
    pub(crate) fn end(&mut self, id: u64, abort: bool) -> Option<StreamKey> {
        if let Some(Writer::Open(writer)) = self.writers.remove(&id) {
            settle(if abort {
                writer.abort()
            } else {
                writer.close()
            });
        }
        self.streams.end(id)
    }

    /// Finish our side of stream `id` (its conversation moved to a new stream).
    fn finish(&mut self, id: u64) {
        match self.writers.get_mut(&id) {
            Some(Writer::Opening { finish, .. }) => *finish = true,
            Some(Writer::Open(_)) => {
                if let Some(Writer::Open(writer)) = self.writers.remove(&id) {
                    settle(writer.close());
                }
            }
            None => {}
        }
    }
}

impl Drop for WtLink {
    fn drop(&mut self) {
        self.transport.close();
    }
}

/// Create conversation stream `id`, then read it until it ends.
async fn open_stream(driver: DriverRef, generation: u64, id: u64, transport: WebTransport) {
    let halves = match transport.create_bidirectional_stream().await {
        Ok(stream) => halves(&stream),
        Err(e) => Err(e),
    };
    match halves {
        Ok((writer, reader)) => {
            if with_driver(&driver, |d| d.wt_stream_opened(generation, id, writer)) == Some(true) {
                read_loop(driver, generation, id, reader).await;
            } else {
                settle(reader.cancel());
            }
        }
        // A transport that cannot open streams is no use.
        Err(e) => {
            let reason = format!("WebTransport: cannot open a stream: {}", describe(&e));
            with_driver(&driver, |d| d.wt_closed(generation, &reason));
        }
    }
}

/// Read stream `id`, reassembling frames, until it ends or the driver no longer wants it.
async fn read_loop(
    driver: DriverRef,
    generation: u64,
    id: u64,
    reader: ReadableStreamDefaultReader,
) {
    let mut decoder = Decoder::new();
    loop {
        let chunk = match reader.read().await {
            Ok(result) => {
                let result: ReadableStreamReadResult = result.unchecked_into();
                if result.get_done() == Some(true) {
                    None
                } else {
                    Some(result.get_value())
                }
            }
            // Reset by the server, or the whole session is gone.
            Err(_) => None,
        };
        let Some(chunk) = chunk else {
            with_driver(&driver, |d| d.wt_stream_end(generation, id));
            return;
        };
        let mut frames = Vec::new();
        let malformed = match chunk.dyn_ref::<Uint8Array>() {
            Some(bytes) => {
                decoder.push(&bytes.to_vec());
                loop {
                    match decoder.next_frame::<ServerFrame>() {
                        Ok(Some(frame)) => frames.push(frame),
                        Ok(None) => break false,
                        Err(_) => break true,
                    }
                }
            }
            None => true,
        };
        let keep = with_driver(&driver, |d| d.wt_frames(generation, id, frames, malformed));
        if keep != Some(true) {
            settle(reader.cancel());
            return;
        }
    }
}

/// Wait for a promise whose outcome does not matter (so that it is never an unhandled
/// rejection).
fn settle(promise: js_sys::Promise) {
    spawn_local(async move {
        let _ = promise.await;
    });
}

/// Write one frame; a failure surfaces as the stream or session ending.
fn write(writer: &WritableStreamDefaultWriter, frame: &[u8]) {
    settle(writer.write_with_chunk(&Uint8Array::from(frame).into()));
}
