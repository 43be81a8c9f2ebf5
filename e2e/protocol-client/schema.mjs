// The Quibble frame types of protocol/PROTOCOL.md (sections 5, 6 and 8), as postcard type
// descriptors: field and variant order here is wire order, copied from the document's tables.
// Nothing else: encoding and decoding are postcard.mjs's, the WebSocket envelope is mux.mjs's.

import {
  bool, enumOf, newtype, option, string, struct, u16, u32, u64, vec,
} from './postcard.mjs';

export const PROTOCOL_VERSION = 4;
export const MAX_FRAME_LEN = 262_144;
export const MAX_BODY_LEN = 4096;

export const ConversationId = newtype('ConversationId', u64);
export const UserId = newtype('UserId', u64);

export const Cursor = struct('Cursor', [['epoch', u64], ['seq', u64]]);

export const ChatMessage = struct('ChatMessage', [
  ['conversation', ConversationId], ['seq', u64], ['author', UserId], ['author_name', string],
  ['client_id', u64], ['sent_at_ms', u64], ['body', string],
]);

export const LastMessage = struct('LastMessage', [
  ['seq', u64], ['author', UserId], ['author_name', string], ['preview', string],
  ['sent_at_ms', u64],
]);

export const ConversationKind = enumOf('ConversationKind', [
  ['Room', null],
  ['Dm', [['peer', UserId]]],
]);

export const ConversationSummary = struct('ConversationSummary', [
  ['conversation', ConversationId], ['kind', ConversationKind], ['title', string],
  ['head_seq', u64], ['delivered_seq', u64], ['read_seq', u64],
  ['peer_delivered_seq', option(u64)], ['peer_read_seq', option(u64)], ['unread', u64],
  ['last', option(LastMessage)], ['activity_ms', u64],
]);

export const FriendStatus = enumOf('FriendStatus', [
  ['None', null], ['Friends', null], ['Outgoing', null], ['Incoming', null],
]);

/** Section 8: the wire index is the position; the close code is index + 1. */
export const ERROR_CODES = [
  'BadFrame', 'FrameTooLarge', 'ProtocolViolation', 'UnsupportedVersion', 'Unauthorized',
  'Forbidden', 'UnknownConversation', 'InvalidInput', 'RateLimited', 'SlowConsumer',
  'ShuttingDown', 'Internal', 'NotFriends', 'Banned',
];
export const ErrorCode = enumOf('ErrorCode', ERROR_CODES.map((name) => [name, null]));
/** The WebSocket close code of an error: 4000 + (wire index + 1). */
export const wsCloseCode = (code) => 4001 + ERROR_CODES.indexOf(code);

export const ClientFrame = enumOf('ClientFrame', [
  ['Hello', [['version', u16], ['token', string]]],
  ['Ping', [['nonce', u64]]],
  ['Join', [['conversation', ConversationId], ['resume', option(Cursor)]]],
  ['Send', [['client_id', u64], ['body', string]]],
  ['History', [['before_seq', u64], ['limit', u16]]],
  ['Leave', null],
  ['Receipt', [['conversation', ConversationId], ['delivered', u64], ['read', u64]]],
  ['Typing', [['conversation', ConversationId]]],
]);

export const ServerFrame = enumOf('ServerFrame', [
  ['Welcome', [['version', u16], ['user', UserId], ['username', string], ['epoch', u64],
    ['heartbeat_ms', u32]]],
  ['Pong', [['nonce', u64]]],
  ['Joined', [['conversation', ConversationId], ['epoch', u64], ['head_seq', u64],
    ['from_seq', u64]]],
  ['Message', ChatMessage],
  ['Sent', [['client_id', u64], ['seq', u64], ['sent_at_ms', u64]]],
  ['Rejected', [['client_id', u64], ['code', ErrorCode], ['reason', string]]],
  ['HistoryPage', [['before_seq', u64], ['messages', vec(ChatMessage)], ['has_more', bool]]],
  ['Error', [['code', ErrorCode], ['reason', string]]],
  ['GoAway', [['reconnect_after_ms', u32], ['reason', string]]],
  ['Lagged', [['resume_from', u64]]],
  ['Conversations', [['conversations', vec(ConversationSummary)], ['done', bool]]],
  ['ConversationUpdated', ConversationSummary],
  ['ConversationRemoved', [['conversation', ConversationId]]],
  ['ConversationActivity', [['conversation', ConversationId], ['last', LastMessage]]],
  ['Receipt', [['conversation', ConversationId], ['user', UserId], ['delivered', u64],
    ['read', u64]]],
  ['Friend', [['user', UserId], ['username', string], ['status', FriendStatus],
    ['dm', option(ConversationId)]]],
  ['Presence', [['user', UserId], ['username', string], ['online', bool],
    ['last_seen_ms', u64]]],
  ['Typing', [['conversation', ConversationId], ['user', UserId], ['username', string],
    ['typing', bool]]],
  ['Deleted', [['conversation', ConversationId], ['seq', u64]]],
]);
