// modeldrop's dashboard: plain JavaScript, no build step, nothing loaded from elsewhere.
// Everything a record holds is put in the page as text (textContent, createTextNode), never
// as HTML. The api's base is the page's own path up to "/ui", so the page works under any
// prefix a proxy mounts the api at.
"use strict";

(() => {
  const API = location.pathname.replace(/\/ui(\/.*)?$/, "");
  const TOKEN_KEY = "modeldrop.api-token";
  const POLL_MS = 2000;
  const HIDDEN_POLL_MS = 10000; // while the tab is hidden
  const SERVING_MS = 10000; // how long a model's serving revision is reused in the table
  const LOGS_MS = 15000; // the log is read again this often while a deploy is in flight
  const LIST_LIMIT = 50;
  const SETTLED = new Set(["REJECTED", "FAILED", "UNDEPLOYED", "SUPERSEDED"]);
  const KIND = {
    DETECTED: "progress", VALIDATING: "progress", VALIDATED: "progress",
    DEPLOYING: "progress", UNDEPLOYING: "progress", DEPLOYED: "ok",
    REJECTED: "bad", FAILED: "bad", UNDEPLOYED: "off", SUPERSEDED: "off",
  };
  const ICON = { progress: "◐", ok: "✓", bad: "✗", off: "○" };
  const SEVERITY_ICON = { error: "✗", warning: "⚠", info: "ℹ" };

  const $ = (id) => document.getElementById(id);

  // -- DOM helpers: text only ------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    for (const child of children) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function fill(node, ...children) {
    node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
  }

  function badge(state) {
    const kind = KIND[state] || "progress";
    return el("span", { class: `state state-${kind} state-${state}` },
      el("span", { class: "icon", "aria-hidden": "true", text: ICON[kind] }), state);
  }

  function dl(node, pairs) {
    const items = [];
    for (const [term, value] of pairs) {
      if (value === undefined) continue;
      items.push(el("dt", { text: term }));
      items.push(el("dd", {}, value === null || value === "" ? el("span", { class: "muted", text: "—" }) : value));
    }
    fill(node, items);
  }

  function table(headers, rows, caption) {
    return el("div", { class: "table-wrap" },
      el("table", { class: "cards" },
        caption ? el("caption", { class: "visually-hidden", text: caption }) : null,
        el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col", text: h })))),
        el("tbody", {}, rows.map((cells) => el("tr", {},
          cells.map((cell, i) => el("td", { "data-label": headers[i] }, cell)))))));
  }

  function problemBox(node, error, prefix) {
    if (!error) {
      node.hidden = true;
      node.replaceChildren();
      return;
    }
    const parts = [];
    if (prefix) parts.push(el("strong", { text: prefix }), " ");
    if (error.code) parts.push(el("code", { class: "code", text: error.code }), " ");
    parts.push(el("span", { class: "message", text: error.message || "" }));
    const out = [el("p", {}, parts)];
    if (error.hint) out.push(el("p", { class: "hint" }, el("strong", { text: "Hint: " }), error.hint));
    fill(node, out);
    node.hidden = false;
  }

  // -- formatting --------------------------------------------------------------------------
  const when = (text) => (text ? Date.parse(text) : NaN);

  function duration(ms) {
    if (!Number.isFinite(ms) || ms < 0) return "—";
    const s = ms / 1000;
    if (s < 10) return `${s.toFixed(1)} s`;
    if (s < 60) return `${Math.round(s)} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${Math.round(s - m * 60)} s`;
    const h = Math.floor(m / 60);
    if (h < 48) return `${h} h ${m - h * 60} min`;
    return `${Math.floor(h / 24)} d ${h % 24} h`;
  }

  function age(text) {
    const ms = Date.now() - when(text);
    if (!Number.isFinite(ms)) return "—";
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min`;
    if (s < 172800) return `${Math.floor(s / 3600)} h`;
    return `${Math.floor(s / 86400)} d`;
  }

  function timeEl(text, content) {
    if (!text) return el("span", { class: "muted", text: "—" });
    const at = new Date(when(text));
    if (Number.isNaN(at.getTime())) return el("span", { text });
    const local = at.toLocaleString();
    const short = at.toDateString() === new Date().toDateString() ? at.toLocaleTimeString() : local;
    return el("time", { datetime: text, title: local }, content === undefined ? short : content);
  }

  const usd = (value, digits) =>
    value === null || value === undefined ? null : `$${Number(value).toFixed(digits)}`;

  function machine(spec) {
    if (!spec) return null;
    const parts = [spec.machine_type];
    if (spec.accelerator_type) parts.push(`${spec.accelerator_count || 1}× ${spec.accelerator_type}`);
    return parts.join(" · ");
  }

  function placementText(d) {
    if (d.placement) {
      const p = d.placement;
      return [p.region, machine(p.machine_spec), p.spot ? "Spot" : null].filter(Boolean).join(" · ");
    }
    return null;
  }

  // -- the api -----------------------------------------------------------------------------
  class ApiProblem extends Error {
    constructor(status, error) {
      super(error.message || `HTTP ${status}`);
      this.status = status;
      this.code = error.code || `HTTP_${status}`;
      this.hint = error.hint || "";
      this.error = { code: this.code, message: this.message, hint: this.hint };
    }
  }

  function headers(json) {
    const out = { Accept: "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) out.Authorization = `Bearer ${token}`;
    if (json) out["Content-Type"] = "application/json";
    return out;
  }

  async function send(method, path, body, signal) {
    let response;
    try {
      response = await fetch(API + path, {
        method,
        headers: headers(body !== undefined),
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        credentials: "same-origin",
        signal,
      });
    } catch (exc) {
      if (exc.name === "AbortError") throw exc;
      throw new ApiProblem(0, {
        code: "UNREACHABLE",
        message: "The api could not be reached.",
        hint: "Check that it runs (and the proxy in front of it); the page tries again by itself.",
      });
    }
    if (response.status === 401) authNeeded(true);
    return response;
  }

  async function problemOf(response) {
    let data = null;
    try { data = await response.json(); } catch (_) { /* not JSON */ }
    const error = data && typeof data.error === "object" && data.error ? data.error : {};
    return new ApiProblem(response.status, error);
  }

  async function api(method, path, body) {
    const response = await send(method, path, body);
    if (!response.ok) throw await problemOf(response);
    authNeeded(false);
    return response.json();
  }

  const enc = encodeURIComponent;

  // -- the token ---------------------------------------------------------------------------
  let needsToken = false;

  function authNeeded(yes) {
    needsToken = yes;
    $("token").setAttribute("aria-invalid", yes ? "true" : "false");
    $("token-form").classList.toggle("wanted", yes);
  }

  function showNotice(problem) {
    if (problem && problem.status === 401) {
      problemBox($("notice"), problem.error,
        sessionStorage.getItem(TOKEN_KEY) ? "The api refused this token." : "The api needs a token.");
    } else if (problem) {
      problemBox($("notice"), problem.error, "The api answered with an error.");
    } else {
      problemBox($("notice"), null);
    }
  }

  $("token").value = sessionStorage.getItem(TOKEN_KEY) || "";
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token").value.trim();
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
    servingCache.clear();
    refreshNow();
  });
  $("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $("token").value = "";
    servingCache.clear();
    refreshNow();
  });

  // -- the deployments table ---------------------------------------------------------------
  const servingCache = new Map(); // model name -> {serving, at}
  let lastStates = null; // id -> state on the previous poll (null before the first)

  async function servingOf(names, changed) {
    const now = Date.now();
    await Promise.all([...names].map(async (name) => {
      const known = servingCache.get(name);
      if (known && !changed.has(name) && now - known.at < SERVING_MS) return;
      try {
        const body = await api("GET", `/v1/models/${enc(name)}`);
        servingCache.set(name, { serving: body.serving, at: now });
      } catch (_) { /* the table shows what it knew */ }
    }));
  }

  function servingCell(d) {
    if (d.state !== "DEPLOYED") return el("span", { class: "muted", text: "no" });
    const known = servingCache.get(d.model);
    if (!known) return el("span", { class: "muted", text: "…" });
    return known.serving === d.id
      ? el("span", { class: "serving" }, el("span", { class: "icon", "aria-hidden": "true", text: "★" }), "serving")
      : el("span", { text: "no (standby)" });
  }

  function listRow(d) {
    const hourly = usd(d.hourly_usd, 2);
    const cells = [
      ["Model", el("a", { href: `#/d/${enc(d.id)}`, "data-id": d.id, class: "model-link" }, d.model)],
      ["Revision", String(d.revision)],
      ["State", badge(d.state)],
      ["Serving", servingCell(d)],
      ["Placement", placementText(d) || el("span", { class: "muted", text: "—" })],
      ["Hourly cost", hourly ? `${hourly}/h` : el("span", { class: "muted", text: "—" })],
      ["Age", timeEl(d.created_at, age(d.created_at))],
    ];
    return el("tr", { "data-id": d.id, "data-state": d.state },
      cells.map(([label, content]) => el("td", { "data-label": label }, content)));
  }

  function announce(changes) {
    if (!changes.length) return;
    const shown = changes.slice(0, 3).join("; ");
    $("list-live").textContent = changes.length > 3 ? `${shown}; and ${changes.length - 3} more` : shown;
  }

  function renderList(deployments) {
    const body = $("deployment-rows");
    const focused = document.activeElement && document.activeElement.closest("#deployment-rows a");
    const focusId = focused ? focused.dataset.id : null;
    const existing = new Map([...body.rows].map((row) => [row.dataset.id, row]));
    const changes = [];
    const rows = deployments.map((d) => {
      const fresh = listRow(d);
      const old = existing.get(d.id);
      if (lastStates && lastStates.get(d.id) !== d.state) {
        const before = lastStates.get(d.id);
        changes.push(before ? `${d.model} revision ${d.revision}: ${before} → ${d.state}`
          : `${d.model} revision ${d.revision}: new, ${d.state}`);
      }
      if (!old) return fresh;
      // only the cells that changed are replaced: focus and a screen reader's place stay put
      old.dataset.state = d.state;
      Array.from(fresh.cells).forEach((cell, i) => {
        if (!old.cells[i].isEqualNode(cell)) old.cells[i].replaceWith(cell);
      });
      return old;
    });
    for (const [id, row] of existing) if (!deployments.some((d) => d.id === id)) row.remove();
    rows.forEach((row, i) => { if (body.rows[i] !== row) body.insertBefore(row, body.rows[i] || null); });
    if (focusId && !body.contains(focused)) {
      const again = body.querySelector(`a[data-id="${CSS.escape(focusId)}"]`);
      if (again) again.focus();
    }
    lastStates = new Map(deployments.map((d) => [d.id, d.state]));
    announce(changes);
    $("list-empty").hidden = deployments.length > 0;
    const names = [...new Set(deployments.map((d) => d.model))].sort();
    fill($("model-names"), names.map((n) => el("option", { value: n })));
  }

  async function refreshList() {
    const query = new URLSearchParams({ limit: String(LIST_LIMIT) });
    const state = $("filter-state").value;
    const model = $("filter-model").value.trim();
    if (state) query.set("state", state);
    if (model) query.set("model", model);
    const key = query.toString();
    const page = await api("GET", `/v1/deployments?${key}`);
    if (view.name !== "list" || key !== listKey()) return;
    const deployments = page.deployments || [];
    const changed = new Set(deployments
      .filter((d) => lastStates && lastStates.get(d.id) !== d.state).map((d) => d.model));
    const live = new Set(deployments.filter((d) => d.state === "DEPLOYED").map((d) => d.model));
    await servingOf(live, changed);
    if (view.name !== "list" || key !== listKey()) return;
    renderList(deployments);
    $("list-more").hidden = !page.next_page_token;
    const count = deployments.length === 1 ? "1 deployment" : `${deployments.length} deployments`;
    $("list-status").textContent = `${count} · updated ${new Date().toLocaleTimeString()}`;
  }

  function listKey() {
    const query = new URLSearchParams({ limit: String(LIST_LIMIT) });
    const state = $("filter-state").value;
    const model = $("filter-model").value.trim();
    if (state) query.set("state", state);
    if (model) query.set("model", model);
    return query.toString();
  }

  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    lastStates = null;
    refreshNow();
  });
  $("filters").addEventListener("reset", () => {
    lastStates = null;
    setTimeout(refreshNow, 0); // after the form has cleared its fields
  });
  $("filter-state").addEventListener("change", () => {
    lastStates = null;
    refreshNow();
  });

  // -- one deployment ----------------------------------------------------------------------
  const rendered = new Map(); // section -> the JSON it was last rendered from
  let current = null; // the record on show
  let logsAt = 0;
  let logsState = null;

  function once(section, data, render) {
    const key = JSON.stringify(data);
    if (rendered.get(section) === key) return;
    rendered.set(section, key);
    render();
  }

  function timelineRows(d) {
    const history = d.history || [];
    const now = Date.now();
    return history.map((t, i) => {
      const next = history[i + 1];
      const last = !next;
      const end = last ? now : when(next.at);
      const settled = last && SETTLED.has(d.state);
      return {
        n: i + 1, state: t.state, at: t.at, note: t.note || "",
        ms: settled ? null : end - when(t.at), ongoing: last && !settled,
      };
    });
  }

  function renderChart(rows) {
    const spans = rows.filter((r) => r.ms !== null && r.ms >= 0);
    const total = spans.reduce((sum, r) => sum + r.ms, 0);
    const node = $("d-chart");
    if (!spans.length || total <= 0) {
      node.replaceChildren();
      return;
    }
    const width = 1000;
    const minimum = 6;
    const widths = spans.map((r) => Math.max(minimum, (r.ms / total) * width));
    const scale = width / widths.reduce((a, b) => a + b, 0);
    let x = 0;
    const label = spans.map((r) => `${r.state} ${duration(r.ms)}${r.ongoing ? " so far" : ""}`).join(", ");
    const chart = svg("svg", {
      viewBox: `0 0 ${width} 28`, preserveAspectRatio: "none", role: "img",
      "aria-label": `Time in each state: ${label}`, class: "bar",
    });
    spans.forEach((r, i) => {
      const w = widths[i] * scale;
      const kind = KIND[r.state] || "progress";
      const rect = svg("rect", { x: x.toFixed(1), y: 0, width: w.toFixed(1), height: 28,
        class: `seg seg-${kind} seg-${r.state}` });
      rect.append(svg("title", {}, `${r.state}: ${duration(r.ms)}${r.ongoing ? " so far" : ""}`));
      chart.append(rect);
      x += w;
    });
    const legend = el("ul", { class: "legend", "aria-hidden": "true" },
      spans.map((r) => el("li", {},
        el("span", { class: `swatch seg-${KIND[r.state] || "progress"} seg-${r.state}` }),
        `${r.state} ${duration(r.ms)}${r.ongoing ? " so far" : ""}`)));
    fill(node, chart, legend);
  }

  function renderTimeline(d) {
    const rows = timelineRows(d);
    renderChart(rows);
    const body = $("d-timeline").tBodies[0];
    const labels = ["#", "State", "At", "Time in state", "Note"];
    fill(body, rows.map((r) => el("tr", {},
      [String(r.n), badge(r.state), timeEl(r.at),
        r.ms === null ? el("span", { class: "muted", text: "final" })
          : `${duration(r.ms)}${r.ongoing ? " so far" : ""}`,
        el("span", { class: "wrap", text: r.note })].map((cell, i) => el("td", { "data-label": labels[i] }, cell)))));
  }

  function renderFindings(d) {
    const node = $("d-findings");
    const findings = d.findings || [];
    if (!d.validation) {
      fill(node, el("p", { class: "muted", text: "Not validated yet." }));
      return;
    }
    if (!findings.length) {
      fill(node, el("p", { class: "muted", text: "No findings: the folder passed every check." }));
      return;
    }
    const withHint = findings.some((f) => f.hint);
    const headers = ["Severity", "Code", "File", "Message", ...(withHint ? ["Hint"] : [])];
    const order = { error: 0, warning: 1, info: 2 };
    const sorted = [...findings].sort((a, b) => (order[a.severity] ?? 3) - (order[b.severity] ?? 3));
    fill(node, table(headers, sorted.map((f) => [
      el("span", { class: `severity severity-${f.severity}` },
        el("span", { class: "icon", "aria-hidden": "true", text: SEVERITY_ICON[f.severity] || "•" }),
        f.severity),
      el("code", { text: f.code }),
      f.file ? el("code", { text: f.file }) : el("span", { class: "muted", text: "—" }),
      f.message,
      ...(withHint ? [f.hint || ""] : []),
    ]), "Validation findings, errors first."));
  }

  function renderWhy(d) {
    const why = d.error;
    const failed = d.state === "REJECTED" || d.state === "FAILED";
    problemBox($("d-why"), why, failed ? `Why it is ${d.state}:` : "The last error:");
    if (why && Array.isArray(why.logs) && why.logs.length) {
      $("d-why").append(el("p", { class: "small", text: "The model server's last lines:" }),
        el("pre", { class: "log" }, why.logs.map((e) => `${e.at} ${e.severity} ${e.text}\n`).join("")));
    }
    const blocked = d.blocked;
    if (blocked) {
      problemBox($("d-blocked"), blocked, "Waiting for budget:");
      $("d-blocked").append(el("p", { class: "small",
        text: `running ${usd(blocked.running_hourly_usd, 2)}/h + this one ${usd(blocked.needed_hourly_usd, 2)}/h > cap ${usd(blocked.cap, 2)}/h` }));
    } else {
      problemBox($("d-blocked"), null);
    }
  }

  function renderCards(d) {
    const p = d.placement;
    dl($("d-placement"), [
      ["Region", p ? p.region : null],
      ["Machine", p ? machine(p.machine_spec) : null],
      ["Spot", p ? (p.spot ? "yes" : "no") : null],
      ["Attempt", p ? String(p.attempt) : null],
      ["Deploy round", d.deploy_round ? String(d.deploy_round) : null],
      ["Recommended machine", machine(d.machine)],
      ["Matched base model", d.matched_base],
      ["Folder", el("code", { class: "wrap", text: d.gcs_uri })],
    ]);
    dl($("d-cost"), [
      ["Hourly", d.hourly_usd === null ? null : `${usd(d.hourly_usd, 4)} per hour`],
      ["Accrued", `${usd(d.accrued_usd, 4)}`],
    ]);
    const s = d.smoke_test;
    let passed = null;
    if (s) {
      passed = s.passed === true ? el("span", { class: "pass" }, el("span", { class: "icon", "aria-hidden": "true", text: "✓" }), "passed")
        : s.passed === false ? el("span", { class: "fail" }, el("span", { class: "icon", "aria-hidden": "true", text: "✗" }), "failed")
          : "running";
    }
    dl($("d-smoke"), s ? [
      ["Result", passed],
      ["Kind", s.kind],
      ["Latency", s.latency_ms === null || s.latency_ms === undefined ? null : `${s.latency_ms} ms`],
      ["Tries", String(s.tries)],
      ["Answer", s.excerpt ? el("q", { text: s.excerpt }) : null],
      ["Last error", s.last_error === undefined ? undefined : s.last_error],
      ["Status", s.status === undefined || s.status === null ? undefined : String(s.status)],
      ["At", s.at ? timeEl(s.at) : undefined],
    ] : [["Result", "not run yet"]]);
    const pe = d.private_endpoint;
    dl($("d-endpoint"), [
      ["Endpoint", d.endpoint ? el("code", { class: "wrap", text: d.endpoint }) : null],
      ["DNS", d.endpoint_dns ? el("code", { class: "wrap", text: d.endpoint_dns }) : undefined],
      ["Deployed model", d.deployed_model_id ? el("code", { text: d.deployed_model_id }) : undefined],
      ["Private endpoint", pe ? el("code", { text: `https://${pe.ip}` }) : undefined],
      ["TLS name", pe ? el("code", { text: pe.tls_name }) : undefined],
      ["Forwarding rule", pe ? el("code", { class: "wrap", text: pe.forwarding_rule }) : undefined],
      ["Network", pe ? el("code", { class: "wrap", text: pe.network }) : undefined],
      ["Last used", d.last_used_at ? timeEl(d.last_used_at) : null],
    ]);
  }

  function renderAttempts(d) {
    const attempts = d.attempts || [];
    const node = $("d-attempts");
    if (!attempts.length) {
      fill(node, el("p", { class: "muted", text: d.placement ? "The first attempt is under way." : "No placement attempt yet." }));
      return;
    }
    fill(node, table(["#", "Region", "Machine", "Spot", "Outcome", "Code", "Message", "At"],
      attempts.map((a) => [String(a.attempt), a.region, machine(a.machine_spec), a.spot ? "yes" : "no",
        el("span", { class: `outcome outcome-${a.outcome === "deployed" ? "ok" : "bad"}` },
          el("span", { class: "icon", "aria-hidden": "true", text: a.outcome === "deployed" ? "✓" : "✗" }), a.outcome),
        a.code ? el("code", { text: a.code }) : "", a.message || "", timeEl(a.at)]),
      "Placement attempts that ended, oldest first."));
  }

  function renderNotifications(d) {
    const history = d.history || [];
    // each transition carries its notification's number (event); records older than the field
    // are numbered from their history, which a budget block would have shifted
    const guessed = history.some((t) => t.event == null);
    const rows = history.map((t, i) => [el("code", { text: `${d.id}-${t.event ?? i + 1}` }),
      el("code", { text: `dev.modeldrop.deployment.${t.state.toLowerCase()}` }), timeEl(t.at)]);
    const notes = [];
    if (d.blocked && d.blocked.event != null) {
      rows.push([el("code", { text: `${d.id}-${d.blocked.event}` }),
        el("code", { text: "dev.modeldrop.deployment.blocked" }), el("span", { class: "muted", text: "while blocked" })]);
    }
    if (history.length >= 50) notes.push("The record keeps the last 50 transitions: older ones are not listed.");
    if (guessed) notes.push("This record is older than its notification numbers: they are counted from its history.");
    fill($("d-notifications"), table(["ce-id", "ce-type", "ce-time (about)"], rows, "Notification ids"),
      notes.map((n) => el("p", { class: "muted small", text: n })));
  }

  function renderHeader(d, model) {
    $("d-model").textContent = d.model;
    $("d-revision").textContent = `revision ${d.revision}`;
    fill($("d-state"), badge(d.state));
    $("d-id").textContent = d.id;
    const serving = model && model.serving;
    let servingText;
    if (serving === d.id && d.state === "DEPLOYED") {
      servingText = el("span", { class: "serving" },
        el("span", { class: "icon", "aria-hidden": "true", text: "★" }), `serves the name ${d.model}`);
    } else if (serving === d.id) {
      servingText = `· the name ${d.model} points here but gets no answer while it is ${d.state}`;
    } else if (serving) {
      servingText = `· the name ${d.model} answers from ${serving}`;
    } else {
      servingText = `· the name ${d.model} answers from no revision`;
    }
    fill($("d-serving"), servingText);
    document.title = `${d.model} r${d.revision} ${d.state} · modeldrop`;
    $("act-rollback").textContent = `Roll back ${d.model}`;
    const deployed = d.state === "DEPLOYED";
    $("chat-form").hidden = !deployed && !$("chat-log").children.length;
    $("chat-state").textContent = deployed
      ? `Asks ${d.id} through POST /v1/deployments/{id}/chat/completions (stream).`
      : `The chat needs a DEPLOYED deployment; this one is ${d.state}.`;
    $("chat-send").disabled = !deployed || chatController !== null;
  }

  function renderDetail(d, model) {
    current = d;
    renderHeader(d, model);
    once("why", [d.state, d.error, d.blocked], () => renderWhy(d));
    renderTimeline(d); // its "so far" grows
    once("findings", [d.validation ? 1 : 0, d.findings], () => renderFindings(d));
    once("cards", [d.placement, d.deploy_round, d.machine, d.matched_base, d.hourly_usd, d.accrued_usd,
      d.smoke_test, d.endpoint, d.endpoint_dns, d.deployed_model_id, d.private_endpoint, d.last_used_at],
    () => renderCards(d));
    once("attempts", [d.attempts, !!d.placement], () => renderAttempts(d));
    once("notifications", [d.history, !!d.blocked], () => renderNotifications(d));
  }

  async function refreshLogs(id) {
    logsAt = Date.now();
    const node = $("d-logs");
    try {
      const body = await api("GET", `/v1/deployments/${enc(id)}/logs?limit=20`);
      if (view.name !== "detail" || view.id !== id) return;
      const entries = body.entries || [];
      once("logs", entries, () => fill(node, entries.length
        ? el("ol", { class: "log", reversed: true },
          entries.map((e) => el("li", {}, el("span", { class: "log-at", text: e.at }), " ",
            el("span", { class: `log-severity sev-${e.severity}`, text: e.severity }), " ",
            el("span", { class: "log-text", text: e.text }))))
        : el("p", { class: "muted", text: "No lines yet: the model server has not started." })));
    } catch (exc) {
      if (!(exc instanceof ApiProblem)) throw exc;
      rendered.delete("logs");
      const box = el("div", { class: "problem" });
      problemBox(box, exc.error, "The log could not be read:");
      fill(node, box);
    }
  }

  async function refreshDetail() {
    const id = view.id;
    const d = await api("GET", `/v1/deployments/${enc(id)}`);
    let model = null;
    try { model = await api("GET", `/v1/models/${enc(d.model)}`); } catch (_) { /* shown without */ }
    if (view.name !== "detail" || view.id !== id) return;
    problemBox($("d-load-error"), null);
    renderDetail(d, model);
    const stateChanged = logsState !== d.state;
    if (stateChanged || (!SETTLED.has(d.state) && Date.now() - logsAt > LOGS_MS)) {
      logsState = d.state;
      await refreshLogs(id);
    }
  }

  $("logs-refresh").addEventListener("click", () => {
    if (view.name === "detail") refreshLogs(view.id);
  });

  // -- acting on it ------------------------------------------------------------------------
  async function act(button, label, call) {
    const result = $("act-result");
    button.disabled = true;
    fill(result, el("p", { text: `${label}…` }));
    try {
      const body = await call();
      fill(result, el("p", { class: "done" }, el("span", { class: "icon", "aria-hidden": "true", text: "✓ " }),
        `${label}: done. ${body && body.state ? `Now ${body.state}.` : ""}`));
      rendered.clear();
      refreshNow();
    } catch (exc) {
      if (!(exc instanceof ApiProblem)) throw exc;
      const box = el("div", { class: "problem", role: "alert" });
      problemBox(box, exc.error, `${label} was refused (HTTP ${exc.status}).`);
      fill(result, box);
    } finally {
      button.disabled = false;
    }
  }

  const dialog = $("confirm-delete");
  $("act-delete").addEventListener("click", () => {
    if (!current) return;
    $("confirm-text").textContent = `This undeploys ${current.model} revision ${current.revision} (${current.id}) and deletes its endpoint, so it stops costing money. A deployment that has not started deploying is cancelled instead.`;
    dialog.showModal();
  });
  $("confirm-no").addEventListener("click", () => dialog.close());
  $("confirm-yes").addEventListener("click", () => {
    dialog.close();
    const id = current.id;
    act($("act-delete"), "Delete", () => api("DELETE", `/v1/deployments/${enc(id)}`));
  });
  dialog.addEventListener("close", () => {
    const button = $("act-delete");
    (button.disabled ? $("act-result") : button).focus(); // where the keyboard was, or the outcome
  });
  $("act-redeploy").addEventListener("click", (event) => {
    if (!current) return;
    const id = current.id;
    act(event.currentTarget, "Redeploy", () => api("POST", `/v1/deployments/${enc(id)}:redeploy`));
  });
  $("act-rollback").addEventListener("click", (event) => {
    if (!current) return;
    const name = current.model;
    act(event.currentTarget, `Roll back ${name}`, async () => {
      const body = await api("POST", `/v1/models/${enc(name)}:rollback`);
      return { state: `serving ${body.serving}` };
    });
  });

  // -- try it: a chat that streams ---------------------------------------------------------
  let chatController = null;
  let conversation = [];

  function chatMessage(role, text) {
    const content = el("p", { class: "content", text });
    const item = el("li", { class: `msg msg-${role}` },
      el("span", { class: "who", text: role === "user" ? "You" : "Model" }), content);
    $("chat-log").append(item);
    return { item, content };
  }

  async function readStream(response, onText) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
      let cut;
      while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
        const data = event.split(/\r?\n/).filter((l) => l.startsWith("data:"))
          .map((l) => l.slice(5).replace(/^ /, "")).join("\n");
        if (!data) continue;
        if (data === "[DONE]") return;
        let chunk;
        try { chunk = JSON.parse(data); } catch (_) { continue; }
        if (chunk.error) throw new ApiProblem(502, chunk.error);
        const choice = (chunk.choices || [])[0] || {};
        const text = (choice.delta && choice.delta.content) || choice.text || "";
        if (text) onText(text);
      }
      if (done) return;
    }
  }

  $("chat-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!current || current.state !== "DEPLOYED" || chatController) return;
    const input = $("chat-input");
    const text = input.value.trim();
    if (!text) return;
    const maxTokens = Number.parseInt($("chat-max-tokens").value, 10);
    const temperature = Number.parseFloat($("chat-temperature").value);
    problemBox($("chat-error"), null);
    conversation.push({ role: "user", content: text });
    chatMessage("user", text);
    input.value = "";
    const answer = chatMessage("assistant", "");
    answer.item.setAttribute("aria-busy", "true");
    answer.item.setAttribute("aria-live", "polite");
    chatController = new AbortController();
    $("chat-send").disabled = true;
    $("chat-stop").disabled = false;
    const id = current.id;
    let said = "";
    try {
      const body = { messages: conversation, stream: true };
      if (Number.isFinite(maxTokens)) body.max_tokens = maxTokens;
      if (Number.isFinite(temperature)) body.temperature = temperature;
      const response = await send("POST", `/v1/deployments/${enc(id)}/chat/completions`, body, chatController.signal);
      if (!response.ok) throw await problemOf(response);
      await readStream(response, (piece) => {
        said += piece;
        answer.content.textContent = said;
      });
      conversation.push({ role: "assistant", content: said });
      if (!said) answer.content.textContent = "(no text)";
    } catch (exc) {
      if (exc.name === "AbortError") {
        answer.content.textContent = `${said} [stopped]`;
        conversation.push({ role: "assistant", content: said });
      } else if (exc instanceof ApiProblem) {
        answer.item.remove();
        conversation.pop();
        problemBox($("chat-error"), exc.error, `The chat failed (HTTP ${exc.status}).`);
      } else {
        throw exc;
      }
    } finally {
      answer.item.setAttribute("aria-busy", "false");
      chatController = null;
      $("chat-stop").disabled = true;
      $("chat-send").disabled = !current || current.state !== "DEPLOYED";
    }
  });
  $("chat-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      $("chat-form").requestSubmit();
    }
  });
  $("chat-stop").addEventListener("click", () => { if (chatController) chatController.abort(); });
  $("chat-clear").addEventListener("click", () => {
    conversation = [];
    $("chat-log").replaceChildren();
    problemBox($("chat-error"), null);
  });

  // -- views and the poll loop -------------------------------------------------------------
  let view = { name: "list" };
  let timer = null;
  let generation = 0;

  function parseHash() {
    const hash = location.hash;
    const match = /^#\/d\/(.+)$/.exec(hash);
    if (match) return { name: "detail", id: decodeURIComponent(match[1]) };
    if (hash === "" || hash === "#" || hash.startsWith("#/")) return { name: "list" };
    return null; // an in-page anchor (the skip link): the view stays
  }

  function show(next) {
    const changed = next.name !== view.name || next.id !== view.id;
    view = next;
    $("list-view").hidden = view.name !== "list";
    $("detail-view").hidden = view.name !== "detail";
    if (!changed) return;
    if (view.name === "detail") {
      current = null;
      rendered.clear();
      logsAt = 0;
      logsState = null;
      conversation = [];
      $("chat-log").replaceChildren();
      $("act-result").replaceChildren();
      for (const id of ["d-model", "d-revision", "d-state", "d-id", "d-serving", "d-chart", "d-findings",
        "d-placement", "d-cost", "d-smoke", "d-endpoint", "d-attempts", "d-logs", "d-notifications"]) {
        $(id).replaceChildren(); // nothing of the deployment shown before stays on show
      }
      $("d-timeline").tBodies[0].replaceChildren();
      for (const id of ["d-why", "d-blocked", "chat-error", "d-load-error"]) problemBox($(id), null);
      $("d-model").textContent = view.id;
      $("d-title").focus();
    } else {
      document.title = "modeldrop";
      lastStates = null;
      $("list-title").focus();
    }
  }

  async function tick() {
    const mine = ++generation;
    clearTimeout(timer);
    try {
      if (view.name === "list") await refreshList();
      else await refreshDetail();
      if (mine === generation) showNotice(null);
    } catch (exc) {
      if (!(exc instanceof ApiProblem)) throw exc;
      if (mine !== generation) return;
      if (view.name === "detail" && exc.status !== 401) {
        problemBox($("d-load-error"), exc.error, "The deployment could not be read.");
        showNotice(null);
      } else {
        showNotice(exc);
        if (view.name === "list") $("list-status").textContent = "Not updated: see the error above.";
      }
    } finally {
      if (mine === generation) timer = setTimeout(tick, document.hidden ? HIDDEN_POLL_MS : POLL_MS);
    }
  }

  function refreshNow() {
    clearTimeout(timer);
    tick();
  }

  window.addEventListener("hashchange", () => {
    const next = parseHash();
    if (next) {
      show(next);
      refreshNow();
    }
  });
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refreshNow(); });

  show(parseHash() || { name: "list" });
  refreshNow();
})();
