"""Hugging Face datasets: ``export --format hf`` (a folder ``datasets.load_from_disk`` opens, with a
dataset card) and ``push`` (the same rows as Parquet plus the card, uploaded with ``huggingface_hub``).

Both libraries are the optional extra ``personahub[hf]``; without them the commands say how to install.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import yaml

from .errors import PersonaHubError, UsageError
from .export import export_query
from .export_formats import ExportFormat
from .store import Store

INSTALL = "pip install 'personahub[hf]'"
PAPER = "Scaling Synthetic Data Creation with 1,000,000,000 Personas (Ge et al., 2024, arXiv 2406.20094)"


def _require(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise PersonaHubError(f"Hugging Face export needs the '{module}' package: {INSTALL}") from None


def rows_table(store: Store, what: str, full: bool, include_all: bool, quiet: bool = True,
               tasks: dict[str, type] | None = None) -> pa.Table:
    """The exported rows as one Arrow table, in batches with a progress bar."""
    from .progress import progress_bar

    query = export_query(store, what, full, include_all, tasks)
    total = store.export_count(query)
    reader = store.export_relation(query).to_arrow_reader(10_000)
    batches = []
    with progress_bar(f"export {what}", total=total, quiet=quiet) as progress:
        for batch in reader:
            batches.append(batch)
            progress.update(progress.task_ids[0], advance=batch.num_rows)
    table = pa.Table.from_batches(batches, schema=reader.schema)
    # JSON columns (options, sampling, output) arrive as an Arrow extension type; datasets wants plain strings.
    fields = [pa.field(f.name, pa.string()) if isinstance(f.type, pa.BaseExtensionType) else f for f in table.schema]
    return table.cast(pa.schema(fields))


class HfFormat(ExportFormat):
    """A folder, not a file: a Hugging Face dataset with its card."""

    name = "hf"
    description = "a Hugging Face dataset folder with its card"
    selects_by_verdict = False

    def write(self, store, what, out_path, *, full, include_all, quiet, tasks, verified, where) -> int:
        return export_hf(store, what, out_path, full=full, include_all=include_all, quiet=quiet, tasks=tasks)


def export_hf(store: Store, what: str, out_dir: Path, full: bool = False, include_all: bool = False,
              quiet: bool = True, tasks: dict[str, type] | None = None) -> int:
    """Write ``out_dir`` as a saved dataset with ``README.md``; replaces an earlier export there."""
    datasets = _require("datasets")
    out_dir = Path(out_dir)
    if out_dir.exists() and not (out_dir / "state.json").exists() and (out_dir.is_file() or any(out_dir.iterdir())):
        raise UsageError(f"--out {out_dir}: exists and is not an earlier dataset export; choose a new folder")
    if not out_dir.parent.exists():
        raise UsageError(f"--out {out_dir}: directory {out_dir.parent} does not exist")
    table = rows_table(store, what, full, include_all, quiet, tasks)
    datasets.disable_progress_bars()  # ours is shown instead
    # Build beside the target and swap, so a failed export never leaves half a dataset.
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the export is a normal folder
    try:
        datasets.Dataset(table).save_to_disk(str(tmp / "data"))
        for name in os.listdir(tmp / "data"):
            os.replace(tmp / "data" / name, tmp / name)
        (tmp / "data").rmdir()
        (tmp / "README.md").write_text(dataset_card(store, what, table, full, include_all=include_all), encoding="utf-8")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return table.num_rows


ORIGINS = {  # what each persona origin means, as the store records it
    "import": "imported from a file as given",
    "text": "written from ingested text (text-to-persona)",
    "expansion": "grown from other personas through their relations (persona-to-persona)",
}


def dataset_card(store: Store, what: str, table: pa.Table, full: bool, parquet: str | None = None,
                 include_all: bool = False) -> str:
    """README.md: YAML metadata first (the Hub reads it), then how the data was made, stated only as
    far as the store's provenance shows it for the exported rows."""
    task = None if what == "personas" else what
    models = store.exported_models(task, include_all)
    statuses: dict = {}
    options: list = []
    sampling: dict = {}
    if task is not None:
        statuses = store.exported_statuses(task, include_all)
        options = [json.loads(o) for o in store.task_option_sets(task)]
        stored = store.task_sampling(task)
        sampling = {k: v for k, v in json.loads(stored or "{}").items() if k in ("temperature", "top_p", "max_tokens")}
    n = table.num_rows
    size = next(label for limit, label in ((1e3, "n<1K"), (1e4, "1K<n<10K"), (1e5, "10K<n<100K"),
                                            (1e6, "100K<n<1M"), (1e7, "1M<n<10M"), (float("inf"), "n>10M")) if n < limit)
    meta = {
        "license": "other",  # set your licence: it depends on the corpus and the model you used
        "language": ["en"],
        "pretty_name": f"PersonaHub {what}",
        "size_categories": [size],
        "task_categories": ["text-generation"],
        "tags": ["synthetic", "personas", "persona-hub", "personahub"],
        "personahub": {"task": what, "models": models, "rows": n, "statuses": statuses, "options": options,
                       "sampling": sampling,
                       "columns": table.column_names, "full": full},
    }
    if parquet:
        meta["configs"] = [{"config_name": "default", "data_files": [{"split": "train", "path": parquet}]}]
    return (
        "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n\n"
        f"# PersonaHub {what}\n\n"
        f"{n:,} rows made with PersonaHub, after the paper \"{PAPER}\""
        + (": personas, with where each came from.\n\n" if what == "personas"
           else f": each row is one persona put into the `{what}` task's prompt.\n\n")
        + "## How it was made\n\n" + "\n".join(_provenance(store, what, include_all, models, statuses)) + "\n\n"
        + _diversity_section(store, what)
        + "## Columns\n\n" + "\n".join(f"- `{f.name}` ({f.type})" for f in table.schema) + "\n\n"
        "Synthesized rows keep the schema PersonaHub released: `input persona`, `synthesized text`, `description`.\n\n"
        "## Licence\n\nThe `license` field above is a placeholder: set it to what your corpus and model allow.\n"
    )


