"""Chromium driven by Playwright through Airflow 3.3's UI as one user: log in, trigger from the form,
answer a required action, read a task's extra links, and a numbered screenshot of every step."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect, sync_playwright

from sandbox.airflow_client import AirflowClient

#: Debian's Chromium (sandbox/system-packages.sh --tests installs it): Playwright's own browser
#: download is impossible here, and CI must test the browser it installs itself.
CHROMIUM = "/usr/bin/chromium"
#: Headless as root on a machine without a GPU or outside network: no sandbox, and nothing that
#: phones home (each refused connection costs time at every start).
CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
#: The screen the issue asks the approval buttons to fit on without scrolling.
VIEWPORT = {"width": 1440, "height": 900}
#: Set to 1 to also write the README's screenshots (docs/chaos-page.png, docs/approval.png).
DOCS_SCREENSHOTS_ENV = "CHAOS_SAVE_DOCS_SCREENSHOTS"
DOCS = Path(__file__).resolve().parents[2] / "docs"
#: How long a page may take to show something, for actions and assertions alike: the UI loads
#: its data after the page, slowly on a busy 2-core machine.
UI_TIMEOUT_MS = 30_000
expect.set_options(timeout=UI_TIMEOUT_MS)


@contextmanager
def chromium() -> Iterator[Browser]:
    """Headless Debian Chromium, closed (with every page of it) on exit."""
    if not Path(CHROMIUM).exists():
        raise AssertionError(f"{CHROMIUM} is missing: run sandbox/system-packages.sh --tests (Debian's chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_FLAGS))
        try:
            yield browser
        finally:
            browser.close()


class Screenshots:
    """Numbered screenshots of every step in one folder, in the order they were taken."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.taken: list[Path] = []

    def take(self, page: Page, step: str, *, docs_name: str | None = None) -> Path:
        """Save the viewport as `NN-step.png`; with `docs_name`, also as docs/<docs_name> when
        CHAOS_SAVE_DOCS_SCREENSHOTS=1 (the README shows those)."""
        path = self.folder / f"{len(self.taken) + 1:02d}-{re.sub(r'[^a-z0-9]+', '-', step.lower()).strip('-')}.png"
        page.screenshot(path=path)
        self.taken.append(path)
        if docs_name and os.environ.get(DOCS_SCREENSHOTS_ENV) == "1":
            shutil.copyfile(path, DOCS / docs_name)
        return path


