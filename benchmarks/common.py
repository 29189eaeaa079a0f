"""Shared benchmark plumbing: the mock server as a separate process, child runs, machine facts, result files.

Every measured workload runs in its own child process so its CPU time and peak RSS are its own, and the mock
server runs in yet another process so the client never shares a core's event loop with it.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable


@dataclass
class MockServer:
    """A running `glan_utils.testing.openai_server` process and its counters."""

    base_url: str
    process: subprocess.Popen[str]

    def _post_or_get(self, path: str, post: bool = False) -> dict[str, Any]:
        root = self.base_url.removesuffix("/v1")
        request = urllib.request.Request(root + path, method="POST" if post else "GET", data=b"" if post else None)
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.loads(reply.read())

    def stats(self) -> dict[str, Any]:
        return self._post_or_get("/stats")

    def reset(self) -> None:
        self._post_or_get("/stats/reset", post=True)


@contextmanager
def mock_server(latency_s: float, *args: str) -> Iterator[MockServer]:
    """Start the fake OpenAI server in a child process; stop it (SIGTERM, then kill) on exit."""
    cmd = [PYTHON, "-m", "glan_utils.testing.openai_server", "--port", "0", "--latency", str(latency_s), *args]
    process = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        if not base_url.startswith("http"):
            raise RuntimeError(f"mock server did not start (printed {base_url!r})")
        yield MockServer(base_url, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def run_json(cmd: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 900) -> dict[str, Any]:
    """Run a child that prints one JSON object as its last stdout line; its stderr passes through."""
    done = subprocess.run(
        list(cmd),
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited {done.returncode}")
    return json.loads(lines[-1])


def usage() -> dict[str, float]:
    """CPU seconds (this process and its waited-for children) and peak RSS in MB so far."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "cpu_s": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
        "peak_rss_mb": max(me.ru_maxrss, kids.ru_maxrss) / 1024,
    }


def machine() -> str:
    """One line naming the machine, for every results table."""
    model = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = (
        ", load average {:.1f} / {:.1f} / {:.1f} (1 / 5 / 15 min)".format(*os.getloadavg())
        if hasattr(os, "getloadavg")
        else ""
    )
    return f"{cores} cores, {model}, Python {platform.python_version()}, {platform.system()} {platform.release()}{load}"


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A GitHub markdown table of `columns` from `rows` (missing cells blank, floats to 3 significant digits,
    large numbers in full with thousands separators)."""

    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, int | float) and not isinstance(value, bool) and abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_results(
    name: str,
    title: str,
    rows: list[dict[str, Any]],
    columns: Sequence[str],
    *,
    chart: tuple[str, str] | None = None,
    notes: Sequence[str] = (),
) -> str:
    """Write `<name>.json`, `<name>.md` and (given `chart=(x, y)`) `<name>.html` under benchmarks/results/.

    Returns the markdown, which names the machine it ran on.
    """
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"title": title, "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S"), "notes": list(notes)}
    (RESULTS / f"{name}.json").write_text(json.dumps({**meta, "rows": rows}, indent=2, default=str))
    text = "\n".join(
        [
            f"### {title}",
            "",
            f"Machine: {meta['machine']}",
            "",
            markdown_table(rows, columns),
            "",
            *[f"- {note}" for note in notes],
            "",
        ]
    )
    (RESULTS / f"{name}.md").write_text(text)
    if chart:
        import plotly.express as px  # plotting is only needed for the HTML artefact

        figure = px.bar([r for r in rows if r.get(chart[1]) is not None], x=chart[0], y=chart[1], title=title)
        figure.write_html(RESULTS / f"{name}.html", include_plotlyjs="cdn")
    return text
