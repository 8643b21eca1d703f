"""Screenshots of every dashboard page at 1280×800 and 375×812 into docs/screenshots/.

Starts ``batchd serve`` on a fresh SQLite file, makes a few batches with the example
tasks (one completed, one partial with failures, one running), signs in with headless
Chromium (the system's ``chromium``, through Playwright) and saves each page.

    python bench/screenshots.py
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, BenchServer, wait_terminal  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 375, "height": 812}}


def make_batches(srv: BenchServer) -> dict[str, str]:
    with srv.client() as c:
        def create(body: dict[str, Any]) -> str:
            r = c.post("/api/batches", json=body)
            r.raise_for_status()
            return str(r.json()["id"])

        done = create({"task": "sleep", "items": [{"seconds": 0.01}] * 40,
                       "metadata": {"project": "newsletter", "run": 1}})
        partial = create({"task": "fail", "items": [{"value": i, "fail": i % 4 == 0}
                                                    for i in range(48)],
                          "max_attempts": 2, "metadata": {"project": "import"}})
        wait_terminal(c, done)
        wait_terminal(c, partial)
        running = create({"task": "sleep", "items": [{"seconds": 0.5}] * 400,
                          "parallelism": 4, "budget_usd": 1.0,
                          "metadata": {"project": "nightly"}})
        while c.get(f"/api/batches/{running}").json()["counts"]["succeeded"] < 20:
            time.sleep(0.2)
        failed_item = c.get(f"/api/batches/{partial}/items",
                            params={"status": "failed", "limit": 1}).json()["data"][0]["id"]
    return {"done": done, "partial": partial, "running": running, "item": failed_item}


def pages(ids: dict[str, str]) -> list[tuple[str, str]]:
    return [
        ("batches", "/ui/batches"),
        ("batch", f"/ui/batches/{ids['running']}"),
        ("batch-partial", f"/ui/batches/{ids['partial']}"),
        ("items", f"/ui/batches/{ids['partial']}/items?status=failed"),
        ("item", f"/ui/batches/{ids['partial']}/items/{ids['item']}"),
        ("tasks", "/ui/tasks"),
        ("workers", "/ui/workers"),
        ("usage", "/ui/usage"),
        ("queue", "/ui/queue"),
    ]


def main() -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("the system's chromium is missing (apt-get install chromium)")
    OUT.mkdir(parents=True, exist_ok=True)
    with BenchServer() as srv, sync_playwright() as p:
        ids = make_batches(srv)
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--no-sandbox"])
        for name, viewport in VIEWPORTS.items():
            ctx = browser.new_context(viewport=viewport, device_scale_factor=1,
                                      is_mobile=name == "phone")
            page = ctx.new_page()
            page.goto(f"{srv.url}/ui/login")
            page.screenshot(path=str(OUT / f"login-{name}.png"))
            page.get_by_label("API key").fill(srv.key)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{srv.url}/ui/batches")
            for page_name, path in pages(ids):
                page.goto(srv.url + path)
                page.wait_for_load_state("load")
                page.wait_for_timeout(600)  # a live page shows an event or two
                page.screenshot(path=str(OUT / f"{page_name}-{name}.png"))
                print(f"{page_name}-{name}.png")
            ctx.close()
        browser.close()


if __name__ == "__main__":
    main()
