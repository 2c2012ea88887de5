"""Logger and metrics shared by every function (Powertools: JSON logs, EMF metrics).

No Tracer here: it costs about 0.25 s of cold start. Functions that want X-Ray subsegments import
`aws_lambda_powertools.Tracer` themselves; Lambda's own active tracing still records every call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics

Handler = Callable[[Any, Any], Any]

logger = Logger()
metrics = Metrics()


def instrumented(domain: str) -> Callable[[Handler], Handler]:
    """Around a handler that no API resolver wraps (IoT rules, EventBridge rules): the Lambda context
    in every log line, `domain` as the metrics' dimension, and the metrics flushed at the end."""

    def wrap(fn: Handler) -> Handler:
        @metrics.log_metrics(raise_on_empty_metrics=False)
        @logger.inject_lambda_context(clear_state=True)
        def handler(event: Any, context: Any) -> Any:
            metrics.add_dimension(name="domain", value=domain)
            return fn(event, context)

        return handler

    return wrap
