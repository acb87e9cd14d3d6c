"""intentkit.spark on a real Spark in local[2]: labels as the Predictor does, null and
non-string texts get the fallback, and an executor that cannot open the run fails the job with
one line (library and `intentkit predict --spark`)."""
import json
import shutil
import subprocess

import pytest
from conftest import SMALL_INTENTS, intentkit_command
from live_server import missing

from intentkit.errors import ArtifactError

try:
    import pyspark  # noqa: F401
except ImportError:
    missing("pyspark is missing: pip install 'intentkit[spark]'")
if shutil.which("java") is None:
    missing("java is missing: apt-get install openjdk-17-jre-headless")

from intentkit.serving import spark as intentkit_spark

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
    assert (null_row["intent"], null_row["confidence"], null_row["fallback"]) == (
        predictor.fallback_intent, 0.0, True)


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


def test_the_command_labels_a_file_and_reports_an_unopenable_run_in_one_line(trained,
                                                                            tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS)
                      + json.dumps({"text": None}) + "\n")
    out = tmp_path / "out.parquet"
    result = subprocess.run([intentkit_command(), "predict", "--spark", "--file", str(source),
                             "--out", str(out), "--model-dir", str(trained["out"])],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"rows": len(TEXTS) + 1,
                                                                 "out": str(out)}
    import pandas
    table = pandas.read_parquet(out)
    assert sorted(table.columns) == ["confidence", "fallback", "intent", "text", "top_k"]
    assert table["intent"].isna().sum() == 0

    broken = subprocess.run([intentkit_command(), "predict", "--spark", "--file", str(source),
                             "--out", str(tmp_path / "out2.parquet"), "--executor-model-dir",
                             str(tmp_path / "nowhere")],
                            capture_output=True, text=True, timeout=600)
    assert broken.returncode == 2, broken.stderr
    # One error line (py4j may still say "Closing down clientserver connection" after it).
    errors = [line for line in broken.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: cannot open the run in"), \
        broken.stderr
    assert "Traceback" not in broken.stderr and "\tat org.apache" not in broken.stderr
