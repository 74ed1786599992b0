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


# Money is kept to the cent (the importer rounds amounts to cents). A float sum's last bits
# depend on the order rows reach it, which a multi-threaded group-by does not fix, so a sum of
# money is rounded back to the cent: the same rows give bit-identical totals on every run and on
# both engines (the error of a sum is far below half a cent).
MONEY_DECIMALS = 2


def money_sum(column: str) -> nw.Expr:
    return nw.col(column).sum().round(MONEY_DECIMALS)


def latest(frame: nw.LazyFrame, by: Sequence[str], order: Sequence[str]) -> nw.LazyFrame:
    """One row per ``by``: the last by ``order``. Each ``order`` is a total order on the rows
    silver can hold (its natural keys), so both engines and both paths pick the same row."""
    return frame.unique(list(by), keep="last", order_by=list(order))
