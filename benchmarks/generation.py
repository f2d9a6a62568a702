"""Generation speed: the high-level llama-cpp-python loop against our batched llama.cpp backend.

Runs the same few-shot prompts (sharing one ~100-token prefix) with the same model and thread count:

  1. baseline: ``Llama.create_completion``, one prompt after another;
  2. ``LlamaCppBackend.generate`` at several batch sizes, with the shares of wall time spent sampling
     (numpy's tail cut and llama.cpp's samplers) and outside llama_decode and sampling: our Python overhead;
  3. the prompt phase (max_tokens=1) with prefix sharing on and off;
  4. slot occupancy (mean active sequences / slots until the queue empties) at one batch size, with
     answers of varied length (they stop at a blank line): the prompts sent in windows of batch x 4, one
     ``generate`` call each, as the executor did before continuous batching, against one ``stream`` fed
     as slots free. The two alternate, ``--repeats`` times each.

Tokens per CPU-second is printed beside tokens per second: on a machine shared with other work it is
the steadier figure (with --threads 1; more threads spin at barriers while they wait for a core).

    PYTHONPATH=. .venv/bin/python benchmarks/generation.py --prompts 32 --max-tokens 64 --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import time
from dataclasses import replace
from typing import Iterator

import llama_cpp

from personahub_core.backends.base import Prompt
from personahub_core.backends.llama_cpp import LlamaCppBackend, Timings
from personahub_core.models import default_model_path
from personahub_core.settings import Settings

PREFIX = (
    "Write a math word problem that the persona would enjoy.\n\n"
    "Persona: a retired nurse who grows tomatoes on her balcony.\n"
    "Problem: Rosa plants 3 rows of 7 tomato plants and each gives 4 tomatoes. How many does she pick?\n\n"
    "Persona: a bus driver on the night shift in Lima.\n"
    "Problem: A bus leaves with 38 people; 9 get off and 5 get on. How many are on board?\n\n"
)
JOBS = ["chess coach", "baker", "marine biologist", "speedrunner", "tea farmer", "jazz pianist", "glassblower", "nurse"]
PLACES = ["in Oslo", "in Nairobi", "in Lyon", "in Osaka"]
TEMPERATURE, TOP_P = 0.7, 0.95


def prompts(n: int) -> list[str]:
    personas = itertools.cycle(f"a {job} {place}" for place in PLACES for job in JOBS)
    return [f"{PREFIX}Persona: {next(personas)}.\nProblem:" for _ in range(n)]


def sampled(texts: list[str], max_tokens: int) -> list[Prompt]:
    return [
        Prompt(completion=t, max_tokens=max_tokens, temperature=TEMPERATURE, top_p=TOP_P, seed=i)
        for i, t in enumerate(texts)
    ]


@contextlib.contextmanager
def no_weight_repacking() -> Iterator[None]:
    """Make ``Llama`` load without extra buffer types, as our backend does (AMX kernels crash some VMs)."""
    original = llama_cpp.llama_model_default_params

    def params() -> llama_cpp.llama_model_params:
        p = original()
        p.use_extra_bufts = False
        return p

    llama_cpp.llama_cpp.llama_model_default_params = params
    try:
        yield
    finally:
        llama_cpp.llama_cpp.llama_model_default_params = original


def baseline(model: str, texts: list[str], max_tokens: int, threads: int, n_ctx: int) -> tuple[int, float, float]:
    with no_weight_repacking():
        llm = llama_cpp.Llama(model_path=model, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                              flash_attn=False, verbose=False)
    tokens = 0
    start, cpu = time.perf_counter(), time.process_time()
    for i, text in enumerate(texts):
        out = llm.create_completion(text, max_tokens=max_tokens, temperature=TEMPERATURE, top_p=TOP_P, seed=i)
        tokens += out["usage"]["completion_tokens"]
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    llm.close()
    return tokens, seconds, cpu


def batched(settings: Settings, batch: list[Prompt], share_prefix: bool = True) -> tuple[int, float, Timings]:
    backend = LlamaCppBackend(settings, share_prefix=share_prefix)
    cpu = time.process_time()
    tokens = sum(c.completion_tokens for _, c in backend.generate(batch))
    cpu = time.process_time() - cpu
    backend.close()
    return tokens, cpu, backend.timings


def windowed(backend: LlamaCppBackend, batch: list[Prompt], window: int) -> tuple[int, float, float]:
    """Completion tokens, seconds and slot occupancy with the prompts sent a window per ``generate`` call:
    every window's drain counts, but not the last one's, after which the queue is empty."""
    tokens, seconds, rounds, decoded = 0, 0.0, 0, 0
    for start in range(0, len(batch), window):
        tokens += sum(c.completion_tokens for _, c in backend.generate(batch[start : start + window]))
        t = backend.timings
        seconds += t.wall
        last = start + window >= len(batch)
        rounds += t.queued_rounds if last else t.rounds
        decoded += t.queued_decoded if last else t.decoded
    return tokens, seconds, decoded / (rounds * t.slots)


def streamed(backend: LlamaCppBackend, batch: list[Prompt], slots: int) -> tuple[int, float, float]:
    fed = iter(enumerate(batch))
    tokens = sum(c.completion_tokens for _, c in backend.stream(lambda: next(fed, None), slots))
    return tokens, backend.timings.wall, backend.timings.occupancy


def occupancy(settings: Settings, texts: list[str], max_tokens: int, repeats: int) -> None:
    size = settings.batch_size
    batch = [replace(p, stop=["\n\n"]) for p in sampled(texts, max_tokens)]
    print(f"\nslot occupancy: {len(batch)} prompts, max_tokens {max_tokens}, stop at a blank line, batch {size}")
    print(f"{'driving':<34}{'tokens':>7}{'seconds':>9}{'tok/s':>8}{'occupancy':>11}")
    backend = LlamaCppBackend(settings)
    try:
        for _ in range(repeats):
            for label, (tokens, seconds, occupied) in [
                (f"windows of {size * 4} (generate)", windowed(backend, batch, size * 4)),
                ("one stream", streamed(backend, batch, size)),
            ]:
                print(f"{label:<34}{tokens:>7}{seconds:>9.1f}{tokens / seconds:>8.1f}{occupied:>11.1%}")
    finally:
        backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=32, help="number of prompts (default 32)")
    parser.add_argument("--max-tokens", type=int, default=64, help="completion tokens per prompt (default 64)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="llama.cpp threads")
    parser.add_argument("--batch-sizes", default="1,4,8,16,32", help="comma-separated (default 1,4,8,16,32)")
    parser.add_argument("--model", default=None, help="GGUF file (default: the bundled Gemma 3 270M)")
    parser.add_argument("--n-ctx", type=int, default=8192, help="context shared by the batched sequences")
    parser.add_argument("--occupancy-prompts", type=int, default=192, help="prompts of the occupancy part")
    parser.add_argument("--occupancy-batch", type=int, default=16, help="batch size of the occupancy part")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each driving in the occupancy part")
    parser.add_argument("--only-occupancy", action="store_true", help="skip parts 1-3")
    args = parser.parse_args()

    model = args.model or str(default_model_path())
    texts = prompts(args.prompts)
    batch = sampled(texts, args.max_tokens)
    print(f"model {os.path.basename(model)}, {args.prompts} prompts, max_tokens {args.max_tokens}, "
          f"threads {args.threads}, temperature {TEMPERATURE}, top_p {TOP_P}\n")

    if not args.only_occupancy:
        speeds(args, model, texts, batch)
    settings = Settings(model=model, batch_size=args.occupancy_batch, threads=args.threads, n_ctx=args.n_ctx)
    occupancy(settings, prompts(args.occupancy_prompts), args.max_tokens, args.repeats)


def speeds(args: argparse.Namespace, model: str, texts: list[str], batch: list[Prompt]) -> None:
    base_tokens, base_seconds, base_cpu = baseline(model, texts, args.max_tokens, args.threads, 2048)
    base_rate = base_tokens / base_seconds
    print(f"{'path':<34}{'tokens':>7}{'seconds':>9}{'tok/s':>8}{'speed-up':>10}{'tok/cpu-s':>11}"
          f"{'sampling':>10}{'python':>8}")
    print(f"{'Llama.create_completion (1 by 1)':<34}{base_tokens:>7}{base_seconds:>9.1f}{base_rate:>8.1f}"
          f"{'1.00x':>10}{base_tokens / base_cpu:>11.1f}")
    for size in (int(s) for s in args.batch_sizes.split(",")):
        settings = Settings(model=model, batch_size=size, threads=args.threads, n_ctx=args.n_ctx)
        tokens, cpu, t = batched(settings, batch)
        rate = tokens / t.wall
        print(f"{f'LlamaCppBackend batch {size}':<34}{tokens:>7}{t.wall:>9.1f}{rate:>8.1f}"
              f"{f'{rate / base_rate:.2f}x':>10}{tokens / cpu:>11.1f}{t.sampling / t.wall:>10.1%}"
              f"{1 - (t.decode + t.sampling) / t.wall:>8.1%}")

    size = min(16, args.prompts)
    print(f"\nprompt phase: {size} prompts, max_tokens 1, batch {size}")
    print(f"{'prefix sharing':<34}{'prompt tokens evaluated':>24}{'seconds':>9}{'cpu s':>8}")
    settings = Settings(model=model, batch_size=size, threads=args.threads, n_ctx=args.n_ctx)
    for share in (False, True):
        _, cpu, t = batched(settings, sampled(texts[:size], 1), share_prefix=share)
        print(f"{'on' if share else 'off':<34}{t.prompt_tokens:>24}{t.wall:>9.2f}{cpu:>8.2f}")


if __name__ == "__main__":
    main()
