"""Serving: cached loading, the error contract, fallback, batch and thread safety."""
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import reweight_opened_runs

from intentkit import artifacts
from intentkit.encoders.minilm import sentence_encoder
from intentkit.models import numpy_runtime
from intentkit.serving import predictor as serving
from intentkit.serving.predictor import Predictor, get_predictor, predict_intent_improved

MESSAGES = ["hello there friend", "what is the salary of a tester", "check my cv please",
            "bye for now", "how much do analysts earn", "good night"]


@pytest.fixture
def paths(trained):
    return {"model_path": trained["model"], "preprocessor_path": trained["preprocessor"]}


@pytest.fixture
def load_counter(monkeypatch):
    calls = []
    real = artifacts.load_model
    real_numpy_loader = serving._numpy_loader

    def counting(path):
        calls.append(path)
        return real(path)

    def counting_numpy_loader():  # the default ("auto") runtime loads with NumPy
        load = real_numpy_loader()

        def counting_numpy(path):
            calls.append(path)
            return load(path)
        return counting_numpy
    monkeypatch.setattr(artifacts, "load_model", counting)
    monkeypatch.setattr(serving, "_numpy_loader", counting_numpy_loader)
    serving._cache.clear()
    return calls


def test_second_call_does_not_reload(paths, load_counter):
    first = predict_intent_improved("hello", **paths)
    loads = len(load_counter)
    for _ in range(5):
        assert predict_intent_improved("hello", **paths) == first
    assert loads >= 1 and len(load_counter) == loads


