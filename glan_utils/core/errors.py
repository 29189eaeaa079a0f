"""One exception family, so the CLI and notebooks can print a single clear line for any user error."""

import sys
from types import TracebackType
from typing import Any


class GlanError(Exception):
    """Base class for errors a user can fix (bad config, bad input, missing setup)."""


class ConfigError(GlanError):
    """The settings file, environment or parameters are invalid."""


class InputError(GlanError):
    """A user-supplied file (taxonomy, review, data set) is invalid."""


class SetupError(GlanError):
    """Something the workbench needs is not installed or not reachable."""


class StoreError(GlanError):
    """The run directory cannot be written or is inconsistent."""


class SandboxUnavailableError(SetupError):
    """No sandbox that really isolates model-written code works here, and weak isolation was not opted in to."""


def one_line_in_notebooks() -> None:
    """In an IPython kernel, show the workbench's own errors as one line (`ConfigError: ...`), not a traceback:
    the message says what to change, and the frames inside glan_utils would only bury it. The cell still fails
    (papermill and `glan run` see the error). Nothing happens outside IPython."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is not None:
        shell.set_custom_exc((GlanError,), _one_line)


def _one_line(
    shell: Any, etype: type[BaseException], value: BaseException, tb: TracebackType | None, tb_offset: Any = None
) -> list[str]:
    """The cell's error as one line; shown here, since IPython leaves showing a custom traceback to its handler
    (the kernel sends it as the cell's error output, which papermill and the report read)."""
    stb = [f"\x1b[0;31m{etype.__name__}\x1b[0m: {value}"]
    shell._showtraceback(etype, value, stb)
    return stb