class AirflowUI:
    """One user's browser session (its own cookies) on the Airflow UI, and the same user's REST
    client for what the UI leaves to waiting (run ids, task states)."""

    def __init__(self, browser: Browser, base_url: str, client: AirflowClient, password: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = client
        self.username = client.username
        self._password = password
        self.context: BrowserContext = browser.new_context(viewport=VIEWPORT)
        self.context.set_default_timeout(UI_TIMEOUT_MS)
        self.page: Page = self.context.new_page()

    def close(self) -> None:
        self.context.close()

    def describe(self) -> str:
        """Where this user's page is and what it shows (each frame's text, shortened): what a
        failed step saw, for the log of a run whose screenshots are gone."""
        lines = [f"{self.username}'s page: {self.page.url}"]
        for frame in self.page.frames:
            try:
                text = " ".join(frame.locator("body").inner_text(timeout=2_000).split())
            except Exception as exc:  # a frame that is gone or still loading says so
                text = f"({type(exc).__name__}: {str(exc).splitlines()[0]})"
            lines.append(f"  frame {frame.url}: {text[:1500]}")
        return "\n".join(lines)

    def goto(self, path: str) -> Page:
        self.page.goto(self.base_url + path)
        return self.page

    # -- log in -----------------------------------------------------------------------------------

    def log_in(self) -> None:
        """Through the simple auth manager's login page, as a person does: Airflow redirects there."""
        self.goto("/")
        self.page.wait_for_url(re.compile(r"/auth/login"))
        self.page.get_by_label("Username").fill(self.username)
        self.page.get_by_label("Password").fill(self._password)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url(lambda url: "/auth/" not in url)
        # The UI's session is the `_token` cookie; the plugin's routes read the same one.
        assert "_token" in {cookie["name"] for cookie in self.context.cookies()}, self.context.cookies()

    # -- trigger ------------------------------------------------------------------------------------

    def open_trigger_form(self, dag_id: str) -> Locator:
        """The DAG page's Trigger dialog, Single Run; returns the dialog."""
        self.goto(f"/dags/{quote(dag_id, safe='')}")
        self.page.get_by_role("button", name="Trigger").first.click()
        dialog = self.page.get_by_role("dialog")
        dialog.get_by_text("Run Parameters").wait_for()
        return dialog

    def choose_experiment(self, dialog: Locator, option_text: str) -> str:
        """Pick the Experiment option whose label starts with `option_text`; return its label."""
        dialog.locator("#element_experiment").click()
        option = self.page.get_by_role("option").filter(has_text=re.compile("^" + re.escape(option_text)))
        label = option.first.inner_text()
        option.first.click()
        return label

    def experiment_shown(self, dialog: Locator) -> tuple[str, str]:
        """What the Experiment field shows now and the value it will send: (label, value)."""
        field = dialog.locator("#element_experiment")
        # Without react-select's text for screen readers ("option ..., selected."), which the
        # field's own text includes once something was picked.
        label = field.evaluate(
            "e => { const c = e.cloneNode(true);"
            " c.querySelectorAll('[id$=\"-live-region\"], [role=log], input').forEach(x => x.remove());"
            " return c.innerText.trim(); }"
        )
        return label, field.locator('input[name="element_experiment"]').input_value()

    def submit_trigger(self, dialog: Locator, dag_id: str) -> str:
        """Press Trigger; return the id of the run it created (the newest manual run of `dag_id`
        not seen before the click)."""
        before = {run["dag_run_id"] for run in self.runs(dag_id)}
        submit = dialog.get_by_test_id("trigger-dag-submit")
        assert submit.is_enabled(), f"Trigger is disabled in the form of {dag_id}: {dialog.inner_text()}"
        submit.click()
        # The toast's title; Chakra may render a toast twice while it animates in.
        self.page.get_by_text("Dag Run Triggered").first.wait_for()
        deadline = time.monotonic() + 30
        while not (new := [r for r in self.runs(dag_id) if r["dag_run_id"] not in before]):
            assert time.monotonic() < deadline, f"no new run of {dag_id} 30 s after Trigger"
            time.sleep(0.3)
        (run,) = new
        assert run["run_type"] == "manual" and run["triggered_by"] == "ui", run
        return run["dag_run_id"]

    def runs(self, dag_id: str) -> list[dict]:
        return self.client.request("GET", f"/dags/{quote(dag_id, safe='')}/dagRuns", params={"limit": 100})["dag_runs"]

    # -- a run and its tasks ------------------------------------------------------------------------

    @staticmethod
    def run_path(dag_id: str, run_id: str) -> str:
        return f"/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"

    def open_required_action(self, dag_id: str, run_id: str, task_id: str) -> Page:
        """The task's "Required Action" tab: the approval text and its buttons."""
        self.goto(f"{self.run_path(dag_id, run_id)}/tasks/{quote(task_id, safe='')}/required_actions")
        return self.page

    def open_task(self, dag_id: str, run_id: str, task_id: str, tab: str = "") -> Page:
        """A task instance's page, on one of its tabs ("" is Logs; "details" has the extra links)."""
        self.goto(f"{self.run_path(dag_id, run_id)}/tasks/{quote(task_id, safe='')}" + (f"/{tab}" if tab else ""))
        return self.page

    def open_run(self, dag_id: str, run_id: str) -> Page:
        self.goto(self.run_path(dag_id, run_id))
        return self.page


def in_viewport_without_scrolling(page: Page, element: Locator) -> bool:
    """Whether `element` is wholly inside the window as it is, the page not scrolled."""
    box = element.evaluate("e => { const r = e.getBoundingClientRect(); return [r.top, r.bottom, r.left, r.right]; }")
    scrolled, height, width = page.evaluate("() => [window.scrollY, window.innerHeight, window.innerWidth]")
    top, bottom, left, right = box
    return scrolled == 0 and 0 <= top and bottom <= height and 0 <= left and right <= width


def wait_until(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.1) -> float:
    """Poll `condition` until truthy; return the seconds it took, or fail naming `what`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout:g} s"
        time.sleep(interval)
    return time.monotonic() - started
