// Consumer groups: every group with its state, members and total lag; and
// one group's members, their assignment, and the committed offset and lag of
// each partition.

import { api, badge, count, facts, h, route, table } from "./dom.js";

export async function loadList() {
  const list = await api("/groups");
  const described = await Promise.all(list.groups.map((g) =>
    api("/groups/" + encodeURIComponent(g.group_id)).catch((err) => err)));
  const rows = list.groups.map((g, i) => {
    const d = described[i];
    const lag = d instanceof Error ? h("span", { class: "error" }, d.message) : count(totalLag(d));
    return h("tr", { "data-group": g.group_id },
      h("td", null, h("a", { href: route("groups", g.group_id) }, g.group_id)),
      h("td", null, state(g.state)),
      h("td", { class: "num", "data-field": "members" }, count(g.members)),
      h("td", null, g.assignor),
      h("td", { class: "num", "data-field": "lag" }, lag));
  });
  return h("div", null,
    h("h1", null, "Consumer groups"),
    list.groups.length === 0
      ? h("p", { class: "muted" }, "No groups yet.")
      : table([["group"], ["state"], ["members", "num"], ["assignor"], ["total lag", "num"]], rows, { class: "wide groups" }));
}

function totalLag(d) {
  return d.offsets.reduce((n, p) => n + (p.lag === null || p.lag === undefined ? 0 : p.lag), 0);
}

function state(name) {
  return badge(name, name === "Stable" ? "ok" : name === "Dead" ? "bad" : "");
}

export async function loadGroup(params) {
  const d = await api("/groups/" + encodeURIComponent(params.group));
  const members = d.members.map((m) => h("tr", { "data-member": m.member_id },
    h("td", null, h("code", null, m.member_id)),
    h("td", null, m.group_instance_id === null || m.group_instance_id === undefined ? "—" : m.group_instance_id),
    h("td", null, m.client_id),
    h("td", null, m.host),
    h("td", { class: "num" }, String(m.generation_id)),
    h("td", null, m.topics.join(", ")),
    h("td", null, m.assignment.length === 0 ? h("span", { class: "muted" }, "nothing") : m.assignment.map((a) =>
      h("div", null, h("a", { href: route("topics", a.topic) }, a.topic), `: ${a.partitions.join(", ")}`)))));
  const offsets = d.offsets.map((p) => h("tr", { "data-partition": `${p.topic}/${p.partition}` },
    h("td", null, h("a", { href: route("topics", p.topic) }, p.topic)),
    h("td", { class: "num" }, String(p.partition)),
    h("td", { class: "num", "data-field": "committed" }, count(p.current_offset)),
    h("td", { class: "num", "data-field": "end" }, count(p.log_end_offset)),
    h("td", { class: "num", "data-field": "lag" }, count(p.lag)),
    h("td", null, p.member_id ? h("code", null, p.member_id) : h("span", { class: "muted" }, "unassigned"))));
  return h("div", null,
    h("div", { class: "crumbs" }, h("a", { href: "#/groups" }, "Groups"), " / "),
    h("h1", null, d.group_id),
    facts([["State", state(d.state)], ["Generation", String(d.generation_id)], ["Assignor", d.assignor],
      ["Total lag", h("span", { "data-field": "total-lag" }, count(totalLag(d)))]]),
    h("h2", null, `Members (${d.members.length})`),
    d.members.length === 0 ? h("p", { class: "muted" }, "No members.")
      : table([["member"], ["instance id"], ["client"], ["host"], ["generation", "num"], ["topics"], ["assignment"]],
        members, { class: "wide members" }),
    h("h2", null, "Committed offsets"),
    d.offsets.length === 0 ? h("p", { class: "muted" }, "No committed offsets.")
      : table([["topic"], ["partition", "num"], ["committed", "num"], ["end offset", "num"], ["lag", "num"], ["member"]],
        offsets, { class: "wide offsets" }),
    d.damaged && d.damaged.length ? [h("h2", { class: "error" }, "Damaged records of the group's log"),
      h("ul", null, d.damaged.map((r) => h("li", { class: "error" },
        `offsets ${r.first_offset} to ${r.next_offset - 1} of its log: ${r.reason}`)))] : null);
}
