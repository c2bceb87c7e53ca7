#!/usr/bin/env python
"""The architecture CONTRIBUTING.md describes, checked: notebooks numbered by dependency, no private names across modules.

For every API notebook `nbs/api/NN_name.ipynb` (which exports `diffdrr_data/name.py`):
- its code cells import from `diffdrr_data.X` only where X's notebook has a lower number than NN;
- no code cell imports a private name (`_x`) from another module of the package.
Prints the dependency table (module <- the modules it imports) and one line per violation; exits 1 if any.
"""
from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "nbs" / "api"


def api_notebooks() -> dict[str, tuple[int, Path]]:
    "{module: (number, notebook)} from the `#| default_exp` of nbs/api/NN_*.ipynb."
    found = {}
    for nb in sorted(API.glob("[0-9][0-9]_*.ipynb")):
        src = nb.read_text(encoding="utf-8")
        if m := re.search(r"#\| default_exp (\w+)", src):
            found[m.group(1)] = (int(nb.name[:2]), nb)
    return found


def imports(nb: Path) -> list[tuple[int, str, list[str]]]:
    "(cell number, module, imported names) for every import from the package in the notebook's code cells."
    result = []
    for k, cell in enumerate(json.loads(nb.read_text(encoding="utf-8"))["cells"]):
        if cell["cell_type"] != "code":
            continue
        # IPython magics and shell escapes are not Python: blank them out before parsing
        src = "".join(l if not l.lstrip().startswith(("%", "!")) else "\n" for l in "".join(cell["source"]).splitlines(True))
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and (node.module.startswith("diffdrr_data.") or node.level):
                result.append((k, node.module.split(".")[-1], [a.name for a in node.names]))
            elif isinstance(node, ast.Import):
                result += [(k, a.name.split(".")[1], []) for a in node.names if a.name.startswith("diffdrr_data.")]
    return result


def main() -> int:
    modules, problems, table = api_notebooks(), [], []
    for module, (number, nb) in sorted(modules.items(), key=lambda kv: kv[1][0]):
        deps = set()
        for cell, dep, names in imports(nb):
            if dep == module or dep not in modules:
                continue
            deps.add(dep)
            if modules[dep][0] >= number:
                problems.append(f"{nb.relative_to(ROOT)} cell {cell}: imports from {dep} ({modules[dep][1].name}), "
                                f"which is not lower-numbered")
            private = [n for n in names if n.startswith("_")]
            if private:
                problems.append(f"{nb.relative_to(ROOT)} cell {cell}: imports private name(s) {', '.join(private)} from {dep}")
        table.append(f"  {nb.name:<24} {module:<13} <- {', '.join(sorted(deps, key=lambda d: modules[d][0])) or '-'}")
    print("\n".join(table))
    for p in problems:
        print("FAIL", p)
    print(f"{len(modules)} API notebooks, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
