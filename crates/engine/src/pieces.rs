//! Byte strings kept one after another in one buffer, each after its length in four bytes
//! (little endian): how a verdict's memoised renderings keep its reasons' texts and lineage
//! paths apart, for the answers and log entries that list each text once.

/// Appends a piece written by `write`.
pub fn push(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    write(out);
    let len = u32::try_from(out.len() - at - 4).expect("a piece is smaller than 4 GiB");
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// The pieces of `bytes` (as `push` wrote them) two at a time.
pub fn pairs(mut bytes: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut take = move || {
        let (len, rest) = bytes.split_first_chunk::<4>()?;
        let (piece, rest) = rest.split_at(u32::from_le_bytes(*len) as usize);
        bytes = rest;
        Some(piece)
    };
    std::iter::from_fn(move || Some((take()?, take()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_read_back_in_pairs() {
        let mut out = Vec::new();
        for piece in [&b"text"[..], b"", b"path", &[7; 300]] {
            push(&mut out, |out| out.extend_from_slice(piece));
        }
        let read: Vec<_> = pairs(&out).collect();
        assert_eq!(read, vec![(&b"text"[..], &b""[..]), (&b"path"[..], &[7; 300][..])]);
    }
}
