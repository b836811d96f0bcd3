"""The ops console in a real browser (headless Chromium through selenium) against the service
run as a process with demo traffic: sign in through the form, load the three pages, replay a
dead letter by its button and see it applied in PostgreSQL; screenshots of the pages go to
a temporary folder, or to $KALEIDO_SCREENSHOTS (docs/screenshots for docs/operations.md)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from kaleido.devstack import DevStack
from kaleido.gateways import Backends
from kaleido.messages import INSIGHTS_STREAM

from .conftest import REPO
from .faults.harness import ADMIN_TOKEN, ServiceProcess
from .streams_helpers import insight, xadd
from .waiting import wait_until

pytestmark = pytest.mark.slow

# `KALEIDO_SCREENSHOTS=docs/screenshots make test` refreshes the pictures of docs/operations.md;
# by default they go to the test's temporary folder, so a run leaves the tree clean.
SHOTS_ENV = "KALEIDO_SCREENSHOTS"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
WAIT = 10.0  # seconds any one page condition may take


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    if CHROMIUM is None or DRIVER is None:
        pytest.skip(
            "chromium and chromedriver are not installed (Debian: apt-get install chromium "
            "chromium-driver; `make bootstrap-test` installs them)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--hide-scrollbars"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=DriverService(DRIVER))
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def reload_until(driver: WebDriver, url: str, text: str) -> None:
    def shown(d: WebDriver) -> bool:
        d.get(url)
        return text in d.page_source

    WebDriverWait(driver, WAIT, poll_frequency=0.3).until(shown, f"{url}: no {text!r}")


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    chosen = os.environ.get(SHOTS_ENV)
    return (REPO / chosen) if chosen else tmp_path


def screenshot(driver: WebDriver, folder: Path, name: str) -> Path:
    """The whole page (the window stretched to the page's height) as FOLDER/NAME."""
    height = driver.find_element(By.TAG_NAME, "body").size["height"]
    driver.set_window_size(1280, min(2400, max(900, height + 100)))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    assert driver.save_screenshot(str(path)), name
    driver.set_window_size(1280, 900)
    return path


def views_chart_points(driver: WebDriver) -> int:
    """Points on the overview's duplicate-views line (drawn once there are two rates)."""
    lines = driver.find_elements(By.CSS_SELECTOR, "svg polyline.series.tone-2")
    return len((lines[0].get_attribute("points") or "").split()) if lines else 0


async def add_dead_letter(backends: Backends, media_id: int, **fields: str) -> str:
    """A dead letter as the consumer writes it: an insight result plus the failure."""
    original = {"mediaId": str(media_id), "postId": "70", "service": "tagging",
                "tags": '["lighthouse"]', **fields}  # fmt: skip
    failure = {
        "error": "database was down", "errorType": "PostgresUnavailable", "originalId": "1-1",
        "deliveries": "6", "failedAt": "2024-01-01T00:00:00Z",
    }  # fmt: skip
    flat = [part for pair in {**original, **failure}.items() for part in pair]
    entry_id = await backends.redis.execute("XADD", backends.keys.dlq(INSIGHTS_STREAM), "*", *flat)
    return str(entry_id.decode())


async def test_the_console_in_a_browser(
    browser: WebDriver, backends: Backends, stack: DevStack, tmp_path: Path, shots: Path
) -> None:
    hostile = await add_dead_letter(
        backends, 702, caption="<script>alert(1)</script>", note='"><img src=x onerror=alert(2)>'
    )
    target = await add_dead_letter(backends, 701)
    await add_dead_letter(backends, 703, embedding=", ".join(["0.0421"] * 120))  # cut at 200
    # Undecodable: the running consumer dead-letters it with its own error.
    await xadd(backends, INSIGHTS_STREAM, {"service": "tagging", "mediaId": "x"})
    service = ServiceProcess(
        stack.redis_url, stack.database_url, sync_interval=2.0, args=["--demo"],
        extra_env={"KALEIDO_METRICS_INTERVAL": "0.5"}, log_path=tmp_path / "service.log",
    )  # fmt: skip
    try:
        await service.start()
        ops = service.ops_url

        # Not signed in: every page sends the browser to the form; a wrong token is refused.
        browser.get(f"{ops}/ops/dlq/{INSIGHTS_STREAM}")
        assert "/ops/login?next=" in browser.current_url
        browser.find_element(By.ID, "token").send_keys("not-the-token")
        browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        WebDriverWait(browser, WAIT).until(lambda d: "neither the admin token" in d.page_source)
        browser.find_element(By.ID, "token").send_keys(ADMIN_TOKEN)
        browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        WebDriverWait(browser, WAIT).until(lambda d: d.title.startswith("Dead letters"))

        # Overview: wait for a few seconds of the demo's views on the chart (a sample per 0.5 s).
        def charted(d: WebDriver) -> bool:
            d.get(f"{ops}/ops")
            return views_chart_points(d) >= 12

        WebDriverWait(browser, 15, poll_frequency=1).until(charted, "no views on the chart")
        assert browser.find_elements(By.CSS_SELECTOR, "svg polyline.series")
        assert "Breaker · redis" in browser.page_source
        screenshot(browser, shots, "ops-overview.png")

        browser.get(f"{ops}/ops/streams")
        assert "backend-group" in browser.page_source and "media-ai-consumer" in browser.page_source
        screenshot(browser, shots, "ops-streams.png")

        # Dead letters: hostile fields are shown as text, never run or parsed as markup.
        reload_until(browser, f"{ops}/ops/dlq/{INSIGHTS_STREAM}", "DecodeError")
        cells = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".fields dd")]
        assert "<script>alert(1)</script>" in cells
        assert '"><img src=x onerror=alert(2)>' in cells
        assert browser.find_elements(By.CSS_SELECTOR, "main img, main script") == []
        assert hostile in browser.page_source
        screenshot(browser, shots, "ops-dlq.png")

        # Replay one entry through its button: it leaves the DLQ and reaches PostgreSQL.
        button = f"button[formaction='/ops/dlq/{INSIGHTS_STREAM}/replay/{target}']"
        browser.find_element(By.CSS_SELECTOR, button).click()
        WebDriverWait(browser, WAIT).until(lambda d: "Replayed 1 dead letter " in d.page_source)
        assert not browser.find_elements(By.CSS_SELECTOR, f"input[value='{target}']")
        dlq_key = backends.keys.dlq(INSIGHTS_STREAM)
        assert await backends.redis.execute("XRANGE", dlq_key, target, target) == []

        async def applied() -> bool:
            return await insight(backends, 701) is not None

        await wait_until(applied, timeout=WAIT)
        row = await insight(backends, 701)
        assert row is not None and row["tags"] == ["lighthouse"]
    except WebDriverException as exc:
        log = (tmp_path / "service.log").read_text(errors="replace")[-3000:]
        raise AssertionError(f"{exc}\n--- service log ---\n{log}") from exc
    finally:
        service.close()
