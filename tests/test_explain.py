"""Explanations (intentkit.serving.explain): faithful word effects, nearest training patterns
stored and verified with the run, the fallback's rule; the language guard; API, CLI, review."""
import json
import pickle
import shutil
import subprocess

import numpy as np
import pytest
from conftest import intentkit_command

from intentkit import artifacts
from intentkit.errors import ArtifactError, ConfigError
from intentkit.serving import review
from intentkit.serving.explain import without, word_spans
from intentkit.serving.predictor import FALLBACK_REASONS, Predictor, predict_intent_improved
from intentkit.text import language

MESSAGE = "how much money does a junior python developer make in berlin today"
FRENCH = "Bonjour, je voudrais savoir combien gagne un ingénieur informatique à Paris"
needs_lingua = pytest.mark.skipif(not language.available(), reason=language.INSTALL_HINT)


@pytest.fixture(scope="module")
def predictor(trained):
    return Predictor(trained["model"], trained["preprocessor"], use_ensemble=True)


def test_each_word_effect_is_what_removing_it_does(predictor):
    """Faithfulness: the answer's probability without the top word is lower by at least the
    explained effect (within 1e-6); in fact every word's effect is exactly that drop."""
    result = predictor.explain(MESSAGE)
    explanation = result["explanation"]
    assert len(MESSAGE.split()) == 12 and len(explanation["words"]) == 12
    answer = predictor.labels.index(explanation["answer"])
    full = predictor.predict_proba([MESSAGE])[0, answer]
    top = max(explanation["words"], key=lambda w: w["effect"])
    assert top["effect"] > 0, "some word carries the answer"
    dropped = predictor.predict_proba([without(MESSAGE, (top["start"], top["end"]))])[0, answer]
    assert full - dropped >= top["effect"] - 1e-6
    for word in explanation["words"]:
        assert MESSAGE[word["start"]:word["end"]] == word["word"]
        alone = predictor.predict_proba([without(MESSAGE, (word["start"], word["end"]))])
        assert full - alone[0, answer] == pytest.approx(word["effect"], abs=1e-6)
    # The explained answer is the one predict gives.
    answered = predictor.predict(MESSAGE)
    assert set(result) - set(answered) == {"explanation"}
    for key in ("intent", "fallback", "fallback_reason", "language", "model_type"):
        assert result[key] == answered[key]
    assert result["confidence"] == pytest.approx(answered["confidence"], abs=1e-6)


def test_a_huge_message_is_explained_from_the_part_the_models_read(predictor, monkeypatch):
    """A 2 MB message: every variant is a copy of the part the members read, not of the whole
    message (65 copies of it before), and the explanation is the one of that part."""
    huge = MESSAGE + " and more" * 250_000
    lengths = []
    embed = predictor.encoder.embed
    monkeypatch.setattr(predictor.encoder, "embed",
                        lambda texts, *a, **k: lengths.extend(map(len, texts)) or embed(texts))
    result = predictor.explain(huge)
    assert lengths and max(lengths) <= predictor.encoder.tokenizer.chars_read
    read = huge[:max(lengths)]
    assert result["explanation"] == predictor.explain(read)["explanation"]
    assert result["intent"] == predictor.predict(huge)["intent"]


def test_word_spans_and_removal():
    assert word_spans("don't pay me, 401k?") == [(0, 5), (6, 9), (10, 12), (14, 18)]
    assert without("don't pay me", (6, 9)) == "don't  me"


def test_nearest_patterns_come_from_the_training_split(predictor, trained):
    patterns = predictor.run.read_training_patterns()
    assert len(patterns.texts) == len(patterns.label_ids) == len(patterns.vectors) > 0
    np.testing.assert_allclose(np.linalg.norm(patterns.vectors, axis=1), 1, atol=2e-3)
    text = patterns.texts[0]
    nearest = predictor.explain(text)["explanation"]["nearest_patterns"]
    assert len(nearest) == 5
    assert nearest[0]["text"] == text and nearest[0]["similarity"] == pytest.approx(1, abs=2e-3)
    assert nearest[0]["intent"] == predictor.labels[patterns.label_ids[0]]
    assert [p["similarity"] for p in nearest] == sorted((p["similarity"] for p in nearest),
                                                        reverse=True)
    manifest = json.loads((trained["out"] / artifacts.MANIFEST_FILE).read_text())
    assert artifacts.TRAINING_PATTERNS_FILE in manifest["files"]


