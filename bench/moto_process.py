"""`python -m bench.moto_process`: moto in server mode on 127.0.0.1, in a process of its own.

As in the local cloud, the functions' Python and moto's then run side by side (two interpreters, two
locks), instead of one interpreter sharing its time between the handler under test and the server
it calls. Prints `port <n>` once listening; stops when its stdin closes (the parent's end).
"""

from __future__ import annotations

import logging
import sys

from moto.server import ThreadedMotoServer

from ems_local import moto_dynamodb


def main() -> int:
    moto_dynamodb.install()  # the local cloud's DynamoDB (its transactions and partition queries)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _host, port = server.get_host_and_port()
    print(f"port {port}", flush=True)
    sys.stdin.read()  # until the parent closes its end (or dies)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
