"""Shared fixtures: a small, clearly separable intents file and one trained model per session."""
import hashlib
import json
import pickle
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from intentkit import artifacts
from intentkit.runtime import import_tensorflow_quietly

import_tensorflow_quietly()
ROOT = Path(__file__).resolve().parents[1]

SMALL_INTENTS = {
    "greeting": ["hello there", "hi", "hey how are you", "good morning", "hello friend",
                 "hi there bot", "hey hey", "good evening to you", "howdy", "hello again",
                 "hi nice to meet you", "greetings"],
    "salary": ["what does a data scientist earn", "average salary for a python developer",
               "how much do engineers make", "what is the pay for a devops role",
               "salary range for a junior tester", "how much money does an analyst make",
               "typical pay for a frontend developer", "what do software engineers earn",
               "is 120k a good salary for a backend role", "pay for a senior engineer",
               "how much does a designer earn", "what salary should i expect"],
    "resume": ["can you review my resume", "help me improve my cv", "how long should my resume be",
               "what should i put on my resume", "fix the formatting of my cv",
               "resume tips for a career switcher", "is my cv too long",
               "how do i list projects on my resume", "should my resume have a photo",
               "check my resume for mistakes", "write a summary for my cv",
               "resume template for developers"],
    "goodbye": ["bye", "goodbye", "see you later", "talk to you soon", "i have to go now",
                "bye bye", "catch you later", "that is all for today", "see ya",
                "good night", "farewell", "i am leaving now"],
}


def write_intents(path, intents=None):
    intents = SMALL_INTENTS if intents is None else intents
    document = {"intents": [{"tag": tag, "patterns": patterns, "responses": [f"about {tag}"]}
                            for tag, patterns in intents.items()]}
    Path(path).write_text(json.dumps(document, indent=1), encoding="utf-8")
    return Path(path)


QUICK_ARGS = ["--quick", "--tuning-epochs", "2", "--epochs", "30", "--patience", "10",
              "--ensemble-epochs", "30", "--ensemble-patience", "10", "--batch-size", "16"]
# The session's trained model: the quick run with the configuration search on (--quick has none).
TRAINED_ARGS = [*QUICK_ARGS, "--search"]


def write_feedback(path, data_path):
    """Corrections for the fixture's run: one to add, and one of each kind to skip."""
    from intentkit.data.intents import load_intents, split_data
    data = load_intents(data_path)
    test_text = split_data(data.texts, data.labels).test_texts[0]  # TrainConfig's split
    rows = [("what is the salary of a nurse", "salary", True), (test_text, "salary", True),
            ("tell me a joke", "jokes", True), ("howdy partner", "greeting", False)]
    Path(path).write_text("".join(json.dumps({"text": t, "predicted": "fallback", "correct": c,
                                              "confirmed": ok}) + "\n"
                                  for t, c, ok in rows), encoding="utf-8")
    return Path(path), test_text


def intentkit_command():
    """The console script that `pip install` put beside this Python."""
    return str(Path(sys.executable).with_name("intentkit"))


def reweight_opened_runs(monkeypatch, weight_of):
    """Runs opened meanwhile as if their ensemble's fitted weights were weight_of(member name,
    member count)."""
    from intentkit import artifacts
    opened = artifacts.Run.open

    def reweighted(*args):
        run = opened(*args)
        for member in run.ensemble:
            member.weight = weight_of(member.name, len(run.ensemble))
        return run
    monkeypatch.setattr(artifacts.Run, "open", reweighted)


def run_script(*args, cwd=ROOT, timeout=600, stdin=None):
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, input=stdin)


# Fixtures that train a model: every test using one is part of the slow set.
TRAINING_FIXTURES = {"trained", "entity_run"}


