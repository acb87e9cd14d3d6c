"""The service's lifecycle features, live: A/B variants routed by user, answers and feedback
labelled with variant and model version, /v1 paths and aliases, the client, /metrics, request
logs without texts, `intentkit ab report|promote`, and bad A/B options (one line, exit 2)."""
import json
import shutil
import threading
import time
import urllib.request
from collections import Counter

import pytest
from live_server import call, exchange, require, serving

require("fastapi")
require("uvicorn")

from conftest import republish

from intentkit import artifacts
from intentkit.artifacts import runs
from intentkit.cli import main
from intentkit.serving.app import create_app
from intentkit.serving.client import Client, ClientError
from intentkit.serving.variants import Router, bucket, parse_variants


def two_runs(trained, tmp_path):
    """A copy of the trained model with a second run that always answers the fallback; the
    trained run live. (out, the trained run's id, the second's)."""
    out = tmp_path / "model"
    shutil.copytree(trained["out"], out, symlinks=True)
    first = runs.current_run(out)
    new = republish(out, 1.01)
    runs.promote(out, first)
    return out, first, new


@pytest.fixture
def ab_service(trained, tmp_path):
    """live=the trained run (90 %), new=a run that always answers the fallback (10 %)."""
    out, first, new = two_runs(trained, tmp_path)
    app = create_app(str(out / artifacts.MODEL_FILE), str(out / artifacts.PREPROCESSOR_FILE),
                     feedback_path=str(tmp_path / "feedback.jsonl"), runtime="numpy",
                     variants=[["live", "current", 0.9], ["new", new, 0.1]],
                     request_log=str(tmp_path / "requests.jsonl"))
    with serving(app) as url:
        yield {"url": url, "out": out, "first": first, "new": new, "tmp": tmp_path}


def test_variants_are_sticky_per_user_and_labelled(ab_service):
    client = Client(ab_service["url"])
    versions = {"live": ab_service["first"], "new": ab_service["new"]}
    seen = Counter()
    for user in range(60):
        answers = [client.predict("hello there", user=f"user-{user}") for _ in range(2)]
        answers += client.predict_batch(["hi", "bye"], user=f"user-{user}")
        assert len({a["variant"] for a in answers}) == 1  # the same user, the same variant
        variant = answers[0]["variant"]
        assert all(a["model_version"] == versions[variant] for a in answers)
        assert all(a["fallback"] for a in answers) or variant == "live"
        seen[variant] += 1
    assert set(seen) == {"live", "new"}
    # And the pinned variant run is protected from retention.
    assert ab_service["new"] in runs.pinned_runs(ab_service["out"])


def test_feedback_carries_variant_and_version_and_an_unknown_variant_is_422(ab_service):
    client = Client(ab_service["url"])
    answer = client.predict("hello there", user="u-1")
    row = client.feedback("hello there", answer["intent"], "greeting", variant=answer["variant"],
                          model_version=answer["model_version"])
    assert (row["variant"], row["model_version"]) == (answer["variant"], answer["model_version"])
    with pytest.raises(ClientError, match="variant: 'nope' is not served here") as refused:
        client.feedback("hello there", "greeting", "greeting", variant="nope")
    assert refused.value.status == 422


def test_v1_paths_aliases_schema_metrics_and_request_log(ab_service):
    url = ab_service["url"]
    assert call(url + "/v1/predict", "POST", {"text": "hi", "user": "a"})[0] == 200
    assert call(url + "/predict", "POST", {"text": "hi", "session": "b"})[0] == 200
    status, body, headers = exchange(url + "/v1/model/parse", "POST", {"text": "hi", "user": "a"})
    assert status == 200 and "variant" not in body  # Rasa's shape; the labels in headers
    assert headers["X-Variant"] in ("live", "new") and headers["X-Model-Version"]
    schema = call(url + "/v1/openapi.json")[1]
    assert {"/v1/predict", "/v1/predict/batch", "/v1/feedback", "/v1/health"} <= set(
        schema["paths"])
    assert "/predict" not in schema["paths"]
    metrics = urllib.request.urlopen(url + "/metrics").read().decode()
    assert 'intentkit_requests_total{endpoint="/predict"' in metrics
    assert "intentkit_request_latency_seconds_bucket" in metrics
    assert 'intentkit_cache_lookups_total' in metrics
    log = [json.loads(line) for line in (ab_service["tmp"] / "requests.jsonl").read_text()
           .splitlines()]
    predicted = [row for row in log if row["endpoint"] == "/predict"]
    assert predicted and all(row["variant"] and row["model_version"] for row in predicted)
    assert "hi" not in json.dumps(log)  # no message texts unless asked


def test_the_client_retries_then_reports_an_unreachable_service():
    client = Client("http://127.0.0.1:9", retries=1, backoff=0.01, timeout=0.5)
    with pytest.raises(ClientError, match="cannot reach"):
        client.health()


def test_a_share_of_ten_percent_routes_ten_percent_and_hashing_is_stable():
    router = Router(parse_variants(["live=current", "new=X"], ["new=0.1"]))
    share = sum(router.choose(f"user-{n}").name == "new" for n in range(10_000)) / 10_000
    assert abs(share - 0.1) < 0.02
    assert all(router.choose(f"user-{n}") == router.choose(f"user-{n}") for n in range(500))
    assert bucket("user-1") == bucket("user-1") != bucket("user-2")


