"""Logger and metrics shared by every function (Powertools: JSON logs, EMF metrics).

No Tracer here: it costs about 0.25 s of cold start. Functions that want X-Ray subsegments import
`aws_lambda_powertools.Tracer` themselves; Lambda's own active tracing still records every call.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics

logger = Logger()
metrics = Metrics()
