"""The Spark batch pipeline driven by the published Spark Python SDK (``cspark``).

The SDK is used as its users use it; only the base URL, the tenant and the key point
it at a real ``batchd serve``. Every method of its batch surface: ``batches.describe``,
``create`` (with its options), ``of(id)`` with ``get_info``, ``get_status``, ``push``
in each form (``chunks``, ``data``, ``inputs``, ``raw``), ``pull`` in a loop begun before
any result, ``dispose`` and ``cancel``; ``create_chunks``; a BSON round trip.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import bson
import orjson
import pytest
from cspark import sdk as Spark

from tests.conftest import Server, wait_until

pytestmark = pytest.mark.timeout(120)

TASKS = "tests.support.tasks,tests.support.spark_services"
TENANT = "mytenant"
SERVICE = "myfolder/SalesExample"
HEADERS = ["sale_id", "price", "quantity"]


def spark_client(server: Server, auth: str) -> Spark.Client:
    key = server.new_key(TENANT, owner="analyst@example.com")
    credentials = {"api_key": key} if auth == "api_key" else {"token": key}
    return Spark.Client(base_url=Spark.BaseUrl(url=server.url, tenant=TENANT), logger=False,
                        **credentials)


def sales(first: int, n: int) -> list[list[Any]]:
    return [[first + i, 10 + i * 1.25, 1 + i % 7] for i in range(n)]


def expected_total(price: float, quantity: int, tax: float) -> float:
    return round(price * quantity * (1 + tax), 2)


def pull_until(pipeline: Any, records: int) -> list[dict[str, Any]]:
    """``pipeline.pull()`` in a loop, as the SDK's users do, until ``records`` came back."""
    chunks: list[dict[str, Any]] = []

    def done() -> bool:
        answer = pipeline.pull(max_chunks=100).data
        assert answer["status"]["batch_status"] in ("in_progress", "closed", "completed")
        chunks.extend(answer["data"])
        return sum(len(ch["outputs"]) - 1 for ch in chunks) >= records

    wait_until(done, timeout_s=60, interval_s=0.1, what=f"{records} records pulled")
    return chunks


@pytest.mark.parametrize("auth", ["api_key", "token"])
def test_spark_sdk_pipeline_create_pull_push_pull_close(
    make_server: Callable[..., Server], auth: str
) -> None:
    server = make_server(tasks=TASKS)
    with spark_client(server, auth) as spark:
        created = spark.batches.create(
            SERVICE, unique_record_key="sale_id", selected_outputs=["total", "sale_id"],
            source_system="batchd tests", correlation_id="corr-42", max_input_size=10,
            max_output_size=12, chunks_per_vm=2, runners_per_vm=1,
        ).data
        assert created["object"] == "batch"
        data = created["data"]
        assert data["batch_status"] == "created"
        assert data["service_uri"] == "myfolder/SalesExample[0.2.0]"
        assert (data["source_system"], data["correlation_id"]) == ("batchd tests", "corr-42")
        assert data["unique_record_key"] == "sale_id"
        assert data["created_by"] == "analyst@example.com"
        pipeline = spark.batches.of(created["id"])

        info = pipeline.get_info().data["data"]
        assert info["configuration"]["input_buffer_allocated_bytes"] == 10_000_000
        assert info["configuration"]["output_buffer_allocated_bytes"] == 12_000_000
        assert info["configuration"]["chunks_per_request"] == 2

        # The first pull comes before any result exists: the SDK reads
        # data["status"]["records_available"] on every answer.
        empty = pipeline.pull().data
        assert empty["data"] == []
        assert empty["status"]["records_available"] == 0
        assert empty["status"]["batch_status"] == "created"
        assert empty["batch_status"] == "created" and empty["records_available"] == 0

        # 25 records in chunks of 10 made by the SDK's helper, then 3 more as one chunk.
        rows = sales(1, 25)
        chunks = Spark.create_chunks([list(r) for r in rows], headers=HEADERS, chunk_size=10,
                                     parameters={"tax": 0.1})
        assert [c.size for c in chunks] == [10, 10, 5]
        pushed = pipeline.push(chunks=chunks).data
        assert (pushed["chunks_submitted"], pushed["record_submitted"]) == (3, 25)
        more = sales(26, 3)
        pushed = pipeline.push(data=Spark.ChunkData(inputs=[HEADERS, *more],
                                                    parameters={"tax": 0.2})).data
        assert (pushed["chunks_submitted"], pushed["record_submitted"]) == (4, 28)

        got = pull_until(pipeline, 28)
        ids = [ch["id"] for ch in got]
        assert len(ids) == len(set(ids)) == 4
        extra = set(ids) - {c.id for c in chunks}
        assert len(extra) == 1 and uuid.UUID(extra.pop())  # the SDK named the 4th chunk
        totals: dict[int, float] = {}
        for ch in got:
            assert ch["outputs"][0] == ["sale_id", "total"]
            assert ch["errors"] == [None] * (len(ch["outputs"]) - 1)
            for sale_id, total in ch["outputs"][1:]:
                assert sale_id not in totals
                totals[sale_id] = total
        want = {r[0]: expected_total(r[1], r[2], 0.1) for r in rows}
        want |= {r[0]: expected_total(r[1], r[2], 0.2) for r in more}
        assert totals == want

        closed = pipeline.dispose().data
        assert pipeline.state == "closed"
        assert closed["data"]["batch_status"] == "completed"  # everything was pulled
        status = pipeline.get_status().data
        assert (status["batch_status"], status["pipeline_status"]) == ("completed", "closed")
        assert (status["chunks_submitted"], status["record_submitted"]) == (4, 28)
        assert (status["chunks_completed"], status["records_completed"]) == (4, 28)
        assert (status["records_available"], status["chunks_available"]) == (0, 0)
        assert status["output_buffer_used_bytes"] == 0

        tenant = spark.batches.describe().data
        recent = {b["id"]: b["data"] for b in tenant["recent_batches"]}
        assert recent[created["id"]]["batch_status"] == "completed"
        assert recent[created["id"]]["summary"]["records_completed"] == 28
        assert tenant["in_progress_batches"] == []

        # Pulling after the end still answers both readers.
        after = pipeline.pull().data
        assert after["data"] == [] and after["status"]["batch_status"] == "completed"


