"""The quick-start path: a batch of the example task, its results."""

from __future__ import annotations

import pytest

from tests.conftest import Server, scaled, wait_batch

pytestmark = pytest.mark.timeout(scaled(60))


def test_sales_batch_computes_totals(server: Server) -> None:
    with server.client() as c:
        r = c.post("/api/batches", json={"task": "sales", "items": [
            {"price": 10, "quantity": 3, "tax": 0.1}, {"price": 2.5, "quantity": 4, "tax": 0}]})
        assert r.status_code == 201, r.text
        b = wait_batch(c, r.json()["id"])
        assert b["status"] == "completed"
        rows = [line for line in c.get(f"/api/batches/{b['id']}/results").text.splitlines()]
        assert len(rows) == 2
        assert '"total":33.0' in rows[0] and '"total":10.0' in rows[1]
