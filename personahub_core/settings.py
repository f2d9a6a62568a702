"""Settings: command-line flags, then ``PERSONAHUB_*`` environment variables, then ``personahub.toml``."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .errors import PersonaHubError


class SettingsError(PersonaHubError):
    """Invalid settings: one line naming the file or variable and the field."""


def config_file() -> Path:
    return Path(os.environ.get("PERSONAHUB_CONFIG", "personahub.toml"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PERSONAHUB_", extra="forbid")

    db: Path = Field(Path("personahub.duckdb"), description="DuckDB store")
    backend: Literal["llama-cpp", "openai", "fake"] = Field("llama-cpp", description="LLM backend")
    model: str | None = Field(None, description="GGUF path, or model name for --backend openai (default: bundled Gemma 3 270M)")
    base_url: str | None = Field(None, description="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    api_key: str | None = Field(None, description="API key for --backend openai (else OPENAI_API_KEY)")
    openai_chat: bool = Field(True, description="--backend openai: chat endpoint (false: /completions with few-shot prompts)")
    embedding_model: str | None = Field(None, description="model for embeddings (default: the generation model)")
    executor: Literal["local", "ray"] = Field("local", description="where the work runs")
    ray_address: str | None = Field(None, description="Ray cluster address (default: start a local Ray)")
    batch_size: int = Field(16, ge=1, le=512, description="sequences decoded together / requests in flight")
    max_tokens: int | None = Field(None, ge=1, description="cap on completion tokens per call (default: the task's)")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="sampling temperature")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="nucleus sampling")
    seed: int = Field(0, ge=0, description="base seed; each work item derives its own from it")
    # 8192 lets 16 NPC-sized requests (a ~1,000-token shared world prefix plus 300 tokens each) decode
    # together; at 4096 only half of them fit. It costs 150 MB of KV cache with the default model.
    n_ctx: int = Field(8192, ge=256, description="llama.cpp context size shared by all parallel sequences")
    threads: int | None = Field(None, ge=1, description="llama.cpp threads (default: all cores)")
    n_gpu_layers: int = Field(0, description="layers offloaded to the GPU (-1 = all) for GPU builds")
    request_timeout: float = Field(120.0, gt=0, description="HTTP timeout per request, seconds")
    max_retries: int = Field(5, ge=0, description="HTTP retries on 429 / 5xx / timeouts")
    cache: bool = Field(True, description="reuse earlier completions for identical calls")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read: {exc.strerror}") from None
    # Either top-level keys or a [personahub] table.
    section = data.get("personahub", data)
    if not isinstance(section, dict):
        raise SettingsError(f"{path}: [personahub] must be a table")
    return {k.replace("-", "_"): v for k, v in section.items()}


def _env_values() -> dict[str, str]:
    names = {f"PERSONAHUB_{name.upper()}": name for name in Settings.model_fields}
    return {names[k]: v for k, v in os.environ.items() if k in names}


def load_settings(**flags: Any) -> Settings:
    """Build settings from flags (None means unset), the environment and ``personahub.toml``."""
    given = {k: v for k, v in flags.items() if v is not None}
    path = config_file()
    from_file = _read_toml(path)
    env = _env_values()
    # The file is the lowest layer: drop its keys that env or flags override.
    file_layer = {k: v for k, v in from_file.items() if k not in given and k not in env}
    try:
        Settings.model_validate({**file_layer})  # validate the file on its own for a clear origin
    except ValidationError as exc:
        raise SettingsError(_one_line(exc, str(path))) from None
    try:
        return Settings(**file_layer, **given)
    except ValidationError as exc:
        origin = "flag" if any(e["loc"] and e["loc"][0] in given for e in exc.errors()) else "environment"
        raise SettingsError(_one_line(exc, origin, env_prefix=origin == "environment")) from None


def settings_origins(**flags: Any) -> dict[str, str]:
    """Where each effective value came from: flag, env, file or default."""
    given = {k for k, v in flags.items() if v is not None}
    env = set(_env_values())
    from_file = set(_read_toml(config_file()))
    origins = {}
    for name in Settings.model_fields:
        if name in given:
            origins[name] = "flag"
        elif name in env:
            origins[name] = f"env PERSONAHUB_{name.upper()}"
        elif name in from_file:
            origins[name] = str(config_file())
        else:
            origins[name] = "default"
    return origins


def _one_line(exc: ValidationError, where: str, env_prefix: bool = False) -> str:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "settings"
    if env_prefix:
        field = f"PERSONAHUB_{field.upper()}"
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown setting '{field}'"
    return f"{where}: {field}: {err['msg']} (got {err.get('input')!r})"
