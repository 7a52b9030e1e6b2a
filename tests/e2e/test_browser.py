"""In a real browser: pick the second of two open contests, watch its leaderboard move live,
buy votes on it, pay on the sandbox's checkout page, follow the status page to the credit, and
once the contest is certified, see the result and check the receipt's proof.

Headless Chromium from Debian (/usr/bin/chromium, /usr/bin/chromedriver); nothing is
downloaded. Screenshots go to artifacts/ at the repository root and to the test's tmp_path;
with TALLY_DOCS_SCREENSHOTS=1 the ones the README shows are written to docs/images/ too.
"""

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.core.management import call_command
from django.utils import timezone

from devstack.processes import REPO
from ledger.models import Certification, Contest, Contestant, LedgerEntry, Payment
from ledger.services import reverse_payment, settle_payment
from tests.factories import ContestantFactory, ContestFactory, PaymentFactory
from tests.helpers import success_for

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = REPO / "artifacts"
DOCS_IMAGES = REPO / "docs" / "images"
PHONE = (390, 844)  # a phone's viewport in CSS pixels
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


def screenshot(driver, tmp_path: Path, name: str, *, docs: bool = False) -> Path:
    """Save a PNG to tmp_path and copy it to artifacts/ for CI to keep; `docs`: one the README
    shows, rewritten in docs/images/ when TALLY_DOCS_SCREENSHOTS=1."""
    path = tmp_path / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"no screenshot for {name}"
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(path, ARTIFACTS / path.name)
    if docs and os.environ.get("TALLY_DOCS_SCREENSHOTS") == "1":
        DOCS_IMAGES.mkdir(exist_ok=True)
        shutil.copyfile(path, DOCS_IMAGES / path.name)
    return path


def viewport(driver, width: int, height: int, *, mobile: bool = False) -> None:
    """Lay the page out at this size, as a phone does when `mobile` (a meta viewport honoured)."""
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)


def whole_page(driver, width: int = 1024) -> None:
    """A viewport as tall as the page, so that a screenshot shows all of it."""
    viewport(driver, width, 900)
    viewport(driver, width, int(driver.execute_script("return document.body.scrollHeight")))


def credit(contestant, votes: int) -> Payment:
    """Earlier votes, credited through the ledger's own service (the gateway never hears)."""
    payment = PaymentFactory(contestant=contestant, votes=votes)
    settle_payment(
        reference=payment.reference, verification=success_for(payment, paid_at=timezone.now())
    )
    return payment


def csp_refusals(driver) -> list[str]:
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if "Content Security Policy" in entry["message"]
    ]


