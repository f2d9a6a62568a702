"""``--where``: parsed once into typed conditions, turned into SQL with the values bound, and used by the
store's one persona selection (whole, streamed, or a chunk at a time)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from personahub_core.errors import UsageError
from personahub_core.store import Store
from personahub_core.where import VERDICT_FIELDS, Condition, filtered_fields, parse, to_sql


def test_conditions_are_parsed_once_into_typed_values():
    parsed = parse(["hop<=2", "persona~nurse", "origin != import"])
    assert parsed == [Condition("hop", "<=", 2), Condition("persona", "~", "nurse"), Condition("origin", "!=", "import")]
    assert parse(parsed) == parsed  # parsed conditions pass through as they are
    assert parse(["passed=TRUE", "score>=3.5"], VERDICT_FIELDS) == [Condition("passed", "=", True),
                                                                    Condition("score", ">=", 3.5)]
    assert filtered_fields(["hop=0", "persona~x"]) == {"hop", "persona"}


def test_values_are_bound_never_written_into_the_sql():
    sql, params = to_sql(["persona~50%_off' OR TRUE --", "hop>1"], alias="q")
    assert sql == "q.persona ILIKE ? ESCAPE '\\' AND q.hop > ?"
    assert params == ["%50\\%\\_off' OR TRUE --%", 1]
    assert to_sql([]) == ("TRUE", [])


@pytest.mark.parametrize("text, message", [
    ("hop", "expected FIELD OP VALUE"), ("colour=red", "unknown field 'colour'"),
    ("hop~2", "'hop' takes a whole number"), ("hop=two", "'hop' takes a whole number")])
def test_a_bad_condition_is_a_usage_error_naming_it(text, message):
    with pytest.raises(UsageError, match=message):
        parse([text])


def test_chunks_whole_and_streamed_selections_are_one_selection(tmp_path):
    texts = ["a nurse", "a pilot", "a night nurse", "a baker", "a nurse who bakes"]
    with Store(tmp_path / "s.duckdb") as store:
        store.add_personas(pa.table({"id": [f"p{k}" for k in range(5)], "persona": texts, "origin": ["import"] * 5}))
        store.mark_personas("m", "r", ["p2"], [{"persona_id": "p2", "reason": "dup"}])
        where = ["persona~nurse"]
        chunks = list(store.persona_chunks(where, chunk=2))
        assert [[p["id"] for p in c] for c in chunks] == [["p0"], ["p4"]]  # p2 is marked; windows of 2 seqs
        whole = store.select_personas(where=where, columns=("id",)).column("id").to_pylist()
        _, batches = store.stream_personas(where=where, columns=("id",), batch_rows=1)
        streamed = [i for b in batches for i in b.column("id").to_pylist()]
        assert whole == streamed == [p["id"] for c in chunks for p in c] == ["p0", "p4"]
        assert [p["id"] for c in store.persona_chunks(where, include_marked=True) for p in c] == ["p0", "p2", "p4"]
