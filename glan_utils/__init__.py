"""glan-workbench: generate GLAN instruction data from a taxonomy of knowledge, then fine-tune and evaluate."""

from glan_utils.config import Settings, load_settings
from glan_utils.errors import ConfigError, GlanError, InputError, SetupError, StoreError
from glan_utils.store import RunStore

__all__ = ["ConfigError", "GlanError", "InputError", "RunStore", "Settings", "SetupError", "StoreError",
           "load_settings"]
__version__ = "0.1.0"
