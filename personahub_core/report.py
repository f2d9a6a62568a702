"""``personahub report``: one self-contained HTML page about a store, to look at and to mail.

No network, no script, no external URL: charts are SVG drawn here, styles are inline. Every stored
text is untrusted (it came from a corpus or a model) and goes through ``html.escape``. Aggregates are
computed in DuckDB; Python only sees the few rows each section shows.

    overview ── personas (lengths, words, roles) ── graph (expansion chains) ── dedup (clusters)
        ── one section per task (statuses, reasons, lengths, distinct-n, examples) ── diversity
        ── verdicts, when a verifier has judged rows (pass and agreement rates, score histograms)
"""

from __future__ import annotations

import html
import random
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

from .diversity import distinct_n, study, study_models
from .diversity_stats import figure_text
from .errors import UsageError
from .outputs import check_out, written
from .store import Store

EXAMPLES = 3
CHAINS = 6
DISTINCT_SAMPLE = 5000  # distinct-n over at most this many outputs per task (seeded sample)
STOPWORDS = set("""a an the and or of in on at to for from with by as is are was were be been who whose which that this
their his her its they them he she it i you we our your my me us into about over under than then so but not no
also who's has have had do does did while when where what how all any each more most other some such only own same
can will just very one two out up down off""".split())
# Near-duplicates of one another share most content words, even paraphrased ("a night-shift nurse at a
# rural clinic" / "a nurse who works nights in a country clinic": 0.29); unrelated personas share ~0-0.1.
CLEARLY_DIFFERENT = 0.2
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
    tasks = store.tasks_by_first_row()
    sections: list[tuple[str, str, Callable[[], str]]] = [
        ("overview", "The store at a glance", lambda: _overview(store)),
        ("personas", "Personas", lambda: _personas(store)),
        ("graph", "The persona graph", lambda: _graph(store, rng)),
        ("dedup", "Deduplication", lambda: _dedup(store)),
        *[(f"task-{_slug(t)}", f"Task: {t}", lambda t=t: _task(store, t)) for t in tasks],
        ("diversity", "Diversity study", lambda: _diversity(store, seed)),
    ]
    if store.has_verdicts():
        sections.append(("verdicts", "Verdicts", lambda: _verdicts(store)))
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
    kept = store.kept_count()
    cards = _cards([("documents", store.count("documents")), ("personas", personas), ("kept", kept),
                    ("marked", personas - kept), ("generations", store.count("generations")),
                    ("runs", store.count("runs"))])
    by = store.personas_by_origin_and_hop()
    chart = _bars([(f"{origin} · hop {hop}", n) for origin, hop, n in by]) if by else _empty("no personas yet")
    runs = store.latest_runs(30)
    run_rows = [[t, s, d, f, tok, _num(sec, 1), _num(tok / sec, 1) if sec and tok else "", str(at)[:19]]
                for t, s, d, f, tok, sec, at in runs]
    more = store.count("runs") - len(runs)
    return (cards + "<h3>Personas by origin and hop</h3>" + chart + "<h3>Runs (latest first)</h3>"
            + _table(["task", "status", "done", "failed", "completion tokens", "seconds", "tok/s", "started"], run_rows)
            + (f"<p class=note>and {more} earlier runs</p>" if more > 0 else ""))


def _personas(store: Store) -> str:
    if not store.count("personas"):
        return _empty("no personas yet")
    stats = store.kept_length_stats()
    counts = store.kept_length_histogram()
    labels = [(f"{b * 5}–{b * 5 + 4}" if b < 20 else "100+", counts.get(b, 0)) for b in range(0, max(counts, default=0) + 1)]
    words = store.kept_common_words(sorted(STOPWORDS), 20)
    roles: dict[str, int] = {}
    for text in store.kept_persona_texts():
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
    expanded = store.expansion_count()
    if not expanded:
        return _empty("no expanded personas: run persona-to-persona to grow the graph")
    relations = store.expansion_relations(12)
    # The deepest personas, then their ancestors up to the root.
    leaves = store.deepest_expansions()
    leaves = sorted(rng.sample(leaves, min(CHAINS, len(leaves))))
    rows = store.persona_chains(leaves)
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
                    ("deepest hop", store.deepest_hop())])
            + "<h3>Relations</h3>" + _bars(relations) + "<h3>Sample chains, root to the deepest hop</h3>" + "".join(items))


