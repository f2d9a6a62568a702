"""Settings: command-line flags, then ``PERSONAHUB_*`` environment variables, then ``personahub.toml``."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .errors import PersonaHubError


class SettingsError(PersonaHubError):
    """Invalid settings: one line naming the file or variable and the field. A usage error."""

    exit_code = 2


def config_file() -> Path:
    return Path(os.environ.get("PERSONAHUB_CONFIG", "personahub.toml"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PERSONAHUB_", extra="forbid")

    db: Path = Field(Path("personahub.duckdb"), description="DuckDB store")
    # Any backend or executor a plugin registered: checked against the registry where a run builds it.
    backend: str = Field("llama-cpp", min_length=1, description="LLM backend: llama-cpp, openai, fake or one a plugin registered")
    model: str | None = Field(None, description="GGUF path, or model name for --backend openai (default: bundled Gemma 3 270M)")
    base_url: str | None = Field(None, description="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    api_key: str | None = Field(None, description="API key for --backend openai (else OPENAI_API_KEY)")
    openai_chat: bool = Field(True, description="--backend openai: chat endpoint (false: /completions with few-shot prompts)")
    embedding_model: str | None = Field(None, description="model for embeddings (default: the generation model)")
    executor: str = Field("local", min_length=1, description="where the work runs: local, ray or one a plugin registered")
    ray_address: str | None = Field(None, description="Ray cluster address (default: start a local Ray)")
    ray_shards: str | None = Field(None, description="folder or URI for the Ray actors' Parquet shards (default: <db>.shards)")
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

    @field_validator("base_url")
    @classmethod
    def _url_with_host(cls, url: str | None) -> str | None:
        if url is None:
            return url
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected http://HOST[:PORT]/PATH or https://...")
        return url

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Earlier sources win: flags (init), then PERSONAHUB_* in any case, then the TOML file.
        return (init_settings, env_settings, ConfigFile(settings_cls, config_file()))

    def public(self) -> dict[str, Any]:
        """The settings as runs record them and ``config`` shows them: no key, no URL credentials."""
        values = {k: redact_url(v) if isinstance(v, str) else v for k, v in self.model_dump(mode="json").items()}
        if values.get("api_key"):
            values["api_key"] = "***"
        return values


class ConfigFile(TomlConfigSettingsSource):
    """``personahub.toml``: top-level keys or a ``[personahub]`` table; ``batch-size`` means ``batch_size``."""

    def _read_file(self, file_path: Path) -> dict[str, Any]:
        try:
            data = super()._read_file(file_path)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SettingsError(f"{file_path}: invalid TOML: {exc}") from None
        except OSError as exc:
            raise SettingsError(f"{file_path}: cannot read: {exc.strerror}") from None
        section = data.get("personahub", data)
        if not isinstance(section, dict):
            raise SettingsError(f"{file_path}: [personahub] must be a table")
        return {k.replace("-", "_"): v for k, v in section.items()}


def _layers(flags: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Each source with the values it gives, highest priority first, as pydantic-settings reads them."""
    given = {k: v for k, v in flags.items() if v is not None}
    env = EnvSettingsSource(Settings)()
    env_names = {name.lower(): name for name in os.environ}
    path = config_file()
    layers = [("flag", given)]
    layers += [(f"env {env_names.get(f'personahub_{k}', f'PERSONAHUB_{k.upper()}')}", {k: v}) for k, v in env.items()]
    layers.append((str(path), ConfigFile(Settings, path)()))
    return layers


def settings_origins(**flags: Any) -> dict[str, str]:
    """Where each effective value came from: flag, env VARIABLE, the TOML file, or default."""
    layers = _layers(flags)
    return {name: next((origin for origin, values in layers if name in values), "default")
            for name in Settings.model_fields}


def load_settings(**flags: Any) -> Settings:
    """Build settings from flags (None means unset), the environment and ``personahub.toml``."""
    layers = _layers(flags)
    try:
        return Settings(**layers[0][1])
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else "settings"
        origin = next((o for o, values in layers if name in values), "settings")
        raise SettingsError(_one_line(err, name, origin)) from None


def _one_line(err: dict, name: str, origin: str) -> str:
    if origin.startswith("env "):
        where, field = "environment", origin[4:]
    elif origin == "flag":
        where, field = "flag", "--" + name.replace("_", "-")
    else:
        where, field = origin, name
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown setting '{field}'"
    return f"{where}: {field}: {err['msg']} (got {redact(str(err.get('input')))!r})"


_URL_CREDENTIALS = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/\s@]+@", re.I)
_SECRETS = [
    (re.compile(r"(\bBearer\s+)[^\s\"',]+", re.I), r"\1***"),
    (re.compile(r"\b(sk|pk|rk|hf|ghp|gho|xox[abp])[-_][A-Za-z0-9_\-]{6,}"), r"\1-***"),
    (re.compile(r"((?:api[_-]?key|access[_-]?token|token|secret|password|authorization)[\\\"']*\s*[:=]\s*[\\\"']*)"
                r"[^\s\\\"'&,;}]+", re.I), r"\1***"),
]


def redact_url(url: str | None) -> str | None:
    """``http://user:secret@host/v1`` -> ``http://***@host/v1``."""
    return None if url is None else _URL_CREDENTIALS.sub(r"\1***@", url)


def redact(text: str, *secrets: str | None) -> str:
    """Mask credentials in text that may be shown or stored: URL user info, bearer tokens, API keys."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    text = _URL_CREDENTIALS.sub(r"\1***@", text)
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text
