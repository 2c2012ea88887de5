// The live page: GET /api/v1/overview every few seconds, and pushes from the WebSocket API at
// ws://<this host>/ws (subscribed to the site, its rooms and its sensors). Plain script, no build.
"use strict";

const POLL_MS = 3000;
const FEED_LINES = 12;
const TOPICS = ["site", "rooms/*", "sensors/*"];

const state = {
  token: null,
  site: null, // from #site=..., else the token's only site or the deployment's default
  overview: null,
  powerKw: {}, // sensor id -> newest power in kW (from the overview's sums, then from pushes)
  socket: null,
  retryMs: 1000,
  received: 0,
  pollTimer: null,
};

const $ = (id) => document.getElementById(id);

function fragment() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  return { token: params.get("token"), site: params.get("site") };
}

function fmt(value, digits = 2) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

function timeOf(iso) {
  return iso ? new Date(iso).toLocaleTimeString() : "–";
}

function setPill(el, text, ok) {
  el.textContent = text;
  el.classList.toggle("ok", ok === true);
  el.classList.toggle("bad", ok === false);
}

function flash(el) {
  el.classList.remove("flash");
  void el.offsetWidth; // restart the animation
  el.classList.add("flash");
}

function touched() {
  $("updated").textContent = new Date().toLocaleTimeString();
}

// ------------------------------------------------------------------ the overview

async function poll() {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (state.site) headers["X-Site"] = state.site;
  try {
    const response = await fetch("/api/v1/overview", { headers, cache: "no-store" });
    const body = await response.json().catch(() => ({}));
    if (response.status === 401 || response.status === 403) {
      signOut(body.error ? body.error.message : `refused (${response.status})`);
      return;
    }
    if (!response.ok) throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
    setPill($("api-state"), "API: ok", true);
    showOverview(body);
    if (!state.socket) openSocket(body.site_id);
  } catch (error) {
    setPill($("api-state"), `API: ${error.message}`, false);
  }
}

function showOverview(overview) {
  state.overview = overview;
  seedPower(overview); // each poll re-seeds the per-sensor powers that pushes then move
  $("site-name").textContent = `${overview.name} (${overview.site_id})`;
  document.title = `EMS live: ${overview.name}`;
  showPower(overview.power);
  $("power-as-of").textContent = timeOf(overview.power.as_of);
  const energy = overview.energy_today;
  $("energy-since").textContent = `since ${new Date(energy.start).toLocaleString()}`;
  for (const cell of document.querySelectorAll("[data-energy]")) {
    cell.textContent = fmt(energy[cell.dataset.energy], 2);
  }
  showRooms(overview.rooms);
  const s = overview.sensors;
  $("sensor-counts").textContent =
    `${s.total} sensors: ${s.online} online, ${s.offline} offline, ${s.unknown} not heard from yet.`;
  touched();
}

function showPower(power) {
  for (const el of document.querySelectorAll("[data-field]")) {
    const next = fmt(power[el.dataset.field], el.dataset.field === "battery_soc_pct" ? 1 : 2);
    if (el.textContent !== next) {
      el.textContent = next;
      flash(el.closest(".card") || el);
    }
  }
  const grid = power.grid_kw;
  $("grid-direction").textContent =
    grid === null || grid === undefined ? "kW" : grid >= 0 ? "kW importing" : "kW exporting";
  const battery = power.battery_kw;
  $("battery-direction").textContent =
    battery === null || battery === undefined ? "kW" : battery > 0 ? "kW charging" : battery < 0 ? "kW discharging" : "kW idle";
}

function showRooms(rooms) {
  const body = $("rooms").querySelector("tbody");
  const rows = new Map([...body.rows].map((row) => [row.dataset.room, row]));
  for (const room of rooms) {
    let row = rows.get(room.name);
    if (!row) {
      row = body.insertRow();
      row.dataset.room = room.name;
      for (let i = 0; i < 7; i++) row.insertCell();
    }
    rows.delete(room.name);
    const cells = [room.name, fmt(room.temperature_c, 1), fmt(room.humidity_pct, 0), fmt(room.co2_ppm, 0),
      fmt(room.occupancy, 0), String(room.sensor_count), timeOf(room.updated_at)];
    cells.forEach((text, i) => {
      if (row.cells[i].textContent !== text) {
        row.cells[i].textContent = text; // text, never markup: room names are the users'
        if (i > 0) flash(row.cells[i]);
      }
    });
  }
  for (const stale of rows.values()) stale.remove();
}

// ------------------------------------------------------------------ live pushes

