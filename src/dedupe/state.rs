//! The compact committed-state map of one dedupe shard: `key hash → (row hash, version)`.
//!
//! Budget (SPEC §9): at most 40 bytes per tracked key, 8M keys in well under 300 MB. A general hash map of
//! (u64, u128, u32) costs 60–70 bytes a key at its usual load, so the state is instead a **sorted array** of
//! 20-byte entries (key hash, low 64 bits of the row hash, version) with a radix index over the top bits of the key
//! hash (about one byte a key), plus a small hash map of keys added since the last merge. Lookups cost one index
//! read and a short scan of a bucket of ~4 entries. New keys are merged into the array in place, from the back,
//! when the delta grows past a fraction of the array, so the array never exists twice in memory.
//!
//! Comparing 64 of the row hash's 128 bits in memory makes a missed change a 2⁻⁶⁴ event per changed row; the full
//! 128-bit hash is what is stored in `record_state` and `events`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Identity hasher for keys that already are xxh3 hashes.
#[derive(Default, Clone, Copy)]
pub struct PrehashedKey(u64);

impl Hasher for PrehashedKey {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A `HashMap` keyed by key hashes.
pub type KeyMap<V> = HashMap<u64, V, BuildHasherDefault<PrehashedKey>>;

const REMOVED: u32 = 1 << 31;

/// One tracked key. Packed to 20 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, packed(4))]
pub struct Entry {
    key: u64,
    row: u64,
    /// Version in the low 31 bits; the top bit marks a key whose last event was `removed`.
    meta: u32,
}

impl Entry {
    pub fn new(key: u64, row: u64, version: u32, removed: bool) -> Self {
        Entry {
            key,
            row,
            meta: (version & !REMOVED) | if removed { REMOVED } else { 0 },
        }
    }
    pub fn key(&self) -> u64 {
        self.key
    }
    pub fn committed(&self) -> Committed {
        let meta = self.meta;
        Committed {
            row: self.row,
            version: meta & !REMOVED,
            removed: meta & REMOVED != 0,
        }
    }
}

/// What the committed state says of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    /// Low 64 bits of the committed row hash.
    pub row: u64,
    pub version: u32,
    /// The key's last event was `removed`: it is no longer in the source's window.
    pub removed: bool,
}

#[derive(Clone, Copy, Debug)]
struct DeltaEntry {
    row: u64,
    meta: u32,
    seen: bool,
}

/// The committed state of one shard, plus the "seen in the snapshot in flight" marks used to find removed keys.
pub struct StateMap {
    base: Vec<Entry>,
    /// `index[b]..index[b + 1]` is the range of `base` whose keys have top bits `b`.
    index: Vec<u32>,
    shift: u32,
    /// Keys added since the last merge.
    delta: KeyMap<DeltaEntry>,
    /// One bit per `base` entry: seen in the snapshot in flight.
    seen: Vec<u64>,
}

impl Default for StateMap {
    fn default() -> Self {
        StateMap::from_entries(Vec::new())
    }
}

impl StateMap {
    /// Builds the map from committed entries in any order (keys must be unique).
    pub fn from_entries(mut entries: Vec<Entry>) -> Self {
        entries.sort_unstable_by_key(|e| e.key());
        entries.shrink_to_fit();
        let mut map = StateMap {
            base: entries,
            index: Vec::new(),
            shift: 64,
            delta: KeyMap::default(),
            seen: Vec::new(),
        };
        map.rebuild_index();
        map
    }

    fn rebuild_index(&mut self) {
        let buckets = (self.base.len() / 4)
            .next_power_of_two()
            .clamp(256, 1 << 22);
        self.shift = 64 - buckets.trailing_zeros();
        let mut index = Vec::with_capacity(buckets + 1);
        let mut pos = 0usize;
        for b in 0..buckets as u64 {
            while pos < self.base.len() && (self.base[pos].key() >> self.shift) < b {
                pos += 1;
            }
            index.push(pos as u32);
        }
        index.push(self.base.len() as u32);
        self.index = index;
        self.index.shrink_to_fit();
        self.seen = vec![0; self.base.len().div_ceil(64)];
    }

    fn find_base(&self, key: u64) -> Option<usize> {
        let b = (key >> self.shift) as usize;
        let (lo, hi) = (self.index[b] as usize, self.index[b + 1] as usize);
        self.base[lo..hi]
            .iter()
            .position(|e| e.key() == key)
            .map(|i| lo + i)
    }

