"""Checked conversion of annotation JSON values into numpy arrays: the one owner of "is this field a
finite number array of the right shape" for every parser in shards/ (reader, RootNet, camera and
joint tables, MANO). Errors are ValueError with a reason; callers add the file and annotation.
"""
import numpy as np


def floats(value, shape, what: str) -> np.ndarray:
    """value -> float64 array of `shape` (None -> NaN, then refused); raises ValueError with a reason.
    A value with the right number of elements in another nesting is reshaped (joint_valid given as
    42 one-element lists)."""
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what}: not numeric ({e})") from None
    if a.size == int(np.prod(shape)) and a.shape != shape:
        a = a.reshape(shape)
    if a.shape != shape:
        raise ValueError(f"{what}: shape {a.shape}, expected {shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{what}: contains NaN or infinity")
    return a


def narrow(a: np.ndarray) -> np.ndarray:
    """An int64 per-image or per-annotation array as int32 where its values fit (widths, frame numbers,
    row numbers): 4 bytes less per value at millions of rows; ids stay int64 (callers keep them)."""
    if a.size and (a.min() < -(2 ** 31) or a.max() >= 2 ** 31):
        return a
    return a.astype(np.int32)
