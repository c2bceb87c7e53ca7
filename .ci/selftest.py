#!/usr/bin/env python
"""The harness's own tests: `python .ci/selftest.py` (run by `bash .ci/test`). Fixtures in a temporary folder.
1. The notebook step judges each notebook by its own process's exit status: four notebooks, four workers, wait for each
   other and then all write at once what nbdev prints ("Starting ...", "- Completed ...", "nbdev Tests Failed ...").
2. The outputs check (the docs check applies it to every page) fails on a drawing cell that lost its figure.
3. A test run never changes a contributor's files: in a clone with an uncommitted, unexported notebook edit, `--static`
   fails nbdev_export and leaves every file as it was; a check that writes into the checkout fails checkout_unchanged.
"""
import json, shutil, subprocess, sys, tempfile
from pathlib import Path

CI, failures = Path(__file__).resolve().parent, []
run = lambda *cmd, cwd=CI.parent: subprocess.run(list(map(str, cmd)), cwd=cwd, capture_output=True, text=True)

def expect(ok: bool, what: str, log: str = ""):
    print(f"ok: {what}" if ok else f"FAILED: {what}\n{log[-3000:]}", flush=True)
    failures.extend([] if ok else [what])

def notebook(path: Path, *sources: str, outputs=()) -> Path:
    "A notebook of code cells; the last one holds `outputs`."
    cells = [dict(cell_type="code", execution_count=None, id=f"c{k}", metadata={}, source=src, outputs=[]) for k, src in enumerate(sources)]
    cells[-1]["outputs"] = list(outputs)
    kernel = dict(name="python3", display_name="Python 3", language="python")
    path.write_text(json.dumps(dict(cells=cells, metadata=dict(kernelspec=kernel), nbformat=4, nbformat_minor=5)))
    return path

tmp = Path(tempfile.mkdtemp(prefix="diffdrr_data_selftest."))
try:  # 1. four notebooks, four workers, printing at the same moment
    (nbs := tmp / "nbs").mkdir()
    together = """import os, pathlib, time
pathlib.Path("ready-{0}").touch()  # in the notebook's folder, where nbdev_test runs it
t = time.time()
while len(list(pathlib.Path().glob("ready-*"))) < 4 and time.time() < t + 120: time.sleep(0.01)
for i in range(300):  # to the process's stdout, mid-line: what garbled nbdev_test's merged output
    os.write(1, b"Starting {0}.ipynb- Completed {0}.ipynb\\nnbdev Tests Failed On The Following Notebooks:\\n\\tpasses_1.ipynb\\n")"""
    ends = dict(passes_1="x = 1", passes_2="x = 2", fails="assert False, 'on purpose'", killed="os.kill(os.getpid(), 9)")
    for name, end in ends.items():
        notebook(nbs / f"{name}.ipynb", together.format(name), end)
    r = run(sys.executable, CI / "notebooks.py", "-n", 4, "--logs", tmp / "logs", nbs)
    got = {l.split("\t")[0]: l.split("\t")[1] == "0" for l in (tmp / "logs" / "results.tsv").read_text().splitlines()}
    lines = sorted(l.split(" (")[0] for l in r.stdout.splitlines() if l.startswith(("PASS", "FAIL")))
    expect(got == {"nb:passes_1": True, "nb:passes_2": True, "nb:fails": False, "nb:killed": False} and r.returncode == 1
           and lines == ["FAIL  nb:fails", "FAIL  nb:killed", "PASS  nb:passes_1", "PASS  nb:passes_2"],
           f"notebook step, 4 workers printing at once: {got}", r.stdout + r.stderr)

    # 2. a drawing cell that lost its figure
    draw = "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.imshow([[0, 1]])\nplt.show()"
    png = dict(output_type="display_data", metadata={}, data={"image/png": "iVBORw0KGgo=\n", "text/plain": "<Figure>"})
    r = run(sys.executable, CI / "outputs_check.py", notebook(tmp / "lost.ipynb", "x = 1", draw))
    expect(r.returncode == 1 and "lost.ipynb cell 1: draws" in r.stdout, "the outputs check fails on a lost figure", r.stdout)
    r = run(sys.executable, CI / "outputs_check.py", notebook(tmp / "kept.ipynb", "x = 1", draw, outputs=[png]),
            notebook(tmp / "defined.ipynb", "def show(img):\n    plt.imshow(img)\n    plt.show()"))
    expect(r.returncode == 0, "it passes the figure kept, and a drawing function only defined", r.stdout)

    # 3. a contributor's files: an uncommitted, unexported edit in a clone (this .ci/ committed there)
    run("git", "clone", "-q", CI.parent, repo := tmp / "repo")
    shutil.copytree(CI, repo / ".ci", dirs_exist_ok=True, ignore=shutil.ignore_patterns("artifacts", "__pycache__"))
    run("git", "add", "-A", ".ci", cwd=repo)
    run("git", "-c", "user.name=selftest", "-c", "user.email=selftest@localhost", "commit", "-qm", "harness", cwd=repo)
    content = json.loads((nb := repo / "nbs" / "api" / "01_data_home.ipynb").read_text())
    cell = next(c for c in content["cells"] if "".join(c["source"]).startswith("#| export"))
    cell["source"] = "".join(cell["source"]) + "\n\ndef selftest_unexported():\n    return 42"
    nb.write_text(json.dumps(content, indent=1) + "\n")
    state = lambda: run("git", "status", "--porcelain", "-uall", cwd=repo).stdout + run("git", "diff", "--binary", cwd=repo).stdout
    before, edited = state(), nb.read_bytes()
    r = run("bash", ".ci/test", "--static", cwd=repo)
    expect(r.returncode == 1 and "FAIL  nbdev_export" in r.stdout, "--static fails nbdev_export on the edit", r.stdout)
    expect(nb.read_bytes() == edited and state() == before, "the edit and the checkout are as they were, byte for byte")
    expect("PASS  checkout_unchanged" in r.stdout, "checkout_unchanged passed", r.stdout)
    (repo / ".ci" / "architecture_check.py").write_text(f"open({str(nb)!r}, 'a').write(' ')\n")  # writes into the checkout
    r = run("bash", ".ci/test", "--static", cwd=repo)
    expect("FAIL  checkout_unchanged" in r.stdout, "checkout_unchanged fails when a check changes a file", r.stdout)
finally:
    shutil.rmtree(tmp, ignore_errors=True)
print(f"selftest: {len(failures)} failed" if failures else "selftest: all assertions hold")
sys.exit(1 if failures else 0)
