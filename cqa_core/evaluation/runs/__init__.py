"""Benchmark runs: a run is a folder of every pair's score, queried without loading it whole.

* :mod:`.record` scores a protocol's pairs with any recognizer and writes the folder
  (``cqa eval --out RUN_DIR``), reading faces from the embedding cache (:mod:`.embcache`) where
  it has them; :mod:`.plan` names the faces, :mod:`.faces` reads them (the one place that knows
  about branches);
* :mod:`.store` is the folder's layout (``run.json``, ``pairs.parquet``, ``faces.parquet``,
  ``embeddings.npy``); :mod:`.tables` queries it with DuckDB (filter, sort, page, one pair);
* :mod:`.compare` compares two runs pair by pair (McNemar's exact test, ``cqa compare``);
* :mod:`.calibration` turns a cosine into a calibrated probability and likelihood ratio from a
  reference run (``cqa explain --reference RUN_DIR``).

DuckDB, pyarrow, scikit-learn and scipy are the ``runs`` extra, imported where they are used.
"""
