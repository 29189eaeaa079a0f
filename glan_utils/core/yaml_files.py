"""Reading a YAML file the workbench was given (settings, parameters, sweeps): one clear error naming it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from glan_utils.core.errors import ConfigError


def read_yaml(path: str | Path, what: str) -> Any:
    """The file's content; a missing or unparsable file is one ConfigError naming `what`, the path and the line."""
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config error: {what} not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config error: {what} {path} is a directory, not a YAML file") from None
    except (PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config error: {what} {path} cannot be read ({type(exc).__name__})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config error: {what} {path}{where}: not valid YAML") from None
