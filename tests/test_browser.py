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
        wait.until(lambda driver: len(Select(driver.find_element(By.ID, "correct")).options) == 4)
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
