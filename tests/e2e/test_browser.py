"""In a real browser: buy votes on the contest page, pay on the sandbox's checkout page, and
watch the status page and the live totals follow the worker's credit.

Headless Chromium from Debian (/usr/bin/chromium, /usr/bin/chromedriver); nothing is
downloaded. Screenshots go to artifacts/ at the repository root and to the test's tmp_path.
"""

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.processes import REPO
from ledger.models import Contestant, LedgerEntry, Payment
from tests.factories import ContestantFactory

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = REPO / "artifacts"
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium phones home, and the closed network here refuses it noisily.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1024,900",
]
WAIT = 15  # seconds for any one step; the whole test takes well under that in total


@pytest.fixture
def browser(tmp_path, monkeypatch) -> Iterator:
    """Headless Chromium through chromedriver; skipped without Chromium, except in CI."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        missing = CHROMIUM if not CHROMIUM.exists() else CHROMEDRIVER
        reason = f"{missing} is missing: apt-get install chromium chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI must run the browser test; .ci/run installs them)")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never download anything
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    # The console, to find any script or style the Content-Security-Policy refused.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver, tmp_path: Path, name: str) -> Path:
    """Save a PNG to tmp_path and copy it to artifacts/ for CI to keep."""
    path = tmp_path / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"no screenshot for {name}"
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(path, ARTIFACTS / path.name)
    return path


def test_buy_three_votes_pay_on_checkout_and_see_the_total_rise_by_three(
    browser, stack, sandbox, web, tmp_path
):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import Select, WebDriverWait

    stack.worker(concurrency=1)
    rival = ContestantFactory()  # first in the select, so choosing the second one matters
    contestant = ContestantFactory(contest=rival.contest, votes=7)  # the open contest
    wait = WebDriverWait(browser, WAIT)
    total_id = f"votes-{contestant.id}"

    def total_is(expected: int):
        def check(driver) -> bool:
            return driver.find_element(By.ID, total_id).text.strip() == str(expected)

        return check

    try:
        browser.get(f"{web}/")
        before = int(wait.until(seen.visibility_of_element_located((By.ID, total_id))).text)
        # The stack's gateway is the sandbox (TALLY_SANDBOX=1): every page says so.
        assert "no real money" in browser.find_element(By.ID, "sandbox-banner").text
        Select(browser.find_element(By.ID, "contestant")).select_by_value(str(contestant.id))
        votes = browser.find_element(By.ID, "votes")
        votes.clear()
        votes.send_keys("3")
        browser.find_element(By.ID, "email").send_keys("fan@example.com")
        browser.find_element(By.ID, "buy").click()

        # On the sandbox's checkout page, which the API's authorization_url points to.
        try:
            pay = wait.until(seen.element_to_be_clickable((By.ID, "pay")))
        except TimeoutException:
            error = browser.find_elements(By.ID, "error")
            shown = error[0].text if error else "(no #error on this page)"
            raise AssertionError(f"no checkout page at {browser.current_url}: {shown}") from None
        assert browser.current_url.startswith(f"{sandbox.url}/checkout/")
        pay.click()

        # Sandbox → /payments/callback/?reference=… → /payments/<reference>/, then the
        # page's own polling shows the worker's credit.
        wait.until(seen.url_contains(f"{web}/payments/"))
        wait.until(
            seen.presence_of_element_located(
                (By.CSS_SELECTOR, '#payment-status[data-status="credited"]')
            )
        )
        reference = browser.current_url.rstrip("/").rsplit("/", 1)[-1]
        screenshot(browser, tmp_path, "browser-payment-credited")

        browser.get(f"{web}/")
        wait.until(total_is(before + 3))
        screenshot(browser, tmp_path, "browser-contest-after")
        refused = [
            entry["message"]
            for entry in browser.get_log("browser")
            if "Content Security Policy" in entry["message"]
        ]
        assert refused == [], refused
    except Exception:
        screenshot(browser, tmp_path, "browser-failure")
        (tmp_path / "browser-failure.html").write_text(browser.page_source)
        raise

    payment = Payment.objects.get(reference=reference)
    assert (payment.status, payment.votes, payment.contestant_id) == ("credited", 3, contestant.id)
    assert payment.email == "fan@example.com"
    assert Contestant.objects.with_votes().get(pk=contestant.pk).votes == before + 3 == 7 + 3
    entries = LedgerEntry.objects.filter(contestant=contestant)
    assert [(e.payment_id, e.kind, e.votes) for e in entries] == [(payment.pk, "credit", 3)]
    assert Contestant.objects.with_votes().get(pk=rival.pk).votes == 0
    assert not LedgerEntry.objects.filter(contestant=rival).exists()
