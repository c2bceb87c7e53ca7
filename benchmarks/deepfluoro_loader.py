#!/usr/bin/env python
"""Benchmark the DeepFluoro loader against the reference package (`diffdrrdata` 0.0.7) and the HDF5 I/O floor.

Run on demand (it is not a test):

    python benchmarks/deepfluoro_loader.py

One run measures, on the same full-resolution DeepFluoro-format file (by default the synthetic one from
`diffdrr_data.synthetic.synthetic_deepfluoro()`), for subject 1:

- construction time of a `DeepFluoroDataset`;
- time per view of `ds[i]`, with and without preprocessing, in one process;
- views per second through a `torch.utils.data.DataLoader` with 0, 1 and 2 workers (batchless, batch size 4);
- peak resident memory (each implementation in its own process, so nothing is shared);
- the I/O floor: h5py reading one view's raw pixel array and nothing else.

Every implementation is measured in a child process: ours with this interpreter, the reference with the
interpreter of a separate environment where `diffdrrdata==0.0.7` is installed (`--reference-python`, default
`$DIFFDRR_BENCH_REFERENCE_PYTHON` or `/work/bench-env/bin/python`). When that interpreter or package is
missing the reference is skipped with a message and the rest still runs. The script prints a markdown table
and writes `deepfluoro_loader.json`, `deepfluoro_loader.md` and `deepfluoro_loader.png` to `--out`.

The reference reads its file from its own data home; the child points it at our file by replacing the
name `diffdrrdata.deepfluoro.load_file` in memory (no file of that package is modified).

This file must stay importable by a bare interpreter with only fastcore, numpy, h5py and torch installed
(the reference environment): everything else is imported inside the functions that need it.
"""
from __future__ import annotations

import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fastcore.script import call_parse

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results"
DEFAULT_REFERENCE_PYTHON = os.environ.get("DIFFDRR_BENCH_REFERENCE_PYTHON", "/work/bench-env/bin/python")
REFERENCE_VERSION = "0.0.7"
SPECIMEN = "17-1882"  # subject 1
IMPLS = ("floor", "ours", "reference")
EPOCH_VIEWS = 48  # views per timed DataLoader epoch (cycling over the timed views)
CHILD_FLAG = "--benchmark-child"  # argv[1] of a child process; argv[2] is its JSON spec


# --------------------------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------------------------
def stats(samples: list) -> dict:
    "Median, min, max and count of a list of numbers."
    samples = [float(s) for s in samples]
    return dict(median=statistics.median(samples), min=min(samples), max=max(samples), n=len(samples))


def peak_rss_mb() -> float:
    "Peak resident memory of this process so far (MB); Linux reports ru_maxrss in KiB, macOS in bytes."
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def current_rss_mb() -> float | None:
    "Current resident memory of this process (MB), from /proc when available."
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**10
    except OSError:
        return None


def versions() -> dict:
    import h5py
    import numpy
    import torch

    return dict(python=platform.python_version(), torch=torch.__version__, h5py=h5py.__version__,
                hdf5=h5py.version.hdf5_version, numpy=numpy.__version__, torch_threads=torch.get_num_threads(),
                executable=sys.executable)


def machine() -> dict:
    "CPU model, cores, RAM, OS and load of the machine this runs on."
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gb = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return dict(cpu=cpu, cores=cores, ram_gb=ram_gb, os=platform.platform(), load_average=list(os.getloadavg()))


def view_path(idx: int, dataset: str = "image/pixels") -> str:
    return f"{SPECIMEN}/projections/{idx:03d}/{dataset}"


def warm_page_cache(filename: str):
    "Read the whole file once so that every implementation sees a warm page cache."
    with open(filename, "rb") as f:
        while f.read(1 << 24):
            pass


# --------------------------------------------------------------------------------------------------------------
# the implementations, seen through one interface: a factory `make(preprocess, batchless) -> dataset`
# --------------------------------------------------------------------------------------------------------------
def ours_factory(filename: str):
    from diffdrr_data.deepfluoro import DeepFluoroDataset

    return lambda preprocess=True, batchless=False: DeepFluoroDataset(
        1, preprocess=preprocess, batchless=batchless, filename=filename)


