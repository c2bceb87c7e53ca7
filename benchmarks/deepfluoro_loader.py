#!/usr/bin/env python
"""Benchmark the DeepFluoro loader against the reference package (`diffdrrdata` 0.0.7) and the HDF5 I/O floor.

Run on demand (it is not a test), from the root of the repository, in the package's environment:

    python benchmarks/deepfluoro_loader.py

The reference is measured side by side when an interpreter that can import `diffdrrdata` is given
(`--reference_python PATH`), named by `$DIFFDRR_BENCH_REFERENCE_PYTHON`, or is this interpreter itself; otherwise
the script says so and measures ours against the floor alone. To make such an interpreter:

    python -m venv ref-env
    ref-env/bin/pip install torch==2.14.1 torchvision==0.29.1    # the torch of our environment, installed first
    ref-env/bin/pip install diffdrrdata==0.0.7 "numpy<2.4"        # 0.0.7 fails on numpy 2.4

One run measures, on the full-resolution DeepFluoro-format file (by default the synthetic one of
`diffdrr_data.synthetic.synthetic_deepfluoro()`, 1536 x 1536 X-rays), stored two ways, for subject 1:

- the time per view of `ds[i]`, with and without preprocessing, for ours and the reference, next to the I/O floor
  (h5py reading the view's pixel array and nothing else). The implementations run in persistent processes of
  their own and are measured in alternating rounds, so that load from other programs falls on all of them alike;
- construction time, and views per second through a `DataLoader` with 0, 1 and 2 workers;
- `preprocess` alone on one view, with one thread and with the default number;
- on the gzip file, the floor with the view's chunks decoded by two threads instead of one;
- the worker payload (`len(pickle.dumps(ds))`) and the peak resident memory (VmHWM) of the parent and of each of
  2 spawn `DataLoader` workers, for our dataset as it is ("after") and as it pickled before, with its CT ("before").

The two files are copies of the source written with h5py: "uncompressed" (contiguous datasets, no filter) and
"gzip" (the X-rays gzip-compressed in chunks, as the source stores them). In both, the small float64 arrays
(poses, landmarks, matrices) are stored as float32, as the reference needs. The reference reads its file from
`~/user/diffdrr_data/ipcai_2020_full_res_data.h5`; its process gets a `HOME` holding a link of that name to the
file, and nothing of the package is modified. The script prints the tables and writes `deepfluoro_loader.json`,
`deepfluoro_loader.md` and `deepfluoro_loader.png` to `--out`.

This file must stay importable by an interpreter with only fastcore, numpy, h5py and torch (the reference
environment): everything else is imported where it is needed.
"""
from __future__ import annotations

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
REFERENCE_VERSION = "0.0.7"
REFERENCE_ENV = "DIFFDRR_BENCH_REFERENCE_PYTHON"
REFERENCE_NAME = "ipcai_2020_full_res_data.h5"  # the file name the reference opens in its data home
SPECIMEN = "17-1882"  # subject 1
VARIANTS = ("uncompressed", "gzip")
CHILD_FLAG = "--benchmark-child"  # argv[1] of a child process; argv[2] is its JSON spec
SETTLE_S = 0.05  # pause before each command to a child (s)


# --------------------------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------------------------
def stats(samples: list) -> dict:
    "Median, min, max and count of a list of numbers."
    samples = [float(s) for s in samples]
    return dict(median=statistics.median(samples), min=min(samples), max=max(samples), n=len(samples))


def peak_rss_mb() -> float:
    "Peak resident memory of this process so far (MB): VmHWM on Linux (ru_maxrss of a spawned process includes its parent's)."
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def versions() -> dict:
    import h5py
    import numpy
    import torch

    return dict(python=platform.python_version(), torch=torch.__version__, h5py=h5py.__version__,
                hdf5=h5py.version.hdf5_version, numpy=numpy.__version__, torch_threads=torch.get_num_threads())


