"""Pure transforms (frames in, frames out), written once in narwhals for Polars and PySpark."""
