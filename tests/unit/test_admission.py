"""Commit admission (core.admission): the verdict on an upload joining its batch."""

from __future__ import annotations

from dataclasses import replace

from batchd.core import admission, quotas
from batchd.core.admission import Admit, CommitTarget, Refuse, Replay, Upload
from batchd.domain import errors

OPEN = CommitTarget(pk=1, tenant_id="ten_1", status="open", staging=False, stop_reason=None,
                    in_buffer_bytes=0, max_input_bytes=None)
UPLOAD = Upload(items=2, records=2, est_usd=0.5, size=100)


def verdict(
    target: CommitTarget = OPEN, upload: Upload = UPLOAD, *, replay_of: str | None = None,
    tenant_used: int = 0, tenant_limit: int | None = None,
) -> admission.Verdict:
    return admission.admit(target, upload, replay_of=replay_of, tenant_used=tenant_used,
                           tenant_limit=tenant_limit)


def test_admit_open_batch_within_its_buffers() -> None:
    assert verdict() == Admit()
    assert verdict(replace(OPEN, in_buffer_bytes=900, max_input_bytes=1000)) == Admit()
    assert verdict(tenant_used=900, tenant_limit=1000) == Admit()


def test_admit_replays_an_earlier_request_before_anything_else() -> None:
    closed = replace(OPEN, status="closed", staging=True, max_input_bytes=1)

    assert verdict(closed, replay_of="bat_first") == Replay("bat_first")


def test_admit_refuses_a_batch_that_no_longer_takes_items() -> None:
    for target in (replace(OPEN, status="closed"), replace(OPEN, status="completed"),
                   replace(OPEN, stop_reason="cancelled")):
        v = verdict(target)

        assert isinstance(v, Refuse)
        assert isinstance(v.error, errors.Conflict)
        assert f"batch is {target.status}" in v.error.message
        assert v.drop_batch is False


def test_admit_refuses_an_upload_over_the_batch_buffer() -> None:
    v = verdict(replace(OPEN, in_buffer_bytes=901, max_input_bytes=1000))

    assert isinstance(v, Refuse)
    assert isinstance(v.error, quotas.InputBufferFull)
    assert "99 of 1000 bytes free" in v.error.message
    assert v.drop_batch is False  # a live batch keeps what it already has


def test_admit_refused_create_drops_its_batch() -> None:
    v = verdict(replace(OPEN, staging=True, max_input_bytes=99))

    assert isinstance(v, Refuse)
    assert isinstance(v.error, quotas.InputBufferFull)
    assert v.drop_batch is True


def test_admit_refuses_an_upload_over_the_tenant_buffer() -> None:
    v = verdict(tenant_used=901, tenant_limit=1000)

    assert isinstance(v, Refuse)
    assert isinstance(v.error, quotas.InputBufferFull)
    assert "tenant input buffer full" in v.error.message
    assert verdict(tenant_used=10**9, tenant_limit=0) == Admit()  # 0: no tenant limit


def test_admit_refuses_an_upload_past_the_tier_batch_size_counting_what_the_batch_holds() -> None:
    free = quotas.tier_table()["free"]  # 5 items a batch
    holding_3 = replace(OPEN, n_total=3)

    assert admission.admit(holding_3, UPLOAD, replay_of=None, tenant_used=0, tenant_limit=None,
                           limits=free, tier="free") == Admit()
    refused = admission.admit(replace(holding_3, n_total=4), UPLOAD, replay_of=None,
                              tenant_used=0, tenant_limit=None, limits=free, tier="free")
    assert isinstance(refused, Refuse)
    assert isinstance(refused.error, errors.BatchTooLarge)
    assert refused.drop_batch is False
    created = admission.admit(replace(OPEN, staging=True), replace(UPLOAD, items=6),
                              replay_of=None, tenant_used=0, tenant_limit=None, limits=free,
                              tier="free")
    assert isinstance(created, Refuse) and created.drop_batch is True
