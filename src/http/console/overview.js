// Overview: the broker's version, uptime, readiness, connections, data
// directory and disk, and every effective setting with where it came from.

import { api, badge, bytes, count, duration, facts, h, table } from "./dom.js";

export async function load() {
  const b = await api("/broker");
  const ready = b.readiness.ready
    ? badge("ready", "ok")
    : badge(`not ready: ${b.readiness.missing.join(", ")}`, "bad");
  return h("div", null,
    h("h1", null, "Overview"),
    facts([
      ["Version", `${b.broker_version} (protocol ${b.protocol_version})`],
      ["Uptime", h("span", { "data-field": "uptime" }, duration(b.uptime_seconds))],
      ["Readiness", ready],
      ["Client listener", b.address || "not accepting yet"],
      ["Connections", `${count(b.connections_open)} open, ${count(b.connections_accepted)} accepted since start`],
      ["Data directory", h("code", null, b.data_dir)],
      ["Disk used", bytes(b.disk_used_bytes)],
      ["Disk free", bytes(b.disk_free_bytes)],
    ]),
    h("h2", null, "Effective configuration"),
    configTable(b.config, b.config_sources || {}));
}

function configTable(config, sources) {
  const rows = [];
  for (const [section, keys] of Object.entries(config)) {
    if (keys === null || typeof keys !== "object") {
      rows.push(row(section, keys, sources));
      continue;
    }
    for (const [key, value] of Object.entries(keys)) rows.push(row(`${section}.${key}`, value, sources));
  }
  return table([["key"], ["value"], ["source"]], rows, { class: "config" });
}

function row(key, value, sources) {
  const source = sources[key] ? sources[key].source : "default";
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return h("tr", null, h("td", null, h("code", null, key)), h("td", null, h("code", null, text)),
    h("td", { class: source === "default" ? "muted" : "" }, source));
}
