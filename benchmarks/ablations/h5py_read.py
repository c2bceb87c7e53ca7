"""Ablation for `--patch`: ours with h5py reading every view into an array first, as before `preprocess` learned to
read a view stored uncompressed straight into its bands.

    python benchmarks/deepfluoro_loader.py --patch benchmarks/ablations/h5py_read.py
"""
import diffdrr_data.preprocess as preprocess

preprocess._stored_offset = lambda dset: None
