"""Experiment and tooling code: the closed loop, the benchmarks, model-vs-truth evaluation, and the
in-process runner they (and the CLI) use to drive the Dagster graph. Nothing in the asset graph
imports from here."""
