-- Version 4: the number of IP ban rows, kept in `meta` by a trigger, so the cap on IP bans is
-- checked without counting the table (adding 10,000 bans one by one walked it 10,000 times).

INSERT INTO meta (key, value) SELECT 'ip_bans', count(*) FROM ip_bans
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;

CREATE FUNCTION quibble_count_ip_bans() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE meta SET value = value + 1 WHERE key = 'ip_bans';
    ELSE
        UPDATE meta SET value = value - 1 WHERE key = 'ip_bans';
    END IF;
    RETURN NULL;
END
$$;

-- An upsert that replaces a ban fires the UPDATE path, not INSERT: the count stays.
CREATE TRIGGER ip_bans_count AFTER INSERT OR DELETE ON ip_bans
    FOR EACH ROW EXECUTE FUNCTION quibble_count_ip_bans();
