"""The fault drill (make drill): random DML while faults hit every part, then the target
compared with the source row by row. drill/run.py runs it, drill/report.py writes its
figures; tests/e2e/test_drill.py runs a short one in CI."""
