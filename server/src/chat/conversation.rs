//! One conversation stream: `Join` (replaying history or the missed range), then live
//! messages, sends made durable before they are acknowledged, and history pages.
//!
//! Access: `Join` asks [`access::join_view`] (the rule of [`access::may_read`], in the same
//! store read as the head and the first replay batch: a DM's stream is its two members' only)
//! and the resulting [`Grant`] is what replay and history pages are served under; every `Send` asks
//! [`access::may_send`] (a DM needs the friendship to stand at that moment). Joining a room's
//! stream makes the user a member of the room, durably, if they were not one yet (within the
//! per-user join quota).
//!
//! Blocks: replay batches and history pages carry hidden markers in place of the messages of
//! users the reader blocks ([`access::shown`], with the reader's blocked set as it is when the
//! batch is sent); live messages are filtered the same way by the hub.
//!
//! Pacing: replay batches and history pages are read from the store only once the stream's
//! outbound queue has room reserved for them, and one request is served at a time, so a peer
//! that does not read gets nothing more read for it. Live messages are pushed by the hub; a
//! stream it cuts for lagging ends here quietly (the hub queued its `Lagged`).
//!
//! Overload: a send into a conversation whose readers are mostly behind, or that has its whole
//! in-flight budget on the way to the store, is refused with `RateLimited` and a hint
//! ([`crate::chat::congestion`]), before the per-user limit is asked, and the stream's later
//! sends are held behind it like after a per-user refusal ([`SendOrder`]), so the resends keep
//! their order.
//!
//! Deletions: replay and history pages carry tombstones as stored. A connection of version 3 on
//! also gets `Deleted` frames: live from the hub, and after a resumed join's replay, one for each
//! deletion at or before the resume point among its [`RESUME_DELETIONS_WINDOW`] seqs (at most
//! [`RESUME_DELETIONS_MAX`], the nearest), so a client that was away drops the text it holds.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use quibble_protocol::limits::{MAX_BODY_LEN, MAX_HISTORY_PAGE};
use quibble_protocol::{
    ChatMessage, ClientFrame, ConversationId, Cursor, EVENTS_VERSION, ErrorCode,
    MODERATION_VERSION, ServerFrame,
};
use tokio::time::{Instant, timeout};

use crate::access::{self, Grant};
use crate::chat::congestion::{Admitted, Congestion};
use crate::chat::connection::frame_name;
use crate::chat::hub::{NotLive, Subscription};
use crate::chat::send_order::{SendOrder, held_back_reason};
use crate::chat::stream::{Inbound, StreamIo, decode_error_code, encode_frame};
use crate::fleet::control::Control;
use crate::state::AppState;
use crate::store::{Appended, ConversationKind, StoreError, User};

/// Messages sent on a plain join (no resume point).
const RECENT_PAGE: u64 = 50;
/// Most bytes the `Joined` frame counts for in the queue: the frame (length, tag, four
/// varints) rounded up, and the queue's per-frame overhead.
const JOINED_FRAME_MAX: usize = 64 + crate::chat::outbound::FRAME_OVERHEAD;
/// Messages read from the store per replay batch.
const REPLAY_BATCH: usize = 32;
/// Most bytes one stored message takes as a `Message` frame (or inside a history page): the
/// body, the author's name (at most 32 characters) and the numbers, rounded up.
const MESSAGE_FRAME_MAX: usize = MAX_BODY_LEN + 256;
/// How far back from a resume point a resumed join looks for deletions: the seqs a client
/// that resumes is likely to hold (it shows recent pages; older ones it pages again, as
/// tombstones).
pub const RESUME_DELETIONS_WINDOW: u64 = 1000;
/// Most `Deleted` frames after a resumed join's replay.
pub const RESUME_DELETIONS_MAX: usize = 256;
/// Most bytes one `Deleted` frame counts for in the queue: the frame (length, tag, two varints)
/// rounded up, and the queue's per-frame overhead.
const DELETED_FRAME_MAX: usize = 32 + crate::chat::outbound::FRAME_OVERHEAD;

/// What every stream of a connection shares.
pub struct ConnCtx {
    pub state: AppState,
    pub user: User,
    /// The protocol version the connection speaks.
    pub version: u16,
}

