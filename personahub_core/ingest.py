"""Loading a corpus into the store with DuckDB's own readers; exact duplicates collapsed by content hash.

Formats by file name, in any case: .jsonl/.ndjson, .json, .csv, .parquet, .txt/.md (one document per
file; per line with ``lines=True``), each optionally gzipped (.gz). Folders are walked for those files;
a file that cannot be read is named at the end and the others are kept. A text is a JSON string: a
number, a list or an object in the text field is skipped and counted. No line or document may be longer
than ``MAX_LINE_BYTES`` (8 MiB): a longer line is skipped and named, the rest of its file kept.

Each file is one ``INSERT ... SELECT`` from DuckDB's reader: hashing, the anti-join against stored
hashes and the collapse of duplicates inside the file are set operations, never a Python loop per row.
A document's id is its content hash; an id found in the corpus is kept as ``source_id`` only, so two
different texts under one source id are both kept. Lines DuckDB rejects (bad JSON, invalid UTF-8, a line
over the size limit) come back from its reject table with their line numbers. Records that parse but
have no usable text are counted in SQL and, only when there are some, located by a short Python pass
for the message.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import duckdb

from .errors import UsageError
from .store import Store, disk_full
from .text_sql import normalised, sql_literal, stripped

TEXT_FIELDS = ("text", "content", "body", "document", "persona")
ID_FIELDS = ("id", "doc_id", "document_id")
FORMATS = (".jsonl", ".ndjson", ".json", ".csv", ".parquet", ".txt", ".md")
MAX_REPORTED = 5
MAX_LINE_BYTES = 8 * 1024 * 1024  # DuckDB rejects (and we report) a longer line; its buffers scale with this

# One JSON document per line, read as a one-column CSV: valid JSON never holds a raw \x01, and casting
# the column to JSON makes DuckDB reject malformed lines with their line numbers. The buffers are 4 lines
# long (DuckDB's default is 16, 128 MiB per thread: a 256 MB cap then fails to read a 500 MB file).
LINES_AS = ("read_csv(?, columns = {{'v': '{type}'}}, delim = '\\x01', quote = '', escape = '', header = false, "
            "auto_detect = false, max_line_size = %d, buffer_size = %d, store_rejects = true, "
            "rejects_table = '_rejected', rejects_scan = '_rejected_scans')" % (MAX_LINE_BYTES, 4 * MAX_LINE_BYTES))


@dataclass
class IngestReport:
    files: int = 0
    read: int = 0
    added: int = 0
    duplicates: int = 0
    bad: int = 0
    replaced_utf8: int = 0  # lines whose invalid UTF-8 bytes were replaced
    problems: list[str] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)  # one line per file that could not be read

    def problem(self, where: str, what: str) -> None:
        self.bad += 1
        if len(self.problems) < MAX_REPORTED:
            self.problems.append(f"{where}: {what}")


@dataclass
class Record:
    text: str
    original_id: str | None
    where: str  # file:line, for messages


def input_format(path: Path) -> str:
    """The format a file's name gives, in lower case, under any .gz: "data.JSONL.gz" is ".jsonl"."""
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
            found = sorted(p for p in path.rglob("*") if p.is_file() and input_format(p) in FORMATS)
            if not found:
                raise UsageError(f"{path}: no files of a known format ({', '.join(FORMATS)}, optionally .gz)")
            files.extend(found)
        elif input_format(path) not in FORMATS:
            raise UsageError(f"{path}: unknown format; expected one of {', '.join(FORMATS)} (optionally .gz)")
        else:
            files.append(path)
    return files


def open_text(path: Path) -> io.TextIOBase:
    raw = gzip.open(path, "rb") if path.suffix.lower() == ".gz" else path.open("rb")
    # Undecodable bytes become U+FFFD rather than stopping a million-line ingest; the text is still usable.
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")


