//! Glob patterns with the meaning of Python's `fnmatch.fnmatchcase`: `*` matches any run of
//! characters (`/` included), `?` one character, `[seq]` / `[!seq]` a character (not) in the
//! set, with ranges `a-z`; everything else matches itself. Exemptions select datasets with them
//! and declassifiers select jobs, as the Python policy loader documents.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Star,
    AnyChar,
    Literal(char),
    Class(Class),
    /// A bracket expression that can match no character (`[z-a]`).
    Nothing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Class {
    negated: bool,
    ranges: Vec<(char, char)>,
}

impl Class {
    fn contains(&self, ch: char) -> bool {
        self.ranges.iter().any(|&(low, high)| low <= ch && ch <= high) != self.negated
    }
}

/// A compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    items: Vec<Item>,
}

/// True when `pattern` holds a glob character (`*`, `?`, `[`): the policy treats other
/// patterns as exact ids.
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

impl Glob {
    /// Compiles `pattern` exactly as `fnmatch.translate` reads it.
    pub fn new(pattern: &str) -> Glob {
        let chars: Vec<char> = pattern.chars().collect();
        let mut items = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                '*' => {
                    if items.last() != Some(&Item::Star) {
                        items.push(Item::Star);
                    }
                }
                '?' => items.push(Item::AnyChar),
                '[' => match bracket(&chars, i) {
                    Some((item, next)) => {
                        items.push(item);
                        i = next;
                    }
                    None => items.push(Item::Literal('[')),
                },
                c => items.push(Item::Literal(c)),
            }
        }
        Glob { items }
    }

    /// Whether the whole of `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        // Backtracking over the last `*` only: the classic linear-space wildcard match.
        let (mut t, mut p) = (0, 0);
        let mut resume: Option<(usize, usize)> = None; // (pattern after the star, text position)
        while t < text.len() {
            if p < self.items.len() {
                match &self.items[p] {
                    Item::Star => {
                        resume = Some((p + 1, t));
                        p += 1;
                        continue;
                    }
                    item if single(item, text[t]) => {
                        p += 1;
                        t += 1;
                        continue;
                    }
                    _ => {}
                }
            }
            match resume {
                Some((after_star, start)) => {
                    p = after_star;
                    t = start + 1;
                    resume = Some((after_star, start + 1));
                }
                None => return false,
            }
        }
        self.items[p..].iter().all(|item| *item == Item::Star)
    }
}

fn single(item: &Item, ch: char) -> bool {
    match item {
        Item::AnyChar => true,
        Item::Literal(c) => *c == ch,
        Item::Class(class) => class.contains(ch),
        Item::Star | Item::Nothing => false,
    }
}

/// The bracket expression starting after the `[` at `start - 1`: the item and the index after
/// its `]`, or None when it is not closed (then the `[` is a literal).
fn bracket(chars: &[char], start: usize) -> Option<(Item, usize)> {
    let n = chars.len();
    let mut j = start;
    if j < n && chars[j] == '!' {
        j += 1;
    }
    if j < n && chars[j] == ']' {
        j += 1;
    }
    while j < n && chars[j] != ']' {
        j += 1;
    }
    if j >= n {
        return None;
    }
    let stuff = &chars[start..j];
    // fnmatch splits the set at the hyphens that form ranges (chunks), joins ranges whose end
    // is below their start ("empty ranges"), then hands the rest to `re` as a character class.
    let mut chunks: Vec<Vec<char>> = Vec::new();
    if !stuff.contains(&'-') {
        chunks.push(stuff.to_vec());
    } else {
        let mut i = start;
        let mut k = if chars[start] == '!' { start + 2 } else { start + 1 };
        while let Some(found) = (k..j).find(|&index| chars[index] == '-') {
            chunks.push(chars[i..found].to_vec());
            i = found + 1;
            k = found + 3;
        }
        let chunk = chars[i..j].to_vec();
        if chunk.is_empty() {
            chunks.last_mut().expect("a hyphen was found").push('-');
        } else {
            chunks.push(chunk);
        }
        let mut k = chunks.len() - 1;
        while k > 0 {
            let end = *chunks[k - 1].last().expect("chunks are not empty");
            if end > chunks[k][0] {
                let rest: Vec<char> = chunks[k][1..].to_vec();
                chunks[k - 1].pop();
                chunks[k - 1].extend(rest);
                chunks.remove(k);
            }
            k -= 1;
        }
    }
    let flat: usize = chunks.iter().map(Vec::len).sum::<usize>() + chunks.len().saturating_sub(1);
    if flat == 0 {
        return Some((Item::Nothing, j + 1));
    }
    let negated = chunks[0].first() == Some(&'!');
    if negated {
        chunks[0].remove(0);
        if flat == 1 {
            return Some((Item::AnyChar, j + 1)); // `[!]`-like: any character
        }
    }
    // Adjacent chunks are joined by a range hyphen: the last character of one and the first
    // of the next bound a range; every other character stands for itself.
    let mut ranges = Vec::new();
    let count = chunks.len();
    for (index, chunk) in chunks.iter().enumerate() {
        let from = usize::from(index > 0);
        let to = if index + 1 < count { chunk.len().saturating_sub(1) } else { chunk.len() };
        ranges.extend(chunk.get(from..to).unwrap_or_default().iter().map(|&c| (c, c)));
        if index + 1 < count {
            if let (Some(&low), Some(&high)) = (chunk.last(), chunks[index + 1].first()) {
                ranges.push((low, high));
            }
        }
    }
    Some((Item::Class(Class { negated, ranges }), j + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, text: &str) -> bool {
        Glob::new(pattern).matches(text)
    }

    #[test]
    fn stars_and_questions() {
        assert!(m("s3://bank-eu/*", "s3://bank-eu/a/b"));
        assert!(m("*", ""));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("airflow-eu/anonymize_*", "airflow-eu/anonymize_daily"));
        assert!(!m("airflow-eu/anonymize_*", "airflow-us/anonymize_daily"));
    }

    #[test]
    fn brackets() {
        assert!(m("[abc]x", "bx"));
        assert!(!m("[!abc]x", "bx"));
        assert!(m("[a-c]", "b"));
        assert!(m("[a-c-e]", "-"));
        assert!(m("[a-c-e]", "e"));
        assert!(!m("[a-c-e]", "d"));
        assert!(!m("[z-a]", "m"));
        assert!(m("[!z-a]", "m"));
        assert!(m("[]]", "]"));
        assert!(m("[!]]", "x"));
        assert!(m("[-a]", "-"));
        assert!(m("[a-]", "-"));
        assert!(m("[abc", "[abc"));
        assert!(m("[\\]", "\\"));
    }
}
