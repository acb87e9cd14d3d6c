"""The page, in a real headless Chromium (Debian's chromium + chromium-driver) against the
server."""
import json
import os
import shutil
import tempfile

import pytest
from live_server import missing, require, serving

require("fastapi")
webdriver = require("selenium.webdriver")

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import Select, WebDriverWait

from intentkit.serving.app import create_app
from intentkit.serving.predictor import get_predictor

pytestmark = pytest.mark.slow  # trains models or drives a browser (minutes)

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run"]


@pytest.fixture
def browser():
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        missing(f"{CHROMIUM} or {CHROMEDRIVER} is missing: apt-get install chromium "
                "chromium-driver")
    profile = tempfile.mkdtemp(prefix="intentkit-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    # An explicit driver path: selenium-manager never runs, so nothing is downloaded.
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_page_shows_the_ranking_and_records_a_correction(trained, tmp_path, browser):
    feedback = tmp_path / "feedback.jsonl"
    predictor = get_predictor(trained["model"], trained["preprocessor"])
    message = "how much does a devops engineer earn"
    expected = predictor.predict(message, top_k=5)
    with serving(create_app(trained["model"], trained["preprocessor"],
                            feedback_path=feedback)) as url:
        browser.get(url + "/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda driver: driver.find_element(By.ID, "model").text)
        browser.find_element(By.ID, "message").send_keys(message)
        browser.find_element(By.ID, "classify").click()
        wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "#bars .bar")))

        bars = browser.find_elements(By.CSS_SELECTOR, "#bars .bar")
        assert [bar.get_attribute("data-intent") for bar in bars] == [
            candidate["intent"] for candidate in expected["top_k"]]
        assert bars[0].find_element(By.CLASS_NAME, "confidence").text == (
            f"{expected['top_k'][0]['confidence'] * 100:.1f}%")
        answer = browser.find_element(By.ID, "answer")
        assert answer.get_attribute("data-intent") == expected["intent"]
        assert answer.get_attribute("data-fallback") == str(expected["fallback"]).lower()
        assert answer.text.startswith("Fallback" if expected["fallback"] else "Intent")

        correction = next(label for label in sorted(predictor.labels)
                          if label != expected["top_k"][0]["intent"])
        Select(browser.find_element(By.ID, "correct")).select_by_value(correction)
        browser.find_element(By.ID, "send-feedback").click()
        wait.until(ready.text_to_be_present_in_element((By.ID, "feedback-status"), "recorded"))
        assert browser.find_element(By.ID, "error").text == ""
    rows = [json.loads(line) for line in feedback.read_text().splitlines()]
    assert [(r["text"], r["predicted"], r["correct"], r["confirmed"]) for r in rows] == [
        (message, expected["intent"], correction, False)], "a person confirms it later"


def ask(browser, wait, text):
    """Type `text`, classify it and wait for this answer (the answer's text changes)."""
    before = browser.find_element(By.ID, "answer").text
    box = browser.find_element(By.ID, "message")
    box.clear()
    box.send_keys(text)
    browser.find_element(By.ID, "classify").click()
    wait.until(lambda driver: driver.find_element(By.ID, "answer").text not in ("", before)
               or driver.find_element(By.ID, "error").text)
    return browser.find_element(By.ID, "answer")


@pytest.fixture
def page(trained, browser):
    with serving(create_app(trained["model"], trained["preprocessor"])) as url:
        browser.get(url + "/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda driver: driver.find_element(By.ID, "model").text)
        yield browser, wait, get_predictor(trained["model"], trained["preprocessor"])


def test_page_shows_doubt_the_threshold_and_the_reply(page):
    browser, wait, predictor = page
    confident = ask(browser, wait, "how much does a devops engineer earn")
    expected = predictor.predict("how much does a devops engineer earn", top_k=5)
    meter = browser.find_element(By.ID, "meter")
    assert float(meter.get_attribute("data-threshold")) == pytest.approx(predictor.threshold,
                                                                         abs=1e-4)
    assert float(meter.get_attribute("data-confidence")) == pytest.approx(
        expected["confidence"], abs=1e-4)
    marker = meter.find_element(By.CLASS_NAME, "threshold")
    # The marker sits at the threshold's share of the bar's width.
    assert marker.location["x"] - meter.location["x"] == pytest.approx(
        predictor.threshold * meter.size["width"], abs=2)
    assert browser.find_element(By.ID, "reply").text == f"Bot: {expected['response']}"
    doubt = confident.get_attribute("data-doubt")
    assert doubt in ("confident", "ambiguous")
    assert "confident" in confident.get_attribute("class") or doubt == "ambiguous"

    low = ask(browser, wait, "!!!")  # no words: the fallback, with no confidence at all
    assert low.get_attribute("data-doubt") == "low" and "low" in low.get_attribute("class")
    assert "low" in meter.get_attribute("class")
    assert browser.find_element(By.ID, "reply").is_displayed() is False  # no fallback replies
    # Styled apart: the low answer's colour is not the confident one's.
    colour = browser.execute_script(
        "return getComputedStyle(document.getElementById('answer')).color")
    assert colour != "rgb(34, 34, 34)"


def test_correction_menu_starts_at_the_runner_up_and_resets_per_message(page):
    browser, wait, predictor = page
    menu = lambda: Select(browser.find_element(By.ID, "correct"))  # noqa: E731
    for text in ("check my resume for mistakes please", "good evening to you friend"):
        ask(browser, wait, text)
        expected = predictor.predict(text, top_k=5)
        assert menu().first_selected_option.get_attribute("value") == (
            expected["top_k"][1]["intent"])
        assert {o.get_attribute("value") for o in menu().options} == set(predictor.labels)
        # A choice made for this message must not carry over to the next one.
        last = menu().options[-1].get_attribute("value")
        menu().select_by_value(last)


def test_a_blank_message_is_refused_in_the_page(page):
    browser, wait, _ = page
    ask(browser, wait, "hello there")
    box = browser.find_element(By.ID, "message")
    box.clear()
    box.send_keys("   ")
    browser.find_element(By.ID, "classify").click()
    wait.until(lambda driver: driver.find_element(By.ID, "error").text)
    assert browser.find_element(By.ID, "error").text == "Type a message first."
    assert browser.find_element(By.ID, "answer").text == ""
    assert not browser.find_element(By.ID, "correction").is_displayed()  # nothing to correct
    assert browser.find_elements(By.CSS_SELECTOR, "#bars .bar") == []


def test_examples_come_from_the_models_patterns(page):
    browser, wait, predictor = page
    patterns = {text for texts in predictor.examples.values() for text in texts}
    buttons = browser.find_elements(By.CSS_SELECTOR, "#examples button")
    assert buttons and {button.text for button in buttons} <= patterns
    assert "salar" not in browser.find_element(By.ID, "message").get_attribute("placeholder") \
        or any("salar" in text for text in patterns)
    buttons[0].click()
    assert browser.find_element(By.ID, "message").get_attribute("value") == buttons[0].text
