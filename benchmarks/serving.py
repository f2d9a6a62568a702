"""Serving speed: our OpenAI-compatible backend against a minimal asyncio client, on the same server.

A vLLM-like server (``tests/fault_server.py`` in a process of its own, on 127.0.0.1) answers each request
after 0.5 s x lognormal(sigma 0.25), and 2% of requests after 5 s, the latency drawn from a hash of the
request's prompt so every client meets the same delays. At each N (requests in flight) it runs:

  1. ``personahub run --plugin math --backend openai --batch-size N`` on a store of imported personas
     (the whole driver path; skip with --no-cli);
  2. ``OpenAIBackend.stream`` fed directly, N slots;
  3. minimal clients, an asyncio semaphore of N over one aiohttp session, and the same over one
     ``httpx.AsyncClient``, on the same request bodies (for 1, the bodies the run sent).

It prints items/s, the mean and max requests open at the server, the client's CPU seconds (for the CLI
run: the child process's, imports and the store included) and the ratio to the aiohttp client measured
beside it. The target: ours >= 0.9 x minimal at every N, no stall, client CPU <= 2 x minimal. The machine
is shared: figures are noisy, so compare within one run.

    PYTHONPATH=. .venv/bin/python benchmarks/serving.py --items 2000 --slots 16,64,256
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Callable

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fault_server import FaultServer, _key  # noqa: E402

from personahub_core.backends.base import Prompt  # noqa: E402
from personahub_core.backends.openai_http import OpenAIBackend  # noqa: E402
from personahub_core.settings import Settings  # noqa: E402

MODEL = "bench-model"
PERSONAHUB = str(Path(sys.executable).parent / "personahub")  # the console script beside this Python


def vllm_latency(body: dict) -> float:
    """Seconds before the answer: 0.5 s x lognormal(0.25), 2% at 5 s; the same for the same prompt."""
    path = "/v1/chat/completions" if "messages" in body else "/v1/completions"
    seed = int.from_bytes(hashlib.sha256(_key(path, body).encode()).digest()[:8], "big")
    rng = random.Random(seed)
    return 5.0 if rng.random() < 0.02 else 0.5 * rng.lognormvariate(0.0, 0.25)


def math_problem(key: str) -> str:
    """An answer the math task accepts, so each item is one request (a rejected one would be asked again)."""
    n = int.from_bytes(hashlib.sha256(key.encode()).digest()[:2], "big")
    return (f"Problem: A workshop orders {n % 90 + 10} boxes of {n % 7 + 3} parts and uses {n % 5 + 2} parts "
            "a day. How many days do the parts last?")


def serve() -> None:
    """The server process: print the URL, serve until the parent closes our stdin."""
    with FaultServer(latency=vllm_latency, reply=math_problem) as server:
        print(server.url, flush=True)
        sys.stdin.read()


class Server:
    """A vLLM-like server in a child process, fresh for each measurement so its counts are that one's."""

    def __enter__(self) -> Server:
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.url = self.proc.stdout.readline().strip()
        return self

    def stats(self, bodies: bool = False) -> dict:
        root = self.url.removesuffix("/v1")
        with urllib.request.urlopen(f"{root}/stats{'?bodies=1' if bodies else ''}") as resp:
            return json.loads(resp.read())

    def __exit__(self, *exc: object) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def prompts(n: int) -> list[Prompt]:
    return [Prompt(completion=f"Problem {i}:", chat=[{"role": "user", "content": f"Write math problem {i}."}],
                   max_tokens=256, temperature=0.7, top_p=0.95, seed=i) for i in range(n)]


def bodies_of(items: list[Prompt]) -> list[tuple[str, dict]]:
    """The requests OpenAIBackend sends for these prompts, as the minimal clients send them."""
    return [("/chat/completions", {"model": MODEL, "max_tokens": p.max_tokens, "temperature": p.temperature,
                                   "top_p": p.top_p, "seed": p.seed, "messages": p.chat}) for p in items]


