"""`intentkit export --format web`: the static page, in a real headless Chromium, served by a
plain static file server: its answers equal Python's on 50 messages, its entities the Python
Predictor's on 200 (marked in the message as it is typed), the run's intent rules override the
model as they do in Python, and a model or entities file that does not match export.json shows
an error instead of answers."""
import contextlib
import functools
import http.server
import json
import shutil
import threading

import numpy as np
import pytest
from conftest import SMALL_INTENTS
from live_server import missing
from test_browser import browser  # noqa: F401 (the Chromium fixture)
from test_export import with_shipped_weights
from test_export_entities import graft_entities
from test_export_entities import messages as entity_messages

from intentkit import cli
from intentkit.serving import entity_export, web
from intentkit.serving import onnx_export as export

for package in ("onnxruntime", "onnx", "tokenizers"):
    try:
        __import__(package)
    except ImportError:
        missing(f"{package} is missing: pip install 'intentkit[export]'")
try:
    RUNTIME_DIR = web.onnxruntime_web_dir()
except export.ConfigError as error:
    missing(str(error))

NOVEL = ["what do nurses earn in Berlin?", "Héllo!!! anyone there", "can u check my CV pls",
         "???", "我想找工作", "is my résumé too long?"]
WAIT_S = 120


@contextlib.contextmanager
def static_files(directory):
    """A plain static file server on 127.0.0.1 (what GitHub Pages or nginx would be)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def run_with_entities(trained, entity_run, tmp_path_factory):
    """The small ensemble run with the annotated run's entity files: one export holds both."""
    return graft_entities(trained["out"], entity_run, tmp_path_factory.mktemp("run") / "model")


@pytest.fixture(scope="module")
def page(run_with_entities, tmp_path_factory):
    out = tmp_path_factory.mktemp("web") / "page"
    with pytest.MonkeyPatch.context() as monkeypatch:
        with_shipped_weights(monkeypatch)  # a MiniLM head to export (see test_export)
        assert cli.main(["export", "--format", "web", "-m", str(run_with_entities), "-o",
                         str(out), "--ensemble", "--onnxruntime-web", str(RUNTIME_DIR)]) == 0
    assert {"index.html", "app.js", "wordpiece.js", "entities.js", "ort.wasm.min.js",
            "model.onnx", "export.json", "tokenizer.json", "entities.json"} <= {
                p.name for p in out.iterdir()}
    return out


def python_answers(directory, texts):
    """What Python answers from the same export: the `tokenizers` library, ONNX Runtime and
    export.json's fallback rule."""
    description = export.read_description(directory)
    tokenizer = export.load_tokenizer(directory)
    session = export.session(directory / "model.onnx")
    fallback = description["fallback"]
    answers = []
    for text in texts:
        row = export.run_exported(session, tokenizer, [text])[0]
        ranked = np.argsort(-row, kind="stable")
        best, runner_up = float(row[ranked[0]]), float(row[ranked[1]])
        words = export.has_words(text)
        is_fallback = not words or best < fallback["threshold"] or \
            best - runner_up < fallback["margin"]
        answers.append({"intent": fallback["intent"] if is_fallback
                        else description["labels"][ranked[0]],
                        "fallback": is_fallback,
                        "top": [description["labels"][i] for i in ranked[:3]] if words else [],
                        "probabilities": row})
    return answers


def load(browser, url):  # noqa: F811
    browser.set_script_timeout(WAIT_S)
    browser.get(url + "/index.html")
    loaded = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "window.intentkit.ready.then(ok => done({ok, error: window.intentkit.error || null}))")
    return loaded


def page_answers(browser, url, texts):  # noqa: F811
    """The loaded page's answers (window.intentkit.classify) to texts."""
    assert load(browser, url) == {"ok": True, "error": None}
    return browser.execute_async_script(
        "const [texts, done] = arguments;"
        "(async () => { const out = [];"
        "  for (const t of texts) out.push(await window.intentkit.classify(t));"
        "  done(out); })()", texts)


def test_the_page_answers_as_python_does(page, browser):  # noqa: F811
    texts = ([p for patterns in SMALL_INTENTS.values() for p in patterns] + NOVEL)[:50]
    assert len(texts) == 50
    expected = python_answers(page, texts)
    with static_files(page) as url:
        got = page_answers(browser, url, texts)
        # Typing shows the answer of what is typed.
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait
        browser.find_element(By.ID, "message").send_keys(texts[0])
        WebDriverWait(browser, WAIT_S).until(
            lambda driver: driver.find_element(By.ID, "answer").get_attribute("data-intent"))
        assert browser.find_element(By.ID, "answer").get_attribute("data-intent") == \
            expected[0]["intent"]
        assert browser.find_element(By.ID, "error").text == ""
    for text, mine, theirs in zip(texts, expected, got):
        assert theirs["intent"] == mine["intent"], text
        assert theirs["fallback"] == mine["fallback"], text
        assert [c["intent"] for c in theirs["top_k"]] == mine["top"], text
        if mine["top"]:
            assert np.abs(np.array(theirs["probabilities"]) - mine["probabilities"]).max() \
                <= 1e-4, text