def test_changed_file_on_disk_is_reloaded(trained, tmp_path, load_counter):
    copy = tmp_path / "model"
    shutil.copytree(trained["out"], copy)
    kwargs = {"model_path": copy / artifacts.MODEL_FILE,
              "preprocessor_path": copy / artifacts.PREPROCESSOR_FILE}
    first = get_predictor(**kwargs, use_ensemble=False)
    assert get_predictor(**kwargs, use_ensemble=False) is first
    stat = os.stat(kwargs["model_path"])
    os.utime(kwargs["model_path"], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert get_predictor(**kwargs, use_ensemble=False) is not first
    assert len(load_counter) == 2


def test_errors_follow_the_seed_contract_or_raise_when_strict(paths, tmp_path):
    result = predict_intent_improved("hi", model_path=tmp_path / "missing.h5",
                                     preprocessor_path=paths["preprocessor_path"],
                                     use_ensemble=False)
    assert result["model_type"] == "error" and result["intent"] == "unknown"
    assert result["confidence"] == 0.0 and result["all_probabilities"] == {}
    assert "missing.h5" in result["error"]
    with pytest.raises(artifacts.ArtifactError, match="missing.h5"):
        predict_intent_improved("hi", model_path=tmp_path / "missing.h5",
                                preprocessor_path=paths["preprocessor_path"], use_ensemble=False,
                                strict=True)
    for bad in (None, 42, ["hi"]):
        assert predict_intent_improved(bad, **paths)["model_type"] == "error"


def test_model_from_another_run_is_refused(trained, tmp_path):
    mixed = tmp_path / "mixed.h5"
    shutil.copy(trained["out"] / "ensemble_models" / "transformer.h5", mixed)
    result = predict_intent_improved("hi", model_path=mixed,
                                     preprocessor_path=trained["preprocessor"],
                                     use_ensemble=False)
    assert "different training runs" in result["error"]


def test_truncated_pickle_is_refused(trained, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(trained["out"], copy)
    broken = copy / artifacts.PREPROCESSOR_FILE
    broken.write_bytes(broken.read_bytes()[:100])
    result = predict_intent_improved("hi", model_path=copy / artifacts.MODEL_FILE,
                                     preprocessor_path=broken)
    assert "does not match the manifest.json" in result["error"]


def test_threshold_fallback_and_top_k(paths):
    predictor = Predictor(**paths)
    confident = predictor.predict("what is the salary of a tester", top_k=2, threshold=0.0)
    assert not confident["fallback"] and confident["intent"] == confident["top_k"][0]["intent"]
    assert len(confident["top_k"]) == 2
    unsure = predictor.predict("what is the salary of a tester", top_k=3, threshold=1.01)
    assert unsure["fallback"] and unsure["intent"] == "fallback"
    assert [c["intent"] for c in unsure["top_k"]][:2] == [c["intent"] for c in confident["top_k"]]
    assert 0 < predictor.threshold < 1
    gap = confident["top_k"][0]["confidence"] - confident["top_k"][1]["confidence"]
    ambiguous = predictor.predict("what is the salary of a tester", threshold=0.0,
                                  margin=gap + 0.01)
    assert ambiguous["fallback"] and ambiguous["intent"] == "fallback"
    assert not predictor.predict("what is the salary of a tester", threshold=0.0,
                                 margin=gap - 0.01)["fallback"]


@pytest.mark.parametrize("text", ["", "   ", "?!...", "\x00\x07"])
def test_input_without_words_gets_the_fallback(paths, text):
    result = Predictor(**paths).predict(text)
    assert result["fallback"] and result["intent"] == "fallback" and result["confidence"] == 0.0


def test_a_100k_character_message_is_answered(paths):
    result = predict_intent_improved("what does a data scientist earn " * 3_000, **paths)
    assert result["model_type"] in ("single", "ensemble") and result["intent"] in (
        "salary", artifacts.DEFAULT_FALLBACK_INTENT)


def test_batch_equals_single(paths):
    predictor = Predictor(**paths)
    batch = predictor.predict_batch(MESSAGES)
    for text, from_batch in zip(MESSAGES, batch):
        single = predictor.predict(text)
        assert single["intent"] == from_batch["intent"]
        assert np.isclose(single["confidence"], from_batch["confidence"], atol=1e-6)


def test_threads_give_the_same_answers_as_sequential_calls(paths):
    expected = [predict_intent_improved(t, **paths) for t in MESSAGES]
    work = [MESSAGES[i % len(MESSAGES)] for i in range(8 * 200)]  # 8 threads x 200 calls

    def call(text):
        return predict_intent_improved(text, **paths)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(call, work))
    for position, result in enumerate(results):
        reference = expected[position % len(MESSAGES)]
        assert result["intent"] == reference["intent"]
        assert np.isclose(result["confidence"], reference["confidence"], atol=1e-6)


def test_ensemble_combines_members_with_their_weights(trained):
    spec = json.loads((trained["out"] / artifacts.ENSEMBLE_DIR / artifacts.ENSEMBLE_SPEC)
                      .read_text())
    weights = {m["name"]: m["weight"] for m in spec["members"]}
    manifest = json.loads((trained["out"] / artifacts.MANIFEST_FILE).read_text())
    assert weights == manifest["ensemble_weights"] and np.isclose(sum(weights.values()), 1.0)
    ensemble = Predictor(trained["model"], trained["preprocessor"], use_ensemble=True)
    single = Predictor(trained["model"], trained["preprocessor"], use_ensemble=False)
    members = {m["name"]: artifacts.load_model(trained["out"] / "ensemble_models" / m["file"])
               for m in spec["members"]}
    # The pretrained member reads all-MiniLM-L6-v2 sentence embeddings, the others token ids.
    assert {m["name"]: m["input"] for m in spec["members"]} == {
        "cnn_bilstm": "token_ids", "transformer": "sentence_embedding", "cnn": "token_ids"}
    ids = single.preprocessor.transform(MESSAGES)
    inputs = {"token_ids": ids, "sentence_embedding": sentence_encoder().embed(MESSAGES)}
    expected = sum(m["weight"] * members[m["name"]](inputs[m["input"]], training=False).numpy()
                   for m in spec["members"])
    assert np.allclose(ensemble.predict_proba(MESSAGES), expected, atol=1e-5)
    assert np.allclose(single.predict_proba(MESSAGES),
                       members["cnn_bilstm"](ids, training=False).numpy(), atol=1e-5)


@pytest.mark.parametrize("runtime", ["keras", "numpy"])
@pytest.mark.parametrize("weights", [{"cnn_bilstm": 0.5, "transformer": 0.0, "cnn": 0.5},
                                     {"cnn_bilstm": 0.0, "transformer": 0.7, "cnn": 0.3}])
def test_members_with_zero_weight_are_neither_loaded_nor_run(trained, monkeypatch, runtime,
                                                               weights):
    reweight_opened_runs(monkeypatch, lambda name, _: weights[name])
    loaded = []
    module, name = ((artifacts, "load_model") if runtime == "keras"
                    else (numpy_runtime, "load_numpy_model"))
    real_load = getattr(module, name)
    monkeypatch.setattr(module, name, lambda path: loaded.append(Path(path).stem)
                        or real_load(path))
    ensemble = Predictor(trained["model"], trained["preprocessor"], use_ensemble=True,
                         runtime=runtime, cache_size=0)

    counted = {member for member, weight in weights.items() if weight > 0}
    assert set(loaded) == counted
    assert (ensemble.encoder is not None) == ("transformer" in counted)
    directory = trained["out"] / artifacts.ENSEMBLE_DIR
    ids = ensemble.preprocessor.transform(MESSAGES)
    inputs = {"cnn_bilstm": ids, "cnn": ids,
              "transformer": sentence_encoder().embed(MESSAGES)}
    expected = sum(weight * artifacts.load_model(directory / f"{member}.h5")(
        inputs[member], training=False).numpy() for member, weight in weights.items() if weight)
    assert np.allclose(ensemble.predict_proba(MESSAGES), expected, atol=1e-5)


def test_cli_prints_json_for_one_text_and_for_a_file(trained, tmp_path):
    from conftest import ROOT, run_script
    args = ["--model", trained["model"], "--preprocessor", trained["preprocessor"]]
    one = run_script(ROOT / "predict.py", "good morning", *args)
    assert one.returncode == 0, one.stderr
    assert '"intent"' in one.stdout
    lines = tmp_path / "lines.txt"
    lines.write_text("hello\nbye\n\nmy resume\n")
    many = run_script(ROOT / "predict.py", "--file", lines, *args)
    assert many.returncode == 0 and len(many.stdout.strip().splitlines()) == 3
    shell = run_script(ROOT / "predict.py", *args, stdin="hello there\n\n")
    assert shell.returncode == 0 and "(" in shell.stdout


def test_a_half_replaced_model_keeps_the_loaded_one_answering(trained, tmp_path, load_counter):
    copy = tmp_path / "model"
    shutil.copytree(trained["out"], copy)
    kwargs = {"model_path": copy / artifacts.MODEL_FILE,
              "preprocessor_path": copy / artifacts.PREPROCESSOR_FILE, "use_ensemble": False}
    before = predict_intent_improved("hello there", **kwargs)
    shutil.copy(copy / "ensemble_models" / "transformer.h5", kwargs["model_path"])  # mid-swap
    during = predict_intent_improved("hello there", **kwargs)
    assert during == before
    shutil.copy(trained["model"], kwargs["model_path"])  # the swap completes
    assert predict_intent_improved("hello there", **kwargs) == before


def test_a_predictor_reads_one_run_and_follows_the_current_link(trained, tmp_path):
    """Every file comes from the run that `.runs/current` named at load time, and another run
    published later is picked up even when its files have the same times and sizes (a run
    restored with `cp -p`): the files the names lead to changed."""
    out = tmp_path / "served"
    shutil.copytree(trained["out"], out, symlinks=True)
    kwargs = {"model_path": out / artifacts.MODEL_FILE,
              "preprocessor_path": out / artifacts.PREPROCESSOR_FILE, "use_ensemble": True}
    first = get_predictor(**kwargs)
    run_dir = (out / artifacts.RUNS_DIR / artifacts.CURRENT_RUN).resolve()
    assert len(first.signatures) > 3 and all(
        Path(path).is_relative_to(run_dir) for path in first.signatures), first.signatures
    staging = out / ".staging-restored"
    shutil.copytree(run_dir, staging)  # copy2: the same modification times
    artifacts.publish(staging, out)
    assert first.is_stale()
    second = get_predictor(**kwargs)
    assert second is not first and second.run_info["run"] != first.run_info["run"]
    assert second.predict("hello there") == first.predict("hello there")


def test_numpy_runtime_gives_the_keras_answers_without_tensorflow(trained):
    from conftest import run_script
    code = ("import sys, json; from predict import predict_intent_improved as p; "
            "r = [p(t, model_path=sys.argv[1], preprocessor_path=sys.argv[2], use_ensemble=e, "
            "runtime='numpy') for t in sys.argv[3:] for e in (False, True)]; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules; "
            "print(json.dumps(r))")
    result = run_script("-c", code, trained["model"], trained["preprocessor"], *MESSAGES)
    assert result.returncode == 0, result.stderr
    answers = iter(json.loads(result.stdout))
    for text in MESSAGES:
        for ensemble in (False, True):
            light = next(answers)
            keras_answer = Predictor(trained["model"], trained["preprocessor"],
                                     use_ensemble=ensemble).predict(text)
            assert light["intent"] == keras_answer["intent"]
            assert np.isclose(light["confidence"], keras_answer["confidence"], atol=1e-4)


def test_an_edited_pickle_is_refused_before_unpickling(trained, tmp_path, monkeypatch):
    copy = tmp_path / "model"
    shutil.copytree(trained["out"], copy)
    pickle_path = copy / artifacts.PREPROCESSOR_FILE
    pickle_path.write_bytes(pickle_path.read_bytes() + b"edited")
    unpickled = []

    class Recording(artifacts._RunUnpickler):
        def load(self):
            unpickled.append(self)
            return super().load()
    monkeypatch.setattr(artifacts, "_RunUnpickler", Recording)
    result = predict_intent_improved("hi", model_path=copy / artifacts.MODEL_FILE,
                                     preprocessor_path=pickle_path)
    assert "does not match" in result["error"] and "manifest.json" in result["error"]
    assert unpickled == []
    Predictor(trained["model"], trained["preprocessor"])
    assert unpickled, "the recording unpickler is the one in use"


def test_threads_see_the_old_or_the_new_run_while_retrains_switch(trained, tmp_path):
    """Run "never" never falls back, run "always" always does and uses another model file:
    a mix of the two would fail its checksum check, so every answer must be one of the two."""
    out = tmp_path / "served"
    out.mkdir()
    run = artifacts.open_published(trained["out"], artifacts.SINGLE)
    # Another model that reads token ids, as the single model does.
    other_model = trained["out"] / artifacts.ENSEMBLE_DIR / "cnn.h5"

    def stage(threshold, model):
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
        single = artifacts.RunMember("cnn_bilstm", model=artifacts.load_model(model))
        replace(run, single=single, ensemble=None, default_model="single",
                fallback_thresholds={"single": threshold}).write(staging)
        artifacts.write_manifest(staging, {})
        return staging

    kwargs = {"model_path": out / artifacts.MODEL_FILE,
              "preprocessor_path": out / artifacts.PREPROCESSOR_FILE}
    artifacts.publish(stage(0.0, trained["model"]), out)
    results, stop = [], False

    def ask():
        while not stop:
            results.append(predict_intent_improved("what is the salary of a tester", **kwargs))
    with ThreadPoolExecutor(max_workers=8) as pool:
        workers = [pool.submit(ask) for _ in range(8)]
        for switch in range(6):
            threshold, model = (1.01, other_model) if switch % 2 == 0 else (0.0, trained["model"])
            artifacts.publish(stage(threshold, model), out)
            time.sleep(1)  # let the threads reload and answer from this run
        stop = True
        for worker in workers:
            worker.result()
    assert results and all(r["model_type"] == "single" for r in results), \
        [r for r in results if r["model_type"] != "single"][:3]
    assert {r["fallback"] for r in results} == {True, False}, "both runs were served"


def test_the_default_answer_comes_from_the_model_best_on_validation(trained):
    run = artifacts.open_published(trained["out"])
    manifest = json.loads((trained["out"] / artifacts.MANIFEST_FILE).read_text())
    val_accuracy = {m.name: m.val_accuracy for m in run.ensemble}
    assert run.default_model == manifest["default_model"] in ("single", "ensemble")
    assert f"**{run.default_model}**" in (trained["out"] / "model_card.md").read_text()
    default = Predictor(trained["model"], trained["preprocessor"])
    forced = {flag: Predictor(trained["model"], trained["preprocessor"], use_ensemble=flag)
              for flag in (True, False)}
    assert default.model_type == run.default_model
    assert forced[True].model_type == "ensemble" and forced[False].model_type == "single"
    answer = default.predict(MESSAGES[1])
    same = forced[run.default_model == "ensemble"].predict(MESSAGES[1])
    assert answer == same and answer["model_type"] == run.default_model
    assert val_accuracy["cnn_bilstm"] is not None


@pytest.fixture
def counted_forward():
    """Wraps a Predictor's forward pass to record the texts it ran on."""
    def wrap(predictor):
        ran, real = [], predictor._forward

        def forward(features):
            ran.append(len(features[artifacts.TOKEN_IDS]))
            return real(features)
        predictor._forward = forward
        return ran
    return wrap


def test_a_cached_message_is_answered_without_running_the_model(paths, counted_forward):
    predictor = Predictor(**paths, cache_size=10)
    first = predictor.predict("hello there friend")
    ran = counted_forward(predictor)
    assert predictor.predict("hello there friend") == first
    assert predictor.predict("hello there friend", top_k=1)["top_k"] == first["top_k"][:1]
    assert ran == []
    predictor.predict("hello there friend!")  # the exact text is the key
    assert ran == [1]
    assert (predictor.cache.hits, predictor.cache.misses) == (2, 2)


def test_a_batch_runs_each_distinct_uncached_message_once(paths, counted_forward):
    predictor = Predictor(**paths, cache_size=10)
    ran = counted_forward(predictor)
    results = predictor.predict_batch(["bye for now", "good night", "bye for now"])
    assert ran == [2] and results[0] == results[2]
    assert predictor.predict_batch(["good night", "check my cv please"])[0] == results[1]
    assert ran == [2, 1]


def test_the_cache_keeps_only_the_most_recent_messages(paths, counted_forward):
    predictor = Predictor(**paths, cache_size=3)
    ran = counted_forward(predictor)
    for text in MESSAGES[:5]:
        predictor.predict(text)
    assert len(predictor.cache) == 3 and ran == [1] * 5
    predictor.predict(MESSAGES[4])  # still cached
    assert ran == [1] * 5
    predictor.predict(MESSAGES[0])  # evicted: run again
    assert ran == [1] * 6
    assert len(predictor.cache) == 3


def test_cache_size_zero_and_long_messages_are_not_cached(paths, counted_forward):
    off = Predictor(**paths, cache_size=0)
    ran = counted_forward(off)
    off.predict("hello")
    off.predict("hello")
    assert ran == [1, 1] and len(off.cache) == 0
    on = Predictor(**paths, cache_size=10)
    on.predict("salary " * serving.MAX_CACHED_CHARS)
    assert len(on.cache) == 0
    with pytest.raises(ValueError, match="cache size"):
        serving.MessageCache(-1)


def test_a_reloaded_model_does_not_answer_from_the_old_cache(trained, tmp_path, counted_forward):
    copy = tmp_path / "model"
    shutil.copytree(trained["out"], copy)
    kwargs = {"model_path": copy / artifacts.MODEL_FILE,
              "preprocessor_path": copy / artifacts.PREPROCESSOR_FILE, "use_ensemble": False}
    serving._cache.clear()
    old = get_predictor(**kwargs)
    old.predict("hello there")
    assert len(old.cache) == 1
    stat = os.stat(kwargs["model_path"])
    os.utime(kwargs["model_path"], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    new = get_predictor(**kwargs)
    assert new is not old and len(new.cache) == 0
    ran = counted_forward(new)
    new.predict("hello there")
    assert ran == [1]


def test_threads_share_a_small_cache_safely(paths):
    """8 threads over more messages than the cache holds: every answer is the uncached one,
    the cache never outgrows its size, and every lookup is counted."""
    texts = [f"{text} {n}" for text in MESSAGES for n in range(3)]
    expected = Predictor(**paths, cache_size=0).predict_batch(texts)
    predictor = Predictor(**paths, cache_size=5)
    work = [i % len(texts) for i in range(8 * 150)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: predictor.predict(texts[i]), work))
    for i, result in zip(work, results):
        assert result["intent"] == expected[i]["intent"]
        assert np.isclose(result["confidence"], expected[i]["confidence"], atol=1e-6)
    assert len(predictor.cache) == 5
    assert predictor.cache.hits + predictor.cache.misses == len(work)


@pytest.mark.parametrize("use_ensemble", [False, True])
def test_numpy_and_keras_runtimes_agree_to_1e_5(paths, use_ensemble):
    texts = MESSAGES + ["", "a much longer message about the salary of a senior data engineer"]
    keras_runtime = Predictor(**paths, use_ensemble=use_ensemble, cache_size=0)
    numpy_runtime = Predictor(**paths, use_ensemble=use_ensemble, runtime="numpy", cache_size=0)
    np.testing.assert_allclose(numpy_runtime.predict_proba(texts),
                               keras_runtime.predict_proba(texts), atol=1e-5)


def test_a_stream_is_answered_in_order_reading_a_bounded_number_of_lines_ahead(paths):
    predictor = Predictor(**paths, cache_size=0)
    texts = [f"{MESSAGES[i % len(MESSAGES)]} {i}" for i in range(3_000)]
    read = []

    def lazily():
        for text in texts:
            read.append(text)
            yield text
    results = predictor.predict_stream(lazily(), chunk_size=200, workers=2)
    first = next(results)
    assert len(read) <= 3 * 200, "read more than workers + 1 chunks ahead"
    answers = [first, *results]
    assert len(read) == len(answers) == len(texts)
    expected = predictor.predict_batch(texts)
    assert [a["intent"] for a in answers] == [e["intent"] for e in expected]
    np.testing.assert_allclose([a["confidence"] for a in answers],
                               [e["confidence"] for e in expected], atol=1e-6)


def test_cli_file_answers_every_line_in_input_order(trained, tmp_path):
    from conftest import ROOT, run_script
    texts = [f"{MESSAGES[i % len(MESSAGES)]} number {i}" for i in range(2_500)]
    lines = tmp_path / "lines.txt"
    lines.write_text("\n".join(texts[:1200] + ["", "  "] + texts[1200:]) + "\n")
    result = run_script(ROOT / "predict.py", "--file", lines, "--runtime", "numpy", "--model",
                        trained["model"], "--preprocessor", trained["preprocessor"])
    assert result.returncode == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    expected = Predictor(trained["model"], trained["preprocessor"]).predict_batch(texts)
    assert [a["intent"] for a in answers] == [e["intent"] for e in expected]
    np.testing.assert_allclose([a["confidence"] for a in answers],
                               [e["confidence"] for e in expected], atol=1e-4)
    assert "2,500/2,500 messages" in result.stderr


def test_the_predict_command_uses_its_cache_size(trained, monkeypatch, capsys):
    from intentkit import cli
    made = []
    real = serving.get_predictor

    def recording(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]
    monkeypatch.setattr(serving, "get_predictor", recording)
    assert cli.main(["predict", "--model", str(trained["model"]), "--preprocessor",
                     str(trained["preprocessor"]), "--cache-size", "7", "hello"]) == 0
    assert made[0].cache.size == 7  # the option once went unused: the default cache served
    assert '"intent"' in capsys.readouterr().out
