"""A real headless Chromium for page tests: Debian's chromium and chromedriver, never one fetched at run time.

Selenium looks for a driver with selenium-manager (which downloads one) only
when the Service has no path: both paths are given here, so nothing is
fetched, and a machine without the packages skips with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def missing_browser() -> str | None:
    """Why a browser test cannot run here (the packages or selenium are missing), or None."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.is_file():
            return f"{path} is missing (Debian package {package}); no browser is downloaded at run time"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (setup.cfg's test extra)"
    return None


@contextmanager
def chromium(width: int = 1280, height: int = 800, workdir: Path | None = None) -> Iterator[WebDriver]:
    """A headless Chromium with its console log kept (``driver.get_log("browser")``); quit on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--disable-extensions", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-features=Translate,MediaRouter",
                     f"--window-size={width},{height}", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "OFF"})
    log_path = str(workdir / "chromedriver.log") if workdir else None
    service = Service(executable_path=str(CHROMEDRIVER), log_output=log_path)
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()


def severe_console_entries(driver: WebDriver) -> list[dict[str, Any]]:
    """The console's SEVERE entries since the last call (the log is drained by reading it)."""
    return [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]
