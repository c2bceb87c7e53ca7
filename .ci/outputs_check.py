#!/usr/bin/env python
"""Saved notebook outputs, and the committed benchmark results, must not carry paths of the machine that ran them.

Looks at every notebook under nbs/ (recursively; folders starting with `.` or `_` are skipped) and at the
outputs a reader sees: `stream` text, and the `text/plain`, `text/html` and `text/markdown` data of
`execute_result` / `display_data` outputs, plus error tracebacks. Any absolute path of a developer's machine
(`/work/`, `/tmp/`, `/home/`, `/root/`, `/Users/`, `/private/var`, `C:\\`) is reported with the notebook, the
cell number and the matching line. The committed benchmark results (`benchmarks/results/*.md`, `*.json`) are
read line by line the same way. Print paths relative to the data home, or with `~`, instead.

Exits 1 if any was found, printing one line per hit (`nbs/api/06_download.ipynb cell 12: ...`).
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
RESULTS = ROOT / "benchmarks" / "results"
MACHINE_PATH = re.compile(r"(?<![\w.])(/work/|/tmp/|/home/|/root/|/Users/|/private/var|[A-Z]:\\\\)")
MIMES = ("text/plain", "text/html", "text/markdown")


def texts(out: dict):
    "The text a reader sees in one output."
    if out.get("output_type") == "stream":
        yield "".join(out.get("text", ""))
    elif out.get("output_type") == "error":
        yield from out.get("traceback", [])
    for mime in MIMES:
        value = out.get("data", {}).get(mime)
        if value:
            yield "".join(value)


def hits(nb_path: Path) -> list[str]:
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    found = []
    for k, cell in enumerate(nb.get("cells", [])):
        for out in cell.get("outputs", []):
            for text in texts(out):
                for line in text.splitlines():
                    if MACHINE_PATH.search(line):
                        found.append(f"cell {k}: {line.strip()[:160]}")
    return found


def notebooks() -> list[Path]:
    return sorted(p for p in NBS.rglob("*.ipynb") if not any(q.startswith((".", "_")) for q in p.relative_to(NBS).parts))


def result_hits(path: Path) -> list[str]:
    "Lines of a committed result file that carry a machine path."
    return [f"line {k}: {line.strip()[:160]}" for k, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if MACHINE_PATH.search(line)]


def main() -> int:
    nbs, bad = notebooks(), 0
    results = sorted(p for ext in ("md", "json") for p in RESULTS.glob(f"*.{ext}"))
    for path, found in [(nb, hits(nb)) for nb in nbs] + [(r, result_hits(r)) for r in results]:
        for hit in found:
            bad += 1
            print(f"{path.relative_to(ROOT)} {hit}")
    print(f"{len(nbs)} notebooks and {len(results)} benchmark result files, {bad} lines with a machine path")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