def reference_factory(filename: str):
    import h5py
    import diffdrrdata
    import diffdrrdata.deepfluoro as ref

    if getattr(diffdrrdata, "__version__", None) != REFERENCE_VERSION:
        print(f"warning: benchmarking diffdrrdata {diffdrrdata.__version__}, not {REFERENCE_VERSION}", file=sys.stderr)

    def load_file(name):  # the reference opens its file through this name; point it at ours, read-only
        return h5py.File(filename, "r")

    ref.load_file = load_file
    return lambda preprocess=True, batchless=False: ref.DeepFluoroDataset(1, preprocess=preprocess, batchless=batchless)


def apply_patch(path: str):
    "Run a Python file before measuring (to try a change to the library by monkeypatching it)."
    code = compile(Path(path).read_text(), str(path), "exec")
    exec(code, {"__name__": "__benchmark_patch__", "__file__": str(path)})


# --------------------------------------------------------------------------------------------------------------
# measurements (run in a child process)
# --------------------------------------------------------------------------------------------------------------
def time_floor(filename: str, n_views: int, repeats: int) -> dict:
    "The I/O floor: h5py reading one view's raw pixel array (file already open) and nothing else."
    import h5py

    times = []
    with h5py.File(filename, "r") as f:
        n = min(n_views, len(f[f"{SPECIMEN}/projections"]))
        for _ in range(repeats):
            for i in range(n):
                dset = f[view_path(i)]
                t = time.perf_counter()
                dset[()]
                times.append(time.perf_counter() - t)
    return dict(time_per_view_s=stats(times), views=n)


def time_construction(make, repeats: int) -> dict:
    times = []
    for _ in range(repeats):
        gc.collect()
        t = time.perf_counter()
        ds = make(preprocess=True)
        times.append(time.perf_counter() - t)
        del ds
    return stats(times)


def time_getitem(ds, n: int, repeats: int) -> dict:
    "Time of `ds[i]` per call, over `repeats` passes through the first `n` views (one warm-up pass first)."
    for i in range(n):
        ds[i]
    times = []
    for _ in range(repeats):
        for i in range(n):
            t = time.perf_counter()
            ds[i]
            times.append(time.perf_counter() - t)
    return stats(times)


def time_dataloaders(ds, n: int, worker_counts: tuple, epochs: int, batch_size: int = 4, epoch_views: int = None) -> dict:
    """Views per second through a DataLoader for each worker count; an epoch is `epoch_views` indices cycling over
    the first `n` views. Epochs of the different worker counts alternate (0, 1, 2, 0, 1, 2, ...), so that load from
    other programs on the machine falls on all of them alike; the 1-minute load average is recorded."""
    import torch

    indices = [i % n for i in range(max(n, epoch_views or EPOCH_VIEWS))]  # start-up and the last batch don't dominate
    subset = torch.utils.data.Subset(ds, indices)
    loaders = {w: torch.utils.data.DataLoader(subset, batch_size=batch_size, num_workers=w, shuffle=False,
                                              persistent_workers=w > 0) for w in worker_counts}
    rates, errors = {w: [] for w in worker_counts}, {}
    load = [os.getloadavg()[0]]
    for epoch in range(epochs + 1):
        for w, loader in loaders.items():
            if w in errors:
                continue
            try:
                t = time.perf_counter()
                seen = sum(img.shape[0] for img, pose in loader)
                dt = time.perf_counter() - t
            except Exception as e:  # a loader that cannot run in workers is a result, not a crash
                errors[w] = dict(error=f"{type(e).__name__}: {e}")
                continue
            if epoch:  # epoch 0 starts the workers and warms up
                rates[w].append(seen / dt)
        load.append(os.getloadavg()[0])
    del loaders
    out = {str(w): errors.get(w) or dict(stats(rates[w]), load_average=[min(load), max(load)]) for w in worker_counts}
    return out


def profile_getitem(ds, n: int, repeats: int, top: int = 12) -> list:
    "cProfile of `ds[i]` over the first `n` views: the functions with the most own time, per view (ms)."
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repeats):
        for i in range(n):
            ds[i]
    profiler.disable()
    st = pstats.Stats(profiler)
    calls = n * repeats
    total = sum(v[2] for v in st.stats.values())
    rows = sorted(st.stats.items(), key=lambda kv: -kv[1][2])[:top]
    return [dict(function=f"{Path(file).name}:{line}({name})" if file != "~" else name, ncalls_per_view=v[1] / calls,
                 own_ms_per_view=1e3 * v[2] / calls, share=v[2] / total) for (file, line, name), v in rows]