def machine() -> dict:
    "CPU model, cores, RAM and OS of the machine this runs on."
    cpu = platform.processor() or platform.machine()
    ram_gb = None
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name"))
        ram_gb = round(int(next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal:")).split()[1]) / 2**20, 1)
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return dict(cpu=cpu, cores=cores, ram_gb=ram_gb, os=platform.platform())


def view_path(idx: int) -> str:
    return f"{SPECIMEN}/projections/{idx:03d}/image/pixels"


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# --------------------------------------------------------------------------------------------------------------
# the two files
# --------------------------------------------------------------------------------------------------------------
def layout_copy(src: str, dst: str, compress: bool) -> str:
    """Copy the DeepFluoro-format file `src` to `dst`: uncompressed (contiguous datasets, no filter) or with gzip
    (datasets that `src` stores compressed are copied as stored, chunks and all; X-rays stored without compression
    are compressed with gzip level 4 and byte shuffling). Small float64 arrays (at most 64 values: poses, landmarks,
    matrices) are stored as float32, as in the real file and as the reference needs."""
    import h5py
    import numpy as np

    with h5py.File(src, "r") as fin, h5py.File(dst, "w") as fout:
        def visit(name, obj):
            if isinstance(obj, h5py.Group):
                fout.require_group(name)
            elif obj.size <= 64:
                data = obj[()]
                fout.create_dataset(name, data=data.astype(np.float32) if obj.dtype == np.float64 else data)
            elif compress and obj.compression:
                fin.copy(obj, fout, name=name)
            elif compress:
                fout.create_dataset(name, data=obj[()], compression="gzip", compression_opts=4, shuffle=True, chunks=True)
            else:
                fout.create_dataset(name, data=obj[()])

        fin.visititems(visit)
    return dst


def file_summary(filename: str) -> dict:
    import h5py

    with h5py.File(filename, "r") as f:
        d = f[view_path(0)]
        return dict(size_mb=round(os.path.getsize(filename) / 2**20, 1), views_subject_1=len(f[f"{SPECIMEN}/projections"]),
                    image_shape=list(d.shape), image_dtype=str(d.dtype), chunks=list(d.chunks) if d.chunks else None,
                    compression=d.compression, compression_opts=d.compression_opts, shuffle=d.shuffle,
                    stored_mb_per_view=round(d.id.get_storage_size() / 2**20, 2))


def reference_home(workdir: Path, variant: str, filename: str) -> str:
    "A HOME whose `~/user/diffdrr_data/ipcai_2020_full_res_data.h5` (where the reference looks) links to `filename`."
    data_home = workdir / f"home-{variant}" / "user" / "diffdrr_data"
    data_home.mkdir(parents=True, exist_ok=True)
    (data_home / REFERENCE_NAME).symlink_to(Path(filename).resolve())
    return str(data_home.parent.parent)


def warm_page_cache(filename: str):
    "Read the whole file once so that every implementation finds it in the page cache."
    with open(filename, "rb") as f:
        while f.read(1 << 24):
            pass


# --------------------------------------------------------------------------------------------------------------
# child side: one persistent process per implementation, driven by JSON commands on stdin
# --------------------------------------------------------------------------------------------------------------
def make_dataset(impl: str, variant: str, spec: dict, preprocess: bool, batchless: bool = False):
    if impl == "reference":
        import diffdrrdata.deepfluoro as ref

        os.environ["HOME"] = spec["homes"][variant]  # where the reference finds its data home
        return ref.DeepFluoroDataset(1, preprocess=preprocess, batchless=batchless)
    from diffdrr_data.deepfluoro import DeepFluoroDataset

    return DeepFluoroDataset(1, preprocess=preprocess, batchless=batchless, filename=spec["files"][variant])


def decode_threaded(dset, fd: int, out, pool):
    """Read a chunked, gzip-compressed (and possibly byte-shuffled) float32 dataset by decoding its chunks on the
    threads of `pool`: `os.pread` and `zlib.decompress` release the GIL, h5py is only asked where the chunks are."""
    import zlib

    import numpy as np

    rows, cols = dset.chunks
    shuffle, size = dset.shuffle, dset.dtype.itemsize
    infos = [dset.id.get_chunk_info(i) for i in range(dset.id.get_num_chunks())]

    def one(info):
        raw = np.frombuffer(zlib.decompress(os.pread(fd, info.size, info.byte_offset)), np.uint8)
        if shuffle:
            raw = raw.reshape(size, -1).T.copy()
        block = raw.view(dset.dtype).reshape(rows, cols)
        r, c = info.chunk_offset
        target = out[r : r + rows, c : c + cols]
        target[...] = block[: target.shape[0], : target.shape[1]]

    list(pool.map(one, infos, chunksize=max(1, len(infos) // 16)))
    return out


class Child:
    "The state of one implementation's process: its datasets, DataLoaders and open files, per file variant."

    def __init__(self, spec: dict):
        self.spec, self.impl, self.views = spec, spec["impl"], spec["views"]
        self.datasets, self.loaders, self.files, self.pools = {}, {}, {}, {}
        if spec.get("patch"):
            code = compile(Path(spec["patch"]).read_text(), spec["patch"], "exec")
            exec(code, {"__name__": "__benchmark_patch__", "__file__": spec["patch"]})

    def dataset(self, variant: str, preprocess: bool):
        key = (variant, preprocess)
        if key not in self.datasets:
            self.datasets[key] = make_dataset(self.impl, variant, self.spec, preprocess)
        return self.datasets[key]

    def construct(self, variant: str) -> list:
        return [timed(lambda: make_dataset(self.impl, variant, self.spec, True))]

    def getitem(self, variant: str, preprocess: bool) -> list:
        ds = self.dataset(variant, preprocess)
        return [timed(lambda: ds[i]) for i in range(min(self.views, len(ds)))]

    def h5(self, variant: str):
        import h5py

        if variant not in self.files:
            self.files[variant] = h5py.File(self.spec["files"][variant], "r")
        return self.files[variant]

    def floor(self, variant: str) -> list:
        f = self.h5(variant)
        return [timed(lambda: f[view_path(i)][()]) for i in range(self.views)]

    def floor_threaded_decode(self, variant: str, threads: int = 2) -> list:
        import numpy as np
        from concurrent.futures import ThreadPoolExecutor

        f = self.h5(variant)
        if f[view_path(0)].compression != "gzip":
            return []
        if threads not in self.pools:
            self.pools[threads] = ThreadPoolExecutor(threads)
        pool = self.pools[threads]
        fd = os.open(self.spec["files"][variant], os.O_RDONLY)
        try:
            times = []
            for i in range(self.views):
                dset = f[view_path(i)]
                out = np.empty(dset.shape, dset.dtype)
                times.append(timed(lambda: decode_threaded(dset, fd, out, pool)))
                assert np.array_equal(out, dset[()]), "threaded decoding differs from h5py's"
            return times
        finally:
            os.close(fd)

    def preprocess_only(self, variant: str, threads: int | None, stored: bool = False) -> list:
        "`preprocess` of each view: read beforehand (a tensor), or `stored`: given the h5py dataset, which it reads."
        import torch
        from diffdrr_data.preprocess import preprocess

        f = self.h5(variant)
        if stored:
            return [timed(lambda: preprocess(f[view_path(i)], threads=threads)) for i in range(self.views)]
        raws = [torch.from_numpy(f[view_path(i)][()]) for i in range(self.views)]
        return [timed(lambda: preprocess(raw, threads=threads)) for raw in raws]

    def loader(self, variant: str, workers: int, epoch_views: int, batch_size: int = 4) -> dict:
        "Views per second of one DataLoader epoch of `epoch_views` indices cycling over the views."
        import torch

        key = (variant, workers)
        if key not in self.loaders:
            ds = make_dataset(self.impl, variant, self.spec, True, batchless=True)
            subset = torch.utils.data.Subset(ds, [i % min(self.views, len(ds)) for i in range(epoch_views)])
            self.loaders[key] = torch.utils.data.DataLoader(subset, batch_size=batch_size, num_workers=workers,
                                                            persistent_workers=workers > 0)
        try:
            t = time.perf_counter()
            seen = sum(batch[0].shape[0] for batch in self.loaders[key])
            return dict(views_per_s=seen / (time.perf_counter() - t))
        except Exception as e:  # a loader that cannot run in workers is a result, not a crash
            return dict(error=f"{type(e).__name__}: {e}")

    def run(self, op: str, **kw):
        return getattr(self, op)(**kw)


def serve(spec: dict):
    "Answer JSON commands from stdin on a private copy of stdout; the libraries' own prints go to stderr."
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    child = Child(spec)
    out.write(json.dumps(dict(versions=versions())) + "\n")
    out.flush()
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "quit":
            break
        out.write(json.dumps(child.run(cmd.pop("op"), **cmd)) + "\n")
        out.flush()


class Process:
    "The parent's handle on a child process running `serve`."

    def __init__(self, python: str, spec: dict, env: dict | None = None):
        cmd = [python, str(Path(__file__).resolve()), CHILD_FLAG, json.dumps(spec)]
        self.name = spec["impl"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=dict(os.environ, PYTHONWARNINGS="ignore", **(env or {})))
        self.hello = self._read()

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} process ended (exit code {self.proc.wait()})")
        return json.loads(line)

    def __call__(self, op: str, **kw):
        # let the previous command's OpenMP threads (in whichever process) stop spinning first: after a parallel torch
        # operation they keep a core busy for a few milliseconds, which would be charged to the next measurement
        time.sleep(SETTLE_S)
        self.proc.stdin.write(json.dumps(dict(op=op, **kw)) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        self.proc.stdin.write(json.dumps(dict(op="quit")) + "\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=120)


# --------------------------------------------------------------------------------------------------------------
# worker payload and peak memory: one fresh process per measurement
# --------------------------------------------------------------------------------------------------------------
class RSSProbe:
    "A map-style dataset over `indices` of `ds` whose items also carry the reading process's id and peak RSS (MB)."

    def __init__(self, ds, indices: list):
        self.ds, self.indices = ds, indices

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        img, pose = self.ds[self.indices[i]]
        return img, pose, os.getpid(), peak_rss_mb()


try:  # only in our environment: the dataset as it pickled before the CT was left out of its pickle
    from diffdrr_data.deepfluoro import DeepFluoroDataset as _Ours

    class CarriesCT(_Ours):
        "`DeepFluoroDataset` pickled with its `torchio.Subject` (CT, labelmap, density), as before commit cc15343."

        def __getstate__(self):
            state = super().__getstate__()
            state["_subject"] = self._subject
            return state
except ImportError:
    CarriesCT = None


def proc_status_mb(field: str) -> float | None:
    "A memory field of /proc/self/status (VmRSS, VmHWM, RssShmem, ...) in MB; None where there is no /proc."
    try:
        line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field + ":"))
        return int(line.split()[1]) / 2**10
    except (OSError, StopIteration):
        return None


def memory_child(spec: dict) -> dict:
    """Payload of the dataset (plain pickle, and the pickle a spawn DataLoader sends, where torch puts tensors in
    shared memory), and peak RSS of this process and of each of 2 spawn DataLoader workers over one epoch."""
    import pickle
    from multiprocessing.reduction import ForkingPickler

    import torch
    import torch.multiprocessing  # registers torch's reductions: tensors travel as shared-memory handles
    from diffdrr_data.deepfluoro import DeepFluoroDataset

    cls = CarriesCT if spec["before"] else DeepFluoroDataset
    ds = cls(1, batchless=True, filename=spec["file"])
    payload = len(pickle.dumps(ds))
    rss_built = peak_rss_mb()
    probe = RSSProbe(ds, [i % len(ds) for i in range(spec["epoch_views"])])
    loader = torch.utils.data.DataLoader(probe, batch_size=4, num_workers=2, multiprocessing_context="spawn")
    workers = {}
    t = time.perf_counter()
    for _, _, pids, peaks in loader:
        for pid, peak in zip(pids.tolist(), peaks.tolist()):
            workers[pid] = max(workers.get(pid, 0.0), peak)
    epoch = time.perf_counter() - t
    return dict(payload_bytes=payload, spawn_payload_bytes=len(ForkingPickler.dumps(ds)), parent_peak_rss_mb=peak_rss_mb(),
                parent_peak_rss_after_construction_mb=rss_built, parent_shared_memory_mb=proc_status_mb("RssShmem"),
                worker_peak_rss_mb=sorted(workers.values()), epoch_s=epoch)


def child_main(spec: str):
    spec = json.loads(spec)
    if spec.get("task") == "memory":
        Path(spec["json_out"]).write_text(json.dumps(memory_child(spec)))
    else:
        serve(spec)


if __name__ == "__main__" and sys.argv[1:2] == [CHILD_FLAG]:
    child_main(sys.argv[2])
    sys.exit(0)


# --------------------------------------------------------------------------------------------------------------
# parent side
# --------------------------------------------------------------------------------------------------------------
def public_path(arg: str) -> str:
    """A command-line argument as the results show it: an absolute path loses the folders of the machine that ran
    it (relative to the repository if it is inside, else `<...>/` and its last three parts), each of a comma-separated
    list alike; anything else is kept."""
    if "," in arg:
        return ",".join(public_path(part) for part in arg.split(","))
    path = Path(arg)
    if not path.is_absolute():
        return arg
    if path.resolve().is_relative_to(HERE.parent):
        return str(path.resolve().relative_to(HERE.parent))
    return "<...>/" + "/".join(path.parts[-3:]) if len(path.parts) > 4 else "<...>/" + path.name


def find_reference(python: str | None) -> tuple:
    """(interpreter, version) of the reference, or (None, why not). Looked for in `python` if given, else in
    `$DIFFDRR_BENCH_REFERENCE_PYTHON` if set, else in this interpreter."""
    candidate = python or os.environ.get(REFERENCE_ENV) or sys.executable
    if not Path(candidate).exists():
        return None, f"no interpreter at {candidate}"
    r = subprocess.run([candidate, "-c", "import diffdrrdata, h5py, torch, fastcore; print(diffdrrdata.__version__)"],
                       capture_output=True, text=True)
    if r.returncode:
        last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit code {r.returncode}"
        return None, f"{candidate} cannot import diffdrrdata ({last})"
    return candidate, r.stdout.strip()


def spawn_memory(spec: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "memory.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), CHILD_FLAG, json.dumps(dict(spec, json_out=str(out)))]
        r = subprocess.run(cmd, env=dict(os.environ, PYTHONWARNINGS="ignore"))
        if r.returncode or not out.exists():
            raise RuntimeError(f"the memory child failed with exit code {r.returncode}")
        return json.loads(out.read_text())


def measure(procs: dict, files: dict, repeats: int, epochs: int, epoch_views: int, log) -> dict:
    """Every timing, in rounds that alternate the implementations (in a rotating order), so that the load of other
    programs falls on all of them alike. Returns {measure: {variant: {implementation: stats}}}."""
    names = list(procs)
    ours = procs["ours"]
    samples = {}

    def add(measure, variant, impl, values):
        samples.setdefault(measure, {}).setdefault(variant, {}).setdefault(impl, []).extend(values)

    for variant in files:  # warm-up: open the files, build the datasets, one pass each (not recorded)
        ours("floor", variant=variant)
        for p in procs.values():
            for pre in (True, False):
                p("getitem", variant=variant, preprocess=pre)
    for r in range(repeats):
        log(f"   round {r + 1}/{repeats}, load {os.getloadavg()[0]:.2f}")
        for variant in files:
            order = names[r % len(names):] + names[: r % len(names)]
            add("floor_s", variant, "floor", ours("floor", variant=variant))
            for name in order:
                add("construction_s", variant, name, procs[name]("construct", variant=variant))
                add("getitem_preprocess_s", variant, name, procs[name]("getitem", variant=variant, preprocess=True))
                add("getitem_raw_s", variant, name, procs[name]("getitem", variant=variant, preprocess=False))
            add("preprocess_only_s", variant, "1 thread", ours("preprocess_only", variant=variant, threads=1))
            add("preprocess_only_s", variant, "default threads", ours("preprocess_only", variant=variant, threads=None))
            add("preprocess_only_s", variant, "default threads, reading the h5py dataset itself",
                ours("preprocess_only", variant=variant, threads=None, stored=True))
            for threads in (1, 2):
                decoded = ours("floor_threaded_decode", variant=variant, threads=threads)
                if decoded:
                    add("floor_threaded_decode_s", variant, f"chunks decoded by zlib, {threads} thread{'s' * (threads > 1)}", decoded)
    for variant in files:  # DataLoader epochs alternate implementations and worker counts
        for epoch in range(epochs + 1):
            log(f"   DataLoader, {variant}, epoch {epoch}/{epochs}, load {os.getloadavg()[0]:.2f}")
            for name in names:
                for w in (0, 1, 2):
                    res = procs[name]("loader", variant=variant, workers=w, epoch_views=epoch_views)
                    if epoch and "views_per_s" in res:  # epoch 0 starts the workers
                        add(f"dataloader_{w}_views_per_s", variant, name, [res["views_per_s"]])
                    elif "error" in res:
                        samples.setdefault("errors", {}).setdefault(variant, {})[f"{name}, {w} workers"] = res["error"]
    errors = samples.pop("errors", {})
    out = {m: {v: {i: stats(s) for i, s in d.items()} for v, d in per.items()} for m, per in samples.items()}
    out["errors"] = errors
    return out


def cell(s: dict | None, scale: float = 1.0, digits: int = 1) -> str:
    if not s or "median" not in s:
        return "—"
    return f"{s['median'] * scale:.{digits}f} ({s['min'] * scale:.{digits}f}–{s['max'] * scale:.{digits}f})"


def ratio(a: dict | None, b: dict | None) -> str:
    return f"{a['median'] / b['median']:.2f}" if a and b and b.get("median") else "—"


def timing_table(results: dict) -> str:
    "Markdown: per view, construction and DataLoader rows for each file variant; extra columns for patched ours."
    t = results["timings"]
    extra = [n for n in results["implementations"] if n not in ("ours", "reference")]
    header = ["file", "measure (median (min–max))", "ours", "reference", "I/O floor", "ours faster by (x)",
              "ours / floor"] + extra
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---", "---"] + ["---:"] * (len(header) - 2)) + "|"]
    rows = [("time per view, preprocessed (ms)", "getitem_preprocess_s", 1e3, True),
            ("time per view, raw (ms)", "getitem_raw_s", 1e3, True), ("construction (s)", "construction_s", 1, False)]
    rows += [(f"DataLoader, {w} worker{'' if w == 1 else 's'} (views/s)", f"dataloader_{w}_views_per_s", 1, False) for w in (0, 1, 2)]
    for variant in results["files"]:
        floor = t["floor_s"][variant]["floor"]
        for label, key, scale, with_floor in rows:
            d = t.get(key, {}).get(variant, {})
            o, r = d.get("ours"), d.get("reference")
            speed = ratio(r, o) if key.endswith("_s") and "views" not in key else ratio(o, r)
            row = [variant, label, cell(o, scale, 1 if scale > 1 else 2), cell(r, scale, 1 if scale > 1 else 2),
                   cell(floor, scale) if with_floor else "", speed, ratio(o, floor) if with_floor else ""]
            row += [cell(d.get(e), scale, 1 if scale > 1 else 2) for e in extra]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def detail_table(results: dict) -> str:
    "Markdown: `preprocess` alone and the floor with threaded decoding, per file variant (ms per view)."
    t = results["timings"]
    lines = ["| file | measure (ms per view, median (min–max)) | value | / floor |", "|---|---|---:|---:|"]
    for variant in results["files"]:
        floor = t["floor_s"][variant]["floor"]
        lines.append(f"| {variant} | I/O floor: h5py reads the view | {cell(floor, 1e3)} | 1.00 |")
        for name, s in t.get("floor_threaded_decode_s", {}).get(variant, {}).items():
            lines.append(f"| {variant} | {name} | {cell(s, 1e3)} | {ratio(s, floor)} |")
        for name, s in t["preprocess_only_s"][variant].items():
            lines.append(f"| {variant} | `preprocess` alone, {name} | {cell(s, 1e3)} | {ratio(s, floor)} |")
    return "\n".join(lines)


def memory_table(results: dict) -> str:
    "Markdown: payload, peak RSS of the parent and of each spawn worker, before and after."
    b, a = results["memory"]["before"], results["memory"]["after"]
    rows = [("pickled dataset, `len(pickle.dumps(ds))` (kB)", b["payload_bytes"] / 1e3, a["payload_bytes"] / 1e3, 1),
            ("pickle a spawn DataLoader sends, tensors as shared-memory handles (kB)", b["spawn_payload_bytes"] / 1e3,
             a["spawn_payload_bytes"] / 1e3, 1),
            ("parent: shared memory after the epoch, RssShmem (MB)", b["parent_shared_memory_mb"] or 0,
             a["parent_shared_memory_mb"] or 0, 1),
            ("peak RSS, parent (MB)", b["parent_peak_rss_mb"], a["parent_peak_rss_mb"], 0)]
    rows += [(f"peak RSS, spawn worker {k + 1} (MB)", b["worker_peak_rss_mb"][k], a["worker_peak_rss_mb"][k], 0)
             for k in range(min(len(b["worker_peak_rss_mb"]), len(a["worker_peak_rss_mb"])))]
    rows += [("first epoch with 2 spawn workers, start-up included (s)", b["epoch_s"], a["epoch_s"], 1)]
    lines = ["| measure | before (dataset carries the CT) | after | after / before |", "|---|---:|---:|---:|"]
    lines += [f"| {label} | {x:.{d}f} | {y:.{d}f} | {y / x if x else float('nan'):.3f} |" for label, x, y, d in rows]
    return "\n".join(lines)


def check_targets(results: dict) -> dict:
    "The issue's targets, each as value, limit and whether it is met."
    t, targets = results["timings"], {}
    for variant in results["files"]:
        d = t["getitem_preprocess_s"][variant]
        if "reference" in d:
            speedup = d["reference"]["median"] / d["ours"]["median"]
            limit = 6.0 if variant == "uncompressed" else None
            if limit:
                targets[f"{variant}: ours >= 6x faster than the reference per view"] = dict(value=speedup, limit=limit, met=speedup >= limit)
    m = results["memory"]["after"]["payload_bytes"]
    targets["pickled dataset well under 1 MB"] = dict(value=m / 1e6, limit=1.0, met=m < 1e6)
    return targets


def plot(results: dict, path: Path):
    "Three panels: time per view by file and implementation, DataLoader throughput, worker memory before and after."
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = results["timings"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    names = [n for n in results["implementations"]]
    colors = {"floor": "0.6", **{n: plt.cm.tab10(i) for i, n in enumerate(names)}}

    def bar(ax, x, s, color, width, scale=1.0):
        m, lo, hi = s["median"] * scale, s["min"] * scale, s["max"] * scale
        ax.bar(x, m, width=width, color=color, edgecolor="white")
        ax.errorbar(x, m, yerr=[[m - lo], [hi - m]], color="k", capsize=3, lw=1)
        ax.annotate(f"{m:.1f}", (x, hi), ha="center", va="bottom", fontsize=7)

    ax, series = axes[0], ["floor"] + names
    width = 0.8 / len(series)
    for k, variant in enumerate(results["files"]):
        for j, name in enumerate(series):
            s = t["floor_s"][variant]["floor"] if name == "floor" else t["getitem_preprocess_s"][variant].get(name)
            if s:
                bar(ax, k + (j - (len(series) - 1) / 2) * width, s, colors[name], width, 1e3)
    ax.set_yscale("log")
    ax.set_xticks(range(len(results["files"])), list(results["files"]))
    ax.set_ylabel("ms per view (median, min–max; log scale)")
    ax.set_title("ds[i] with preprocessing, one process")

    ax, width = axes[1], 0.8 / len(names)
    variant = "uncompressed"
    for j, name in enumerate(names):
        for w in (0, 1, 2):
            s = t.get(f"dataloader_{w}_views_per_s", {}).get(variant, {}).get(name)
            if s:
                bar(ax, w + (j - (len(names) - 1) / 2) * width, s, colors[name], width)
    ax.set_xticks([0, 1, 2], ["0", "1", "2"])
    ax.set_xlabel(f"DataLoader workers ({variant} file, batch size 4)")
    ax.set_ylabel("views / s (preprocessed)")
    ax.set_title("DataLoader throughput")

    ax, m = axes[2], results["memory"]
    labels = ["parent"] + [f"worker {k + 1}" for k in range(len(m["after"]["worker_peak_rss_mb"]))]
    for j, (when, color) in enumerate((("before", "0.6"), ("after", plt.cm.tab10(0)))):
        values = [m[when]["parent_peak_rss_mb"]] + m[when]["worker_peak_rss_mb"]
        xs = [k + (j - 0.5) * 0.4 for k in range(len(values))]
        ax.bar(xs, values, width=0.4, color=color,
               label=f"{when}: pickled dataset {m[when]['payload_bytes'] / 1e3:,.1f} kB")
    top = max([m[w]["parent_peak_rss_mb"] for w in ("before", "after")] + m["before"]["worker_peak_rss_mb"] + m["after"]["worker_peak_rss_mb"])
    ax.set_ylim(0, 1.3 * top)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("peak RSS (MB)")
    ax.set_title("2 spawn workers: memory")
    ax.legend(fontsize=8, loc="upper right")

    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[n]) for n in series]
    fig.legend(handles, ["I/O floor"] + names, loc="lower center", ncol=len(series), frameon=False)
    mach = results["machine"]
    fig.suptitle(f"DeepFluoro loader, subject 1, {results['views']} views of {results['image_size']} px; {mach['cpu']}, "
                 f"{mach['cores']} cores; load {results['load_average_start'][0]:.1f} -> {results['load_average_end'][0]:.1f}",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary_text(results: dict) -> str:
    "The report printed at the end of a run and written to deepfluoro_loader.md."
    m, v = results["machine"], results["implementations"]["ours"]["versions"]
    ref = results["reference"]
    lines = [f"DeepFluoro loader benchmark, subject 1, {results['views']} views of {results['image_size']} px, "
             f"{results['repeats']} rounds, {results['epochs']} DataLoader epochs of {results['epoch_views']} views",
             "", f"Command: `{results['command']}`; {results['created']}",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM; python {v['python']}, torch {v['torch']}, "
             f"h5py {v['h5py']} (HDF5 {v['hdf5']}), numpy {v['numpy']}; load average (1 min) "
             f"{results['load_average_start'][0]:.2f} at start, {results['load_average_end'][0]:.2f} at end",
             f"Reference: {'diffdrrdata ' + ref['version'] + ' (via ' + ref['via'] + ')' if ref['found'] else 'SKIPPED (' + ref['skipped'] + ')'}",
             "", results["table_markdown"], "", results["detail_markdown"], "", results["memory_markdown"], "", "Targets:"]
    lines += [f"- {'MET   ' if t['met'] else 'MISSED'} {name}: {t['value']:.2f} (limit {t['limit']})"
              for name, t in results["targets"].items()]
    return "\n".join(lines) + "\n"


@call_parse
def main(
    filename: str = None,  # DeepFluoro-format HDF5 file to copy; default: the full-resolution synthetic file
    views: int = 3,  # views of subject 1 to time (the first `views`; the default file has 3)
    repeats: int = 5,  # rounds of measurements (each times every view once per implementation and mode)
    epochs: int = 2,  # timed DataLoader epochs per worker count, after one warm-up epoch
    epoch_views: int = 24,  # views per DataLoader epoch (cycling over the timed views)
    out: str = str(HERE / "results"),  # folder for deepfluoro_loader.{json,md,png}
    reference_python: str = None,  # interpreter with diffdrrdata 0.0.7; default: $DIFFDRR_BENCH_REFERENCE_PYTHON or this one
    skip_reference: bool = False,  # do not measure the reference
    patch: str = None,  # comma-separated Python files, each monkeypatching OUR library: one extra column each
    workdir: str = None,  # folder for the two file copies (about 0.5 GB); default: a temporary folder
):
    "Benchmark DeepFluoroDataset (ours and the reference package's) against the HDF5 I/O floor."
    log = lambda s: print(s, file=sys.stderr, flush=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    python, ref_version = (None, "skipped by --skip_reference") if skip_reference else find_reference(reference_python)
    if not python:
        log(f"Reference implementation SKIPPED: {ref_version}. To include it, see the top of {Path(__file__).name}.")
    elif ref_version != REFERENCE_VERSION:
        log(f"warning: the reference is diffdrrdata {ref_version}, not {REFERENCE_VERSION}")
    if filename is None:
        from diffdrr_data.synthetic import synthetic_deepfluoro

        filename = str(synthetic_deepfluoro())
    tmp = tempfile.TemporaryDirectory(prefix="deepfluoro-bench-", dir=workdir)
    work = Path(tmp.name)
    load_start = os.getloadavg()
    log(f"load average at start: {load_start}; copying {filename} twice into {work}")
    files = {v: layout_copy(filename, str(work / f"{v}.h5"), compress=v == "gzip") for v in VARIANTS}
    summaries = {v: file_summary(f) for v, f in files.items()}
    homes = {v: reference_home(work, v, f) for v, f in files.items()}
    for f in files.values():
        warm_page_cache(f)
    n = min(views, *(s["views_subject_1"] for s in summaries.values()))
    spec = dict(views=n, files=files, homes=homes)
    procs = {"ours": Process(sys.executable, dict(spec, impl="ours"))}
    if python:
        procs["reference"] = Process(python, dict(spec, impl="reference"))
    for p in (patch or "").split(","):
        if p.strip():
            procs[f"ours+{Path(p.strip()).stem}"] = Process(sys.executable, dict(spec, impl="ours", patch=str(Path(p.strip()).resolve())))
    log(f"timing {', '.join(procs)} on {n} views")
    timings = measure(procs, files, repeats, epochs, epoch_views, log)
    implementations = {name: dict(versions=p.hello["versions"]) for name, p in procs.items()}
    for p in procs.values():
        p.close()
    log("worker payload and peak memory, before and after")
    memory = {when: spawn_memory(dict(task="memory", before=when == "before", file=files["uncompressed"], epoch_views=12))
              for when in ("before", "after")}
    load_end = os.getloadavg()
    results = dict(
        benchmark="deepfluoro_loader", created=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        command=" ".join(["python", "benchmarks/deepfluoro_loader.py"] + [public_path(a) for a in sys.argv[1:]]), machine=machine(),
        load_average_start=list(load_start), load_average_end=list(load_end), source=Path(filename).name, files=summaries,
        views=n, image_size=" x ".join(map(str, summaries["uncompressed"]["image_shape"])), repeats=repeats,
        epochs=epochs, epoch_views=epoch_views, batch_size=4,
        reference=dict(found=bool(python), version=ref_version if python else None, skipped=None if python else ref_version,
                       via=None if not python else "--reference_python" if reference_python else
                       f"${REFERENCE_ENV}" if os.environ.get(REFERENCE_ENV) else "this interpreter"),
        implementations=implementations, timings=timings, memory=memory,
    )
    results["targets"] = check_targets(results)
    results["table_markdown"] = timing_table(results)
    results["detail_markdown"] = detail_table(results)
    results["memory_markdown"] = memory_table(results)
    report = summary_text(results)
    print("\n" + report)
    (out / "deepfluoro_loader.json").write_text(json.dumps(results, indent=1))
    (out / "deepfluoro_loader.md").write_text(report)
    plot(results, out / "deepfluoro_loader.png")
    tmp.cleanup()
    log(f"Wrote {out / 'deepfluoro_loader.json'}, {out / 'deepfluoro_loader.md'}, {out / 'deepfluoro_loader.png'}")
