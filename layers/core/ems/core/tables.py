"""Table names and region for PynamoDB models, read from the environment when first used.

PynamoDB reads `Meta.table_name` and `Meta.region` on every call; these descriptors make them
environment lookups, so no model is bound to a table when its module is imported.
"""

from __future__ import annotations

import os
from typing import Any


class EnvTableName:
    def __init__(self, variable: str, default: str) -> None:
        self.variable, self.default = variable, default

    def __get__(self, instance: Any, owner: Any) -> str:
        return os.environ.get(self.variable, self.default)


class EnvRegion:
    def __get__(self, instance: Any, owner: Any) -> str:
        return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
