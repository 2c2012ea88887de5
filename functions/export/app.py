"""GET /api/v1/export: readings as CSV, JSON or Parquet, inline or through a presigned link."""

from functools import cache

from aws_lambda_powertools.event_handler import Response

from ems.auth.http import claims, request_site
from ems.core.http import http_app, lambda_handler, query_model
from ems.registry.store import RegistryStore
from ems.telemetry import export
from ems.telemetry import service as telemetry
from ems.telemetry.backends import latest_readings, telemetry_store
from ems.telemetry.files import S3ExportFiles

app = http_app("export")


@cache
def stores() -> telemetry.Stores:
    return telemetry.Stores(registry=RegistryStore(), telemetry=telemetry_store(), latest=latest_readings())


@app.get("/api/v1/export")
def get_export() -> export.ExportLink | Response[str | bytes]:
    query = query_model(app, export.ExportQuery)
    result = export.export(request_site(app), query, claims(app), stores(), S3ExportFiles())
    if isinstance(result, export.ExportLink):
        return result
    return Response(
        status_code=200, content_type=result.content_type,
        # Text as text (a JSON body given as bytes would be serialised again); Parquet goes base64.
        body=result.body if query.format == "parquet" else result.body.decode(),
        headers={"Content-Disposition": f'attachment; filename="{result.filename}"',
                 "X-Export-Rows": str(result.rows)},
    )  # fmt: skip


handler = lambda_handler(app)
