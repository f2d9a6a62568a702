"""The knowledge synthesizer: title and body kept apart; an article cut at the token limit keeps its
finished paragraphs (parse() sees the completion's finish reason)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from personahub_core.export import export
from personahub_core.plugins import get_registry
from personahub_core.prompting import demonstrations
from personahub_core.store import Store
from personahub_core.tasks import Completion, Rejected
from personahub_core.testing import PERSONAS, FakeBackend, run_task, wheel_files
from personahub_knowledge import KnowledgeArticles

ARTICLE = (" Why heather honey sets like jelly\nArticle: Heather honey is thixotropic: it is a gel until you stir "
           "it, so it cannot be spun out of the comb like other honeys.\nBeekeepers press the comb instead, or "
           "loosen the honey first with a tool that pushes nylon needles into every cell and stirs it.\n"
           "Because pressing destroys the comb, the bees must draw new wax the next year, which costs them "
           "honey, and that is one reason the honey costs more in the shop.")


@pytest.mark.slow
def test_demonstrations_ship_inside_the_plugin(tmp_path):
    """In the wheel pip installs, not only in this source tree (the tests run an editable install)."""
    assert "personahub_knowledge/demonstrations.jsonl" in wheel_files(Path(__file__).parents[1], tmp_path)


def test_demonstrations_are_complete():
    assert all(d["title"] and d["body"] for d in demonstrations("personahub_knowledge"))


def test_keeps_title_and_body_apart(tmp_path, personas_file):
    run_task("import", ["--input", str(personas_file)])
    FakeBackend.responder = lambda p: ARTICLE
    run_task("knowledge", [], backend="fake", limit=1)
    out = tmp_path / "knowledge.jsonl"
    with Store("personahub.duckdb", read_only=True) as store:
        export(store, "knowledge", "jsonl", out, full=True, tasks=get_registry().tasks)
    row = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    title, body = row["output"]["title"], row["output"]["body"]
    assert title == "Why heather honey sets like jelly"
    assert body.startswith("Heather honey is thixotropic") and body.count("\n\n") == 2
    assert row["synthesized text"] == f"{title}\n\n{body}"
    assert "truncated" not in row["output"]


def test_cut_at_the_token_limit_keeps_finished_paragraphs():
    task = KnowledgeArticles()
    cut = Completion(ARTICLE + "\nThe last paragraph never " + "ends and goes on " * 80, finish_reason="length")
    result = task.parse(cut, PERSONAS[3])
    assert result.fields["truncated"] is True
    assert result.fields["body"].endswith("costs more in the shop.")
    # Only the finish reason tells a last paragraph the model ended from one the token limit cut.
    ended = ARTICLE + "\nAsk a beekeeper near you for a jar."
    assert task.parse(Completion(ended), PERSONAS[3]).fields["body"].endswith("for a jar.")
    assert task.parse(Completion(ended, finish_reason="length"), PERSONAS[3]).fields["body"].endswith("in the shop.")
    with pytest.raises(Rejected, match="runaway"):
        task.parse(Completion("Title" + " and on" * 200, finish_reason="length"), PERSONAS[3])