    /// Number of keys tracked (including keys whose last event was `removed`).
    pub fn len(&self) -> usize {
        self.base.len() + self.delta.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys whose last event was not `removed`: those a snapshot is expected to hold.
    pub fn live_len(&self) -> usize {
        let base = self.base.iter().filter(|e| !e.committed().removed).count();
        base + self
            .delta
            .values()
            .filter(|d| d.meta & REMOVED == 0)
            .count()
    }

    /// Heap bytes held by the map.
    pub fn heap_bytes(&self) -> usize {
        self.base.capacity() * std::mem::size_of::<Entry>()
            + self.index.capacity() * 4
            + self.seen.capacity() * 8
            + self.delta.capacity() * (std::mem::size_of::<(u64, DeltaEntry)>() + 1)
    }

    /// Looks a key up and marks it seen in the snapshot in flight.
    pub fn lookup_and_mark(&mut self, key: u64) -> Option<Committed> {
        if let Some(i) = self.find_base(key) {
            self.seen[i / 64] |= 1 << (i % 64);
            return Some(self.base[i].committed());
        }
        self.delta.get_mut(&key).map(|d| {
            d.seen = true;
            Entry::new(key, d.row, d.meta & !REMOVED, d.meta & REMOVED != 0).committed()
        })
    }

    /// Looks a key up without marking it.
    pub fn get(&self, key: u64) -> Option<Committed> {
        if let Some(i) = self.find_base(key) {
            return Some(self.base[i].committed());
        }
        self.delta
            .get(&key)
            .map(|d| Entry::new(key, d.row, d.meta & !REMOVED, d.meta & REMOVED != 0).committed())
    }

    /// Records a committed (or about to be committed) state for a key.
    pub fn set(&mut self, key: u64, row: u64, version: u32, removed: bool) {
        let entry = Entry::new(key, row, version, removed);
        if let Some(i) = self.find_base(key) {
            self.base[i] = entry;
        } else {
            let meta = entry.meta;
            let seen = self.delta.get(&key).is_some_and(|d| d.seen);
            self.delta.insert(key, DeltaEntry { row, meta, seen });
        }
    }

    /// Live keys (last event not `removed`) not seen in the snapshot in flight, with their versions.
    pub fn unseen_live(&self) -> Vec<(u64, u32)> {
        let mut out = Vec::new();
        for (i, e) in self.base.iter().enumerate() {
            if self.seen[i / 64] & (1 << (i % 64)) == 0 {
                let c = e.committed();
                if !c.removed {
                    out.push((e.key(), c.version));
                }
            }
        }
        for (k, d) in &self.delta {
            if !d.seen && d.meta & REMOVED == 0 {
                out.push((*k, d.meta));
            }
        }
        out
    }

    /// Clears the seen marks and, when the delta has grown, merges it into the sorted array.
    pub fn end_snapshot(&mut self) {
        self.seen.iter_mut().for_each(|w| *w = 0);
        for d in self.delta.values_mut() {
            d.seen = false;
        }
        if self.delta.len() > 4096.max(self.base.len() / 16) {
            self.merge_delta();
        }
    }

    /// Merges the delta into the sorted array in place, from the back: no second copy of the array.
    pub fn merge_delta(&mut self) {
        if self.delta.is_empty() {
            return;
        }
        let mut added: Vec<Entry> = self
            .delta
            .drain()
            .map(|(k, d)| Entry {
                key: k,
                row: d.row,
                meta: d.meta,
            })
            .collect();
        added.sort_unstable_by_key(|e| e.key());
        let old = self.base.len();
        self.base.reserve_exact(added.len());
        self.base
            .resize(old + added.len(), Entry::new(0, 0, 0, false));
        let (mut i, mut j, mut k) = (old, added.len(), old + added.len());
        while j > 0 {
            k -= 1;
            if i > 0 && self.base[i - 1].key() > added[j - 1].key() {
                self.base[k] = self.base[i - 1];
                i -= 1;
            } else {
                self.base[k] = added[j - 1];
                j -= 1;
            }
        }
        self.delta = KeyMap::default();
        self.rebuild_index();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn entries_are_twenty_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 20);
    }

    #[test]
    fn lookups_find_every_key_before_and_after_merges() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let keys: Vec<u64> = (0..50_000).map(|_| rng.random()).collect();
        let mut map = StateMap::from_entries(
            keys[..20_000]
                .iter()
                .map(|&k| Entry::new(k, k ^ 1, 1, false))
                .collect(),
        );
        for &k in &keys[20_000..] {
            assert_eq!(map.get(k), None);
            map.set(k, k ^ 2, 3, false);
        }
        let check = |map: &StateMap| {
            for (i, &k) in keys.iter().enumerate() {
                let c = map.get(k).expect("tracked");
                if i < 20_000 {
                    assert_eq!((c.row, c.version), (k ^ 1, 1));
                } else {
                    assert_eq!((c.row, c.version), (k ^ 2, 3));
                }
            }
        };
        check(&map);
        map.merge_delta();
        assert_eq!(map.len(), 50_000);
        check(&map);
        assert_eq!(map.get(12345), None);
    }

    #[test]
    fn unseen_live_keys_are_the_removed_ones() {
        let mut map = StateMap::from_entries(
            (1..=100u64)
                .map(|k| Entry::new(k << 40, k, 1, k == 7))
                .collect(),
        );
        map.set(5000, 1, 1, false);
        map.set(6000, 1, 1, false);
        for k in 1..=50u64 {
            map.lookup_and_mark(k << 40);
        }
        map.lookup_and_mark(5000);
        let unseen: Vec<u64> = map.unseen_live().into_iter().map(|(k, _)| k).collect();
        assert_eq!(unseen.len(), 51, "keys 51..=100 and 6000");
        assert!(unseen.contains(&6000));
        assert_eq!(map.unseen_live().len(), 51);
        map.end_snapshot();
        // 7 was removed before: it is never reported again while absent.
        assert_eq!(map.unseen_live().len(), 102 - 1);
    }

    #[test]
    fn state_costs_under_forty_bytes_a_key() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let entries: Vec<Entry> = (0..1_000_000)
            .map(|_| Entry::new(rng.random(), 1, 1, false))
            .collect();
        let map = StateMap::from_entries(entries);
        let per_key = map.heap_bytes() as f64 / map.len() as f64;
        assert!(per_key <= 40.0, "{per_key} bytes a key");
    }
}