def test_buy_votes_in_the_second_contest_see_the_leaderboard_live_and_prove_the_receipt(
    browser, stack, sandbox, web, tmp_path
):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import Select, WebDriverWait

    stack.worker(concurrency=1)
    now = timezone.now()
    finale = ContestFactory(
        name="Demo Finale", slug="demo-finale", closes_at=now + timedelta(days=1)
    )
    for name in ("Ada", "Bola"):
        ContestantFactory(contest=finale, name=name)
    second = ContestFactory(
        name="Rising Stars",
        slug="rising-stars",
        price_per_vote=2000,
        closes_at=now + timedelta(days=2),
    )
    rival = ContestantFactory(contest=second, name="Ife")  # first in the select
    contestant = ContestantFactory(contest=second, name="Kemi")
    musa, lola = (ContestantFactory(contest=second, name=name) for name in ("Musa", "Lola"))
    earlier = [credit(c, v) for c, v in ((rival, 40), (contestant, 25), (musa, 28), (lola, 12))]
    wait = WebDriverWait(browser, WAIT)
    total_id = f"votes-{contestant.id}"

    def total_is(expected: int):
        def check(driver) -> bool:
            return driver.find_element(By.ID, total_id).text.strip() == str(expected)

        return check

    try:
        # Both contests are open; the second one's card leads to its page.
        browser.get(f"{web}/")
        assert browser.find_element(By.ID, "contest-demo-finale").get_attribute("data-status") == (
            "open"
        )
        browser.find_element(By.CSS_SELECTOR, "#contest-rising-stars h3 a").click()
        wait.until(seen.url_to_be(f"{web}/c/rising-stars/"))
        before = int(wait.until(seen.visibility_of_element_located((By.ID, total_id))).text)
        # The stack's gateway is the sandbox (TALLY_SANDBOX=1): every page says so.
        assert "no real money" in browser.find_element(By.ID, "sandbox-banner").text

        # Live: another fan's payment is credited while the page stays open, never reloaded.
        browser.execute_script("window.tallyNotReloaded = true;")
        order = {"contestant": contestant.id, "votes": 5, "email": "other@example.com"}
        placed = requests.post(f"{web}/api/payments/", json=order, timeout=WAIT)
        assert placed.status_code == 201, placed.text
        sandbox.pay(placed.json()["reference"])
        wait.until(total_is(before + 5))
        assert browser.execute_script("return window.tallyNotReloaded === true;")
        # Kemi (25 + 5) overtook Musa (28) for second place: the bars are in rank order.
        lines = browser.find_elements(By.CSS_SELECTOR, "#board > li")
        assert [line.get_attribute("data-id") for line in lines[:2]] == [
            str(rival.id),
            str(contestant.id),
        ]
        whole_page(browser)
        screenshot(browser, tmp_path, "leaderboard", docs=True)

        # Readable on a phone: nothing wider than the screen.
        viewport(browser, *PHONE, mobile=True)
        browser.refresh()
        wait.until(total_is(before + 5))
        width = browser.execute_script("return document.documentElement.scrollWidth;")
        assert width <= PHONE[0], f"the page is {width} px wide on a {PHONE[0]} px phone"
        bar = browser.find_element(By.ID, f"bar-{contestant.id}")
        assert bar.size["width"] > PHONE[0] / 2  # the bars use the phone's width
        screenshot(browser, tmp_path, "leaderboard-phone", docs=True)
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

        # Buy 3 votes for Kemi in this contest.
        browser.refresh()
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
        assert browser.find_element(By.ID, "proof-pending")  # not certified yet
        screenshot(browser, tmp_path, "browser-payment-credited")

        browser.get(f"{web}/c/rising-stars/")
        wait.until(total_is(before + 5 + 3))
        screenshot(browser, tmp_path, "browser-contest-after")

        # Voting closes; the result is certified, then a late refund amends it.
        Contest.objects.filter(pk=second.pk).update(closes_at=timezone.now())
        call_command("certify_contest", "rising-stars", actor="organiser")
        refunded = earlier[3]  # Lola's
        reverse_payment(
            reference=refunded.reference,
            verification=success_for(refunded, status="reversed"),
        )
        call_command("certify_contest", "rising-stars", actor="organiser")
        amendment = Certification.objects.get(contest=second, number=1)

        browser.get(f"{web}/results/rising-stars/")
        assert browser.find_element(By.ID, "root").text == amendment.root
        assert browser.find_element(By.ID, "certification-1").is_displayed()
        whole_page(browser)
        screenshot(browser, tmp_path, "results", docs=True)
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

        browser.get(f"{web}/payments/{reference}/")
        assert browser.find_element(By.ID, "proof-root").text == amendment.root
        command = browser.find_element(By.ID, "proof-command").text
        whole_page(browser)
        screenshot(browser, tmp_path, "receipt", docs=True)
        assert csp_refusals(browser) == []
    except Exception:
        screenshot(browser, tmp_path, "browser-failure")
        (tmp_path / "browser-failure.html").write_text(browser.page_source)
        raise

    # The command the receipt page shows, run as a payer would: the proof holds.
    script, receipt_url, _, results_url = command.split()[1:]
    assert script == "verify_receipt.py"
    checked = subprocess.run(
        [sys.executable, "-I", REPO / "docs" / script, receipt_url, "--results", results_url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"credit of 3 votes for contestant {contestant.id}" in checked.stdout

    payment = Payment.objects.get(reference=reference)
    assert (payment.status, payment.votes, payment.contestant_id) == ("credited", 3, contestant.id)
    assert payment.email == "fan@example.com"
    assert Contestant.objects.with_votes().get(pk=contestant.pk).votes == before + 8 == 25 + 8
    entries = LedgerEntry.objects.filter(contestant=contestant).exclude(payment=earlier[1])
    assert sorted(e.votes for e in entries) == [3, 5]
    assert Contestant.objects.with_votes().get(pk=rival.pk).votes == 40
    assert LedgerEntry.objects.filter(contestant=rival).count() == 1
    assert not LedgerEntry.objects.filter(contestant__contest=finale).exists()
