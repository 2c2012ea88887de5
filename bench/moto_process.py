"""`python -m bench.moto_process`: the local cloud's AWS endpoint (moto with its patches, on
127.0.0.1) in a process of its own.

As in the local cloud, the functions' Python and moto's then run side by side (two interpreters, two
locks), instead of one interpreter sharing its time between the handler under test and the server
it calls. Prints `port <n>` once listening (after the endpoint's own log line); stops when its stdin
closes (the parent's end).
"""

from __future__ import annotations

import sys
from urllib.parse import urlsplit

from ems_local.aws_endpoint import AwsEndpoint


def main() -> int:
    endpoint = AwsEndpoint(port=0)
    endpoint.start()
    print(f"port {urlsplit(endpoint.url).port}", flush=True)
    sys.stdin.read()  # until the parent closes its end (or dies)
    endpoint.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