def file_error(path: Path, exc: Exception) -> UsageError:
    """A reader's failure on a whole file (truncated or fake gzip, unreadable) as one line naming it."""
    if isinstance(exc, (EOFError, zlib.error)) or "gzip" in str(exc).lower() or "GZIP" in str(exc):
        what = "truncated gzip stream" if ("end of" in str(exc).lower() or isinstance(exc, EOFError)) \
            else "not a gzip file"
    else:
        what = str(exc).splitlines()[0].removeprefix("IO Error: ").removeprefix("Invalid Input Error: ")
    return UsageError(f"{path}: {what}")


def _pick(record: dict, wanted: str | None, candidates: tuple[str, ...]) -> str | None:
    if wanted:
        return wanted if wanted in record else None
    return next((c for c in candidates if c in record), None)


def json_line(line: str) -> tuple[object, str | None]:
    """One JSON line parsed, or None and why it could not be."""
    try:
        return json.loads(line), None
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON ({exc.msg})"
    except RecursionError:  # Python's parser recurses; DuckDB's does not, so such a line reaches here
        return None, "JSON nested too deeply"


def not_text(value: object) -> str | None:
    """Why a field's value is not a text (None when it is one)."""
    if isinstance(value, str):
        return None if value.strip() else "is empty"
    kind = {bool: "true/false", dict: "an object", list: "a list", type(None): "null"}.get(type(value), "a number")
    return f"holds {kind}, not text"


def _from_mapping(row: dict, where: str, text_field: str | None, id_field: str | None, report: IngestReport) -> Record | None:
    # The first candidate field holding text, as the SQL in json_records_sql picks it.
    keys = [k for k in ([text_field] if text_field else TEXT_FIELDS) if k in row]
    key = next((k for k in keys if not_text(row[k]) is None), None)
    if key is None:
        report.problem(where, f"field '{keys[0]}' {not_text(row[keys[0]])}" if keys else
                       f"no text field ({text_field or ' / '.join(TEXT_FIELDS)})")
        return None
    text = row[key]
    id_key = _pick(row, id_field, ID_FIELDS)
    original = row.get(id_key) if id_key else None
    return Record(text.strip(), None if original is None else str(original), where)


def json_records_sql(source: str, text_field: str | None, id_field: str | None) -> str:
    """(text, source_id, bad) for each JSON value ``v`` of ``source``: the text is the first of the
    candidate fields that holds a non-blank JSON string (a number, list or object is not a text);
    one JSON parse per record (``from_json`` to a struct of JSON values)."""
    texts = [text_field] if text_field else list(TEXT_FIELDS)
    ids = [id_field] if id_field else list(ID_FIELDS)
    names = list(dict.fromkeys(texts + ids))
    spec = sql_literal(json.dumps({n: "JSON" for n in names}))
    field_sql = lambda n: 'r."' + n.replace('"', '""') + '"'
    value = lambda n: f"({field_sql(n)} ->> '$')"
    text = "coalesce(" + ", ".join(f"CASE WHEN json_type({field_sql(n)}) = 'VARCHAR' THEN nullif({stripped(value(n))}, '') END"
                                   for n in texts) + ")"
    source_id = "coalesce(" + ", ".join(value(n) for n in ids) + ")"
    return f"""
        SELECT CASE WHEN obj THEN text END AS text, source_id, NOT obj OR text IS NULL AS bad
        FROM (SELECT obj, {text} AS text, {source_id} AS source_id
              FROM (SELECT starts_with(ltrim(v::VARCHAR, ' \t'), '{{') AS obj, from_json(v, {spec}) AS r
                    FROM {source} WHERE v IS NOT NULL))
    """


