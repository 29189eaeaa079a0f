"""Run the whole generation chain from a JSON file of dotted settings; the subprocess the kill tests SIGKILL.

Usage: `python tests/support/pipeline_driver.py OVERRIDES.json`. Exit 0 when every stage finished; a user
error prints one line on stderr and exits 2, as the CLI does.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: make `support` importable

from glan_utils.core.aio import run
from glan_utils.core.errors import GlanError
from support.reliability import run_pipeline, settings_for


def main(path: str) -> int:
    try:
        run(run_pipeline(settings_for(json.loads(Path(path).read_text(encoding="utf-8")))))
    except GlanError as exc:
        print(f"glan: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
