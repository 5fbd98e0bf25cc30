"""User-facing errors. The CLI prints ``str(err)`` as one line and exits with ``exit_code``."""

from __future__ import annotations


_CONTROL = {ord("\n"): "\\n", ord("\r"): "\\r", ord("\x00"): "\\x00", ord("\u2028"): "\\u2028",
            ord("\u2029"): "\\u2029", ord("\x85"): "\\x85", ord("\x0b"): "\\x0b", ord("\x0c"): "\\x0c"}


class PromptweaveError(Exception):
    """An error a user can fix; its message is one line that says where and what to do.

    Messages quote user input (values, column names, paths); line breaks in them are shown
    escaped, so the message stays one line whatever the input holds."""

    exit_code = 2

    def __str__(self) -> str:
        return super().__str__().translate(_CONTROL)


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
