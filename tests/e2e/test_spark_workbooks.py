"""Excel workbooks as Spark services, end to end: ``batchd services publish`` (and the
native route), then the published Spark SDK (``cspark``) runs records through them.

Outputs are compared with LibreOffice's values for the same workbook and inputs
(``tests/fixtures/workbooks/reference.json``, made by ``build.py`` beside it).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("formulas")

from cspark import sdk as Spark  # noqa: E402

from tests.conftest import ROOT, Server, scaled, wait_until  # noqa: E402
from tests.e2e.test_cli_user_path import env_for  # noqa: E402
from tests.support.workbooks import FIXTURES, REFERENCE, same  # noqa: E402

pytestmark = pytest.mark.timeout(scaled(180))

TENANT = "actuaries"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def batchd(server: Server, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "batchd.cli.main", *args],
                          env=env_for(server.url, key or server.admin_key),
                          capture_output=True, text=True, timeout=scaled(120))


def publish(server: Server, name: str, service: str, version: str) -> dict[str, Any]:
    with server.client() as c:
        r = c.post(f"/api/services/{service}/versions",
                   params={"version": version, "filename": f"{name}.xlsx"},
                   content=(FIXTURES / f"{name}.xlsx").read_bytes(),
                   headers={"Content-Type": XLSX})
    assert r.status_code == 201, r.text
    return dict(r.json())


def spark(server: Server) -> Spark.Client:
    key = server.new_key(TENANT, owner="analyst@example.com")
    return Spark.Client(base_url=Spark.BaseUrl(url=server.url, tenant=TENANT), api_key=key,
                        logger=False)


def run_cases(client: Spark.Client, service: str, cases: list[dict[str, Any]],
              **create: Any) -> dict[int, dict[str, Any]]:
    """Every case as a record (objects, with a ``case`` key), in chunks of 2; the outputs
    by case number."""
    created = client.batches.create(service, unique_record_key="case", **create).data
    pipeline = client.batches.of(created["id"])
    records = [{"case": i, **c["inputs"]} for i, c in enumerate(cases)]
    pipeline.push(chunks=[
        Spark.BatchChunk(id=f"c{i}", data=Spark.ChunkData(inputs=records[i:i + 2]))
        for i in range(0, len(records), 2)])
    got: dict[int, dict[str, Any]] = {}

    def pulled() -> bool:
        for chunk in pipeline.pull().data["data"]:
            assert chunk["errors"] == [None] * len(chunk["outputs"]), chunk
            for out in chunk["outputs"]:
                got[out.pop("case")] = out
        return len(got) == len(records)

    wait_until(pulled, timeout_s=scaled(60), interval_s=0.1, what="every case back")
    pipeline.dispose()
    return got


def assert_libreoffice_values(name: str, got: dict[int, dict[str, Any]]) -> None:
    for i, case in enumerate(REFERENCE[name]):
        wrong = {k: (got[i].get(k), want) for k, want in case["outputs"].items()
                 if not same(got[i].get(k), want)}
        assert not wrong, f"{name} {case['inputs']}: (batchd, LibreOffice) {wrong}"


def test_publish_with_the_cli_then_run_every_workbook_through_the_spark_sdk(
    make_server: Callable[..., Server],
) -> None:
    server = make_server()
    for name in sorted(REFERENCE):
        done = batchd(server, "services", "publish", str(FIXTURES / f"{name}.xlsx"),
                      "--service", f"models/{name}", "--version", "1.0.0")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().splitlines()[-1] == f"models/{name}[1.0.0]"
        assert f"published {name}.xlsx" in done.stderr and "outputs:" in done.stderr
    listed = batchd(server, "services", "versions", "models/lookups")
    assert listed.returncode == 0, listed.stderr
    assert "1.0.0" in listed.stdout and "workbook" in listed.stdout and "product" in listed.stdout
    with spark(server) as client:
        for name in sorted(REFERENCE):
            got = run_cases(client, f"models/{name}", REFERENCE[name])
            assert_libreoffice_values(name, got)


def test_a_published_version_runs_on_a_worker_in_another_process(
    make_server: Callable[..., Server],
) -> None:
    """The file is kept in the database: a separate ``batchd worker`` builds the
    version from there and compiles it once."""
    server = make_server(run_worker="false")
    worker = make_server(command="worker")
    wait_until(lambda: worker.log_path.exists() and "running" in worker.log_path.read_text(),
               timeout_s=scaled(30), what="worker start")
    published = publish(server, "crosssheet", "models/cross", "2.1.0")
    assert published["inputs"] == ["x", "y"]
    assert set(published["outputs"]) == {"result", "capped", "doubled"}
    assert published["vectorised_share"] == 1.0  # its SUM and MIN run column-wise too
    with spark(server) as client:
        got = run_cases(client, "models/cross[2.1]", REFERENCE["crosssheet"])
    assert_libreoffice_values("crosssheet", got)


def test_an_unsupported_function_is_refused_at_publish(
    make_server: Callable[..., Server],
) -> None:
    server = make_server()
    content = (FIXTURES / "unsupported.xlsx").read_bytes()
    with server.client() as c:
        r = c.post("/api/services/models/web/versions", params={"version": "1.0.0"},
                   content=content)
        assert r.status_code == 422, r.text
        problem = r.json()["detail"][0]
        assert (problem["cell"], problem["function"]) == ("CALC!B2", "WEBSERVICE")
        assert problem["type"] == "unsupported_function"
        assert "WEBSERVICE" in problem["msg"] and "CALC!B2" in problem["msg"]
        assert c.get("/api/services/models/web").status_code == 404  # nothing was kept
    done = batchd(server, "services", "publish", str(FIXTURES / "unsupported.xlsx"),
                  "--service", "models/web", "--version", "1.0.0")
    assert done.returncode == 1
    assert "error 422" in done.stderr and "WEBSERVICE" in done.stderr and "CALC!B2" in done.stderr


def test_publishing_rules(make_server: Callable[..., Server]) -> None:
    server = make_server()
    first = publish(server, "arithmetic", "models/calc", "1.0.0")
    assert first["uri"] == "models/calc[1.0.0]" and first["kind"] == "workbook"
    assert first["inputs"] == ["a", "b", "c"]  # the plain-name convention
    again = publish(server, "arithmetic", "models/calc", "1.0.0")  # the same file: fine
    assert again["sha256"] == first["sha256"]
    user = server.new_key(TENANT, role="admin")
    with server.client() as c, server.client(user) as as_admin:
        other = (FIXTURES / "rounding.xlsx").read_bytes()
        r = c.post("/api/services/models/calc/versions", params={"version": "1.0.0"},
                   content=other)
        assert r.status_code == 409, r.text  # a version never changes
        r = as_admin.post("/api/services/models/calc/versions", params={"version": "1.1.0"},
                          content=other)
        assert r.status_code == 403, r.text  # the catalog is every tenant's: the operator
        r = c.post("/api/services/models/calc/versions", params={"version": "one"},
                   content=other)
        assert r.status_code == 422 and "version" in r.text
        r = c.post("/api/services/models/calc/versions", params={"version": "1.2.0"},
                   content=b"not a workbook")
        assert r.status_code == 422 and "not an .xlsx workbook" in r.text
        r = c.post("/api/services/myfolder/SalesExample/versions", params={"version": "9.0.0"},
                   content=other)
        assert r.status_code == 409, r.text  # a Python service's name
        assert c.post("/api/services/models/calc/versions", params={"version": "1.1.0"},
                      content=other).status_code == 201
        versions = c.get("/api/services/models/calc").json()["data"]
        assert [v["version"] for v in versions] == ["1.0.0", "1.1.0"]
        assert versions[1]["inputs"] == ["x"]
        tasks = {t["name"]: t for t in c.get("/api/tasks").json()["data"]}
        assert tasks["models/calc"]["kind"] == "workbook"
        # Over /api/tasks a workbook task may only name a file already published.
        definition = {"name": "models/calc2", "version": "1.0.0", "kind": "workbook",
                      "config": {"sha256": "0" * 64}}
        r = c.post("/api/tasks", json=definition)
        assert r.status_code == 422 and "publish the .xlsx" in r.text
        definition["config"] = {"sha256": first["sha256"]}
        assert c.post("/api/tasks", json=definition).status_code == 201, r.text
    with spark(server) as client:
        # models/calc now means its newest version: the rounding workbook.
        got = run_cases(client, "models/calc", REFERENCE["rounding"])
        assert_libreoffice_values("rounding", got)
        got = run_cases(client, "models/calc[1.0.0]", REFERENCE["arithmetic"])
        assert_libreoffice_values("arithmetic", got)
        got = run_cases(client, "models/calc2", REFERENCE["arithmetic"])
        assert_libreoffice_values("arithmetic", got)


def test_the_sales_example_workbook_is_served_by_default(
    make_server: Callable[..., Server],
) -> None:
    """The document's chunks through myfolder/SalesExampleWorkbook: its sample totals,
    and its ``data.summary`` aggregation."""
    server = make_server()
    headers = ["sale_id", "price", "quantity"]
    with spark(server) as client:
        created = client.batches.create("myfolder/SalesExampleWorkbook",
                                        unique_record_key="sale_id").data
        assert created["data"]["service_uri"] == "myfolder/SalesExampleWorkbook[0.2.0]"
        pipeline = client.batches.of(created["id"])
        pipeline.push(chunks=[
            Spark.BatchChunk(id="f7b52961", data=Spark.ChunkData(
                inputs=[headers, [1, 20, 65], [2, 74, 73]], parameters={"tax": 0.1},
                summary={"ignore_error": False,
                         "aggregation": [{"output_name": "total", "operator": "SUM"}]})),
            Spark.BatchChunk(id="ec2eec02", data=Spark.ChunkData(
                inputs=[headers, [3, 20, 65], [4, 34, 73], [5, 62, 62], [6, 43, 87],
                        [7, 23, 35]], parameters={"tax": 0.1})),
        ])
        chunks: dict[str, Any] = {}

        def pulled() -> bool:
            chunks.update({ch["id"]: ch for ch in pipeline.pull().data["data"]})
            return len(chunks) == 2

        wait_until(pulled, timeout_s=scaled(60), interval_s=0.1, what="both chunks")
    assert chunks["f7b52961"]["outputs"] == [["sale_id", "total"], [1, 1430], [2, 5942.2]]
    assert chunks["f7b52961"]["summary_output"] == [[["total_SUM"], [7372.2]]]
    assert chunks["ec2eec02"]["outputs"] == [
        ["sale_id", "total"], [3, 1430], [4, 2730.2], [5, 4228.4], [6, 4115.1], [7, 885.5]]


def test_example_file_is_what_the_build_script_writes(tmp_path: Path) -> None:
    """examples/SalesExample.xlsx is the build script's output (same cells and names)."""
    from openpyxl import load_workbook

    script = ROOT / "examples" / "build_sales_workbook.py"
    copy = tmp_path / "build_sales_workbook.py"
    copy.write_text(script.read_text())
    done = subprocess.run([sys.executable, str(copy)], capture_output=True, text=True,
                          env=env_for(None, None), timeout=scaled(60))
    assert done.returncode == 0, done.stderr

    def cells(path: Path) -> tuple[Any, ...]:
        wb = load_workbook(path)
        return ([[c.value for c in row] for row in wb["Sales"].iter_rows()],
                {n: d.attr_text for n, d in wb.defined_names.items()})

    assert cells(tmp_path / "SalesExample.xlsx") == cells(ROOT / "examples" / "SalesExample.xlsx")