@pytest.mark.parametrize("arguments, message", [
    (["--variant", "a=current", "--variant", "b=current", "--traffic", "a=0.5",
      "--traffic", "b=0.2"], "shares add up to 0.7, not 1"),
    (["--variant", "a=current", "--variant", "b=current", "--traffic", "c=0.5"],
     "no --variant c"),
    (["--variant", "a=current", "--variant", "b=20990101T000000000000-deadbeef"],
     "no run '20990101T000000000000-deadbeef'"),
    (["--variant", "a=current", "--variant", "b=DAMAGED"], "fails verification"),
    (["--cache-url", "http://127.0.0.1:6379"], "--cache-url 'http://127.0.0.1:6379'"),
])
def test_bad_ab_options_are_one_line_and_exit_2(trained, tmp_path, arguments, message, caplog):
    out = tmp_path / "model"
    shutil.copytree(trained["out"], out, symlinks=True)
    damaged = republish(out, 0.5)
    model_file = out / artifacts.RUNS_DIR / damaged / artifacts.MODEL_FILE
    model_file.write_bytes(model_file.read_bytes()[:-10])
    runs.rollback(out)
    live = runs.current_run(out)
    arguments = [argument.replace("DAMAGED", damaged) for argument in arguments]
    assert main(["serve", "--model-dir", str(out), *arguments]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and message in errors[0], errors
    assert len(errors[0].splitlines()) == 1
    assert runs.current_run(out) == live  # nothing changed


def test_ab_report_and_promote_the_winner(ab_service, capsys):
    client = Client(ab_service["url"])
    feedback = ab_service["tmp"] / "feedback.jsonl"
    for n in range(40):  # live answers right, new (always the fallback) wrong
        for variant in ("live", "new"):
            answer = client.predict("what does a data scientist earn", user=f"{variant}{n}")
            client.feedback("what does a data scientist earn", answer["intent"], "salary",
                            variant=answer["variant"], model_version=answer["model_version"])
    rows = [json.loads(line) for line in feedback.read_text().splitlines()]
    feedback.write_text("".join(json.dumps({**row, "confirmed": True}) + "\n" for row in rows))
    assert main(["ab", "report", "--feedback-in", str(feedback), "--request-log",
                 str(ab_service["tmp"] / "requests.jsonl"), "--control", "new", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    live = report["variants"]["live"]
    assert report["variants"]["new"]["accuracy"] == 0.0
    assert live["significant"] and live["p_value_vs_control"] < 0.05
    assert report["variants"]["new"]["fallback_rate"] == 1.0
    runs.promote(ab_service["out"], ab_service["new"])  # the loser is live; the winner wins
    assert main(["ab", "promote", "--feedback-in", str(feedback), "-m", str(ab_service["out"]),
                 "--control", "new"]) == 0
    assert runs.current_run(ab_service["out"]) == ab_service["first"]


def test_promote_and_rollback_under_load_fail_no_request_and_label_every_answer(trained,
                                                                              tmp_path):
    """8 clients ask without pause (as many as the admission limit) while the live run is
    promoted then rolled back: no request fails (no 503 either), every answer names the run
    that produced it, and each switch shows within 2 s."""
    out, first, new = two_runs(trained, tmp_path)
    app = create_app(str(out / artifacts.MODEL_FILE), str(out / artifacts.PREPROCESSOR_FILE),
                     runtime="numpy", max_in_flight=8)
    answers, stop = [], threading.Event()

    def ask(client):
        while not stop.is_set():
            status, body = call(url + "/v1/predict", "POST", {"text": f"hello {client}"})
            answers.append((time.monotonic(), status, body))
    with serving(app) as url:
        threads = [threading.Thread(target=ask, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        switched = []
        time.sleep(1)
        for action, expected in ((lambda: runs.promote(out, new), new),
                                 (lambda: runs.rollback(out), first)):
            action()
            switched.append((time.monotonic(), expected))
            time.sleep(3)
        stop.set()
        for thread in threads:
            thread.join()
    assert len(answers) > 50
    assert [(status, body) for _, status, body in answers if status != 200] == []
    assert {body["model_version"] for _, _, body in answers} == {first, new}
    for at, expected in switched:
        # From 2 s after a switch to the next one, every answer comes from its run.
        later = [body["model_version"] for when, _, body in answers if at + 2 < when < at + 2.9]
        assert later and set(later) == {expected}, (expected, Counter(later))


def test_a_worker_takes_requests_only_once_wordnet_is_loaded(trained):
    """WordNet loads in the background for seconds (12 s on a busy machine): requests of a
    worker that reported ready before it waited that long, and clients timed out."""
    from intentkit.text import wordnet
    wordnet.wordnet.cache_clear()  # as in a fresh worker process
    app = create_app(trained["model"], trained["preprocessor"], runtime="numpy")
    with serving(app) as url:
        assert wordnet._load_wordnet.cache_info().currsize == 1
        status, body = call(url + "/v1/predict", "POST", {"text": "checking my resumes"})
    assert status == 200 and body["intent"]