function openSocket(siteId) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const query = new URLSearchParams({ token: state.token, site: siteId });
  const socket = new WebSocket(`${scheme}://${location.host}/ws?${query}`);
  state.socket = socket;
  socket.onopen = () => {
    state.retryMs = 1000;
    setPill($("ws-state"), "WebSocket: open", true);
    socket.send(JSON.stringify({ action: "subscribe", topics: TOPICS }));
  };
  socket.onmessage = (event) => {
    let messages;
    try {
      messages = JSON.parse(event.data);
    } catch {
      return;
    }
    // Fan-out sends several messages for one connection as one JSON array.
    for (const message of Array.isArray(messages) ? messages : [messages]) {
      state.received += 1;
      feed(message);
      applyPush(message);
    }
    $("ws-count").textContent = String(state.received);
  };
  socket.onclose = () => {
    state.socket = null;
    setPill($("ws-state"), "WebSocket: closed, retrying", false);
    if (state.token) setTimeout(() => state.token && !state.socket && openSocket(siteId), state.retryMs);
    state.retryMs = Math.min(state.retryMs * 2, 30000);
  };
}

function feed(message) {
  const line = document.createElement("li");
  const data = message.data ? JSON.stringify(message.data.metrics || message.data) : "";
  line.textContent = `${timeOf(message.ts)} ${message.topic || message.type} ${data}`;
  const list = $("feed");
  list.prepend(line);
  while (list.children.length > FEED_LINES) list.lastChild.remove();
}

// A pushed reading of a power sensor moves the flows at once: the same sums as the overview's
// (ems/overview/service.py), from the sensors it names for each flow.
function applyPush(message) {
  const overview = state.overview;
  if (!overview || !message.data) return;
  const readings = [];
  if (message.type === "reading" && message.data.metrics && "power_w" in message.data.metrics) {
    readings.push([message.data.sensor_id, message.data.metrics.power_w, message.data.metrics.soc_pct]);
  } else if (message.type === "power" && message.data.meters) {
    for (const [id, watts] of Object.entries(message.data.meters)) readings.push([id, watts]);
  }
  if (!readings.length) return;
  const power = { ...overview.power };
  const flows = power.sensors || {};
  const known = (ids) => ids.every((id) => id in state.powerKw);
  for (const [id, watts, soc] of readings) {
    state.powerKw[id] = watts / 1000;
    if (soc !== undefined && (flows.battery || []).includes(id)) power.battery_soc_pct = soc;
  }
  const sum = (flow, clamp) => {
    const ids = flows[flow] || [];
    if (!ids.length || !known(ids)) return power[`${flow}_kw`];
    return ids.reduce((total, id) => total + (clamp ? Math.max(state.powerKw[id], 0) : state.powerKw[id]), 0);
  };
  power.grid_kw = sum("grid", false);
  power.generation_kw = sum("generation", true);
  power.battery_kw = sum("battery", false);
  if (power.grid_kw !== null && power.grid_kw !== undefined) {
    power.grid_import_kw = Math.max(power.grid_kw, 0);
    power.grid_export_kw = Math.max(-power.grid_kw, 0);
    power.consumption_kw = power.grid_kw + (power.generation_kw || 0) - (power.battery_kw || 0);
  }
  power.as_of = message.data.ts || power.as_of;
  overview.power = power;
  showPower(power);
  $("power-as-of").textContent = timeOf(power.as_of);
  touched();
}

// ------------------------------------------------------------------ signing in

function signIn(token) {
  state.token = token;
  $("sign-in").hidden = true;
  $("live").hidden = false;
  poll();
  clearInterval(state.pollTimer);
  state.pollTimer = setInterval(poll, POLL_MS);
}

function signOut(reason) {
  state.token = null;
  clearInterval(state.pollTimer);
  if (state.socket) state.socket.close();
  $("live").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = reason || "";
  setPill($("api-state"), "API: no token", false);
}

function seedPower(overview) {
  // The overview's own numbers per sensor are not known, only per flow; a flow with one sensor
  // gives that sensor's power, which is the common case (one meter, one inverter, one battery).
  for (const [flow, ids] of Object.entries(overview.power.sensors || {})) {
    const kw = overview.power[`${flow}_kw`];
    if (ids.length === 1 && kw !== null && kw !== undefined) state.powerKw[ids[0]] = kw;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const given = fragment();
  state.site = given.site;
  $("sign-in").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (token) signIn(token);
  });
  if (given.token) {
    $("token").value = given.token;
    signIn(given.token);
  } else {
    signOut("");
  }
});
