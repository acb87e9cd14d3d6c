"""intentkit.serving.spark on a real Spark in local[2]: labels as the Predictor does, null and
non-string texts get the fallback, and an executor that cannot open the run fails the job with
one line (library and `intentkit predict --spark`).

One Spark session serves the module (a JVM start costs tens of seconds); the command's success
path runs in this process on that session, and only the failure, whose point is what reaches
stderr, starts a JVM of its own."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import SMALL_INTENTS, intentkit_command
from live_server import missing

from intentkit import cli
from intentkit.errors import ArtifactError

try:
    import pyspark  # noqa: F401
except ImportError:
    missing("pyspark is missing: pip install 'intentkit[spark]'")
if shutil.which("java") is None:
    missing("java is missing: apt-get install openjdk-17-jre-headless")

from intentkit.serving import spark as intentkit_spark

pytestmark = pytest.mark.slow  # starts a JVM and Python workers

TEXTS = [p for patterns in SMALL_INTENTS.values() for p in patterns[:3]] + [
    "what do nurses earn in Berlin?", "???", ""]


@pytest.fixture(scope="module")
def session():
    spark = intentkit_spark.session("local[2]", app_name="intentkit-tests")
    yield spark
    spark.stop()


@pytest.fixture(scope="module")
def predictor(trained):
    from intentkit.serving.predictor import Predictor
    return Predictor(trained["model"], trained["preprocessor"], runtime="numpy", cache_size=0)


def test_a_column_is_labelled_as_the_predictor_does(session, trained, predictor):
    rows = [(i, text) for i, text in enumerate(TEXTS)] + [(len(TEXTS), None)]
    df = session.createDataFrame(rows, "id long, text string").repartition(2)
    labelled = intentkit_spark.label_column(df, "text", trained["out"])
    got = {row["id"]: row for row in labelled.collect()}
    assert len(got) == len(rows)
    expected = predictor.predict_batch(TEXTS)
    for i, answer in enumerate(expected):
        assert got[i]["text"] == TEXTS[i]
        assert got[i]["intent"] == answer["intent"], TEXTS[i]
        assert got[i]["fallback"] == answer["fallback"]
        assert got[i]["confidence"] == pytest.approx(answer["confidence"], abs=1e-5)
        assert [c["intent"] for c in json.loads(got[i]["top_k"])] == [
            c["intent"] for c in answer["top_k"]]
    null_row = got[len(TEXTS)]
    assert (null_row["intent"], null_row["confidence"], null_row["fallback"],
            null_row["entities"]) == (predictor.fallback_intent, 0.0, True, "[]")


def test_entities_are_labelled_as_the_predictor_finds_them(session, entity_run):
    from intentkit.serving.predictor import Predictor
    texts = ["find python jobs in Berlin", "how much does a nurse make in NYC", "hello there"]
    df = session.createDataFrame(list(enumerate(texts)), "id long, text string")
    got = {row["id"]: json.loads(row["entities"])
           for row in intentkit_spark.label_column(df, "text", entity_run).collect()}
    expected = Predictor.from_dir(entity_run, runtime="numpy").predict_batch(texts)
    assert got[0], "the run finds entities in a job search"
    for i, answer in enumerate(expected):
        assert got[i] == answer["entities"], texts[i]


def test_non_string_texts_get_the_fallback(session, trained):
    df = session.createDataFrame([(1, 42), (2, None)], "id long, text long")
    rows = intentkit_spark.label_column(df, "text", trained["out"]).collect()
    assert {(r["intent"], r["fallback"], r["confidence"]) for r in rows} == {
        ("fallback", True, 0.0)}


def test_an_executor_that_cannot_open_the_run_fails_with_one_line(session, tmp_path):
    df = session.createDataFrame([(1, "hello")], "id long, text string")
    labelled = intentkit_spark.label_column(df, "text", tmp_path / "nowhere", ship=False)
    with pytest.raises(ArtifactError) as caught:
        with intentkit_spark.run_job():
            labelled.collect()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"cannot open the run in {tmp_path / 'nowhere'}")


def threshold_between_answers(predictor):
    """A fallback threshold that half the texts' answers are above (none within 1e-3 of it):
    the command's answers show whether --threshold reached the executors."""
    confidences = sorted(a["confidence"] for a in predictor.predict_batch(TEXTS))
    gaps = [i for i in range(len(confidences) - 1) if confidences[i + 1] - confidences[i] > 2e-3]
    middle = min(gaps, key=lambda i: abs(i - len(confidences) // 2))
    return (confidences[middle] + confidences[middle + 1]) / 2


def test_a_run_submitted_with_archives_is_found_by_its_name(session, trained, predictor,
                                                            tmp_path):
    """What `spark-submit --archives run.tar.gz#NAME ... --executor-model-dir NAME` does
    (docs/export.md): nothing shipped by intentkit, the executors find NAME among Spark's files."""
    name = "intentkit-test-archived-run"
    assert not (Path.cwd() / name).exists()
    intentkit_spark.pack_run(trained["out"], tmp_path / "run.tar.gz")
    session.sparkContext.addArchive(f"{tmp_path / 'run.tar.gz'}#{name}")
    df = session.createDataFrame([(1, TEXTS[0])], "id long, text string")
    [row] = intentkit_spark.label_column(df, "text", name, ship=False).collect()
    assert row["intent"] == predictor.predict(TEXTS[0])["intent"]


def write_messages(path):
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS)
                    + json.dumps({"text": None}) + "\n")
    return path


