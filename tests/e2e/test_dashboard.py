"""The dashboard in a real browser: headless Chromium (the system's ``chromium``) driven by
Playwright against a real server (SQLite, or PostgreSQL with BATCHD_TEST_BACKEND)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, scaled, wait_batch

pytestmark = pytest.mark.timeout(scaled(240))

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
TASKS = "tests.support.tasks,tests.support.flaky_tasks"
WAIT_MS = int(scaled(30) * 1000)


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("the system's chromium is missing (apt-get install chromium; .ci/run "
                    "installs it)", pytrace=False)
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), headless=True,
                              args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def srv(make_server: Callable[..., Server]) -> Server:
    return make_server(tasks=TASKS)


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[..., Any]]:
    contexts: list[Any] = []

    def make(**kw: Any) -> Any:
        ctx = browser.new_context(**kw)
        ctx.set_default_timeout(WAIT_MS)
        contexts.append(ctx)
        page = ctx.new_page()
        page.on("dialog", lambda d: d.accept())  # the actions' confirmations
        return page

    yield make
    for ctx in contexts:
        ctx.close()


def sign_in(page: Any, srv: Server, key: str, path: str = "/ui/batches") -> None:
    page.goto(srv.url + path)
    expect(page).to_have_url(f"{srv.url}/ui/login?next={path}")
    page.get_by_label("API key").fill(key)
    page.keyboard.press("Enter")  # keyboard only
    expect(page).to_have_url(srv.url + path)


def create(srv: Server, key: str, body: dict[str, Any]) -> dict[str, Any]:
    with srv.client(key) as c:
        r = c.post("/api/batches", json=body)
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]


def badge(page: Any) -> Any:
    return page.locator("h1 .badge")


def test_watch_progress_filter_failed_items_retry_and_see_it_complete(
    srv: Server, open_page: Callable[..., Any], tmp_path: Path
) -> None:
    key = srv.new_key("acme", role="supervisor")
    marker = tmp_path / "broken"
    marker.touch()
    items = [{"n": i, "seconds": 0.25, **({"broken": str(marker)} if i % 3 == 0 else {})}
             for i in range(16)]
    b = create(srv, key, {"task": "flaky", "items": items, "parallelism": 1})
    page = open_page()
    sign_in(page, srv, key, f"/ui/batches/{b['id']}")

    # Progress advances without a reload: a value set on the page survives.
    page.evaluate("window.__sameDocument = true")
    done = page.locator('[data-field="counts.succeeded"]')
    first = int(done.inner_text())
    expect(done).not_to_have_text(str(first))
    assert page.evaluate("window.__sameDocument === true")
    expect(page.locator("progress[data-field=done]")).not_to_have_attribute("value", "0")

    expect(badge(page)).to_have_text("partial", timeout=WAIT_MS * 2)
    # The end reloads the page once (what it offers changes): it no longer listens.
    expect(page.locator("[data-sse]")).to_have_count(0)
    marker.unlink()  # the upstream is back

    page.get_by_role("link", name="Items", exact=True).click()
    page.get_by_label("Status").select_option("failed")
    expect(page).to_have_url(f"{srv.url}/ui/batches/{b['id']}/items?status=failed&error=")
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(6)
    expect(rows.locator(".badge")).to_have_text(["failed"] * 6)
    page.get_by_label("Error contains").fill("upstream")
    expect(page).to_have_url(
        f"{srv.url}/ui/batches/{b['id']}/items?status=failed&error=upstream")
    page.get_by_role("button", name="Retry all matching failed items").click()

    expect(page).to_have_url(f"{srv.url}/ui/batches/{b['id']}?did=retry&n=6")
    expect(page.get_by_role("status")).to_have_text("Retry: 6 items queued again.")
    expect(badge(page)).to_have_text("completed", timeout=WAIT_MS * 2)
    expect(page.locator('[data-field="counts.succeeded"]')).to_have_text("16")

    # Item 0 failed, was retried from here and succeeded: its page shows each attempt.
    page.get_by_role("link", name="Items", exact=True).click()
    page.locator("tbody tr").first.get_by_role("link").click()
    tries = page.locator("#attempts tbody tr .badge")
    expect(tries.last).to_have_text("succeeded")
    expect(tries.filter(has_text="failed")).to_have_count(1)


def test_pause_resume_and_cancel(srv: Server, open_page: Callable[..., Any]) -> None:
    key = srv.new_key("acme", owner="alice")
    b = create(srv, key, {"task": "tracked", "items": [{"seconds": 0.3}] * 30,
                          "parallelism": 1})
    page = open_page()
    sign_in(page, srv, key, f"/ui/batches/{b['id']}")

    # The chart follows the batch without a reload.
    page.evaluate("window.__sameDocument = true")
    chart = page.locator("#chart")
    expect(chart).not_to_have_attribute("data-finished", chart.get_attribute("data-finished"))
    assert page.evaluate("window.__sameDocument === true")

    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_role("status")).to_contain_text("Paused:")
    expect(badge(page)).to_have_text("paused")
    with srv.client(key) as c:
        assert c.get(f"/api/batches/{b['id']}").json()["display_status"] == "paused"

    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_role("status")).to_contain_text("Resumed:")
    expect(page.get_by_role("button", name="Pause")).to_be_visible()

    page.get_by_role("button", name="Cancel batch").click()
    expect(page.get_by_role("status")).to_contain_text("Cancelled:")
    expect(badge(page)).to_have_text("cancelled")
    expect(page.get_by_role("button", name="Pause")).to_have_count(0)


def test_a_user_of_tenant_b_sees_nothing_of_tenant_a(
    srv: Server, open_page: Callable[..., Any]
) -> None:
    a = srv.new_key("acme", role="admin")
    b_key = srv.new_key("globex", role="admin")
    theirs = create(srv, a, {"task": "tracked", "items": [{"seconds": 0}] * 2,
                             "metadata": {"project": "secret-acme"}})
    mine = create(srv, b_key, {"task": "tracked", "items": [{"seconds": 0}]})
    page = open_page()
    sign_in(page, srv, b_key)

    expect(page.get_by_role("link", name=mine["id"])).to_be_visible()
    expect(page.get_by_text(theirs["id"])).to_have_count(0)
    page.get_by_role("searchbox").fill(theirs["id"])
    expect(page.get_by_text("No batches match.")).to_be_visible()
    page.get_by_role("searchbox").fill("secret-acme")
    expect(page.get_by_text("No batches match.")).to_be_visible()

    for path in ("", "/items", "/results?format=jsonl", "/events"):
        r = page.request.get(f"{srv.url}/ui/batches/{theirs['id']}{path}")
        assert r.status == 404, (path, r.status)
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    page.goto(f"{srv.url}/ui/batches/{theirs['id']}")
    expect(page.get_by_role("alert")).to_contain_text("not found")
    r = page.request.post(f"{srv.url}/ui/batches/{theirs['id']}/cancel",
                          form={"csrf": csrf})
    assert r.status == 404
    with srv.client(a) as c:
        assert wait_batch(c, theirs["id"])["status"] == "completed"  # untouched


def test_an_action_without_its_csrf_token_is_refused(
    srv: Server, open_page: Callable[..., Any]
) -> None:
    key = srv.new_key("acme", owner="alice")
    b = create(srv, key, {"task": "tracked", "items": [{"seconds": 0.5}] * 20,
                          "parallelism": 1})
    page = open_page()
    sign_in(page, srv, key, f"/ui/batches/{b['id']}")

    for form in ({}, {"csrf": "forged"}):
        r = page.request.post(f"{srv.url}/ui/batches/{b['id']}/cancel", form=form,
                              max_redirects=0)
        assert r.status == 403, r.status
        assert "CSRF" in r.text()
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    cross = page.request.post(f"{srv.url}/ui/batches/{b['id']}/cancel", form={"csrf": csrf},
                              headers={"Origin": "http://elsewhere.example"}, max_redirects=0)
    assert cross.status == 403  # the right token, from another site's form
    with srv.client(key) as c:
        assert c.get(f"/api/batches/{b['id']}").json()["status"] != "cancelled"
    # The page's own form carries the token: the same action goes through.
    page.get_by_role("button", name="Cancel batch").click()
    expect(badge(page)).to_have_text("cancelled")


def test_sign_out_ends_the_session(srv: Server, open_page: Callable[..., Any]) -> None:
    key = srv.new_key("acme")
    page = open_page()
    sign_in(page, srv, key)
    [cookie] = [c for c in page.context.cookies() if c["name"] == "batchd_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{srv.url}/ui/login")
    page.goto(f"{srv.url}/ui/batches")
    expect(page).to_have_url(f"{srv.url}/ui/login?next=/ui/batches")
    # The old cookie is worth nothing now, wherever it is replayed.
    replay = httpx.get(f"{srv.url}/ui/batches", cookies={"batchd_session": cookie["value"]})
    assert replay.status_code == 303 and replay.headers["location"].startswith("/ui/login")


def test_a_wrong_key_does_not_sign_in(srv: Server, open_page: Callable[..., Any]) -> None:
    page = open_page()
    page.goto(f"{srv.url}/ui/login")
    page.get_by_label("API key").fill("bd_not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not valid")
    assert not [c for c in page.context.cookies() if c["name"] == "batchd_session"]


def test_the_pages_work_at_phone_width(srv: Server, open_page: Callable[..., Any]) -> None:
    key = srv.new_key("acme", role="supervisor")
    b = create(srv, key, {"task": "tracked", "items": [{"seconds": 0}] * 3})
    page = open_page(viewport={"width": 375, "height": 812}, is_mobile=True)
    sign_in(page, srv, key)
    for path, heading in (("/ui/batches", "Batches"), (f"/ui/batches/{b['id']}", b["id"]),
                          (f"/ui/batches/{b['id']}/items", "items"), ("/ui/tasks", "Tasks"),
                          ("/ui/workers", "Workers"), ("/ui/usage", "Usage"),
                          ("/ui/queue", "AI queue")):
        page.goto(srv.url + path)
        expect(page.locator("h1")).to_contain_text(heading)
        # Nothing wider than the screen but the tables' own scrolling boxes.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, (path, width)


def test_an_operator_picks_the_tenant_whose_batches_it_sees(srv: Server) -> None:
    admin = srv.new_key("acme", role="admin")
    theirs = create(srv, admin, {"task": "tracked", "items": [{"seconds": 0}]})

    @contextmanager
    def signed_in(key: str) -> Iterator[httpx.Client]:
        with httpx.Client(base_url=srv.url, timeout=scaled(30)) as c:
            r = c.post("/ui/login", data={"key": key, "next": "/ui/batches"})
            assert r.status_code == 303, r.text
            yield c

    with signed_in(srv.admin_key) as op:  # the operator's key (tenant "default")
        assert theirs["id"] not in op.get("/ui/batches").text
        assert theirs["id"] in op.get("/ui/batches", params={"tenant": "acme"}).text
        assert op.get(f"/ui/batches/{theirs['id']}").status_code == 200
        assert op.get("/ui/batches", params={"tenant": "no-such"}).status_code == 404
    with signed_in(admin) as c:
        assert c.get("/ui/batches", params={"tenant": "default"}).status_code == 403
        assert 'name="tenant"' not in c.get("/ui/batches").text
