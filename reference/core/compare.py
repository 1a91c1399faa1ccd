"""The one comparison primitive: two arrays in, one discrepancy row out."""

from __future__ import annotations

from typing import Any

import numpy as np

from reference.core.tolerances import TINY, Tolerance

ROW_COLUMNS = ["judge", "layer", "case", "dtype", "tensor", "shape", "max_abs_err", "max_rel_err", "budget", "worst_index",
               "ours", "ref", "atol", "rtol", "status", "note", "diagnosis"]  # fmt: skip


def compare(
    ours: Any,
    ref: Any,
    tol: Tolerance,
    *,
    layer: str,
    case: str,
    tensor: str,
    judge: str,
    bound: np.ndarray | None = None,
    kinks: np.ndarray | None = None,
    kink_ok: np.ndarray | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Compare ``ours`` with ``ref`` (the judge's value) and return one row.

    Shape and dtype are checked first (a mismatch fails the row without comparing numbers). Then,
    per element, the error is ``|ours - ref|``, the relative error ``|ours - ref| / max(|ours|, |ref|, tiny)``,
    and the element passes when ``|ours - ref| <= atol * scale + rtol * |ref|`` (scale: the largest
    magnitude of either tensor). ``worst_index`` is the element closest to (or furthest past) its bound.

    A judge that derives a bound per element (finite differences) passes it as ``bound``; elements
    flagged in ``kinks`` are judged by ``kink_ok`` (the subgradient rule) instead of the bound, and
    counted in the row's ``kinks`` column.
    An empty tensor, or two all-zero tensors, fail: a comparison of nothing proves nothing.
    """
    row = _row_head(tol, judge=judge, layer=layer, case=case, tensor=tensor, extra=extra)
    ref_arr = np.asarray(ref)
    row.setdefault("dtype", ref_arr.dtype.name)
    row["shape"] = str(tuple(ref_arr.shape))
    if not isinstance(ours, np.ndarray) and not np.isscalar(ours):
        return {**row, "status": "fail", "note": f"got {type(ours).__name__}, expected an array"}
    ours_arr = np.asarray(ours)
    mismatch = _mismatch(ours_arr, ref_arr)
    if mismatch is not None:
        return {**row, "status": "fail", "note": mismatch}
    a, b = ours_arr.astype(np.float64), ref_arr.astype(np.float64)
    done = _unjudgeable(a, b, row) or _judged(a, b, tol, row, bound, kinks, kink_ok)
    if done["status"] == "fail":  # the wrong numbers themselves, for a class's shared patterns (grade)
        done["ours_digest"] = tensor_digest(ours_arr)
    return done


def tensor_digest(a: np.ndarray) -> str:
    """16 hex digits of SHA-256 over an array's dtype, shape and bytes: equal only for bit-for-bit equal arrays."""
    import hashlib

    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _row_head(tol: Tolerance, *, judge: str, layer: str, case: str, tensor: str,
              extra: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """The row's fields known before any comparison (``extra`` last, over the defaults)."""
    row: dict[str, Any] = {"judge": judge, "layer": layer, "case": case, "tensor": tensor,
                           "atol": tol.atol, "rtol": tol.rtol, "max_abs_err": np.nan, "max_rel_err": np.nan,
                           "worst_index": "", "ours": np.nan, "ref": np.nan, "note": ""}  # fmt: skip
    row.update(extra)
    return row


def _mismatch(ours_arr: np.ndarray, ref_arr: np.ndarray) -> str | None:
    """Why the two arrays cannot be compared number by number (shape, dtype, emptiness), or None."""
    if ours_arr.shape != ref_arr.shape:
        return f"shape mismatch: ours {ours_arr.shape}, expected {ref_arr.shape}"
    if ours_arr.dtype != ref_arr.dtype:
        return f"dtype mismatch: ours {ours_arr.dtype}, expected {ref_arr.dtype}"
    if ref_arr.size == 0:
        return "empty tensor: nothing was compared"
    return None


def _unjudgeable(a: np.ndarray, b: np.ndarray, row: dict[str, Any]) -> dict[str, Any] | None:
    """The finished row where the numbers cannot be judged against a bound (a non-finite value in ours,
    two all-zero tensors), else None."""
    if not np.all(np.isfinite(a)):
        idx = np.unravel_index(int(np.argmin(np.isfinite(a))), a.shape)
        return {**row, "status": "fail", "worst_index": str(tuple(int(i) for i in idx)),
                "ours": a[idx], "ref": b[idx], "note": "non-finite value in ours"}  # fmt: skip
    if not a.any() and not b.any():
        # NOTE: two all-zero tensors agree without proving anything: a vacuous layer (constant forward,
        # zero backward) would pass. Cases are built so every true tensor has a nonzero element.
        return {**row, "max_abs_err": 0.0, "max_rel_err": 0.0, "status": "vacuous",
                "note": "both tensors are all zeros: nothing was compared"}  # fmt: skip
    return None


def _judged(a: np.ndarray, b: np.ndarray, tol: Tolerance, row: dict[str, Any], bound: np.ndarray | None,
            kinks: np.ndarray | None, kink_ok: np.ndarray | None) -> dict[str, Any]:  # fmt: skip
    """The finished row of two finite float64 arrays: errors, each element against its bound (kinks by
    ``kink_ok``), the worst element and the status."""
    err = np.abs(a - b)
    scale = max(float(np.abs(a).max()), float(np.abs(b).max()), TINY)
    rel = err / np.maximum(np.maximum(np.abs(a), np.abs(b)), TINY)
    if bound is None:
        bound = tol.atol * scale + tol.rtol * np.abs(b)
    within = err <= bound
    with np.errstate(over="ignore"):  # an error of 1e300 over a bound of 1e-300 is inf: far past it, as it should read
        ratio = err / np.maximum(bound, TINY)
    if kinks is not None:
        row["kinks"] = int(kinks.sum())
        within = np.where(kinks, kink_ok if kink_ok is not None else True, within)
        ratio = np.where(kinks, np.where(within, 0.0, np.inf), ratio)
    worst = np.unravel_index(int(np.argmax(ratio)), a.shape)
    passed = bool(np.all(within))
    # budget: the fraction of its tolerance the worst element used (<= 1 in a passing row); the gate's
    # drift figure, comparable across tensors of any size and scale
    return {**row, "max_abs_err": float(err.max()), "max_rel_err": float(rel.max()), "budget": float(ratio.max()),
            "worst_index": str(tuple(int(i) for i in worst)), "ours": float(a[worst]), "ref": float(b[worst]),
            "status": "pass" if passed else "fail",
            "note": row["note"] or ("" if passed else f"{int((~within).sum())} of {a.size} elements out of tolerance")}  # fmt: skip


STATUSES = ("pass", "fail", "vacuous", "error", "timeout", "unsupported", "missing")
WRONG = ("fail", "vacuous", "error")  # shown wrong: a failure of the implementation
FAILING = (
    *WRONG,
    "timeout",
)  # never a pass: the exit code is 1 (a timeout: cut by a time limit, not judged, not wrong)
DECLARED = ("unsupported", "missing")  # a declared limit or an absent class: a failure only when strict


def error_row(
    *, judge: str, layer: str, case: str, tensor: str, dtype: str, message: str, status: str = "error", **extra: Any
) -> dict[str, Any]:
    """A row for a case that could not be compared at all: the implementation raised (``error``),
    declared a limit (``unsupported``) or lacks the class (``missing``)."""
    assert status in STATUSES, status
    row = {c: np.nan for c in ROW_COLUMNS}
    row.update(judge=judge, layer=layer, case=case, dtype=dtype, tensor=tensor, shape="", worst_index="",
               status=status, note=message)  # fmt: skip
    row.update(extra)
    return row


def raised_row(err: BaseException, **fields: Any) -> dict[str, Any]:
    """The row for an exception the implementation raised (its status from reference.impl.protocol.classify)."""
    from reference.impl.protocol import classify

    status, message = classify(err)
    prefix = fields.pop("prefix", "")
    return error_row(message=prefix + message, status=status, **fields)