def test_spark_sdk_cancel_stops_the_pipeline(make_server: Callable[..., Server]) -> None:
    server = make_server(tasks=TASKS)
    with spark_client(server, "api_key") as spark:
        version_id = spark.batches.create(SERVICE).data["data"]["version_id"]
        # A service named by its version id: the SDK sends version_id, not service.
        created = spark.batches.create(f"version/{version_id}").data
        assert created["data"]["service_uri"] == "myfolder/SalesExample[0.2.0]"
        pipeline = spark.batches.of(created["id"])
        pipeline.push(inputs=[HEADERS, *sales(1, 4)])
        cancelled = pipeline.cancel().data
        assert pipeline.state == "cancelled"
        assert cancelled["data"]["batch_status"] == "cancelled"
        status = pipeline.get_status().data
        assert (status["batch_status"], status["pipeline_status"]) == ("cancelled", "closed")
        assert status["records_available"] == 0
        with pytest.raises(Spark.SparkError):
            pipeline.pull()  # the SDK refuses to pull from a cancelled pipeline



def test_spark_sdk_pull_loop_begun_before_any_result_and_every_push_form(
    make_server: Callable[..., Server],
) -> None:
    """A reader thread pulls in a loop from before the first push (how the SDK is used)
    while the main thread pushes in each of the SDK's forms: ``chunks`` made by
    ``create_chunks`` from a dataset whose first row is the header, ``data``,
    ``inputs`` and ``raw`` (JSON text: an object of chunks, and a list of them)."""
    server = make_server(tasks=TASKS)
    with spark_client(server, "token") as spark:
        created = spark.batches.create(
            SERVICE, unique_record_key="sale_id", selected_outputs="total,sale_id",
            min_runners=2, max_runners=4, accuracy=0.9, call_purpose="pricing run",
            subservices=["ignored"], extras={"experimental_flag": True},
        ).data
        pipeline = spark.batches.of(created["id"])
        info = pipeline.get_info().data["data"]
        assert info["configuration"]["initial_workers"] == 2
        assert info["configuration"]["max_workers"] == 4
        assert info["configuration"]["acceptable_error_percentage"] == 10

        totals: dict[int, float] = {}
        chunk_ids: list[str] = []
        answers: list[dict[str, Any]] = []
        failures: list[BaseException] = []
        stop = threading.Event()

        def reader() -> None:
            try:
                while not stop.is_set():
                    answer = pipeline.pull(max_chunks=10).data
                    answers.append(answer)
                    for ch in answer["data"]:
                        chunk_ids.append(ch["id"])
                        outputs = ch["outputs"]
                        if outputs and isinstance(outputs[0], dict):  # inputs as objects
                            totals.update({o["sale_id"]: o["total"] for o in outputs})
                        elif outputs[1:]:  # a table; the empty chunk's is [[]]
                            assert outputs[0] == ["sale_id", "total"]
                            totals.update({s: t for s, t in outputs[1:]})
                    time.sleep(0.02)
            except BaseException as exc:  # noqa: BLE001  (reported by the main thread)
                failures.append(exc)

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        wait_until(lambda: answers or failures, timeout_s=30, what="a first, empty pull")
        assert answers[0]["data"] == [] and answers[0]["status"]["records_available"] == 0

        rows = sales(1, 20)
        dataset: list[Any] = [list(HEADERS), *[list(r) for r in rows]]
        chunks = Spark.create_chunks(dataset, chunk_size=10, parameters={"tax": 0.1})
        # The SDK counts the header among the rows: a last chunk with no records.
        assert [c.size for c in chunks] == [10, 10, 0]
        assert pipeline.push(chunks=chunks).data["record_submitted"] == 20
        pipeline.push(data=Spark.ChunkData(inputs=[HEADERS, *sales(21, 2)],
                                           parameters={"tax": 0.1}))
        pipeline.push(inputs=[{"sale_id": 23, "price": 10, "quantity": 3, "tax": 0.1}])
        raw = orjson.dumps({"chunks": [{"id": "raw-1", "data": {
            "inputs": [HEADERS, *sales(24, 2)], "parameters": {"tax": 0.1}}}]})
        pipeline.push(raw=raw.decode())
        # A list of chunks as raw text too. (cspark 0.3.3 fails on raw bytes by itself,
        # before sending anything: its StringUtils takes only str.)
        pipeline.push(raw=orjson.dumps([{"id": "raw-2", "data": {
            "inputs": [HEADERS, *sales(26, 1)], "parameters": {"tax": 0.1}}}]).decode())
        status = pipeline.get_status().data
        assert (status["chunks_submitted"], status["record_submitted"]) == (7, 26)

        wait_until(lambda: (len(totals) == 26 and len(chunk_ids) == 7) or failures,
                   timeout_s=60, interval_s=0.05, what="26 records pulled by the reader")
        stop.set()
        thread.join(10)
        assert not failures, failures
        sent = [*rows, *sales(21, 2), [23, 10, 3], *sales(24, 2), *sales(26, 1)]
        want = {r[0]: expected_total(r[1], r[2], 0.1) for r in sent}
        assert totals == want
        assert len(set(chunk_ids)) == 7 and {"raw-1", "raw-2"} <= set(chunk_ids)
        assert pipeline.dispose().data["data"]["batch_status"] == "completed"


