"""Screenshots of the home device's page in Home Assistant, before and during demand response.

Run by scripts/screenshot with the playwright package and Debian's Chromium, on whatever Python
the machine has (it talks to the stack over HTTP only). It uses the stack of scripts/develop
on the given ports, or starts one and stops it afterwards; logs in through Home Assistant's own
login page as the demo resident; opens the page of the home's device; saves one screenshot
while no demand-response event runs, publishes an event at the mock grid (as the utility's back
office would) unless one starts soon anyway, and saves another once the event runs.
"""

from __future__ import annotations

import argparse
import contextlib
from datetime import UTC, datetime, timedelta
import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any
import urllib.error
import urllib.parse
import urllib.request

from playwright.sync_api import Page, TimeoutError as PlaywrightTimeoutError, sync_playwright

REPO = Path(__file__).resolve().parents[2]
USER, PASSWORD = "demo", "smart-community"
DEMAND_RESPONSE = "binary_sensor.home_demo_home_demand_response"
PRICE = "sensor.home_demo_home_current_price"
# The flags Chromium needs on this machine; a fresh profile is added for every run.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Tall enough for the whole device page: Home Assistant scrolls inside its own panel.
VIEWPORT = {"width": 1400, "height": 1400}
# Back-office credentials and program of the demo scenario (scenarios/demo.yaml).
GRID_CLIENT = ("bl-demo", "demo-bl-secret-change-me")
GRID_PROGRAM = "demo-demand-response"
# An event this close needs no other to be published.
SOON = timedelta(minutes=3)
STACK_PATIENCE = 600.0
START_PATIENCE = SOON.total_seconds() + 60
END_PATIENCE = 2400.0


def say(message: str) -> None:
    """Report progress on stderr."""
    print(f"screenshot: {message}", file=sys.stderr)


def http(
    method: str,
    url: str,
    *,
    token: str | None = None,
    json_body: Any = None,
    form: dict[str, str] | None = None,
) -> Any:
    """One request to Home Assistant; its JSON answer."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if json_body is not None:
        data = json.dumps(json_body).encode()
        headers["Content-Type"] = "application/json"
    elif form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - http to loopback
        return json.loads(response.read() or b"null")


def answers(url: str) -> bool:
    """Whether anything answers at the URL (any status)."""
    try:
        urllib.request.urlopen(url, timeout=3).close()  # noqa: S310 - http to loopback
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def access_token(ha: str) -> str:
    """Log in as the demo resident through the login flow API (for reading states)."""
    client_id = f"{ha}/"
    flow = http(
        "POST",
        f"{ha}/auth/login_flow",
        json_body={
            "client_id": client_id,
            "handler": ["homeassistant", None],
            "redirect_uri": client_id,
        },
    )
    result = http(
        "POST",
        f"{ha}/auth/login_flow/{flow['flow_id']}",
        json_body={"client_id": client_id, "username": USER, "password": PASSWORD},
    )
    tokens = http(
        "POST",
        f"{ha}/auth/token",
        form={"grant_type": "authorization_code", "code": result["result"], "client_id": client_id},
    )
    return str(tokens["access_token"])


def state(ha: str, token: str, entity_id: str) -> dict[str, Any] | None:
    """An entity's state, None while it does not exist."""
    try:
        found: dict[str, Any] = http("GET", f"{ha}/api/states/{entity_id}", token=token)
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return None
        raise
    return found


def wait_for(what: str, check: Any, patience: float, stack: subprocess.Popen[bytes] | None) -> Any:
    """Poll ``check`` until it returns something true."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        if stack is not None and stack.poll() is not None:
            raise SystemExit("scripts/develop stopped; see its log in .develop/")
        with contextlib.suppress(OSError, KeyError, ValueError):
            if result := check():
                return result
        time.sleep(2)
    raise SystemExit(f"gave up waiting for {what} after {patience:.0f} s")


def start_stack(ports: argparse.Namespace) -> subprocess.Popen[bytes]:
    """Start scripts/develop in a process group of its own; its output goes to a log."""
    (REPO / ".develop").mkdir(exist_ok=True)
    log = (REPO / ".develop" / "screenshot-develop.log").open("ab")
    say("starting scripts/develop (log in .develop/screenshot-develop.log)")
    return subprocess.Popen(  # noqa: S603 - the repository's own script
        [
            str(REPO / "scripts" / "develop"),
            "--ha-port",
            str(ports.ha_port),
            "--grid-port",
            str(ports.grid_port),
            "--bridge-port",
            str(ports.bridge_port),
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_stack(stack: subprocess.Popen[bytes]) -> None:
    """Stop the stack this script started, as Ctrl-C would."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(stack.pid, signal.SIGTERM)
    try:
        stack.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(stack.pid, signal.SIGKILL)


