//! Interned strings: dataset ids, labels, origins, locations, jobs and transforms each get a
//! dense `u32` id, so the index stores ids and compares integers.

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::{DefaultHashBuilder, HashTable};

/// A set of distinct strings, each with a dense id in insertion order. Strings are shared
/// (`Arc<str>`) so that verdicts can hand out lineage paths without copying them.
#[derive(Default)]
pub struct Interner {
    strings: Vec<Arc<str>>,
    table: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

impl Interner {
    /// The id of `value`, if interned.
    pub fn get(&self, value: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(value);
        self.table.find(hash, |&id| &*self.strings[id as usize] == value).copied()
    }

    /// The id of `value`, interning it first if needed.
    pub fn intern(&mut self, value: &str) -> u32 {
        let hash = self.hasher.hash_one(value);
        if let Some(&id) = self.table.find(hash, |&id| &*self.strings[id as usize] == value) {
            return id;
        }
        let id = u32::try_from(self.strings.len()).expect("fewer than 2^32 interned strings");
        self.strings.push(Arc::from(value));
        let (strings, hasher) = (&self.strings, &self.hasher);
        self.table.insert_unique(hash, id, |&other| hasher.hash_one(&*strings[other as usize]));
        id
    }

    /// The string of an id handed out by this interner.
    pub fn resolve(&self, id: u32) -> &Arc<str> {
        &self.strings[id as usize]
    }

    pub fn len(&self) -> usize {
        self.strings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.strings.is_empty()
    }

    /// Releases spare capacity (after a bulk load).
    pub fn shrink_to_fit(&mut self) {
        self.strings.shrink_to_fit();
        let (strings, hasher) = (&self.strings, &self.hasher);
        self.table.shrink_to_fit(|&id| hasher.hash_one(&*strings[id as usize]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_dense_and_stable() {
        let mut names = Interner::default();
        assert_eq!(names.intern("a"), 0);
        assert_eq!(names.intern("b"), 1);
        assert_eq!(names.intern("a"), 0);
        assert_eq!(names.get("b"), Some(1));
        assert_eq!(names.get("c"), None);
        assert_eq!(&**names.resolve(1), "b");
        for i in 0..10_000 {
            names.intern(&format!("s3://x/{i}"));
        }
        names.shrink_to_fit();
        assert_eq!(names.get("s3://x/9999"), Some(10_001));
    }
}

/// An effective attribute: a classification label or an origin (the top bit tells which),
/// by interned id. Keys sort labels first, then origins.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Key(u32);

impl Key {
    const ORIGIN_BIT: u32 = 1 << 31;
    /// The pseudo-origin of data derived from what the catalog does not describe (origin id 0).
    pub const UNDESCRIBED: Key = Key(Self::ORIGIN_BIT);

    pub fn label(id: u32) -> Key {
        debug_assert!(id < Self::ORIGIN_BIT);
        Key(id)
    }

    pub fn origin(id: u32) -> Key {
        debug_assert!(id < Self::ORIGIN_BIT);
        Key(id | Self::ORIGIN_BIT)
    }

    pub fn is_origin(self) -> bool {
        self.0 & Self::ORIGIN_BIT != 0
    }

    /// The label or origin id.
    pub fn id(self) -> u32 {
        self.0 & !Self::ORIGIN_BIT
    }

    /// The raw value (for hashing key sequences).
    pub fn raw(self) -> u32 {
        self.0
    }
}

/// The name of the pseudo-origin `Key::UNDESCRIBED`, as explanations show it.
pub const UNDESCRIBED: &str = "UNDESCRIBED";

/// Every string the index and its readers share: dataset ids (node names), labels (with their
/// ancestors, so that hierarchy checks walk ids), origins and locations.
pub struct Symbols {
    pub names: Interner,
    pub labels: Interner,
    label_parents: Vec<u32>,
    pub origins: Interner,
    pub locations: Interner,
}

const NO_PARENT: u32 = u32::MAX;

impl Default for Symbols {
    fn default() -> Self {
        let mut origins = Interner::default();
        origins.intern(UNDESCRIBED);
        Symbols {
            names: Interner::default(),
            labels: Interner::default(),
            label_parents: Vec::new(),
            origins,
            locations: Interner::default(),
        }
    }
}

impl Symbols {
    /// Interns a dotted label and its ancestors (`PII.CONTACT` also interns `PII`).
    pub fn intern_label(&mut self, label: &str) -> u32 {
        if let Some(id) = self.labels.get(label) {
            return id;
        }
        let parent = match label.rfind('.') {
            Some(dot) => self.intern_label(&label[..dot]),
            None => NO_PARENT,
        };
        let id = self.labels.intern(label);
        debug_assert_eq!(id as usize, self.label_parents.len());
        self.label_parents.push(parent);
        id
    }

    /// The label one level up (`PII` for `PII.CONTACT`).
    pub fn label_parent(&self, id: u32) -> Option<u32> {
        match self.label_parents[id as usize] {
            NO_PARENT => None,
            parent => Some(parent),
        }
    }

    /// The label or origin a key stands for.
    pub fn key_text(&self, key: Key) -> &Arc<str> {
        if key.is_origin() {
            self.origins.resolve(key.id())
        } else {
            self.labels.resolve(key.id())
        }
    }

    pub fn shrink_to_fit(&mut self) {
        self.names.shrink_to_fit();
        self.labels.shrink_to_fit();
        self.label_parents.shrink_to_fit();
        self.origins.shrink_to_fit();
        self.locations.shrink_to_fit();
    }
}
