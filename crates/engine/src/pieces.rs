//! Byte strings kept in pairs one after another in one buffer, each pair after the lengths of
//! its two strings in four bytes each (little endian): how a verdict's memoised reasons keep
//! each lineage path in the wire format and in JSON (`reason_texts::Reasons`). Both lengths
//! come first, so that a reader finds both strings from one read of the pair's first bytes,
//! and then reads on.

/// Appends a pair written by `first` and `second`.
pub fn push_pair(out: &mut Vec<u8>, first: impl FnOnce(&mut Vec<u8>), second: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0; 8]);
    first(out);
    let middle = out.len();
    second(out);
    let len = |bytes: usize| u32::try_from(bytes).expect("a piece is smaller than 4 GiB").to_le_bytes();
    let (first_len, second_len) = (len(middle - at - 8), len(out.len() - middle));
    out[at..at + 4].copy_from_slice(&first_len);
    out[at + 4..at + 8].copy_from_slice(&second_len);
}

/// The pairs of `bytes` (as `push_pair` wrote them).
pub fn pairs(mut bytes: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    std::iter::from_fn(move || {
        let (lens, rest) = bytes.split_first_chunk::<8>()?;
        let first = u32::from_le_bytes(lens[..4].try_into().expect("four bytes")) as usize;
        let second = u32::from_le_bytes(lens[4..].try_into().expect("four bytes")) as usize;
        let (first, rest) = rest.split_at(first);
        let (second, rest) = rest.split_at(second);
        bytes = rest;
        Some((first, second))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_read_back() {
        let mut out = Vec::new();
        push_pair(&mut out, |out| out.extend_from_slice(b"text"), |_| {});
        push_pair(&mut out, |out| out.extend_from_slice(b"path"), |out| out.extend_from_slice(&[7; 300]));
        let read: Vec<_> = pairs(&out).collect();
        assert_eq!(read, vec![(&b"text"[..], &b""[..]), (&b"path"[..], &[7; 300][..])]);
        assert_eq!(pairs(&[]).count(), 0);
    }
}
