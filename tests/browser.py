"""A headless Debian chromium, driven by Selenium through Debian's chromedriver, against
pytest-django's live server; each page it is asked to keep is saved as a screenshot under
artifacts/screenshots/<test>/ (git-ignored; CI keeps the directory as its artifacts)."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def chromium_paths() -> tuple[str, str]:
    """Debian's chromium and chromedriver, or a one-line failure: a browser test that cannot
    run must not pass as skipped (CI installs both with scripts/services-up)."""
    chromium = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    driver = shutil.which("chromedriver") or (CHROMEDRIVER if Path(CHROMEDRIVER).exists() else None)
    if chromium is None or driver is None:
        missing = " and ".join(
            name for name, path in (("chromium", chromium), ("chromedriver", driver)) if not path
        )
        pytest.fail(
            f"{missing} not installed: run scripts/services-up (Debian: apt-get install "
            "chromium chromium-driver)",
            pytrace=False,
        )
    return chromium, driver


@dataclass
class Browser:
    driver: webdriver.Chrome
    base_url: str
    shots: Path
    taken: list[Path] = field(default_factory=list)

    def go(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def click(self, css: str) -> None:
        """Follow a link and wait until the next page has replaced this one."""
        self.submit(css)

    @property
    def path(self) -> str:
        return self.driver.current_url.removeprefix(self.base_url)

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def text(self) -> str:
        return self.find("body").text

    def fill(self, **fields: str) -> None:
        for name, value in fields.items():
            element = self.find(f'[name="{name}"]')
            element.clear()
            element.send_keys(value)

    def submit(self, css: str = 'form [type="submit"]') -> None:
        """Click the button and wait until the next page has replaced this one."""
        page = self.find("html")
        self.find(css).click()
        wait = WebDriverWait(self.driver, 10)
        wait.until(expected_conditions.staleness_of(page))
        # The old page is gone once the next one starts; its URL and text are there once it
        # has loaded (a check read in between saw a page half-way, once in a loaded run).
        wait.until(lambda driver: driver.execute_script("return document.readyState") == "complete")

    def shot(self, name: str) -> Path:
        """Save the page as it is now, numbered in the order taken."""
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{len(self.taken) + 1:02d}-{name}.png"
        self.driver.save_screenshot(str(path))
        self.taken.append(path)
        return path


def browser_open(base_url: str, test_name: str) -> Browser:
    chromium, chromedriver = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        # Nothing but the live server: a page that loads anything from elsewhere shows it.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    driver.implicitly_wait(5)
    shots = SCREENSHOTS / re.sub(r"[^\w.-]+", "_", test_name)
    shutil.rmtree(shots, ignore_errors=True)
    return Browser(driver, base_url, shots)
