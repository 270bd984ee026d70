// Building the page from data without ever parsing it as HTML: every value
// becomes a text node (record bytes are untrusted), elements are made with
// createElement, attributes set one by one.

/** An element `tag` with `attrs` (a class string under `class`, `data-*`,
 *  `href`...) and `children`: nodes, strings (as text) or arrays of them;
 *  null and undefined are skipped. */
export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined) continue;
    if (Array.isArray(child)) append(node, child);
    else if (child instanceof Node) node.appendChild(child);
    else node.appendChild(document.createTextNode(String(child)));
  }
}

/** A table: `head` is a list of [title, class], `rows` a list of <tr>. */
export function table(head, rows, attrs) {
  return h("table", attrs,
    h("thead", null, h("tr", null, head.map(([title, cls]) => h("th", { class: cls }, title)))),
    h("tbody", null, rows));
}

/** A definition list of [term, value] pairs. */
export function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.map(([term, value]) => [h("dt", null, term), h("dd", null, value)]));
}

/** GET `path` of the admin API as JSON; throws an Error with the API's
 *  message (or the HTTP status) when the answer is not 200. */
export async function api(path) {
  const response = await fetch("/api/v1" + path, { headers: { accept: "application/json" } });
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    // Not JSON: reported by status below.
  }
  if (!response.ok) {
    const why = body && body.message ? `${body.error}: ${body.message}` : `HTTP ${response.status}`;
    throw new Error(`${path}: ${why}`);
  }
  return body;
}

/** `#/topics/<name>` style link targets: every part URI-encoded. */
export function route(...parts) {
  return "#/" + parts.map((part) => encodeURIComponent(String(part))).join("/");
}

export function count(n) {
  if (n === null || n === undefined) return "—";
  return Number(n).toLocaleString("en-US");
}

export function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = Number(n);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

export function duration(seconds) {
  let s = Math.floor(Number(seconds));
  const parts = [];
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
    if (s >= size) {
      parts.push(`${Math.floor(s / size)}${unit}`);
      s %= size;
    }
  }
  parts.push(`${s}s`);
  return parts.join(" ");
}

export function timestamp(ms) {
  const date = new Date(Number(ms));
  return Number.isNaN(date.getTime()) ? String(ms) : date.toISOString();
}

export function badge(text, kind) {
  return h("span", { class: "badge " + (kind || "") }, text);
}
