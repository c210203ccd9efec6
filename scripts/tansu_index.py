#!/usr/bin/env python3
"""Add the index tansu 0.6's SQLite engine lacks: header (topition, offset_id).

tansu looks up each fetched record's headers with a join on (topition, offset_id), but its
`header` table has no key or index: every lookup scans every header ever written. Reading a
topic from a store with millions of records then stalls: after the 1,000,000-event chaos soak
(~2 M records, each with headers) `tally dlq list` got no record at all within 30 s. With the
index each lookup is a probe. Idempotent; waits (up to the timeout) until tansu has created
its tables. Usage: scripts/tansu_index.py PATH/tansu.db [timeout seconds, default 30]
"""
import sqlite3
import sys
import time


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    path = sys.argv[1]
    deadline = time.time() + (float(sys.argv[2]) if len(sys.argv) > 2 else 30.0)
    last = None
    while time.time() < deadline:
        try:
            con = sqlite3.connect(path, timeout=10)
            try:
                found = con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'header'").fetchone()
                if found:
                    con.execute("CREATE INDEX IF NOT EXISTS header_by_record ON header (topition, offset_id)")
                    con.commit()
                    return
            finally:
                con.close()
        except sqlite3.Error as e:
            last = e
        time.sleep(0.2)
    sys.exit(f"tansu_index: no header table in {path} ({last or 'tansu has not created its tables'})")


if __name__ == "__main__":
    main()
