"""The core's own components, registered through the same hooks as any third-party plugin."""

from .hookspecs import hookimpl


@hookimpl
def register_backends(register):
    from .backends.llama_cpp import LlamaCppBackend
    from .backends.openai_http import OpenAIBackend
    from .backends.fake import FakeBackend

    register(LlamaCppBackend)
    register(OpenAIBackend)
    register(FakeBackend)


@hookimpl
def register_executors(register):
    from .executors import LocalExecutor
    from .ray_executor import RayExecutor  # imports ray itself only when built

    register(LocalExecutor)
    register(RayExecutor)


@hookimpl
def register_export_formats(register):
    from .export import CsvFormat, JsonlFormat, ParquetFormat
    from .hf import HfFormat  # imports pyarrow and yaml, and datasets only when it writes

    for cls in (JsonlFormat, ParquetFormat, CsvFormat, HfFormat):
        register(cls)
