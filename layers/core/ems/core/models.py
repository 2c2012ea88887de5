"""The base of ems's pydantic models: each builds its validator and serializer when first used, not
when its module is imported.

A function imports many more models than one request uses (its domain's, those of the stores it is
wired with, other domains' types): building them all at import was 15 to 70 ms of an API function's
cold start (`python -m bench cold_start`). A model that is never used is never built; one that is,
is built once, by its first validation or serialisation.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    model_config = ConfigDict(defer_build=True)
