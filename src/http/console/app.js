// The console's router: the part of the URL after `#` names the page
// (`#/topics/<topic>`, `#/groups/<group>`, ...); each page module's `load`
// fetches from the admin API and returns the page's content, which replaces
// the old one in one step. Pages that show live figures are loaded again
// every REFRESH_MS. <body data-page> names the page shown; <body data-loaded>
// is "true" once its data is shown, "error" when it could not be loaded;
// <body data-loads> counts the loads shown on this visit.

import * as overview from "./overview.js";
import * as topics from "./topics.js";
import * as browser from "./browser.js";
import * as groups from "./groups.js";

const REFRESH_MS = 2000;

/** The header link each page belongs under. */
const NAV = { overview: "overview", topics: "topics", topic: "topics", browser: "topics", groups: "groups", group: "groups" };

/** [pattern, page name, load, refreshed]; patterns match the decoded parts. */
const PAGES = [
  [[], "overview", overview.load, true],
  [["overview"], "overview", overview.load, true],
  [["topics"], "topics", topics.loadList, true],
  [["topics", ":topic"], "topic", topics.loadTopic, true],
  [["topics", ":topic", "browse"], "browser", browser.load, false],
  [["groups"], "groups", groups.loadList, true],
  [["groups", ":group"], "group", groups.loadGroup, true],
];

const main = document.getElementById("main");
const status = document.getElementById("status");
let shown = 0; // which navigation the pending loads belong to
let timer = null;

function parse(hash) {
  const [path, query] = hash.replace(/^#\/?/, "").split("?", 2);
  const parts = path === "" ? [] : path.split("/").map(decodeURIComponent);
  const params = Object.fromEntries(new URLSearchParams(query || ""));
  for (const [pattern, name, load, refreshed] of PAGES) {
    if (pattern.length !== parts.length) continue;
    const found = { ...params };
    if (pattern.every((p, i) => (p.startsWith(":") ? ((found[p.slice(1)] = parts[i]), true) : p === parts[i]))) {
      return { name, load, refreshed, params: found };
    }
  }
  return null;
}

async function navigate() {
  shown += 1;
  const mine = shown;
  clearTimeout(timer);
  let page;
  try {
    page = parse(location.hash);
  } catch (_) {
    page = null; // a malformed %-escape
  }
  document.body.dataset.loaded = "false";
  document.body.dataset.page = page ? page.name : "unknown";
  for (const link of document.querySelectorAll("header nav a")) {
    link.classList.toggle("active", page !== null && NAV[page.name] === link.dataset.nav);
  }
  if (!page) {
    main.replaceChildren(document.createTextNode("No such page. "), link("#/overview", "Overview"));
    document.body.dataset.loaded = "error";
    return;
  }
  let loads = 0;
  const state = {}; // kept between the loads of one visit (rates need the last sample)
  const once = async () => {
    try {
      const content = await page.load(page.params, state);
      if (mine !== shown) return;
      main.replaceChildren(content);
      status.hidden = true;
      loads += 1;
      document.body.dataset.loads = String(loads);
      document.body.dataset.loaded = "true";
    } catch (err) {
      if (mine !== shown) return;
      status.textContent = String(err.message || err);
      status.hidden = false;
      if (document.body.dataset.loaded !== "true") {
        main.replaceChildren();
        document.body.dataset.loaded = "error";
      }
    }
    if (page.refreshed && mine === shown) timer = setTimeout(once, REFRESH_MS);
  };
  await once();
}

function link(href, text) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  return a;
}

window.addEventListener("hashchange", navigate);
navigate();
