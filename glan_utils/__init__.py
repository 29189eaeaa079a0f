"""glan-workbench: generate GLAN instruction data from a taxonomy of knowledge, then fine-tune and evaluate."""

from glan_utils.core.errors import ConfigError, GlanError, InputError, SetupError, StoreError
from glan_utils.runs.store import RunStore
from glan_utils.settings import Settings, load_settings

__all__ = [
    "ConfigError",
    "GlanError",
    "InputError",
    "RunStore",
    "Settings",
    "SetupError",
    "StoreError",
    "load_settings",
]
__version__ = "0.1.0"
