"""User-facing errors. The CLI prints ``str(err)`` as one line and exits with ``exit_code``."""

from __future__ import annotations


class PromptweaveError(Exception):
    """An error a user can fix; its message is one line that says where and what to do."""

    exit_code = 2


class ConfigError(PromptweaveError):
    """A problem in a pipeline file: names the file, the line and the key."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 key: str | None = None) -> None:
        self.file, self.line, self.key, self.detail = file, line, key, message
        where = file or "<config>"
        if line is not None:
            where += f":{line}"
        head = f"{where}: " + (f"'{key}': " if key else "")
        super().__init__(head + message)


class DataError(PromptweaveError):
    """A data file is missing, unreadable or malformed."""


class TemplateError(PromptweaveError):
    """A prompt template is malformed or needs a variable the row does not have."""


class MissingDependency(PromptweaveError):
    """An optional extra is not installed; the message gives the exact install line."""

    def __init__(self, package: str, extra: str, reason: object = None) -> None:
        why = f" ({reason})" if reason else ""
        super().__init__(
            f"{package} is not installed{why}; install it with: pip install 'promptweave[{extra}]'"
        )
