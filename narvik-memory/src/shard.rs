//! One id shard: its records in a hash table keyed by id, a slab that names each record by a
//! slot number, and the expiry index of exactly those records, all under the shard's one lock
//! so they never disagree.
//!
//! A lookup by id reads the table and then the record's one allocation ([`Record`]): the table
//! holds the record itself (a 16-byte pointer), so there is no step in between. Everything else
//! names a record by its slot (4 bytes, 8 with the shard's number in the per-user index): the
//! expiry index and the per-user index hold slot numbers, never strings, and the slab maps a
//! slot to its id's hash, which finds the record in the table again.

use std::collections::BTreeSet;
use std::num::NonZeroU64;

use hashbrown::HashTable;
use narvik_core::{Error, Result, SessionData};

use crate::id::Id;
use crate::record::Record;
use crate::slab::Slab;

/// The hash of the id index: keyed per store, and fast on 32 bytes. Ids are made by the engine
/// from random tokens, so an attacker cannot aim them at one bucket (lookups do not insert).
pub(crate) type IdHasher = foldhash::fast::RandomState;

/// One id shard.
#[derive(Debug, Default)]
pub(crate) struct Shard {
    records: HashTable<Record>,
    /// Slot -> the hash of the id of the record in it.
    slots: Slab<NonZeroU64>,
    /// `(expires_ms, slot)` of exactly this shard's records.
    pub(crate) expiry: BTreeSet<(i64, u32)>,
    /// The data of every record saved with `null` (the data of `()`), shared, so that fetching
    /// one costs no allocation. One per shard, so that readers on different shards never share
    /// its reference count.
    null: SessionData,
}

impl Shard {
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// The record with this id (`hash` is the store's hash of `id`).
    pub(crate) fn find(&self, id: &Id<'_>, hash: NonZeroU64) -> Option<&Record> {
        self.records.find(hash.get(), |record| record.has_id(id))
    }

    /// The record with this id, to change in place (never its slot or its expiry: the
    /// indexes name it by those).
    pub(crate) fn find_mut(&mut self, id: &Id<'_>, hash: NonZeroU64) -> Option<&mut Record> {
        self.records
            .find_mut(hash.get(), |record| record.has_id(id))
    }

    /// The record in `slot`.
    pub(crate) fn get(&self, slot: u32) -> Option<&Record> {
        let hash = self.slots.get(slot)?;
        self.records
            .find(hash.get(), |record| record.slot() == slot)
    }

    /// The slot [`insert`](Self::insert) fills next, or an error when the shard is full.
    pub(crate) fn next_slot(&self) -> Result<u32> {
        self.slots.next_slot().ok_or_else(|| {
            Error::unavailable(
                "narvik-memory: a shard holds 2^31 sessions already; make the store with more \
                 shards",
            )
        })
    }

    /// Puts `record` (whose id, hashed to `hash`, is absent) into the slot `next_slot` named.
    pub(crate) fn insert(&mut self, hash: NonZeroU64, mut record: Record) -> u32 {
        let slot = self.slots.insert(hash);
        record.set_slot(slot);
        self.expiry.insert((record.expires_ms(), slot));
        let Self { records, slots, .. } = self;
        // A growing table rehashes from the slab, not from the records: no record is read.
        records.insert_unique(hash.get(), record, |record| {
            slots.get(record.slot()).map_or(0, |hash| hash.get())
        });
        slot
    }

    /// Moves the expiry of the record in `slot`, in the record and in the expiry index.
    pub(crate) fn set_expiry(&mut self, slot: u32, expires_ms: i64) {
        let Some(hash) = self.slots.get(slot).copied() else {
            return;
        };
        let Some(record) = self
            .records
            .find_mut(hash.get(), |record| record.slot() == slot)
        else {
            return;
        };
        let old = record.expires_ms();
        record.set_expires_ms(expires_ms);
        self.expiry.remove(&(old, slot));
        self.expiry.insert((expires_ms, slot));
    }

    /// Takes the record in `slot` out of the table and the slab, leaving the expiry index to
    /// the caller.
    pub(crate) fn take(&mut self, slot: u32) -> Option<Record> {
        let hash = self.slots.remove(slot)?;
        let entry = self
            .records
            .find_entry(hash.get(), |record| record.slot() == slot)
            .ok()?;
        Some(entry.remove().0)
    }

    /// Takes the record in `slot` out of the shard and every index of the shard.
    pub(crate) fn remove(&mut self, slot: u32) -> Option<Record> {
        let record = self.take(slot)?;
        self.expiry.remove(&(record.expires_ms(), slot));
        Some(record)
    }

    /// The data of `record` as a fetch returns it: `null` shared, any other text copied once
    /// into the shared text the engine decodes the application's type from.
    pub(crate) fn data(&self, record: &Record) -> SessionData {
        match record.json() {
            None => self.null.clone(),
            Some(text) => SessionData::from_json_text(text),
        }
    }

    /// Every record.
    #[cfg(test)]
    pub(crate) fn records(&self) -> impl Iterator<Item = &Record> {
        self.records.iter()
    }

    /// Checks that the slab and the expiry index name exactly the records of the table.
    #[cfg(test)]
    pub(crate) fn assert_consistent(&self, hasher: &IdHasher) {
        use crate::record::hash_id;

        self.slots.assert_consistent();
        assert_eq!(self.slots.len(), self.records.len(), "slab size");
        assert_eq!(self.expiry.len(), self.records.len(), "expiry index size");
        for record in self.records() {
            let (id, slot) = (record.id(), record.slot());
            let name = record.id_string();
            assert_eq!(
                self.slots.get(slot),
                Some(&hash_id(hasher, &id)),
                "slot of {name}"
            );
            assert_eq!(
                self.find(&id, hash_id(hasher, &id)).map(Record::slot),
                Some(slot),
                "record {name} not found by its id"
            );
            assert_eq!(self.get(slot).map(Record::id_string), Some(name.clone()));
            assert!(
                self.expiry.contains(&(record.expires_ms(), slot)),
                "record {name} missing from the expiry index"
            );
        }
    }
}