def _provenance(store: Store, what: str, include_all: bool, models: list, statuses: dict) -> list[str]:
    """One line per fact the store records about the exported rows' personas and generations."""
    origins = store.exported_origins(None if what == "personas" else what, include_all)
    lines = []
    documents = store.count("documents")
    if documents and any(o == "text" for o, *_ in origins):
        lines.append(f"- {documents:,} source documents were ingested.")
    described = []
    for origin, count, by, hop in origins:
        how = ORIGINS.get(origin, origin)
        if by:
            how += f" by {', '.join(f'`{m}`' for m in by)}"
        if origin == "expansion" and hop:
            how += f", up to hop {hop}"
        described.append(f"{origin} {count:,} ({how})")
    whose = "Personas" if what == "personas" else "The rows' personas"
    lines.append(f"- {whose} by origin: {'; '.join(described) or 'none recorded'}.")
    # A mark naming the persona it duplicates is deduplication; a mark with only a reason is a filter.
    marks = store.marks_by_method()
    dedup = [f"{m} marked {c:,}" for m, c, is_dedup in marks if is_dedup]
    filters = [f"{m} marked {c:,}" for m, c, is_dedup in marks if not is_dedup]
    left_out = "; marked personas are left out" + (" unless exported with --all." if what == "personas" else ".")
    lines.append(f"- Deduplicated: {', '.join(dedup)}{left_out}" if dedup
                 else "- Not deduplicated: no persona in the store carries a deduplication mark.")
    if filters:
        lines.append(f"- Filtered: {', '.join(filters)}{left_out}")
    if what != "personas":
        lines.append(f"- Task `{what}` ran with {', '.join(f'`{m}`' for m in models) or 'no recorded model'}; "
                     f"exported rows by status: {', '.join(f'{s} {c:,}' for s, c in statuses.items()) or 'none'}.")
    return lines


def _diversity_section(store: Store, what: str) -> str:
    """The diversity study of the task, when its outputs have been embedded (``personahub diversity``)."""
    from .diversity import study, study_models
    from .diversity_stats import figure_text

    model = study_models(store).get(what)
    if not model:
        return ""
    s = study(store, what, model)
    if not s["rows"]:
        return ""
    o = s["outputs"]
    lines = [f"Measured by `personahub diversity` on {s['rows']:,} rows with vectors from `{model}` "
             "(95% bootstrap intervals in brackets):", ""]
    for label, key in (("mean pairwise similarity of outputs", "mean_pairwise_similarity"),
                       ("distinct-1", "distinct_1"), ("distinct-2", "distinct_2"),
                       ("near-duplicate share", "near_duplicate_share")):
        lines.append(f"- {label}: {figure_text(o[key], o['intervals'][key])}")
    f = s["fidelity"]
    if f["rate"] is not None:
        lines.append(f"- persona fidelity (own persona nearest among {f['k']}; chance {f['chance']}): "
                     f"{figure_text(f['rate'], f['interval'])}")
    lines += ["", s["verdict"]] + [f"Warning: {w}." for w in s["warnings"]]
    return "## Diversity\n\n" + "\n".join(lines) + "\n\n"


def push(store: Store, what: str, repo: str, private: bool = False, full: bool = False, include_all: bool = False,
         quiet: bool = True, tasks: dict[str, type] | None = None) -> str:
    """Upload the rows (Parquet) and the card to the dataset repo ``repo``; returns its URL."""
    _require("datasets")
    hub = _require("huggingface_hub")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise UsageError(f"--repo {repo!r}: expected ORG/NAME")
    token = hub.get_token()
    if not token:
        raise PersonaHubError("no Hugging Face token: set HF_TOKEN (or log in with 'hf auth login') and try again")
    table = rows_table(store, what, full, include_all, quiet, tasks)
    parquet = "data/train-00000-of-00001.parquet"
    api = hub.HfApi(token=token)
    with tempfile.TemporaryDirectory() as folder:
        import pyarrow.parquet as pq

        (Path(folder) / "data").mkdir()
        pq.write_table(table, Path(folder) / parquet)
        (Path(folder) / "README.md").write_text(dataset_card(store, what, table, full, parquet, include_all),
                                                encoding="utf-8")
        try:
            api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
            api.upload_folder(folder_path=folder, repo_id=repo, repo_type="dataset",
                              commit_message=f"PersonaHub {what}: {table.num_rows} rows")
        except Exception as exc:  # the hub client raises many kinds; all mean the same to the user
            raise PersonaHubError(f"push to {repo} failed at {api.endpoint}: {_reason(exc)}") from None
    return f"{api.endpoint}/datasets/{repo}"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:300]
