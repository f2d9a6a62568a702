"""``personahub report``: one self-contained HTML page, checked as text and as rendered by headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from personahub_core.diversity_command import run_study
from personahub_core.store import Store
from personahub_core.testing import FakeBackend, run_task

from personahub_core.testing import PERSONAS, cli, last_json, write_jsonl

HOSTILE = "<script>alert('x')</script><img src=x onerror=alert(1)> A tester who pastes markup into every form"
NEAR_DUPLICATES = [
    "A retired ship captain who now teaches knot tying, sail repair and coastal navigation to children and their "
    "parents at the small harbour museum every Saturday morning",
    "A retired ship captain who now teaches knot tying, sail repair and coastal navigation to children and their "
    "parents at the small harbour museum every Sunday morning",
]
SECTIONS = {"overview": "The store at a glance", "personas": "Personas", "graph": "The persona graph",
            "dedup": "Deduplication", "task-math": "Task: math", "diversity": "Diversity study"}


def problem(request) -> str:
    """A question for most personas, a statement (rejected: asks no question) for the beekeeper."""
    persona = request.completion.rstrip().split("\n")[-2]
    if "beekeeper" in persona:
        return "Honey is sweet and the bees are busy all summer long in the valley."
    words = [w for w in persona.lower().split() if len(w) > 4][:6]
    return " ".join(f"{w} counts" for w in words) + ". How many counts are there in total?"


@pytest.fixture
def db(tmp_path):
    """Personas imported and expanded, deduplicated, a math run with a reject, and the diversity study."""
    path = tmp_path / "store.duckdb"
    rows = [{"persona": p} for p in PERSONAS + NEAR_DUPLICATES + [HOSTILE]]
    run_task("import", ["--input", str(write_jsonl(tmp_path / "p.jsonl", rows))], db=path)
    run_task("persona-to-persona", ["--hops", "2"], db=path, backend="fake")
    run_task("minhash", db=path)
    FakeBackend.responder = problem
    run_task("math", db=path, backend="fake", where=["origin=import"])
    run_study("math", db=path, backend="fake", quiet=True)
    return path


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("chromium is not installed: apt-get install -y chromium (.ci/run installs it when missing)")
    return found


def render(page) -> subprocess.CompletedProcess:
    """The page as headless Chromium renders it (DOM on stdout), with console messages logged to stderr."""
    return subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--enable-logging=stderr",
         "--v=0", f"--user-data-dir={page.parent / 'chromium-profile'}", "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )


def console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def test_report_has_every_section_and_nothing_external(tmp_path, db):
    out = tmp_path / "report.html"
    summary = last_json(cli("report", "--out", out, "--db", db, "--json", check=True))
    assert summary["path"] == str(out) and summary["bytes"] == out.stat().st_size
    page = out.read_text(encoding="utf-8")
    for anchor, title in SECTIONS.items():
        assert f"<section id='{anchor}'><h2>{title}</h2>" in page
    assert page.count("<svg") >= 6  # origin/hop, lengths, words, roles, relations, output lengths, study plot
    for external in ("http:", "https:", "<script", "<link", "<img", "<iframe", "<object", "<embed", "url(", "@import"):
        assert external not in page, external
    tags = re.findall(r"<[a-z][^<>]*>", page)
    links = [m for tag in tags for m in re.findall(r"\b(?:src|href|action|xlink:href)\s*=\s*['\"]?([^'\" >]*)", tag)]
    assert links and all(link.startswith("#") for link in links)  # only the page's own anchors
    # Stored text is shown, escaped.
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "asks no question" in page  # the beekeeper's problem was rejected
    assert "hop 2" in page and "minhash: the largest clusters" in page
    assert "harbour museum every Sunday morning" in page and "harbour museum every Saturday morning" in page
    assert "output similarity" in page and "No baseline yet" in page


@pytest.mark.slow
def test_report_renders_in_chromium_without_console_errors(tmp_path, db):
    out = tmp_path / "report.html"
    cli("report", "--out", out, "--db", db, "-q", check=True)
    shown = render(out)
    assert shown.returncode == 0, shown.stderr[-2000:]
    dom = shown.stdout
    for anchor, title in SECTIONS.items():
        assert re.search(rf"<section id=\"{anchor}\"><h2>{re.escape(title)}</h2>", dom), anchor
    assert "<script" not in dom and "<img" not in dom  # the hostile persona stayed text
    assert "onerror=alert(1)" in dom  # ... and is there to read
    assert console_lines(shown.stderr) == [], console_lines(shown.stderr)
    # The check would see an error: the same page loading an image is refused by its own policy.
    leaky = tmp_path / "leaky.html"
    leaky.write_text(out.read_text(encoding="utf-8").replace("<main>", "<main><img src='https://example.invalid/x.png'>"))
    assert any("Content Security Policy" in line for line in console_lines(render(leaky).stderr))


@pytest.mark.slow
def test_main_job_ends_with_the_report(tmp_path):
    result = cli("run", "--plugin", "npc", "--backend", "fake", "--limit", "2", "--json", check=True)
    report = tmp_path / "personahub-report.html"
    assert last_json(result)["report"] == str(report.resolve())
    assert f"Report: {report.resolve()}" in result.stderr
    page = report.read_text(encoding="utf-8")
    assert "Task: npc" in page and "Task: text-to-persona" in page
    # A later run on the same store does not rewrite it.
    report.unlink()
    cli("run", "--plugin", "npc", "--backend", "fake", "--limit", "1", check=True)
    assert not report.exists()


def test_report_on_a_missing_store_is_a_one_line_error(tmp_path):
    result = cli("report", "--out", tmp_path / "r.html", "--db", tmp_path / "none.duckdb")
    assert result.returncode != 0 and "does not exist" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "r.html").exists()


@pytest.mark.slow
def test_report_shows_progress_unless_quiet_or_json(tmp_path, db):
    sections = len(last_json(cli("report", "--out", tmp_path / "a.html", "--db", db, "--json", check=True))["sections"])
    shown = cli("report", "--out", tmp_path / "a.html", "--db", db, check=True)
    assert re.search(rf"report .* {sections}/{sections} 100%", shown.stderr)
    for quiet in ("-q", "--json"):
        silent = cli("report", "--out", tmp_path / "b.html", "--db", db, quiet, check=True)
        assert f"{sections}/{sections}" not in silent.stderr and "━" not in silent.stderr


@pytest.mark.slow
def test_dedup_section_flags_unlike_clusters_and_keeps_reasons_apart(tmp_path, db):
    """A cluster of personas that share no words (as a badly calibrated embedding threshold makes) is
    flagged; the MinHash near-duplicates are not; quality reasons are not shown as clusters."""
    unlike = ["A heavy metal musician who lives in a remote area of the United States.",
              "A dentist who has a practice in a busy city.", "A chess coach."]
    run_task("import", ["--input", str(write_jsonl(tmp_path / "unlike.jsonl", [{"persona": p} for p in unlike]))], db=db)
    run_task("quality", db=db)  # "A chess coach." is too short
    with Store(db) as store:
        ids = dict(store.query("SELECT persona, id FROM personas WHERE persona IN (SELECT unnest(?))", [unlike[:2]]))
        store.con.execute("INSERT INTO dedup_marks (persona_id, method, duplicate_of, similarity) VALUES (?, 'embedding', ?, 0.93)",
                          [ids[unlike[1]], ids[unlike[0]]])
    out = tmp_path / "report.html"
    cli("report", "--out", out, "--db", db, "-q", check=True)
    page = out.read_text(encoding="utf-8")
    clusters = re.findall(r"<div class=cluster>.*?</ul></div>", page)
    flagged = [c for c in clusters if "share few words" in c]
    assert len(flagged) == 1 and "A dentist who has a practice" in flagged[0]
    assert any("harbour museum" in c and "share few words" not in c for c in clusters)
    assert "quality: reasons for marking" in page and "quality: the largest clusters" not in page
    assert "too short" in page


@pytest.mark.slow
def test_long_bar_labels_are_not_clipped_when_rendered(tmp_path, db):
    """Chromium lays the page out; a script added to a copy (the report itself allows none) reports every
    chart label that starts left of its chart, as a cut-off first letter would."""
    extra = ["A WWII MEMORABILIA WAREHOUSE MANAGER who catalogues medals", "A MOUNTAIN WARDEN who maps trails"]
    run_task("import", ["--input", str(write_jsonl(tmp_path / "more.jsonl", [{"persona": p} for p in extra]))], db=db)
    FakeBackend.responder = lambda request: "word " * 400  # rejected: "runaway answer: stopped at the token limit"
    run_task("math", db=db, backend="fake", where=["origin=import"])
    out = tmp_path / "report.html"
    cli("report", "--out", out, "--db", db, "-q", check=True)
    page = out.read_text(encoding="utf-8")
    probe = tmp_path / "probe.html"
    check = ("<script>const bad = [...document.querySelectorAll('svg.chart')].flatMap(svg => "
             "[...svg.querySelectorAll('text')].filter(t => t.getBoundingClientRect().left < "
             "svg.getBoundingClientRect().left - 0.5).map(t => t.textContent));"
             "document.body.setAttribute('data-clipped', JSON.stringify(bad));"
             "document.body.setAttribute('data-labels', document.querySelectorAll('svg.chart text').length);</script>")
    probe.write_text(re.sub(r"<meta http-equiv=['\"]?Content-Security-Policy[^>]*>", "", page)
                     .replace("</body>", check + "</body>"), encoding="utf-8")
    dom = render(probe).stdout
    assert int(re.search(r'data-labels="(\d+)"', dom).group(1)) > 20
    assert re.search(r'data-clipped="([^"]*)"', dom).group(1) == "[]"
