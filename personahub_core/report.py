"""``personahub report``: one self-contained HTML page about a store, to look at and to mail.

No network, no script, no external URL: charts are SVG drawn here, styles are inline. Every stored
text is untrusted (it came from a corpus or a model) and goes through ``html.escape``. Aggregates are
computed in DuckDB; Python only sees the few rows each section shows.

    overview ── personas (lengths, words, roles) ── graph (expansion chains) ── dedup (clusters)
        ── one section per task (statuses, reasons, lengths, distinct-n, examples) ── diversity
"""

from __future__ import annotations

import html
import random
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

from .diversity import OUTPUT_TEXT, distinct_n, study, study_models
from .errors import UsageError
from .export import KEPT
from .outputs import check_out, written
from .store import Store

EXAMPLES = 3
CHAINS = 6
DISTINCT_SAMPLE = 5000  # distinct-n over at most this many outputs per task (seeded sample)
STOPWORDS = set("""a an the and or of in on at to for from with by as is are was were be been who whose which that this
their his her its they them he she it i you we our your my me us into about over under than then so but not no
also who's has have had do does did while when where what how all any each more most other some such only own same
can will just very one two out up down off""".split())
# A persona's role: its first words up to the first relative clause or prepositional phrase.
ROLE_END = re.compile(r"\b(who|whose|that|which|with|in|at|from|for|on|of|working|living|based)\b|[,.;:()]", re.I)



