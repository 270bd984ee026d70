// Topics: every topic with its partitions, records, offsets, size on disk,
// live produce and consume rates and damaged state; and one topic's
// partitions with their offsets, sizes and damaged ranges.
//
// Rates are the differences of /api/v1/traffic's counters between two loads
// of the page (every 2 s), per second: "—" until there are two.

import { api, badge, bytes, count, facts, h, route, table } from "./dom.js";

export async function loadList(_params, state) {
  const [list, traffic] = await Promise.all([api("/topics"), api("/traffic")]);
  const now = performance.now();
  const counters = Object.fromEntries(traffic.topics.map((t) => [t.topic, t]));
  const before = state.last;
  const rates = (topic) => rate(before, { at: now, counters }, topic);
  const described = await Promise.all(list.topics.map((t) =>
    t.state === "damaged" ? Promise.resolve(null) : api("/topics/" + encodeURIComponent(t.topic)).catch((err) => err)));
  state.last = { at: now, counters };

  const rows = list.topics.map((t, i) => topicRow(t, described[i], t.state === "damaged" ? null : rates(t.topic)));
  return h("div", null,
    h("h1", null, "Topics"),
    list.topics.length === 0
      ? h("p", { class: "muted" }, "No topics yet.")
      : table([["topic"], ["state"], ["partitions", "num"], ["records", "num"], ["end offsets", "num"],
        ["size", "num"], ["produce", "num"], ["consume", "num"]], rows, { class: "wide topics" }),
    h("p", { class: "muted" }, "Records: end offset less start offset, summed over partitions. ",
      "Rates: records and bytes a second, over the last 2 s (consume counts every fetch)."));
}

function topicRow(t, d, r) {
  let state = badge("ok", "ok");
  let partitions = null;
  if (t.state === "damaged") {
    state = h("span", null, badge("damaged", "bad"), " ", h("span", { class: "error" }, t.error || ""));
  } else if (d instanceof Error) {
    state = h("span", { class: "error" }, d.message);
  } else {
    partitions = d.partitions;
    const ranges = partitions.reduce((n, p) => n + p.damaged.length, 0);
    if (ranges > 0) state = badge(`${ranges} damaged range${ranges === 1 ? "" : "s"}`, "bad");
  }
  const sum = (f) => (partitions ? partitions.reduce((n, p) => n + f(p), 0) : null);
  return h("tr", { "data-topic": t.topic },
    h("td", null, h("a", { href: route("topics", t.topic) }, t.topic)),
    h("td", null, state),
    h("td", { class: "num", "data-field": "partitions" }, count(t.partitions)),
    h("td", { class: "num", "data-field": "records" }, count(sum((p) => p.log_end_offset - p.log_start_offset))),
    h("td", { class: "num", "data-field": "end-offsets" }, count(sum((p) => p.log_end_offset))),
    h("td", { class: "num", "data-field": "size" }, partitions ? bytes(sum((p) => p.size_bytes)) : "—"),
    h("td", { class: "num", "data-field": "produce-rate" }, r ? `${r.produced_records} rec/s, ${r.produced_bytes}/s` : "—"),
    h("td", { class: "num", "data-field": "consume-rate" }, r ? `${r.fetched_records} rec/s, ${r.fetched_bytes}/s` : "—"));
}

/** Per-second differences for `topic` between two samples, or null. */
function rate(before, after, topic) {
  if (!before) return null;
  const seconds = (after.at - before.at) / 1000;
  const zero = { produced_bytes: 0, produced_records: 0, fetched_bytes: 0, fetched_records: 0 };
  const a = before.counters[topic] || zero;
  const b = after.counters[topic] || zero;
  if (seconds <= 0) return null;
  const per = (key) => Math.max(0, b[key] - a[key]) / seconds;
  return {
    produced_records: perSecond(per("produced_records")),
    produced_bytes: bytes(Math.round(per("produced_bytes"))),
    fetched_records: perSecond(per("fetched_records")),
    fetched_bytes: bytes(Math.round(per("fetched_bytes"))),
  };
}

function perSecond(n) {
  return n >= 100 ? count(Math.round(n)) : n.toFixed(1);
}

export async function loadTopic(params) {
  const d = await api("/topics/" + encodeURIComponent(params.topic));
  const rows = d.partitions.map((p) => h("tr", { "data-partition": p.partition },
    h("td", { class: "num" }, String(p.partition)),
    h("td", { class: "num", "data-field": "start" }, count(p.log_start_offset)),
    h("td", { class: "num", "data-field": "end" }, count(p.log_end_offset)),
    h("td", { class: "num" }, count(p.high_watermark)),
    h("td", { class: "num" }, count(p.log_end_offset - p.log_start_offset)),
    h("td", { class: "num" }, bytes(p.size_bytes)),
    h("td", { class: "num" }, count(p.segments)),
    h("td", null, p.damaged.length === 0 ? h("span", { class: "muted" }, "none") : h("ul", { class: "plain" },
      p.damaged.map((r) => h("li", { class: "error" },
        `offsets ${r.first_offset} to ${r.next_offset - 1} (segment ${r.segment}; next readable ${r.next_offset}): ${r.reason}`)))),
    h("td", null, h("a", { href: route("topics", d.topic, "browse") + `?partition=${p.partition}&offset=${p.log_start_offset}` }, "browse"))));
  const config = Object.entries(d.config).map(([key, value]) =>
    h("tr", null, h("td", null, h("code", null, key)), h("td", null, h("code", null, String(value)))));
  return h("div", null,
    h("div", { class: "crumbs" }, h("a", { href: "#/topics" }, "Topics"), " / "),
    h("h1", null, d.topic),
    facts([["Topic id", h("code", null, d.topic_id)], ["Partitions", String(d.partitions.length)]]),
    h("h2", null, "Partitions"),
    table([["partition", "num"], ["start offset", "num"], ["end offset", "num"], ["high watermark", "num"],
      ["records", "num"], ["size", "num"], ["segments", "num"], ["damaged ranges"], [""]], rows, { class: "wide partitions" }),
    h("h2", null, "Settings"),
    table([["setting"], ["value"]], config));
}
