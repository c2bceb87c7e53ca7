#!/usr/bin/env python
"""The documentation pipeline up to Quarto, checked in a real browser.

Quarto is not needed (nor installed) here, so this checks everything `nbdev_docs` would feed it:

1. `nbdev_proc_nbs` (nbdev's console command, nothing private) processes every notebook into `_proc/`.
   Before processing, nbdev checks that a `quarto` executable is on PATH and, when there is none, tries to
   download and install Quarto with sudo; processing itself never runs Quarto. Quarto cannot be installed on
   our CI machines, so when none is on PATH this script puts a stand-in `quarto` (a script in a temporary
   folder that refuses to run, exit 1) first on the PATH of that one command: nbdev's check finds it and moves
   on, and anything that did try to run Quarto would fail loudly instead of passing silently.
2. Every processed notebook is turned into HTML with `jupyter nbconvert --to html` (not executed: the
   outputs are the ones saved in the notebook).
3. Each page, and the standalone camera-pose scene, is opened in headless Chromium and screenshotted
   into `.ci/artifacts/screenshots/` (git-ignored; kept for a person to look at).
4. Checks: no error output in the notebook (outputs of type `error`, or stderr containing a Traceback);
   every figure the notebook holds is in the page as an image that decodes; every local image or frame
   a page links to exists; the screenshot is not blank; the 3D page draws a WebGL canvas whose
   screenshot shows the scene (enough non-background pixels, and saturated pixels of the subjects'
   colours); every notebook is listed in `nbs/sidebar.yml`.

Prints `PASS page` or `FAIL page: reason` per page, then a count; exits non-zero if any page failed.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
NBS, PROC = ROOT / "nbs", ROOT / "_proc"
SHOTS = ROOT / ".ci" / "artifacts" / "screenshots"  # --artifacts DIR: DIR / "screenshots"

CHROMIUM_FLAGS = [  # the flags of the issue, plus a throwaway profile so parallel runs do not share one
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--hide-scrollbars", "--no-first-run",
]
# WebGL without a GPU: Chromium renders it with SwiftShader (software) but, since version 13x, only
# when asked explicitly. `--use-gl=swiftshader` gives a blank canvas with Debian's build; this works:
WEBGL_FLAGS = ["--enable-unsafe-swiftshader"]
PAGE_SIZE, SCENE_SIZE = (1280, 6000), (1024, 768)  # tall pages: figures further down are in the picture
BUDGET_MS = 8000  # virtual time given to a page's scripts before the screenshot

# Thresholds of the 3D check, on the screenshot of the scene page:
MIN_SCENE_FOREGROUND = 0.001  # fraction of pixels that differ from the background colour
MIN_SCENE_SATURATED = 100  # pixels with the saturation of the subjects' colours (frustums and rays)


def log(msg: str):
    print(msg, flush=True)


# --- 1. nbdev_proc_nbs ----------------------------------------------------------------------------------
# nbdev_proc_nbs runs as a child process (it prints every cell it warns about; a failure raises in a worker).
FAKE_QUARTO = """#!/bin/sh
echo "quarto: not installed here; .ci/docs_check.py only lets nbdev_proc_nbs find a quarto on PATH" >&2
exit 1
"""


def _last_error(stderr: str) -> str:
    "The last exception line of a traceback, with nbdev's 'Error in notebook ... in cell N' if present."
    m = re.findall(r"^Exception: (Error.*? in cell \d+) :\n(.*)", stderr, flags=re.M)
    if m:  # nbdev names the notebook's title and cell, then prints the cell: keep its first line
        where, first_line = m[-1]
        return f"{where} (`{first_line.strip()[:80]}`)"
    lines = [l for l in stderr.strip().splitlines() if re.match(r"^\w+(\.\w+)*(Error|Exception)\b", l)]
    return lines[-1][:300] if lines else stderr.strip()[-300:]


def titles() -> dict[str, str]:
    "Notebook titles (the first `# ` heading), as nbdev names them in 'Error in notebook: TITLE in cell N'."
    found = {}
    for src in notebooks():
        for cell in json.loads(src.read_text()).get("cells", []):
            m = re.search(r"^# (.+)$", "".join(cell.get("source", [])), flags=re.M) if cell.get("cell_type") == "markdown" else None
            if m:
                found[m.group(1).strip()] = src.relative_to(NBS).with_suffix("").as_posix()
                break
    return found


def notebooks() -> list[Path]:
    "The notebooks nbdev processes: every `*.ipynb` under nbs/, outside folders and files starting with `.` or `_`."
    return sorted(p for p in NBS.rglob("*.ipynb") if not any(q.startswith((".", "_")) for q in p.relative_to(NBS).parts))


def _run_proc_nbs(skip: list[str]) -> subprocess.CompletedProcess:
    "`nbdev_proc_nbs`, skipping the notebooks named in `skip` (file names) with nbdev's own `--skip_file_re`."
    skip_re = "^[_.]" + "".join(f"|^{re.escape(name)}$" for name in skip)  # nbdev's default, plus these
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="fake-quarto-") as bin_dir:
        if shutil.which("quarto") is None:  # see the module docstring
            fake = Path(bin_dir) / "quarto"
            fake.write_text(FAKE_QUARTO)
            fake.chmod(0o755)
            env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return subprocess.run(["nbdev_proc_nbs", "--n_workers", "2", "--skip_file_re", skip_re], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=900)


def proc_nbs() -> dict[str, str]:
    """Run `nbdev_proc_nbs` into a fresh `_proc/`; return {notebook: reason} for notebooks it could not process.

    nbdev stops at the first notebook that fails and names it by title ("Error in notebook: TITLE in cell N"); the
    notebooks it had not reached yet are missing from `_proc/`. So after a failure it runs again, skipping the
    failed notebooks (nbdev keeps what it processed already and does only the missing ones), until it succeeds.
    """
    if PROC.exists():
        shutil.rmtree(PROC)  # fresh every run: a stale page must not pass
    by_title, failures, warned = titles(), {}, False
    for _ in range(len(notebooks()) + 1):
        run = _run_proc_nbs([Path(n).name + ".ipynb" for n in failures])
        warnings = run.stderr.count("Found cells containing imports and other code")
        if warnings and not warned:
            warned = True
            log(f"  nbdev warned about {warnings} cells that mix imports with other code (they run at docs time)")
        if run.returncode == 0:
            return failures
        log(f"  nbdev_proc_nbs failed: {_last_error(run.stderr)}")
        new = {}
        for title, cell, first_line in re.findall(r"^Exception: Error in notebook: (.*?) in cell (\d+) :\n(.*)", run.stderr, flags=re.M):
            name = by_title.get(title)
            if name and name not in failures:
                new[name] = f"nbdev_proc_nbs: error in cell {cell} (`{first_line.strip()[:80]}`): {_cause(run.stderr)}"
        if not new:  # a failure nbdev did not attribute to a notebook: every notebook it did not process failed
            for src in notebooks():
                name = src.relative_to(NBS).with_suffix("").as_posix()
                if name not in failures and not (PROC / src.relative_to(NBS)).exists():
                    failures[name] = f"nbdev_proc_nbs did not process it: {_last_error(run.stderr)}"
            return failures or {"nbdev_proc_nbs": _last_error(run.stderr)}
        failures.update(new)
    return failures


def _cause(stderr: str) -> str:
    "The first exception line of the traceback, e.g. `ModuleNotFoundError: No module named ...`."
    lines = [l for l in stderr.splitlines() if re.match(r"^\w+(\.\w+)*(Error|Exception)\b", l) and not l.startswith("Exception: Error in")]
    return lines[0][:200] if lines else ""


# --- 2. nbconvert -----------------------------------------------------------------------------------------
def to_html(notebooks: list[Path]) -> None:
    "Convert processed notebooks to HTML next to them (so their relative links resolve), without executing them."
    # nbdev's processed notebooks carry keys nbformat's schema does not know (`has_sd`, cell ids in v4.4);
    # nbconvert logs that as a validation error but converts them all the same, so its log is kept quiet.
    cmd = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", *map(str, notebooks)]
    run = subprocess.run(cmd, cwd=PROC, capture_output=True, text=True, timeout=300)
    if run.returncode != 0:
        log(run.stderr[-2000:])


# --- 3. Chromium ------------------------------------------------------------------------------------------
def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    raise SystemExit("FAIL docs: no Chromium found (Debian: apt-get install -y chromium; .ci/run installs it)")


def run_chromium(url: str, size: tuple[int, int], extra: list[str], *args: str) -> subprocess.CompletedProcess:
    "Run headless Chromium on `url` with a throwaway profile."
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        cmd = [chromium(), *CHROMIUM_FLAGS, *extra, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
               f"--virtual-time-budget={BUDGET_MS}", *args, url]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def screenshot(url: str, png: Path, size: tuple[int, int], extra: list[str] = ()) -> np.ndarray:
    "Screenshot `url` into `png`; return the image, (H, W, 3) uint8."
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    run = run_chromium(url, size, list(extra), f"--screenshot={png}")
    if not png.exists():
        raise RuntimeError(f"Chromium wrote no screenshot (exit {run.returncode}): {run.stderr.strip()[-200:]}")
    return np.asarray(Image.open(png).convert("RGB"))


def dump_dom(url: str, size: tuple[int, int], extra: list[str] = ()) -> str:
    "The page's DOM after its scripts ran."
    return run_chromium(url, size, list(extra), "--dump-dom").stdout


# --- 4. checks --------------------------------------------------------------------------------------------
IMAGE_MIMES = ("image/png", "image/jpeg", "image/gif", "image/svg+xml")


def notebook_problems(nb: dict) -> list[str]:
    "Error outputs of a notebook: `error` outputs and Tracebacks on stderr."
    problems = []
    for k, cell in enumerate(nb.get("cells", [])):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                problems.append(f"cell {k}: error output {out.get('ename')}: {out.get('evalue', '')[:80]}")
            elif out.get("output_type") == "stream" and out.get("name") == "stderr":
                text = "".join(out.get("text", ""))
                if "Traceback" in text:
                    problems.append(f"cell {k}: Traceback on stderr")
    return problems


def figure_count(nb: dict) -> int:
    "Image outputs in a notebook (one per display: a PNG with an SVG alternative is one figure)."
    return sum(
        any(m in out.get("data", {}) for m in IMAGE_MIMES)
        for cell in nb.get("cells", []) for out in cell.get("outputs", [])
    )


def page_figures(page: str) -> tuple[int, list[str]]:
    "Figures embedded in an nbconvert page (data-URI <img> and inline <svg>), and the ones that do not decode."
    bad, n = [], 0
    for m in re.finditer(r'<img[^>]*src="data:image/(png|jpeg|gif);base64,([^"]+)"', page):
        n += 1
        try:
            img = Image.open(io.BytesIO(base64.b64decode(m.group(2))))
            img.load()
            if min(img.size) < 2:
                bad.append(f"figure {n} is {img.size[0]}x{img.size[1]} pixels")
        except Exception as e:  # a corrupt figure is a failure, whatever the reason
            bad.append(f"figure {n} does not decode ({type(e).__name__})")
    n += len(re.findall(r'<div class="jp-RenderedSVG[^"]*"', page))
    return n, bad


def missing_links(page: str, folder: Path) -> list[str]:
    "Local images and frames the page refers to that do not exist."
    missing = []
    for tag, attr in (("img", "src"), ("iframe", "src")):
        for m in re.finditer(rf'<{tag}[^>]*\s{attr}="([^"]+)"', page):
            src = html.unescape(m.group(1)).split("#")[0].split("?")[0]
            if not src or re.match(r"^(data:|[a-z]+://|//)", src):
                continue
            if not (folder / src).exists():
                missing.append(f"<{tag}> {src}")
    return missing


def blank(img: np.ndarray) -> bool:
    return float(img.astype(np.float32).std()) < 2.0


def scene_stats(img: np.ndarray) -> dict:
    "What the 3D page drew: fraction of non-background pixels, and saturated (coloured) pixels."
    rgb = img.astype(np.float32)
    corners = np.stack([rgb[0, 0], rgb[0, -1], rgb[-1, 0], rgb[-1, -1]])
    background = np.median(corners, axis=0)
    foreground = np.abs(rgb - background).max(axis=-1) > 12
    mx, mn = rgb.max(axis=-1), rgb.min(axis=-1)
    saturation = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1), 0)
    saturated = (saturation > 0.3) & (mx > 60) & foreground
    return {"std": float(rgb.std()), "foreground": float(foreground.mean()), "saturated": int(saturated.sum())}


def check_page(nb_path: Path) -> tuple[str, str | None]:
    "Check one processed notebook and its HTML page; return (name, failure reason or None)."
    name = nb_path.relative_to(PROC).with_suffix("").as_posix()
    reasons = []
    source = NBS / nb_path.relative_to(PROC)
    for nb_file in (source, nb_path):  # the source holds hidden cells too; the processed one is what is shown
        if nb_file.exists():
            reasons += [f"{p} ({nb_file.parent.name}/)" for p in notebook_problems(json.loads(nb_file.read_text()))]
    reasons = list(dict.fromkeys(reasons))
    page_path = nb_path.with_suffix(".html")
    if not page_path.exists():
        return name, "nbconvert wrote no page"
    page = page_path.read_text(encoding="utf-8", errors="replace")
    expected = figure_count(json.loads(nb_path.read_text()))
    found, bad = page_figures(page)
    if found < expected:
        reasons.append(f"{expected} figures in the notebook, {found} in the page")
    reasons += bad
    reasons += [f"missing {m}" for m in missing_links(page, page_path.parent)]
    try:
        img = screenshot(page_path.as_uri(), SHOTS / f"{name}.png", PAGE_SIZE)
        if blank(img):
            reasons.append("the screenshot is blank")
    except Exception as e:
        reasons.append(f"screenshot failed: {e}")
    return name, "; ".join(reasons) or None


def scenes() -> list[str]:
    "The standalone 3D pages: `.html` files among the resources of `nbs/_quarto.yml`, as paths under nbs/."
    import yaml

    resources = yaml.safe_load((NBS / "_quarto.yml").read_text()).get("project", {}).get("resources", []) or []
    return sorted(r for r in ([resources] if isinstance(resources, str) else resources) if r.endswith(".html"))


def check_scene(rel: str) -> tuple[str, str | None]:
    "Check a standalone camera-pose page (processed copy in _proc/): a WebGL canvas that shows the scene."
    name, path = rel, PROC / rel
    if not path.exists():
        return name, f"nbs/{rel} does not exist (written by the notebook that exports the scene; listed in nbs/_quarto.yml)"
    try:
        img = screenshot(path.as_uri(), SHOTS / Path(rel).with_suffix(".png"), SCENE_SIZE, WEBGL_FLAGS)
        dom = dump_dom(path.as_uri(), SCENE_SIZE, WEBGL_FLAGS)
    except Exception as e:
        return name, f"screenshot failed: {e}"
    stats = scene_stats(img)
    reasons = []
    if "<canvas" not in dom:
        reasons.append("no <canvas> in the page after its scripts ran")
    if stats["foreground"] < MIN_SCENE_FOREGROUND:
        reasons.append(f"blank canvas: {stats['foreground']:.2%} non-background pixels (< {MIN_SCENE_FOREGROUND:.1%})")
    if stats["saturated"] < MIN_SCENE_SATURATED:
        reasons.append(f"no cameras drawn: {stats['saturated']} coloured pixels (< {MIN_SCENE_SATURATED})")
    log(f"  3D canvas of {name}: {stats['foreground']:.1%} of pixels drawn, {stats['saturated']} coloured pixels, "
        f"pixel std {stats['std']:.1f}, <canvas> in DOM: {'<canvas' in dom}")
    return name, "; ".join(reasons) or None


def check_sidebar() -> tuple[str, str | None]:
    "Every notebook is in the sidebar, by its path under nbs/ (`api/07_deepfluoro.ipynb`); pages listed but not written yet are only reported."
    import yaml

    def entries(items):
        for item in items:
            if isinstance(item, str):
                yield item
            elif isinstance(item, dict):
                if "href" in item:
                    yield item["href"]
                yield from entries(item.get("contents", []))

    listed = list(entries(yaml.safe_load((NBS / "sidebar.yml").read_text())["website"]["sidebar"]["contents"]))
    local = [e.split("#")[0] for e in listed if not re.match(r"^[a-z]+://", e)]
    pending = sorted({e for e in local if not (NBS / e).exists()})
    if pending:
        log(f"  sidebar pages not written yet: {', '.join(pending)}")
    unlisted = [nb for nb in (p.relative_to(NBS).as_posix() for p in notebooks()) if nb not in local]
    return "sidebar.yml", f"notebooks missing from the sidebar: {', '.join(unlisted)}" if unlisted else None


def main() -> int:
    global SHOTS
    if "--artifacts" in sys.argv:
        SHOTS = Path(sys.argv[sys.argv.index("--artifacts") + 1]).resolve() / "screenshots"
    t0 = time.perf_counter()
    if SHOTS.exists():
        shutil.rmtree(SHOTS)
    SHOTS.mkdir(parents=True)
    log("== nbdev_proc_nbs")
    proc_failures = proc_nbs()
    processed = sorted(p for p in PROC.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if not processed:
        log("FAIL docs: nbdev_proc_nbs produced no notebooks")
        for name, reason in sorted(proc_failures.items()):
            log(f"FAIL {name}: {reason}")
        return 1
    log(f"== nbconvert --to html: {len(processed)} notebooks ({time.perf_counter() - t0:.0f} s so far)")
    to_html(processed)
    log(f"== headless Chromium ({time.perf_counter() - t0:.0f} s so far)")
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(check_page, processed))
    scene_pages = scenes()
    results += [check_scene(rel) for rel in scene_pages]
    results += sorted(proc_failures.items())
    results.append(check_sidebar())
    failed = 0
    for name, reason in results:
        if reason:
            failed += 1
            log(f"FAIL {name}: {reason}")
        else:
            log(f"PASS {name}")
    log(f"{len(results) - failed} passed, {failed} failed ({len(results) - len(scene_pages) - 1} notebooks, "
        f"{len(scene_pages)} 3D scene page(s) and the sidebar; screenshots in {SHOTS}/; {time.perf_counter() - t0:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
