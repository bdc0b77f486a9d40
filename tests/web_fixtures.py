"""What the web page's browser tests (tests/test_web_page.py, tests/test_web_live.py) share: the real tritonserver
(tiny profile, with the audio models) + the orchestrator process + the page process started by the project's own
code (`WebProcess`: `python -m client.cli web --server ...`), once per run; headless Chromium (Debian's `chromium` +
`chromium-driver`, installed by scripts/install_tools.sh) through selenium; helpers that wait for, click and read the
page's components. Screenshots, page HTML and the page's log of a failed test are kept in build/test/web-artifacts/."""
from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from client.web import WebProcess
from orchestrator.embedded import OrchestratorProcess

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO.parent / "shared" / "examples"
BUILD = REPO / "build" / "test"
ARTIFACTS = BUILD / "web-artifacts"
WAIT_S = 90


@pytest.fixture(scope="session")
def web_orchestrator(audio_triton_server):
    """The service the page calls, with the audio models too (a voice as the driving input)."""
    with OrchestratorProcess(audio_triton_server.grpc_url, BUILD / "orchestrator-web.log") as process:
        yield process


@pytest.fixture(scope="session")
def dead_web():
    """The page in front of an address where no service listens."""
    from orchestrator.triton_process import free_port

    with WebProcess(f"127.0.0.1:{free_port()}", BUILD / "web-dead.log") as process:
        yield process


@pytest.fixture(scope="session")
def web(web_orchestrator):
    log = BUILD / "web.log"
    log.unlink(missing_ok=True)
    with WebProcess(web_orchestrator.target, log) as process:
        yield process


def _missing(what: str):
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{what} is missing in CI: `make tools` (scripts/install_tools.sh) must install it")
    pytest.skip(f"{what} is missing: run `make tools` (Debian's chromium and chromium-driver)")


def chrome(*extra_args: str):
    """Headless Chromium through chromedriver."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        _missing("chromium / chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,2000", "--mute-audio", *extra_args):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=options)


@pytest.fixture(scope="session")
def browser():
    session = chrome()
    yield session
    session.quit()


@pytest.fixture
def page(browser, web, request):
    """The page, freshly loaded; a failed test leaves a screenshot, the HTML and the page's log in ARTIFACTS (every
    test does with LIVEPORTRAIT_WEB_SCREENSHOTS=1)."""
    yield from loaded(browser, web, request)


def loaded(browser, web, request):
    """``page``'s body for any browser session."""
    browser.get(web.url)
    wait_for(browser, lambda: browser.execute_script("return !!document.querySelector('#animate-run')"),
             "the page to load")
    yield browser
    report = getattr(request.node, "rep_call", None)
    if report is None or report.failed or os.environ.get("LIVEPORTRAIT_WEB_SCREENSHOTS"):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        stem = ARTIFACTS / re.sub(r"[^\w.-]", "_", request.node.name)
        browser.save_screenshot(str(stem.with_suffix(".png")))
        stem.with_suffix(".html").write_text(browser.page_source)
        stem.with_suffix(".log").write_text(web.log_tail(200))


def wait_for(browser, condition, what: str, timeout_s: float = WAIT_S):
    """``condition()``'s first true value; an element not drawn yet (or redrawn) counts as not yet."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = condition()
        except (NoSuchElementException, StaleElementReferenceException):
            value = None
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def upload(browser, elem_id: str, path: Path) -> None:
    """A file into an upload component; returns once the page shows it (an image or video preview, a file's name,
    or a link to the uploaded file: an audio component draws a waveform)."""
    from selenium.webdriver.common.by import By

    browser.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type=file]").send_keys(str(path.resolve()))
    name = path.name.rsplit(".", 1)[0]
    wait_for(browser, lambda: browser.execute_script(
        "const e = document.querySelector(arguments[0]);"
        "return !!e.querySelector('img[src], video[src], audio[src]') || e.innerText.includes(arguments[1])"
        " || [...e.querySelectorAll('a[href]')].some(a => a.href.includes(arguments[2]))",
        f"#{elem_id}", name, path.name), f"{path.name} to be uploaded into #{elem_id}")


def shown(browser, elem_id: str) -> str:
    """The source of the image or video a component shows ('' when none)."""
    return browser.execute_script("const m = document.querySelector(arguments[0] + ' img[src], ' + arguments[0] + "
                                  "' video[src]'); return m ? m.src : ''", f"#{elem_id}")


def click(browser, elem_id: str) -> None:
    from selenium.webdriver.common.by import By

    browser.find_element(By.CSS_SELECTOR, f"#{elem_id}").click()


def open_tab(browser, label: str) -> None:
    """Click the visible tab of that label (the page's tabs, and the Animate tab's source and driving tabs)."""
    from selenium.webdriver.common.by import By

    next(t for t in browser.find_elements(By.CSS_SELECTOR, "button[role=tab]")
         if t.text.strip() == label and t.is_displayed()).click()


def toasts(browser) -> list[str]:
    """The texts of the toasts on the page (title and message)."""
    return browser.execute_script("return [...document.querySelectorAll('.toast-body')].map(t => t.innerText)")


def textbox(browser, elem_id: str) -> str:
    return browser.execute_script(f"const t = document.querySelector('#{elem_id} textarea, #{elem_id} input'); "
                                  "return t ? t.value : ''")
