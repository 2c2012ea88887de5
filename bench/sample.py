"""One measured process: run by path (`python bench/sample.py SPEC.json`), never imported.

It imports nothing of the project's before the clock starts, so what it reports is what a Lambda
runtime would pay: `cold` imports a function's handler module and serves one event; `floor` runs a
few statements (the reference a cold start is compared with); `warm` imports the handler, warms
it up and then times each of a list of events. The result is one line on stdout, after a marker,
because the handler's own logs go to stdout too. Under `python -X importtime`, markers on stderr
fence the handler's import and its first invoke, so the parent can tell which imports each paid for.
"""

import time

STARTED = time.perf_counter()

import importlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import uuid  # noqa: E402

MARKER = "BENCH-RESULT "
PHASE = "BENCH-PHASE "  # on stderr, between -X importtime's lines


class LambdaContext:
    """What the Python runtime passes as `context` (the attributes Powertools reads)."""

    def __init__(self, function_name: str, memory_mb: int, timeout_s: float) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"bench/[$LATEST]{function_name}"
        self._deadline = time.time() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


def _outcome(call):  # type: ignore[no-untyped-def]
    """The handler's answer as API Gateway reads it: a status code."""
    try:
        result = call()
    except Exception as exc:  # an authorizer refuses who you are by raising "Unauthorized"
        return 401 if str(exc) == "Unauthorized" else 500
    if isinstance(result, dict) and "isAuthorized" in result:
        return 200 if result["isAuthorized"] is True else 403
    if isinstance(result, dict) and "statusCode" in result:
        return int(result["statusCode"])
    return 200


def _phase(name: str) -> None:
    if "importtime" in sys._xoptions:
        print(PHASE + name, file=sys.stderr, flush=True)


def main() -> None:
    with open(sys.argv[1]) as handle:
        spec = json.load(handle)
    mode = spec["mode"]
    out: dict = {"mode": mode}
    if mode == "floor":
        began = time.perf_counter()
        exec(spec["code"], {})
        out["run_ms"] = (time.perf_counter() - began) * 1000
    else:
        sys.path[:0] = spec["sys_path"]
        context = LambdaContext(spec["function_name"], spec["memory_mb"], spec["timeout_s"])
        _phase("import")
        began = time.perf_counter()
        handler = getattr(importlib.import_module(spec["module"]), spec["handler"])
        imported = time.perf_counter()
        out["import_ms"] = (imported - began) * 1000
        if mode == "cold":
            _phase("invoke")
            out["status"] = _outcome(lambda: handler(spec["event"], context))
            out["invoke_ms"] = (time.perf_counter() - imported) * 1000
            _phase("end")
        else:
            for _ in range(spec["warmup_rounds"]):
                for event in spec["events"]:
                    _outcome(lambda event=event: handler(event, context))
            timings = []
            for index in spec["order"]:
                event = spec["events"][index]
                began = time.perf_counter()
                status = _outcome(lambda event=event: handler(event, context))
                timings.append([index, status, (time.perf_counter() - began) * 1000])
            out["timings"] = timings
    out["in_process_ms"] = (time.perf_counter() - STARTED) * 1000
    sys.stdout.flush()
    print(MARKER + json.dumps(out), flush=True)


main()