def test_every_answer_says_its_fallback_reason(predictor):
    sure = predictor.predict("hello there friend")
    assert {"intent", "confidence", "all_probabilities", "model_type", "top_k",
            "fallback"} <= set(sure)
    assert (sure["fallback"], sure["fallback_reason"]) == (False, None)
    assert predictor.predict("?!")["fallback_reason"] == "no_words"
    assert predictor.predict("qwxz blorft zzyq")["fallback_reason"] == "no_known_words"
    assert predictor.predict("hello there friend", threshold=1.01)["fallback_reason"] == \
        "threshold"
    assert predictor.predict("hello there friend", threshold=0, margin=1.01)[
        "fallback_reason"] == "margin"
    assert set(FALLBACK_REASONS) == {"no_words", "language", "no_known_words", "threshold",
                                     "margin"}


def test_a_fallback_explains_its_rule_and_the_runner_up(predictor):
    result = predictor.explain("what does an analyst earn", threshold=1.01)
    fallback = result["explanation"]["fallback"]
    ranked = list(result["all_probabilities"].items())
    assert fallback["reason"] == "threshold" and fallback["threshold"] == 1.01
    assert (fallback["runner_up"]["intent"], fallback["runner_up"]["confidence"]) == ranked[1]
    assert fallback["best_guess"]["intent"] == result["explanation"]["answer"] == ranked[0][0]
    assert predictor.explain("what does an analyst earn", threshold=0)["explanation"][
        "fallback"] is None


@needs_lingua
def test_a_message_in_another_language_goes_to_the_fallback(predictor):
    assert predictor.language == "en"
    english = predictor.predict("how much does a data engineer earn in berlin")
    assert english["language"] == "en" and english["fallback_reason"] != "language"
    french = predictor.predict(FRENCH)
    assert (french["intent"], french["fallback_reason"], french["language"]) == (
        "fallback", "language", "fr")
    unguarded = Predictor(predictor.run.single.path,
                          predictor.run.training_patterns_file.with_name(
                              artifacts.PREPROCESSOR_FILE), language_guard=False)
    assert unguarded.predict(FRENCH)["fallback_reason"] != "language"


@needs_lingua
def test_language_detection_and_the_foreign_rule():
    detector = language.Detector("en")
    assert detector.detect("wie viel verdient ein Entwickler in Berlin")[0] == "de"
    assert detector.majority(["how much does a data engineer earn in berlin",
                              "could you please review my resume for mistakes",
                              "bonjour tout le monde, comment allez-vous"]) == "en"
    assert language.is_foreign("fr", 0.99, "en", words=5, known_words=1)
    assert not language.is_foreign("fr", 0.99, "en", words=2, known_words=0), "too short"
    assert not language.is_foreign("fr", 0.99, "en", words=4, known_words=2), "words known"
    assert not language.is_foreign("fr", 0.5, "en", words=5, known_words=0), "not confident"
    assert not language.is_foreign("fr", 0.99, None, words=5, known_words=0), "no run language"
    assert language.training_language(["anything"], given="FR") == "fr"
    with pytest.raises(ConfigError, match="ISO 639-1"):
        language.training_language(["anything"], given="french")


