"""Frame plumbing shared by the gold transforms: lazy narwhals frames, schemas, "latest" rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import narwhals as nw


def to_lazy(frame: Any) -> nw.LazyFrame | None:
    if frame is None:
        return None
    frame = nw.from_native(frame)
    return frame.lazy() if isinstance(frame, nw.DataFrame) else frame


def conform(frame: nw.LazyFrame, schema: dict[str, nw.dtypes.DType]) -> nw.LazyFrame:
    """Exactly ``schema``'s columns, in order and type; missing ones are typed nulls (so frames
    from different domains concatenate, and optional silver columns may be absent)."""
    present = frame.collect_schema()
    # No cast where the type is right: on Spark every expression is a round trip to the JVM.
    return frame.select(
        (nw.col(name) if present[name] == dtype else nw.col(name).cast(dtype))
        if name in present else nw.lit(None, dtype=dtype).alias(name)
        for name, dtype in schema.items()
    )


def latest(frame: nw.LazyFrame, by: Sequence[str], order: Sequence[str]) -> nw.LazyFrame:
    """One row per ``by``: the last by ``order``. Each ``order`` is a total order on the rows
    silver can hold (its natural keys), so both engines and both paths pick the same row."""
    return frame.unique(list(by), keep="last", order_by=list(order))
