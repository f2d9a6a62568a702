"""PersonaHub: personas from text, synthetic data from personas. The small core."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("personahub")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
