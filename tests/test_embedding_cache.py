"""The sentence-embedding cache (intentkit.encoders.cache): hit, miss, damaged entries and files,
its size bound, two processes at once, and a full disk."""
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from intentkit.encoders import minilm
from intentkit.encoders.cache import CACHE_FILE, CachedEncoder, CacheFull, EmbeddingCache
from intentkit.errors import ArtifactError

TEXTS = ["how do I reset my password", "show me remote jobs in Berlin", "thanks, bye"]


class Counting:
    """The real encoder, counting the texts it is asked to embed."""

    def __init__(self):
        self.encoder, self.embedded = minilm.sentence_encoder(), []

    def __getattr__(self, name):
        return getattr(self.encoder, name)

    def embed(self, texts, batch_size=128, progress=None):
        self.embedded += list(texts)
        return self.encoder.embed(texts, batch_size, progress)


@pytest.fixture
def counting():
    return Counting()


def test_a_miss_embeds_and_a_hit_serves_the_same_vectors(tmp_path, counting):
    encoder = CachedEncoder(counting, EmbeddingCache(tmp_path))
    first = encoder.embed(TEXTS)
    assert counting.embedded == TEXTS
    second = CachedEncoder(counting, EmbeddingCache(tmp_path)).embed([TEXTS[1], "new text",
                                                                      TEXTS[0]])
    assert counting.embedded == [*TEXTS, "new text"]  # only the text not seen before
    np.testing.assert_array_equal(second[[0, 2]], first[[1, 0]])
    np.testing.assert_allclose(second[1], counting.encoder.embed(["new text"])[0], atol=1e-6)


def test_another_encoder_does_not_see_the_entries(tmp_path, counting):
    CachedEncoder(counting, EmbeddingCache(tmp_path)).embed(TEXTS)
    other = CachedEncoder(counting, EmbeddingCache(tmp_path))
    other.key = "fine-tuned weights:numpy"
    other.embed(TEXTS)
    assert counting.embedded == TEXTS * 2


def test_a_damaged_entry_is_never_served_and_is_rebuilt(tmp_path, counting):
    cache = EmbeddingCache(tmp_path)
    clean = CachedEncoder(counting, cache).embed(TEXTS)
    cache.close()
    with sqlite3.connect(tmp_path / CACHE_FILE) as db:  # one vector's bytes changed on disk
        (blob,) = db.execute("SELECT vector FROM embeddings LIMIT 1").fetchone()
        db.execute("UPDATE embeddings SET vector = ? WHERE vector = ?",
                   (bytes([blob[0] ^ 0xFF]) + blob[1:], blob))
    counting.embedded.clear()
    reread = EmbeddingCache(tmp_path)
    again = CachedEncoder(counting, reread).embed(TEXTS)
    assert reread.damaged == 1 and len(counting.embedded) == 1
    np.testing.assert_allclose(again, clean, atol=1e-6)
    counting.embedded.clear()
    CachedEncoder(counting, EmbeddingCache(tmp_path)).embed(TEXTS)  # overwritten: intact now
    assert counting.embedded == []


def test_a_half_written_entry_is_never_served(tmp_path, counting):
    CachedEncoder(counting, EmbeddingCache(tmp_path)).embed(TEXTS)
    with sqlite3.connect(tmp_path / CACHE_FILE) as db:
        db.execute("UPDATE embeddings SET vector = substr(vector, 1, 100)")
    counting.embedded.clear()
    reread = EmbeddingCache(tmp_path)
    CachedEncoder(counting, reread).embed(TEXTS)
    assert reread.damaged == 3 and sorted(counting.embedded) == sorted(TEXTS)


def test_a_file_that_is_no_database_is_set_aside(tmp_path, counting, caplog):
    (tmp_path / CACHE_FILE).write_bytes(b"not a database" * 100)
    vectors = CachedEncoder(counting, EmbeddingCache(tmp_path)).embed(TEXTS)
    assert vectors.shape == (3, minilm.HIDDEN) and "damaged" in caplog.text
    assert list(tmp_path.glob(f"{CACHE_FILE}.damaged-*"))
    counting.embedded.clear()
    CachedEncoder(counting, EmbeddingCache(tmp_path)).embed(TEXTS)
    assert counting.embedded == []


def test_the_cache_stays_within_its_bound_keeping_the_recent_entries(tmp_path, counting):
    cache = EmbeddingCache(tmp_path, max_bytes=10 * (minilm.HIDDEN * 4 + 64))
    encoder = CachedEncoder(counting, cache)
    for number in range(30):
        encoder.embed([f"pattern number {number}"])
    (count,) = cache._open().execute("SELECT count(*) FROM embeddings").fetchone()
    assert count <= 10
    counting.embedded.clear()
    encoder.embed(["pattern number 29"])
    assert counting.embedded == []


class FullDisk(EmbeddingCache):
    """SQLite's own full-disk answer (SQLITE_FULL), from a page budget the file has reached."""

    def _connect(self):
        connection = super()._connect()
        (pages,) = connection.execute("PRAGMA page_count").fetchone()
        connection.execute(f"PRAGMA max_page_count = {pages}")
        return connection


def test_a_full_disk_while_caching_stops_with_one_line(tmp_path, counting):
    encoder = CachedEncoder(counting, FullDisk(tmp_path))
    with pytest.raises(CacheFull) as raised:
        encoder.embed([f"a pattern of its own {n}" for n in range(200)])
    assert isinstance(raised.value, ArtifactError)  # the command line: one line, exit 2
    message = str(raised.value)
    assert "\n" not in message and "disk is full" in message and str(tmp_path) in message


WRITER = textwrap.dedent("""
    import random, sys
    import numpy as np
    from intentkit.encoders import minilm
    from intentkit.encoders.cache import CachedEncoder, EmbeddingCache
    texts = [f"shared pattern {n}" for n in range(120)]
    random.Random(int(sys.argv[2])).shuffle(texts)
    encoder = CachedEncoder(minilm.sentence_encoder(), EmbeddingCache(sys.argv[1]))
    for start in range(0, len(texts), 6):  # many small transactions, interleaved
        batch = texts[start:start + 6]
        got = encoder.embed(batch)
        assert np.allclose(got, encoder.encoder.embed(batch), atol=1e-5), batch
    print(encoder.cache.damaged)
""")


def test_two_processes_sharing_a_cache_never_corrupt_it(tmp_path):
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(seed)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for seed in (1, 2)]
    for writer in writers:
        out, err = writer.communicate(timeout=300)
        assert writer.returncode == 0, err
        assert out.strip() == "0"
    counting = Counting()
    reread = EmbeddingCache(tmp_path)
    texts = [f"shared pattern {n}" for n in range(120)]
    vectors = CachedEncoder(counting, reread).embed(texts)
    assert counting.embedded == [] and reread.damaged == 0
    np.testing.assert_allclose(vectors, counting.encoder.embed(texts), atol=1e-5)
    with sqlite3.connect(tmp_path / CACHE_FILE) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT count(*) FROM embeddings").fetchone() == (120,)
