"""Real English sentences, offline: the first sentence of the docstrings in Python's own standard library.

    sentences = evaluation_sentences(n=500, seed=0)   # a fixed, seeded sample; the same list on every run
    len(stdlib_sentences())                            # every sentence found (a few thousand)

Why the standard library: quantization gates and parity checks need real text, and nothing may be downloaded. Every
Python install carries thousands of hand-written English sentences in its docstrings ("Return the absolute value of
the argument."), in the style of the technical text an embedding service sees. The walk covers a fixed list of modules
(importing none with side effects), keeps public functions, classes and their public methods, and filters the first
sentences on length and letters. The list depends on the Python version (3.11 here), which is why a manifest records
the evaluation set's hash rather than this code's name.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import random
import re
import warnings
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from tritonforge.errors import ConfigError

_LOGGER = logging.getLogger(__name__)

STDLIB_MODULES: tuple[str, ...] = (
    "abc", "argparse", "array", "ast", "asyncio", "base64", "binascii", "bisect", "bz2", "calendar", "cmath",
    "codecs", "collections", "colorsys", "concurrent.futures", "configparser", "contextlib", "copy", "csv",
    "dataclasses", "datetime", "decimal", "difflib", "dis", "email.message", "email.utils", "enum", "filecmp",
    "fnmatch", "fractions", "ftplib", "functools", "getopt", "gettext", "glob", "graphlib", "gzip", "hashlib", "heapq",
    "hmac", "html", "html.parser", "http.client", "http.cookies", "http.server", "imaplib", "importlib",
    "inspect", "io", "ipaddress", "itertools", "json", "locale", "logging", "logging.handlers", "lzma", "mailbox",
    "math", "mimetypes", "multiprocessing", "netrc", "numbers", "operator", "optparse", "os", "os.path", "pathlib",
    "pickle", "pickletools", "pkgutil", "platform", "plistlib", "poplib", "pprint", "queue", "quopri", "random", "re",
    "reprlib", "sched", "secrets", "selectors", "shelve", "shlex", "shutil", "signal", "smtplib", "socket",
    "socketserver", "sqlite3", "ssl", "stat", "statistics", "string", "struct", "subprocess", "sysconfig", "tarfile",
    "tempfile", "textwrap", "threading", "timeit", "tokenize", "tomllib", "trace", "traceback", "types", "typing",
    "unicodedata", "unittest", "urllib.parse", "urllib.request", "uuid", "warnings", "wave", "weakref",
    "xml.dom.minidom", "xml.etree.ElementTree", "xml.sax", "xmlrpc.client", "zipfile", "zlib",
)  # fmt: skip
"""Modules walked for docstrings: importable on any CPython 3.10+, none with side effects on import."""

MIN_CHARS = 25
MAX_CHARS = 300
MIN_LETTER_SHARE = 0.75
_SIGNATURE = re.compile(r"^[\w.]+\(.*\)(\s*->.*)?$")
_SENTENCE_END = re.compile(r"(?<=[a-z0-9)\]'\"`])\.(?=\s|$)")
_WORD = re.compile(r"[A-Za-z]{2,}")
_ABBREVIATION = re.compile(r"(?:\b(?:e\.g|i\.e|etc|vs|cf|approx|resp)|\.\w)\.$", re.IGNORECASE)


def _public_objects(module: Any) -> Iterator[Any]:
    """Yield the module's public functions and classes defined in it, and the public methods of those classes."""
    names = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
    for name in sorted(set(names)):
        obj = getattr(module, name, None)
        if not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        yield obj
        if inspect.isclass(obj):
            for member_name, member in sorted(vars(obj).items()):
                if not member_name.startswith("_") and (inspect.isroutine(member) or isinstance(member, property)):
                    yield member


def first_sentence(doc: str) -> str | None:
    """Return the first sentence of a docstring's first prose paragraph, or None when it has none.

    A leading paragraph that is a call signature ("sqrt(x) -> float", C functions) is skipped.
    """
    for paragraph in doc.strip().split("\n\n"):
        text = " ".join(paragraph.split())
        if not text or _SIGNATURE.match(text):
            continue
        for match in _SENTENCE_END.finditer(text):
            if not _ABBREVIATION.search(text[: match.end()]):
                return text[: match.end()]
        return None
    return None


def keep_sentence(sentence: str) -> bool:
    """Whether a sentence is plain English prose of a useful length: mostly ASCII letters, starts with a capital."""
    if not MIN_CHARS <= len(sentence) <= MAX_CHARS or not sentence.isascii() or not sentence[0].isupper():
        return False
    if any(marker in sentence for marker in (">>>", "::", "http", "{", "}", "\\", "|", "__")):
        return False
    letters = sum(c.isalpha() or c == " " for c in sentence)
    return letters / len(sentence) >= MIN_LETTER_SHARE and len(_WORD.findall(sentence)) >= 4


@lru_cache(maxsize=1)
def stdlib_sentences() -> tuple[str, ...]:
    """Every kept first sentence from STDLIB_MODULES, deduplicated and sorted (so the order never depends on a walk).

    Returns:
        The sentences, sorted.
    """
    found: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated modules and attributes warn on access
        for module_name in STDLIB_MODULES:
            try:
                module = importlib.import_module(module_name)
            except ImportError:  # a Python built without it (e.g. no _ssl, no _sqlite3)
                _LOGGER.debug("skipping %s: not importable here", module_name)
                continue
            for obj in _public_objects(module):
                doc = inspect.getdoc(obj)
                sentence = first_sentence(doc) if doc else None
                if sentence is not None and keep_sentence(sentence):
                    found.add(sentence)
    return tuple(sorted(found))


def evaluation_sentences(n: int = 500, seed: int = 0) -> list[str]:
    """Return a fixed, seeded sample of `n` standard-library sentences (the same list for the same n, seed, Python).

    Args:
        n: how many sentences.
        seed: seeds the sample.

    Returns:
        The sentences, in sample order.

    Raises:
        ConfigError: n < 1, or more sentences are asked for than the standard library offers.
    """
    corpus = stdlib_sentences()
    if not 1 <= n <= len(corpus):
        raise ConfigError(f"n={n} evaluation sentences asked for; the standard library offers 1 to {len(corpus)}")
    return random.Random(seed).sample(corpus, n)
