-- Version 2: moderation — the audit log and IP bans (user bans are in version 1, since a
-- session is only created while its user is not banned).

-- Every moderation action, never changed or removed. Ids ascend in insertion order; pages are
-- read newest first by id. The actor is kept as its id (none for the operator) and the name
-- it had then.
CREATE TABLE audit_log (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms    bigint NOT NULL,
    actor_id bigint REFERENCES users (id),
    actor    text NOT NULL,
    action   text NOT NULL CHECK (action IN ('promote', 'demote', 'ban', 'unban', 'ip_ban_add',
                                             'ip_ban_remove', 'delete_message')),
    -- A username, a network, or a message (`conversation/seq`).
    target   text NOT NULL,
    reason   text
);

-- Address and range bans, one row per canonical network text (truncated to its prefix). A ban
-- with an end stops counting once it passes; the row stays until removed or replaced. The
-- "C" collation orders them by byte, as the embedded engine lists them.
CREATE TABLE ip_bans (
    network       text COLLATE "C" PRIMARY KEY,
    reason        text NOT NULL,
    created_at_ms bigint NOT NULL,
    until_ms      bigint,
    -- Who added it: an admin's id (none for the operator) and name at the time.
    by_id         bigint,
    by_name       text NOT NULL
);