def pytest_collection_modifyitems(items):
    for item in items:
        if TRAINING_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """Artifacts of one quick training run on the small data set, with a feedback file folded
    in and the configuration search on (--quick turns it off): through the installed
    `intentkit` command, started in another directory than the project's (relative paths, as a
    user types them)."""
    work = tmp_path_factory.mktemp("trained")
    data = write_intents(work / "intents.json")
    feedback, feedback_test_text = write_feedback(work / "feedback.jsonl", data)
    out = work / "model"
    result = subprocess.run([intentkit_command(), "train", "--data", "intents.json", "--out",
                             "model", "--feedback-in", "feedback.jsonl", *TRAINED_ARGS],
                            cwd=work,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return {"data": data, "out": out, "log": result.stdout + result.stderr,
            "feedback": feedback, "feedback_test_text": feedback_test_text,
            "model": out / "advanced_model_improved.h5",
            "preprocessor": out / "enhanced_preprocessor.pickle"}


def republish(out, threshold):
    """Publish the live run again as a new run whose fallback threshold is `threshold` (0: never
    the fallback, 1.01: always): the same models, another answer, another run id."""
    current = (out / artifacts.RUNS_DIR / artifacts.CURRENT_RUN).resolve()
    staging = Path(tempfile.mkdtemp(prefix=artifacts.STAGING_PREFIX, dir=out))
    for entry in current.iterdir():
        (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, staging / entry.name)
    pickle_path = staging / artifacts.PREPROCESSOR_FILE
    bundle = pickle.loads(pickle_path.read_bytes())
    bundle["fallback_thresholds"] = dict.fromkeys(bundle["fallback_thresholds"], threshold)
    bundle["fallback_margin"] = 0.0
    pickle_path.write_bytes(pickle.dumps(bundle))
    manifest = json.loads((staging / artifacts.MANIFEST_FILE).read_text())
    manifest["files"][artifacts.PREPROCESSOR_FILE] = hashlib.sha256(
        pickle_path.read_bytes()).hexdigest()
    manifest["sizes"][artifacts.PREPROCESSOR_FILE] = pickle_path.stat().st_size
    manifest.pop("run_id", None)  # publish names the new run
    (staging / artifacts.MANIFEST_FILE).write_text(json.dumps(artifacts.sealed(manifest)))
    artifacts.publish(staging, out)
    return artifacts.current_run(out)


# --- entities (issue 24): a small annotated intents file and one run of it per session ---

JOBS = [
    "find [python](skill) jobs in [Berlin](location)",
    "any [rust](skill) openings in [Munich](location)",
    "show me [java](skill) jobs in [New York](location)",
    "[kotlin](skill) developer roles in [Paris](location)",
    "i am looking for [go](skill) work in [London](location)",
    "list [python](skill) vacancies near [Hamburg](location)",
    "are there [c++](skill) jobs in [Vienna](location)",
    "open positions for [java](skill) in [Zürich](location)",
    "[rust](skill) jobs around [São Paulo](location) please",
    "search [kotlin](skill) jobs in [NYC]{\"entity\": \"location\", \"value\": \"New York\"}",
    "need a job writing [python](skill) in [Lisbon](location)",
    "what [go](skill) jobs are in [Madrid](location)",
]
SALARY = [
    "how much does a [data engineer](job_title) make in [Berlin](location)",
    "salary of a [nurse](job_title) in [London](location)",
    "what does a [designer](job_title) earn in [Paris](location)",
    "average pay for a [data scientist](job_title) in [Munich](location)",
    "how much do [teachers](job_title) make in [Vienna](location)",
    "is 120k a good salary for a [data engineer](job_title)",
    "what is the pay of a [product manager](job_title) in [Madrid](location)",
    "[nurse](job_title) salary in [Hamburg](location)",
    "typical income of a [designer](job_title) in [Lisbon](location)",
    "what do [data scientists](job_title) earn in [New York](location)",
    "pay for a [product manager](job_title) in [Zürich](location)",
    "how much money does a [teacher](job_title) make",
]
PLAIN = {
    "greeting": ["hello there", "hi", "hey how are you", "good morning", "hello friend",
                 "hi there bot", "hey hey", "good evening to you"],
    "goodbye": ["bye", "goodbye", "see you later", "talk to you soon", "i have to go now",
                "bye bye", "catch you later", "farewell"],
}
ENTITY_SECTION = {
    "skill": {"lookup": ["python", "rust", "java", "kotlin", "go", "c++"]},
    "location": {"lookup": ["Berlin", "New York", "NYC"],
                 "synonyms": {"New York": ["NYC", "nyc"]}},
    "salary_amount": {"regex": [r"\b\d+k\b"]},
}
RULES = [{"phrase": "talk to a human", "intent": "greeting"}]


def annotated_document():
    intents = [{"tag": "jobs", "patterns": JOBS, "responses": ["Here are jobs."]},
               {"tag": "salary", "patterns": SALARY, "responses": ["Salaries vary."]}]
    intents += [{"tag": tag, "patterns": patterns, "responses": [f"about {tag}"]}
                for tag, patterns in PLAIN.items()]
    return {"intents": intents, "entities": ENTITY_SECTION, "rules": RULES}


def quick_config(data, out):
    """A run of seconds: quick, the single model only."""
    from intentkit.training.config import TrainConfig
    return TrainConfig.quick(data=str(data), out=str(out), ensemble=False,
                             word_vectors="scratch", epochs=30, patience=10, batch_size=16)


@pytest.fixture(scope="session")
def entity_run(tmp_path_factory):
    """A quick run of ENTITY_DOCUMENT (annotations, an "entities" and a "rules" section)."""
    from intentkit.training.pipeline import train
    work = tmp_path_factory.mktemp("entities")
    data = work / "intents.json"
    data.write_text(json.dumps(annotated_document(), ensure_ascii=False), encoding="utf-8")
    train(quick_config(data, work / "model"))
    return work / "model"
