"""Token claims and the token routes' requests and responses (no I/O)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from ems.core.errors import BadRequest, Forbidden
from ems.core.ids import USER_ID
from ems.core.models import Model

# The seed's list_of_resources, plus the new domains. `*` is every resource.
RESOURCES = (
    "sensors", "rooms", "analytics", "export", "events", "ingest", "batteries", "demand-response",
    "p2p", "forecast", "iot", "tariffs", "sites", "tokens", "*",
)  # fmt: skip
Resource = Literal[
    "sensors", "rooms", "analytics", "export", "events", "ingest", "batteries", "demand-response",
    "p2p", "forecast", "iot", "tariffs", "sites", "tokens", "*",
]  # fmt: skip

DataAggregation = Literal["raw", "room", "site"]
TimeAggregation = Literal["raw", "15m", "1h", "1d"]
# Finest first: a token may only hand on limits at least as coarse as its own.
DATA_AGGREGATION_ORDER: tuple[DataAggregation, ...] = ("raw", "room", "site")
TIME_AGGREGATION_ORDER: tuple[TimeAggregation, ...] = ("raw", "15m", "1h", "1d")

MAX_LIFETIME_MINUTES = 366 * 24 * 60
DEFAULT_LIFETIME_MINUTES = 30 * 24 * 60


def _check_sites(sites: list[str]) -> list[str]:
    for site in sites:
        if site != "*" and not USER_ID.match(site):
            raise ValueError(f"{site!r} is not a site id (letters, digits, _ . : -)")
    return sites


class Claims(Model):
    """What a verified token says about its holder."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    sub: str
    name: str
    jti: str
    iat: int
    exp: int
    iss: str
    aud: str
    resources: list[Resource]
    sites: list[str] = Field(default_factory=lambda: ["*"])
    data_aggregation: DataAggregation = "raw"
    time_aggregation: TimeAggregation = "raw"
    embargo_minutes: int = Field(default=0, ge=0)

    def has_resource(self, resource: str) -> bool:
        return "*" in self.resources or resource in self.resources

    def may_access_site(self, site_id: str) -> bool:
        return "*" in self.sites or site_id in self.sites

    def only_site(self) -> str | None:
        """The site a request means when it names none: the token's single site, if it has one."""
        return self.sites[0] if len(self.sites) == 1 and self.sites[0] != "*" else None

    def embargo_cutoff_ms(self, now: datetime) -> int | None:
        """The newest reading time (epoch ms) this token may see, or None without an embargo."""
        if self.embargo_minutes <= 0:
            return None
        return int(now.timestamp() * 1000) - self.embargo_minutes * 60_000

    def sees_live(self) -> bool:
        """Whether readings as they arrive are within this token's limits: raw resolution, no embargo."""
        return self.time_aggregation == "raw" and self.embargo_minutes == 0

    def may_see_reading(self, ts_ms: int, now: datetime) -> bool:
        """Whether one sensor's raw reading taken at `ts_ms` is within this token's limits."""
        cutoff = self.embargo_cutoff_ms(now)
        return (
            self.data_aggregation == "raw"
            and self.time_aggregation == "raw"
            and (cutoff is None or ts_ms <= cutoff)
        )

    def site_for(self, named: str | None, default_site_id: str | None) -> str:
        """The site a request acts on, for HTTP and WebSocket alike: the one it names (`?site=` or
        `X-Site`), else the token's only site, else the deployment's default site.

        The authorizer checks the site too; HTTP handlers and $connect check again, so that a cached
        authorizer decision can never carry a token across to a site it was not granted.
        """
        if named:
            if not self.may_access_site(named):
                raise Forbidden(f"this token is not granted site {named!r}", "site")
            return named
        only = self.only_site()
        if only is not None:
            return only
        # The original dashboard knew one building: its calls name no site and go to the default one.
        if default_site_id and self.may_access_site(default_site_id):
            return default_site_id
        raise BadRequest("name the site with ?site= or the X-Site header", "site")


class TokenRequest(Model):
    """POST /tokens/generate. `list_of_resources` is the seed's name, kept as the wire name."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    list_of_resources: list[Resource] = Field(min_length=1)
    sites: list[str] | None = Field(default=None, min_length=1)
    exp_minutes: int = Field(default=DEFAULT_LIFETIME_MINUTES, ge=1, le=MAX_LIFETIME_MINUTES)
    data_aggregation: DataAggregation = "raw"
    time_aggregation: TimeAggregation = "raw"
    embargo_minutes: int = Field(default=0, ge=0, le=366 * 24 * 60)

    @field_validator("sites")
    @classmethod
    def _known_site_ids(cls, sites: list[str] | None) -> list[str] | None:
        return None if sites is None else _check_sites(sites)


class TokenIssued(Model):
    token: str
    jti: str
    expires_at: datetime


class TokenText(Model):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=8192)


class RevokeRequest(Model):
    model_config = ConfigDict(extra="forbid")

    token: str | None = Field(default=None, min_length=1, max_length=8192)
    jti: str | None = Field(default=None, min_length=1, max_length=128)


class Validation(Model):
    valid: bool
    reason: str | None = None
    claims: Claims | None = None


class Revoked(Model):
    revoked: bool
    jti: str


class TokenMeta(Model):
    """What GET /tokens shows of a token: never the token itself."""

    jti: str
    name: str
    sub: str
    resources: list[str]
    sites: list[str]
    issued_at: datetime
    expires_at: datetime
    revoked: bool
    revoked_at: datetime | None = None
    origin: Literal["minted", "saved", "revoked-only"]
    data_aggregation: str = "raw"
    time_aggregation: str = "raw"
    embargo_minutes: int = 0
