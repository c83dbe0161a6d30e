"""English and code corpora that every Python installation carries: no download.

- :func:`pydoc_topics`: the documentation topics that ship with the standard library
  (``pydoc_data.topics.topics``, what ``help("if")`` prints): the language reference's
  sections as plain English text with code examples, one document per topic (79 topics,
  about 0.46 MB of text on Python 3.11).
- :func:`stdlib_sources`: the standard library's own ``.py`` files, one document per file
  (734 files, 12 MB on Python 3.11), test suites and installed packages left out.

Both depend on the Python version that runs them, so results do too (the tokenizer's
cache key includes the corpus itself, so another version never reuses a stale vocabulary).
Documents come in a fixed order (sorted by name), so a seeded split is reproducible.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

# Directories of the standard library that are not the library itself.
_NOT_LIBRARY = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test"})


def pydoc_topics() -> dict[str, str]:
    """``{topic: text}`` of Python's bundled documentation topics, sorted by topic."""
    from pydoc_data.topics import topics

    return {name: topics[name] for name in sorted(topics)}


def stdlib_sources(root: str | Path | None = None) -> dict[str, str]:
    """``{relative path: source}`` of the standard library's ``.py`` files, sorted by path.

    ``root`` defaults to this interpreter's ``sysconfig`` stdlib directory. Files under
    ``site-packages``, ``dist-packages`` and test directories are skipped; bytes that are
    not UTF-8 (a few legacy files) are decoded with replacement characters.
    """
    base = Path(root if root is not None else sysconfig.get_paths()["stdlib"])
    if not base.is_dir():
        raise FileNotFoundError(f"no standard library directory at {base}")
    files = sorted(
        path
        for path in base.rglob("*.py")
        if not _NOT_LIBRARY.intersection(path.relative_to(base).parts[:-1]) and path.is_file()
    )
    return {
        path.relative_to(base).as_posix(): path.read_bytes().decode("utf-8", errors="replace")
        for path in files
    }
