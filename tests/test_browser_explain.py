"""The page's Explain toggle, in a real headless Chromium against the server: words shaded by
their effect, the nearest training patterns, the fallback's rule."""
from live_server import require, serving

require("fastapi")
require("selenium.webdriver")

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait
from test_browser import browser  # noqa: F401  (the fixture)

from intentkit.serving.app import create_app
from intentkit.serving.predictor import get_predictor


def test_the_explain_toggle_shows_words_and_nearest_patterns(trained, browser):  # noqa: F811
    predictor = get_predictor(trained["model"], trained["preprocessor"])
    message = "how much does a devops engineer earn"
    expected = predictor.explain(message, top_k=5)["explanation"]
    with serving(create_app(trained["model"], trained["preprocessor"])) as url:
        browser.get(url + "/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda driver: driver.find_element(By.ID, "model").text)  # page ready
        browser.find_element(By.ID, "message").send_keys(message)
        browser.find_element(By.ID, "classify").click()
        wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "#bars .bar")))
        assert not browser.find_element(By.ID, "explanation").is_displayed(), "opt-in"

        browser.find_element(By.ID, "explain-toggle").click()
        browser.find_element(By.ID, "classify").click()
        wait.until(ready.presence_of_element_located((By.CSS_SELECTOR,
                                                      "#nearest-patterns li")))
        section = browser.find_element(By.ID, "explanation")
        assert section.is_displayed() and section.get_attribute("data-answer") == \
            expected["answer"]
        words = browser.find_elements(By.CSS_SELECTOR, "#explained-words .word")
        assert [w.text for w in words] == message.split()
        assert [float(w.get_attribute("data-effect")) for w in words] == [
            w["effect"] for w in expected["words"]]
        strongest = max(range(len(words)), key=lambda i: abs(expected["words"][i]["effect"]))
        assert "rgba(" in words[strongest].get_attribute("style")
        assert browser.find_element(By.ID, "explained-words").text == message
        patterns = browser.find_elements(By.CSS_SELECTOR, "#nearest-patterns li")
        assert [p.get_attribute("data-intent") for p in patterns] == [
            p["intent"] for p in expected["nearest_patterns"]]
        assert patterns[0].text.startswith(expected["nearest_patterns"][0]["text"])

        field = browser.find_element(By.ID, "message")
        field.clear()
        field.send_keys("qwxz blorft zzyq")
        browser.find_element(By.ID, "classify").click()
        wait.until(lambda driver: driver.find_element(By.ID, "fallback-reason").get_attribute(
            "data-reason") == "no_known_words")
        assert "no known words rule" in browser.find_element(By.ID, "fallback-reason").text
        assert browser.find_element(By.ID, "error").text == ""
