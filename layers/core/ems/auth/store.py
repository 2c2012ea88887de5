"""Token metadata in DynamoDB: one item per jti. The token string itself is never stored."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.exceptions import DoesNotExist, PutError, UpdateError
from pynamodb.models import Model

from ems.auth.models import Claims, TokenMeta
from ems.core.errors import Conflict
from ems.core.pagination import Page, decode_token, encode_token
from ems.core.tables import EnvRegion, EnvTableName

# A revocation must outlive the token it revokes; DynamoDB TTL deletes the item a day after that.
TTL_GRACE_SECONDS = 24 * 3600


class TokenRecord(Model):
    class Meta:
        table_name = EnvTableName("TOKENS_TABLE", "ems-dev-tokens")
        region = EnvRegion()

    jti = UnicodeAttribute(hash_key=True)
    name = UnicodeAttribute()
    sub = UnicodeAttribute()
    resources = ListAttribute(of=UnicodeAttribute)
    sites = ListAttribute(of=UnicodeAttribute)
    issued_at = UTCDateTimeAttribute()
    expires_at = UTCDateTimeAttribute()
    expires_at_epoch = NumberAttribute()  # the table's TTL attribute
    revoked = BooleanAttribute(default=False)
    revoked_at = UTCDateTimeAttribute(null=True)
    origin = UnicodeAttribute(default="minted")
    data_aggregation = UnicodeAttribute(default="raw")
    time_aggregation = UnicodeAttribute(default="raw")
    embargo_minutes = NumberAttribute(default=0)

    def meta(self) -> TokenMeta:
        return TokenMeta(
            jti=self.jti, name=self.name, sub=self.sub, resources=list(self.resources or []),
            sites=list(self.sites or []), issued_at=self.issued_at, expires_at=self.expires_at,
            revoked=bool(self.revoked), revoked_at=self.revoked_at, origin=self.origin,
            data_aggregation=self.data_aggregation, time_aggregation=self.time_aggregation,
            embargo_minutes=int(self.embargo_minutes),
        )  # fmt: skip


def _record(claims: Claims, origin: str) -> TokenRecord:
    from datetime import UTC

    return TokenRecord(
        jti=claims.jti, name=claims.name, sub=claims.sub, resources=list(claims.resources),
        sites=list(claims.sites), issued_at=datetime.fromtimestamp(claims.iat, UTC),
        expires_at=datetime.fromtimestamp(claims.exp, UTC), expires_at_epoch=claims.exp + TTL_GRACE_SECONDS,
        origin=origin, data_aggregation=claims.data_aggregation, time_aggregation=claims.time_aggregation,
        embargo_minutes=claims.embargo_minutes,
    )  # fmt: skip


class TokenStore:
    """The repository the auth service calls."""

    def record(self, claims: Claims, origin: str) -> TokenMeta:
        """Store a token's metadata once; a retry of the same jti answers the stored item."""
        item = _record(claims, origin)
        try:
            item.save(condition=TokenRecord.jti.does_not_exist())
        except PutError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
            return self.get(claims.jti)  # type: ignore[return-value]
        return item.meta()

    def get(self, jti: str) -> TokenMeta | None:
        try:
            return TokenRecord.get(jti, consistent_read=True).meta()
        except DoesNotExist:
            return None

    def is_revoked(self, jti: str) -> bool:
        try:
            item = TokenRecord.get(jti, attributes_to_get=["revoked"], consistent_read=True)
        except DoesNotExist:
            return False
        return bool(item.revoked)

    def revoke(self, jti: str, claims: Claims | None, at: datetime, fallback_expiry_epoch: int) -> None:
        """Mark revoked, creating the item if the token was never recorded (a token known only by jti)."""
        try:
            TokenRecord(jti=jti).update(
                actions=[TokenRecord.revoked.set(True), TokenRecord.revoked_at.set(at)],
                condition=TokenRecord.jti.exists(),
            )
            return
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
        if claims is not None:
            item = _record(claims, "revoked-only")
        else:
            item = TokenRecord(
                jti=jti, name="(unknown)", sub="(unknown)", resources=[], sites=[], issued_at=at,
                expires_at=datetime.fromtimestamp(fallback_expiry_epoch - TTL_GRACE_SECONDS, at.tzinfo),
                expires_at_epoch=fallback_expiry_epoch, origin="revoked-only",
            )  # fmt: skip
        item.revoked, item.revoked_at = True, at
        try:
            item.save(condition=TokenRecord.jti.does_not_exist())
        except PutError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
            # Recorded concurrently since our update: revoke that item.
            self.revoke(jti, claims, at, fallback_expiry_epoch)

    def page(self, limit: int, next_token: str | None) -> Page[TokenMeta]:
        """Tokens in no particular order (a scan: the table holds one small item per token)."""
        scan = TokenRecord.scan(limit=limit, last_evaluated_key=decode_token(next_token, ("jti",)))
        items: Iterable[TokenRecord] = list(scan)
        metas = [item.meta() for item in items]
        last: dict[str, Any] | None = scan.last_evaluated_key
        return Page[TokenMeta](items=metas, count=len(metas), next_token=encode_token(last))

    def conflict_if_revoked(self, jti: str) -> None:
        if self.is_revoked(jti):
            raise Conflict("this token has been revoked", "token")
