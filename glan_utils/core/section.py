"""The base of every settings section, in a module of its own so feature modules can define their sections
without importing `config` (which imports them to assemble `Settings`)."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Base for settings sections: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