def measured(run: Callable[[], None]) -> tuple[float, float]:
    """Wall and CPU seconds of this process (every thread) for ``run``."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def ours_stream(url: str, items: list[Prompt], slots: int) -> None:
    backend = OpenAIBackend(Settings(backend="openai", base_url=url, model=MODEL, batch_size=slots))
    feed = iter(enumerate(items))
    for _, completion in backend.stream(lambda: next(feed, None), slots):
        assert completion.error is None, completion.error
    backend.close()


async def minimal_aiohttp(url: str, requests: list[tuple[str, dict]], slots: int) -> None:
    limit = asyncio.Semaphore(slots)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=slots)) as session:
        async def one(path: str, body: dict) -> None:
            async with limit, session.post(url + path, json=body) as resp:
                await resp.read()

        await asyncio.gather(*(one(path, body) for path, body in requests))


async def minimal_httpx(url: str, requests: list[tuple[str, dict]], slots: int) -> None:
    limit = asyncio.Semaphore(slots)
    pool = httpx.Limits(max_connections=slots, max_keepalive_connections=slots)
    async with httpx.AsyncClient(limits=pool, timeout=120) as client:
        async def one(path: str, body: dict) -> None:
            async with limit:
                (await client.post(url + path, json=body)).raise_for_status()

        await asyncio.gather(*(one(path, body) for path, body in requests))


def store_with_personas(folder: Path, n: int) -> Path:
    """A store holding n imported personas (made once, copied for each CLI run)."""
    personas = folder / "personas.jsonl"
    personas.write_text("".join(json.dumps({"persona": f"a {job} number {i}"}) + "\n"
                                for i, job in zip(range(n), ["nurse", "baker", "pilot", "chemist"] * n)))
    db = folder / "personas.duckdb"
    subprocess.run([PERSONAHUB, "run", "--plugin", "import", "--input",
                    str(personas), "--db", str(db), "--quiet"], check=True, cwd=folder)
    return db


def cli_run(url: str, db: Path, slots: int, items: int) -> float:
    """``personahub run --plugin math`` over the store; returns the child's CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([PERSONAHUB, "run", "--plugin", "math", "--backend", "openai",
                    "--base-url", url, "--model", MODEL, "--batch-size", str(slots), "--limit", str(items),
                    "--db", str(db), "--quiet", "--no-cache"], check=True, cwd=db.parent, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def line(label: str, slots: int, n: int, wall: float, cpu: float, stats: dict, baseline: float | None,
         busy_baseline: float | None = None) -> str:
    """Items/s by the client's clock (a CLI run's start-up included) and at the server (first request to
    last answer: the rate once the run is under way), each as a ratio to the minimal client's."""
    rate, busy = n / wall, n / stats["busy_seconds"]
    ratio = f"{rate / baseline:5.2f}" if baseline else "    -"
    busy_ratio = f"{busy / busy_baseline:5.2f}" if busy_baseline else "    -"
    return (f"{slots:>4} {label:<22} {rate:8.1f} {stats['mean_open']:8.1f} {stats['max_open']:5d} "
            f"{cpu:8.1f} {ratio}   {busy:8.1f} {busy_ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--slots", default="16,64,256")
    parser.add_argument("--no-cli", action="store_true", help="skip the personahub run measurement")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    items = prompts(args.items)
    requests = bodies_of(items)
    folder = Path(tempfile.mkdtemp(prefix="personahub-serving-"))
    try:
        personas = None if args.no_cli else store_with_personas(folder, args.items)
        print(f"{args.items} items per client; {os.cpu_count()} cores, shared: compare within this run")
        print(f"{'N':>4} {'client':<22} {'items/s':>8} {'mean in':>8} {'max':>5} {'CPU s':>8} {'/ aiohttp'}"
              f"   {'at server':>8} {'/ aiohttp'}")
        for slots in [int(s) for s in args.slots.split(",")]:
            rows = []
            if personas is not None:
                db = folder / f"run-{slots}.duckdb"
                shutil.copy(personas, db)
                with Server() as server:
                    wall = time.perf_counter()
                    cpu = cli_run(server.url, db, slots, args.items)
                    wall = time.perf_counter() - wall
                    stats = server.stats(bodies=True)
                sent = [(path.removeprefix("/v1"), body) for path, body in stats.pop("requests")]
                with Server() as server:
                    base_wall, base_cpu = measured(lambda: asyncio.run(minimal_aiohttp(server.url, sent, slots)))
                    base_stats = server.stats()
                rate, busy = len(sent) / base_wall, len(sent) / base_stats["busy_seconds"]
                rows.append(line("personahub run", slots, len(sent), wall, cpu, stats, rate, busy))
                rows.append(line("aiohttp, same bodies", slots, len(sent), base_wall, base_cpu, base_stats, None))
            with Server() as server:
                base_wall, base_cpu = measured(lambda: asyncio.run(minimal_aiohttp(server.url, requests, slots)))
                base_stats = server.stats()
            rate, busy = args.items / base_wall, args.items / base_stats["busy_seconds"]
            with Server() as server:
                wall, cpu = measured(lambda: ours_stream(server.url, items, slots))
                stats = server.stats()
            rows.append(line("OpenAIBackend.stream", slots, args.items, wall, cpu, stats, rate, busy))
            with Server() as server:
                hx_wall, hx_cpu = measured(lambda: asyncio.run(minimal_httpx(server.url, requests, slots)))
                hx_stats = server.stats()
            rows.append(line("httpx.AsyncClient", slots, args.items, hx_wall, hx_cpu, hx_stats, rate, busy))
            rows.append(line("aiohttp (minimal)", slots, args.items, base_wall, base_cpu, base_stats, None))
            print("\n".join(rows), flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
