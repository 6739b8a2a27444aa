//! A slab in fixed-size chunks: an entry never moves, so the other indexes name it by a 4-byte
//! slot number, and growth adds one chunk instead of reallocating (and copying, and leaving
//! behind as a hole) one ever larger block.

/// Entries per chunk. The first chunk grows from small to this size, so a store with a handful
/// of sessions per shard stays small; later chunks are allocated whole.
const CHUNK: usize = 256;

/// The most entries a slab holds: slot numbers keep their top bit for the shard's own use.
pub(crate) const MAX_SLOTS: usize = 1 << 31;

/// Entries named by slot number, with a free list of the slots emptied by removals.
#[derive(Debug)]
pub(crate) struct Slab<T> {
    chunks: Vec<Vec<Option<T>>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// How many entries the slab holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn get(&self, slot: u32) -> Option<&T> {
        let slot = slot as usize;
        self.chunks.get(slot / CHUNK)?.get(slot % CHUNK)?.as_ref()
    }

    pub(crate) fn get_mut(&mut self, slot: u32) -> Option<&mut T> {
        let slot = slot as usize;
        self.chunks
            .get_mut(slot / CHUNK)?
            .get_mut(slot % CHUNK)?
            .as_mut()
    }

    /// One past the last slot ever used.
    fn end(&self) -> usize {
        self.chunks
            .last()
            .map_or(0, |last| (self.chunks.len() - 1) * CHUNK + last.len())
    }

    /// The slot [`insert`](Self::insert) fills next, or `None` when the slab is full.
    pub(crate) fn next_slot(&self) -> Option<u32> {
        match self.free.last() {
            Some(&slot) => Some(slot),
            None => {
                let end = self.end();
                (end < MAX_SLOTS).then_some(end as u32)
            }
        }
    }

    /// Stores `value` in the slot [`next_slot`](Self::next_slot) named, which the caller has
    /// checked is `Some`.
    pub(crate) fn insert(&mut self, value: T) -> u32 {
        self.len += 1;
        if let Some(slot) = self.free.pop() {
            // A slot on the free list always lies inside a chunk.
            self.chunks[slot as usize / CHUNK][slot as usize % CHUNK] = Some(value);
            return slot;
        }
        let slot = self.end() as u32;
        match self.chunks.last_mut() {
            // The first chunk starts at 4 entries and doubles up to CHUNK (powers of two), like
            // any Vec; later ones are made whole and never grow.
            Some(last) if last.len() < CHUNK => last.push(Some(value)),
            _ => {
                let mut chunk = Vec::with_capacity(if self.chunks.is_empty() { 4 } else { CHUNK });
                chunk.push(Some(value));
                self.chunks.push(chunk);
            }
        }
        slot
    }

    /// Takes the entry out of `slot` and frees the slot.
    pub(crate) fn remove(&mut self, slot: u32) -> Option<T> {
        let index = slot as usize;
        let value = self
            .chunks
            .get_mut(index / CHUNK)?
            .get_mut(index % CHUNK)?
            .take()?;
        self.free.push(slot);
        self.len -= 1;
        Some(value)
    }

    /// Every entry with its slot.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.chunks
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(slot, entry)| Some((slot as u32, entry.as_ref()?)))
    }

    /// Checks the count and the free list against the slots.
    #[cfg(test)]
    pub(crate) fn assert_consistent(&self) {
        assert_eq!(self.iter().count(), self.len, "slab count");
        assert_eq!(self.free.len() + self.len, self.end(), "free list size");
        for &slot in &self.free {
            assert!(self.get(slot).is_none(), "a free slot holds an entry");
        }
        for chunk in self.chunks.iter().rev().skip(1) {
            assert_eq!(chunk.len(), CHUNK, "only the last chunk may be partly used");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_stable_reused_and_span_chunks() {
        let mut slab = Slab::default();
        let slots: Vec<u32> = (0..3 * CHUNK + 5)
            .map(|n| {
                assert_eq!(slab.next_slot(), Some(n as u32));
                slab.insert(n)
            })
            .collect();
        assert_eq!(slots, (0..3 * CHUNK as u32 + 5).collect::<Vec<_>>());
        assert_eq!(slab.get(CHUNK as u32 + 1), Some(&(CHUNK + 1)));
        assert_eq!(slab.remove(7), Some(7));
        assert_eq!(slab.remove(7), None);
        assert_eq!(slab.get(7), None);
        assert_eq!(slab.next_slot(), Some(7));
        assert_eq!(slab.insert(1_000_000), 7);
        assert_eq!(slab.get(7), Some(&1_000_000));
        assert_eq!(slab.get(3 * CHUNK as u32 + 5), None);
        assert_eq!(slab.len(), 3 * CHUNK + 5);
        slab.assert_consistent();
    }
}
