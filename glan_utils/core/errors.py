"""One exception family, so the CLI and notebooks can print a single clear line for any user error."""


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
