"""xapisim: a simulated XAPI pool for the tests, the demo and the benchmarks of xapi.sxm.

See docs/xapisim.md. Run with ``python -m xapisim up --state-dir DIR [--pools N]``.
"""
