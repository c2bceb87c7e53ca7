#!/usr/bin/env python
"""The documentation pipeline up to Quarto, checked in a real browser.

Quarto is not needed (nor installed) here, so this checks everything `nbdev_docs` would feed it:

1. `nbdev_proc_nbs` processes every notebook into `_proc/` (nbdev installs Quarto on the way when it is
   missing; that step is skipped here, processing itself does not need it).
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
SHOTS = ROOT / ".ci" / "artifacts" / "screenshots"
SCENE = "deepfluoro_camera_poses.html"  # the standalone 3D page written by nbs/05_camera_poses.ipynb

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
# Run in a child process: nbdev prints every cell it warns about, and a failure raises from a worker pool.
# Without Quarto, nbdev_proc_nbs would first try to install it; processing does not need it, so skip that.
_PROC_ALL = """
import shutil, nbdev.quarto
if shutil.which("quarto") is None:
    nbdev.quarto._ensure_quarto = lambda: None
nbdev.quarto.nbdev_proc_nbs.__wrapped__(n_workers=2)
"""
# After a failure: process one notebook as nbdev_proc_nbs does, to tell which notebooks fail and why.
_PROC_ONE = """
import sys
from pathlib import Path
from nbdev.processors import FilterDefaults
from nbdev.serve_drv import main
main((Path(sys.argv[1]), Path(sys.argv[2]), FilterDefaults))
"""


def _last_error(stderr: str) -> str:
    "The last exception line of a traceback, with nbdev's 'Error in notebook ... in cell N' if present."
    m = re.findall(r"^Exception: (Error.*? in cell \d+) :\n(.*)", stderr, flags=re.M)
    if m:  # nbdev names the notebook's title and cell, then prints the cell: keep its first line
        where, first_line = m[-1]
        return f"{where} (`{first_line.strip()[:80]}`)"
    lines = [l for l in stderr.strip().splitlines() if re.match(r"^\w+(\.\w+)*(Error|Exception)\b", l)]
    return lines[-1][:300] if lines else stderr.strip()[-300:]


def proc_nbs() -> dict[str, str]:
    "Run `nbdev_proc_nbs` into a fresh `_proc/`; return {notebook: reason} for notebooks it could not process."
    if PROC.exists():
        shutil.rmtree(PROC)  # fresh every run: a stale page must not pass
    run = subprocess.run([sys.executable, "-c", _PROC_ALL], cwd=ROOT, capture_output=True, text=True, timeout=600)
    warnings = run.stderr.count("Found cells containing imports and other code")
    if warnings:
        log(f"  nbdev warned about {warnings} cells that mix imports with other code (they run at docs time)")
    if run.returncode == 0:
        return {}
    log(f"  nbdev_proc_nbs failed: {_last_error(run.stderr)}")
    todo = []
    for src in sorted(NBS.rglob("*.ipynb")):
        rel = src.relative_to(NBS)
        if any(p.startswith((".", "_")) for p in rel.parts) or (PROC / rel).exists():
            continue
        (PROC / rel).parent.mkdir(parents=True, exist_ok=True)
        todo.append(rel)

    def proc_one(rel: Path):
        one = subprocess.run([sys.executable, "-c", _PROC_ONE, str(NBS / rel), str(PROC / rel)], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
        return rel.with_suffix("").as_posix(), None if one.returncode == 0 else f"nbdev_proc_nbs: {_last_error(one.stderr)}"

    with ThreadPoolExecutor(max_workers=2) as pool:
        failures = {name: reason for name, reason in pool.map(proc_one, todo) if reason}
    return failures


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


def check_scene(path: Path) -> tuple[str, str | None]:
    "Check the standalone camera-pose page: a WebGL canvas that shows the scene."
    name = path.name
    if not path.exists():
        return name, f"{path.relative_to(ROOT)} does not exist (run nbs/05_camera_poses.ipynb)"
    try:
        img = screenshot(path.as_uri(), SHOTS / f"{path.stem}.png", SCENE_SIZE, WEBGL_FLAGS)
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
    "Every notebook is in the sidebar; pages listed but not written yet are only reported."
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
    notebooks = sorted(p.relative_to(NBS).as_posix() for p in NBS.rglob("*.ipynb")
                       if not any(q.startswith((".", "_")) for q in p.relative_to(NBS).parts))
    pending = sorted({e for e in local if not (NBS / e).exists()})
    if pending:
        log(f"  sidebar pages not written yet: {', '.join(pending)}")
    unlisted = [nb for nb in notebooks if nb not in local]
    return "sidebar.yml", f"notebooks missing from the sidebar: {', '.join(unlisted)}" if unlisted else None


def main() -> int:
    t0 = time.perf_counter()
    if SHOTS.exists():
        shutil.rmtree(SHOTS)
    SHOTS.mkdir(parents=True)
    log("== nbdev_proc_nbs")
    proc_failures = proc_nbs()
    notebooks = sorted(p for p in PROC.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if not notebooks:
        log("FAIL docs: nbdev_proc_nbs produced no notebooks")
        return 1
    log(f"== nbconvert --to html: {len(notebooks)} notebooks ({time.perf_counter() - t0:.0f} s so far)")
    to_html(notebooks)
    log(f"== headless Chromium ({time.perf_counter() - t0:.0f} s so far)")
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(check_page, notebooks))
    results.append(check_scene(PROC / SCENE))
    results += sorted(proc_failures.items())
    results.append(check_sidebar())
    failed = 0
    for name, reason in results:
        if reason:
            failed += 1
            log(f"FAIL {name}: {reason}")
        else:
            log(f"PASS {name}")
    pages = len(results) - 1  # every result but the sidebar's is a page
    log(f"{len(results) - failed} passed, {failed} failed ({pages} pages: {pages - 1} notebooks and the 3D scene, "
        f"plus the sidebar; screenshots in {SHOTS.relative_to(ROOT)}/; {time.perf_counter() - t0:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
