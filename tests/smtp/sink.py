#!/usr/bin/env python3
"""A real SMTP server on loopback for the alert tests (Debian's python3-aiosmtpd).

Usage: /usr/bin/python3 tests/smtp/sink.py OUTFILE
Prints the port it listens on (one line), then appends every message it accepts to
OUTFILE as one JSON line {"mail_from", "rcpt_tos", "data"}. Exits when its stdin closes
(the test that started it is gone) or on SIGTERM/SIGINT.
"""
import json
import signal
import socket
import sys
import threading

from aiosmtpd.controller import Controller


class Sink:
    """Writes each accepted message before answering 250, so a sender that saw 250 finds it on disk."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "data": envelope.content.decode("utf-8", errors="replace"),
        }
        with self.lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
        return "250 Message accepted for delivery"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    if len(sys.argv) != 2:
        print("usage: sink.py OUTFILE", file=sys.stderr)
        return 2
    open(sys.argv[1], "a").close()
    port = free_port()
    controller = Controller(Sink(sys.argv[1]), hostname="127.0.0.1", port=port)
    controller.start()
    print(port, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())

    def watch_stdin():
        sys.stdin.read()
        done.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    done.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
