"""A recording process for the outage tests: a buffered client with a spool records a stream of
runs named ``<prefix>-<n>``, printing its progress; run as ``python -m tests.client.recorder``.

``--pause-at N``: after N runs, wait for a line on stdin (the test stops the server meanwhile,
then writes one). ``--drain``: at the end, wait until everything is delivered, however long the
server takes to come back; else close at once, leaving what is unsent in the spool."""

from __future__ import annotations

import argparse
import os
import sys

from taskledger.client import Ledger


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("spool")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--last", type=int, required=True)
    parser.add_argument("--prefix", default="stream")
    parser.add_argument("--pause-at", type=int, default=None)
    parser.add_argument("--drain", action="store_true")
    args = parser.parse_args()
    ledger = Ledger(
        args.url,
        os.environ["RECORDER_KEY"],
        buffer=True,
        flush_at=500,
        flush_interval=0.2,
        spool_dir=args.spool,
        backoff=0.05,
        max_backoff=0.5,
        timeout=30,
    )
    for n in range(args.first, args.last):
        if n == args.pause_at:
            print(f"paused {n}", flush=True)
            sys.stdin.readline()  # blocks until the test says go
        ledger.record(task="stream", run_id=f"{args.prefix}-{n:05d}", status="completed")
        # Keep at most two batches ahead of the server while it answers, so that the stream
        # lasts as long as the server takes and an outage lands in the middle of it: wait
        # (on the buffer's condition) until what is queued is delivered. Once the server has
        # failed, go on at once: the rest goes to the spool.
        if (n + 1) % 1000 == 0 and not ledger.buffer_stats().last_error:
            ledger.flush(timeout=5.0)
    print(f"recorded {args.last}", flush=True)
    if args.drain:
        while not ledger.flush(timeout=1.0):
            print(f"waiting {ledger.buffer_stats()}", flush=True)
    ledger.close()
    stats = ledger.buffer_stats()
    print(f"closed sent={stats.sent} spooled={stats.spooled_batches} left={stats.backlog_batches}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