def test_spark_sdk_bson_round_trip(make_server: Callable[..., Server]) -> None:
    """Chunks sent as BSON through the SDK's own request come back as BSON, whose
    ``status`` the SDK's pull can read from the decoded buffer."""
    server = make_server(tasks=TASKS)
    with spark_client(server, "api_key") as spark:
        pipeline = spark.batches.of(spark.batches.create(
            SERVICE, unique_record_key="sale_id").data["id"])
        url = f"{server.url}/{TENANT}/api/v4/batch/{pipeline.batch_id}/chunks"
        body = {"chunks": [{"id": "bson-1", "data": {
            "inputs": [HEADERS, [1, 20, 65], [2, 74, 73]], "parameters": {"tax": 0.1}}}]}
        sent = pipeline.request(url, method="POST", content=bson.encode(body),
                                headers={"Content-Type": "application/bson"})
        assert sent.headers["content-type"] == "application/bson"
        assert bson.decode(sent.buffer)["record_submitted"] == 2
        chunks: list[dict[str, Any]] = []

        def pulled() -> bool:
            answer = pipeline.pull()
            if answer.headers["content-type"] == "application/bson":
                decoded = bson.decode(answer.buffer)
                assert decoded["status"]["batch_status"] in ("in_progress", "closed")
                chunks.extend(decoded["data"])
            return bool(chunks)

        wait_until(pulled, timeout_s=60, interval_s=0.1, what="the BSON chunk")
        assert chunks[0]["id"] == "bson-1"
        assert chunks[0]["outputs"] == [["sale_id", "total"], [1, 1430], [2, 5942.2]]
        pipeline.dispose()
