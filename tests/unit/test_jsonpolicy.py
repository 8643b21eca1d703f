"""The one JSON policy: exact values or a refusal naming the place, never a silent change."""

from __future__ import annotations

import orjson
import pytest

from batchd.domain import errors, jsonpolicy


def refusal(data: bytes, **kw: object) -> errors.InvalidInput:
    with pytest.raises(errors.InvalidInput) as info:
        jsonpolicy.loads(data, **kw)  # type: ignore[arg-type]
    assert info.value.details["kind"] == "json_invalid"
    return info.value


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400"])
def test_jsonpolicy_non_finite_numbers_are_refused_naming_the_path(literal: bytes) -> None:
    err = refusal(b'{"payload": {"x": [1, ' + literal + b"]}}")

    assert err.details["path"] == ["payload", "x", 1]
    assert err.message.startswith("payload.x[1]: ")


@pytest.mark.parametrize("n", [2**63, -(2**63) - 1, 2**64, 10**30])
def test_jsonpolicy_integers_beyond_64_bits_are_refused(n: int) -> None:
    err = refusal(b'{"a": {"b": %d}}' % n)

    assert err.details["path"] == ["a", "b"]
    assert "64-bit" in err.message and err.message.startswith("a.b: ")


def test_jsonpolicy_64_bit_integers_and_long_digit_strings_are_kept_exactly() -> None:
    doc = {"max": 2**63 - 1, "min": -(2**63), "s": "1" * 40, "f": 1.5e308, "tiny": 1e-300}

    assert jsonpolicy.loads(orjson.dumps(doc)) == doc


def test_jsonpolicy_lone_surrogates_are_refused_in_values_and_keys() -> None:
    assert refusal(b'{"a": ["ok", "x\\ud800"]}').details["path"] == ["a", 1]
    err = refusal(b'{"k\\udc00": 1}')
    assert "surrogate" in err.message
    err.message.encode("utf-8")  # the message itself is writable
    # A proper pair is a character.
    assert jsonpolicy.loads(b'"\\ud83d\\ude00"') == "\U0001f600"


def test_jsonpolicy_invalid_utf8_names_the_byte_offset() -> None:
    err = refusal(b'{"a": "ok\xff"}')

    assert err.details["offset"] == 9 and "at byte 9" in err.message


def test_jsonpolicy_depth_limit_names_offset_and_path() -> None:
    limit = jsonpolicy.MAX_DEPTH
    ok = b"[" * limit + b"]" * limit
    assert jsonpolicy.loads(ok) is not None
    for depth in (limit + 1, 1025, 10_000):
        err = refusal(b'{"a": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}")
        assert f"limit of {limit} levels" in err.message
        assert err.details["offset"] == 6 + limit - 1  # the bracket that opens level 65
        assert err.details["path"][:2] == ["a", 0]


def test_jsonpolicy_depth_limit_is_not_fooled_by_brackets_outside_the_document() -> None:
    err = refusal(b"[" * 70 + b"1], [2" + b"]" * 70)
    assert "levels" in err.message
    refusal(b"1], [2")


def test_jsonpolicy_names_the_document_and_syntax_errors() -> None:
    err = refusal(b'{"a": NaN}', where="line 3")
    assert err.message.startswith("line 3, a: ")
    err = refusal(b'{"a": ')
    assert "not valid JSON" in err.message and err.details["offset"] == 6


def test_jsonpolicy_check_holds_decoded_values_to_the_same_rules() -> None:
    with pytest.raises(errors.InvalidInput) as info:
        jsonpolicy.check({"a": [1.0, float("nan")]})
    assert info.value.details["path"] == ["a", 1]
    assert jsonpolicy.check({"a": [1, "x"]}) == {"a": [1, "x"]}