def test_the_page_finds_the_entities_python_finds(page, run_with_entities,
                                                  browser):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from intentkit.serving.predictor import Predictor
    description = export.read_description(page)
    assert description["entities"]["exported"] is True
    assert description["entities"]["labeller"] == "crf"
    texts = entity_messages(200)
    predictor = Predictor.from_dir(run_with_entities, cache_size=0)
    expected = [predictor.predict(text)["entities"] for text in texts]
    assert sum(map(bool, expected)) > 150, "the test needs messages with entities"
    assert {e["extractor"] for row in expected for e in row} == {"crf", "lookup", "regex"}
    with static_files(page) as url:
        got = [answer["entities"] for answer in page_answers(browser, url, texts)]
        # Typing marks each entity in the message (the first message with three of them).
        message = next(t for t, row in zip(texts, expected) if len(row) >= 3)
        field = browser.find_element(By.ID, "message")
        field.send_keys(message)
        WebDriverWait(browser, WAIT_S).until(lambda driver: driver.find_elements(
            By.CSS_SELECTOR, "#entities mark.entity"))
        marks = browser.find_elements(By.CSS_SELECTOR, "#entities mark.entity")
        assert [(m.get_attribute("data-entity"), m.get_attribute("data-value"))
                for m in marks] == [(e["entity"], e["value"])
                                    for e in predictor.predict(message)["entities"]]
    for text, mine, theirs in zip(texts, expected, got):
        assert not entity_export._differ(mine, theirs), (text, mine, theirs)


def test_the_page_applies_the_runs_intent_rules(page, run_with_entities,
                                               browser):  # noqa: F811
    """The run's rule ("talk to a human" -> greeting) overrides the model in the page as in the
    Predictor: confidence 1, never the fallback, model_type "rule"; other messages keep the
    exported answer's model type."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from intentkit.serving.predictor import Predictor
    texts = ["please, let me talk to a human", "TALK TO A HUMAN", "talk  to a Human?",
             "I want to talk to a humanoid robot", "talk to a", "python jobs in Berlin", "?!"]
    predictor = Predictor.from_dir(run_with_entities, cache_size=0)
    expected = [predictor.predict(text) for text in texts]
    ruled = [answer["model_type"] == "rule" for answer in expected]
    assert ruled == [True, True, True, False, False, False, False]
    model_type = export.read_description(page)["answer"]["model_type"]
    with static_files(page) as url:
        got = page_answers(browser, url, texts)
        browser.find_element(By.ID, "message").send_keys(texts[0])
        WebDriverWait(browser, WAIT_S).until(
            lambda driver: driver.find_element(By.ID, "answer").get_attribute("data-intent"))
        answer = browser.find_element(By.ID, "answer")
        assert (answer.get_attribute("data-intent"), answer.get_attribute("data-model-type"),
                answer.text) == ("greeting", "rule", "Intent: greeting (an intent rule)")
    for text, mine, theirs, rule in zip(texts, expected, got, ruled):
        if rule:
            assert (theirs["intent"], theirs["confidence"], theirs["fallback"],
                    theirs["model_type"]) == (mine["intent"], 1, False, "rule"), text
        else:
            assert theirs["model_type"] == model_type, text


def test_an_export_without_entities_says_so(page, tmp_path, browser):  # noqa: F811
    copy = tmp_path / "page"
    shutil.copytree(page, copy)
    description = json.loads((copy / "export.json").read_text())
    description["entities"] = {"exported": False, "why": entity_export.NO_ENTITIES}
    (copy / "export.json").write_text(json.dumps(description))
    from selenium.webdriver.common.by import By
    with static_files(copy) as url:
        assert load(browser, url) == {"ok": True, "error": None}
        assert browser.execute_async_script(
            "const done = arguments[0];"
            "window.intentkit.classify('python jobs in Berlin').then(r => done(r.entities))") == []
        assert browser.find_element(By.ID, "entities").text == \
            f"Entities: none in this export. {entity_export.NO_ENTITIES}."


@pytest.mark.parametrize("name", ["model.onnx", "entities.json"])
def test_a_file_that_does_not_match_its_description_shows_an_error(
        page, tmp_path, browser, name):  # noqa: F811
    copy = tmp_path / "page"
    shutil.copytree(page, copy)
    with open(copy / name, "r+b") as file:  # one byte changed, the size kept
        file.seek(-2, 2)
        changed = b"0" if file.read(1) != b"0" else b"1"
        file.seek(-2, 2)
        file.write(changed)
    from selenium.webdriver.common.by import By
    with static_files(copy) as url:
        loaded = load(browser, url)
        assert loaded["ok"] is False
        assert f"{name} does not match export.json" in loaded["error"]
        assert "does not match export.json" in browser.find_element(By.ID, "error").text
        assert browser.find_element(By.ID, "message").get_attribute("disabled") == "true"
