"""The demo building's physics, pure: the sun and a PV array under moving clouds, a battery, rooms
(temperature, humidity, CO2) and water tanks as first-order thermal models (`relax`: after one time
constant a gap shrinks to 1/e), HVAC that holds a setpoint, radiators, and the energy balance at the
main meter.

Sign conventions: power in kW; a load draws >= 0; PV generates >= 0; the battery's power is > 0 while
charging and < 0 while discharging. The main meter reads what the building takes from the grid:

    meter_kw = sum(loads_kw) - pv_kw + battery_charge_kw - battery_discharge_kw

(negative: the building exports).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

OUTDOOR_CO2_PPM = 420.0


def meter_kw(loads_kw: Iterable[float], pv_kw: float, battery_kw: float) -> float:
    """Grid import at the main meter (the module docstring's balance; battery_kw > 0 charges)."""
    charge_kw, discharge_kw = max(battery_kw, 0.0), max(-battery_kw, 0.0)
    return sum(loads_kw) - pv_kw + charge_kw - discharge_kw


# --- the sun ------------------------------------------------------------------------------------


def solar_elevation_deg(when: datetime, latitude: float, longitude: float) -> float:
    """The sun's elevation above the horizon, from the usual declination and hour-angle approximations
    (Cooper's declination, solar time from longitude; within about a degree, enough for a demo)."""
    when = when.astimezone(UTC)
    day = when.timetuple().tm_yday
    declination = math.radians(23.44) * math.sin(math.radians(360 / 365 * (284 + day)))
    solar_hours = when.hour + when.minute / 60 + when.second / 3600 + longitude / 15
    hour_angle = math.radians(15 * (solar_hours - 12))
    lat = math.radians(latitude)
    sine = math.sin(lat) * math.sin(declination) + math.cos(lat) * math.cos(declination) * math.cos(
        hour_angle
    )
    return math.degrees(math.asin(max(-1.0, min(1.0, sine))))


def clear_sky_ghi_w_m2(elevation_deg: float) -> float:
    """Global horizontal irradiance under a clear sky, Haurwitz's model: 1098 cos(z) exp(-0.059 / cos(z)),
    z the zenith angle; 0 with the sun below the horizon."""
    cos_zenith = math.sin(math.radians(elevation_deg))
    if cos_zenith <= 0.01:
        return 0.0
    return 1098.0 * cos_zenith * math.exp(-0.059 / cos_zenith)


@dataclass
class Clouds:
    """The share of clear-sky irradiance that gets through (clear_pct 100: a clear sky), a bounded
    random walk that drifts back towards its mean."""

    clear_pct: float = 85.0
    mean_pct: float = 75.0
    volatility_pct: float = 6.0  # per minute

    def step(self, rng: random.Random, dt_s: float) -> float:
        minutes = dt_s / 60
        drift = (self.mean_pct - self.clear_pct) * min(1.0, 0.05 * minutes)
        noise = rng.gauss(0.0, self.volatility_pct * math.sqrt(max(minutes, 0.0)))
        self.clear_pct = max(15.0, min(100.0, self.clear_pct + drift + noise))
        return self.clear_pct


def pv_kw(ghi_w_m2: float, clear_pct: float, peak_kw: float, derate: float = 0.85) -> float:
    """A PV array's output: its peak power at 1000 W/m2, scaled by irradiance, clouds and losses."""
    return max(0.0, min(peak_kw, peak_kw * ghi_w_m2 / 1000.0 * clear_pct / 100.0 * derate))


# --- the battery --------------------------------------------------------------------------------


@dataclass
class Battery:
    capacity_kwh: float = 20.0
    max_power_kw: float = 5.0
    soc_pct: float = 50.0
    min_soc_pct: float = 10.0
    max_soc_pct: float = 100.0
    setpoint_kw: float = 0.0  # asked for: > 0 charge, < 0 discharge
    efficiency: float = 0.95  # one way

    def step(self, dt_s: float) -> float:
        """Run for dt_s at the setpoint within the power and state-of-charge limits; the power it ran at."""
        hours = dt_s / 3600
        power_kw = max(-self.max_power_kw, min(self.max_power_kw, self.setpoint_kw))
        if hours <= 0 or power_kw == 0:
            return 0.0
        if power_kw > 0:
            room_kwh = max(0.0, self.max_soc_pct - self.soc_pct) / 100 * self.capacity_kwh
            power_kw = min(power_kw, room_kwh / self.efficiency / hours)
            self.soc_pct += power_kw * hours * self.efficiency / self.capacity_kwh * 100
        else:
            stored_kwh = max(0.0, self.soc_pct - self.min_soc_pct) / 100 * self.capacity_kwh
            power_kw = -min(-power_kw, stored_kwh * self.efficiency / hours)
            self.soc_pct += power_kw * hours / self.efficiency / self.capacity_kwh * 100
        self.soc_pct = max(0.0, min(100.0, self.soc_pct))
        return power_kw


# --- rooms, HVAC and tanks: first order --------------------------------------------------------


def relax(value: float, target: float, dt_s: float, tau_s: float) -> float:
    """First-order approach of `value` to `target` with time constant tau: the exact solution of
    dx/dt = (target - x) / tau over dt, x + (target - x)(1 - e^(-dt/tau)); after one tau the gap is 1/e."""
    if tau_s <= 0:
        return target
    return value + (target - value) * (1.0 - math.exp(-max(dt_s, 0.0) / tau_s))


def solar_azimuth_deg(when: datetime, longitude: float) -> float:
    """Where the sun stands, clockwise from north: 180 at solar noon, 15 degrees an hour (rough, a demo)."""
    when = when.astimezone(UTC)
    solar_hours = when.hour + when.minute / 60 + when.second / 3600 + longitude / 15
    return (180.0 + 15.0 * (solar_hours - 12.0)) % 360


ORIENTATION_DEG = {"north": 0.0, "east": 90.0, "south": 180.0, "west": 270.0}


def solar_gain_kw(
    window_m2: float, ghi_w_m2: float, clear_pct: float, facing: str, azimuth_deg: float
) -> float:
    """Sun through a room's windows: irradiance x clouds x area x 0.4 (the glazing's g-value), all of
    the diffuse 30 % and of the direct 70 % the part the window faces."""
    facing_share = max(0.0, math.cos(math.radians(azimuth_deg - ORIENTATION_DEG[facing])))
    return window_m2 * ghi_w_m2 / 1000.0 * clear_pct / 100.0 * 0.4 * (0.3 + 0.7 * facing_share)


# The air, walls and furniture of a room: 0.012 kWh per K and m3; losses through the envelope
# 0.003 kW per K and m3 and 0.004 kW per K and m2 of window (rough office figures).
HEAT_CAPACITY_KWH_PER_K_M3 = 0.012
LOSS_KW_PER_K_M3 = 0.003
LOSS_KW_PER_K_M2_WINDOW = 0.004
PERSON_KW = 0.1


@dataclass
class Room:
    """A room's air, a first-order thermal model: heat capacity C (kWh/K), losses UA (kW/K) to outdoors,
    time constant tau = C / UA. With gains Q (people, sun, HVAC) it settles at outdoor + Q / UA."""

    name: str
    volume_m3: float = 150.0
    facing: str = "south"
    window_m2: float = 8.0
    max_occupancy: int = 8
    temperature_c: float = 21.0
    humidity_pct: float = 45.0
    co2_ppm: float = OUTDOOR_CO2_PPM
    occupancy: int = 0
    air_changes_per_hour: float = 1.5

    @property
    def heat_capacity_kwh_per_k(self) -> float:
        return HEAT_CAPACITY_KWH_PER_K_M3 * self.volume_m3

    @property
    def loss_kw_per_k(self) -> float:
        return LOSS_KW_PER_K_M3 * self.volume_m3 + LOSS_KW_PER_K_M2_WINDOW * self.window_m2

    @property
    def tau_s(self) -> float:
        return self.heat_capacity_kwh_per_k / self.loss_kw_per_k * 3600

    def free_running_c(self, outdoor_c: float, solar_kw: float) -> float:
        """Where the room settles without HVAC: outdoors plus its gains (people, sun) over its losses."""
        return outdoor_c + (PERSON_KW * self.occupancy + solar_kw) / self.loss_kw_per_k

    def step(self, dt_s: float, outdoor_c: float, hvac_heat_kw: float, solar_kw: float = 0.0) -> None:
        """Advance temperature (towards outdoors plus gains over losses, first order), CO2 (20 L per
        person-hour, diluted by ventilation) and humidity (towards 40 % plus 1.5 % per person)."""
        hours = dt_s / 3600
        settles_c = self.free_running_c(outdoor_c, solar_kw) + hvac_heat_kw / self.loss_kw_per_k
        self.temperature_c = relax(self.temperature_c, settles_c, dt_s, self.tau_s)
        generated_ppm = self.occupancy * 20.0 / (self.volume_m3 * 1000) * 1e6  # 20 L CO2 per person-hour
        decay = min(1.0, self.air_changes_per_hour * hours)
        self.co2_ppm += generated_ppm * hours - (self.co2_ppm - OUTDOOR_CO2_PPM) * decay
        target_humidity = 40.0 + 1.5 * self.occupancy
        self.humidity_pct += (target_humidity - self.humidity_pct) * min(1.0, hours)
        self.humidity_pct = max(0.0, min(100.0, self.humidity_pct))


def hvac_heat_kw(
    room: Room, outdoor_c: float, solar_kw: float, setpoint_c: float, mode: str, rated_kw: float,
    cop: float = 3.0,
) -> tuple[float, float]:  # fmt: skip
    """An HVAC unit that holds its setpoint: the heat that makes the room settle there,
    UA x (setpoint - free-running temperature), within its capacity (rated electric kW x COP) and its
    mode (heat only adds heat, cool only removes it, auto both; fan and dry move air at 10 % of rated
    power). (electric kW drawn, heat kW into the room; < 0 cools)."""
    if mode in ("fan", "dry"):
        return 0.1 * rated_kw, 0.0
    needed_kw = room.loss_kw_per_k * (setpoint_c - room.free_running_c(outdoor_c, solar_kw))
    low = -rated_kw * cop if mode in ("cool", "auto") else 0.0
    high = rated_kw * cop if mode in ("heat", "auto") else 0.0
    heat_kw = max(low, min(high, needed_kw))
    return abs(heat_kw) / cop, heat_kw


def radiator_kw(flow_c: float, room_c: float, kw_per_k: float, valve_closes_c: float = 21.0) -> float:
    """A radiator's heat into a room, its conductance x (flow - room), its valve shut from 21 °C."""
    return max(0.0, kw_per_k * (flow_c - room_c)) if room_c < valve_closes_c else 0.0


WATER_KWH_PER_K_LITRE = 4.186 / 3600  # water's specific heat, 4.186 kJ/(kg K), 1 kg a litre


@dataclass
class Tank:
    """A water tank: heat capacity C = litres x 4.186 kJ/K, standby loss UA (kW/K) to its surroundings;
    heated at P kW it settles at ambient + P / UA with time constant C / UA (first order)."""

    litres: float = 200.0
    loss_kw_per_k: float = 0.003
    temperature_c: float = 50.0
    ambient_c: float = 20.0

    @property
    def tau_s(self) -> float:
        return self.litres * WATER_KWH_PER_K_LITRE / self.loss_kw_per_k * 3600

    def step(self, dt_s: float, heat_kw: float) -> None:
        settles_c = self.ambient_c + heat_kw / self.loss_kw_per_k
        self.temperature_c = relax(self.temperature_c, settles_c, dt_s, self.tau_s)


def outdoor_c(when: datetime, mean_c: float = 12.0, swing_c: float = 6.0) -> float:
    """Outdoor temperature: a daily sine, coldest at 04:00 UTC and warmest at 16:00."""
    hours = when.astimezone(UTC).hour + when.minute / 60
    return mean_c - swing_c * math.cos(2 * math.pi * (hours - 4) / 24)
