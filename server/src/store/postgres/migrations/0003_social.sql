-- Version 3: the social graph and receipts — friendships and requests (stored both ways),
-- blocks, read and delivered cursors, and "last seen".

-- How `user_id` stands with `other_id`: 0 friends, 1 asked them (outgoing), 2 was asked
-- (incoming). Always written both ways in one transaction.
CREATE TABLE friends (
    user_id  bigint NOT NULL REFERENCES users (id),
    other_id bigint NOT NULL REFERENCES users (id),
    state    smallint NOT NULL CHECK (state IN (0, 1, 2)),
    PRIMARY KEY (user_id, other_id)
);

CREATE TABLE blocks (
    blocker  bigint NOT NULL REFERENCES users (id),
    blocked  bigint NOT NULL REFERENCES users (id),
    since_ms bigint NOT NULL,
    PRIMARY KEY (blocker, blocked)
);

-- Receipt cursors: both only move forwards (every write takes the greater value).
CREATE TABLE cursors (
    user_id         bigint NOT NULL REFERENCES users (id),
    conversation_id bigint NOT NULL REFERENCES conversations (id),
    delivered       bigint NOT NULL,
    read            bigint NOT NULL,
    PRIMARY KEY (user_id, conversation_id)
);

CREATE TABLE last_seen (
    user_id bigint PRIMARY KEY REFERENCES users (id),
    at_ms   bigint NOT NULL
);
