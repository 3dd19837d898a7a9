-- End-to-end key distribution: each device's public keys (never a private
-- one), distributed by user_id with the mailboxes. See svc-group/MODEL.md.

-- A device's long-term identity key and its current signed prekey.
CREATE TABLE device_keys (
    user_id                 TEXT   NOT NULL,
    device_id               TEXT   NOT NULL,
    identity_key            BLOB   NOT NULL,
    signed_prekey           BLOB   NOT NULL,
    signed_prekey_signature BLOB   NOT NULL,
    updated_at_ms           INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- One-time prekeys, each handed out once: a claim marks it claimed and the
-- row stays, so a retried upload of the same key id cannot put it back.
CREATE TABLE one_time_keys (
    user_id    TEXT  NOT NULL,
    device_id  TEXT  NOT NULL,
    key_id     TEXT  NOT NULL,
    public_key BLOB  NOT NULL,
    claimed    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, device_id, key_id)
);
