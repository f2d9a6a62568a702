"""Settings: command-line flags, then ``PERSONAHUB_*`` environment variables, then ``personahub.toml``.

``Settings`` holds what every run has (store, backend and executor names, batch size, sampling). What
belongs to one backend or executor (llama.cpp's context size, a server's URL, a Ray address...) it
declares as its own ``Options`` model; its values come from the same three places under the same names
(on the command line as ``-o name=value``), and are validated by ``resolve_options`` when the command
has chosen the backend and the executor. A task's own options come from the same places too, under
``PERSONAHUB_<TASK>__<OPTION>`` and a ``[tasks.<task>]`` table (``task_option_sources``).
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .errors import PersonaHubError, UsageError


class NoOptions(BaseModel):
    """The options of a task or backend that has none: any option given is an error."""

    model_config = ConfigDict(extra="forbid")


class SettingsError(PersonaHubError):
    """Invalid settings: one line naming the file or variable and the field. A usage error."""

    exit_code = 2


def config_file() -> Path:
    return Path(os.environ.get("PERSONAHUB_CONFIG", "personahub.toml"))


SIZE = re.compile(r"(?i)\d+(\.\d+)?\s*(kb|mb|gb|tb|kib|mib|gib|tib)")


class Settings(BaseSettings):
    # Extra keys are a backend's or executor's options given directly (-o, or a command's resolved copy).
    # Keys in personahub.toml that are no setting here stay in the file until one of them asks for them.
    model_config = SettingsConfigDict(env_prefix="PERSONAHUB_", extra="allow")

    db: Path = Field(Path("personahub.duckdb"), description="DuckDB store")
    # Any backend or executor a plugin registered: checked against the registry where a run builds it.
    backend: str = Field("llama-cpp", min_length=1, description="LLM backend: llama-cpp, openai, fake or one a plugin registered")
    model: str | None = Field(None, description="GGUF path, or model name for --backend openai (default: bundled Gemma 3 270M)")
    embedding_model: str | None = Field(None, description="embedding model: a GGUF path or a served model's name (default: the shipped all-MiniLM-L6-v2)")
    executor: str = Field("local", min_length=1, description="where the work runs: local, ray or one a plugin registered")
    batch_size: int = Field(16, ge=1, le=512, description="sequences decoded together / requests in flight")
    max_tokens: int | None = Field(None, ge=1, description="cap on completion tokens per call (default: the task's)")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="sampling temperature")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="nucleus sampling")
    seed: int = Field(0, ge=0, description="base seed; each work item derives its own from it")
    cache: bool = Field(True, description="reuse earlier completions for identical calls")
    memory_limit: str | None = Field(None, description="DuckDB's memory for the store during a run, e.g. 1GB "
                                                 "(default: what its key indexes need plus 64MiB of cache)")

    @field_validator("memory_limit")
    @classmethod
    def _a_size(cls, value: str | None) -> str | None:
        if value is not None and not SIZE.fullmatch(value.strip()):
            raise ValueError("expected a size such as 512MB or 2GB")
        return value and value.strip()

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
        """The settings (and a backend's options they carry) as runs record them: no key, no URL credentials."""
        return public_values(self.model_dump(mode="json"))


def public_values(values: dict[str, Any]) -> dict[str, Any]:
    """Values fit to show or store: an API key masked, credentials taken out of URLs."""
    values = {k: redact_url(v) if isinstance(v, str) else v for k, v in values.items()}
    if values.get("api_key"):
        values["api_key"] = "***"
    return values


class ConfigFile(TomlConfigSettingsSource):
    """``personahub.toml``: top-level keys or a ``[personahub]`` table; ``batch-size`` means ``batch_size``.
    As a source of ``Settings`` it gives only their fields; ``toml_values`` has every key."""

    def __init__(self, settings_cls: type[BaseSettings], toml_file: Path):
        self.fields = settings_cls.model_fields
        super().__init__(settings_cls, toml_file)

    def _read_file(self, file_path: Path) -> dict[str, Any]:
        return {k: v for k, v in toml_values(file_path).items() if k in self.fields}


def toml_values(path: Path) -> dict[str, Any]:
    """Every key of the config file (an empty dict when there is none)."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8")) if Path(path).is_file() else {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read: {exc.strerror}") from None
    section = data.get("personahub", data)
    if not isinstance(section, dict):
        raise SettingsError(f"{path}: [personahub] must be a table")
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
    """Build settings from flags (None means unset), the environment and ``personahub.toml``. Flags that
    are a backend's options (``n_ctx``, ``base_url``...) are kept for ``resolve_options``."""
    layers = _layers(flags)
    try:
        return Settings(**layers[0][1])
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else "settings"
        origin = next((o for o, values in layers if name in values), "settings")
        raise SettingsError(one_line(err, name, origin)) from None


def _option_layers(settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    """Where a backend's options come from, highest priority first: given directly (flags), the
    environment, the config file."""
    path = config_file()
    layers = [("flag", dict(settings.model_extra or {}))]
    layers += [(f"env {name}", {name.lower()[len("personahub_"):]: value}) for name, value in os.environ.items()
               if name.lower().startswith("personahub_")]
    layers.append((str(path), {k: v for k, v in toml_values(path).items() if k not in Settings.model_fields}))
    return layers


def resolve_options(options_cls: type[BaseModel], settings: Settings) -> tuple[BaseModel, dict[str, str]]:
    """A backend's or executor's options, validated, and where each value came from (flag, env VARIABLE, the file,
    default). A bad value is a one-line SettingsError naming the setting and its source."""
    layers = _option_layers(settings)
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for name in options_cls.model_fields:
        origin, value = next(((o, layer[name]) for o, layer in layers if name in layer), ("default", None))
        origins[name] = origin
        if origin != "default":
            values[name] = value
    try:
        return options_cls(**values), origins
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else "settings"
        raise SettingsError(one_line(err, name, origins.get(name, "settings"))) from None


def with_options(settings: Settings, *options: BaseModel) -> Settings:
    """A copy of the settings carrying exactly these validated options (the backend's, the executor's):
    what a run records and hands down (a Ray actor builds its backend from it, without this process's
    environment)."""
    copy = settings.model_copy()
    copy.__pydantic_extra__ = {k: v for model in options for k, v in model.model_dump().items()}
    return copy


def dash_o_options(given: list[str], **aliases: Any) -> dict[str, Any]:
    """``-o NAME=VALUE`` words as options by name (typed later, by the chosen backend's or executor's
    ``Options``), with the short forms' values; ``-o`` wins where both name one."""
    options = {name: value for name, value in aliases.items() if value is not None}
    for word in given:
        name, sep, value = word.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise UsageError(f"-o {word}: expected NAME=VALUE, e.g. -o n_ctx=4096")
        if name in Settings.model_fields:  # every run has it: it has its own flag
            raise UsageError(f"-o {word}: {name} is a setting, not a backend's or executor's option; "
                             f"give it as --{name.replace('_', '-')}")
        options[name] = value
    return options


def check_known(settings: Settings, option_names: set[str]) -> None:
    """Flags and config-file keys that are neither a setting nor an option of an installed backend or
    executor. The file's ``tasks`` table holds tasks' options (``task_option_sources`` checks them)."""
    path = config_file()
    in_file = {k: v for k, v in toml_values(path).items() if k != "tasks"}
    for origin, values in (("flag", settings.model_extra or {}), (str(path), in_file)):
        for name in values:
            if name not in Settings.model_fields and name not in option_names:
                raise SettingsError(one_line({"type": "extra_forbidden"}, name, origin))


def url_with_host(url: str | None) -> str | None:
    """A validator for server URLs: http(s), with a host."""
    if url is None:
        return url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected http://HOST[:PORT]/PATH or https://...")
    return url


def one_line(err: dict, name: str, origin: str) -> str:
    if origin.startswith("env "):
        where, field = "environment", origin[4:]
    elif origin == "flag":
        where, field = "flag", "--" + name.replace("_", "-")
    else:
        where, field = origin, name
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown setting '{field}'"
    return f"{where}: {field}: {err['msg']} (got {redact(str(err.get('input')))!r})"


# Up to the last "@" before the path: a password may hold an "@" of its own.
_URL_CREDENTIALS = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/\s?#]*@", re.I)
# A key in a URL's query (Azure's ?api-key=, Google's ?key=, ?token=...).
_QUERY_SECRET = re.compile(r"([?&](?:api[_-]?key|key|access[_-]?token|token|secret|password|sig|signature)=)[^&#\s\"',;:)]+", re.I)
_SECRETS = [
    (re.compile(r"(\bBearer\s+)[^\s\"',]+", re.I), r"\1***"),
    (re.compile(r"\b(sk|pk|rk|hf|ghp|gho|xox[abp])[-_][A-Za-z0-9_\-]{6,}"), r"\1-***"),
    (re.compile(r"((?:api[_-]?key|access[_-]?token|token|secret|password|authorization)[\\\"']*\s*[:=]\s*[\\\"']*)"
                r"[^\s\\\"'&,;}]+", re.I), r"\1***"),
]


def redact_url(url: str | None) -> str | None:
    """``http://user:secret@host/v1?api-key=K`` -> ``http://***@host/v1?api-key=***``."""
    return None if url is None else _QUERY_SECRET.sub(r"\1***", _URL_CREDENTIALS.sub(r"\1***@", url))


def redact(text: str, *secrets: str | None) -> str:
    """Mask credentials in text that may be shown or stored: URL user info, bearer tokens, API keys."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    text = redact_url(text)
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text
