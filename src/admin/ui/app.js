// stepstitch web UI: three pages over the JSON API, no library.
// Every text goes in through textContent (no HTML from data).
"use strict";

const RANGES = { "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3 };
const $main = document.getElementById("main");
const $panel = document.getElementById("panel");

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    // Through the CSSOM: the page's CSP refuses inline style attributes.
    else if (k === "style") el.style.cssText = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of kids.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const svgNS = "http://www.w3.org/2000/svg";
function s(tag, attrs) {
  const el = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  return el;
}

function range() {
  const r = new URLSearchParams(location.search).get("range");
  return RANGES[r] ? r : "24h";
}
function windowQuery() {
  const to = new Date();
  const from = new Date(to.getTime() - RANGES[range()]);
  return `from=${from.toISOString()}&to=${to.toISOString()}`;
}
function withRange(path) { return `${path}?range=${range()}`; }

// Span and trace ids are unsigned 64-bit: past 2^53 a JS number would
// round them, so they are kept as their exact text.
const ID_KEYS = new Set(["trace_id", "span_id", "parent_id"]);
function keepIds(key, value, ctx) {
  return ID_KEYS.has(key) && typeof value === "number" && ctx && ctx.source ? ctx.source : value;
}

async function api(path) {
  const headers = {};
  const token = sessionStorage.getItem("stepstitch-token");
  if (token) headers.Authorization = `Bearer ${token}`;
  const r = await fetch(path, { headers });
  const text = await r.text();
  let body;
  try { body = JSON.parse(text, keepIds); } catch { body = { error: r.statusText }; }
  if (r.status === 401) throw Object.assign(new Error(body.error), { auth: true });
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function ms(v) {
  if (v === null || v === undefined) return "–";
  if (v < 1000) return `${Math.round(v)} ms`;
  if (v < 60e3) return `${(v / 1000).toFixed(v < 10e3 ? 2 : 1)} s`;
  if (v < 3600e3) return `${Math.floor(v / 60e3)}m ${Math.round((v % 60e3) / 1000)}s`;
  if (v < 86400e3) return `${Math.floor(v / 3600e3)}h ${Math.round((v % 3600e3) / 60e3)}m`;
  return `${Math.floor(v / 86400e3)}d ${Math.round((v % 86400e3) / 3600e3)}h`;
}
function when(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}
function ago(iso) {
  if (!iso) return "–";
  const d = Date.now() - new Date(iso).getTime();
  return d < 0 ? when(iso) : `${ms(d)} ago`;
}
const pill = (status) => h("span", { class: `pill ${status}` }, status.replace("_", " "));
const short = (arn) => arn.split(":").slice(-1)[0];
const smName = (arn) => { const p = arn.split(":"); return p[p.indexOf("stateMachine") + 1] || short(arn); };

// Shows a page's parts (null and false parts are left out).
function show(...kids) {
  $main.replaceChildren(...kids.flat().filter((k) => k !== null && k !== undefined && k !== false));
}

function crumbs(...items) {
  const nav = document.getElementById("crumbs");
  nav.replaceChildren(...items.flatMap((it, i) => [i ? " / " : "", it]));
}

function fail(e) {
  if (e.auth) {
    const input = h("input", { type: "password", placeholder: "API token", "aria-label": "API token" });
    show(h("div", { class: "card" },
      h("p", {}, e.message),
      h("form", { onsubmit: (ev) => { ev.preventDefault(); sessionStorage.setItem("stepstitch-token", input.value); route(); } },
        input, " ", h("button", { type: "submit" }, "Use token"))));
    return;
  }
  show(h("div", { class: "notice", role: "alert" }, e.message));
}

// ---------- Serverless view ----------

function sparkline(exec, errs) {
  const w = 120, hgt = 26, n = exec.length || 1, max = Math.max(1, ...exec);
  const svg = s("svg", { class: "spark", width: w, height: hgt, viewBox: `0 0 ${w} ${hgt}`, role: "img" });
  const bw = w / n;
  exec.forEach((v, i) => {
    const eh = (v / max) * (hgt - 2), fh = (errs[i] / max) * (hgt - 2);
    if (v) svg.append(s("rect", { x: i * bw, y: hgt - eh, width: Math.max(1, bw - 1), height: eh, fill: "#b2ccff" }));
    if (errs[i]) svg.append(s("rect", { x: i * bw, y: hgt - fh, width: Math.max(1, bw - 1), height: fh, fill: "#d92d20" }));
  });
  const total = exec.reduce((a, b) => a + b, 0), bad = errs.reduce((a, b) => a + b, 0);
  svg.append(Object.assign(s("title"), { textContent: `${total} executions, ${bad} failures` }));
  return svg;
}

const SM_COLS = [
  ["name", "State machine", (r) => r.name],
  ["executions", "Executions", (r) => r.executions, true],
  ["failures", "Failures", (r) => r.failed + r.timed_out + r.aborted, true],
  ["failure_rate", "Failure rate", (r) => r.failure_rate, true],
  ["p50_ms", "p50", (r) => r.p50_ms ?? -1, true],
  ["p95_ms", "p95", (r) => r.p95_ms ?? -1, true],
  ["p99_ms", "p99", (r) => r.p99_ms ?? -1, true],
  ["last_failure_at", "Last failure", (r) => r.last_failure_at || ""],
];

async function serverless() {
  crumbs(h("span", {}, "Serverless view"));
  const data = await api(`/api/v1/state-machines?${windowQuery()}&buckets=24`);
  let sort = { key: "failures", asc: false };
  let filter = "";
  const table = h("table", { id: "state-machines" });
  const search = h("input", { type: "search", placeholder: "Filter state machines", "aria-label": "filter", oninput: (e) => { filter = e.target.value.toLowerCase(); draw(); } });
  function draw() {
    const col = SM_COLS.find((c) => c[0] === sort.key);
    const rows = data.state_machines
      .filter((r) => !filter || r.name.toLowerCase().includes(filter) || r.arn.toLowerCase().includes(filter))
      .sort((a, b) => { const x = col[2](a), y = col[2](b); return (x < y ? -1 : x > y ? 1 : 0) * (sort.asc ? 1 : -1); });
    const head = h("tr", {}, SM_COLS.map(([key, label, , num]) => h("th", {
      class: `sortable${num ? " num" : ""}${sort.key === key ? " sorted" + (sort.asc ? " asc" : "") : ""}`,
      onclick: () => { sort = { key, asc: sort.key === key ? !sort.asc : !num }; draw(); },
    }, label)), h("th", {}, "Executions / errors"));
    const body = rows.map((r) => {
      const failures = r.failed + r.timed_out + r.aborted;
      return h("tr", { class: "link", "data-arn": r.arn, onclick: () => go(withRange(`/state-machines/${encodeURIComponent(r.arn)}`)) },
        h("td", {}, h("a", { href: withRange(`/state-machines/${encodeURIComponent(r.arn)}`) }, r.name), h("div", { class: "muted" }, r.arn.split(":").slice(3, 5).join(" · "))),
        h("td", { class: "num" }, r.executions),
        h("td", { class: "num" }, failures),
        h("td", { class: `num rate${r.failure_rate > 0 ? " bad" : ""}` }, `${(r.failure_rate * 100).toFixed(1)} %`),
        h("td", { class: "num" }, ms(r.p50_ms)), h("td", { class: "num" }, ms(r.p95_ms)), h("td", { class: "num" }, ms(r.p99_ms)),
        h("td", {}, ago(r.last_failure_at)),
        h("td", {}, sparkline(r.sparkline.executions, r.sparkline.errors)));
    });
    table.replaceChildren(h("thead", {}, head), h("tbody", {}, body.length ? body : h("tr", {}, h("td", { colspan: 9, class: "muted" }, "No executions in this window."))));
  }
  draw();
  show(
    h("h1", {}, "State machines"),
    h("p", { class: "muted" }, `Executions started in the last ${range()} (${data.state_machines.length} state machines).`),
    h("div", { class: "bar" }, search),
    table);
}

// ---------- The map ----------

function drawMap(map, perExecution) {
  const wrap = h("div", { class: "map card", id: "map" });
  const kids = new Map();
  for (const n of map.nodes) {
    const key = n.parent || "";
    if (!kids.has(key)) kids.set(key, []);
    kids.get(key).push(n);
  }
  const boxes = new Map();
  function nodeBox(n) {
    const cls = ["node", n.visited ? (perExecution ? n.status : "busy") : "unvisited", n.start ? "start" : ""];
    const figs = [];
    if (perExecution && n.visited) {
      if (n.duration_ms !== null) figs.push(ms(n.duration_ms));
      if (n.visits > 1) figs.push(`${n.visits} runs`);
    } else if (!perExecution && n.visits) {
      figs.push(`${n.visits} runs`);
      if (n.failures) figs.push(`${n.failures} failed`);
      if (n.duration_ms !== null) figs.push(`p95 ${ms(n.duration_ms)}`);
    }
    const inner = kids.get(n.id) || [];
    const box = h("div", { class: cls.join(" ") + (inner.length ? " container" : ""), "data-id": n.id, "data-status": n.status || "" },
      h("div", { class: "n" }, n.type === "Branch" ? `branch ${n.name}` : n.name,
        n.retries ? h("span", { class: "badge", title: "retries" }, `↻ ${n.retries}`) : null),
      n.type !== "Branch" ? h("div", { class: "t" }, n.type) : null,
      figs.length ? h("div", { class: "f" }, figs.join(" · ")) : null);
    if (inner.length) {
      if (n.type === "Parallel") box.append(h("div", { class: "branches" }, inner.map(nodeBox)));
      else box.append(scope(inner));
    }
    if (n.type === "Branch") box.classList.add("branch");
    boxes.set(n.id, box);
    return box;
  }
  function scope(nodes) { return h("div", { class: "scope" }, nodes.map(nodeBox)); }
  wrap.append(scope(kids.get("") || []));
  const svg = s("svg", { class: "edges" });
  wrap.append(svg);
  // Edges once laid out: straight down when the target is below, a curve
  // on the side for a loop back.
  requestAnimationFrame(() => {
    const base = wrap.getBoundingClientRect();
    svg.setAttribute("width", wrap.scrollWidth); svg.setAttribute("height", wrap.scrollHeight);
    const defs = s("defs");
    for (const [id, color] of [["arrow", "#98a2b3"], ["arrow-taken", "#1570ef"]]) {
      const m = s("marker", { id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
      m.append(s("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: color }));
      defs.append(m);
    }
    svg.append(defs);
    for (const e of map.edges) {
      const a = boxes.get(e.from), b = boxes.get(e.to);
      if (!a || !b) continue;
      const ra = a.getBoundingClientRect(), rb = b.getBoundingClientRect();
      const x1 = ra.left + ra.width / 2 - base.left + wrap.scrollLeft, y1 = ra.bottom - base.top + wrap.scrollTop;
      const x2 = rb.left + rb.width / 2 - base.left + wrap.scrollLeft, y2 = rb.top - base.top + wrap.scrollTop;
      let d;
      if (y2 > y1 && a.nextElementSibling !== b && a.parentElement === b.parentElement) {
        // Skips the states between: around them on the left.
        const lx1 = ra.left - base.left, ly1 = ra.top + ra.height / 2 - base.top;
        const lx2 = rb.left - base.left, ly2 = rb.top + rb.height / 2 - base.top;
        d = `M ${lx1} ${ly1} C ${lx1 - 50} ${ly1}, ${lx2 - 50} ${ly2}, ${lx2} ${ly2}`;
      } else if (y2 > y1) d = `M ${x1} ${y1} C ${x1} ${(y1 + y2) / 2}, ${x2} ${(y1 + y2) / 2}, ${x2} ${y2}`;
      else {
        const side = Math.max(ra.right, rb.right) - base.left + 30;
        d = `M ${ra.right - base.left} ${ra.top + ra.height / 2 - base.top} C ${side} ${ra.top - base.top}, ${side} ${rb.top + rb.height / 2 - base.top}, ${rb.right - base.left} ${rb.top + rb.height / 2 - base.top}`;
      }
      svg.append(s("path", { d, fill: "none", stroke: e.taken ? "#1570ef" : "#98a2b3", "stroke-width": e.taken ? 2.2 : 1.2, "stroke-dasharray": e.taken ? "" : "4 3", "marker-end": `url(#${e.taken ? "arrow-taken" : "arrow"})`, "data-edge": `${e.from}>${e.to}` }));
    }
  });
  return wrap;
}

// ---------- State machine page ----------

const FILTERS = [["", "All"], ["FAILED", "Failed"], ["SUCCEEDED", "Succeeded"], ["RUNNING", "Running"], ["TIMED_OUT", "Timed out"], ["ABORTED", "Aborted"]];

async function stateMachine(arn) {
  const params = new URLSearchParams(location.search);
  const status = params.get("status") || "";
  crumbs(h("a", { href: withRange("/") }, "Serverless view"), h("span", {}, smName(arn)));
  const [list, map] = await Promise.all([
    api(`/api/v1/state-machines?${windowQuery()}&buckets=48`),
    api(`/api/v1/state-machines/${encodeURIComponent(arn)}/map?${windowQuery()}`),
  ]);
  const sm = list.state_machines.find((x) => x.arn === arn);
  const figures = sm ? [
    ["Executions", sm.executions], ["Failures", sm.failed + sm.timed_out + sm.aborted],
    ["Failure rate", `${(sm.failure_rate * 100).toFixed(1)} %`], ["Running", sm.running],
    ["p50", ms(sm.p50_ms)], ["p95", ms(sm.p95_ms)], ["p99", ms(sm.p99_ms)], ["Last failure", ago(sm.last_failure_at)],
  ] : [];
  const rows = h("tbody");
  const more = h("button", { hidden: true }, "Load more");
  let cursor = null;
  async function page() {
    const q = new URLSearchParams({ state_machine: arn, limit: "50" });
    if (status) q.set("status", status);
    if (cursor) q.set("cursor", cursor);
    const w = windowQuery().split("&").map((p) => p.split("="));
    for (const [k, v] of w) q.set(k, v);
    const r = await api(`/api/v1/executions?${q}`);
    for (const e of r.executions) {
      const href = withRange(`/executions/${encodeURIComponent(e.arn)}`);
      rows.append(h("tr", { class: "link", "data-arn": e.arn, onclick: () => go(href) },
        h("td", {}, h("a", { href }, e.name)), h("td", {}, pill(e.status)), h("td", {}, when(e.start)),
        h("td", { class: "num" }, ms(e.duration_ms)), h("td", {}, e.redrive_count ? `${e.redrive_count}` : ""),
        h("td", { class: "muted" }, e.error || "")));
    }
    if (!rows.children.length) rows.append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No executions match.")));
    cursor = r.next_cursor; more.hidden = !cursor;
  }
  more.onclick = () => page().catch(fail);
  await page();
  const filters = h("div", { class: "filters bar", role: "group", "aria-label": "status filter" }, FILTERS.map(([v, label]) => {
    const q = new URLSearchParams(location.search); if (v) q.set("status", v); else q.delete("status");
    return h("button", { class: `${v === "FAILED" ? "failed" : ""}${status === v ? " on" : ""}`, "data-status": v, onclick: () => go(`${location.pathname}?${q}`) }, label);
  }));
  show(
    h("h1", {}, smName(arn)), h("div", { class: "muted" }, arn),
    h("h2", {}, `Last ${range()}`),
    h("div", { class: "figures card" }, figures.map(([k, v]) => h("div", { class: "figure" }, h("div", { class: "v" }, v), h("div", { class: "k" }, k)))),
    h("h2", {}, "Map ", h("span", { class: "muted" }, map.source === "definition" ? "(from the definition)" : "(observed transitions)")),
    drawMap(map, false),
    h("h2", {}, "Executions"), filters,
    h("table", { id: "executions" }, h("thead", {}, h("tr", {}, ["Name", "Status", "Started", "Duration", "Redrives", "Error"].map((c) => h("th", { class: c === "Duration" ? "num" : "" }, c)))), rows),
    h("div", { class: "bar" }, more));
}

// ---------- Execution page ----------

function spanTree(spans) {
  const byId = new Map(spans.map((sp) => [String(sp.span_id), { sp, kids: [] }]));
  const roots = [];
  for (const n of byId.values()) {
    const p = byId.get(String(n.sp.parent_id));
    (p ? p.kids : roots).push(n);
  }
  const order = (list) => { list.sort((a, b) => a.sp.start - b.sp.start); list.forEach((n) => order(n.kids)); };
  order(roots);
  return roots;
}

// Time → position with long idle gaps (a redrive days later, a long Wait
// with nothing else running) squeezed to a fixed slice.
function timeline(spans) {
  const iv = spans.map((sp) => [sp.start, sp.start + Math.max(sp.duration, 1)]).sort((a, b) => a[0] - b[0]);
  const merged = [];
  for (const [a, b] of iv) {
    if (merged.length && a <= merged[merged.length - 1][1]) merged[merged.length - 1][1] = Math.max(merged[merged.length - 1][1], b);
    else merged.push([a, b]);
  }
  const t0 = merged[0][0], t1 = merged[merged.length - 1][1], total = t1 - t0;
  const squeeze = [];
  // Busy intervals nest (the execution spans everything); gaps come from
  // leaf activity, so measure them over the non-root spans.
  const leaf = spans.filter((sp) => String(sp.parent_id) !== "0" && sp.name !== "aws.stepfunctions").map((sp) => [sp.start, sp.start + Math.max(sp.duration, 1)]).sort((a, b) => a[0] - b[0]);
  let end = leaf.length ? leaf[0][1] : t1;
  for (const [a, b] of leaf) {
    if (a - end > total * 0.15 && a - end > 60e9) squeeze.push([end, a]);
    end = Math.max(end, b);
  }
  const gapW = 0.04;
  const squeezed = squeeze.reduce((acc, [a, b]) => acc + (b - a), 0);
  const scale = (1 - gapW * squeeze.length) / Math.max(1, total - squeezed);
  const x = (t) => {
    let pos = 0, cur = t0;
    for (const [a, b] of squeeze) {
      if (t <= a) break;
      pos += (a - cur) * scale;
      if (t < b) return pos + gapW * ((t - a) / (b - a));
      pos += gapW; cur = b;
    }
    return Math.min(1, pos + (t - cur) * scale);
  };
  return { t0, total, x, squeeze };
}

function jsonText(v) {
  try { return JSON.stringify(JSON.parse(v), null, 2); } catch { return v; }
}

function openPanel(sp, links) {
  const m = sp.meta || {};
  const section = (title, key) => {
    if (!(key in m)) return null;
    const trunc = m[`${key}_truncated`] === "true" || m[`${key}_aws_truncated`] === "true";
    return [h("h4", {}, title, trunc ? h("span", { class: "trunc" }, " (truncated)") : null), h("pre", { "data-field": key }, jsonText(m[key]))];
  };
  const tags = Object.entries(m).filter(([k]) => !/^step_function\.(input|output)/.test(k)).sort();
  const nums = Object.entries(sp.metrics || {}).sort();
  $panel.replaceChildren(...[
    h("button", { class: "close", "aria-label": "close", onclick: () => { $panel.hidden = true; document.querySelectorAll(".wf-row.sel").forEach((r) => r.classList.remove("sel")); } }, "×"),
    h("h3", {}, sp.resource),
    h("div", { class: "muted" }, sp.name, " · ", m["step_function.state_type"] || ""),
    h("p", {}, sp.error ? pill("FAILED") : pill("SUCCEEDED"), "  ", ms(sp.duration / 1e6), " from ", when(new Date(sp.start / 1e6).toISOString())),
    m["error.type"] ? h("div", { class: "error-box" }, h("strong", {}, m["error.type"]), m["error.message"] ? h("pre", {}, jsonText(m["error.message"])) : null) : null,
    ...(section("Input", "step_function.input") || []),
    ...(section("Output", "step_function.output") || []),
    h("h4", {}, "Tags"),
    h("table", {}, h("tbody", {}, [...tags, ...nums].map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", {}, String(v)))))),
    h("h4", {}, "Links"),
    h("p", {}, links.datadog_trace ? h("a", { href: links.datadog_trace, target: "_blank", rel: "noopener" }, "Trace in Datadog") : h("span", { class: "muted" }, "Datadog export is off."),
      " · ", h("span", { class: "muted" }, `span ${sp.span_id} · trace ${sp.trace_id}`))].filter(Boolean));
  $panel.hidden = false;
}

function waterfall(spans, links) {
  const tl = timeline(spans);
  const box = h("div", { class: "wf", id: "waterfall" });
  const ticks = h("div", { class: "ticks" });
  for (let i = 0; i <= 4; i++) {
    const f = i / 4;
    ticks.append(h("span", { style: `left:${Math.min(97, Math.max(3, f * 100))}%` }, `+${ms((tl.total * f) / 1e6)}`));
  }
  box.append(h("div", { class: "wf-axis" }, h("div", { style: "padding:3px 8px" }, "Span"), ticks));
  const gaps = tl.squeeze.map(([a, b]) => [tl.x(a), tl.x(b), b - a]);
  const rows = [];
  function row(n, depth, hiddenBy) {
    const sp = n.sp;
    const kind = sp.name === "aws.stepfunctions" ? "exec" : sp.name.endsWith("iteration") ? "iteration" : sp.name.endsWith("branch") ? "branch" : "";
    const attempt = sp.meta && sp.meta["step_function.attempt"];
    // Long Maps start folded: their iterations are one click away.
    const fold = kind === "iteration" ? false : n.kids.filter((k) => k.sp.name.endsWith("iteration")).length > 5;
    const x0 = tl.x(sp.start), x1 = tl.x(sp.start + sp.duration);
    const tog = h("span", { class: "tog" }, n.kids.length ? (fold ? "▸" : "▾") : "");
    const open = sp.meta && sp.meta["step_function.incomplete"] === "true";
    const el = h("div", { class: "wf-row", "data-span": String(sp.span_id), "data-resource": sp.resource, role: "row" },
      h("div", { class: "wf-name", style: `padding-left:${8 + depth * 16}px`, title: sp.resource }, tog, sp.resource,
        attempt ? h("span", { class: "badge" }, `retry ${attempt}`) : null,
        sp.meta && sp.meta.redrive === "true" ? h("span", { class: "badge" }, "redrive") : null),
      h("div", { class: "wf-track" },
        gaps.map(([a, b, d]) => h("div", { class: "wf-gap", style: `left:${a * 100}%;width:${(b - a) * 100}%`, title: `idle ${ms(d / 1e6)} (compressed)` })),
        h("div", { class: `wf-bar ${kind} ${sp.error ? "err" : ""} ${open ? "open" : ""}`, style: `left:${x0 * 100}%;width:${Math.max(0.2, (x1 - x0) * 100)}%` }),
        h("span", { class: "wf-dur", style: `left:calc(${Math.min(x1 * 100, 88)}% + 4px)` }, ms(sp.duration / 1e6))));
    el.addEventListener("click", (ev) => {
      if (ev.target === tog && n.kids.length) { setFold(!el.folded); return; }
      document.querySelectorAll(".wf-row.sel").forEach((r) => r.classList.remove("sel"));
      el.classList.add("sel");
      openPanel(sp, links);
    });
    const mine = [];
    function setFold(f) {
      el.folded = f; tog.textContent = f ? "▸" : "▾";
      const hide = (list, hidden) => list.forEach((c) => { c.el.hidden = hidden; hide(c.mine, hidden || c.el.folded); });
      hide(mine, f);
    }
    const rec = { el, mine };
    el.folded = fold;
    if (hiddenBy) el.hidden = true;
    rows.push(el);
    for (const k of n.kids) mine.push(row(k, depth + 1, hiddenBy || fold));
    return rec;
  }
  for (const r of spanTree(spans)) row(r, 0, false);
  box.append(...rows);
  return box;
}

// ---------- AWS actions (retry, redrive, stop) ----------

const ACTIONS = {
  retry: { label: "Retry", says: "Start a new execution of the same state machine (version or alias) with the same input." },
  redrive: { label: "Redrive", says: "Restart this execution from the state that failed; it keeps its ARN and trace." },
  stop: { label: "Stop", says: "Stop this execution; the error and cause are recorded on it." },
};

async function post(path, body) {
  const headers = { "Content-Type": "application/json" };
  const token = sessionStorage.getItem("stepstitch-token");
  if (token) headers.Authorization = `Bearer ${token}`;
  const r = await fetch(path, { method: "POST", headers, body: JSON.stringify(body) });
  let answer;
  try { answer = JSON.parse(await r.text()); } catch { answer = { error: r.statusText }; }
  if (!r.ok) throw Object.assign(new Error(answer.error || r.statusText), { status: r.status });
  return answer;
}

// One dialog per click on a button: its request id makes a second click
// on "Confirm" (or a retried request) the same request, done once.
function actionDialog(e, action) {
  const a = ACTIONS[action];
  const requestId = crypto.randomUUID();
  const token = h("input", { type: "password", placeholder: "API token", "aria-label": "API token", value: sessionStorage.getItem("stepstitch-token") || "" });
  const error = h("input", { type: "text", maxlength: 256, placeholder: "Error (e.g. Manual)", "aria-label": "error" });
  const cause = h("textarea", { rows: 3, maxlength: 32768, placeholder: "Cause", "aria-label": "cause" });
  const out = h("div", { id: "action-result", role: "status" });
  const confirm = h("button", { type: "submit", class: `act ${action}`, id: "action-confirm" }, `${a.label} now`);
  const form = h("form", {
    onsubmit: async (ev) => {
      ev.preventDefault();
      if (token.value) sessionStorage.setItem("stepstitch-token", token.value);
      confirm.disabled = true;
      out.replaceChildren(h("span", { class: "muted" }, "Asking AWS…"));
      try {
        const body = { request_id: requestId };
        if (action === "stop") { body.error = error.value; body.cause = cause.value; }
        const r = await post(`/api/v1/executions/${encodeURIComponent(e.arn)}/${action}`, body);
        const done = {
          retry: () => ["Started ", h("a", { href: withRange(`/executions/${encodeURIComponent(r.execution_arn)}`), id: "new-execution" }, short(r.execution_arn)), r.result === "already_started" ? " (started before)" : ""],
          redrive: () => [`Redriven (redrive ${r.redrive_count}); the trace continues on this page.`],
          stop: () => ["Stopped."],
        }[action]();
        out.replaceChildren(h("div", { class: "notice ok" }, ...done));
      } catch (err) {
        confirm.disabled = false;
        out.replaceChildren(h("div", { class: "error-box", role: "alert" }, err.message));
      }
    },
  },
  h("p", {}, a.says),
  h("p", { class: "muted" }, e.arn),
  action === "stop" ? h("p", {}, error, h("br"), cause) : null,
  h("p", {}, token, " ", confirm));
  $panel.replaceChildren(
    h("button", { class: "close", "aria-label": "close", onclick: () => { $panel.hidden = true; } }, "×"),
    h("h3", {}, `${a.label} ${e.name}`), form, out);
  $panel.hidden = false;
}

async function execution(arn) {
  const [e, map] = await Promise.all([
    api(`/api/v1/executions/${encodeURIComponent(arn)}`),
    api(`/api/v1/executions/${encodeURIComponent(arn)}/map`),
  ]);
  crumbs(h("a", { href: withRange("/") }, "Serverless view"),
    h("a", { href: withRange(`/state-machines/${encodeURIComponent(e.state_machine_arn)}`) }, smName(e.state_machine_arn)),
    h("span", {}, e.name));
  const facts = [["Status", pill(e.status)], ["Started", when(e.start)], ["Stopped", when(e.stop)], ["Duration", ms(e.duration_ms)], ["Redrives", e.redrive_count], ["Spans", e.spans.length]];
  const logs = e.logs.length ? h("table", { class: "logs" }, h("thead", {}, h("tr", {}, ["Time", "Event", "Details"].map((c) => h("th", {}, c)))),
    h("tbody", {}, e.logs.map((l) => h("tr", {}, h("td", {}, when(l.timestamp)), h("td", {}, l.error ? pill(l.event.type || "error") : (l.event.type || "")), h("td", {}, h("code", {}, JSON.stringify(l.event.details || l.event).slice(0, 400)))))))
    : h("p", { class: "muted" }, "No log events stored (STEPSTITCH_FORWARD_LOGS=errors or all keeps them).");
  show(
    h("h1", {}, e.name, " ", pill(e.status)), h("div", { class: "muted" }, e.arn),
    e.actions && e.actions.length ? h("div", { class: "actions" }, e.actions.map((a) => h("button", { class: `act ${a}`, id: `action-${a}`, onclick: () => actionDialog(e, a) }, ACTIONS[a].label))) : null,
    h("div", { class: "figures card", style: "margin-top:12px" }, facts.map(([k, v]) => h("div", { class: "figure" }, h("div", { class: "v" }, v), h("div", { class: "k" }, k)))),
    e.error || e.cause ? h("div", { class: "error-box", id: "execution-error" }, h("strong", {}, e.error || "Error"), e.cause ? h("pre", {}, jsonText(e.cause)) : null) : null,
    h("h2", {}, "Path taken ", h("span", { class: "muted" }, map.source === "definition" ? "(definition)" : "(observed transitions)")),
    drawMap(map, true),
    h("h2", {}, "Waterfall"),
    e.spans.length ? waterfall(e.spans, e.links) : h("p", { class: "muted" }, "No spans yet."),
    h("h2", {}, "Log events"), logs);
}

// ---------- Routing ----------

function go(url) { history.pushState(null, "", url); route(); }

async function route() {
  $panel.hidden = true;
  document.querySelectorAll(".range button").forEach((b) => b.classList.toggle("on", b.dataset.range === range()));
  const p = location.pathname;
  try {
    if (p.startsWith("/state-machines/")) await stateMachine(decodeURIComponent(p.slice("/state-machines/".length)));
    else if (p.startsWith("/executions/")) await execution(decodeURIComponent(p.slice("/executions/".length)));
    else await serverless();
    document.body.dataset.page = p === "/" ? "serverless" : p.split("/")[1];
    document.body.dataset.ready = "1";
  } catch (e) { fail(e); }
}

document.querySelectorAll(".range button").forEach((b) => b.addEventListener("click", () => {
  const q = new URLSearchParams(location.search); q.set("range", b.dataset.range); go(`${location.pathname}?${q}`);
}));
document.addEventListener("click", (ev) => {
  const a = ev.target.closest && ev.target.closest("a[href^='/']");
  if (a && !ev.metaKey && !ev.ctrlKey) { ev.preventDefault(); ev.stopPropagation(); go(a.getAttribute("href")); }
}, true);
window.addEventListener("popstate", route);
route();
