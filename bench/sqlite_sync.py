#!/usr/bin/env python3
"""What one SQLite commit costs under WAL with synchronous=NORMAL and =FULL (the Core's
`--sqlite-sync`), on the disk holding the given directory: 300 single-row INSERTs of 100 bytes,
each its own transaction, as the Core's stored asynchronous invocations and sink results are.

    python3 bench/sqlite_sync.py [DIR]    # default: a temporary directory
"""
import os
import sqlite3
import statistics
import sys
import tempfile
import time

directory = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()
for sync in ["NORMAL", "FULL"]:
    path = os.path.join(directory, f"sync-{sync.lower()}.db")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={sync}")
    db.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, d TEXT)")
    took = []
    for _ in range(300):
        started = time.perf_counter()
        db.execute("INSERT INTO t (d) VALUES (?)", ("x" * 100,))
        took.append((time.perf_counter() - started) * 1e6)
    took.sort()
    print(f"synchronous={sync}: commit p50 {statistics.median(took):.0f} us, p90 {took[270]:.0f} us")
    db.close()
    os.remove(path)
