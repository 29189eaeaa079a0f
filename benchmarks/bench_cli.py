"""How fast `glan` answers before any compute: `glan --help` and a `glan run` whose endpoint refuses.

Each command runs `--repeat` times in a fresh process; the table gives the median and best wall time. The
"before" rows run the same commands against another checkout (`--baseline DIR`, e.g. a `git archive` of an
older commit), so a row pair compares code on one machine under one load.

    .venv/bin/python benchmarks/bench_cli.py [--repeat 5] [--baseline /tmp/old-checkout]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import PYTHON, ROOT, write_results

GLAN = [PYTHON, "-c", "from glan_utils.app.cli import app; app()"]


def _refused_config(folder: Path) -> Path:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = folder / "refused.yaml"
    path.write_text(f"output_dir: {folder}\nllm: {{base_url: 'http://127.0.0.1:{port}/v1', model: m}}\n")
    return path


def _times(args: list[str], code: Path, repeat: int) -> list[float]:
    env = {**os.environ, "PYTHONPATH": str(code), "GLAN_CACHE_DIR": tempfile.mkdtemp()}
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        # cwd outside both checkouts: `python -c` puts the current directory first on sys.path
        subprocess.run([*GLAN, *args], env=env, cwd=env["GLAN_CACHE_DIR"], capture_output=True, check=False)
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout to compare with")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    commands = {
        "glan --help": ["--help"],
        "glan run, endpoint refused": [
            *("run", "r", "-c", str(_refused_config(folder)), "--notebooks", str(ROOT / "notebooks")),
        ],
    }
    checkouts = {"this checkout": ROOT, **({"baseline": args.baseline} if args.baseline else {})}
    rows = []
    for label, command in commands.items():
        for code_name, code in checkouts.items():
            times = _times(command, code, args.repeat)
            rows.append(
                {"command": label, "code": code_name, "median_s": statistics.median(times), "best_s": min(times)}
            )
    print(write_results("cli", "glan before compute", rows, ["command", "code", "median_s", "best_s"]))


if __name__ == "__main__":
    main()