/// How a stream ends, other than the peer finishing it.
enum End {
    /// The peer finished or left; nothing to say.
    Quiet,
    /// Tell the peer why, then close.
    Error(ErrorCode, String),
}

impl From<access::Refusal> for End {
    fn from(refusal: access::Refusal) -> Self {
        match refusal {
            access::Refusal::Store(e) => e.into(),
            other => End::Error(other.code(), other.to_string()),
        }
    }
}

impl From<StoreError> for End {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => End::Error(
                ErrorCode::UnknownConversation,
                "no such conversation".into(),
            ),
            other => {
                tracing::error!("store error on a conversation stream: {other}");
                End::Error(ErrorCode::Internal, "storage failure; retry".into())
            }
        }
    }
}

type PendingAppend = Pin<Box<dyn Future<Output = (u64, Result<Appended, StoreError>)> + Send>>;

/// Serve the stream until it ends; dropping the stream (or `io`) closes it.
pub fn serve(ctx: Arc<ConnCtx>, io: StreamIo) -> ConversationStream {
    ConversationStream::Stepping(Box::pin(joining(ctx, io)))
}

/// A conversation stream as its connection drives it. Between frames it is only its state
/// ([`Serving`], a few words), polled in place for what comes next; what it then does (the
/// join, a frame, an acknowledgement) is a boxed future that owns the state while it runs and
/// gives it back. So an idle stream holds no future (its await points, their locals) and a
/// busy one only the step at hand, and steps stay in order: the next frame is read only once
/// the step before it is done.
pub enum ConversationStream {
    /// Waiting for the stream's next event.
    Waiting(Serving),
    /// Running a step; `None` when the stream ended in it.
    Stepping(Step),
    /// Over.
    Done,
}

/// A step of a stream, owning its state until it gives it back.
type Step = Pin<Box<dyn Future<Output = Option<Serving>> + Send>>;

/// A joined stream between steps.
pub struct Serving {
    ctx: Arc<ConnCtx>,
    io: StreamIo,
    /// The stream's place in the conversation's fan-out, held while it is served (dropping it
    /// unsubscribes).
    _subscription: Subscription,
    joined: Joined,
}

/// What a waiting stream does next.
enum Next {
    /// The stream ends (the peer finished it, or it was cut: nothing more to say).
    End,
    /// The stream ends with an error the peer is told.
    Fail(End),
    /// The oldest send in flight committed: acknowledge it.
    Committed(u64, Result<Appended, StoreError>),
    /// A frame to handle.
    Frame(ClientFrame),
}

impl Future for ConversationStream {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        loop {
            match this {
                ConversationStream::Stepping(step) => match step.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(serving)) => *this = ConversationStream::Waiting(serving),
                    Poll::Ready(None) => *this = ConversationStream::Done,
                },
                ConversationStream::Waiting(serving) => {
                    let Poll::Ready(next) = serving.poll_next(cx) else {
                        return Poll::Pending;
                    };
                    let ConversationStream::Waiting(serving) =
                        std::mem::replace(this, ConversationStream::Done)
                    else {
                        return Poll::Ready(());
                    };
                    match next {
                        Next::End => {}
                        Next::Fail(end) => finish(&serving.io, end),
                        Next::Committed(client_id, result) => {
                            *this = ConversationStream::Stepping(Box::pin(
                                serving.acknowledge(client_id, result),
                            ));
                        }
                        Next::Frame(frame) => {
                            *this = ConversationStream::Stepping(Box::pin(serving.on_frame(frame)));
                        }
                    }
                }
                ConversationStream::Done => return Poll::Ready(()),
            }
        }
    }
}

