//! Fixed-size bit sets: sets of regions (one bit per region of the policy's registry, in id
//! order) and sets of rules (one bit per rule, in policy order).

/// A bit set of a size fixed at creation; operations take sets of the same size.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Bits(Box<[u64]>);

impl Bits {
    /// No bit set, room for `size` bits.
    pub fn empty(size: usize) -> Bits {
        Bits(vec![0; size.div_ceil(64)].into_boxed_slice())
    }

    /// Bits `0..size` set.
    pub fn full(size: usize) -> Bits {
        let mut bits = Bits::empty(size);
        for i in 0..size {
            bits.insert(i);
        }
        bits
    }

    pub fn insert(&mut self, index: usize) {
        self.0[index / 64] |= 1 << (index % 64);
    }

    pub fn contains(&self, index: usize) -> bool {
        self.0.get(index / 64).is_some_and(|word| word >> (index % 64) & 1 == 1)
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&word| word == 0)
    }

    pub fn union_with(&mut self, other: &Bits) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a |= b;
        }
    }

    pub fn intersect_with(&mut self, other: &Bits) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a &= b;
        }
    }

    pub fn subtract(&mut self, other: &Bits) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a &= !b;
        }
    }

    /// The set bits, ascending.
    pub fn ones(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(w, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros() as usize;
                rest &= rest - 1;
                Some(w * 64 + bit)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations() {
        let mut a = Bits::empty(130);
        a.insert(0);
        a.insert(129);
        let mut b = Bits::full(130);
        b.subtract(&a);
        assert!(!b.contains(0) && b.contains(1) && !b.contains(129));
        assert_eq!(a.ones().collect::<Vec<_>>(), vec![0, 129]);
        let mut c = a.clone();
        c.intersect_with(&b);
        assert!(c.is_empty());
        c.union_with(&a);
        assert_eq!(c, a);
        assert!(!a.contains(1000));
    }
}
