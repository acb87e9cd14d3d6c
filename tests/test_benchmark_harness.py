"""benchmarks/run.py on a dataset directory made here: no val.json (carved from train), and
out-of-scope test rows. Checks the harness end to end, not the figures it measures."""
import json

import pytest
from conftest import ROOT, SMALL_INTENTS, run_script, write_intents

pytestmark = pytest.mark.slow  # trains models (minutes)

OUT_OF_SCOPE = ["what is the capital of france", "play some jazz music", "order a pizza",
                "how tall is mount everest"]
SYSTEMS = ["ours: default answer (best on validation)", "ours: single CNN-BiLSTM",
           "ours: ensemble (CNN-BiLSTM + MiniLM head + CNN)",
           "TF-IDF words + logistic regression", "TF-IDF words + chars + LinearSVC",
           "frozen MiniLM embeddings + logistic regression"]


def test_harness_scores_every_system_on_a_directory_without_val(tmp_path):
    dataset = tmp_path / "tiny"
    dataset.mkdir()
    training = {tag: p[:9] for tag, p in SMALL_INTENTS.items()}
    # A public set's brackets are literal (CLINC150: "is there a travel alert for [country]"),
    # not an annotation of the intents file's notation.
    first = next(iter(training))
    training[first] = [*training[first], "tell me about [country] please"]
    write_intents(dataset / "train.json", training)
    test_rows = ([{"text": text, "intent": tag} for tag, p in SMALL_INTENTS.items()
                  for text in p[9:]] + [{"text": text, "intent": "oos"} for text in OUT_OF_SCOPE])
    (dataset / "test.json").write_text(json.dumps(test_rows))
    out = tmp_path / "results" / "tiny"

    # --transformer reaches our pipeline: scratch, the seed's member that reads token ids.
    result = run_script(ROOT / "benchmarks" / "run.py", "--datasets", dataset, "--quick",
                        "--transformer", "scratch", "--out", out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    report = json.loads(out.with_suffix(".json").read_text())
    assert report["transformer"] == "scratch"
    assert report["datasets"]["tiny"]["manifest"]["member_inputs"]["transformer"] == "token_ids"
    systems = report["results"]["tiny"]
    assert list(systems) == SYSTEMS
    for name, scores in systems.items():
        assert 0 <= scores["accuracy"] <= 1 and 0 <= scores["macro_f1"] <= 1, name
        assert scores["test_rows"] == len(test_rows) - len(OUT_OF_SCOPE)
        assert 0 <= scores["oos_recall"] <= 1 and 0 <= scores["oos_precision"] <= 1, name
        # Rows sent to the fallback count as wrong: never above the accuracy without it.
        assert 0 <= scores["in_scope_accuracy_at_threshold"] <= scores["accuracy"], name
        assert scores["latency_p50_ms"] > 0 and scores["batch_texts_per_second"] > 0
    # The pipeline carved its validation rows from train.json; the peers used the same rows.
    details = report["datasets"]["tiny"]
    assert details["val_source"] == "carved from train.json"
    assert details["train_rows"] + details["val_rows"] == 9 * len(SMALL_INTENTS) + 1
    assert details["manifest"]["splits"]["val"] == details["val_rows"]
    table = out.with_suffix(".md").read_text()
    assert all(name in table for name in SYSTEMS) and "OOS recall" in table


def test_few_shot_sets_take_n_patterns_per_intent_with_one_seeded_generator(tmp_path):
    import random
    common = benchmark_common()
    train = write_intents(tmp_path / "train.json")
    document = common.few_shot_document(train, 5)
    rng = random.Random(0)
    for intent, (tag, patterns) in zip(document["intents"], SMALL_INTENTS.items()):
        assert intent["tag"] == tag and intent["patterns"] == rng.sample(patterns, 5)


def test_a_public_set_keeps_its_annotations_and_its_brackets_that_are_not_one(tmp_path):
    """SNIPS's `[value](entity)` patterns train entities; CLINC150's "[country]" is text."""
    from intentkit.data.annotations import parse_pattern
    path = tmp_path / "train.json"
    benchmark_common().write_plain_patterns({"intents": [{"tag": "a", "responses": [], "patterns": [
        "find [python](skill) jobs", "is there a travel alert for [country]"]}]}, path)
    annotated, literal = (parse_pattern(p) for p in
                          json.loads(path.read_text())["intents"][0]["patterns"])
    assert annotated.text == "find python jobs"
    assert [(s.start, s.end, s.entity) for s in annotated.spans] == [(5, 11, "skill")]
    assert literal.text == "is there a travel alert for [country]" and not literal.spans


def benchmark_common():
    """benchmarks/common.py, loaded as a module (benchmarks/ is not a package)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("benchmark_common",
                                                  ROOT / "benchmarks" / "common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    return common
