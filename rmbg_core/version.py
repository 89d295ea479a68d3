"""Package version, in one place for pyproject, the CLI and exported model cards."""

__version__ = "0.1.0"