def test_a_bad_value_fails_its_record_only(make_server: Callable[..., Server]) -> None:
    server = make_server()
    publish(server, "arithmetic", "models/calc", "1.0.0")
    with spark(server) as client:
        pipeline = client.batches.of(client.batches.create(
            "models/calc", unique_record_key="id", selected_outputs=["sum_ab"]).data["id"])
        pipeline.push(inputs=[{"id": 1, "a": [1], "b": 2}, {"id": 2, "a": 1, "b": 2},
                              {"id": 3, "a": "text", "b": 2}])
        chunks: list[dict[str, Any]] = []
        wait_until(lambda: chunks.extend(pipeline.pull().data["data"]) or chunks,
                   timeout_s=scaled(60), interval_s=0.1, what="the chunk")
    (chunk,) = chunks
    assert chunk["outputs"] == [{"id": 1}, {"id": 2, "sum_ab": 3}, {"id": 3, "sum_ab": "#VALUE!"}]
    assert chunk["errors"][1:] == [None, None]
    assert chunk["errors"][0]["code"] == "invalid_record"
    assert "'a'" in chunk["errors"][0]["message"]


def test_a_range_input_of_the_wrong_shape_is_a_422_in_sparks_shape(
    make_server: Callable[..., Server],
) -> None:
    """A table input (a range) takes a list per record; the wrong shape is refused when
    the chunk is pushed, in the Spark dialect's error shape, and nothing is queued."""
    server = make_server()
    publish(server, "ranges", "models/tables", "1.0.0")
    key = server.new_key(TENANT, owner="analyst@example.com")
    with Spark.Client(base_url=Spark.BaseUrl(url=server.url, tenant=TENANT), api_key=key,
                      logger=False) as client, server.client(key) as raw:
        batch_id = client.batches.create("models/tables").data["id"]
        r = raw.post(f"/{TENANT}/api/v4/batch/{batch_id}/chunks", json={"chunks": [
            {"id": "c1", "data": {"inputs": [{"weights": [1, 2]},
                                             {"weights": [1, 2, 3, 4]}]}}]})
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert (error["status"], error["code"]) == (422, "invalid_input")
        assert "weights" in error["message"] and "is too long" in error["message"]
        with pytest.raises(Spark.SparkApiError) as caught:
            client.batches.of(batch_id).push(inputs=[{"row": [[1, 2, 3], [4, 5, 6]]}])
        assert caught.value.status == 422
        got = client.batches.of(batch_id).get_status().data
        assert got["record_submitted"] == 0
