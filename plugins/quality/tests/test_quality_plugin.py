"""The quality filter: what it marks as unusable (with the reason), what it keeps, and runs that check only
new personas. Small crafted data with the fake backend nowhere needed: the filter is rules only."""

from __future__ import annotations

import pytest

from personahub_core.testing import dedup_marks, import_texts, run_task


@pytest.mark.parametrize("text, reason", [
    ("A nurse.", "too short"),
    ("Sure, here is a persona: a nurse who works nights in a busy hospital.", "not a persona description"),
    ("I'm sorry, but I cannot create a persona from the provided text.", "not a persona description"),
    ("A chef chef chef chef who cooks pasta in a small restaurant.", "repeats itself"),
    ("a b a b a b a b a b a b", "repeats itself"),
    ("A developer who posts at https://example.org about Rust and embedded systems.", "not a persona description"),
])


def test_quality_marks_unusable_texts_with_reasons(text, reason):
    import_texts([text, "A retired railway signal engineer who restores old lever frames as a hobby."])
    run_task("quality")
    m = dedup_marks("quality")
    assert list(m) == [text] and m[text]["reason"].startswith(reason)


def test_quality_keeps_ordinary_personas():
    good = ["Okapi keeper at a city zoo who writes children's books about rare animals.",
            "A machine learning engineer who trains large language models for hospitals.",
            "A retired railway signal engineer who restores old lever frames as a hobby.",
            "Ünïcödé-loving café owner in Zürich who roasts coffee beans and teaches latte art."]
    import_texts(good)
    result = run_task("quality")
    assert result["items_done"] == 4 and dedup_marks("quality") == {}


def test_a_second_run_checks_only_new_personas_and_where_limits_the_selection(monkeypatch):
    from personahub_quality import QualityFilter

    monkeypatch.setattr(QualityFilter, "batch_rows", 1)  # marks written between the batches still streaming in
    import_texts(["A nurse.", "A retired railway signal engineer who restores old lever frames as a hobby."], "a.jsonl")
    first = run_task("quality", where=["persona~nurse"])
    assert first["items_done"] == 1 and list(dedup_marks("quality")) == ["A nurse."]
    import_texts(["A baker.", "A ferry pilot who studies tides and writes a blog about harbour traffic."], "b.jsonl")
    second = run_task("quality")
    assert second["items_done"] == 3  # the engineer (left out by --where before) and the two new ones
    assert sorted(dedup_marks("quality")) == ["A baker.", "A nurse."]
    assert run_task("quality")["items_done"] == 0
    assert run_task("quality", ["--fresh"])["items_done"] == 4


def multilingual_personas() -> list[str]:
    import json

    from personahub_core.sample_data import multilingual_personas_path

    return [json.loads(line)["persona"] for line in multilingual_personas_path().read_text("utf-8").splitlines()]


def test_personas_in_scripts_without_spaces_pass_the_filter():
    personas = multilingual_personas()
    import_texts(personas)
    assert run_task("quality")["items_done"] == len(personas) == 8
    assert dedup_marks("quality") == {}


@pytest.mark.parametrize("text, reason", [
    ("护士。", "too short"),  # two ideographs: two words, not one
    ("看護師看護師看護師看護師看護師看護師", "repeats itself"),
    ("ครูครูครูครูครูครูครูครู", "repeats itself"),
])
def test_the_filter_counts_words_of_unspaced_scripts(text, reason):
    import_texts([text, "A retired railway signal engineer who restores old lever frames as a hobby."])
    run_task("quality")
    assert dedup_marks("quality")[text]["reason"].startswith(reason)
