"""Forecasting, the science function: GET /api/v1/forecast/consumption and /generation, POST
/api/v1/forecast/train, GET /api/v1/forecast/models; the nightly training run and the 15-minute
run that stores each site's next 48 h for other domains (the schedules' inputs tell them apart)."""

import os
from functools import cache
from typing import Any

from ems.auth.http import claims, request_site
from ems.core.http import body, http_app, lambda_handler, query, query_model
from ems.core.observability import instrumented
from ems.core.pagination import parse_limit
from ems.forecast import service as forecasting
from ems.forecast.models import ForecastOut, ForecastQuery, ModelInfo, ModelPage, TrainRequest
from ems.forecast.store import ArtifactBucket, ForecastStore
from ems.registry.store import RegistryStore
from ems.telemetry.backends import telemetry_store

app = http_app("forecast")
TRAINING_RUN = {"run": "train"}  # the schedules' inputs (template.yaml)
FORECAST_RUN = {"run": "forecast"}


@cache
def stores() -> forecasting.Stores:
    """Made on first use; kept for the container, with the models it loads (once per hash)."""
    catalog = ForecastStore()
    return forecasting.Stores(
        sites=RegistryStore(),
        rollups=telemetry_store(),
        artifacts=ArtifactBucket(),
        catalog=catalog,
        archive=catalog,
        holiday_country=os.environ.get("HOLIDAY_COUNTRY") or None,
    )


@app.get("/api/v1/forecast/consumption")
def consumption() -> ForecastOut:
    return forecasting.forecast(
        request_site(app), "consumption", query_model(app, ForecastQuery), claims(app), stores()
    )


@app.get("/api/v1/forecast/generation")
def generation() -> ForecastOut:
    return forecasting.forecast(
        request_site(app), "generation", query_model(app, ForecastQuery), claims(app), stores()
    )


@app.post("/api/v1/forecast/train")
def train() -> ModelInfo:
    """Body: target, optional sensor_id, optional backtest_days (whole days 1-28, default 7: the
    last days held out and forecast at each local midnight; the history read grows with it)."""
    return forecasting.train(request_site(app), body(app, TrainRequest), stores())


@app.get("/api/v1/forecast/models")
def models() -> ModelPage:
    limit, token = parse_limit(query(app, "limit")), query(app, "next_token")
    return forecasting.list_models(request_site(app), limit, token, stores().catalog)


http_handler = lambda_handler(app)


@instrumented("forecast")
def training_handler(event: Any, context: Any) -> dict[str, Any]:
    return forecasting.train_all(stores()).model_dump()


@instrumented("forecast")
def forecast_handler(event: Any, context: Any) -> dict[str, Any]:
    return forecasting.store_forecasts(stores()).model_dump()


def handler(event: dict[str, Any], context: Any) -> Any:
    if event == TRAINING_RUN:
        return training_handler(event, context)
    if event == FORECAST_RUN:
        return forecast_handler(event, context)
    return http_handler(event, context)
