#!/usr/bin/env python
"""Run notebooks as `nbdev_test` does, each in its own `nbdev_test --path NB` process, N at a time.
usage: python .ci/notebooks.py [-n N] [--logs DIR] [NOTEBOOK_OR_FOLDER ...]    (default: every notebook under nbs/)
A notebook passes when its process exits with status 0; its output goes to its own log, DIR/NAME.log, and is never
read. Prints `PASS  nb:NAME (S s)` or `FAIL ...` as each ends, writes DIR/results.tsv (name, exit status, seconds).
"""
import argparse, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from nbdev.config import get_config
from nbdev.doclinks import nbglob

cli = argparse.ArgumentParser()
cli.add_argument("-n", type=int, default=2, help="notebooks run at once")
cli.add_argument("--logs", type=Path, default=Path(".ci/artifacts/logs/nb"))
cli.add_argument("paths", nargs="*")
args, nbs = cli.parse_args(), get_config().nbs_path
found = sorted(p.absolute() for path in args.paths or [nbs] for p in nbglob(path, as_path=True))
found = [p for p in found if not (p.parent / ".notest").exists()]  # as nbdev_test
args.logs.mkdir(parents=True, exist_ok=True)

def run(nb: Path) -> tuple[str, int, int, Path]:
    name = (nb.relative_to(nbs) if nb.is_relative_to(nbs) else Path(nb.name)).with_suffix("").as_posix()
    log, t0 = args.logs / (name.replace("/", "__") + ".log"), time.monotonic()
    with open(log, "w") as out:  # nbdev_test runs the notebook in its folder, with the project on sys.path
        rc = subprocess.run(["nbdev_test", "--path", nb, "--do_print"], stdout=out, stderr=subprocess.STDOUT).returncode
    rc = rc if nb.exists() else 1  # removed or renamed during the run: nbdev_test found no file, and exited with 0
    return f"nb:{name}", rc, round(time.monotonic() - t0), log

failed = 0
with ThreadPoolExecutor(args.n) as pool, open(args.logs / "results.tsv", "w") as tsv:
    for done in as_completed([pool.submit(run, nb) for nb in found]):
        name, rc, secs, log = done.result()
        failed += rc != 0
        tsv.write(f"{name}\t{rc}\t{secs}\n")
        print(f"PASS  {name} ({secs} s)" if rc == 0 else f"FAIL  {name} ({secs} s, exit {rc}) -- log: {log}", flush=True)
        if rc:  # the end of its log: the failing cell and its traceback, usually
            print("".join("      " + l for l in log.read_text(errors="replace").splitlines(True)[-25:]), flush=True)
sys.exit(1 if failed or not found else 0)
