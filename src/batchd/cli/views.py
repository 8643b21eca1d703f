"""How batches, items and webhook messages read on a terminal (the words come from the
server: ``display_status`` is derived there, once)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.markup import escape
from rich.table import Column, Table

# Why a batch stops early (the server's ``StopReason``s): its ``error.code``.
STOP_REASONS = frozenset({"fail_fast", "budget_exceeded", "cancelled", "expired"})


def _id(name: str = "id") -> Column:
    # Ids are copied into the next command: never cut, never wrapped.
    return Column(name, no_wrap=True, min_width=28)


def age(iso: str, now: datetime) -> str:
    """How long ago ``iso`` was: ``45s``, ``12m``, ``3h``, ``2d``."""
    seconds = max(0, int((now - datetime.fromisoformat(iso)).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def when(iso: str | None) -> str:
    """``2025-01-08T11:30:20.258784Z`` as ``2025-01-08 11:30`` (UTC)."""
    return "" if not iso else iso.replace("T", " ")[:16]


def state(b: dict[str, Any]) -> str:
    """What the batch is doing: ``running``, ``queued``, … or how it ended."""
    return str(b.get("display_status") or b["status"])


def records_done(b: dict[str, Any]) -> int:
    r = b["records"]
    return int(r["succeeded"] + r["failed"] + r.get("cancelled", 0))


def stop_reason(b: dict[str, Any]) -> str | None:
    """Why the batch stopped early (``budget_exceeded: …``), if it did."""
    error = b.get("error")
    if not error:
        return None
    if isinstance(error, dict):
        code, message = error.get("code"), error.get("message")
        if code and message and message != str(code).replace("_", " "):
            return f"{code}: {message}"
        return str(code or message)
    return str(error)


def tally(b: dict[str, Any]) -> str:
    """``ok=… failed=… cancelled=…`` in records."""
    r = b["records"]
    return f"ok={r['succeeded']} failed={r['failed']} cancelled={r.get('cancelled', 0)}"


def summary(b: dict[str, Any]) -> str:
    """One line: the batch, its state, its records and why it stopped early."""
    r = b["records"]
    line = (f"{b['id']} {state(b)}: {r['total']} records, {r['succeeded']} succeeded, "
            f"{r['failed']} failed, {r.get('cancelled', 0)} cancelled")
    reason = stop_reason(b)
    return f"{line} ({reason})" if reason else line


def status_table(b: dict[str, Any]) -> Table:
    t = Table(show_header=False)
    shown = state(b)
    t.add_row("id", b["id"])
    t.add_row("task", f"{b['task']} {b['version']}" + (f" ({b['runner']})" if b.get("runner")
                                                          else ""))
    t.add_row("status", shown if shown == b["status"] else f"{shown} (batch {b['status']})")
    for key in ("priority", "parallelism", "records_per_item", "created_at", "started_at",
                "finished_at"):
        if b.get(key) is not None:
            t.add_row(key, str(b[key]))
    t.add_row("items", " ".join(f"{k}={v}" for k, v in b["counts"].items()))
    t.add_row("records", " ".join(f"{k}={v}" for k, v in b["records"].items()))
    t.add_row("cost", " ".join(f"{k}={v}" for k, v in b["cost"].items()))
    if b.get("budget_usd") is not None:
        t.add_row("budget_usd", str(b["budget_usd"]))
    reason = stop_reason(b)
    if reason:
        stopped = isinstance(b["error"], dict) and b["error"].get("code") in STOP_REASONS
        t.add_row("stopped" if stopped else "error", reason)
    if b.get("webhook_url"):
        t.add_row("webhook_url", b["webhook_url"])
    for w in b.get("warnings") or ():  # e.g. task_not_served: no running worker has its task
        t.add_row("[yellow]warning[/yellow]", escape(w["message"]))
    return t


def batches_table(rows: list[dict[str, Any]]) -> Table:
    longest = max((len(b["task"]) for b in rows), default=4)
    t = Table(_id(), Column("task", min_width=min(longest, 24), overflow="fold"),
              Column("status", no_wrap=True), Column("records", no_wrap=True),
              Column("failed", no_wrap=True), Column("cancelled", no_wrap=True),
              Column("age", no_wrap=True), box=None, pad_edge=False, padding=(0, 2, 0, 0),
              header_style="bold underline")
    now = datetime.now(UTC)
    for b in rows:
        r = b["records"]
        t.add_row(b["id"], b["task"], state(b), f"{records_done(b)}/{r['total']}",
                  str(r["failed"]), str(r.get("cancelled", 0)), age(b["created_at"], now))
    return t


def error_text(error: Any) -> str:
    if not error:
        return ""
    if isinstance(error, dict):
        code, message = error.get("code") or error.get("type"), error.get("message")
        if code and message:
            return f"{code}: {message}"
        return str(message or code or error)
    return str(error)


def items_table(rows: list[dict[str, Any]]) -> Table:
    t = Table(Column("id", no_wrap=True), "seq", "status", "attempts", "records", "error")
    for i in rows:
        t.add_row(i["id"], str(i["seq"]), i["status"], str(i["attempts"]),
                  str(i.get("records", 1)), error_text(i.get("error")))
    return t


def _last_attempt(m: dict[str, Any]) -> str:
    last = " ".join(str(v) for v in (m.get("last_status_code"), m.get("last_error")) if v)
    if m.get("next_attempt_at"):
        last = f"{last}; next {when(m['next_attempt_at'])}".lstrip("; ")
    return last


def webhooks_table(rows: list[dict[str, Any]], *, with_batch: bool = True) -> Table:
    columns = [Column("id", no_wrap=True), Column("status", no_wrap=True),
               Column("event", no_wrap=True), Column("tries", no_wrap=True),
               Column("last", min_width=8, overflow="fold")]
    if with_batch:
        columns.append(_id("batch"))
    t = Table(*columns, box=None, pad_edge=False, padding=(0, 2, 0, 0),
              header_style="bold underline")
    for m in rows:
        cells = [m["id"], m["status"], m["event"], str(m["attempts"]), _last_attempt(m)]
        t.add_row(*cells, *([m.get("batch_id") or ""] if with_batch else []))
    return t


def attempts_table(log: list[dict[str, Any]]) -> Table:
    t = Table("attempt", Column("at (UTC)", no_wrap=True), "status code", "error", "ms")
    for a in log:
        t.add_row(str(a["attempt"]), when(a["at"]), str(a.get("status_code") or ""),
                  a.get("error") or "", str(a.get("duration_ms", "")))
    return t
