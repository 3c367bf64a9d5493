""" "Did you mean ...?" for values a user mistyped: region ids, country names, dataset ids."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from difflib import SequenceMatcher

MAX_SUGGESTIONS = 3
# Longer values are nobody's typo of a region, country or dataset id, and comparing them costs
# time quadratic in their length: they get no suggestions.
MAX_COMPARED_LENGTH = 256
# Similarity (difflib's ratio, 0..1) below which a candidate is not worth suggesting, and how
# far below the best candidate another may be and still be suggested beside it.
_CUTOFF = 0.6
_SPREAD = 0.1


def _whole(candidate: str) -> Iterable[str]:
    return (candidate,)


def closest(
    value: str,
    candidates: Iterable[str],
    *,
    limit: int = MAX_SUGGESTIONS,
    keys: Callable[[str], Iterable[str]] = _whole,
) -> list[str]:
    """Up to `limit` candidates most similar to `value` (case-insensitively), best first. A
    candidate's similarity is that of the most similar of its `keys` (default: itself)."""
    if len(value) > MAX_COMPARED_LENGTH:
        return []
    wanted = value.casefold()
    matcher = SequenceMatcher(b=wanted, autojunk=False)
    scored: dict[str, float] = {}
    for candidate in candidates:
        best = 0.0
        for key in keys(candidate):
            matcher.set_seq1(key.casefold())
            if matcher.real_quick_ratio() > best and matcher.quick_ratio() > best:
                best = max(best, matcher.ratio())
        if best >= _CUTOFF:
            scored[candidate] = max(best, scored.get(candidate, 0.0))
    if not scored:
        return []
    floor = max(scored.values()) - _SPREAD
    ranked = sorted((c for c, s in scored.items() if s >= floor), key=lambda c: (-scored[c], c))
    return ranked[:limit]


def did_you_mean(suggestions: Iterable[str]) -> str:
    """`; did you mean 'a' or 'b'?` for a message, or "" without suggestions."""
    quoted = [repr(s) for s in suggestions]
    if not quoted:
        return ""
    if len(quoted) == 1:
        return f"; did you mean {quoted[0]}?"
    return f"; did you mean {', '.join(quoted[:-1])} or {quoted[-1]}?"
