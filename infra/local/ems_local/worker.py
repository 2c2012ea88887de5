"""One warm function container: the process the local cloud runs per function instance.

It does what the Lambda Python runtime does: puts the function's code and its layers first on
sys.path, imports the handler once (the init phase, timed as the cold start), then runs one
invocation at a time. Invocations arrive as JSON lines on the socket whose fd is argv[1]; the
process exits when that socket closes, so a dead parent never leaves it behind. stdout and stderr
are the function's logs; the parent prefixes them with the function's name.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import sys
import time
import traceback
from typing import Any

from ems_local.lambda_context import LambdaContext


def _error(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "stackTrace": traceback.format_exception(exc),
    }


def _load_handler(spec: str) -> Any:
    module_name, _, attr = spec.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


def main(argv: list[str]) -> int:
    # The parent stops this process by its PID; a Ctrl-C meant for the parent is not for us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    fd, layers = int(argv[1]), argv[2:]
    channel = socket.socket(fileno=fd)
    reader, writer = channel.makefile("rb"), channel.makefile("wb")

    def send(message: dict[str, Any]) -> None:
        writer.write(json.dumps(message, default=str).encode() + b"\n")
        writer.flush()

    # As in Lambda: the task root, then the layers, then the runtime's own packages. sys.path[0]
    # (this script's folder or the cwd) goes, so nothing of ours can shadow the function's modules.
    sys.path[0:1] = [os.environ["LAMBDA_TASK_ROOT"], *layers]

    started = time.perf_counter()
    try:
        handler = _load_handler(os.environ["_HANDLER"])
    except Exception as exc:
        send({"ready": False, "error": _error(exc, "Runtime.ImportModuleError")})
        return 1
    send({"ready": True, "init_ms": round((time.perf_counter() - started) * 1000, 1)})

    name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
    memory = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
    region = os.environ.get("AWS_REGION", "us-east-1")
    for line in reader:
        invocation = json.loads(line)
        context = LambdaContext(
            function_name=name, memory_limit_in_mb=memory, region=region,
            aws_request_id=invocation["request_id"], deadline_ms=invocation["deadline_ms"],
        )  # fmt: skip
        try:
            result = handler(invocation["event"], context)
        except Exception as exc:
            if str(exc) == "Unauthorized":  # how an authorizer answers 401: expected, no traceback
                print(f"{type(exc).__name__}: Unauthorized (the gateway answers 401)", flush=True)
            else:
                traceback.print_exc()  # Lambda logs an unhandled error too
            send({"error": _error(exc)})
            continue
        try:
            payload = json.dumps({"result": result})
        except (TypeError, ValueError) as exc:
            send({"error": _error(exc, "Runtime.MarshalError")})
            continue
        writer.write(payload.encode() + b"\n")
        writer.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
