"""Word lists for dictionary attacks: a packaged English list ranked by frequency, and user lists.

The English list comes from ``wordfreq`` (its data ships inside the package, nothing is
downloaded): the most frequent words of English, most common first. Frequency order matters:
secrets chosen by people are common words, so a search that tries common words first finds
them early. ``wordfreq`` sorts words of equal (rounded) frequency alphabetically, so the order
is by frequency band, then alphabetical.

Cleaning keeps lowercase ASCII words (``[a-z]+``), contractions (``don't``) and numbers, drops
single letters other than ``a`` and ``i``, and removes duplicates, keeping the first.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from dormant.errors import DormantError

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?|[0-9]+")
MAX_ENGLISH = 300_000


class WordListError(DormantError):
    """A user word list that cannot be used (missing, unreadable, empty)."""


def clean_words(words, *, lowercase: bool = True) -> list[str]:
    """Normalise and filter a sequence of words, keeping the first occurrence of each."""
    seen: set[str] = set()
    out: list[str] = []
    for raw in words:
        w = raw.strip()
        if lowercase:
            w = w.lower()
        if not _WORD.fullmatch(w) or (len(w) == 1 and w.isalpha() and w not in ("a", "i")):
            continue
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


@lru_cache(maxsize=8)
def _english(n: int) -> tuple[str, ...]:
    from wordfreq import top_n_list

    # ask for more than n raw entries: cleaning drops about 10% of them
    raw = top_n_list("en", min(MAX_ENGLISH + 50_000, int(n * 1.2) + 200))
    return tuple(clean_words(raw)[:n])


def english_words(n: int = 30_000) -> list[str]:
    """The ``n`` most frequent English words, cleaned, most common first (at most ~290k exist)."""
    if n <= 0:
        return []
    return list(_english(min(int(n), MAX_ENGLISH)))


def load_wordlist(path: str | Path, *, lowercase: bool = False) -> list[str]:
    """Read a user word list: one entry per line, blank lines and ``#`` comments skipped, order kept.

    Entries are taken as written (spaces inside a line are kept, so a line may hold a phrase);
    duplicates are dropped. Raises ``WordListError`` naming the file when it cannot be used.
    """
    p = Path(path)
    if p.is_dir():
        raise WordListError(f"word list {p}: a folder, not a file; give a text file with one word per line")
    if not p.is_file():
        raise WordListError(f"word list {p}: no such file")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WordListError(f"word list {p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    seen: set[str] = set()
    out: list[str] = []
    for line in text.splitlines():
        w = line.strip("\r\n")
        if not w.strip() or w.lstrip().startswith("#"):
            continue
        w = w.strip()
        if lowercase:
            w = w.lower()
        if w not in seen:
            seen.add(w)
            out.append(w)
    if not out:
        raise WordListError(f"word list {p}: no words in it (one word per line expected)")
    return out