def _dedup(store: Store) -> str:
    marked = store.marked_count()
    if not marked:
        return _empty("no personas marked: run 'personahub dedup'")
    by_method = store.marks_by_method()
    parts = [_cards([("marked personas", marked)] + [(f"by {m}", n) for m, n, _ in by_method])]
    for method, _, names_partners in by_method:
        if not names_partners:
            # Marked for a reason (a quality check), not as a copy of a kept persona: no clusters to show.
            reasons = store.mark_reasons(method, 8)
            parts.append(f"<h3>{_e(method)}: reasons for marking</h3>" + _bars(reasons))
            continue
        clusters = store.largest_clusters(method, 3)
        keepers = store.persona_texts([c[0] for c in clusters])
        parts.append(f"<h3>{_e(method)}: the largest clusters</h3>")
        for kept_id, texts, sims, n in clusters:
            kept = keepers.get(kept_id, "")
            overlap = sum(word_overlap(kept, t) for t in texts) / len(texts)
            warning = (f"<div class=warn>These personas share few words (word overlap {overlap:.2f}): they may "
                       f"be different people that the {_e(method)} similarity cannot tell apart. Check the "
                       "threshold before trusting these marks.</div>" if overlap < CLEARLY_DIFFERENT else "")
            marks = "".join(f"<li>{_e(t)}" + (f" <span class=sim>{s:.3f}</span>" if s is not None else "") + "</li>"
                            for t, s in zip(texts, sims))
            extra = f"<li class=note>and {n - len(texts)} more</li>" if n > len(texts) else ""
            parts.append(f"<div class=cluster>{warning}<div class=kept><b>kept</b> {_e(kept)}</div>"
                         f"<ul>{marks}{extra}</ul></div>")
    return "".join(parts)


def word_overlap(a: str, b: str) -> float:
    """Jaccard overlap of two texts' content words (stopwords left out)."""
    wa, wb = ({w for w in re.findall(r"\w+", t.lower()) if w not in STOPWORDS} for t in (a, b))
    return len(wa & wb) / len(wa | wb) if wa | wb else 1.0


def _task(store: Store, task: str) -> str:
    statuses = store.status_counts(task)
    reasons = store.failure_reasons(task, 8)
    lengths = store.output_length_histogram(task)
    texts = store.output_sample(task, DISTINCT_SAMPLE)
    tokens = store.task_tokens(task)
    examples = store.task_examples(task, EXAMPLES)
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
        rows = [[_num(b["persona_similarity"], 2), b["pairs"],
                 figure_text(b["output_similarity"]["mean"], b["output_similarity"].get("interval")),
                 _num(b["output_similarity"]["std"], 3)] for b in bins]
        ps = s["personas"]
        nn = ps["nearest_neighbour"] or {}
        fid = s["fidelity"]
        parts.append(
            f"<h3>{_e(s['task'])} <span class=note>({s['rows']} rows, vectors from {_e(s['model'])})</span></h3>"
            f"<p class=verdict>{_e(s['verdict'])}</p>"
            + "".join(f"<div class=warn>{_e(w)}</div>" for w in s["warnings"])
            + "<div class=two><div>" + _study_plot(bins, s["width"]) + "</div><div>"
            + _table(["persona similarity", "pairs", "output similarity mean [95% interval]", "std"], rows)
            + _table(["persona set", "value"], [
                ["personas", ps["count"]], ["mean pairwise similarity", _num(ps["mean_pairwise_similarity"], 3)],
                ["nearest neighbour, median", _num(nn.get("p50"), 3)],
                ["nearest neighbour, 10th–90th percentile", f"{_num(nn.get('p10'), 3)} – {_num(nn.get('p90'), 3)}"]])
            + _table(["persona fidelity", "value"], [
                [f"own persona nearest among {fid['k']}", figure_text(fid["rate"], fid["interval"])],
                ["chance", _num(fid["chance"], 3)], ["outputs", fid["outputs"]]])
            + "</div></div>")
        base = s["baseline"]
        if base:
            w, wo, d = base["with_personas"], base["without_personas"], base["difference"]
            parts.append(f"<h4>With personas against without ({base['samples']} outputs each, 95% intervals)</h4>" + _table(
                ["measure", "with personas", "without (baseline)", "difference", "p"],
                [[label, figure_text(w[key], w["intervals"][key]), figure_text(wo[key], wo["intervals"][key]),
                  figure_text(d[key]["difference"], d[key]["interval"]), _num(d[key]["p_value"], 3)] for label, key in [
                    ("mean pairwise similarity (lower is more diverse)", "mean_pairwise_similarity"),
                    ("distinct-1", "distinct_1"), ("distinct-2", "distinct_2"),
                    ("near-duplicate share (cosine ≥ 0.9)", "near_duplicate_share")]]))
        else:
            parts.append(f"<p class=note>No baseline yet: <code>personahub diversity --task {_e(s['task'])} "
                         f"--baseline N</code> makes N samples without a persona.</p>")
    return "".join(parts)


