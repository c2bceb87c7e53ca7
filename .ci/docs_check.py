#!/usr/bin/env python
"""The documentation pages, built as far as Quarto (not installed here) and opened in headless Chromium.
usage: python .ci/docs_check.py [--artifacts DIR]    (.ci/test runs it on a copy of the working tree)
1. `nbdev_proc_nbs` processes the notebooks into `_proc/` (with a stand-in `quarto` that refuses to run first on its
   PATH where there is none: nbdev only checks that there is one, and would install Quarto with sudo).
2. `jupyter nbconvert --to html` makes each a page from its saved outputs; headless Chromium screenshots it into
   DIR/screenshots/. A page fails on a problem of .ci/outputs_check.py in its notebook (a drawing cell without its
   figure, an error, a machine path), a figure of the notebook not in the page as an image that decodes, a missing
   local image or frame, or a blank screenshot. 3. The 3D scenes (`.html` resources in nbs/_quarto.yml) must show
   cameras in a WebGL screenshot. 4. Every notebook is listed in nbs/sidebar.yml.
"""
import base64, contextlib, html, io, json, os, re, shutil, subprocess, sys, tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import numpy as np, yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from outputs_check import ROOT, notebooks, problems

NBS, PROC = ROOT / "nbs", ROOT / "_proc"
ART = Path(sys.argv[sys.argv.index("--artifacts") + 1]) if "--artifacts" in sys.argv else ROOT / ".ci" / "artifacts"
SHOTS = ART.resolve() / "screenshots"
CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"))), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run", "--virtual-time-budget=8000",
         "--disable-background-networking", "--disable-component-update"]
WEBGL = "--enable-unsafe-swiftshader"  # WebGL without a GPU (`--use-gl=swiftshader` draws a blank canvas in Chromium 13x)

