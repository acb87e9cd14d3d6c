"""An on-disk cache of sentence embeddings, keyed by (encoder, text), so that a retrain after a
small edit embeds only the texts it has not seen.

One SQLite file (the standard library's sqlite3) per cache directory, in WAL mode: two runs at
once read and write it safely (SQLite's own locking, each batch one transaction), and a run killed
mid-write leaves the last committed state. Every entry carries a BLAKE2 digest of its key and
vector: an entry that does not match it (a damaged page, a half-written row by some other tool) is
never served, only embedded again and overwritten. A file that is not a database any more is moved
aside and the cache starts empty. The file is bounded: past `max_bytes` of vectors the least
recently used entries go.

A full disk while caching stops the run (ArtifactError: one line, exit 2), before anything is
published: the run would need that disk to publish the model anyway, minutes later. Any other
failure of the cache (a read-only directory, a lock held too long) is a warning, and the run
goes on embedding without it.
"""
import hashlib
import logging
import os
import sqlite3
import time
from pathlib import Path

import numpy as np

from ..errors import ArtifactError
from .minilm import HIDDEN

log = logging.getLogger(__name__)

CACHE_FILE = "embeddings.sqlite3"
DEFAULT_MAX_MB = 256
_BUSY_TIMEOUT_S = 60  # another run's write transaction is one batch: seconds at most
_DIGEST_BYTES = 16
_ROWS_PER_QUERY = 500  # below SQLite's limit on bound parameters


class CacheFull(ArtifactError):
    """The disk (or the cache's file system) is full."""


def _text_key(text):
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _digest(encoder_key, text_key, vector_bytes):
    return hashlib.blake2b(encoder_key.encode() + text_key + vector_bytes,
                           digest_size=_DIGEST_BYTES).digest()