def write_report(store: Store, out_path: Path, *, seed: int = 0, quiet: bool = False) -> dict:
    """Write the report; returns its path, size in bytes and the sections it has."""
    from .progress import progress_bar

    out_path = Path(out_path)
    if not out_path.parent.exists():
        raise UsageError(f"--out {out_path}: directory {out_path.parent} does not exist")
    check_out(out_path, store.path)
    rng = random.Random(seed)
    tasks = [r[0] for r in store.query("SELECT task FROM generations GROUP BY 1 ORDER BY min(created_at)")]
    sections: list[tuple[str, str, Callable[[], str]]] = [
        ("overview", "The store at a glance", lambda: _overview(store)),
        ("personas", "Personas", lambda: _personas(store)),
        ("graph", "The persona graph", lambda: _graph(store, rng)),
        ("dedup", "Deduplication", lambda: _dedup(store)),
        *[(f"task-{_slug(t)}", f"Task: {t}", lambda t=t: _task(store, t)) for t in tasks],
        ("diversity", "Diversity study", lambda: _diversity(store, seed)),
    ]
    parts = []
    with progress_bar("report", total=len(sections), quiet=quiet, unit="sections") as progress:
        for anchor, title, build in sections:
            progress.update(progress.task_ids[0], description=f"report: {title}")
            parts.append((anchor, title, build()))
            progress.update(progress.task_ids[0], advance=1)
        progress.update(progress.task_ids[0], description="report")
    page = _page(store, parts)
    with written(out_path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return {"path": str(out_path), "bytes": out_path.stat().st_size, "sections": [a for a, _, _ in parts]}


# -- sections -------------------------------------------------------------------------------------
def _overview(store: Store) -> str:
    personas = store.count("personas")
    kept = store.scalar(f"SELECT count(*) FROM personas p WHERE {KEPT}")
    cards = _cards([("documents", store.count("documents")), ("personas", personas), ("kept", kept),
                    ("marked", personas - kept), ("generations", store.count("generations")),
                    ("runs", store.count("runs"))])
    by = store.query("SELECT origin, hop, count(*) FROM personas GROUP BY 1, 2 ORDER BY 1, 2")
    chart = _bars([(f"{origin} · hop {hop}", n) for origin, hop, n in by]) if by else _empty("no personas yet")
    runs = store.query(
        "SELECT task, status, items_done, items_failed, completion_tokens, seconds, started_at FROM runs "
        "ORDER BY started_at DESC LIMIT 30")
    run_rows = [[t, s, d, f, tok, _num(sec, 1), _num(tok / sec, 1) if sec and tok else "", str(at)[:19]]
                for t, s, d, f, tok, sec, at in runs]
    more = store.count("runs") - len(runs)
    return (cards + "<h3>Personas by origin and hop</h3>" + chart + "<h3>Runs (latest first)</h3>"
            + _table(["task", "status", "done", "failed", "completion tokens", "seconds", "tok/s", "started"], run_rows)
            + (f"<p class=note>and {more} earlier runs</p>" if more > 0 else ""))


def _personas(store: Store) -> str:
    if not store.count("personas"):
        return _empty("no personas yet")
    stats = store.query(
        f"SELECT count(*), avg(w), median(w), min(w), max(w) FROM (SELECT len(string_split(trim(persona), ' ')) AS w "
        f"FROM personas p WHERE {KEPT})")[0]
    hist = store.query(
        f"SELECT least(w // 5, 20) AS b, count(*) FROM (SELECT len(string_split(trim(persona), ' ')) AS w "
        f"FROM personas p WHERE {KEPT}) GROUP BY 1 ORDER BY 1")
    counts = dict(hist)
    labels = [(f"{b * 5}–{b * 5 + 4}" if b < 20 else "100+", counts.get(b, 0)) for b in range(0, max(counts, default=0) + 1)]
    words = store.query(
        f"SELECT w, count(*) AS n FROM (SELECT unnest(regexp_split_to_array(lower(persona), '[^a-z]+')) AS w "
        f"FROM personas p WHERE {KEPT}) WHERE length(w) > 2 AND w NOT IN (SELECT unnest(?)) "
        f"GROUP BY 1 ORDER BY n DESC, w LIMIT 20", [sorted(STOPWORDS)])
    roles: dict[str, int] = {}
    for (text,) in store.query(f"SELECT persona FROM personas p WHERE {KEPT}"):
        role = _role(text)
        if role:
            roles[role] = roles.get(role, 0) + 1
    top_roles = sorted(roles.items(), key=lambda kv: (-kv[1], kv[0]))[:15]
    return (_cards([("kept personas", stats[0]), ("mean words", _num(stats[1], 1)), ("median", _num(stats[2], 0)),
                    ("shortest", stats[3]), ("longest", stats[4])])
            + "<h3>Length in words</h3>" + _columns(labels)
            + "<div class=two><div><h3>Most common words</h3>" + _bars(words)
            + "</div><div><h3>Most common roles</h3>" + (_bars(top_roles) if top_roles else _empty("no roles found"))
            + "</div></div>")


def _role(persona: str) -> str:
    """'A pediatric nurse in a rural clinic who ...' -> 'pediatric nurse'."""
    text = re.sub(r"^\s*(an?|the)\s+", "", persona.strip(), flags=re.I)
    head = ROLE_END.split(text, maxsplit=1)[0]
    words = head.lower().split()[:4]
    return " ".join(words) if words else ""


def _graph(store: Store, rng: random.Random) -> str:
    expanded = store.scalar("SELECT count(*) FROM personas WHERE origin = 'expansion'")
    if not expanded:
        return _empty("no expanded personas: run persona-to-persona to grow the graph")
    relations = store.query("SELECT coalesce(relation, '(none)'), count(*) AS n FROM personas WHERE origin = 'expansion' "
                            "GROUP BY 1 ORDER BY n DESC LIMIT 12")
    # The deepest personas, then their ancestors up to the root, in one recursive query.
    leaves = [r[0] for r in store.query("SELECT id FROM personas WHERE origin = 'expansion' AND hop = "
                                        "(SELECT max(hop) FROM personas WHERE origin = 'expansion') ORDER BY id")]
    leaves = sorted(rng.sample(leaves, min(CHAINS, len(leaves))))
    rows = store.query(
        """WITH RECURSIVE chain(leaf, id, parent_id, persona, relation, hop) AS (
             SELECT id, id, parent_id, persona, relation, hop FROM personas WHERE id IN (SELECT unnest(?))
             UNION ALL
             SELECT c.leaf, p.id, p.parent_id, p.persona, p.relation, p.hop FROM personas p JOIN chain c ON p.id = c.parent_id
           ) SELECT leaf, persona, relation, hop FROM chain ORDER BY leaf, hop""", [leaves])
    chains: dict[str, list[tuple]] = {}
    for leaf, persona, relation, hop in rows:
        chains.setdefault(leaf, []).append((persona, relation, hop))
    items = []
    for steps in chains.values():
        links = "".join(
            (f"<li><span class=rel>{_e(rel or 'related')}</span> <span class=hop>hop {hop}</span> {_e(p)}</li>" if hop
             else f"<li><span class=hop>root</span> {_e(p)}</li>") for p, rel, hop in steps)
        items.append(f"<ol class=chain>{links}</ol>")
    return (_cards([("expanded personas", expanded),
                    ("deepest hop", store.scalar("SELECT max(hop) FROM personas"))])
            + "<h3>Relations</h3>" + _bars(relations) + "<h3>Sample chains, root to the deepest hop</h3>" + "".join(items))


def _dedup(store: Store) -> str:
    marked = store.scalar("SELECT count(DISTINCT persona_id) FROM dedup_marks")
    if not marked:
        return _empty("no personas marked: run 'personahub dedup'")
    by_method = store.query("SELECT method, count(*) FROM dedup_marks GROUP BY 1 ORDER BY 1")
    parts = [_cards([("marked personas", marked)] + [(f"by {m}", n) for m, n in by_method])]
    for method, _ in by_method:
        clusters = store.query(
            "SELECT coalesce(m.duplicate_of, ''), list(p.persona ORDER BY p.seq)[:3], list(m.similarity ORDER BY p.seq)[:3], "
            "any_value(m.reason), count(*) AS n FROM dedup_marks m JOIN personas p ON p.id = m.persona_id WHERE m.method = ? "
            "GROUP BY 1 ORDER BY n DESC, 1 LIMIT 3", [method])
        keepers = dict(store.query("SELECT id, persona FROM personas WHERE id IN (SELECT unnest(?))",
                                   [[c[0] for c in clusters]]))
        parts.append(f"<h3>{_e(method)}: the largest clusters</h3>")
        for kept_id, texts, sims, reason, n in clusters:
            head = (f"<div class=kept><b>kept</b> {_e(keepers.get(kept_id, ''))}</div>" if kept_id
                    else f"<div class=kept><b>reason</b> {_e(reason or '')}</div>")
            marks = "".join(f"<li>{_e(t)}" + (f" <span class=sim>{s:.3f}</span>" if s is not None else "") + "</li>"
                            for t, s in zip(texts, sims))
            extra = f"<li class=note>and {n - len(texts)} more</li>" if n > len(texts) else ""
            parts.append(f"<div class=cluster>{head}<ul>{marks}{extra}</ul></div>")
    return "".join(parts)


def _task(store: Store, task: str) -> str:
    statuses = dict(store.query("SELECT status, count(*) FROM generations WHERE task = ? GROUP BY 1", [task]))
    reasons = store.query(
        "SELECT regexp_replace(error, '[0-9]+', 'N', 'g') AS reason, count(*) AS n FROM generations "
        "WHERE task = ? AND status <> 'ok' GROUP BY 1 ORDER BY n DESC, 1 LIMIT 8", [task])
    # Synthesizers keep "synthesized text"; persona sources and expanders keep a list of personas.
    text = f"coalesce({OUTPUT_TEXT}, array_to_string(json_extract_string(g.output, '$.personas[*]'), ' | '), '')"
    lengths = dict(store.query(
        f"SELECT least(len(string_split(trim({text}), ' ')) // 10, 30) AS b, count(*) FROM generations g "
        f"WHERE task = ? AND status = 'ok' GROUP BY 1 ORDER BY 1", [task]))
    texts = [r[0] or "" for r in store.query(
        f"SELECT {text} FROM generations g WHERE task = ? AND status = 'ok' ORDER BY hash(key) LIMIT ?",
        [task, DISTINCT_SAMPLE])]
    tokens = store.query("SELECT avg(completion_tokens), sum(completion_tokens), sum(seconds) FROM generations "
                         "WHERE task = ?", [task])[0]
    # The input is a persona, or for a persona source the document (its opening words).
    examples = store.query(
        f"SELECT coalesce(p.persona, left(d.text, 240) || CASE WHEN length(d.text) > 240 THEN '…' ELSE '' END), "
        f"p.id IS NULL AND d.id IS NOT NULL, {text}, g.model FROM generations g "
        f"LEFT JOIN personas p ON p.id = g.input_id LEFT JOIN documents d ON d.id = g.input_id "
        f"WHERE g.task = ? AND g.status = 'ok' ORDER BY hash(g.key || 'example') LIMIT ?", [task, EXAMPLES])
    cards = _cards([("done", statuses.get("ok", 0)), ("rejected", statuses.get("rejected", 0)),
                    ("failed", statuses.get("failed", 0)), ("distinct-1", _num(distinct_n(texts, 1), 3)),
                    ("distinct-2", _num(distinct_n(texts, 2), 3)),
                    ("mean completion tokens", _num(tokens[0], 1))])
    length_chart = (_columns([(f"{b * 10}+" if b == 30 else f"{b * 10}–{b * 10 + 9}", lengths.get(b, 0))
                              for b in range(0, max(lengths) + 1)]) if lengths else _empty("no finished rows"))
    reason_part = _bars(reasons) if reasons else _empty("none rejected or failed")
    shown = "".join(
        f"<div class=example><div class=persona><b>{'text' if is_doc else 'persona'}</b> {_e(p or '(none)')}</div>"
        f"<div class=output>{_e(o or '')}</div><div class=note>{_e(m or '')}</div></div>" for p, is_doc, o, m in examples)
    return (cards + "<div class=two><div><h3>Output length in words</h3>" + length_chart
            + "</div><div><h3>Top reasons for rejection or failure</h3>" + reason_part + "</div></div>"
            + (f"<p class=note>distinct-n over {len(texts)} outputs</p>" if texts else "")
            + "<h3>Random examples</h3>" + (shown or _empty("no finished rows")))


def _diversity(store: Store, seed: int) -> str:
    models = study_models(store)
    studies = [study(store, task, model, seed=seed) for task, model in models.items() if not task.endswith("-baseline")]
    studies = [s for s in studies if s["rows"]]
    if not studies:
        return _empty("no embeddings of outputs yet: run 'personahub diversity --task TASK' to make them")
    parts = ["<p>The paper's question: do more similar personas give more similar outputs? Persona pairs are "
             "sampled in similarity bins; for each bin, the cosine similarity of the two outputs.</p>"]
    for s in studies:
        bins = s["bins"]
        rows = [[_num(b["persona_similarity"], 2), b["pairs"], _num(b["output_similarity"]["mean"], 3),
                 _num(b["output_similarity"]["std"], 3)] for b in bins]
        ps = s["personas"]
        nn = ps["nearest_neighbour"] or {}
        parts.append(
            f"<h3>{_e(s['task'])} <span class=note>({s['rows']} rows, vectors from {_e(s['model'])})</span></h3>"
            "<div class=two><div>" + _study_plot(bins, s["width"]) + "</div><div>"
            + _table(["persona similarity", "pairs", "output similarity mean", "std"], rows)
            + _table(["persona set", "value"], [
                ["personas", ps["count"]], ["mean pairwise similarity", _num(ps["mean_pairwise_similarity"], 3)],
                ["nearest neighbour, median", _num(nn.get("p50"), 3)],
                ["nearest neighbour, 10th–90th percentile", f"{_num(nn.get('p10'), 3)} – {_num(nn.get('p90'), 3)}"]])
            + "</div></div>")
        base = s["baseline"]
        if base:
            w, wo = base["with_personas"], base["without_personas"]
            parts.append(f"<h4>With personas against without ({base['samples']} outputs each)</h4>" + _table(
                ["measure", "with personas", "without (baseline)"],
                [[label, _num(w[key], 3), _num(wo[key], 3)] for label, key in [
                    ("mean pairwise similarity (lower is more diverse)", "mean_pairwise_similarity"),
                    ("distinct-1", "distinct_1"), ("distinct-2", "distinct_2"),
                    ("near-duplicate share (cosine ≥ 0.9)", "near_duplicate_share")]]))
        else:
            parts.append(f"<p class=note>No baseline yet: <code>personahub diversity --task {_e(s['task'])} "
                         f"--baseline N</code> makes N samples without a persona.</p>")
    return "".join(parts)


# -- drawing --------------------------------------------------------------------------------------
def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _num(value, digits: int) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "task"


def _empty(message: str) -> str:
    return f"<p class=empty>{_e(message)}</p>"


def _cards(items: Iterable[tuple[str, object]]) -> str:
    return "<div class=cards>" + "".join(
        f"<div class=card><div class=value>{_e(f'{v:,}' if isinstance(v, int) else v)}</div><div class=label>{_e(k)}</div></div>"
        for k, v in items) + "</div>"


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _bars(items: list[tuple[str, int]], width: int = 520) -> str:
    """Horizontal bars, one per label, longest first as given."""
    if not items:
        return _empty("nothing to show")
    top = max(n for _, n in items) or 1
    row, label_w = 22, 200
    bars = []
    for k, (label, n) in enumerate(items):
        y = k * row
        w = max(1.0, (width - label_w - 60) * n / top)
        short = label if len(label) <= 30 else label[:29] + "…"
        bars.append(f"<text x='{label_w - 6}' y='{y + 15}' text-anchor='end'>{_e(short)}<title>{_e(label)}</title></text>"
                    f"<rect x='{label_w}' y='{y + 4}' width='{w:.1f}' height='{row - 8}' rx='2'/>"
                    f"<text x='{label_w + w + 5:.1f}' y='{y + 15}' class='n'>{n:,}</text>")
    height = len(items) * row
    return (f"<svg class=chart viewBox='0 0 {width} {height}' width='{width}' height='{height}' role='img'>"
            + "".join(bars) + "</svg>")


def _columns(items: list[tuple[str, int]], width: int = 520, height: int = 160) -> str:
    """A histogram: one column per bucket, label under every few."""
    if not items:
        return _empty("nothing to show")
    top = max(n for _, n in items) or 1
    step = min(width / len(items), 48.0)
    every = max(1, len(items) // 8)
    cols = []
    for k, (label, n) in enumerate(items):
        h = (height - 30) * n / top
        x = k * step
        cols.append(f"<rect x='{x + 1:.1f}' y='{height - 20 - h:.1f}' width='{max(step - 2, 1):.1f}' height='{h:.1f}'>"
                    f"<title>{_e(label)}: {n:,}</title></rect>")
        if k % every == 0:
            cols.append(f"<text x='{x + step / 2:.1f}' y='{height - 5}' text-anchor='middle' class='axis'>{_e(label)}</text>")
    return (f"<svg class=chart viewBox='0 0 {width} {height}' width='{width}' height='{height}' role='img'>"
            + "".join(cols) + "</svg>")


def _study_plot(bins: list[dict], half_width: float, size: int = 320) -> str:
    """Output similarity (mean ± std) against persona similarity, both on [0, 1] axes."""
    pad = 40
    span = size - 2 * pad

    def px(v: float) -> float:
        return pad + span * max(0.0, min(1.0, v))

    def py(v: float) -> float:
        return size - pad - span * max(0.0, min(1.0, v))

    grid = []
    for t in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        grid.append(f"<line x1='{px(t)}' y1='{py(0)}' x2='{px(t)}' y2='{py(1)}' class='grid'/>"
                    f"<line x1='{px(0)}' y1='{py(t)}' x2='{px(1)}' y2='{py(t)}' class='grid'/>"
                    f"<text x='{px(t)}' y='{py(0) + 14}' text-anchor='middle' class='axis'>{t:.1f}</text>"
                    f"<text x='{px(0) - 6}' y='{py(t) + 4}' text-anchor='end' class='axis'>{t:.1f}</text>")
    points, path = [], []
    for b in bins:
        mean, std = b["output_similarity"]["mean"], b["output_similarity"]["std"]
        if mean is None:
            continue
        x = px(b["persona_similarity"])
        points.append(f"<line x1='{x}' y1='{py(mean - std):.1f}' x2='{x}' y2='{py(mean + std):.1f}' class='err'/>"
                      f"<circle cx='{x}' cy='{py(mean):.1f}' r='4'><title>persona {b['persona_similarity']:.2f} "
                      f"± {half_width}: output {mean:.3f} ± {std:.3f} ({b['pairs']} pairs)</title></circle>")
        path.append(f"{x:.1f},{py(mean):.1f}")
    line = f"<polyline points='{' '.join(path)}' class='trend'/>" if len(path) > 1 else ""
    labels = (f"<text x='{size / 2}' y='{size - 6}' text-anchor='middle' class='axis'>persona similarity</text>"
              f"<text x='12' y='{size / 2}' text-anchor='middle' class='axis' transform='rotate(-90 12 {size / 2})'>"
              f"output similarity</text>")
    return (f"<svg class='chart plot' viewBox='0 0 {size} {size}' width='{size}' height='{size}' role='img'>"
            + "".join(grid) + line + "".join(points) + labels + "</svg>")


STYLE = """
:root { --ink:#1d2433; --muted:#667085; --line:#e4e7ec; --accent:#3559e0; --soft:#eef2ff; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--ink); background:#f7f8fa; }
header { background:var(--ink); color:#fff; padding:24px 40px; }
header h1 { margin:0; font-size:24px; } header p { margin:4px 0 0; color:#c8cdd8; }
nav { position:sticky; top:0; background:#fff; border-bottom:1px solid var(--line); padding:8px 40px; z-index:1;
      display:flex; flex-wrap:wrap; gap:4px 18px; }
nav a { color:var(--accent); text-decoration:none; font-size:14px; }
main { max-width:1120px; margin:0 auto; padding:8px 40px 60px; }
section { background:#fff; border:1px solid var(--line); border-radius:10px; padding:20px 24px; margin:20px 0; }
h2 { margin:0 0 12px; font-size:20px; } h3 { font-size:15px; margin:20px 0 8px; color:#344054; } h4 { margin:16px 0 6px; }
.cards { display:flex; flex-wrap:wrap; gap:12px; }
.card { background:var(--soft); border-radius:8px; padding:10px 16px; min-width:120px; }
.card .value { font-size:22px; font-weight:600; } .card .label { color:var(--muted); font-size:13px; }
.two { display:grid; grid-template-columns:repeat(auto-fit,minmax(440px,1fr)); gap:24px; }
table { border-collapse:collapse; margin:8px 0; font-size:14px; }
th, td { border-bottom:1px solid var(--line); padding:4px 12px 4px 0; text-align:left; vertical-align:top; }
th { color:var(--muted); font-weight:500; }
svg.chart { max-width:100%; height:auto; font-size:12px; display:block; }
svg.chart rect { fill:var(--accent); opacity:.85; } svg.chart text { fill:var(--ink); }
svg.chart text.n, svg.chart text.axis { fill:var(--muted); font-size:11px; }
svg .grid { stroke:var(--line); } svg .err { stroke:var(--accent); stroke-width:2; }
svg circle { fill:var(--accent); } svg .trend { fill:none; stroke:var(--accent); stroke-opacity:.4; stroke-width:2; }
ol.chain { list-style:none; padding:0 0 0 14px; border-left:3px solid var(--soft); margin:10px 0 14px; }
ol.chain li { margin:3px 0; }
.rel { background:var(--soft); color:var(--accent); border-radius:4px; padding:0 6px; font-size:13px; }
.hop { color:var(--muted); font-size:12px; margin-right:4px; }
.cluster { border:1px solid var(--line); border-radius:8px; padding:8px 12px; margin:8px 0; }
.cluster ul { margin:4px 0; } .kept { color:#027a48; } .sim { color:var(--muted); font-size:12px; }
.example { border-left:3px solid var(--accent); padding:6px 12px; margin:10px 0; background:#fafbff; }
.example .output { white-space:pre-wrap; margin:4px 0; } .persona { color:#344054; font-size:14px; }
.note, .empty { color:var(--muted); font-size:13px; } code { background:#f2f4f7; padding:1px 5px; border-radius:4px; }
"""


def _page(store: Store, parts: list[tuple[str, str, str]]) -> str:
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    nav = "".join(f"<a href='#{a}'>{_e(t)}</a>" for a, t, _ in parts)
    body = "".join(f"<section id='{a}'><h2>{_e(t)}</h2>{content}</section>" for a, t, content in parts)
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        # No network: the page may load nothing, even if a stored text tried to make it.
        "<meta http-equiv=Content-Security-Policy content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>PersonaHub report: {_e(store.path.name)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>PersonaHub report</h1><p>{_e(store.path.name)} · made {made}</p></header>"
        f"<nav>{nav}</nav><main>{body}</main></body></html>\n"
    )
