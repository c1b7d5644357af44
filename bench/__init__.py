"""The benchmark (make bench): end-to-end figures and each stage's own limit, in one run.
tests/e2e/test_bench.py runs it at tiny sizes in CI."""
