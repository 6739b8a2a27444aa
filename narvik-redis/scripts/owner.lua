-- Cluster: the user id of a record, without reading its data (for update_session_expiry, which
-- gets the session id alone). KEYS: record.
return owner(KEYS[1])
