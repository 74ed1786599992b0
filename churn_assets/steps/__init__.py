"""Steps: what an asset does between its inputs and its table, over the ``TableStore`` interface.

A step reads windows from the store, runs the pure logic (``ingest/``, ``transforms/``) and
writes back, and returns a typed result the asset reports. No Dagster API, no engine branch:
each step runs the same on the Delta and Spark stores and is tested without a Dagster run.
The asset around it only turns a partition into a window and the result into metadata.
"""
