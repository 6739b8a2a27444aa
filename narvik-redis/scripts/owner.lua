-- The user id of a record, without reading its data. KEYS: record.
return owner(KEYS[1])