def proc_nbs(*args: str) -> str | None:
    "Run `nbdev_proc_nbs ARGS`, which processes into `_proc/` the notebooks not there yet; its error output if it fails."
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as bin_dir:
        if not shutil.which("quarto"):
            (fake := Path(bin_dir) / "quarto").write_text("#!/bin/sh\necho 'no quarto here (.ci/docs_check.py)' >&2; exit 1\n")
            fake.chmod(0o755)
            env["PATH"] = bin_dir + os.pathsep + env["PATH"]
        run = subprocess.run(["nbdev_proc_nbs", "--n_workers", "2", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    return run.stderr.strip() or "(no output)" if run.returncode else None

def screenshot(url: str, png: Path, size: str, *extra: str) -> np.ndarray:
    if not CHROMIUM:
        raise RuntimeError("no Chromium on PATH (Debian: apt-get install chromium; .ci/test installs it when root)")
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        run = subprocess.run([CHROMIUM, *FLAGS, *extra, f"--user-data-dir={profile}", f"--window-size={size}",
                              f"--screenshot={png}", url], capture_output=True, text=True, timeout=120)
    if not png.exists():
        raise RuntimeError(f"Chromium wrote no screenshot (exit {run.returncode}): {run.stderr.strip()[-200:]}")
    return np.asarray(Image.open(png).convert("RGB"), dtype=np.float32)

def check_page(nb: Path) -> tuple[str, list[str]]:
    "One processed notebook and its page."
    name, page = nb.relative_to(PROC).with_suffix("").as_posix(), nb.with_suffix(".html")
    reasons = list(problems(NBS / nb.relative_to(PROC)))
    if not page.exists():
        return name, reasons + ["nbconvert wrote no page"]
    text = page.read_text(encoding="utf-8", errors="replace")
    outputs = [o for cell in json.loads(nb.read_text())["cells"] for o in cell.get("outputs", [])]
    expected = sum(any(m.startswith("image/") for m in o.get("data", {})) for o in outputs)
    found = text.count('<div class="jp-RenderedSVG')
    for data in re.findall(r'<img[^>]*src="data:image/(?:png|jpeg|gif);base64,([^"]+)"', text):
        with contextlib.suppress(Exception):  # a figure that does not decode is not found
            Image.open(io.BytesIO(base64.b64decode(data))).load()
            found += 1
    if found < expected:
        reasons.append(f"{expected} figures in the notebook, {found} in the page that decode")
    for src in re.findall(r'<(?:img|iframe)[^>]*\ssrc="([^"]+)"', text):
        src = html.unescape(src).split("#")[0].split("?")[0]
        if src and not re.match(r"(data:|[a-z]+://|//)", src) and not (page.parent / src).exists():
            reasons.append(f"missing {src}")
    try:
        if screenshot(page.as_uri(), SHOTS / f"{name}.png", "1280,6000").std() < 2:
            reasons.append("the screenshot is blank")
    except Exception as e:
        reasons.append(f"screenshot failed: {e}")
    return name, reasons

def check_scene(rel: str) -> tuple[str, list[str]]:
    "A standalone 3D page: its WebGL canvas shows cameras (pixels unlike the background, in the subjects' colours)."
    if not (PROC / rel).exists():
        return rel, [f"nbs/{rel} does not exist (its notebook writes it; nbs/_quarto.yml lists it)"]
    try:
        img = screenshot((PROC / rel).as_uri(), SHOTS / Path(rel).with_suffix(".png"), "1024,768", WEBGL)
    except Exception as e:
        return rel, [f"screenshot failed: {e}"]
    drawn = np.abs(img - np.median(img[[0, 0, -1, -1], [0, -1, 0, -1]], axis=0)).max(-1) > 12  # unlike the corners
    bright, dark = img.max(-1), img.min(-1)
    coloured = int((((bright - dark) / np.maximum(bright, 1) > 0.3) & (bright > 60) & drawn).sum())
    print(f"  3D scene {rel}: {drawn.mean():.1%} of the pixels drawn, {coloured} in the subjects' colours")
    reasons = [f"blank canvas ({drawn.mean():.2%} of the pixels drawn)"] if drawn.mean() < 0.001 else []
    return rel, reasons + ([f"no cameras ({coloured} pixels in their colours)"] if coloured < 100 else [])

def check_sidebar() -> tuple[str, list[str]]:
    listed = set(re.findall(r"^[^#\n]*?([\w./-]+\.ipynb)", (NBS / "sidebar.yml").read_text(), re.M))  # not in comments
    missing = [nb.relative_to(NBS).as_posix() for nb in notebooks() if nb.relative_to(NBS).as_posix() not in listed]
    return "sidebar.yml", [f"notebooks missing from it: {', '.join(missing)}"] if missing else []

def main() -> int:
    for stale in (SHOTS, PROC):
        shutil.rmtree(stale, ignore_errors=True)
    unprocessed = []
    if first := proc_nbs():  # it stops at the first notebook that fails: each notebook it left out then runs alone
        for nb in [nb for nb in notebooks() if not (PROC / nb.relative_to(NBS)).exists()]:
            if error := proc_nbs("--skip_file_re", f"^(?!{re.escape(nb.name)}$)"):  # nbdev skips every other file
                print(f"nbdev_proc_nbs failed on {nb.relative_to(NBS)}:\n{error}\n")
                unprocessed.append((nb.relative_to(NBS).with_suffix("").as_posix(), ["nbdev_proc_nbs failed on it (above)"]))
        unprocessed = unprocessed or [("nbdev_proc_nbs", [f"failed, but not on any notebook alone: {first[-300:]}"])]
    processed = sorted(p for p in PROC.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    print(f"== nbdev_proc_nbs processed {len(processed)} notebooks; nbconvert and Chromium make and open their pages", flush=True)
    # nbconvert logs nbdev's extra notebook keys as validation errors, and converts all the same
    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", *map(str, processed)], cwd=PROC, capture_output=True)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(check_page, processed))
    results += unprocessed
    resources = yaml.safe_load((NBS / "_quarto.yml").read_text()).get("project", {}).get("resources") or []
    results += [check_scene(r) for r in ([resources] if isinstance(resources, str) else resources) if r.endswith(".html")]
    results.append(check_sidebar())
    for name, reasons in results:
        print(f"FAIL {name}: {'; '.join(reasons)}" if reasons else f"PASS {name}")
    failed = sum(bool(reasons) for _, reasons in results)
    print(f"{len(results) - failed} passed, {failed} failed (screenshots in {SHOTS}/)")
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main())
