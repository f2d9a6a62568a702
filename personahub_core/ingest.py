"""Loading a corpus into the store: streamed in batches, exact duplicates collapsed by content hash.

Formats by file name: .jsonl, .json, .csv, .parquet, .txt (one document per file; per line with
``lines=True``), each optionally gzipped (.gz). Folders are walked for those files.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .errors import UsageError
from .store import Store

BATCH = 50_000
TEXT_FIELDS = ("text", "content", "body", "document", "persona")
ID_FIELDS = ("id", "doc_id", "document_id")
FORMATS = (".jsonl", ".ndjson", ".json", ".csv", ".parquet", ".txt", ".md")
MAX_REPORTED = 5


@dataclass
class IngestReport:
    files: int = 0
    read: int = 0
    added: int = 0
    duplicates: int = 0
    bad: int = 0
    problems: list[str] = field(default_factory=list)

    def problem(self, where: str, what: str) -> None:
        self.bad += 1
        if len(self.problems) < MAX_REPORTED:
            self.problems.append(f"{where}: {what}")


@dataclass
class Record:
    text: str
    original_id: str | None
    where: str  # file:line, for messages


def _format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def expand_paths(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if not path.exists():
            raise UsageError(f"{path}: no such file or directory")
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and _format(p) in FORMATS)
            if not found:
                raise UsageError(f"{path}: no files of a known format ({', '.join(FORMATS)}, optionally .gz)")
            files.extend(found)
        elif _format(path) not in FORMATS:
            raise UsageError(f"{path}: unknown format; expected one of {', '.join(FORMATS)} (optionally .gz)")
        else:
            files.append(path)
    return files


def open_text(path: Path) -> io.TextIOBase:
    raw = gzip.open(path, "rb") if path.suffix.lower() == ".gz" else path.open("rb")
    # Undecodable bytes become U+FFFD rather than stopping a million-line ingest; the text is still usable.
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")


def _pick(record: dict, wanted: str | None, candidates: tuple[str, ...]) -> str | None:
    if wanted:
        return wanted if wanted in record else None
    return next((c for c in candidates if c in record), None)


def _from_mapping(row: dict, where: str, text_field: str | None, id_field: str | None, report: IngestReport) -> Record | None:
    key = _pick(row, text_field, TEXT_FIELDS)
    if key is None:
        report.problem(where, f"no text field ({text_field or ' / '.join(TEXT_FIELDS)})")
        return None
    text = row[key]
    if not isinstance(text, str) or not text.strip():
        report.problem(where, f"field '{key}' is empty or not text")
        return None
    id_key = _pick(row, id_field, ID_FIELDS)
    original = row.get(id_key) if id_key else None
    return Record(text.strip(), None if original is None else str(original), where)


def read_records(path: Path, text_field: str | None, id_field: str | None, lines: bool, report: IngestReport) -> Iterator[Record]:
    fmt = _format(path)
    if fmt in (".jsonl", ".ndjson"):
        with open_text(path) as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    report.problem(f"{path}:{n}", f"invalid JSON ({exc.msg})")
                    continue
                if not isinstance(row, dict):
                    report.problem(f"{path}:{n}", "not a JSON object")
                    continue
                if (rec := _from_mapping(row, f"{path}:{n}", text_field, id_field, report)) is not None:
                    yield rec
    elif fmt == ".json":
        with open_text(path) as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
        rows = data if isinstance(data, list) else data.get("data") if isinstance(data, dict) else None
        if not isinstance(rows, list):
            raise UsageError(f"{path}: expected a JSON array of objects (or {{\"data\": [...]}})")
        for n, row in enumerate(rows, start=1):
            if isinstance(row, str):
                row = {"text": row}
            if not isinstance(row, dict):
                report.problem(f"{path}[{n}]", "not an object")
                continue
            if (rec := _from_mapping(row, f"{path}[{n}]", text_field, id_field, report)) is not None:
                yield rec
    elif fmt == ".csv":
        with open_text(path) as f:
            for n, row in enumerate(csv.DictReader(f), start=2):
                if (rec := _from_mapping(row, f"{path}:{n}", text_field, id_field, report)) is not None:
                    yield rec
    elif fmt == ".parquet":
        yield from _parquet_records(path, text_field, id_field, report)
    else:  # .txt / .md
        with open_text(path) as f:
            if lines:
                for n, line in enumerate(f, start=1):
                    if line.strip():
                        yield Record(line.strip(), None, f"{path}:{n}")
            else:
                text = f.read().strip()
                if text:
                    yield Record(text, None, str(path))
                else:
                    report.problem(str(path), "empty file")


def _parquet_records(path: Path, text_field: str | None, id_field: str | None, report: IngestReport) -> Iterator[Record]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise UsageError(f"{path}: not a readable Parquet file ({exc})") from None
    names = pf.schema_arrow.names
    key = _pick(dict.fromkeys(names), text_field, TEXT_FIELDS)
    if key is None:
        raise UsageError(f"{path}: no text column ({text_field or ' / '.join(TEXT_FIELDS)}); columns: {', '.join(names)}")
    id_key = _pick(dict.fromkeys(names), id_field, ID_FIELDS)
    columns = [key] + ([id_key] if id_key else [])
    n = 0
    for batch in pf.iter_batches(batch_size=BATCH, columns=columns):
        texts = batch.column(0).to_pylist()
        ids = batch.column(1).to_pylist() if id_key else [None] * len(texts)
        for text, original in zip(texts, ids):
            n += 1
            if not isinstance(text, str) or not text.strip():
                report.problem(f"{path} row {n}", f"column '{key}' is empty or not text")
                continue
            yield Record(text.strip(), None if original is None else str(original), f"{path} row {n}")


def content_hash(text: str) -> str:
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()


def ingest_paths(store: Store, paths: list[Path], text_field: str | None = None, id_field: str | None = None,
                 lines: bool = False, quiet: bool = False) -> IngestReport:
    files = expand_paths([Path(p) for p in paths])
    report = IngestReport(files=len(files))
    from .runner import stderr

    # Appending needs little memory; without a cap DuckDB keeps the whole table cached as it grows.
    store.con.execute("SET memory_limit = '256MB'")
    try:
        for path in files:
            _ingest_file(store, path, text_field, id_field, lines, report)
            if not quiet:
                stderr.print(f"[dim]{path}: {report.read} read so far, {report.added} new[/dim]")
    finally:
        store.con.execute("RESET memory_limit")
    return report


def _ingest_file(store: Store, path: Path, text_field: str | None, id_field: str | None, lines: bool,
                 report: IngestReport) -> None:
    batch: dict[str, tuple] = {}  # by id: the first text under an id wins
    hashes: set[str] = set()
    for rec in read_records(path, text_field, id_field, lines, report):
        report.read += 1
        digest = content_hash(rec.text)
        doc_id = rec.original_id or digest[:16]
        if digest in hashes or doc_id in batch:
            report.duplicates += 1
            continue
        hashes.add(digest)
        batch[doc_id] = (doc_id, digest, rec.text, str(path))
        if len(batch) >= BATCH:
            _insert(store, batch, report)
            batch, hashes = {}, set()
    _insert(store, batch, report)


def _insert(store: Store, batch: dict[str, tuple], report: IngestReport) -> None:
    if not batch:
        return
    ids, hashes, texts, files = (list(column) for column in zip(*batch.values()))
    before = store.count("documents")
    with store.transaction():
        # Lists go in as parameters (no pyarrow/pandas: they would double the memory of a big ingest).
        # Texts already stored (by hash) and ids already taken are skipped.
        store.con.execute(
            """
            INSERT INTO documents (id, content_hash, text, source_file)
            SELECT * FROM (SELECT unnest(?) AS id, unnest(?) AS content_hash, unnest(?) AS text,
                                  unnest(?) AS source_file) i
            WHERE i.content_hash NOT IN (SELECT content_hash FROM documents)
              AND i.id NOT IN (SELECT id FROM documents)
            """,
            [ids, hashes, texts, files],
        )
    added = store.count("documents") - before
    report.added += added
    report.duplicates += len(ids) - added