def publish_event(grid_port: int) -> None:
    """Publish a demand-response event a minute from now, as the utility's back office would."""
    say("publishing a demand-response event at the mock grid, starting in a minute")
    subprocess.run(  # noqa: S603 - the repository's own script
        [
            str(REPO / "scripts" / "setup"),
            "run",
            "python",
            "-m",
            "smart_community_grid",
            "publish-event",
            "--grid",
            f"http://127.0.0.1:{grid_port}",
            "--client-id",
            GRID_CLIENT[0],
            "--client-secret",
            GRID_CLIENT[1],
            "--program",
            GRID_PROGRAM,
            "--type",
            "SIMPLE",
            "--value",
            "2",
            "--start-in",
            "60",
            "--duration",
            "PT5M",
        ],
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def event_soon(found: dict[str, Any] | None) -> bool:
    """Whether a demand-response event runs, or starts within ``SOON``."""
    if found is None:
        return False
    if found["state"] == "on":
        return True
    start = found["attributes"].get("next_start")
    if not start:
        return False
    return datetime.fromisoformat(start) - datetime.now(UTC) <= SOON


def log_in(page: Page, ha: str) -> None:
    """Log in through Home Assistant's own login page, as a resident would."""
    page.goto(f"{ha}/")
    page.get_by_role("textbox", name="Username").fill(USER)
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_function("() => document.querySelector('home-assistant')?.hass?.user")
    # On ports other than the default, Home Assistant asks once to keep its HTTP settings.
    keep = page.get_by_role("alertdialog").get_by_role("button", name="Confirm")
    with contextlib.suppress(PlaywrightTimeoutError):
        keep.click(timeout=5000)


def home_device_id(page: Page) -> str:
    """The device registry id of the home (the community's device is the other one)."""
    device_id = page.evaluate(
        """() => Object.values(document.querySelector('home-assistant').hass.devices)
            .find((device) => device.identifiers.some(
                ([domain, id]) => domain === 'smart_community' && id.includes('/')))?.id"""
    )
    if not device_id:
        raise SystemExit("Home Assistant shows no Smart Community home device")
    return str(device_id)


def shoot(page: Page, ha: str, device_id: str, path: Path) -> None:
    """Open the home device's page afresh and save it whole."""
    page.goto(f"{ha}/config/devices/device/{device_id}")
    page.wait_for_load_state("networkidle")
    page.get_by_text("Current price").first.wait_for()
    page.wait_for_timeout(1500)  # let the cards finish drawing
    page.screenshot(path=path)
    say(f"saved {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")


def main(arguments: argparse.Namespace) -> None:
    """Take the two screenshots."""
    ha = f"http://127.0.0.1:{arguments.ha_port}"
    out = arguments.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    stack = None if answers(f"{ha}/api/onboarding") else start_stack(arguments)
    try:
        token = wait_for("Home Assistant", lambda: access_token(ha), STACK_PATIENCE, stack)
        wait_for(
            "the home's entities",
            lambda: (s := state(ha, token, PRICE)) and s["state"] != "unavailable",
            STACK_PATIENCE,
            stack,
        )
        with (
            sync_playwright() as playwright,
            # Chromium may still be writing its profile as it closes.
            tempfile.TemporaryDirectory(
                prefix="sc-chromium-", ignore_cleanup_errors=True
            ) as profile,
        ):
            browser = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=arguments.chromium,
                headless=True,
                args=CHROMIUM_FLAGS,
                viewport=VIEWPORT,
                locale="en-GB",
                # Times as the home sees them: in Home Assistant's time zone.
                timezone_id=http("GET", f"{ha}/api/config", token=token)["time_zone"],
            )
            try:
                page = browser.new_page()
                log_in(page, ha)
                device_id = home_device_id(page)

                def demand_response(expected: str) -> bool:
                    found = state(ha, token, DEMAND_RESPONSE)
                    return found is not None and found["state"] == expected

                if demand_response("on"):
                    # An event runs already: this one during it, the other once it is over.
                    shoot(page, ha, device_id, out / "home-during-event.png")
                    say("waiting for the event to end (the demo's lasts half an hour)")
                    wait_for(
                        "the event to end", lambda: demand_response("off"), END_PATIENCE, stack
                    )
                    shoot(page, ha, device_id, out / "home-before-event.png")
                    return
                if not event_soon(state(ha, token, DEMAND_RESPONSE)):
                    publish_event(arguments.grid_port)
                shoot(page, ha, device_id, out / "home-before-event.png")
                wait_for("the event to start", lambda: demand_response("on"), START_PATIENCE, stack)
                shoot(page, ha, device_id, out / "home-during-event.png")
            finally:
                browser.close()
    finally:
        if stack is not None:
            say("stopping the stack it started")
            stop_stack(stack)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--ha-port", type=int, default=int(os.environ.get("HA_PORT", "8123")))
    parser.add_argument("--grid-port", type=int, default=int(os.environ.get("GRID_PORT", "8081")))
    parser.add_argument(
        "--bridge-port", type=int, default=int(os.environ.get("BRIDGE_PORT", "8080"))
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    main(parser.parse_args())