def test_the_command_labels_a_file_and_replaces_only_its_own_output(session, trained, tmp_path,
                                                                   predictor, capsys, caplog):
    source = write_messages(tmp_path / "in.jsonl")
    out = tmp_path / "out.parquet"
    out.mkdir()  # an earlier output (Spark's _SUCCESS marker), which this run replaces
    (out / "_SUCCESS").touch()
    (out / "part-00000-earlier.parquet").write_text("stale")
    threshold = threshold_between_answers(predictor)
    command = ["predict", "--spark", "--file", str(source), "-o", str(out), "-m",
               str(trained["out"]), "--threshold", str(threshold)]
    assert cli.main(command) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {
        "rows": len(TEXTS) + 1, "out": str(out)}
    assert not (out / "part-00000-earlier.parquet").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.parquet"]
    import pandas
    table = pandas.read_parquet(out)
    assert sorted(table.columns) == ["confidence", "entities", "fallback", "intent", "text",
                                     "top_k"]
    # --threshold reaches the executors: what the Predictor answers with it.
    expected = predictor.predict_batch(TEXTS, threshold=threshold)
    assert {answer["fallback"] for answer in expected} == {True, False}
    labelled = {text if isinstance(text, str) else None: intent
                for text, intent in zip(table["text"], table["intent"])}
    assert [labelled[text] for text in TEXTS] == [answer["intent"] for answer in expected]
    assert labelled[None] == "fallback"
    assert session.sparkContext._jsc is not None, "the command left the caller's session running"

    # Someone else's file or directory at -o is refused before any job runs.
    mine = tmp_path / "mine.parquet"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    caplog.clear()
    assert cli.main([*command[:5], str(mine), *command[6:]]) == 2
    assert caplog.messages == [f"error: -o/--out {mine}: exists and is not an earlier Spark "
                               "output (no _SUCCESS in it); choose a new name or remove it"]
    assert (mine / "notes.txt").read_text() == "keep me"
    caplog.clear()
    assert cli.main(["predict", "--spark", "--file", str(tmp_path / "typo.jsonl"), "-o",
                     str(tmp_path / "x.parquet"), "-m", str(trained["out"])]) == 2
    assert caplog.messages == [f"error: --file {tmp_path / 'typo.jsonl'}: no such file or "
                               "directory"]


def test_the_command_reports_an_unopenable_run_in_one_line(tmp_path):
    source = write_messages(tmp_path / "in.jsonl")
    broken = subprocess.run([intentkit_command(), "predict", "--spark", "--file", str(source),
                             "-o", str(tmp_path / "out.parquet"), "--executor-model-dir",
                             str(tmp_path / "nowhere")],
                            capture_output=True, text=True, timeout=600)
    assert broken.returncode == 2, broken.stderr
    # One error line (py4j may still say "Closing down clientserver connection" after it).
    errors = [line for line in broken.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: cannot open the run in"), \
        broken.stderr
    assert "Traceback" not in broken.stderr and "\tat org.apache" not in broken.stderr
    assert not (tmp_path / "out.parquet").exists()