class FileIngest:
    """One file into the store: a records query over DuckDB's reader, then one set-based insert."""

    def __init__(self, store: Store, path: Path, text_field: str | None, id_field: str | None, lines: bool,
                 report: IngestReport):
        self.store, self.path = store, path
        self.text_field, self.id_field, self.lines = text_field, id_field, lines
        self.report = report
        self.fmt = input_format(path)
        self.params: list = []
        self.fixed: list[Record] = []  # lines with invalid UTF-8, parsed again from DuckDB's rejects

    # -- the records each format yields: SELECT text, source_id, bad ---------------------------
    def records_sql(self) -> str:
        p = str(self.path)
        if self.fmt in (".jsonl", ".ndjson"):
            self.params = [p]
            return json_records_sql(LINES_AS.format(type="JSON"), self.text_field, self.id_field)
        if self.fmt == ".json":
            return self._json_array_sql()
        if self.fmt == ".csv":
            return self._csv_sql()
        if self.fmt == ".parquet":
            return self._parquet_sql()
        if self.lines:
            self.params = [p]
            return (f"SELECT {stripped('v')} AS text, CAST(NULL AS VARCHAR) AS source_id, false AS bad FROM {LINES_AS.format(type='VARCHAR')} "
                    f"WHERE v IS NOT NULL AND {stripped('v')} <> ''")
        return self._whole_text_sql()

    def _json_array_sql(self) -> str:
        with open_text(self.path) as f:
            head = f.read(4096).lstrip()[:1]
        if head not in ("[", "{"):
            raise UsageError(f"{self.path}: expected a JSON array of objects (or {{\"data\": [...]}})")
        self.params = [str(self.path)]
        source = ("(SELECT unnest(json_extract(json, '$[*]')) AS v FROM read_json_objects(?, format = 'unstructured'))"
                  if head == "[" else
                  "(SELECT unnest(json_extract(json, '$.data[*]')) AS v FROM read_json_objects(?, format = 'unstructured'))")
        # A bare string in the array is a text of its own.
        source = f"(SELECT CASE WHEN json_type(v) = 'VARCHAR' THEN json_object('text', v->>'$') ELSE v END AS v FROM {source})"
        return json_records_sql(source, self.text_field, self.id_field)

    def _csv_sql(self) -> str:
        csv.field_size_limit(MAX_LINE_BYTES)
        with open_text(self.path) as f:
            header = next(csv.reader(f), None)
        if not header:
            return "SELECT CAST(NULL AS VARCHAR) AS text, CAST(NULL AS VARCHAR) AS source_id, false AS bad WHERE false"
        self.header = header
        key, id_key = _pick(dict.fromkeys(header), self.text_field, TEXT_FIELDS), _pick(dict.fromkeys(header), self.id_field, ID_FIELDS)
        if key is None:
            raise UsageError(f"{self.path}: no text column ({self.text_field or ' / '.join(TEXT_FIELDS)}); "
                             f"columns: {', '.join(header)}")
        columns = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(len(header))) + "}"
        self.params = [str(self.path)]
        text, source_id = f"c{header.index(key)}", f"c{header.index(id_key)}" if id_key else "CAST(NULL AS VARCHAR)"
        reader = (f"read_csv(?, columns = {columns}, header = true, delim = ',', quote = '\"', escape = '\"', "
                  f"auto_detect = false, max_line_size = {MAX_LINE_BYTES}, store_rejects = true, "
                  "rejects_table = '_rejected', rejects_scan = '_rejected_scans')")
        return (f"SELECT nullif({stripped(text)}, '') AS text, {source_id} AS source_id, "
                f"coalesce({stripped(text)}, '') = '' AS bad FROM {reader}")

    def _parquet_sql(self) -> str:
        p = str(self.path)
        try:
            schema = self.store.parquet_columns(p)
        except duckdb.Error as exc:
            raise UsageError(f"{self.path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
        key, id_key = _pick(schema, self.text_field, TEXT_FIELDS), _pick(schema, self.id_field, ID_FIELDS)
        if key is None:
            raise UsageError(f"{self.path}: no text column ({self.text_field or ' / '.join(TEXT_FIELDS)}); "
                             f"columns: {', '.join(schema)}")
        if schema[key] != "VARCHAR":
            raise UsageError(f"{self.path}: column '{key}' holds {schema[key]}, not text")
        self.params = [p]
        text = stripped(f'"{key}"')
        source_id = f'CAST("{id_key}" AS VARCHAR)' if id_key else "CAST(NULL AS VARCHAR)"
        return (f"SELECT nullif({text}, '') AS text, {source_id} AS source_id, coalesce({text}, '') = '' AS bad "
                f"FROM read_parquet(?)")

    def _whole_text_sql(self) -> str:
        raw = gzip.open(self.path, "rb") if self.path.suffix.lower() == ".gz" else self.path.open("rb")
        with raw:
            data = raw.read(MAX_LINE_BYTES + 1)
        if len(data) > MAX_LINE_BYTES:
            raise UsageError(f"{self.path}: document longer than {MAX_LINE_BYTES // 2**20} MiB "
                             "(--lines reads it as one document per line)")
        try:  # a whole document is text or nothing: random bytes are not stored as U+FFFD
            text = data.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise UsageError(f"{self.path}: not UTF-8 text (invalid byte at offset {exc.start})") from None
        self.params = [text or None, not text]
        return "SELECT CAST(? AS VARCHAR) AS text, CAST(NULL AS VARCHAR) AS source_id, CAST(? AS BOOLEAN) AS bad"

    # -- the insert ----------------------------------------------------------------------------
    def run(self) -> None:
        report, store = self.report, self.store
        try:
            # Staged in a table of its own, outside the transaction, so DuckDB can spill it to disk;
            # the documents table changes only in the store's one insert.
            store.stage_records(self.records_sql(), self.params)
            self._take_rejects()
            read, bad, added = store.add_staged_documents(str(self.path))
        except (duckdb.Error, OSError, EOFError, zlib.error) as exc:
            if disk_full(exc):  # the store's disk (where DuckDB also spills), not the input, is at fault
                raise store.full() from None
            raise file_error(self.path, exc) from None
        finally:
            store.drop_staged()
        report.read += read
        report.added += added
        report.duplicates += read - added
        if bad:
            self._locate_problems(bad)

    def _take_rejects(self) -> None:
        """Lines DuckDB refused: invalid UTF-8 ones are parsed again with the bad bytes replaced (and
        counted); the others are reported with their line numbers."""
        for line, kind, text in self.store.staged_rejects():
            where = f"{self.path}:{line}"
            if kind == "INVALID ENCODING":
                self.report.replaced_utf8 += 1
                self._fix(text, where)
            elif kind == "CAST" and self.fmt in (".jsonl", ".ndjson"):
                self.report.problem(where, "invalid JSON")
            elif kind == "LINE SIZE OVER MAXIMUM":
                self.report.problem(where, f"line longer than {MAX_LINE_BYTES // 2**20} MiB")
            else:
                self.report.problem(where, kind.lower())
        if self.fixed:
            self.store.stage_more([r.text for r in self.fixed], [r.original_id for r in self.fixed])

    def _fix(self, line: str, where: str) -> None:
        scratch = IngestReport()
        if self.fmt in (".jsonl", ".ndjson"):
            row, problem = json_line(line)
            if problem:
                self.report.problem(where, problem)
                return
            rec = _from_mapping(row, where, self.text_field, self.id_field, scratch) if isinstance(row, dict) else None
        elif self.fmt == ".csv":
            values = next(csv.reader([line]), [])
            rec = _from_mapping(dict(zip(self.header, values)), where, self.text_field, self.id_field, scratch)
        else:
            rec = Record(line.strip(), None, where) if line.strip() else None
        if rec is not None:
            self.fixed.append(rec)
        elif scratch.problems:
            self.report.problem(where, scratch.problems[0].split(": ", 1)[1])

    def _locate_problems(self, bad: int) -> None:
        """Name where the first few unusable records are (SQL counted them; only this pass knows lines)."""
        scratch = IngestReport()
        for _ in read_records(self.path, self.text_field, self.id_field, self.lines, scratch):
            if len(scratch.problems) >= MAX_REPORTED:
                break
        found = [p for p in scratch.problems if ": invalid JSON" not in p]  # those came from DuckDB already
        self.report.bad += bad
        room = MAX_REPORTED - len(self.report.problems)
        self.report.problems.extend(found[:max(room, 0)])


def read_records(path: Path, text_field: str | None, id_field: str | None, lines: bool, report: IngestReport) -> Iterator[Record]:
    """Records one by one, in Python: used only to say where unusable records are."""
    fmt = input_format(path)
    if fmt in (".jsonl", ".ndjson"):
        with open_text(path) as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                row, problem = json_line(line)
                if problem:
                    report.problem(f"{path}:{n}", problem)
                    continue
                if not isinstance(row, dict):
                    report.problem(f"{path}:{n}", "not a JSON object")
                    continue
                if (rec := _from_mapping(row, f"{path}:{n}", text_field, id_field, report)) is not None:
                    yield rec
    elif fmt == ".json":
        with open_text(path) as f:
            data, problem = json_line(f.read())
        if problem:
            report.problem(str(path), problem)
            return
        rows = data if isinstance(data, list) else data.get("data") if isinstance(data, dict) else None
        for n, row in enumerate(rows or [], start=1):
            if isinstance(row, str):
                row = {"text": row}
            if not isinstance(row, dict):
                report.problem(f"{path}[{n}]", "not an object")
                continue
            if (rec := _from_mapping(row, f"{path}[{n}]", text_field, id_field, report)) is not None:
                yield rec
    elif fmt == ".csv":
        csv.field_size_limit(MAX_LINE_BYTES)  # DuckDB read these fields; Python's default stops at 128 KiB
        with open_text(path) as f:
            for n, row in enumerate(csv.DictReader(f), start=2):
                if (rec := _from_mapping(row, f"{path}:{n}", text_field, id_field, report)) is not None:
                    yield rec
    elif fmt == ".parquet":
        import pyarrow.parquet as pq

        key = text_field or next(c for c in TEXT_FIELDS if c in pq.read_schema(path).names)
        n = 0
        for batch in pq.ParquetFile(path).iter_batches(columns=[key]):
            for text in batch.column(0).to_pylist():
                n += 1
                if not isinstance(text, str) or not text.strip():
                    report.problem(f"{path} row {n}", f"column '{key}' is empty or not text")
                    continue
                yield Record(text.strip(), None, f"{path} row {n}")
    else:
        report.problem(str(path), "empty file")


def file_progress(description: str, files: int, quiet: bool):
    """Files done, with a running count; transient, so an error after it is still the only line."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .progress import LabelColumn, stderr

    progress = Progress(LabelColumn(), BarColumn(), MofNCompleteColumn(),
                        TextColumn("files {task.fields[extra]}"), TimeElapsedColumn(), console=stderr,
                        disable=quiet, transient=True)
    progress.add_task(description, total=files, extra="")
    return progress


def ingest_paths(store: Store, paths: list[Path], text_field: str | None = None, id_field: str | None = None,
                 lines: bool = False, quiet: bool = False) -> IngestReport:
    files = expand_paths([Path(p) for p in paths])
    report = IngestReport(files=len(files))
    # Bounded memory: DuckDB spills the collapse of a large file to disk instead of growing.
    with store.tuned(memory_limit="256MB"), file_progress("ingest", len(files), quiet) as progress:
        bar = progress.task_ids[0]
        for path in files:
            try:
                FileIngest(store, path, text_field, id_field, lines, report).run()
            except UsageError as exc:  # a file that cannot be read; the others are still read
                if len(files) == 1:
                    raise
                report.unread.append(str(exc))
            progress.update(bar, advance=1, extra=f"{report.read:,} read, {report.added:,} new")
    return report
