#!/usr/bin/env python
"""The architecture of CONTRIBUTING.md: API notebooks `nbs/api/NN_name.ipynb` have one number each; one imports from `diffdrr_data.X` only
where X's notebook has a lower number, and imports no private (`_x`) name of another module.
Prints the dependency table and one line per violation; exits 1 if there is any."""
import ast, json, re, sys
from pathlib import Path

API = Path(__file__).resolve().parents[1] / "nbs" / "api"

def imports(nb: Path):
    "(cell number, module, imported names) for every import from the package in the notebook's code cells."
    for k, cell in enumerate(json.loads(nb.read_text(encoding="utf-8"))["cells"]):
        lines = ["\n" if l.lstrip().startswith(("%", "!")) else l for l in "".join(cell["source"]).splitlines(True)]
        try:
            tree = ast.parse("".join(lines)) if cell["cell_type"] == "code" else ast.Module([], [])
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and (node.module.startswith("diffdrr_data.") or node.level):
                yield k, node.module.split(".")[-1], [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                yield from ((k, a.name.split(".")[1], []) for a in node.names if a.name.startswith("diffdrr_data."))

def main() -> int:
    modules = {m.group(1): (int(nb.name[:2]), nb) for nb in sorted(API.glob("[0-9][0-9]_*.ipynb"))  # from `#| default_exp`
               if (m := re.search(r"#\| default_exp (\w+)", nb.read_text(encoding="utf-8")))}
    problems = []
    numbers = [number for number, _ in modules.values()]
    problems += [f"{len([n for n in numbers if n == k])} API notebooks share the number {k:02d}: one number per notebook, in dependency order"
                 for k in sorted(set(numbers)) if numbers.count(k) > 1]
    for module, (number, nb) in sorted(modules.items(), key=lambda kv: kv[1][0]):
        deps = set()
        for cell, dep, names in imports(nb):
            if dep == module or dep not in modules:
                continue
            deps.add(dep)
            if modules[dep][0] >= number:
                problems.append(f"{nb.name} cell {cell}: imports from {dep} ({modules[dep][1].name}), which is not lower-numbered")
            if private := [n for n in names if n.startswith("_")]:
                problems.append(f"{nb.name} cell {cell}: imports private name(s) {', '.join(private)} from {dep}")
        print(f"  {nb.name:<24} {module:<13} <- {', '.join(sorted(deps, key=lambda d: modules[d][0])) or '-'}")
    print("\n".join([f"FAIL {p}" for p in problems] + [f"{len(modules)} API notebooks, {len(problems)} problems"]))
    return 1 if problems else 0

if __name__ == "__main__":
    sys.exit(main())
