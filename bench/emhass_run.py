"""Solve one battery day with EMHASS, in EMHASS's own virtual environment: JSON case on stdin, JSON out.

Run by bench/battery.py as `<emhass venv>/bin/python bench/emhass_run.py < case.json`; it imports
nothing of ours (EMHASS pins numpy and cvxpy, so it cannot share our environment). Parameters go
through EMHASS's own `utils.build_config` / `build_params` / `get_yaml_parse`, from its shipped
config_defaults.json with the case's values on top; then `Optimization(...)` and
`perform_dayahead_forecast_optim`, timed from a new object (`new_object_ms`) and re-solving the
cached object (`cached_ms`). EMHASS's units: W and Wh, export and charge negative, SoC fractions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import pathlib
import statistics
import sys
import time
from importlib.metadata import version
from typing import Any

import pandas as pd
from emhass import utils
from emhass.optimization import Optimization


async def emhass_params(case: dict[str, Any], mip_rel_gap: float) -> tuple[dict, dict, dict, dict]:
    root = pathlib.Path(utils.__file__).parent
    emhass_conf = {
        "root_path": root,
        "data_path": pathlib.Path(case["scratch"]),
        "defaults_path": root / "data" / "config_defaults.json",
        "associations_path": root / "data" / "associations.csv",
    }
    logger = logging.getLogger("emhass-bench")
    logger.setLevel(logging.ERROR)
    config = await utils.build_config(emhass_conf, logger, str(emhass_conf["defaults_path"]))
    b = case["battery"]
    config.update(
        {
            "costfun": "profit",
            "optimization_time_step": case["slot_minutes"],
            "set_use_pv": True,
            "set_use_battery": True,
            "number_of_batteries": 1,
            # Battery-side limits: EMHASS bounds AC discharge by eta_d x this and AC charge by this / eta_c.
            "battery_discharge_power_max": b["battery_side_discharge_kw"] * 1000,
            "battery_charge_power_max": b["battery_side_charge_kw"] * 1000,
            "battery_discharge_efficiency": b["discharge_efficiency"],
            "battery_charge_efficiency": b["charge_efficiency"],
            "battery_nominal_energy_capacity": b["capacity_kwh"] * 1000,
            "battery_minimum_state_of_charge": b["soc_min_pct"] / 100,
            "battery_maximum_state_of_charge": b["soc_max_pct"] / 100,
            "battery_target_state_of_charge": b["start_soc_pct"] / 100,
            # Wear per kWh on the AC side each way, as ours.
            "weight_battery_discharge": b["wear_cost_per_kwh"],
            "weight_battery_charge": b["wear_cost_per_kwh"],
            # Ours lets the battery export; EMHASS's default forbids it.
            "set_nodischarge_to_grid": False,
            "maximum_power_from_grid": case["import_limit_kw"] * 1000,
            "maximum_power_to_grid": case["export_limit_kw"] * 1000,
            "lp_solver_mip_rel_gap": mip_rel_gap,
            "number_of_deferrable_loads": 0,
            "nominal_power_of_deferrable_loads": [],
            "minimum_power_of_deferrable_loads": [],
            "operating_hours_of_each_deferrable_load": [],
            "start_timesteps_of_each_deferrable_load": [],
            "end_timesteps_of_each_deferrable_load": [],
            "treat_deferrable_load_as_semi_cont": [],
            "set_deferrable_load_single_constant": [],
            "set_deferrable_startup_penalty": [],
            "cost_forecast_per_deferrable_load": [],
            "deferrable_load_max_cost": [],
            "set_deferrable_max_startups": [],
        }
    )
    params = await utils.build_params(emhass_conf, {}, config, logger)
    retrieve_hass_conf, optim_conf, plant_conf = utils.get_yaml_parse(json.dumps(params, default=str), logger)
    return emhass_conf, retrieve_hass_conf, optim_conf, plant_conf


def solve(case: dict[str, Any], mip_rel_gap: float, samples: int) -> dict[str, Any]:
    emhass_conf, retrieve_hass_conf, optim_conf, plant_conf = asyncio.run(emhass_params(case, mip_rel_gap))
    logger = logging.getLogger("emhass-bench")
    n, minutes = len(case["load_kw"]), case["slot_minutes"]
    index = pd.date_range("2030-01-07 00:00", periods=n, freq=f"{minutes}min", tz="UTC")
    df = pd.DataFrame(
        {"unit_load_cost": case["import_price_per_kwh"], "unit_prod_price": case["export_price_per_kwh"]},
        index=index,
    )
    p_pv = pd.Series([kw * 1000 for kw in case["pv_kw"]], index=index)
    p_load = pd.Series([kw * 1000 for kw in case["load_kw"]], index=index)
    soc = case["battery"]["start_soc_pct"] / 100

    def new_object() -> Optimization:
        return Optimization(
            retrieve_hass_conf,
            optim_conf,
            plant_conf,
            "unit_load_cost",
            "unit_prod_price",
            "profit",
            emhass_conf,
            logger,
            opt_time_delta=n * minutes / 60,
            num_timesteps=n,
        )

    def run(opt: Optimization) -> pd.DataFrame:
        return opt.perform_dayahead_forecast_optim(df, p_pv, p_load, soc_init=soc, soc_final=soc)

    run(new_object())  # warm-up: first imports and cvxpy's first compile
    new_ms, cached_ms = [], []
    for _ in range(samples):
        started = time.perf_counter()
        opt = new_object()
        res = run(opt)
        new_ms.append((time.perf_counter() - started) * 1000)
    for _ in range(samples):
        started = time.perf_counter()
        res = run(opt)
        cached_ms.append((time.perf_counter() - started) * 1000)
    dt = minutes / 60
    # Costs from EMHASS's own schedule (W; export and charge negative), in our convention.
    import_kwh = [w / 1000 * dt for w in res["P_grid_pos"]]
    export_kwh = [-w / 1000 * dt for w in res["P_grid_neg"]]
    batt_kw = [w / 1000 for w in res["P_batt"]]  # discharge positive
    wear = case["battery"]["wear_cost_per_kwh"]
    energy_cost = sum(p * e for p, e in zip(case["import_price_per_kwh"], import_kwh, strict=True)) - sum(
        p * e for p, e in zip(case["export_price_per_kwh"], export_kwh, strict=True)
    )
    wear_cost = wear * dt * sum(abs(kw) for kw in batt_kw)
    return {
        "mip_rel_gap": mip_rel_gap,
        "status": str(res["optim_status"].iloc[0]),
        "objective": float(opt.prob.value),  # EMHASS maximises profit - wear - penalties
        "cost_profit_sum": float(res["cost_profit"].sum()),
        "cost": energy_cost + wear_cost,
        "end_soc_pct": float(res["SOC_opt"].iloc[-1]) * 100,
        "simultaneous_slots": sum(
            1 for i, e in zip(res["P_grid_pos"], res["P_grid_neg"], strict=True) if i > 1e-3 and -e > 1e-3
        ),
        "new_object_ms": statistics.median(new_ms),
        "cached_ms": statistics.median(cached_ms),
        "samples": samples,
    }


def main() -> int:
    request = json.load(sys.stdin)
    out = {
        "emhass": version("emhass"),
        "cvxpy": version("cvxpy"),
        "highspy": version("highspy"),
        "runs": [solve(request["case"], gap, request["samples"]) for gap in request["mip_rel_gaps"]],
    }
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
