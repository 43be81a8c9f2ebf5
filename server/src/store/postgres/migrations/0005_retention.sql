-- Version 5: per-room retention (see `store::retention`): the setting (NULL: that rule is off)
-- and the seq up to which every message has been retained away (all earlier ones are
-- tombstones), where the next sweep step starts.

ALTER TABLE conversations
    ADD COLUMN retention_max_age_ms   bigint CHECK (retention_max_age_ms > 0),
    ADD COLUMN retention_max_messages bigint CHECK (retention_max_messages > 0),
    ADD COLUMN retained_through       bigint NOT NULL DEFAULT 0;

-- The sweep walks only the rooms with retention on.
CREATE INDEX conversations_with_retention ON conversations (id)
    WHERE retention_max_age_ms IS NOT NULL OR retention_max_messages IS NOT NULL;

-- Setting a room's retention is audited.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_action_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_action_check
    CHECK (action IN ('promote', 'demote', 'ban', 'unban', 'ip_ban_add', 'ip_ban_remove',
                      'delete_message', 'set_retention'));
