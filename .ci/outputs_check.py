#!/usr/bin/env python
"""The saved outputs are the documentation pages: what every notebook holds (the docs check applies it to each page).
usage: python .ci/outputs_check.py [NOTEBOOK ...]    (default: every notebook under nbs/, and benchmarks/results/)
- No path of the machine that ran it (`/work/`, `/tmp/`, `/home/`, ...): print paths relative to the data home, or `~`.
- No error output (an `error` output, or a Traceback on stderr).
- A code cell that draws holds its figure: one that calls, outside any def or class, `plot_drr`, `.imshow`, `.show`
  (matplotlib, a PyVista plotter), `.screenshot`, `.subplots` or `.figure` must have an image output. `#| eval: false`
  cells never run; a cell that draws nothing on purpose says why in a comment: `# draws nothing: <why>`.
"""
import ast, json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MACHINE_PATH = re.compile(r"(?<![\w.])(/work/|/tmp/|/home/|/root/|/Users/|/private/var|[A-Z]:\\\\)")
TEXT = ("text/plain", "text/html", "text/markdown")
DRAWS = {"plot_drr", "imshow", "show", "screenshot", "subplots", "figure"}

def notebooks() -> list[Path]:  # those nbdev sees: not in folders, nor files, starting with `.` or `_`
    nbs = ROOT / "nbs"
    return sorted(p for p in nbs.rglob("*.ipynb") if not any(q.startswith((".", "_")) for q in p.relative_to(nbs).parts))

def drawing_line(src: str) -> str | None:
    "The line of the first drawing call outside any def or class, if the cell has one."
    lines = ["\n" if l.lstrip().startswith(("%", "!")) else l for l in src.splitlines(True)]  # magics are not Python
    try:
        todo = list(ast.parse("".join(lines)).body)
    except SyntaxError:
        return None
    for node in todo:  # grows as it goes: every node of the cell, except the bodies of defs, classes and lambdas
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        f = getattr(node, "func", None)
        if isinstance(node, ast.Call) and (getattr(f, "attr", None) or getattr(f, "id", None)) in DRAWS:
            return lines[node.lineno - 1].strip()
        todo += ast.iter_child_nodes(node)

def problems(nb: Path):
    for k, cell in enumerate(json.loads(nb.read_text(encoding="utf-8"))["cells"]):
        outs, src = cell.get("outputs", []), "".join(cell.get("source", ""))
        for out in outs:
            if out.get("output_type") == "error":
                yield f"cell {k}: error output {out.get('ename')}: {out.get('evalue', '')[:80]}"
            if out.get("name") == "stderr" and "Traceback" in "".join(out.get("text", "")):
                yield f"cell {k}: a Traceback on stderr"
            seen = [out.get("text", ""), out.get("traceback", [])] + [out.get("data", {}).get(m, "") for m in TEXT]  # by a reader
            yield from (f"cell {k}: machine path: {l.strip()[:160]}" for t in seen for l in "".join(t).splitlines() if MACHINE_PATH.search(l))
        line = drawing_line(src) if cell["cell_type"] == "code" else None
        if line and not re.search(r"^#\| *eval: *false|# draws nothing:", src, re.M | re.I) and \
                not any(m.startswith("image/") for out in outs for m in out.get("data", {})):
            yield f"cell {k}: draws (`{line[:50]}`) but has no image output (run it, save the notebook)"

def main(paths: list[str]) -> int:
    nbs = [Path(p).resolve() for p in paths] or notebooks()
    results = [] if paths else sorted(p for p in (ROOT / "benchmarks" / "results").glob("*") if p.suffix in (".md", ".json"))
    bad = [f"{nb.relative_to(ROOT) if nb.is_relative_to(ROOT) else nb} {p}" for nb in nbs for p in problems(nb)]
    bad += [f"{r.relative_to(ROOT)} line {k}: {l.strip()[:160]}" for r in results
            for k, l in enumerate(r.read_text(encoding="utf-8").splitlines(), 1) if MACHINE_PATH.search(l)]
    print("\n".join(bad + [f"{len(nbs)} notebooks, {len(results)} benchmark result files: {len(bad)} problems"]))
    return 1 if bad else 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
