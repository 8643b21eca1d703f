"""The OpenAPI document tells the truth: schemathesis (``--checks all``) over every
operation of every dialect against a live server, and the document's own promises."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Server

CONFIG = Path(__file__).resolve().parent.parent / "openapi" / "schemathesis.toml"
BODY_METHODS = {"post", "patch", "put"}
NO_BODY = {("post", "/api/batches/{batch_id}/close"), ("post", "/api/webhooks/secret/rotate"),
           ("post", "/api/v1/batch/jobs/{job_id}/cancel"),
           ("post", "/api/batches/{batch_id}/pause"), ("post", "/api/batches/{batch_id}/resume"),
           ("post", "/v1/batches/{batch_id}/cancel"),
           ("post", "/v1/messages/batches/{batch_id}/cancel")}


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def test_every_operation_documents_its_body_and_errors(server: Server) -> None:
    doc = httpx.get(f"{server.url}/openapi.json").json()
    schemas = doc["components"]["schemas"]
    for ref in refs(doc):  # every reference resolves
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    operations = [(m, p, op) for p, ops in doc["paths"].items() for m, op in ops.items()]
    assert len(operations) >= 52
    for method, path, op in operations:
        responses = op["responses"]
        public = path in ("/healthz", "/metrics", "/health")
        wanted = {"413", "415", "503"} | (set() if public else {"400", "401", "403", "404",
                                                                 "409", "422", "429"})
        assert wanted <= set(responses), (method, path, sorted(responses))
        for status in wanted:
            assert responses[status]["content"], (method, path, status)
        assert op["x-batchd-body"] in ("control", "json", "stream")
        if method in BODY_METHODS and (method, path) not in NO_BODY:
            assert op.get("requestBody", {}).get("content"), (method, path)
    items = doc["paths"]["/api/batches/{batch_id}/items"]["post"]["requestBody"]["content"]
    assert set(items) == {"application/json", "application/x-ndjson", "text/csv"}
    assert "task" not in json.dumps(items["application/json"])  # inputs, not a new batch


def test_a_wrong_method_is_405_with_every_allowed_method(server: Server) -> None:
    with server.client() as c:
        r = c.request("OPTIONS", "/api/batches")
        assert r.status_code == 405, r.text
        assert set(r.headers["allow"].split(", ")) == {"GET", "POST"}
        r = c.request("DELETE", "/default/api/v4/batch/status")
        assert r.status_code == 405 and r.headers["allow"] == "GET", (r.headers, r.text)
        assert r.json()["error"]["code"] == "method_not_allowed"  # Spark's own shape


def test_schemathesis_finds_nothing(make_server: Callable[..., Server]) -> None:
    srv = make_server()
    doc = httpx.get(f"{srv.url}/openapi.json").json()
    operations = sum(len(ops) for ops in doc["paths"].values())
    cli = Path(sys.executable).parent / "schemathesis"
    # One worker: schemathesis's threads can trip CPython 3.11's parser ("AST constructor
    # recursion depth mismatch") when they compile at the same time.
    proc = subprocess.run(
        [str(cli), "--config-file", str(CONFIG), "run", f"{srv.url}/openapi.json",
         "--checks", "all", "--max-examples", "25", "--workers", "1",
         "--header", f"Authorization: Bearer {srv.admin_key}", "--seed", "20261201"],
        capture_output=True, text=True, timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-8000:]
    assert (f"Tested: {operations}" in out
            or f"Selected: {operations}/{operations}" in out), out[-3000:]  # every one
    assert " passed" in out and "failures" not in out.split("SUMMARY")[-1], out[-3000:]
