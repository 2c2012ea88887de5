"""Which sensors measure which power flow, by sensor_type, and the sign of their `power_w`: the
mapping, defined once (the overview's power and energy, the forecasts' training series).

  meter, main_meter             -> grid: net power at the grid connection, > 0 import, < 0 export
  pv_inverter, pv               -> generation: > 0 generated (a negative standby draw counts as 0)
  battery_inverter, battery     -> battery: > 0 charging, < 0 discharging; `soc_pct` its charge
Several sensors of one flow add up (a site with two grid connections, two PV strings). A submeter
or a load (hvac, ev_charger, ...) is none of these: its power is already inside the meter's.
The energy balance that ties them together, at every instant and for every interval:
  consumption = grid + generation - battery  (= import - export + generation - charge + discharge)
"""

from __future__ import annotations

from typing import Literal

Flow = Literal["grid", "generation", "battery"]
FLOWS: tuple[Flow, ...] = ("grid", "generation", "battery")
FLOW_OF_SENSOR_TYPE: dict[str, Flow] = {
    "meter": "grid",
    "main_meter": "grid",
    "pv_inverter": "generation",
    "pv": "generation",
    "battery_inverter": "battery",
    "battery": "battery",
}
POWER_METRIC = "power_w"
