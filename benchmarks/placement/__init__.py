"""Placement quality and cost: Liquid's tiering engine against cache policies and the offline optimum.

    python -m benchmarks.placement            # 4 traces x 1M requests (about 25 min on 2 cores)
    python -m benchmarks.placement --requests 200000 --cycles 1000   # a quick look
    python -m benchmarks.placement --trace-file t.oracleGeneral.bin   # any libCacheSim trace
    python -m benchmarks.placement --trace-file t.csv --csv-cols 0,1,2

Writes ``benchmarks/results/placement.json`` and ``placement.md``. See ``replay`` (how the
daemon's engine is driven), ``peers`` (libCacheSim), ``cost`` (strategies) and ``traces``.
"""
