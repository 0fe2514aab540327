"""The first five minutes without a Zoho account, in Chromium against a `make run` server (its two
commands: dev-bootstrap, then gunicorn in development with a temporary instance folder): log in,
"Try it with the simulated Zoho", the demo store arrives in the simulator within 60 s, a Stage
change there comes back as an applied delivery, and the chart shows both. Saves the screenshots
the README shows (`make screenshots` puts them in docs/screenshots/)."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect

from gateway.settings import DEFAULTS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# The README's screenshots are made by this test: `make screenshots` writes them to docs/screenshots;
# an ordinary run writes them to its temporary folder, leaving the committed ones as they are.
SCREENSHOTS_ENV = "GATEWAY_SCREENSHOTS_DIR"
ARRIVAL_SECONDS = 60  # the promise on the page: within a minute of connecting


@dataclass
class Server:
    url: str
    password: str
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def make_run(tmp_path):
    """What `make run` does, on a free port: dev-bootstrap (tables, demo store, admin password), then gunicorn."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in DEFAULTS}  # no setting leaks in from outside
    env.update(GATEWAY_ENV="development", GATEWAY_INSTANCE_PATH=str(tmp_path / "instance"),
               GUNICORN_BIND=f"127.0.0.1:{port}", PORT=str(port))
    bootstrap = subprocess.run([str(BIN / "flask"), "--app", "wsgi", "dev-bootstrap", "--url", f"{url}/admin/"],
                               cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert bootstrap.returncode == 0, bootstrap.stdout + bootstrap.stderr
    password = re.search(r"admin password \(shown once[^)]*\): (\S+)", bootstrap.stdout).group(1)
    log = tmp_path / "gunicorn.log"
    with open(log, "w") as out:
        process = subprocess.Popen([str(BIN / "gunicorn"), "wsgi:app"], cwd=REPO, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    server = Server(url, password, log)
    try:
        deadline = time.monotonic() + 60
        while not _answers(url):
            assert process.poll() is None and time.monotonic() < deadline, f"gunicorn did not start:\n{server.log_tail()}"
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def _answers(url: str) -> bool:
    try:
        return requests.get(url + "/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def rows(page, table: str):
    return page.locator(f"#{table} tbody tr")


def test_try_it_with_the_simulated_zoho_from_a_make_run_server(page, make_run, tmp_path):
    page.set_default_timeout(20_000)
    page.goto(make_run.url + "/admin/")
    page.fill("#password", make_run.password)
    page.click("button:has-text('Log in')")
    expect(page.locator("#zoho .state")).to_have_text("Not connected yet")

    page.click("#try-simulator")
    connected = time.monotonic()
    expect(page.locator(".flash-ok")).to_contain_text("Connected to the simulated Zoho.")
    expect(page.locator("#zoho .state")).to_have_text("Connected")

    # Within 60 s the demo store's 4 customers and 6 orders are Contacts and Deals in the simulator.
    page.click("nav >> text=Simulated Zoho")
    expect(page.locator("#simulator .state")).to_have_text("The gateway is connected to this simulator")
    while rows(page, "contacts").count() < 4 or rows(page, "deals").count() < 6:
        assert time.monotonic() - connected < ARRIVAL_SECONDS, (
            f"after {ARRIVAL_SECONDS} s the simulator has {rows(page, 'contacts').count()} Contacts and "
            f"{rows(page, 'deals').count()} Deals\n{make_run.log_tail()}")
        page.wait_for_timeout(1000)
        page.reload()
    expect(rows(page, "contacts")).to_have_count(4)
    expect(rows(page, "contacts").filter(has_text="ada@example.com")).to_contain_text("Ada Lovelace")
    order_1 = rows(page, "deals").filter(has_text="OPS Order #1")
    expect(order_1).to_have_count(1)
    expect(order_1.locator("select")).to_have_value("Pending")

    page.goto(make_run.url + "/admin/")
    expect(page.locator("#activity-totals")).to_contain_text("10 records pushed to Zoho")
    shots = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "status.png"))  # the first screen after connecting the simulator

    # A salesperson moves order 1 to Shipped in Zoho: the workflow webhook brings it into the store.
    page.click("nav >> text=Simulated Zoho")
    order_1 = rows(page, "deals").filter(has_text="OPS Order #1")
    deal_id = order_1.get_attribute("data-id")
    order_1.locator("select").select_option("Shipped")
    order_1.locator("button:has-text('Save stage')").click()
    expect(page.locator(".flash-ok")).to_contain_text("OPS Order #1: Stage is now Shipped. Zoho called the gateway's webhook")
    expect(page.locator(".flash-ok")).to_contain_text("HTTP 200")
    expect(page.locator(".flash-ok")).to_contain_text("applied")
    expect(page.locator("#store-orders tr[data-id='1'] .status")).to_have_text("Shipped")
    expect(page.locator("#webhooks tbody tr").first).to_contain_text("HTTP 200")

    page.goto(make_run.url + "/admin/")
    # (The gateway's own catch-up may also have read Zoho by now: its deliveries say "catchup".)
    delivery = page.locator("#deliveries tbody tr").filter(has_text=deal_id).filter(has_text="webhook")
    expect(delivery).to_have_count(1)
    expect(delivery).to_contain_text("Deals")
    expect(delivery.locator(".outcome")).to_have_text("applied")
    expect(page.locator("#activity-totals")).to_contain_text(re.compile(r"[1-9]\d* deliver(y|ies) from Zoho:\s+[1-9]\d* applied"))
    expect(page.locator("#activity .bar-push").first).to_be_visible()
    expect(page.locator("#activity .bar-delivery").first).to_be_visible()
    page.locator("#activity").screenshot(path=str(shots / "activity.png"))  # the chart after the Stage change

    page.set_viewport_size({"width": 390, "height": 844})  # a phone: the chart fits the screen's width
    page.reload()
    chart = page.locator("#activity svg").bounding_box()
    assert 300 <= chart["width"] <= 390 and chart["height"] >= 60
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    page.locator("#activity").scroll_into_view_if_needed()
    page.shot("phone-activity", full_page=False)
    page.goto(make_run.url + "/admin/simulator/")
    page.shot("phone-simulated-zoho", full_page=True)