def run_child(impl: str, filename: str, n_views: int, repeats: int, epochs: int, task: str, patch: str | None,
              epoch_views: int = EPOCH_VIEWS) -> dict:
    if impl == "floor":
        return dict(versions=versions(), floor=time_floor(filename, n_views, repeats), peak_rss_mb=peak_rss_mb())
    base = dict(versions=versions())
    make = reference_factory(filename) if impl == "reference" else ours_factory(filename)
    if patch:
        apply_patch(patch)
    base["rss_after_import_mb"] = current_rss_mb()
    if task == "memory":  # construct, read every view once with preprocessing: the peak a user sees
        ds = make(preprocess=True)
        for i in range(min(n_views, len(ds))):
            ds[i]
        base["peak_rss_mb"] = peak_rss_mb()
        return base
    base["construction_s"] = time_construction(make, repeats)
    ds_pre, ds_raw = make(preprocess=True), make(preprocess=False)
    n = min(n_views, len(ds_pre))
    base["views"] = n
    base["getitem_preprocess_s"] = time_getitem(ds_pre, n, repeats)
    base["getitem_raw_s"] = time_getitem(ds_raw, n, repeats)
    base["profile_preprocess"] = profile_getitem(ds_pre, n, max(1, repeats // 2))
    del ds_raw
    ds_loader = make(preprocess=True, batchless=True)
    base["dataloader_views_per_s"] = time_dataloaders(ds_loader, n, (0, 1, 2), epochs, epoch_views=epoch_views)
    return base


# --------------------------------------------------------------------------------------------------------------
# the parent: one child per implementation, then the table, the JSON and the plot
# --------------------------------------------------------------------------------------------------------------
def reference_available(python: str) -> str | None:
    "None when `python` can import diffdrrdata, else the reason it cannot."
    if not Path(python).exists():
        return f"no interpreter at {python}"
    r = subprocess.run([python, "-c", "import diffdrrdata, h5py, torch, fastcore; print(diffdrrdata.__version__)"],
                       capture_output=True, text=True)
    if r.returncode:
        return f"{python} cannot import diffdrrdata: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}"
    return None


def spawn(python: str, impl: str, filename: str, args: dict, task: str = "time", patch: str | None = None) -> dict:
    "Run one implementation's measurements in a fresh `python` process and return its results."
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        spec = dict(impl=impl, task=task, filename=str(filename), json_out=str(out), patch=patch and str(patch), **args)
        # the child protocol bypasses the CLI: fastcore versions differ on `--a_b` vs `--a-b` and the reference env has its own
        cmd = [python, str(Path(__file__).resolve()), CHILD_FLAG, json.dumps(spec)]
        r = subprocess.run(cmd, env=dict(os.environ, PYTHONWARNINGS="ignore"))
        if r.returncode or not out.exists():
            raise RuntimeError(f"the {impl} child ({task}) failed with exit code {r.returncode}: {' '.join(cmd)}")
        return json.loads(out.read_text())


def fmt(s: dict | None, scale: float = 1.0, digits: int = 1) -> str:
    if not s or "median" not in s:
        return "—" if not s or "error" not in s else "error"
    return f"{s['median'] * scale:.{digits}f} ({s['min'] * scale:.{digits}f}–{s['max'] * scale:.{digits}f})"


def ratio(a: dict | None, b: dict | None) -> str:
    if not a or not b or "median" not in a or "median" not in b or not b["median"]:
        return "—"
    return f"{a['median'] / b['median']:.2f}"


def rows(results: dict) -> list:
    "(label, ours, reference, floor, ours/reference, ours/floor) rows of the summary table."
    impls = results["implementations"]
    ours, ref, floor = impls.get("ours", {}), impls.get("reference") or {}, impls["floor"]["floor"]["time_per_view_s"]
    extra = {k: v for k, v in impls.items() if k not in IMPLS}
    table = []

    def add(label, key, scale, digits, sub=None, floor_stat=None):
        get = (lambda d: (d.get(key) or {}).get(sub)) if sub is not None else (lambda d: d.get(key))
        o, r = get(ours), get(ref)
        row = [label, fmt(o, scale, digits), fmt(r, scale, digits), fmt(floor_stat, scale, digits) if floor_stat else "",
               ratio(o, r), ratio(o, floor_stat) if floor_stat else ""]
        row += [fmt(get(e), scale, digits) for e in extra.values()]
        table.append(row)

    add("construction (s)", "construction_s", 1, 2)
    add("time per view, preprocessing (ms)", "getitem_preprocess_s", 1e3, 1, floor_stat=floor)
    add("time per view, raw (ms)", "getitem_raw_s", 1e3, 1, floor_stat=floor)
    for w in ("0", "1", "2"):
        add(f"DataLoader, {w} worker{'s' if w != '1' else ''} (views/s)", "dataloader_views_per_s", 1, 1, sub=w)
    mem = results.get("memory", {})
    for impl_rows in [("peak RSS (MB)", "peak_rss_mb"), ("RSS after imports (MB)", "rss_after_import_mb")]:
        label, key = impl_rows
        o, r = (mem.get("ours") or {}).get(key), (mem.get("reference") or {}).get(key)
        row = [label, f"{o:.0f}" if o else "—", f"{r:.0f}" if r else "—", "", f"{o / r:.2f}" if o and r else "—", ""]
        row += [f"{(mem.get(e) or {}).get(key, 0):.0f}" for e in extra]
        table.append(row)
    return table


def markdown_table(results: dict) -> str:
    extra = [k for k in results["implementations"] if k not in IMPLS]
    header = ["measure (median (min–max))", "ours", "reference", "I/O floor", "ours / reference", "ours / floor"] + extra
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows(results)]
    return "\n".join(lines)


def check_targets(results: dict) -> dict:
    "The issue's targets, each as (value, limit, met)."
    impls = results["implementations"]
    ours, ref = impls["ours"], impls.get("reference")
    floor = impls["floor"]["floor"]["time_per_view_s"]["median"]
    t_ours = ours["getitem_preprocess_s"]["median"]
    dl = ours["dataloader_views_per_s"]
    targets = {}
    if ref and "getitem_preprocess_s" in ref:
        t_ref = ref["getitem_preprocess_s"]["median"]
        targets["time per view <= 1/4 of the reference's"] = dict(value=t_ours / t_ref, limit=0.25, met=t_ours <= t_ref / 4)
        c_ours, c_ref = ours["construction_s"]["median"], ref["construction_s"]["median"]
        targets["construction <= the reference's"] = dict(value=c_ours / c_ref, limit=1.0, met=c_ours <= c_ref)
    targets["time per view <= 2x the I/O floor"] = dict(value=t_ours / floor, limit=2.0, met=t_ours <= 2 * floor)
    if "median" in dl.get("2", {}) and "median" in dl.get("0", {}):
        speedup = dl["2"]["median"] / dl["0"]["median"]
        targets["2 DataLoader workers >= 1.7x the views/s of 0"] = dict(value=speedup, limit=1.7, met=speedup >= 1.7)
    return targets


def short(name: str) -> str:
    "A label short enough for a plot's axis: ours+07_proposed_patch -> ours+patch."
    return name.replace("07_proposed_", "").replace("proposed_", "")


def plot(results: dict, path: Path):
    "Three panels: time per view (with the I/O floor), DataLoader throughput by workers, construction time."
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    impls = results["implementations"]
    names = [k for k in impls if k != "floor"]
    colors = {name: plt.cm.tab10(i) for i, name in enumerate(names)}
    width = 0.8 / len(names)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))

    def bar(ax, x, s, name, scale=1.0, hatch=None):
        m, lo, hi = s["median"] * scale, s["min"] * scale, s["max"] * scale
        ax.bar(x, m, width=width, color=colors[name], hatch=hatch, edgecolor="white")
        ax.errorbar(x, m, yerr=[[m - lo], [hi - m]], color="k", capsize=3, lw=1)

    ax = axes[0]
    for j, name in enumerate(names):
        for k, key in enumerate(("getitem_raw_s", "getitem_preprocess_s")):
            bar(ax, k + (j - (len(names) - 1) / 2) * width, impls[name][key], name, 1e3)
    floor = impls["floor"]["floor"]["time_per_view_s"]["median"] * 1e3
    ax.axhline(floor, color="0.3", ls="--", lw=1, label=f"I/O floor {floor:.0f} ms")
    ax.axhline(2 * floor, color="0.3", ls=":", lw=1, label="2 x floor")
    ax.set_xticks([0, 1], ["raw", "preprocessed"])
    ax.set_ylabel("time per view (ms, median, min-max)")
    ax.set_title("ds[i], one process")
    ax.legend(fontsize=8)

    ax = axes[1]
    for j, name in enumerate(names):
        dl = impls[name]["dataloader_views_per_s"]
        for w in (0, 1, 2):
            if "median" in dl.get(str(w), {}):
                bar(ax, w + (j - (len(names) - 1) / 2) * width, dl[str(w)], name)
    ax.set_xticks([0, 1, 2], ["0", "1", "2"])
    ax.set_xlabel("DataLoader workers (batchless, batch size 4)")
    ax.set_ylabel("views / s (preprocessed)")
    ax.set_title("DataLoader throughput")

    ax = axes[2]
    for j, name in enumerate(names):
        bar(ax, j * width, impls[name]["construction_s"], name)
    ax.set_xticks([])
    ax.set_ylabel("seconds")
    ax.set_title("construction of one subject")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[n]) for n in names]
    fig.legend(handles, [short(n) for n in names], loc="lower center", ncol=len(names), frameon=False)
    m = results["machine"]
    fig.suptitle(f"DeepFluoro loader, subject 1, {results['views']} views of {results['image_size']} px; "
                 f"{m['cpu']}, {m['cores']} cores", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def file_summary(filename: str) -> dict:
    import h5py

    with h5py.File(filename, "r") as f:
        d = f[view_path(0)]
        return dict(path=str(filename), size_mb=round(os.path.getsize(filename) / 2**20, 1),
                    views_subject_1=len(f[f"{SPECIMEN}/projections"]), image_shape=list(d.shape),
                    image_dtype=str(d.dtype), chunks=list(d.chunks) if d.chunks else None,
                    compression=d.compression, compression_opts=d.compression_opts, shuffle=d.shuffle)


def default_file() -> str:
    from diffdrr_data.synthetic import synthetic_deepfluoro

    return str(synthetic_deepfluoro())


def with_float32_metadata(src: str, dst: str) -> str:
    """Copy `src` to `dst` with its small float64 arrays (poses, landmarks, matrices) stored as float32.

    The reference composes the file's poses and landmarks with float32 tensors and fails on float64 ones, so it
    expects them as float32 (as in the real file). Pixel arrays (> 64 elements) are copied as they are, with their
    chunking and compression (HDF5 copies the stored chunks), so reading them costs exactly what it does in `src`."""
    import h5py
    import numpy as np

    with h5py.File(src, "r") as fin, h5py.File(dst, "w") as fout:
        def visit(name, obj):
            if isinstance(obj, h5py.Group):
                fout.require_group(name)
            elif obj.size > 64 or obj.dtype != np.float64:
                fin.copy(obj, fout, name=name)
            else:
                fout.create_dataset(name, data=obj[()].astype(np.float32))

        fin.visititems(visit)
    return dst


def child_main(spec: str):
    "Entry point of a child process: measure one implementation as `spec` (JSON) says, write the results."
    spec = json.loads(spec)
    result = run_child(spec["impl"], spec["filename"], spec["views"], spec["repeats"], spec["epochs"], spec["task"],
                       spec["patch"], spec["epoch_views"])
    Path(spec["json_out"]).write_text(json.dumps(result))


if __name__ == "__main__" and sys.argv[1:2] == [CHILD_FLAG]:
    child_main(sys.argv[2])
    sys.exit(0)


def has_float64_poses(filename: str) -> bool:
    "Whether subject 1's poses or landmarks are stored as float64 (the reference only reads float32 ones)."
    import h5py
    import numpy as np

    with h5py.File(filename, "r") as f:
        sp = f[SPECIMEN]
        pose = sp["projections"][sorted(sp["projections"])[0]]["gt-poses/cam-to-pelvis-vol"]
        landmark = sp["vol-landmarks"][sorted(sp["vol-landmarks"])[0]]
        return pose.dtype == np.float64 or landmark.dtype == np.float64


def summary_text(results: dict) -> str:
    "The report printed at the end of a run and written to deepfluoro_loader.md."
    m, v = results["machine"], results["implementations"]["ours"]["versions"]
    header = (f"DeepFluoro loader benchmark, subject 1, {results['views']} views of {results['image_size']} px, "
              f"{results['repeats']} repeats, {results['epochs']} DataLoader epochs of {results['epoch_views']} views\n\n"
              f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM; python {v['python']}, "
              f"torch {v['torch']}, h5py {v['h5py']} (HDF5 {v['hdf5']}), numpy {v['numpy']}; load average "
              f"{results['load_average_start'][0]:.2f} at start, {results['load_average_end'][0]:.2f} at end\n")
    targets = "\n".join(f"- {'MET   ' if t['met'] else 'MISSED'} {name}: {t['value']:.2f} (limit {t['limit']})"
                        for name, t in results["targets"].items())
    return f"{header}\n{results['table_markdown']}\n\nTargets (ours):\n{targets}\n"


@call_parse
def main(
    filename: str = None,  # DeepFluoro-format HDF5 file; default: the full-resolution synthetic file
    views: int = 24,  # views of subject 1 to time (the first `views`; the default synthetic file has 3)
    repeats: int = 5,  # passes over the views (and constructions) per measurement
    epochs: int = 3,  # timed DataLoader epochs per worker count, after one warm-up epoch
    epoch_views: int = EPOCH_VIEWS,  # views per DataLoader epoch (cycling over the timed views)
    out: str = str(DEFAULT_OUT),  # folder for deepfluoro_loader.{json,md,png}
    reference_python: str = DEFAULT_REFERENCE_PYTHON,  # interpreter of the environment with diffdrrdata 0.0.7
    skip_reference: bool = False,  # do not measure the reference
    patch: str = None,  # comma-separated Python files, each monkeypatching our library: one extra column each
):
    "Benchmark DeepFluoroDataset (ours and the reference package's) against the HDF5 I/O floor."
    args = dict(views=views, repeats=repeats, epochs=epochs, epoch_views=epoch_views)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    reason = "skipped by --skip_reference" if skip_reference else reference_available(reference_python)
    if reason:
        print(f"Reference implementation SKIPPED ({reason}). To include it: python -m venv ENV && "
              f"ENV/bin/pip install torch torchvision diffdrrdata=={REFERENCE_VERSION} 'numpy<2.4', then pass "
              f"--reference_python ENV/bin/python.", file=sys.stderr)
    source = filename or default_file()
    workdir = tempfile.TemporaryDirectory(prefix="deepfluoro-bench-")
    filename = source
    if not reason and has_float64_poses(source):
        filename = with_float32_metadata(source, str(Path(workdir.name) / Path(source).name))
    summary = file_summary(filename)
    summary["source"] = str(source)
    if filename != source:
        summary["note"] = ("a copy of the source whose small float64 arrays are float32, as the reference needs; "
                           "pixel arrays copied unchanged (same chunks and compression); both implementations read it")
    n = min(views, summary["views_subject_1"])
    load_start = os.getloadavg()
    print(f"File {filename}: {summary}\nload average at start: {load_start}", flush=True)
    warm_page_cache(filename)
    plan = [("floor", "floor", sys.executable, None), ("ours", "ours", sys.executable, None)]
    if not reason:
        plan.append(("reference", "reference", reference_python, None))
    for p in (patch or "").split(","):
        if p.strip():
            plan.append((f"ours+{Path(p.strip()).stem}", "ours", sys.executable, str(Path(p.strip()).resolve())))
    implementations, memory = {}, {}
    for label, impl, python, p in plan:
        print(f"-- {label}: timing", flush=True)
        t = time.perf_counter()
        implementations[label] = spawn(python, impl, filename, args, "time", p)
        print(f"   done in {time.perf_counter() - t:.0f} s", flush=True)
        if impl != "floor":
            memory[label] = spawn(python, impl, filename, args, "memory", p)
    workdir.cleanup()
    results = dict(
        benchmark="deepfluoro_loader", created=time.strftime("%Y-%m-%d %H:%M:%S %Z"), file=summary, views=n,
        image_size=f"{summary['image_shape'][0]} x {summary['image_shape'][1]}", repeats=repeats, epochs=epochs,
        batch_size=4, epoch_views=epoch_views, machine=machine(), load_average_start=list(load_start),
        load_average_end=list(os.getloadavg()), reference_skipped=reason,
        reference_version=None if reason else REFERENCE_VERSION, command=" ".join(["python"] + sys.argv),
        implementations=implementations, memory=memory,
    )
    results["targets"] = check_targets(results)
    results["table_markdown"] = markdown_table(results)
    report = summary_text(results)
    print("\n" + report)
    (out / "deepfluoro_loader.json").write_text(json.dumps(results, indent=1))
    (out / "deepfluoro_loader.md").write_text(report)
    plot(results, out / "deepfluoro_loader.png")
    print(f"Wrote {out / 'deepfluoro_loader.json'}, {out / 'deepfluoro_loader.md'}, {out / 'deepfluoro_loader.png'}")