class EmbeddingCache:
    """Vectors by (encoder key, text) in `directory`/embeddings.sqlite3, at most `max_bytes`."""

    def __init__(self, directory, max_bytes=DEFAULT_MAX_MB * 2**20):
        self.directory, self.max_bytes = Path(directory), max_bytes
        self.path = self.directory / CACHE_FILE
        self.hits = self.misses = self.damaged = 0
        self._connection = None
        self.disabled = False

    # --- connection -----------------------------------------------------------------------

    def _connect(self):
        connection = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")  # WAL: a crash loses at most the last batch
        connection.execute(
            "CREATE TABLE IF NOT EXISTS embeddings (encoder TEXT NOT NULL, text BLOB NOT NULL, "
            "vector BLOB NOT NULL, digest BLOB NOT NULL, used REAL NOT NULL, "
            "PRIMARY KEY (encoder, text)) WITHOUT ROWID")
        connection.execute("CREATE INDEX IF NOT EXISTS by_use ON embeddings (used)")
        return connection

    def _open(self):
        if self._connection is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            try:
                self._connection = self._connect()
            except sqlite3.DatabaseError as error:
                if _is_full(error):
                    raise
                if isinstance(error, sqlite3.OperationalError):
                    raise  # locked, read-only, ...: not damage
                # Not a database any more (overwritten, truncated): set it aside, start empty.
                aside = self.path.with_name(f"{CACHE_FILE}.damaged-{os.getpid()}")
                log.warning("%s: damaged (%s); moved to %s, the cache starts empty", self.path,
                            error, aside.name)
                os.replace(self.path, aside)
                for suffix in ("-wal", "-shm"):
                    Path(f"{self.path}{suffix}").unlink(missing_ok=True)
                self._connection = self._connect()
        return self._connection

    def close(self):
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # --- read and write -------------------------------------------------------------------

    def lookup(self, encoder_key, texts, dimension):
        """(vectors, found): the cached vector of each text (zeros where not found) and a boolean
        mask of the texts found intact."""
        vectors = np.zeros((len(texts), dimension), dtype=np.float32)
        found = np.zeros(len(texts), dtype=bool)
        keys = [_text_key(t) for t in texts]
        rows_of = {}
        for row, key in enumerate(keys):
            rows_of.setdefault(key, []).append(row)
        connection = self._open()
        unique = list(rows_of)
        used = []
        for start in range(0, len(unique), _ROWS_PER_QUERY):
            chunk = unique[start:start + _ROWS_PER_QUERY]
            query = ("SELECT text, vector, digest FROM embeddings WHERE encoder = ? AND text IN "
                     f"({', '.join('?' * len(chunk))})")
            for key, blob, digest in connection.execute(query, [encoder_key, *chunk]):
                if (len(blob) != dimension * 4
                        or digest != _digest(encoder_key, key, blob)):
                    self.damaged += 1  # never served: embedded again and overwritten
                    continue
                vector = np.frombuffer(blob, dtype=np.float32)
                for row in rows_of[key]:
                    vectors[row], found[row] = vector, True
                used.append(key)
        if used:
            with _transaction(connection):
                connection.executemany("UPDATE embeddings SET used = ? WHERE encoder = ? AND "
                                       "text = ?", [(time.time(), encoder_key, k) for k in used])
        self.hits += int(found.sum())
        self.misses += int((~found).sum())
        return vectors, found

    def store(self, encoder_key, texts, vectors):
        """Cache each text's vector (one transaction), then trim to the size bound."""
        now = time.time()
        rows = {}
        for text, vector in zip(texts, vectors):
            key, blob = _text_key(text), np.ascontiguousarray(vector, dtype=np.float32).tobytes()
            rows[key] = (encoder_key, key, blob, _digest(encoder_key, key, blob), now)
        connection = self._open()
        with _transaction(connection):
            connection.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?, ?)",
                                   list(rows.values()))
        self._trim(connection, len(next(iter(rows.values()))[2]) if rows else 0)

    def _trim(self, connection, vector_bytes):
        """Least recently used entries out, down to 90 % of the bound, once past it."""
        if not vector_bytes:
            return
        entry_bytes = vector_bytes + 64  # key, digest, time and SQLite's own bookkeeping
        limit = max(1, self.max_bytes // entry_bytes)
        (count,) = connection.execute("SELECT count(*) FROM embeddings").fetchone()
        if count <= limit:
            return
        with _transaction(connection):
            connection.execute("DELETE FROM embeddings WHERE (encoder, text) IN (SELECT encoder, "
                               "text FROM embeddings ORDER BY used LIMIT ?)",
                               (count - int(limit * 0.9),))
        log.info("embedding cache: %d least recently used entries removed (bound %d MB)",
                 count - int(limit * 0.9), self.max_bytes // 2**20)


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error): one writer at a time, waited for."""

    def __init__(self, connection):
        self.connection = connection

    def __enter__(self):
        self.connection.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, error, traceback):
        if kind is None:
            self.connection.execute("COMMIT")
        elif self.connection.in_transaction:  # SQLite rolls back by itself on SQLITE_FULL
            self.connection.execute("ROLLBACK")
        return False


def _is_full(error):
    return (getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
            or "disk is full" in str(error) or getattr(error, "errno", None) == 28)


class CachedEncoder:
    """A sentence encoder whose `embed` reads the cache first and embeds only the texts missing
    there; everything else is the wrapped encoder's."""

    def __init__(self, encoder, cache, dimension=HIDDEN):
        self.encoder, self.cache, self.dimension = encoder, cache, dimension
        # The backend's rounding differs in the last bits: its vectors are its own entries.
        self.key = f"{encoder.sha256}:{getattr(encoder, 'backend', '')}"

    def __getattr__(self, name):
        return getattr(self.encoder, name)

    def embed(self, texts, batch_size=128, progress=None):
        texts = list(texts)
        if not texts or self.cache.disabled:
            return self.encoder.embed(texts, batch_size, progress)
        try:
            vectors, found = self._guarded(lambda: self.cache.lookup(self.key, texts,
                                                                     self.dimension))
        except _Degraded:
            return self.encoder.embed(texts, batch_size, progress)
        missing = np.flatnonzero(~found)
        if progress:
            progress(len(texts) - len(missing), len(texts))
        if len(missing):
            cached = len(texts) - len(missing)
            new = self.encoder.embed(
                [texts[i] for i in missing], batch_size,
                (lambda done, _: progress(cached + done, len(texts))) if progress else None)
            vectors[missing] = new
            try:
                self._guarded(lambda: self.cache.store(self.key, [texts[i] for i in missing],
                                                       new))
            except _Degraded:
                pass
        log.info("embedding cache: %d of %d texts found, %d embedded", len(texts) - len(missing),
                 len(texts), len(missing))
        return vectors

    def _guarded(self, action):
        """The cache's action; a full disk stops the run, any other failure turns it off."""
        try:
            return action()
        except (sqlite3.Error, OSError) as error:
            if _is_full(error):
                raise CacheFull(
                    f"{self.cache.path}: the disk is full while caching sentence embeddings; "
                    "free space there (or train with --embedding-cache-mb 0) and train again. "
                    "The model published before is unchanged.") from None
            log.warning("%s: embedding cache unusable (%s); embedding without it",
                        self.cache.path, error)
            self.cache.disabled = True
            self.cache.close()
            raise _Degraded from None


class _Degraded(Exception):
    """The cache was turned off; the caller embeds without it."""