impl Serving {
    /// The stream's next event, the urgent first: its end (cut by the hub for lagging, its
    /// `Lagged` queued; or the connection is gone), a commit to acknowledge, then the next
    /// frame, read only while fewer than `max_inflight_sends` are in flight.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Next> {
        if self.io.outbound.poll_closed(cx).is_ready() {
            return Poll::Ready(Next::End);
        }
        let inflight = &mut self.joined.inflight;
        if let Some(commit) = inflight.front_mut()
            && let Poll::Ready((client_id, result)) = commit.as_mut().poll(cx)
        {
            inflight.pop_front();
            return Poll::Ready(Next::Committed(client_id, result));
        }
        if inflight.len() >= self.ctx.state.limits.max_inflight_sends {
            return Poll::Pending;
        }
        self.io.inbound.poll_recv(cx).map(|frame| match frame {
            None => Next::End,
            Some(Inbound::Invalid(e)) => {
                Next::Fail(End::Error(decode_error_code(&e), e.to_string()))
            }
            Some(Inbound::Frame(frame)) => Next::Frame(frame),
        })
    }

    /// Answer a committed send; the state back unless the stream ended.
    async fn acknowledge(
        self,
        client_id: u64,
        result: Result<Appended, StoreError>,
    ) -> Option<Serving> {
        let done = acknowledge(&self.io, client_id, result).await;
        self.after(done.map(|()| Flow::Continue))
    }

    /// Handle one frame; the state back unless the stream ended.
    async fn on_frame(mut self, frame: ClientFrame) -> Option<Serving> {
        let flow = on_frame(&self.ctx, &mut self.io, &mut self.joined, frame).await;
        self.after(flow)
    }

    /// The state after a step, or the stream's end (the peer told why, if it is an error).
    fn after(self, flow: Result<Flow, End>) -> Option<Serving> {
        match flow {
            Ok(Flow::Continue) => Some(self),
            Ok(Flow::Done) => None,
            Err(end) => {
                finish(&self.io, end);
                None
            }
        }
    }
}

/// Tell the peer why its stream ends, if it is an error.
fn finish(io: &StreamIo, end: End) {
    if let End::Error(code, reason) = end {
        crate::metrics::stream_error(code);
        // The last frame of a stream always has room (see `outbound`).
        io.outbound
            .send_last(encode_frame(&ServerFrame::Error { code, reason }));
    }
}

/// The first step: `Join`, and the replay; the serving state once live.
async fn joining(ctx: Arc<ConnCtx>, mut io: StreamIo) -> Option<Serving> {
    match join(&ctx, &mut io).await {
        Ok(Some((grant, live))) => {
            let congestion = live.congestion();
            Some(Serving {
                ctx,
                io,
                _subscription: live,
                joined: Joined {
                    grant,
                    inflight: VecDeque::new(),
                    order: SendOrder::default(),
                    congestion,
                },
            })
        }
        Ok(None) => None,
        Err(end) => {
            finish(&io, end);
            None
        }
    }
}

