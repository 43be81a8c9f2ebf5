-- Version 1: the store's core — the epoch, accounts and sessions, conversations (rooms and
-- DMs share one id space and one head), membership, and message history.
--
-- Ids, seqs and timestamps are u64 in the server and bigint here (they stay far below 2^63);
-- a client id is any u64 the client chose, stored bit for bit in a bigint.

CREATE TABLE meta (
    key   text PRIMARY KEY,
    value bigint NOT NULL
);

CREATE TABLE users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      text NOT NULL,
    -- The case-folded name: usernames are unique case-insensitively.
    username_key  text NOT NULL UNIQUE,
    password_phc  text NOT NULL,
    role          text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    created_at_ms bigint NOT NULL
);
CREATE INDEX users_admins ON users (id) WHERE role = 'admin';

-- Session tokens, by hash only.
CREATE TABLE sessions (
    token         bytea PRIMARY KEY CHECK (length(token) = 32),
    user_id       bigint NOT NULL REFERENCES users (id),
    expires_at_ms bigint NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id);

-- A conversation is a room (name set) or a DM (its two users set, lower id first).
CREATE TABLE conversations (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The highest seq appended; the row is locked by every append (seqs stay gap-free).
    head          bigint NOT NULL DEFAULT 0,
    -- The latest message time, so times never go back within a conversation across nodes.
    last_at_ms    bigint NOT NULL DEFAULT 0,
    created_at_ms bigint NOT NULL,
    name          text,
    -- The look-alike key of the name: room names are unique by it.
    name_key      text UNIQUE,
    created_by    bigint REFERENCES users (id),
    dm_low        bigint REFERENCES users (id),
    dm_high       bigint REFERENCES users (id),
    UNIQUE (dm_low, dm_high),
    CHECK ((name IS NOT NULL AND name_key IS NOT NULL AND dm_low IS NULL AND dm_high IS NULL)
        OR (name IS NULL AND name_key IS NULL AND dm_low < dm_high))
);

CREATE TABLE members (
    user_id         bigint NOT NULL REFERENCES users (id),
    conversation_id bigint NOT NULL REFERENCES conversations (id),
    joined_at_ms    bigint NOT NULL,
    PRIMARY KEY (user_id, conversation_id)
);
CREATE INDEX members_by_conversation ON members (conversation_id, user_id);

-- History. A deleted message keeps its row as a tombstone (body erased, deleted_at_ms set),
-- so seqs stay contiguous; its client id stays, so a resend is still answered with it.
CREATE TABLE messages (
    conversation_id bigint NOT NULL REFERENCES conversations (id),
    seq             bigint NOT NULL,
    author          bigint NOT NULL REFERENCES users (id),
    author_name     text NOT NULL,
    client_id       bigint NOT NULL,
    sent_at_ms      bigint NOT NULL,
    body            text NOT NULL,
    deleted_at_ms   bigint,
    PRIMARY KEY (conversation_id, seq),
    UNIQUE (conversation_id, author, client_id)
);

-- A user's ban (one row per banned user; a ban with an end stops counting once it passes).
-- In the core because a session is only created while its user is not banned.
CREATE TABLE bans (
    user_id       bigint PRIMARY KEY REFERENCES users (id),
    reason        text NOT NULL,
    created_at_ms bigint NOT NULL,
    until_ms      bigint,
    -- Who banned: an admin's id (none for the operator) and name at the time.
    by_id         bigint,
    by_name       text NOT NULL
);
