"""The report's verdict section: pass rates with n and a Wilson interval, agreement and score histograms;
absent while no verifier has judged anything."""

from __future__ import annotations

import json
import re
from pathlib import Path

from personahub_core.report import wilson_interval, write_report
from personahub_core.store import Store
from personahub_core.testing import PERSONAS, FakeBackend, run_task

RUBRIC = Path(__file__).resolve().parents[3] / "docs" / "recipes" / "rubric-validity.toml"


def jars(prompt) -> int:
    """2, 3, 4... jars for the first, second, third... test persona: read from the math prompt's persona
    line, or from the problem a verifier's prompt ends with."""
    last = prompt.completion.rstrip().rsplit("\n", 2)
    if last[-1] == "Problem:":
        return PERSONAS.index(last[-2].removeprefix("Persona: ")) + 2
    return int(re.search(r"sells (\d+) jars", last[-2]).group(1))


def test_wilson_interval_matches_the_formula():
    low, high = wilson_interval(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0
    assert wilson_interval(0, 0) == (None, None)


def test_report_shows_verdicts_once_there_are_some(personas_store, tmp_path):
    FakeBackend.responder = lambda p: f" A stall sells {jars(p)} jars at $7 a jar. How much does it take?"
    run_task("math", db=personas_store, backend="fake", limit=4)
    with Store(personas_store, read_only=True) as store:
        assert "verdicts" not in write_report(store, tmp_path / "before.html", quiet=True)["sections"]

    # Problems with an even number of jars get one answer three times; the others a different one each time.
    FakeBackend.responder = lambda p: f" So.\nFinal answer: {12 if jars(p) % 2 == 0 else p.seed}"
    run_task("verify", ["--task", "math"], db=personas_store, backend="fake")
    scores = iter([5, 4, 3, 1])
    FakeBackend.responder = lambda p: json.dumps({"reasons": "Gives the numbers it needs.", "score": next(scores)})
    run_task(str(RUBRIC), ["--task", "math"], db=personas_store, backend="fake")

    with Store(personas_store, read_only=True) as store:
        summary = write_report(store, tmp_path / "after.html", quiet=True)
    page = (tmp_path / "after.html").read_text(encoding="utf-8")
    assert summary["sections"][-1] == "verdicts"
    section = page.split("<section id='verdicts'>", 1)[1].split("</section>", 1)[0]
    low, high = wilson_interval(2, 4)
    # verify: 2 of 4 passed; the judge: 2 of 4 scored 4 or more
    assert section.count(f"<td>4</td><td>2</td><td>0.500 [{low:.3f}, {high:.3f}]</td>") == 2
    assert "verify on math: share of the k answers that agree" in section
    assert "<title>1.00: 2</title>" in section and "<title>0.33: 2</title>" in section
    assert "rubric-validity on math: scores" in section and "mean score 3.25 over 4 rows" in section
    assert all(f"<title>{s}: 1</title>" in section for s in (1, 3, 4, 5)) and "<title>2: 0</title>" in section
