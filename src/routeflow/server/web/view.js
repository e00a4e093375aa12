// routeflow's live web view: the topology the RF-Server knows, redrawn as its events
// arrive (server-sent events from /api/v1/events/stream), and searchable tables of a
// VM's routes and a datapath's flows. Plain browser JavaScript, no build step.
"use strict";

const API = "/api/v1";
const SVG = "http://www.w3.org/2000/svg";
// Every link ever seen, by its ends: a link the server stops listing (or whose port went
// down) stays on the picture, drawn down, so a cut is seen where it happened.
const knownLinks = new Map();
let refreshTimer = null;

async function getJson(path) {
  const response = await fetch(API + path);
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

function el(name, attrs, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function linkKey(a, b) { return [a, b].sort().join(" "); }

function portUp(datapaths, end) {
  const [dpid, port] = end.split(":");
  const dp = datapaths.find((d) => d.dpid === dpid);
  const p = dp && dp.ports.find((q) => String(q.port) === port);
  return Boolean(dp && dp.connected && p && p.up);
}

async function drawTopology() {
  const [{ datapaths }, { links }, status] = await Promise.all(
    [getJson("/datapaths"), getJson("/links"), getJson("/status")]);
  const controller = document.getElementById("controller");
  controller.textContent = status.controller_connected ? "controller up" : "controller DOWN";
  controller.className = "badge " + (status.controller_connected ? "ok" : "bad");
  const listed = new Set();
  for (const link of links) {
    const key = linkKey(link.from, link.to);
    listed.add(key);
    knownLinks.set(key, link);
  }
  const switches = datapaths.filter((d) => !d.mirrored_by.startsWith("RFVS"));
  const svg = document.getElementById("topology");
  svg.replaceChildren();
  const cx = 400, cy = 280, r = Math.min(200, 60 + 40 * switches.length);
  const where = new Map();
  switches.forEach((dp, i) => {
    const angle = (2 * Math.PI * i) / Math.max(1, switches.length) - Math.PI / 2;
    where.set(dp.dpid, [cx + r * Math.cos(angle), cy + r * Math.sin(angle), angle]);
  });
  for (const [key, link] of knownLinks) {
    const a = where.get(link.from.split(":")[0]), b = where.get(link.to.split(":")[0]);
    if (!a || !b) continue;
    const up = listed.has(key) && portUp(datapaths, link.from) && portUp(datapaths, link.to);
    const line = el("line", { x1: a[0], y1: a[1], x2: b[0], y2: b[1], class: `link ${up ? "up" : "down"}`,
                              "data-link": key, "data-state": up ? "up" : "down" });
    line.appendChild(el("title", {}, `${link.from} - ${link.to}: ${up ? "up" : "down"}`));
    svg.appendChild(line);
    for (const [end, from, to] of [[link.from, a, b], [link.to, b, a]]) {
      svg.appendChild(el("text", { x: from[0] + (to[0] - from[0]) * 0.2, y: from[1] + (to[1] - from[1]) * 0.2 - 4,
                                   class: "port" }, end.split(":")[1]));
    }
  }
  for (const dp of switches) {
    const [x, y, angle] = where.get(dp.dpid);
    const g = el("g", { class: "datapath", "data-dpid": dp.dpid, "data-state": dp.connected ? "up" : "down" });
    const link = el("a", { href: `#/datapath/${dp.dpid}` });
    link.appendChild(el("circle", { cx: x, cy: y, r: 26, class: `switch ${dp.connected ? "up" : "down"}` }));
    link.appendChild(el("text", { x, y: y + 4, "text-anchor": "middle", class: "switch-label" }, dp.dpid));
    link.appendChild(el("title", {}, `datapath ${dp.dpid}: ${dp.flow_count} flows, ` +
      `${dp.ports.filter((p) => p.up).length}/${dp.ports.length} ports up`));
    g.appendChild(link);
    if (dp.mirrored_by) {
      const vx = x + 62 * Math.cos(angle), vy = y + 62 * Math.sin(angle);
      const vm = el("a", { href: `#/vm/${dp.mirrored_by}` });
      vm.appendChild(el("rect", { x: vx - 22, y: vy - 12, width: 44, height: 24, rx: 4, class: "vm" }));
      vm.appendChild(el("text", { x: vx, y: vy + 4, "text-anchor": "middle", class: "vm-label" }, dp.mirrored_by));
      g.appendChild(vm);
    }
    svg.appendChild(g);
  }
  document.getElementById("nav").replaceChildren(...switches.filter((d) => d.mirrored_by).map((d) => {
    const a = document.createElement("a");
    a.href = `#/vm/${d.mirrored_by}`;
    a.textContent = `${d.mirrored_by} routes`;
    return a;
  }));
}

function scheduleRefresh() {
  // Events come in bursts (a cut: two port changes, a link, routes): draw once after them.
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => route().catch(showError), 150);
}

function showError(error) {
  const live = document.getElementById("live");
  live.textContent = String(error.message || error);
  live.className = "badge bad";
}

function listen() {
  const live = document.getElementById("live");
  const source = new EventSource(API + "/events/stream");
  source.onopen = () => { live.textContent = "live"; live.className = "badge ok"; };
  source.onmessage = scheduleRefresh;
  source.onerror = () => { live.textContent = "reconnecting"; live.className = "badge bad"; };
}

async function drawTable(title, path, key, columns, row) {
  const query = document.getElementById("search").value;
  const page = await getJson(`${path}?limit=1000&q=${encodeURIComponent(query)}`);
  document.getElementById("table-title").textContent = title;
  document.getElementById("table-count").textContent =
    `${page[key].length} shown of ${page[`${key.replace(/s$/, "")}_count`]}`;
  const head = document.createElement("tr");
  head.replaceChildren(...columns.map((c) => Object.assign(document.createElement("th"), { textContent: c })));
  document.getElementById("table-head").replaceChildren(head);
  document.getElementById("table-body").replaceChildren(...page[key].map((item) => {
    const tr = document.createElement("tr");
    tr.replaceChildren(...row(item).map((v) => Object.assign(document.createElement("td"), { textContent: v })));
    return tr;
  }));
}

async function route() {
  const [, kind, name] = (location.hash || "#/").split("/");
  const table = kind === "vm" || kind === "datapath";
  document.getElementById("topology-page").hidden = table;
  document.getElementById("table-page").hidden = !table;
  if (kind === "vm") {
    await drawTable(`routes of ${name}`, `/vms/${name}/routes`, "routes", ["prefix", "type", "proto", "next hops"],
      (r) => [r.prefix, r.type, r.proto, r.nexthops.map((h) => `${h.gateway || "direct"} dev ${h.ifname}`).join(", ")]);
  } else if (kind === "datapath") {
    await drawTable(`flows of datapath ${name}`, `/datapaths/${name}/flows`, "flows", ["flow"], (f) => [f.text]);
  } else {
    await drawTopology();
  }
}

document.getElementById("search").addEventListener("input", scheduleRefresh);
window.addEventListener("hashchange", () => {
  document.getElementById("search").value = "";
  route().catch(showError);
});
route().catch(showError);
listen();