def _as_published_before(out_dir, target):
    """A copy of the run as a version without training patterns would have published it."""
    shutil.copytree(out_dir.resolve() / artifacts.RUNS_DIR / artifacts.CURRENT_RUN, target)
    (target / artifacts.TRAINING_PATTERNS_FILE).unlink()
    pickle_path = target / artifacts.PREPROCESSOR_FILE
    bundle = artifacts._RunUnpickler(pickle_path.open("rb")).load()
    del bundle["language"], bundle["training_patterns_sha256"]
    pickle_path.write_bytes(pickle.dumps(bundle, protocol=pickle.HIGHEST_PROTOCOL))
    manifest = json.loads((target / artifacts.MANIFEST_FILE).read_text())
    manifest.pop("manifest_sha256")
    del manifest["files"][artifacts.TRAINING_PATTERNS_FILE]
    manifest["files"][artifacts.PREPROCESSOR_FILE] = artifacts.sha256(pickle_path)
    manifest["sizes"].pop(artifacts.TRAINING_PATTERNS_FILE)
    manifest["sizes"][artifacts.PREPROCESSOR_FILE] = pickle_path.stat().st_size
    (target / artifacts.MANIFEST_FILE).write_text(json.dumps(artifacts.sealed(manifest)))
    return target


def test_a_run_published_before_opens_and_has_no_neighbours(trained, tmp_path):
    old = _as_published_before(trained["out"], tmp_path / "old")
    predictor = Predictor(old / artifacts.MODEL_FILE, old / artifacts.PREPROCESSOR_FILE)
    assert predictor.language is None
    result = predictor.explain(MESSAGE)
    assert result["explanation"]["nearest_patterns"] == []
    assert "without its training patterns" in result["explanation"][
        "nearest_patterns_unavailable"]
    assert result["explanation"]["words"], "word effects need no stored patterns"


def test_changed_training_patterns_are_refused(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained["out"].resolve() / artifacts.RUNS_DIR / artifacts.CURRENT_RUN, copy)
    patterns = copy / artifacts.TRAINING_PATTERNS_FILE
    patterns.write_bytes(patterns.read_bytes()[:-10] + b"0123456789")
    predictor = Predictor(copy / artifacts.MODEL_FILE, copy / artifacts.PREPROCESSOR_FILE)
    assert predictor.predict("hello")["intent"], "answering never reads them"
    with pytest.raises(ArtifactError, match="does not match"):
        predictor.explain("hello there")


def test_predict_intent_improved_explains_on_request(trained):
    paths = (str(trained["model"]), str(trained["preprocessor"]))
    plain = predict_intent_improved("check my cv please", *paths)
    assert "explanation" not in plain
    explained = predict_intent_improved("check my cv please", *paths, explain=True)
    assert explained["intent"] == plain["intent"]
    assert [w["word"] for w in explained["explanation"]["words"]] == ["check", "my", "cv",
                                                                      "please"]


def test_cli_explains_a_message(trained):
    command = [intentkit_command(), "explain", "what does a tester earn", "--model-dir",
               str(trained["out"]), "--runtime", "numpy"]
    result = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    explained = json.loads(result.stdout)
    assert len(explained["explanation"]["nearest_patterns"]) == 5
    assert [w["word"] for w in explained["explanation"]["words"]] == ["what", "does", "a",
                                                                      "tester", "earn"]
    text = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert text.returncode == 0, text.stderr
    assert "nearest training patterns:" in text.stdout and "tester" in text.stdout
    missing = subprocess.run([intentkit_command(), "explain", "hi", "--model-dir",
                              "no/such/dir", "--runtime", "numpy"],
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1


def test_review_queue_shows_nearest_patterns_and_words(trained, tmp_path, predictor):
    queue = tmp_path / "queue.jsonl"
    settings = review.Settings(queue, store_text=True)
    texts = ["hmm salary or resume", "pay for my cv"]
    review.record_uncertain(texts, predictor.predict_batch(texts, threshold=1.01), settings)
    rows = review.explain_rows(review.read_queue(queue), predictor)
    assert [row["text"] for row in rows] == texts
    for row in rows:
        assert len(row["explanation"]["nearest_patterns"]) == 3
        assert {w["word"] for w in row["explanation"]["words"]} <= set(row["text"].split())
    listed = subprocess.run([intentkit_command(), "review", "--queue", str(queue),
                             "--model-dir", str(trained["out"])],
                            capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("nearest patterns:") == 2 and "words (effect on P(" in \
        listed.stdout
