// The message browser: one partition's records from an offset, a page at a
// time (`#/topics/<topic>/browse?partition=P&offset=N&limit=M`). Keys, header
// values and values are shown by render.js's rule (MessagePack, text, hex);
// a null value is a tombstone.

import { api, count, h, route, table, timestamp } from "./dom.js";
import { bytesCell } from "./render.js";

const DEFAULT_LIMIT = 50;

export async function load(params) {
  const topic = params.topic;
  const d = await api("/topics/" + encodeURIComponent(topic));
  const partition = number(params.partition, 0);
  const limit = number(params.limit, DEFAULT_LIMIT);
  const query = new URLSearchParams({ limit: String(limit) });
  if (params.offset !== undefined && params.offset !== "") query.set("offset", params.offset);
  let page;
  try {
    page = await api(`/topics/${encodeURIComponent(topic)}/partitions/${partition}/records?${query}`);
  } catch (err) {
    // A damaged range or an offset out of range: keep the form to go elsewhere.
    return h("div", null, heading(topic),
      form(topic, d.partitions.length, partition, params.offset || "", limit),
      h("p", { class: "error", "data-field": "records-error" }, err.message));
  }

  const at = (offset) => route("topics", topic, "browse") + `?partition=${partition}&offset=${offset}&limit=${limit}`;
  const rows = page.records.map((r) => h("tr", { "data-offset": r.offset },
    h("td", { class: "num" }, String(r.offset)),
    h("td", { class: "mono" }, timestamp(r.timestamp)),
    h("td", { "data-field": "key" }, bytesCell(r.key, "null")),
    h("td", { "data-field": "headers" }, r.headers.length === 0 ? h("span", { class: "muted" }, "none")
      : r.headers.map((header) => h("div", { class: "header" }, h("code", null, header.key + " ="),
        h("div", null, bytesCell(header.value, "null"))))),
    h("td", { "data-field": "value" }, bytesCell(r.value, "tombstone"))));
  const first = page.records.length ? page.records[0].offset : page.next_offset;
  return h("div", null, heading(topic),
    form(topic, d.partitions.length, partition, page.records.length ? first : page.next_offset, limit),
    h("p", { class: "muted" },
      `Partition ${partition}: offsets ${count(page.log_start_offset)} to ${count(page.high_watermark)} (high watermark). `,
      page.records.length ? `Showing ${page.records.length} from offset ${first}.` : "No records from this offset."),
    page.records.length ? table([["offset", "num"], ["timestamp"], ["key"], ["headers"], ["value"]], rows,
      { class: "wide records" }) : null,
    h("div", { class: "pager" },
      first > page.log_start_offset
        ? h("a", { class: "button secondary", href: at(Math.max(page.log_start_offset, first - limit)) }, "← previous")
        : null,
      page.next_offset < page.high_watermark
        ? h("a", { class: "button", href: at(page.next_offset), "data-next": page.next_offset }, "next page →")
        : h("span", { class: "muted" }, "end of the partition")));
}

function heading(topic) {
  return [
    h("div", { class: "crumbs" }, h("a", { href: "#/topics" }, "Topics"), " / ",
      h("a", { href: route("topics", topic) }, topic), " / "),
    h("h1", null, `Records of ${topic}`),
  ];
}

function number(text, fallback) {
  const n = Number.parseInt(text, 10);
  return Number.isFinite(n) && n >= 0 ? n : fallback;
}

function form(topic, partitions, partition, offset, limit) {
  const options = [];
  for (let p = 0; p < partitions; p++) options.push(h("option", { value: p, selected: p === partition }, String(p)));
  const select = h("select", { name: "partition" }, options);
  const offsetInput = h("input", { name: "offset", type: "number", min: 0, value: offset });
  const limitInput = h("input", { name: "limit", type: "number", min: 1, max: 1000, value: limit });
  const f = h("form", { class: "browse" },
    h("label", null, "partition", select),
    h("label", null, "offset", offsetInput),
    h("label", null, "limit", limitInput),
    h("button", { type: "submit" }, "Show"));
  f.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = route("topics", topic, "browse")
      + "?" + new URLSearchParams({ partition: select.value, offset: offsetInput.value, limit: limitInput.value });
  });
  return f;
}