def _verdicts(store: Store) -> str:
    groups = store.verdict_groups()
    parts = ["<p>Verdicts on stored rows: answers solved k times and compared by value "
             "(<code>run --plugin verify --task TASK</code>), code parsed, or a judge recipe's 1–5 score. A row "
             "passes at the verifier's bar; <code>export TASK --verified</code> keeps rows whose verdicts all "
             "passed. Intervals are 95% Wilson score intervals over the n rows judged.</p>"]
    rows = []
    for g in groups:
        low, high = wilson_interval(g["passed"], g["n"])
        rows.append([g["verifies"], g["verifier"], g["n"], g["passed"],
                     f"{_num(g['passed'] / g['n'] if g['n'] else None, 3)} [{_num(low, 3)}, {_num(high, 3)}]",
                     g["unanswered"]])
    parts.append(_table(["task", "verifier", "rows judged (n)", "passed", "pass rate [95% CI]",
                         "verifier gave no usable answer"], rows))
    for g in groups:
        name = f"{g['verifier']} on {g['verifies']}"
        if g["solved"]:
            agreement = store.agreement_histogram(g["verifier"], g["verifies"])
            own = ""
            if g["with_own"]:
                low, high = wilson_interval(g["matches"], g["with_own"])
                own = (f"<p class=note>The agreed answer matches the row's own final answer in {g['matches']} of "
                       f"{g['with_own']} rows ({_num(g['matches'] / g['with_own'], 3)} [{_num(low, 3)}, "
                       f"{_num(high, 3)}]).</p>")
            parts.append(f"<h3>{_e(name)}: share of the k answers that agree</h3>"
                         + _columns([(f"{a:.2f}", n) for a, n in agreement]) + own)
        if g["scored"]:
            counts = store.score_counts(g["verifier"], g["verifies"])
            mean = sum(s * n for s, n in counts.items()) / g["scored"]
            parts.append(f"<h3>{_e(name)}: scores</h3>" + _columns([(str(s), counts.get(s, 0)) for s in range(1, 6)])
                         + f"<p class=note>mean score {_num(mean, 2)} over {g['scored']} rows</p>")
    return "".join(parts)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float | None, float | None]:
    """The Wilson score interval of a proportion (95% at z = 1.96); (None, None) when n is 0."""
    if n == 0:
        return None, None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


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


LABEL_CHARS = 36  # longer bar labels are shortened (the full text is the label's tooltip)
CHAR_WIDTH = 7.5  # px per character at the charts' 12px, wide enough for system-ui's wider letters


def _bars(items: list[tuple[str, int]], width: int = 520) -> str:
    """Horizontal bars, one per label, longest first as given. The label column is as wide as the
    longest shown label, so no label runs off the chart's left edge; the bars get what is left."""
    if not items:
        return _empty("nothing to show")
    top = max(n for _, n in items) or 1
    shown = [label if len(label) <= LABEL_CHARS else label[:LABEL_CHARS - 1] + "…" for label, _ in items]
    row, label_w = 22, int(12 + CHAR_WIDTH * max(len(s) for s in shown))
    bar_area = max(160, width - label_w - 60)
    width = label_w + bar_area + 60
    bars = []
    for k, ((label, n), short) in enumerate(zip(items, shown)):
        y = k * row
        w = max(1.0, bar_area * n / top)
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
.verdict { font-weight:500; }
.warn { color:#b54708; background:#fffaeb; border-radius:4px; padding:2px 8px; margin:4px 0; font-size:13px; }
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
