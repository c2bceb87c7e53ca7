"""Ablation for `--patch`: ours without keeping the caller and the helper threads on separate CPUs during a call.

    python benchmarks/deepfluoro_loader.py --patch benchmarks/ablations/no_pinning.py,benchmarks/ablations/h5py_read.py
"""
from contextlib import nullcontext

import diffdrr_data.preprocess as preprocess

preprocess._pinned_apart = lambda threads: nullcontext(None)