/// `Join`: hold room for `Joined` and a replay batch, subscribe (replaying: the hub sends
/// nothing yet), check access and read in one store read, answer `Joined` and replay what the
/// peer misses. Returns
/// the grant and the live subscription (which must be kept), or `None` when the stream was cut
/// while replaying.
async fn join(ctx: &ConnCtx, io: &mut StreamIo) -> Result<Option<(Grant, Subscription)>, End> {
    let state = &ctx.state;
    let (conversation, resume) = expect_join(state, io).await?;
    // Room for `Joined` and the first replay batch, held before the store is read (pacing:
    // see the module doc), and before subscribing, so a peer that reads nothing holds no hub
    // entry while it waits.
    let room = io
        .outbound
        .reserve(JOINED_FRAME_MAX + REPLAY_BATCH * MESSAGE_FRAME_MAX)
        .await
        .map_err(|_| End::Quiet)?;
    // Subscribe before reading the head, so nothing committed in between is missed. A
    // subscriber gets nothing from the hub before it goes live, so a refused join (dropping
    // the subscription) has seen nothing.
    let deletions = ctx.version >= MODERATION_VERSION;
    let live = state
        .hub
        .subscribe(conversation, ctx.user.id, io.outbound.live(), ctx.version);
    let epoch = state.store.epoch();
    let resume_seq = match resume {
        Some(Cursor { epoch: e, seq }) if e == epoch => Some(seq),
        _ => None,
    };
    let start = move |head: u64| match resume_seq {
        Some(seq) => seq.min(head),
        None => head.saturating_sub(RECENT_PAGE),
    };
    // Access, membership, head and the first batch: one store read, on this task for a plain
    // join (its batch is the last messages; see `store::setup_views`).
    let recent = resume_seq.is_none();
    let view = access::join_view(
        &state.store,
        ctx.user.id,
        conversation,
        start,
        recent,
        REPLAY_BATCH,
    )
    .await?;
    let grant = view.grant;
    // Recorded within the join quota; past it (or at the membership cap) the user still
    // reads the public room, without becoming a member.
    if grant.kind == ConversationKind::Room
        && !view.member
        && state.join_limiter.check(ctx.user.id).is_ok()
    {
        match state.store.join_room(ctx.user.id, conversation).await {
            Ok(true) => {
                state.tell_fleet(Control::Joined {
                    user: ctx.user.id,
                    conversation,
                });
                state
                    .users
                    .joined(&state.store, ctx.user.id, conversation)
                    .await;
            }
            Ok(false) | Err(StoreError::TooMany(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let from_seq = view.from_seq;
    let joined = ServerFrame::Joined {
        conversation,
        epoch,
        head_seq: view.head,
        from_seq,
    };
    let full = view.batch.len() == REPLAY_BATCH;
    let mut last_sent = view.batch.last().map_or(from_seq, |m| m.seq);
    // What the viewer blocks now (updated live), as of this batch.
    let blocked = state.users.blocked_by(grant.user);
    crate::metrics::hot()
        .messages_out
        .increment(view.batch.len() as u64);
    room.send(
        std::iter::once(encode_frame(&joined)).chain(
            view.batch.into_iter().map(|message| {
                encode_frame(&ServerFrame::Message(access::shown(&blocked, message)))
            }),
        ),
    );
    if full {
        last_sent = replay(ctx, io, &grant, last_sent).await?;
    }
    if resume_seq.is_some() && deletions {
        // Read after subscribing: a deletion committed since comes from the hub instead.
        recent_deletions(ctx, io, conversation, from_seq).await?;
    }
    loop {
        match live.go_live(last_sent) {
            Ok(()) => return Ok(Some((grant, live))),
            Err(NotLive::Behind) => {}
            Err(NotLive::Gone) => return Ok(None),
        }
        last_sent = replay(ctx, io, &grant, last_sent).await?;
    }
}

/// `Deleted` for the recent deletions at or before a resume point (see the module doc).
async fn recent_deletions(
    ctx: &ConnCtx,
    io: &StreamIo,
    conversation: ConversationId,
    resume_seq: u64,
) -> Result<(), End> {
    let room = io
        .outbound
        .reserve(RESUME_DELETIONS_MAX * DELETED_FRAME_MAX)
        .await
        .map_err(|_| End::Quiet)?;
    let seqs = ctx
        .state
        .store
        .deletions_up_to(
            conversation,
            resume_seq,
            RESUME_DELETIONS_WINDOW,
            RESUME_DELETIONS_MAX,
        )
        .await?;
    room.send(
        seqs.into_iter()
            .map(|seq| encode_frame(&ServerFrame::Deleted { conversation, seq })),
    );
    Ok(())
}

/// A joined stream's state between frames.
struct Joined {
    /// What the stream was opened under: the conversation, and proof the user may read it.
    grant: Grant,
    /// Sends queued with the store, in the order they were queued (which is the order they
    /// commit in), acknowledged in that order.
    inflight: VecDeque<PendingAppend>,
    /// Sends after a rate-limited one wait for it (see `send_order`).
    order: SendOrder,
    /// Whether the conversation refuses sends now (its readers are behind).
    congestion: Arc<Congestion>,
}

/// Whether a stream goes on after a frame.
enum Flow {
    Continue,
    Done,
}

/// Handle one frame on a joined stream.
async fn on_frame(
    ctx: &ConnCtx,
    io: &mut StreamIo,
    joined: &mut Joined,
    frame: ClientFrame,
) -> Result<Flow, End> {
    let state = &ctx.state;
    let conversation = joined.grant.conversation;
    match frame {
        ClientFrame::Send { client_id, body } => {
            crate::metrics::hot().messages_in.increment(1);
            let now = Instant::now();
            // Asked first, so a refused send that comes back ends the hold even when it is
            // then refused for another reason (the client knows its fate and goes on).
            let held = joined.order.admit(client_id, now);
            let refusal = may_send(ctx, &joined.grant).await?.and_then(|()| {
                check_body(&body).map_err(|reason| (ErrorCode::InvalidInput, reason))
            });
            let order = &mut joined.order;
            let congestion = &joined.congestion;
            let refusal = refusal
                .and_then(|()| {
                    held.map_err(|wait| (ErrorCode::RateLimited, held_back_reason(wait)))
                })
                .and_then(|()| {
                    congestion.admit(body.len()).map_err(|refused| {
                        let label = refused.label();
                        metrics::counter!(crate::metrics::SENDS_CONGESTED, "reason" => label)
                            .increment(1);
                        order.refused(client_id, refused.wait(), now);
                        (ErrorCode::RateLimited, refused.to_string())
                    })
                })
                .and_then(|admitted| match state.send_limiter.check(ctx.user.id) {
                    Ok(()) => Ok(admitted),
                    Err(wait) => {
                        order.refused(client_id, wait, now);
                        Err((ErrorCode::RateLimited, state.send_limiter.reason(wait)))
                    }
                });
            match refusal {
                Ok(admitted) => {
                    let pending = append(ctx, conversation, client_id, &body, admitted).await?;
                    joined.inflight.push_back(pending);
                }
                Err((code, reason)) => {
                    send(
                        io,
                        &ServerFrame::Rejected {
                            client_id,
                            code,
                            reason,
                        },
                    )
                    .await?
                }
            }
        }
        ClientFrame::History { before_seq, limit } => {
            history(state, io, &joined.grant, before_seq, limit).await?;
        }
        ClientFrame::Leave => {
            // Acknowledge what is in flight before ending the stream.
            while let Some((client_id, result)) = next_commit(&mut joined.inflight).await {
                acknowledge(io, client_id, result).await?;
            }
            return Ok(Flow::Done);
        }
        other => {
            return Err(End::Error(
                ErrorCode::ProtocolViolation,
                format!(
                    "{} is not allowed on a conversation stream",
                    frame_name(&other)
                ),
            ));
        }
    }
    Ok(Flow::Continue)
}

/// Wait for the oldest send in flight to commit (cancel-safe: it leaves the queue only once
/// done).
async fn next_commit(
    inflight: &mut VecDeque<PendingAppend>,
) -> Option<(u64, Result<Appended, StoreError>)> {
    let done = inflight.front_mut()?.await;
    inflight.pop_front();
    Some(done)
}

/// Answer a committed send with `Sent`.
async fn acknowledge(
    io: &StreamIo,
    client_id: u64,
    result: Result<Appended, StoreError>,
) -> Result<(), End> {
    let Appended { message, .. } = result?;
    let sent = ServerFrame::Sent {
        client_id,
        seq: message.seq,
        sent_at_ms: message.sent_at_ms,
    };
    send(io, &sent).await
}

async fn expect_join(
    state: &AppState,
    io: &mut StreamIo,
) -> Result<(ConversationId, Option<Cursor>), End> {
    let first = timeout(state.limits.hello_timeout, io.inbound.recv())
        .await
        .map_err(|_| End::Error(ErrorCode::ProtocolViolation, "no Join in time".into()))?;
    match first {
        None => Err(End::Quiet),
        Some(Inbound::Invalid(e)) => Err(End::Error(decode_error_code(&e), e.to_string())),
        Some(Inbound::Frame(ClientFrame::Join {
            conversation,
            resume,
        })) => Ok((conversation, resume)),
        Some(Inbound::Frame(other)) => Err(End::Error(
            ErrorCode::ProtocolViolation,
            format!(
                "a conversation stream starts with Join, not {}",
                frame_name(&other)
            ),
        )),
    }
}

/// Send every stored message after `after`, in order, a batch at a time as the queue has
/// room for it; returns the last seq sent.
async fn replay(
    ctx: &ConnCtx,
    io: &mut StreamIo,
    grant: &Grant,
    mut after: u64,
) -> Result<u64, End> {
    let conversation = grant.conversation;
    loop {
        let room = io
            .outbound
            .reserve(REPLAY_BATCH * MESSAGE_FRAME_MAX)
            .await
            .map_err(|_| End::Quiet)?;
        let batch = ctx
            .state
            .store
            .messages_after(conversation, after, REPLAY_BATCH)
            .await?;
        let done = batch.len() < REPLAY_BATCH;
        if let Some(last) = batch.last() {
            after = last.seq;
        }
        // What the viewer blocks now (updated live), as of this batch.
        let blocked = ctx.state.users.blocked_by(grant.user);
        crate::metrics::hot()
            .messages_out
            .increment(batch.len() as u64);
        room.send(
            batch.into_iter().map(|message| {
                encode_frame(&ServerFrame::Message(access::shown(&blocked, message)))
            }),
        );
        if done {
            return Ok(after);
        }
    }
}

/// Queue the message with the store now (so one stream's messages get seqs in the order they
/// were sent) and return the wait for its commit, which gives back the send's share of the
/// conversation's in-flight budget (`admitted`) once it has been published.
async fn append(
    ctx: &ConnCtx,
    conversation: ConversationId,
    client_id: u64,
    body: &str,
    admitted: Admitted,
) -> Result<PendingAppend, End> {
    let started = std::time::Instant::now();
    let user = &ctx.user;
    let pending = ctx
        .state
        .store
        .queue_append(conversation, user.id, &user.username, client_id, body)
        .await?;
    Ok(Box::pin(async move {
        let result = pending.await;
        drop(admitted);
        if matches!(
            &result,
            Ok(Appended {
                duplicate: false,
                ..
            })
        ) {
            crate::metrics::append_latency(started.elapsed());
        }
        (client_id, result)
    }))
}

/// Answer one `History` request, reading the page only once the queue has room for it.
async fn history(
    state: &AppState,
    io: &StreamIo,
    grant: &Grant,
    before_seq: u64,
    limit: u16,
) -> Result<(), End> {
    let conversation = grant.conversation;
    let limit = limit.clamp(1, MAX_HISTORY_PAGE);
    let room = io
        .outbound
        .reserve(usize::from(limit) * MESSAGE_FRAME_MAX)
        .await
        .map_err(|_| End::Quiet)?;
    let mut messages: Vec<ChatMessage> = state
        .store
        .messages_before(conversation, before_seq, usize::from(limit))
        .await?;
    let blocked = state.users.blocked_by(grant.user);
    if !blocked.is_empty() {
        messages = messages
            .into_iter()
            .map(|message| access::shown(&blocked, message))
            .collect();
    }
    let has_more = messages.first().is_some_and(|m| m.seq > 1);
    crate::metrics::hot()
        .messages_out
        .increment(messages.len() as u64);
    room.send([encode_frame(&ServerFrame::HistoryPage {
        before_seq,
        messages,
        has_more,
    })]);
    Ok(())
}

/// Whether the grant's holder may send now: `Ok(Err(..))` refuses this send with a code,
/// `Err` ends the stream (the store failed). A version-1 connection cannot decode `NotFriends`
/// and gets `Forbidden` instead.
async fn may_send(ctx: &ConnCtx, grant: &Grant) -> Result<Result<(), (ErrorCode, String)>, End> {
    match access::may_send(&ctx.state.store, grant).await {
        Ok(()) => Ok(Ok(())),
        Err(access::Refusal::Store(e)) => Err(e.into()),
        Err(other) => {
            let code = match other.code() {
                ErrorCode::NotFriends if ctx.version < EVENTS_VERSION => ErrorCode::Forbidden,
                code => code,
            };
            Ok(Err((code, other.to_string())))
        }
    }
}

fn check_body(body: &str) -> Result<(), String> {
    if crate::text::is_blank(body) {
        Err("empty message".into())
    } else if body.contains('\0') {
        // No text column of a SQL store holds it (PostgreSQL refuses the whole statement).
        Err("a message may not contain the NUL character".into())
    } else if body.len() > MAX_BODY_LEN {
        Err(format!(
            "message is {} bytes; the limit is {MAX_BODY_LEN}",
            body.len()
        ))
    } else {
        Ok(())
    }
}

async fn send(io: &StreamIo, frame: &ServerFrame) -> Result<(), End> {
    io.outbound
        .send(encode_frame(frame))
        .await
        .map_err(|_| End::Quiet)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an idle conversation stream costs is its state: no future of its own, so that
    /// (boxed in its connection's set of streams) it stays a few words.
    #[test]
    fn an_idle_stream_is_only_its_state() {
        let size = std::mem::size_of::<ConversationStream>();
        assert_eq!(size, std::mem::size_of::<Serving>());
        assert!(
            size <= 192,
            "an idle conversation stream takes {size} bytes"
        );
    }
}
