"""The pipeline under test, for the tests, the benchmark and the drill: both processes as
subprocesses on a set of servers (pipeline.py), a reproducible workload (workload.py), and a
loopback proxy that cuts connections (proxy.py); and the settings tables of the documentation,
written from the declarations (docs.py)."""
