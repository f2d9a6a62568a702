"""llama.cpp backend for GGUF files: many sequences decoded together in one context.

One llama.cpp context holds up to ``batch_size`` sequences in a unified KV cache. Each ``llama_decode``
advances every active sequence by one token and prefills newly admitted ones; a finished sequence is
yielded at once and its slot refilled from the caller's feed in the next round, so a run's prompts (and
the next steps of multi-step items) stream through the slots with no barrier. The few-shot prefix that
the first prompts of a stream share is evaluated once into a spare sequence and copied into each new
prompt that starts with it (in a unified cache the copy only tags cells), so each prompt prefills just
its own suffix. Prompts that share a longer head among
themselves (one text asked about from several perspectives) evaluate it once too: in the same decode
when admitted together, by copying cells when one of them is already evaluated or has just finished.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from pydantic import BaseModel, Field

from personahub_core.backends.base import Backend, BackendError, Completion, ModelInfo, Prompt
from personahub_core.models import default_model_path
from personahub_core.settings import Settings

if TYPE_CHECKING:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

N_BATCH = 512  # tokens per llama_decode call: all decoding sequences plus prefill chunks
MIN_SHARED_PREFIX = 16  # a shorter common prefix is not worth sharing
EMBED_CTX = 256  # tokens per embedding decode (its logits buffer is n_vocab x this); longer texts are truncated
EMBED_SEQS = 64  # texts per embedding decode
TAIL_CUTOFF = 1e-5  # a token less likely than this times the likeliest one is never sampled
GREEDY_SHORTLIST = 64  # greedy decoding: tokens the grammar vets before a full pass on rejection

_errors: deque[str] = deque(maxlen=3)

# llama_cpp (it loads the llama.cpp library) and numpy are imported when the first backend is built, so
# that listing plugins, --help and commands that never generate start without them.
lc = np = None
_log_callback = None  # the C callback wrapping _log, kept alive while llama.cpp holds it
_TOKEN_DATA = None  # numpy's view of llama_token_data


def _load_llama() -> None:
    global lc, np, _log_callback, _TOKEN_DATA
    if lc is not None:
        return
    import llama_cpp
    import numpy

    lc, np = llama_cpp, numpy
    _TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
    _log_callback = lc.llama_log_callback(_log)
    lc.llama_log_set(_log_callback, ctypes.c_void_p(0))
    lc.llama_backend_init()


def _log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    # llama.cpp narrates every load step on stderr; keep only errors, to explain a failure in one line.
    if level == 3:  # GGML_LOG_LEVEL_ERROR
        _errors.append(text.decode("utf-8", "replace").strip())


def _last_error() -> str:
    return f": {_errors[-1]}" if _errors else ""


@dataclass
class Timings:
    """Where the last stream (or ``generate`` call) spent its time, and how full it kept its slots
    (benchmarks and run summaries read this)."""

    wall: float = 0.0  # the whole stream
    decode: float = 0.0  # inside llama_decode
    sampling: float = 0.0  # numpy's tail cut and llama.cpp's samplers
    prompt_tokens: int = 0  # prompt tokens evaluated (a shared prefix counts once)
    completion_tokens: int = 0
    slots: int = 0  # sequences the stream may decode together
    rounds: int = 0  # decode rounds: each advances every active sequence by one token
    decoded: int = 0  # active sequences, summed over the rounds
    queued_rounds: int = 0  # rounds up to the last admission, while prompts kept coming
    queued_decoded: int = 0  # active sequences, summed over those rounds

    @property
    def occupancy(self) -> float | None:
        """Mean active sequences / slots until the last prompt was admitted: the drain once the feed has
        nothing more is left out. None when nothing was decoded."""
        return self.queued_decoded / (self.queued_rounds * self.slots) if self.queued_rounds else None


class _Batch:
    """A llama_batch filled in place; a token usually belongs to one sequence, a shared one to several."""

    def __init__(self, capacity: int, max_seqs: int = 1) -> None:
        self.raw = lc.llama_batch_init(capacity, 0, max_seqs)
        self.capacity = capacity
        self.n = 0
        self._seq_rows = [self.raw.seq_id[i] for i in range(capacity)]
        self._token, self._pos, self._output = self.raw.token, self.raw.pos, self.raw.logits
        self._n_seq = self.raw.n_seq_id

    def add(self, token: int, pos: int, seq: int, output: bool, also: Sequence[int] = ()) -> None:
        n = self.n
        self._token[n] = token
        self._pos[n] = pos
        row = self._seq_rows[n]
        row[0] = seq
        for k, other in enumerate(also, 1):
            row[k] = other
        self._n_seq[n] = 1 + len(also)
        self._output[n] = output
        self.n = n + 1

    def decode(self, ctx: lc.llama_context_p) -> None:
        self.raw.n_tokens = self.n
        self.n = 0
        rc = lc.llama_decode(ctx, self.raw)
        if rc != 0:
            raise BackendError(f"llama_decode failed (code {rc}){_last_error()}")

    def free(self) -> None:
        lc.llama_batch_free(self.raw)


_LOG_TAIL_CUTOFF = math.log(TAIL_CUTOFF)


class _Candidates:
    """Tokens with their logits as a llama_token_data array, which llama.cpp samplers edit in place."""

    def __init__(self, ids: np.ndarray, logits: np.ndarray) -> None:
        self.data = np.empty(len(ids), _TOKEN_DATA)
        self.data["id"], self.data["logit"], self.data["p"] = ids, logits, 0.0
        self.array = lc.llama_token_data_array(
            data=self.data.ctypes.data_as(lc.llama_token_data_p), size=len(ids), selected=-1, sorted=False
        )

    def selected(self) -> int:
        return int(self.data["id"][self.array.selected])


class _Sampler:
    """One prompt's sampling: temperature, nucleus, seed, and optionally a grammar.

    llama_sampler_sample copies all 262k logits into a candidate array before any sampler runs, and its
    top_p sorts them: 2-20 ms a token. Here numpy first keeps only the tokens within TAIL_CUTOFF of the
    likeliest one at this temperature (a min_p cut; the tail it drops held under 1% of the mass at
    temperature 1 on this model, so a 0.95 nucleus is practically unchanged), and the llama.cpp chain
    (temperature, top_p, dist with the prompt's seed) runs on those few: ~0.4 ms a token. Greedy
    decoding is an argmax.

    A grammar pass over the whole vocabulary costs ~60 ms, so a grammar only vets the proposed token;
    on rejection it filters the tail-cut shortlist, and the full pass runs only when nothing there is
    allowed. Drawing from p and redrawing from p restricted to the grammar on rejection gives the same
    distribution as the grammar applied first (up to where the nucleus is cut), and the same token for
    greedy decoding.
    """

    def __init__(self, vocab: lc.llama_vocab_p, prompt: Prompt, grammar: str | None) -> None:
        self.temperature = prompt.temperature
        self.chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        if self.temperature <= 0:
            self._add(lc.llama_sampler_init_greedy())  # only for the full grammar pass
        else:
            self._add(lc.llama_sampler_init_temp(self.temperature))  # temperature first, as in HF/OpenAI
            self._add(lc.llama_sampler_init_top_p(prompt.top_p, 1))
            self._add(lc.llama_sampler_init_dist(prompt.seed & 0xFFFFFFFF))
        self.grammar = None
        if grammar is not None:
            self.grammar = lc.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
            if not self.grammar:
                self.free()
                raise ValueError(f"llama.cpp rejected the grammar built from the JSON schema{_last_error()}")
            self._one = _Candidates(np.zeros(1, dtype=np.int32), np.zeros(1, dtype=np.float32))  # reused per token

    def _add(self, sampler: lc.llama_sampler_p) -> None:
        lc.llama_sampler_chain_add(self.chain, sampler)

    def sample(self, logits: np.ndarray) -> int:
        if self.temperature <= 0:
            token, shortlist = int(logits.argmax()), None
        else:
            shortlist = np.flatnonzero(logits >= logits.max() + self.temperature * _LOG_TAIL_CUTOFF)
            token = self._draw(_Candidates(shortlist, logits[shortlist]))
        if self.grammar is not None:
            if not self._allowed(token):
                token = self._redraw_under_grammar(logits, shortlist)
            lc.llama_sampler_accept(self.grammar, token)
        return token

    def _redraw_under_grammar(self, logits: np.ndarray, shortlist: np.ndarray | None) -> int:
        """Draw again among the tokens the grammar allows: from the shortlist when it holds any (a few
        hundred tokens: ~1 ms), else from the whole vocabulary (~60 ms)."""
        if shortlist is None:  # greedy: the likeliest allowed token is usually among the top few
            shortlist = np.argpartition(logits, -GREEDY_SHORTLIST)[-GREEDY_SHORTLIST:].astype(np.int32)
        candidates = _Candidates(shortlist, logits[shortlist])
        lc.llama_sampler_apply(self.grammar, ctypes.byref(candidates.array))
        if not np.isinf(candidates.data["logit"]).all():
            return self._draw(candidates)
        everything = _Candidates(np.arange(len(logits), dtype=np.int32), logits)
        lc.llama_sampler_apply(self.grammar, ctypes.byref(everything.array))
        return self._draw(everything)

    def _draw(self, candidates: _Candidates) -> int:
        lc.llama_sampler_apply(self.chain, ctypes.byref(candidates.array))
        token = candidates.selected()
        lc.llama_sampler_accept(self.chain, token)
        return token

    def _allowed(self, token: int) -> bool:
        one = self._one
        one.data["id"], one.data["logit"] = token, 0.0
        lc.llama_sampler_apply(self.grammar, ctypes.byref(one.array))
        return not math.isinf(one.data["logit"][0])

    def free(self) -> None:
        lc.llama_sampler_free(self.chain)
        if self.grammar:
            lc.llama_sampler_free(self.grammar)


@dataclass(eq=False)
class _Seq:
    ticket: Any  # the caller's name for the prompt
    slot: int  # llama.cpp sequence id
    sampler: _Sampler
    prompt: list[int]
    pending: list[int]  # tokens to evaluate next: the prompt suffix, then the last sampled token
    pos: int  # position of pending[0]
    limit: int  # completion tokens allowed
    cells: int  # KV cells reserved: suffix + limit
    stops: list[bytes]
    text: bytearray = field(default_factory=bytearray)
    n_out: int = 0
    cut: int = -1  # where a stop string starts in text
    finish: str = ""  # "stop" | "length" once done
    # Sequences admitted with this one that share the head of its prompt: (slot, end position). Its prompt
    # tokens before that end are evaluated for them too, then the list is emptied.
    followers: list[tuple[int, int]] = field(default_factory=list)

    def result(self) -> Completion:
        text = self.text[: self.cut] if self.cut >= 0 else self.text
        return Completion(
            text=text.decode("utf-8", "ignore"),  # "ignore": a length cut can split a character
            prompt_tokens=len(self.prompt),
            completion_tokens=self.n_out,
            finish_reason=self.finish,
        )


def _failed(error: str, prompt_tokens: int = 0) -> Completion:
    return Completion(text="", prompt_tokens=prompt_tokens, finish_reason="error", error=error)


def _model_path(settings: Settings) -> Path:
    return Path(settings.model).expanduser() if settings.model else default_model_path()


def _check_gguf(path: Path) -> None:
    if not path.is_file():
        raise BackendError(f"model file not found: {path}")
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise BackendError(f"cannot read model file {path}: {exc.strerror}") from None
    if magic != b"GGUF":
        raise BackendError(f"{path} is not a GGUF file")


class LlamaCppOptions(BaseModel):
    # 8192 lets 16 NPC-sized requests (a ~1,000-token shared world prefix plus 300 tokens each) decode
    # together; at 4096 only half of them fit. It costs 150 MB of KV cache with the default model.
    n_ctx: int = Field(8192, ge=256, description="llama.cpp context size shared by all parallel sequences")
    threads: int | None = Field(None, ge=1, description="llama.cpp threads (default: all cores)")
    n_gpu_layers: int = Field(0, ge=-1, description="layers offloaded to the GPU (-1 = all) for GPU builds")


class LlamaCppBackend(Backend):
    name = "llama-cpp"
    description = "GGUF models through llama.cpp, many sequences per decode (default: bundled Gemma 3 270M)"
    Options = LlamaCppOptions

    def __init__(self, settings: Settings, share_prefix: bool = True) -> None:
        options = self.options_from(settings)
        _load_llama()
        self.share_prefix = share_prefix
        self.path = _model_path(settings)
        _check_gguf(self.path)
        self.timings = Timings()
        self._threads = options.threads or len(os.sched_getaffinity(0))
        self._n_ctx_setting = options.n_ctx
        self._model = self._ctx = self._batch = self._embed_ctx = self._embed_batch = None

        params = lc.llama_model_default_params()
        params.n_gpu_layers = options.n_gpu_layers
        # Extra buffer types put weights in AMX or repacked layouts. llama-cpp-python built with GCC 12 on an
        # AMX CPU loads an empty tile configuration (the compiler drops its row and column stores) and dies
        # of SIGILL at the first AMX matmul. Plain kernels are safe everywhere.
        params.use_extra_bufts = False
        _errors.clear()
        self._model = lc.llama_model_load_from_file(str(self.path).encode(), params)
        if not self._model:
            raise BackendError(f"cannot load model {self.path}{_last_error()}")
        self._vocab = lc.llama_model_get_vocab(self._model)
        template = lc.llama_model_chat_template(self._model, None)
        self._template = template.decode("utf-8") if template else None
        self._chat_formatter: Jinja2ChatFormatter | None = None

        # One slot per parallel sequence, plus a spare sequence id that holds the shared prefix.
        self._requested = settings.batch_size
        self._slots = max(1, min(settings.batch_size, lc.llama_max_parallel_sequences() - 1))
        self._unsaid: list[str] = []  # notes for the user, said at the first generate() (on_note is set by then)
        if self._slots < settings.batch_size:
            self._unsaid.append(f"llama-cpp: --batch-size {settings.batch_size} lowered to {self._slots}: llama.cpp "
                                f"decodes at most {lc.llama_max_parallel_sequences()} sequences in one context, "
                                "one of which holds the shared prompt prefix")
        self._ctx = self._new_context(options.n_ctx, N_BATCH, self._slots + 1, embeddings=False)
        self._n_ctx = lc.llama_n_ctx(self._ctx)
        self._batch = _Batch(N_BATCH, self._slots + 1)
        self._n_vocab = lc.llama_vocab_n_tokens(self._vocab)
        self._pieces: dict[int, bytes] = {}
        self._grammars: dict[str, str] = {}
        self._generating = False
        self._said_kv = False  # the KV-cache note is said once per backend
        self._prefix: list[int] = []  # the tokens the spare sequence holds

    def _new_context(self, n_ctx: int, n_batch: int, n_seq: int, embeddings: bool) -> lc.llama_context_p:
        params = lc.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = params.n_ubatch = n_batch
        params.n_seq_max = n_seq
        # All sequences share the n_ctx cells: a long prompt may use most of them, and copying the
        # shared prefix to a sequence only tags cells instead of copying buffers.
        params.kv_unified = True
        params.n_threads = params.n_threads_batch = self._threads
        params.embeddings = embeddings
        if embeddings:
            params.pooling_type = lc.LLAMA_POOLING_TYPE_UNSPECIFIED  # what the model declares
        ctx = lc.llama_init_from_model(self._model, params)
        if not ctx:
            raise BackendError(f"cannot create a llama.cpp context of {n_ctx} tokens{_last_error()}")
        if embeddings and lc.llama_pooling_type(ctx) == lc.LLAMA_POOLING_TYPE_NONE:
            # A generation model declares no pooling: average its token states.
            lc.llama_free(ctx)
            params.pooling_type = lc.LLAMA_POOLING_TYPE_MEAN
            ctx = lc.llama_init_from_model(self._model, params)
            if not ctx:
                raise BackendError(f"cannot create a llama.cpp context of {n_ctx} tokens{_last_error()}")
        return ctx

    @classmethod
    def model_label(cls, settings: Settings) -> str:
        return _model_path(settings).stem

    def info(self) -> ModelInfo:
        return ModelInfo(name=self.path.stem, context_length=self._n_ctx, has_chat_template=self._template is not None)

    # -- generation

    def generate(self, prompts: list[Prompt]) -> Iterator[tuple[int, Completion]]:
        fed = iter(enumerate(prompts))
        yield from self.stream(lambda: next(fed, None), self._slots)

    def stream(self, feed: Callable[[], tuple[Any, Prompt] | None], slots: int) -> Iterator[tuple[Any, Completion]]:
        if self._generating:  # both would share (and clear) the one KV cache
            raise BackendError("a llama-cpp backend runs one stream at a time; use one backend per thread")
        self._generating = True
        for message in self._unsaid:
            self.note(message)
        self._unsaid = []
        try:
            yield from self._stream(feed, max(1, min(slots, self._slots)))
        finally:
            self._generating = False

    def _stream(self, feed: Callable[[], tuple[Any, Prompt] | None], slots: int) -> Iterator[tuple[Any, Completion]]:
        start = time.perf_counter()
        self.timings = t = Timings(slots=slots)
        mem = lc.llama_get_memory(self._ctx)
        held: deque[tuple[Any, Prompt, list[int]]] = deque()  # fed, waiting for a slot or for KV cells
        active: list[_Seq] = []
        try:
            free = list(range(slots - 1, -1, -1))
            finished: dict[int, list[int]] = {}  # slot -> prompt of a sequence that just ended, cells kept
            used = None  # KV cells reserved: the prefix, and each sequence its whole suffix, shared cells or not
            peak, kv_bound = 0, False  # most sequences decoded together; whether free slots waited for cells
            while True:
                yield from self._take(feed, held, len(free))
                if not held and not active:
                    break  # the feed has nothing more and nothing is in flight
                if used is None:  # the first prompts of the stream decide the prefix the spare sequence holds
                    self._hold_prefix(self._shared_prefix([tokens for _, _, tokens in held]))
                    used = len(self._prefix)
                fresh: list[_Seq] = []  # admitted this round; joins active after admission
                while held and free:
                    ticket, prompt, tokens = held[0]
                    shared = self._shares_prefix(tokens)
                    limit = max(1, min(prompt.max_tokens, self._n_ctx - len(tokens)))
                    cells = len(tokens) - shared + limit
                    if used + cells > self._n_ctx:
                        if active or fresh:
                            kv_bound = True
                            break  # wait for running sequences to free cells; FIFO keeps runs reproducible
                        self._hold_prefix([])  # alone it fits only without a prefix it does not share
                        used = 0
                        continue
                    held.popleft()
                    try:
                        sampler = _Sampler(self._vocab, prompt, self._grammar(prompt.json_schema))
                    except ValueError as exc:
                        yield ticket, _failed(str(exc), len(tokens))
                        continue
                    slot, ahead = self._place(tokens, shared, free, active, fresh, finished)
                    fresh.append(self._admit(ticket, prompt, sampler, tokens, slot, ahead, limit, cells))
                    used += cells
                for slot in finished:
                    lc.llama_memory_seq_rm(mem, slot, -1, -1)
                finished.clear()
                active += fresh
                peak = max(peak, len(active))
                if not active:
                    continue  # every prompt taken failed on its own: ask the feed again
                self._step(active)
                t.rounds += 1
                t.decoded += len(active)
                if fresh:
                    t.queued_rounds, t.queued_decoded = t.rounds, t.decoded
                for seq in [s for s in active if s.finish]:
                    active.remove(seq)
                    seq.sampler.free()
                    finished[seq.slot] = seq.prompt
                    free.append(seq.slot)
                    used -= seq.cells
                    t.completion_tokens += seq.n_out
                    yield seq.ticket, seq.result()
            if kv_bound and peak < slots and not self._said_kv:
                self._said_kv = True
                self.note(f"llama-cpp: decoded at most {peak} sequences together, not --batch-size {self._requested}: "
                          f"their prompts and answers fill the {self._n_ctx}-token context (raise --n-ctx for more)")
        finally:
            for seq in active:
                seq.sampler.free()
            for slot in range(self._slots):  # the spare sequence keeps the prefix for the next stream
                lc.llama_memory_seq_rm(mem, slot, -1, -1)
            t.wall = time.perf_counter() - start

    def _take(
        self, feed: Callable[[], tuple[Any, Prompt] | None], held: deque[tuple[Any, Prompt, list[int]]], free: int
    ) -> Iterator[tuple[Any, Completion]]:
        """Ask the feed for prompts until each free slot has one or the feed has none now; tokenize them.
        A prompt that cannot be read fails here without taking a slot."""
        while len(held) < free and (fed := feed()) is not None:
            ticket, prompt = fed
            try:
                tokens = self._prompt_tokens(prompt)
            except Exception as exc:  # a chat template can raise anything from inside Jinja
                yield ticket, _failed(f"cannot format the chat messages: {exc}")
                continue
            if len(tokens) >= self._n_ctx:
                yield ticket, _failed(f"prompt is {len(tokens)} tokens, longer than the context of {self._n_ctx}",
                                      len(tokens))
            else:
                held.append((ticket, prompt, tokens))

    def _place(
        self,
        tokens: list[int],
        start: int,
        free: list[int],
        settled: list[_Seq],
        fresh: list[_Seq],
        finished: dict[int, list[int]],
    ) -> tuple[int, int]:
        """Take a free slot and give it the cells of the longest prompt head another sequence has or gets.

        Returns the slot and how many prompt tokens it need not evaluate. The first ``start`` tokens (the
        part of the stream's prefix this prompt shares) are in the spare sequence. An evaluated sequence
        (``settled``) lends its cells; one that just ended (``finished``: its slot is free, its cells kept
        until admission is over) hands over its slot; one admitted this round (``fresh``) evaluates its
        head for this one too.
        """
        mem = lc.llama_get_memory(self._ctx)
        shared, how, source = start, None, None
        if self.share_prefix:
            candidates = [(s.prompt, "copy", s) for s in settled]
            candidates += [(prompt, "take over", slot) for slot, prompt in finished.items()]
            candidates += [(s.prompt[:-1], "follow", s) for s in fresh if s.pos == start]  # its last token is its own
            for prompt, kind, candidate in candidates:
                common = min(len(os.path.commonprefix([prompt, tokens])), len(tokens) - 1)
                if common > shared:
                    shared, how, source = common, kind, candidate
            if shared < start + MIN_SHARED_PREFIX:
                shared, how, source = start, None, None
        if how == "take over":  # keep the shared head, drop the rest
            slot = source
            del finished[slot]
            lc.llama_memory_seq_rm(mem, slot, shared, -1)
        else:
            slot = next((s for s in reversed(free) if s not in finished), free[-1])
            if finished.pop(slot, None) is not None:
                lc.llama_memory_seq_rm(mem, slot, -1, -1)
            if how == "copy":
                lc.llama_memory_seq_cp(mem, source.slot, slot, -1, shared)
            else:
                if start:
                    lc.llama_memory_seq_cp(mem, self._slots, slot, -1, start)
                if how == "follow":
                    source.followers.append((slot, shared))
        free.remove(slot)
        return slot, shared

    def _admit(
        self, ticket: Any, prompt: Prompt, sampler: _Sampler, tokens: list[int], slot: int, shared: int,
        limit: int, cells: int,
    ) -> _Seq:
        self.timings.prompt_tokens += len(tokens) - shared
        stops = [s.encode("utf-8") for s in prompt.stop if s]
        return _Seq(ticket, slot, sampler, tokens, tokens[shared:], shared, limit, cells, stops)

    def _prompt_tokens(self, prompt: Prompt) -> list[int]:
        if self._template is None or not prompt.chat:
            return self._tokenize(prompt.completion, parse_special=False)
        tokens = self._tokenize(self._render_chat(prompt.chat), parse_special=True)
        bos = lc.llama_vocab_bos(self._vocab)
        if len(tokens) > 1 and tokens[0] == tokens[1] == bos:  # the template wrote its own BOS
            tokens = tokens[1:]
        return tokens

    def _render_chat(self, messages: list[dict]) -> str:
        if self._chat_formatter is None:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            self._chat_formatter = Jinja2ChatFormatter(
                template=self._template,
                eos_token=self._special_piece(lc.llama_vocab_eos(self._vocab)),
                bos_token=self._special_piece(lc.llama_vocab_bos(self._vocab)),
            )
        return self._chat_formatter(messages=messages).prompt

    def _shared_prefix(self, prompts: list[list[int]]) -> list[int]:
        """The head the first prompts of a stream share; a prompt alone keeps what it shares with the
        prefix held from the last stream."""
        if not self.share_prefix:
            return []
        # commonprefix compares element-wise, so it works on token lists as well as on strings.
        prefix = os.path.commonprefix(prompts if len(prompts) > 1 else [self._prefix, *prompts])
        prefix = prefix[: min(map(len, prompts)) - 1]  # every sequence needs one token of its own to sample from
        return prefix if len(prefix) >= MIN_SHARED_PREFIX else []

    def _shares_prefix(self, tokens: list[int]) -> int:
        """How many of the spare sequence's cells this prompt can copy: a prompt of another form (the next
        step of a multi-step item) may share only part of the prefix, or none of it."""
        shared = min(len(os.path.commonprefix([self._prefix, tokens])), len(tokens) - 1)
        return shared if shared >= MIN_SHARED_PREFIX else 0

    def _hold_prefix(self, prefix: list[int]) -> None:
        """Put the prefix in the spare sequence, reading only what the last stream's prefix did not have:
        a task's stages and a benchmark's repeated calls find it already there."""
        mem = lc.llama_get_memory(self._ctx)
        kept = len(os.path.commonprefix([self._prefix, prefix]))
        self._prefix = []  # until the spare sequence holds the new one in full
        lc.llama_memory_seq_rm(mem, self._slots, kept, -1)
        t = time.perf_counter()
        for pos in range(kept, len(prefix)):
            self._batch.add(prefix[pos], pos, self._slots, False)
            if self._batch.n == N_BATCH or pos == len(prefix) - 1:
                self._batch.decode(self._ctx)
        self.timings.decode += time.perf_counter() - t
        self.timings.prompt_tokens += len(prefix) - kept
        self._prefix = prefix

    def _step(self, active: list[_Seq]) -> None:
        """Evaluate each active sequence's pending tokens and sample its next token."""
        batch = self._batch
        outputs: list[_Seq] = []  # the sequences whose logits the next decode outputs, in batch order
        for seq in active:  # a sequence comes before its followers, so shared tokens are decoded first
            last = len(seq.pending) - 1
            for j, token in enumerate(seq.pending):
                if batch.n == N_BATCH:
                    self._decode_and_sample(outputs)
                    outputs = []
                if j == last:
                    outputs.append(seq)
                pos = seq.pos + j
                also = [slot for slot, end in seq.followers if pos < end] if seq.followers else ()
                batch.add(token, pos, seq.slot, j == last, also)
            seq.pos += len(seq.pending)
            seq.followers = []
        if batch.n:
            self._decode_and_sample(outputs)

    def _decode_and_sample(self, outputs: list[_Seq]) -> None:
        t0 = time.perf_counter()
        self._batch.decode(self._ctx)
        t1 = time.perf_counter()
        tokens = []
        if outputs:  # one row of logits per output, in batch order
            logits = np.ctypeslib.as_array(lc.llama_get_logits(self._ctx), shape=(len(outputs), self._n_vocab))
            tokens = [seq.sampler.sample(row) for seq, row in zip(outputs, logits)]
        t2 = time.perf_counter()
        self.timings.decode += t1 - t0
        self.timings.sampling += t2 - t1
        for seq, token in zip(outputs, tokens):
            self._accept(seq, token)

    def _accept(self, seq: _Seq, token: int) -> None:
        if lc.llama_vocab_is_eog(self._vocab, token):
            seq.finish = "stop"
            return
        seq.n_out += 1
        start = len(seq.text)
        seq.text += self._piece(token)
        for stop in seq.stops:
            at = seq.text.find(stop, max(0, start - len(stop) + 1))
            if at >= 0 and (seq.cut < 0 or at < seq.cut):
                seq.cut, seq.finish = at, "stop"
        if not seq.finish and seq.n_out >= seq.limit:
            seq.finish = "length"
        seq.pending = [token]

    def _grammar(self, schema: dict | None) -> str | None:
        if schema is None:
            return None
        key = json.dumps(schema)  # not sorted: property order is the order the grammar makes the model write
        if key not in self._grammars:
            from llama_cpp.llama_grammar import json_schema_to_gbnf

            try:
                self._grammars[key] = json_schema_to_gbnf(key)
            except Exception as exc:  # the converter raises bare Exceptions for unsupported schemas
                raise ValueError(f"cannot turn the JSON schema into a grammar: {exc}") from None
        return self._grammars[key]

    # -- tokens

    def _tokenize(self, text: str, parse_special: bool) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8  # a token covers at least one byte, plus BOS/EOS
        buf = (lc.llama_token * capacity)()
        n = lc.llama_tokenize(self._vocab, data, len(data), buf, capacity, True, parse_special)
        if n < 0:
            raise BackendError(f"cannot tokenize a text of {len(data)} bytes")
        return buf[:n]

    def _piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self._token_bytes(token, special=False)
        return piece

    def _special_piece(self, token: int) -> str:
        return self._token_bytes(token, special=True).decode("utf-8", "ignore") if token >= 0 else ""

    def _token_bytes(self, token: int, special: bool) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = lc.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = lc.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    # -- embeddings

    def embed(self, texts: list[str]) -> list[list[float]]:
        if self._embed_ctx is None:
            n_ctx = min(self._n_ctx_setting, EMBED_CTX)
            self._embed_ctx = self._new_context(n_ctx, n_ctx, EMBED_SEQS, embeddings=True)
            self._embed_batch = _Batch(n_ctx)
        ctx, batch = self._embed_ctx, self._embed_batch
        mem = lc.llama_get_memory(ctx)
        n_embd = lc.llama_model_n_embd_out(self._model)
        # A model that adds no BOS turns "" into no tokens, and a sequence needs one to be pooled.
        empty = [lc.llama_vocab_eos(self._vocab)]
        tokenized = [self._tokenize(text, parse_special=False)[: batch.capacity] or empty for text in texts]
        vectors: list[list[float]] = []
        done = 0
        while done < len(tokenized):
            group = 0
            while (
                done + group < len(tokenized)
                and group < EMBED_SEQS
                and batch.n + len(tokenized[done + group]) <= batch.capacity
            ):
                for pos, token in enumerate(tokenized[done + group]):
                    batch.add(token, pos, group, True)
                group += 1
            lc.llama_memory_clear(mem, False)
            batch.decode(ctx)
            for seq in range(group):
                vec = np.ctypeslib.as_array(lc.llama_get_embeddings_seq(ctx, seq), shape=(n_embd,)).astype(np.float64)
                norm = np.linalg.norm(vec)
                vectors.append((vec / norm if norm > 0 else vec).tolist())
            done += group
        return vectors

    def close(self) -> None:
        for batch in (self._batch, self._embed_batch):
            if batch is not None:
                batch.free()
        for ctx in (self._ctx, self._embed_ctx):
            if ctx is not None:
                lc.llama_free(ctx)
        if self._model is not None:
            lc.llama_model_free(self._model)
        self._model = self._ctx = self._batch = self._embed_ctx = self._embed_batch = None
