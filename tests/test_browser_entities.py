"""The page highlights a message's entities, in a real headless Chromium against the server:
the marks cover the characters the server's offsets name, emoji and accents included."""
import pytest
from live_server import require, serving
from test_browser import browser  # noqa: F401 (the fixture)

require("fastapi")
require("selenium.webdriver")

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

from intentkit import artifacts
from intentkit.serving.app import create_app
from intentkit.serving.predictor import Predictor

pytestmark = pytest.mark.slow  # trains a model and drives a browser


def test_page_marks_each_entity_of_the_message(entity_run, browser):  # noqa: F811
    message = "🚀 any rust jobs in São Paulo or NYC for 120k? é"
    expected = Predictor.from_dir(entity_run).predict(message)["entities"]
    assert {e["entity"] for e in expected} >= {"skill", "location", "salary_amount"}
    with serving(create_app(entity_run / artifacts.MODEL_FILE,
                            entity_run / artifacts.PREPROCESSOR_FILE)) as url:
        browser.get(url + "/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda driver: driver.find_element(By.ID, "model").text)
        # ChromeDriver types only the Basic Multilingual Plane: the emoji goes in by script.
        browser.execute_script("arguments[0].value = arguments[1]",
                               browser.find_element(By.ID, "message"), message)
        browser.find_element(By.ID, "classify").click()
        wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "#entities mark")))
        marks = browser.find_elements(By.CSS_SELECTOR, "#entities mark.entity")
        assert [(m.get_attribute("data-entity"), m.get_attribute("data-value"))
                for m in marks] == [(e["entity"], e["value"]) for e in expected]
        # Each mark holds the characters its offsets name (code points, as the server counts),
        # then its type; the line as a whole is the message with the types inserted.
        for mark, entity in zip(marks, expected):
            written = message[entity["start"]:entity["end"]]
            label = entity["entity"] if written == entity["value"] else \
                f"{entity['entity']}: {entity['value']}"
            assert mark.text.replace("\n", " ") in (f"{written} {label}", f"{written}{label}")
        line = browser.find_element(By.ID, "entities").get_attribute("textContent")
        for entity in reversed(expected):
            written = message[entity["start"]:entity["end"]]
            label = entity["entity"] if written == entity["value"] else \
                f"{entity['entity']}: {entity['value']}"
            line = line.replace(written + label, written, 1)
        assert line == message
        # A message without entities hides the line.
        field = browser.find_element(By.ID, "message")
        field.clear()
        field.send_keys("hello there")
        browser.find_element(By.ID, "classify").click()
        wait.until(lambda driver: not driver.find_element(By.ID, "entities").is_displayed())
        assert browser.find_elements(By.CSS_SELECTOR, "#entities mark") == []
