// The uba dashboard's script, served by the gateway at /app.js beside the
// page: the page's Content-Security-Policy allows scripts from its own
// origin only (no inline script), so nothing injected into the page runs.
"use strict";
(function () {
  const API = "/api/behavior-analytics";
  const SVG_NS = "http://www.w3.org/2000/svg";
  const SEVERITIES = ["CRITICAL", "HIGH", "MEDIUM", "LOW"];
  const DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
  const REFRESH_MS = 30000;

  const state = {
    window: 86400,
    dashboard: null,
    alerts: new Map(),       // alertId -> Alert (latest change wins, by seq)
    alertsAvailable: null,   // null unknown, false: the server answers UNIMPLEMENTED
    incidents: new Map(),    // incidentId -> Incident (latest change wins, by seq)
    incidentsAvailable: null,
    selectedIncident: null,  // the incident whose detail is shown
    incidentDetail: null,    // its GetIncident answer
    focusedAlert: null,      // the alert last shown as evidence
    lastSeq: 0,              // resume point of the alert stream (alerts and incidents share it)
    stream: null,
    streamRetry: 0,
    streamTimer: null,
    logTokens: [""],         // page tokens: [0] is the first page
    logPage: 0,
    nextLogToken: "",
    baseline: null,
    refreshTimer: null,
  };

  // ---- small helpers -------------------------------------------------------

  const $ = (id) => document.getElementById(id);

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  // Colours are CSS variables (light and dark themes): set them as style,
  // where var() is understood, not as presentation attributes.
  function svg(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    attrs = Object.assign({}, attrs);
    const style = [];
    for (const k of ["fill", "stroke"]) {
      if (typeof attrs[k] === "string" && attrs[k].startsWith("var(")) { style.push(k + ":" + attrs[k]); delete attrs[k]; }
    }
    if (style.length) attrs.style = style.join(";");
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  function setAttrs(el, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") el.textContent = v;
      else if (k === "class") el.setAttribute("class", v);
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
  }

  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }

  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }

  const num = (v) => { const n = Number(v); return Number.isFinite(n) ? n : 0; };
  const fmt = (v) => num(v).toLocaleString();

  function enumLabel(value, prefix) {
    if (!value) return "";
    let s = String(value);
    if (prefix && s.startsWith(prefix)) s = s.slice(prefix.length);
    return s.toLowerCase().replace(/_/g, " ");
  }
  const severityKey = (v) => String(v || "").replace("SEVERITY_", "") || "UNSPECIFIED";

  function parseTime(v) { if (!v) return null; const d = new Date(v); return isNaN(d) ? null : d; }
  function timeText(v, withSeconds) {
    const d = parseTime(v);
    if (!d) return "";
    return d.toLocaleString(undefined, { year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", second: withSeconds ? "2-digit" : undefined });
  }
  function ago(v) {
    const d = parseTime(v);
    if (!d) return "";
    const s = Math.round((Date.now() - d.getTime()) / 1000);
    if (s < 45) return "just now";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  }
  function bytesText(v) {
    let n = num(v);
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(n)) + " " + units[i];
  }
  function niceMax(v) {
    if (v <= 4) return Math.max(1, Math.ceil(v));
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  let toastTimer = null;
  function toast(text, bad) {
    const el = $("toast");
    el.textContent = text;
    el.className = "show" + (bad ? " bad" : "");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { el.className = ""; }, bad ? 6000 : 3000);
  }

  function setPill(el, kind, text) {
    el.dataset.state = kind;
    el.querySelector(".dot").className = "dot" + ({ ok: " ok", warn: " warn", bad: " bad" }[dotFor(kind)] || "");
    el.querySelector(".text").textContent = text;
  }
  function dotFor(kind) {
    return { online: "ok", live: "ok", connecting: "warn", reconnecting: "warn", offline: "bad", unavailable: "" }[kind] || "";
  }

  // The API key: asked for once per browser tab and kept in sessionStorage
  // (gone when the tab closes); fetch sends it as Authorization: Bearer.
  // EventSource and download links cannot send headers, so the key also goes
  // in a cookie; the gateway turns that cookie into the header on the two GET
  // routes that need it (alert stream, download), nowhere else, and only for
  // requests from this page's own origin (Sec-Fetch-Site, Origin or Referer:
  // SameSite=Strict alone lets other ports and sibling subdomains send it).
  // Over HTTPS it is a __Host- cookie: Secure, Path=/, set by this origin
  // only, so no other origin of the site can plant or overwrite it.
  const KEY_ITEM = "uba.apiKey";
  function setKeyCookie(key) {
    const value = encodeURIComponent(key);
    if (location.protocol === "https:") document.cookie = "__Host-uba_key=" + value + "; Path=/; Secure; SameSite=Strict";
    else document.cookie = "uba_key=" + value + "; Path=" + API + "/" + "; SameSite=Strict";
  }
  function apiKey() {
    let key = sessionStorage.getItem(KEY_ITEM) || "";
    if (!key) {
      key = (window.prompt("API key for this dashboard (a new server writes one to DATA_DIR/admin.key):") || "").trim();
      if (key) sessionStorage.setItem(KEY_ITEM, key);
    }
    if (key) setKeyCookie(key);
    return key;
  }

  // One way to call the REST API. Resolves to {ok, status, data} or
  // {ok: false, status, unavailable, message}; never throws.
  async function api(path, options) {
    let response;
    const key = apiKey();
    const headers = Object.assign({ accept: "application/json" }, (options || {}).headers || {});
    if (key) headers.authorization = "Bearer " + key;
    try {
      response = await fetch(API + path, Object.assign({ cache: "no-store" }, options || {}, { headers }));
    } catch (err) {
      setPill($("app-status"), "offline", "server unreachable");
      return { ok: false, status: 0, unavailable: false, message: "The server cannot be reached." };
    }
    setPill($("app-status"), "online", "online");
    if (response.status === 401) sessionStorage.removeItem(KEY_ITEM);  // ask again next time
    let body = null;
    const text = await response.text();
    try { body = text ? JSON.parse(text) : null; } catch (err) { body = null; }
    if (response.ok) return { ok: true, status: response.status, data: body || {} };
    return {
      ok: false,
      status: response.status,
      unavailable: response.status === 501,
      message: errorMessage(body, response),
    };
  }

  function errorMessage(body, response) {
    if (body && typeof body === "object") {
      const parts = [];
      for (const d of body.details || []) {
        for (const v of d.fieldViolations || []) parts.push(v.field + ": " + v.description);
      }
      if (parts.length) return parts.join("; ");
      if (body.message) return body.message;
    }
    return response.status + " " + (response.statusText || "error");
  }

  function post(path, body) {
    return api(path, { method: "POST", headers: { "content-type": "application/json", accept: "application/json" }, body: JSON.stringify(body || {}) });
  }

  // ---- header: capabilities ------------------------------------------------

  async function loadCapabilities() {
    const r = await api("/capabilities/");
    if (!r.ok) { $("server-info").textContent = "server: " + r.message; return; }
    const c = r.data;
    const enabled = (c.detectors || []).filter((d) => d.enabled).length;
    $("server-info").textContent = [
      "uba " + (c.version || "?"),
      c.storageBackend || "",
      enumLabel(c.analyticsMode, "ANALYTICS_MODE_") + " analytics",
      enabled + " detector" + (enabled === 1 ? "" : "s"),
    ].filter(Boolean).join(" · ");
  }

  // ---- dashboard -----------------------------------------------------------

  async function loadDashboard() {
    const r = await api("/dashboard/?window=" + state.window + "s");
    if (!r.ok) {
      $("last-updated").textContent = "dashboard: " + r.message;
      return;
    }
    state.dashboard = r.data;
    renderDashboard();
    $("last-updated").textContent = "updated " + new Date().toLocaleTimeString();
  }

  function renderDashboard() {
    const d = state.dashboard;
    if (!d) return;
    const t = d.totals || {};
    $("total-events").textContent = fmt(t.eventCount);
    $("total-users").textContent = fmt(t.userCount);
    $("total-login-failures").textContent = fmt(t.loginFailureCount);
    $("total-api-calls").textContent = fmt(t.apiCallCount);
    $("total-anomalies").textContent = fmt(t.anomalyCount);
    $("total-open-alerts").textContent = fmt(t.openAlertCount);
    $("tile-open-alerts").classList.toggle("alerting", num(t.openAlertCount) > 0);
    $("hourly-range").textContent = d.windowStart ? timeText(d.windowStart) + " – " + timeText(d.windowEnd) : "";
    renderHourly(d.hourly || []);
    renderSeverity(d.openAlertsBySeverity || []);
    renderDetectors(d.anomaliesByDetector || []);
    renderRisky(d.topRiskyUsers || []);
  }

  // Hourly buckets; above ~180 bars they are merged so that each stays visible.
  function renderHourly(hourly) {
    const box = clear($("hourly-chart"));
    if (!hourly.length) { box.append(h("div", { class: "empty", text: "No data in this window." })); return; }
    const group = Math.max(1, Math.ceil(hourly.length / 180));
    const buckets = [];
    for (let i = 0; i < hourly.length; i += group) {
      const part = hourly.slice(i, i + group);
      buckets.push({
        start: parseTime(part[0].startTime),
        hours: part.length,
        events: part.reduce((s, b) => s + num(b.eventCount), 0),
        failures: part.reduce((s, b) => s + num(b.loginFailureCount), 0),
        anomalies: part.reduce((s, b) => s + num(b.anomalyCount), 0),
      });
    }
    const width = Math.max(320, box.clientWidth || 800);
    const m = { left: 44, right: 10, top: 8, bottom: 22 };
    const mainH = 170, gap = 12, stripH = 44;
    const height = m.top + mainH + gap + stripH + m.bottom;
    const innerW = width - m.left - m.right;
    const step = innerW / buckets.length;
    const barW = Math.max(1, step * 0.78);
    const yMax = niceMax(Math.max(1, ...buckets.map((b) => Math.max(b.events, b.failures))));
    const aMax = niceMax(Math.max(1, ...buckets.map((b) => b.anomalies)));
    const y = (v) => m.top + mainH - (v / yMax) * mainH;
    const stripTop = m.top + mainH + gap;
    const ya = (v) => stripTop + stripH - (v / aMax) * stripH;
    const chart = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, id: "hourly-svg" });

    for (const f of [0, 0.5, 1]) {
      const v = yMax * f;
      chart.append(svg("line", { class: "grid", x1: m.left, x2: width - m.right, y1: y(v), y2: y(v) }));
      chart.append(svg("text", { x: m.left - 6, y: y(v) + 4, "text-anchor": "end", text: fmt(v) }));
    }
    chart.append(svg("line", { class: "grid", x1: m.left, x2: width - m.right, y1: stripTop + stripH, y2: stripTop + stripH }));
    chart.append(svg("text", { x: m.left - 6, y: stripTop + 9, "text-anchor": "end", text: fmt(aMax) }));
    chart.append(svg("text", { x: m.left - 6, y: stripTop + stripH, "text-anchor": "end", text: "0" }));

    const line = [];
    buckets.forEach((b, i) => {
      const x = m.left + i * step + (step - barW) / 2;
      if (b.events > 0) chart.append(svg("rect", { x, y: y(b.events), width: barW, height: y(0) - y(b.events), fill: "var(--accent)", "fill-opacity": 0.85 }));
      if (b.anomalies > 0) chart.append(svg("rect", { x, y: ya(b.anomalies), width: barW, height: ya(0) - ya(b.anomalies), fill: "var(--bad)" }));
      line.push((i ? "L" : "M") + (m.left + i * step + step / 2).toFixed(1) + "," + y(b.failures).toFixed(1));
    });
    chart.append(svg("path", { d: line.join(" "), fill: "none", stroke: "var(--warn)", "stroke-width": 2, "stroke-linejoin": "round" }));

    // x labels: about one per 90 px, at hour boundaries
    const every = Math.max(1, Math.round(90 / step));
    buckets.forEach((b, i) => {
      if (i % every || !b.start) return;
      const multiDay = hourly.length > 30;
      const label = multiDay && b.start.getHours() < group
        ? b.start.toLocaleDateString(undefined, { weekday: "short", day: "numeric" })
        : multiDay && group > 1 ? b.start.toLocaleDateString(undefined, { month: "short", day: "numeric" })
        : String(b.start.getHours()).padStart(2, "0") + ":00";
      chart.append(svg("text", { x: m.left + i * step + step / 2, y: height - 6, "text-anchor": "middle", text: label }));
    });

    // hover targets with exact numbers
    buckets.forEach((b, i) => {
      const span = b.hours > 1 ? " (" + b.hours + " h)" : "";
      const title = timeText(b.start) + span + "\n" + fmt(b.events) + " events · " + fmt(b.failures) + " failed logins · " + fmt(b.anomalies) + " anomalies";
      chart.append(svg("rect", { class: "hit", x: m.left + i * step, y: m.top, width: step, height: stripTop + stripH - m.top },
        svg("title", { text: title })));
    });
    box.append(chart);
  }

  function barRows(box, rows, colorFor) {
    const max = Math.max(1, ...rows.map((r) => r.count));
    for (const r of rows) {
      box.append(
        h("div", { class: r.cls || "" }, r.label),
        h("div", { class: "track" }, h("div", { class: "fill", style: `width:${(100 * r.count / max).toFixed(1)}%;background:${colorFor(r)}` })),
        h("div", { class: "n", text: fmt(r.count) }),
      );
    }
  }

  function renderSeverity(list) {
    const box = clear($("severity-chart"));
    const counts = Object.fromEntries(list.map((s) => [severityKey(s.severity), num(s.count)]));
    barRows(box, SEVERITIES.map((s) => ({
      key: s, count: counts[s] || 0, cls: "sev-" + s,
      label: h("span", { class: "badge sev-" + s, text: s.toLowerCase(), "data-severity": s }),
    })), (r) => `var(--sev-${r.key.toLowerCase()})`);
  }

  function renderDetectors(list) {
    const box = clear($("detector-chart"));
    const rows = list.map((d) => ({ label: d.detector, count: num(d.count) })).sort((a, b) => b.count - a.count);
    if (!rows.length) { box.append(h("div", { class: "empty", style: "grid-column: 1 / -1", text: "No anomalies in this window." })); return; }
    barRows(box, rows, () => "var(--accent)");
  }

  function riskColor(risk) {
    if (risk >= 80) return "var(--sev-critical)";
    if (risk >= 60) return "var(--sev-high)";
    if (risk >= 30) return "var(--sev-medium)";
    return "var(--sev-low)";
  }

  function userLink(userId) {
    return h("button", { class: "link", type: "button", title: "Show baseline and events of " + userId, "data-user": userId,
      onclick: () => investigate(userId), text: userId });
  }

  function renderRisky(users) {
    const body = clear($("risky-users"));
    $("risky-users-empty").hidden = users.length > 0;
    for (const u of users) {
      const risk = Math.max(0, Math.min(100, num(u.risk)));
      body.append(h("tr", { "data-user": u.userId },
        h("td", {}, userLink(u.userId)),
        h("td", {}, h("div", { class: "risk" },
          h("div", { class: "track" }, h("div", { class: "fill", style: `width:${risk}%;background:${riskColor(risk)}` })),
          h("b", { text: String(risk) }))),
        h("td", {}, (u.topReasons || []).length
          ? h("ul", { class: "reasons" }, (u.topReasons || []).map((r) => h("li", { text: r })))
          : h("span", { class: "meta", text: "–" })),
      ));
    }
  }

  function investigate(userId) {
    $("baseline-user").value = userId;
    loadBaseline(userId);
    $("logs-user").value = userId;
    resetLogPaging();
    loadLogs();
    $("panel-baseline").scrollIntoView({ behavior: "smooth", block: "start" });
  }

  // ---- alerts and the live feed ---------------------------------------------

  async function loadAlerts() {
    const r = await api("/alerts/?page_size=100");
    $("alerts-error").hidden = true;
    if (!r.ok) {
      if (r.unavailable) { state.alertsAvailable = false; renderAlerts(); return false; }
      $("alerts-error").textContent = "Alerts could not be loaded: " + r.message;
      $("alerts-error").hidden = false;
      return r.status !== 0;
    }
    state.alertsAvailable = true;
    for (const a of r.data.alerts || []) upsertAlert(a, false, true);
    renderAlerts();
    return true;
  }

  // `resumable`: the alert comes from the list or the stream, so the stream
  // may resume after its seq. An acknowledge/resolve answer is not: changes
  // with smaller seqs may still be on their way through the stream.
  function upsertAlert(alert, fresh, resumable) {
    const seq = num(alert.seq);
    if (resumable && seq > state.lastSeq) state.lastSeq = seq;
    const known = state.alerts.get(alert.alertId);
    if (known && num(known.seq) >= seq) return false;  // a replay of a change already shown
    state.alerts.set(alert.alertId, Object.assign({}, alert, { _fresh: fresh }));
    return true;
  }

  function alertVisible(a) {
    const f = $("alerts-status-filter").value;
    if (f === "all") return true;
    if (f === "active") return a.status !== "ALERT_STATUS_RESOLVED";
    return a.status === f;
  }

  function renderAlerts() {
    const list = clear($("alerts-list"));
    const unavailable = state.alertsAvailable === false;
    $("alerts-unavailable").hidden = !unavailable;
    if (unavailable) { $("alerts-empty").hidden = true; return; }
    const alerts = [...state.alerts.values()].filter(alertVisible).sort((a, b) => num(b.seq) - num(a.seq));
    $("alerts-empty").hidden = alerts.length > 0 || state.alertsAvailable === null;
    for (const a of alerts.slice(0, 200)) {
      list.append(alertItem(a));
      a._fresh = false;
    }
  }

  function alertItem(a) {
    const sev = severityKey(a.severity);
    const status = a.status || "ALERT_STATUS_UNSPECIFIED";
    const focus = a.alertId === state.focusedAlert ? " focus" : "";
    const li = h("li", { class: "sev-" + sev + (a._fresh ? " fresh" : "") + focus, "data-alert-id": a.alertId, "data-status": status, "data-seq": String(num(a.seq)) },
      h("div", {},
        h("span", { class: "badge sev-" + sev, text: sev.toLowerCase() }), " ",
        h("span", { class: "badge plain", "data-field": "status", text: enumLabel(status, "ALERT_STATUS_") }), " ",
        h("span", { class: "title", text: a.title || a.detector || "alert" })),
      h("div", { class: "sub" },
        userLink(a.userId), " · ", a.detector || "", " · ",
        fmt(a.anomalyCount) + " anomal" + (num(a.anomalyCount) === 1 ? "y" : "ies"),
        " · risk " + num(a.userRisk), " · ",
        h("span", { title: "first seen " + timeText(a.firstSeenAt, true) + "\nlast seen " + timeText(a.lastSeenAt, true), text: "last seen " + ago(a.lastSeenAt || a.updatedAt) }),
        a.incidentId ? [" · ", h("button", { class: "link", type: "button", "data-action": "open-incident", "data-incident-id": a.incidentId, title: "Show the incident this alert is evidence of", onclick: () => openIncident(a.incidentId), text: "incident" })] : null),
      a.reason ? h("div", { text: a.reason }) : null,
      a.note ? h("div", { class: "meta", text: "Note: " + a.note }) : null,
    );
    const actions = h("div", { class: "actions" });
    if (status === "ALERT_STATUS_OPEN") {
      actions.append(h("button", { type: "button", "data-action": "acknowledge", onclick: (e) => acknowledge(a, e.currentTarget), text: "Acknowledge" }));
    }
    if (status === "ALERT_STATUS_OPEN" || status === "ALERT_STATUS_ACKNOWLEDGED") {
      const select = h("select", { "data-field": "resolution", "aria-label": "Resolution" },
        h("option", { value: "RESOLUTION_TRUE_POSITIVE", text: "true positive" }),
        h("option", { value: "RESOLUTION_BENIGN", text: "benign" }),
        h("option", { value: "RESOLUTION_FALSE_POSITIVE", text: "false positive" }));
      actions.append(select, h("button", { type: "button", "data-action": "resolve", onclick: (e) => resolve(a, select.value, e.currentTarget), text: "Resolve" }));
    }
    if (status === "ALERT_STATUS_ACKNOWLEDGED" && a.acknowledgedBy) actions.append(h("span", { class: "meta", text: "acknowledged by " + a.acknowledgedBy }));
    if (status === "ALERT_STATUS_RESOLVED") {
      actions.append(h("span", { class: "meta", text: "resolved " + enumLabel(a.resolution, "RESOLUTION_") + (a.resolvedBy ? " by " + a.resolvedBy : "") + " " + ago(a.resolvedAt) }));
    }
    li.append(actions);
    return li;
  }

  async function acknowledge(alert, button) {
    button.disabled = true;
    const r = await post("/alerts/" + encodeURIComponent(alert.alertId) + "/acknowledge/", {});
    if (!r.ok) { button.disabled = false; toast("Acknowledge failed: " + r.message, true); return; }
    if (r.data.alert) upsertAlert(r.data.alert, true, false);
    renderAlerts();
    toast("Alert acknowledged.");
  }

  async function resolve(alert, resolution, button) {
    button.disabled = true;
    const r = await post("/alerts/" + encodeURIComponent(alert.alertId) + "/resolve/", { resolution });
    if (!r.ok) { button.disabled = false; toast("Resolve failed: " + r.message, true); return; }
    if (r.data.alert) upsertAlert(r.data.alert, true, false);
    renderAlerts();
    scheduleDashboardRefresh();
    toast("Alert resolved as " + enumLabel(resolution, "RESOLUTION_") + ".");
  }

  // The gateway's SSE has only `data:` lines (no `id:`), so the browser's own
  // reconnect would start over: close on error and reconnect here, with
  // after_seq = the last seq seen, so nothing is missed or repeated.
  function connectStream() {
    clearTimeout(state.streamTimer);
    if (state.stream) state.stream.close();
    // Incident changes come on the same stream and sequence as alert changes.
    const query = "?include_incidents=true" + (state.lastSeq > 0 ? "&after_seq=" + state.lastSeq : "");
    const source = new EventSource(API + "/alerts/stream/" + query);
    state.stream = source;
    setPill($("stream-status"), "connecting", "connecting…");
    source.onopen = () => {
      state.streamRetry = 0;
      setPill($("stream-status"), "live", "live");
    };
    source.onmessage = (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch (err) { return; }
      const seq = num(message.seq);
      if (seq > state.lastSeq) state.lastSeq = seq;
      if (message.alert) {
        state.alertsAvailable = true;
        if (upsertAlert(message.alert, true, true)) {
          renderAlerts();
          scheduleDashboardRefresh();
          if (message.alert.incidentId && message.alert.incidentId === state.selectedIncident) scheduleIncidentDetail();
        }
      }
      if (message.incident) {
        state.incidentsAvailable = true;
        if (upsertIncident(message.incident, true, true)) {
          renderIncidents();
          if (message.incident.incidentId === state.selectedIncident) scheduleIncidentDetail();
        }
      }
      const at = message.heartbeat ? parseTime(message.heartbeat.sentAt) : new Date();
      setPill($("stream-status"), "live", "live · " + (at || new Date()).toLocaleTimeString());
    };
    source.onerror = async () => {
      if (state.stream !== source) return;
      source.close();
      state.stream = null;
      setPill($("stream-status"), "reconnecting", "reconnecting…");
      const probe = await api("/alerts/?page_size=1");
      if (probe.unavailable) {
        state.alertsAvailable = false;
        renderAlerts();
        setPill($("stream-status"), "unavailable", "live feed not available yet");
        state.streamTimer = setTimeout(startAlerts, 60000);
        return;
      }
      const delay = Math.min(30000, 1000 * Math.pow(2, state.streamRetry++));
      state.streamTimer = setTimeout(connectStream, delay);
    };
  }

  // The stream resumes after the older of the two lists: a change that
  // happened between loading them comes again (known seqs are ignored).
  async function startAlerts() {
    const incidentSeq = await loadIncidents();
    const available = await loadAlerts();
    if (incidentSeq > 0) state.lastSeq = state.lastSeq > 0 ? Math.min(state.lastSeq, incidentSeq) : incidentSeq;
    if (state.alertsAvailable === false) {
      setPill($("stream-status"), "unavailable", "live feed not available yet");
      clearTimeout(state.streamTimer);
      state.streamTimer = setTimeout(startAlerts, 60000);
      return;
    }
    if (available !== false) connectStream();
  }

  // ---- incidents: the stories, first on the page --------------------------------

  const SEVERITY_RANK = { CRITICAL: 4, HIGH: 3, MEDIUM: 2, LOW: 1 };
  const RESOLUTIONS = [
    ["RESOLUTION_TRUE_POSITIVE", "true positive"],
    ["RESOLUTION_BENIGN", "benign"],
    ["RESOLUTION_FALSE_POSITIVE", "false positive"],
  ];

  async function loadIncidents() {
    const r = await api("/incidents/?page_size=100");
    $("incidents-error").hidden = true;
    if (!r.ok) {
      if (r.unavailable) { state.incidentsAvailable = false; renderIncidents(); return 0; }
      $("incidents-error").textContent = "Incidents could not be loaded: " + r.message;
      $("incidents-error").hidden = false;
      return 0;
    }
    state.incidentsAvailable = true;
    // Not resumable here: startAlerts decides where the stream resumes.
    const incidents = r.data.incidents || [];
    for (const i of incidents) upsertIncident(i, false, false);
    renderIncidents();
    return Math.max(0, ...incidents.map((i) => num(i.seq)));
  }

  function upsertIncident(incident, fresh, resumable) {
    const seq = num(incident.seq);
    if (resumable && seq > state.lastSeq) state.lastSeq = seq;
    const known = state.incidents.get(incident.incidentId);
    if (known && num(known.seq) >= seq) return false;  // a replay of a change already shown
    state.incidents.set(incident.incidentId, Object.assign({}, incident, { _fresh: fresh }));
    return true;
  }

  function incidentVisible(i) {
    const f = $("incidents-status-filter").value;
    if (f === "all") return true;
    if (f === "active") return i.status !== "INCIDENT_STATUS_RESOLVED";
    return i.status === f;
  }

  // Open ones first, then by severity, score and the latest activity.
  function incidentOrder(a, b) {
    const open = (i) => (i.status === "INCIDENT_STATUS_RESOLVED" ? 0 : 1);
    return open(b) - open(a)
      || (SEVERITY_RANK[severityKey(b.severity)] || 0) - (SEVERITY_RANK[severityKey(a.severity)] || 0)
      || num(b.score) - num(a.score)
      || (parseTime(b.lastSeenAt) || 0) - (parseTime(a.lastSeenAt) || 0);
  }

  function renderIncidents() {
    const list = clear($("incidents-list"));
    const unavailable = state.incidentsAvailable === false;
    $("incidents-unavailable").hidden = !unavailable;
    if (unavailable) { $("incidents-empty").hidden = true; return; }
    const all = [...state.incidents.values()];
    const open = all.filter((i) => i.status === "INCIDENT_STATUS_OPEN").length;
    const acked = all.filter((i) => i.status === "INCIDENT_STATUS_ACKNOWLEDGED").length;
    $("incidents-summary").textContent = state.incidentsAvailable ? fmt(open) + " open · " + fmt(acked) + " acknowledged" : "";
    const shown = all.filter(incidentVisible).sort(incidentOrder);
    $("incidents-empty").hidden = shown.length > 0 || state.incidentsAvailable === null;
    for (const i of shown.slice(0, 200)) {
      list.append(incidentItem(i));
      i._fresh = false;
    }
  }

  function attackBadges(tactics, techniques) {
    return h("span", { class: "attack" },
      (tactics || []).map((t) => h("span", { class: "tactic", "data-tactic": t.tacticId, title: "ATT&CK tactic " + t.tacticId, text: t.name || t.tacticId })),
      (techniques || []).map((t) => h("span", { class: "technique", "data-technique": t.techniqueId, title: t.name ? t.techniqueId + " " + t.name : t.techniqueId, text: t.techniqueId })));
  }

  function spanText(first, last) {
    const a = parseTime(first), b = parseTime(last);
    if (!a) return "";
    if (!b || b - a < 1000) return timeText(first);
    const minutes = Math.round((b - a) / 60000);
    const length = minutes < 90 ? minutes + " min" : Math.round(minutes / 60) + " h";
    const end = a.toDateString() === b.toDateString()
      ? b.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" }) : timeText(last);
    return timeText(first) + " – " + end + " (" + length + ")";
  }

  function entityLabel(i) {
    return i.entityKind === "ENTITY_KIND_SOURCE_ADDRESS" ? "source " + i.entityId : i.entityId;
  }

  function incidentItem(i) {
    const sev = severityKey(i.severity);
    const status = i.status || "INCIDENT_STATUS_UNSPECIFIED";
    const alerts = (i.alertIds || []).length;
    const users = (i.userIds || []).length;
    const li = h("li", {
      class: "sev-" + sev + (i._fresh ? " fresh" : "") + (i.incidentId === state.selectedIncident ? " selected" : ""),
      "data-incident-id": i.incidentId, "data-status": status, "data-seq": String(num(i.seq)),
      "data-severity": sev, "data-score": String(num(i.score)),
      "aria-current": i.incidentId === state.selectedIncident ? "true" : null,
    },
      h("div", { class: "story" },
        h("span", { class: "badge sev-" + sev, text: sev.toLowerCase() }),
        h("span", { class: "score", title: "incident score, 0-100", "data-field": "score", text: String(Math.round(num(i.score))) }),
        h("button", { class: "link", type: "button", "data-action": "open", "data-field": "title", title: "Show score breakdown, evidence and timeline",
          onclick: () => openIncident(i.incidentId), text: i.title || entityLabel(i) })),
      h("div", { class: "sub" },
        i.entityKind === "ENTITY_KIND_SOURCE_ADDRESS"
          ? h("span", { class: "mono", "data-field": "entity", title: fmt(users) + " users concerned", text: "source " + i.entityId })
          : h("span", { "data-field": "entity" }, userLink(i.entityId)),
        h("span", { class: "badge plain", "data-field": "status", text: enumLabel(status, "INCIDENT_STATUS_") }),
        attackBadges(i.tactics, i.techniques),
        h("span", { "data-field": "span", title: "first anomaly " + timeText(i.firstSeenAt, true) + "\nlatest anomaly " + timeText(i.lastSeenAt, true), text: spanText(i.firstSeenAt, i.lastSeenAt) }),
        h("span", { "data-field": "members", text: fmt(alerts) + " alert" + (alerts === 1 ? "" : "s") + " · " + fmt(i.anomalyCount) + " anomal" + (num(i.anomalyCount) === 1 ? "y" : "ies") }),
      ),
    );
    const actions = h("div", { class: "actions" });
    if (status === "INCIDENT_STATUS_OPEN") {
      actions.append(h("button", { type: "button", "data-action": "acknowledge", onclick: (e) => acknowledgeIncident(i, e.currentTarget), text: "Acknowledge" }));
    }
    if (status === "INCIDENT_STATUS_OPEN" || status === "INCIDENT_STATUS_ACKNOWLEDGED") {
      const select = h("select", { "data-field": "resolution", "aria-label": "Resolution" },
        RESOLUTIONS.map(([value, text]) => h("option", { value, text })));
      actions.append(select, h("button", { type: "button", "data-action": "resolve", onclick: (e) => resolveIncident(i, select.value, e.currentTarget), text: "Resolve" }));
    }
    if (status === "INCIDENT_STATUS_ACKNOWLEDGED" && i.acknowledgedBy) actions.append(h("span", { class: "meta", text: "acknowledged by " + i.acknowledgedBy }));
    if (status === "INCIDENT_STATUS_RESOLVED") {
      actions.append(h("span", { class: "meta", text: "resolved " + enumLabel(i.resolution, "RESOLUTION_") + (i.resolvedBy ? " by " + i.resolvedBy : "") + " " + ago(i.resolvedAt) }));
    }
    li.append(actions);
    return li;
  }

  async function acknowledgeIncident(incident, button) {
    button.disabled = true;
    const r = await post("/incidents/" + encodeURIComponent(incident.incidentId) + "/acknowledge/", {});
    if (!r.ok) { button.disabled = false; toast("Acknowledge failed: " + r.message, true); return; }
    incidentChanged(r.data.incident);
    toast("Incident acknowledged.");
  }

  async function resolveIncident(incident, resolution, button) {
    button.disabled = true;
    const r = await post("/incidents/" + encodeURIComponent(incident.incidentId) + "/resolve/", { resolution });
    if (!r.ok) { button.disabled = false; toast("Resolve failed: " + r.message, true); return; }
    incidentChanged(r.data.incident);
    scheduleDashboardRefresh();  // its member alerts were resolved with it
    toast("Incident resolved as " + enumLabel(resolution, "RESOLUTION_") + ".");
  }

  // An answer of acknowledge/resolve: not resumable (see upsertAlert).
  function incidentChanged(incident) {
    if (!incident) return;
    upsertIncident(incident, true, false);
    renderIncidents();
    if (incident.incidentId === state.selectedIncident) scheduleIncidentDetail();
  }

  // ---- one incident: score breakdown, member alerts, timeline -------------------

  function openIncident(incidentId) {
    state.selectedIncident = incidentId;
    renderIncidents();
    loadIncidentDetail();
    if ($("panel-incident").getBoundingClientRect().top < 0) $("panel-incident").scrollIntoView({ behavior: "smooth", block: "start" });
  }

  function closeIncident() {
    state.selectedIncident = null;
    state.incidentDetail = null;
    $("incident-detail").hidden = true;
    $("incident-error").hidden = true;
    $("incident-placeholder").hidden = false;
    $("incident-close").hidden = true;
    renderIncidents();
  }

  let incidentDetailSoon = null;
  function scheduleIncidentDetail() {
    clearTimeout(incidentDetailSoon);
    incidentDetailSoon = setTimeout(loadIncidentDetail, 500);
  }

  async function loadIncidentDetail() {
    const id = state.selectedIncident;
    if (!id) return;
    const view = $("incident-detail");
    view.dataset.state = "loading";
    const r = await api("/incidents/" + encodeURIComponent(id) + "/");
    if (id !== state.selectedIncident) return;  // another one was chosen meanwhile
    $("incident-placeholder").hidden = true;
    $("incident-close").hidden = false;
    if (!r.ok) {
      view.hidden = true;
      view.dataset.state = "error";
      $("incident-error").textContent = "Could not load the incident: " + r.message;
      $("incident-error").hidden = false;
      return;
    }
    $("incident-error").hidden = true;
    state.incidentDetail = r.data;
    if (r.data.incident) { upsertIncident(r.data.incident, false, false); renderIncidents(); }
    // Its member alerts as they are now: the alert list can show them as evidence.
    for (const a of r.data.alerts || []) upsertAlert(a, false, false);
    renderAlerts();
    renderIncidentDetail();
    view.hidden = false;
    view.dataset.state = "ok";
  }

  function renderIncidentDetail() {
    const d = state.incidentDetail;
    if (!d || !d.incident) return;
    const i = d.incident;
    const sev = severityKey(i.severity);
    const view = $("incident-detail");
    view.dataset.incidentId = i.incidentId;
    const users = i.userIds || [];
    const head = clear($("incident-head"));
    head.append(
      h("div", { class: "sev-" + sev },
        h("span", { class: "badge sev-" + sev, text: sev.toLowerCase() }), " ",
        h("span", { class: "score", text: String(Math.round(num(i.score))) }), " ",
        h("span", { class: "badge plain", text: enumLabel(i.status, "INCIDENT_STATUS_") })),
      h("div", { class: "story", text: i.title || entityLabel(i) }),
      h("dl", { class: "facts" },
        h("dt", { text: i.entityKind === "ENTITY_KIND_SOURCE_ADDRESS" ? "Source" : "User" }),
        h("dd", {}, i.entityKind === "ENTITY_KIND_SOURCE_ADDRESS"
          ? h("span", { class: "mono", text: i.entityId })
          : [userLink(i.entityId), " ", h("button", { type: "button", "data-action": "investigate", title: "Baseline and activity log of " + i.entityId, onclick: () => investigate(i.entityId), text: "User view" })]),
        i.entityKind === "ENTITY_KIND_SOURCE_ADDRESS" ? h("dt", { text: "Users" }) : null,
        i.entityKind === "ENTITY_KIND_SOURCE_ADDRESS" ? h("dd", {}, users.slice(0, 12).map((u, n) => [n ? ", " : "", userLink(u)]), users.length > 12 ? " and " + fmt(users.length - 12) + " more" : "") : null,
        h("dt", { text: "ATT&CK" }), h("dd", {}, attackBadges(i.tactics, i.techniques)),
        h("dt", { text: "When" }), h("dd", { text: spanText(i.firstSeenAt, i.lastSeenAt) }),
        (i.sessionIds || []).length ? h("dt", { text: "Sessions" }) : null,
        (i.sessionIds || []).length ? h("dd", { class: "mono", text: i.sessionIds.join(", ") }) : null,
        h("dt", { text: "Members" }), h("dd", { text: fmt((i.alertIds || []).length) + " alerts · " + fmt(i.anomalyCount) + " anomalies" }),
        i.note ? h("dt", { text: "Note" }) : null, i.note ? h("dd", { text: i.note }) : null,
      ),
    );

    // One row per member alert: its part of the score, and a link to it.
    const alerts = new Map((d.alerts || []).map((a) => [a.alertId, a]));
    const body = clear($("incident-signals"));
    const signals = [...(i.signals || [])].sort((a, b) => num(b.probability) - num(a.probability));
    for (const s of signals) {
      const ssev = severityKey(s.severity);
      const alert = alerts.get(s.alertId);
      const why = !s.active ? "resolved: no longer counts" : s.counted ? "counts" : "a stronger signal of " + s.detector + " counts";
      body.append(h("tr", { class: "sev-" + ssev + (s.active ? "" : " inactive"), "data-alert-id": s.alertId, "data-counted": String(Boolean(s.counted && s.active)) },
        h("td", {},
          h("div", {}, h("span", { class: "badge sev-" + ssev, text: ssev.toLowerCase() }), " ", h("b", { text: s.title || s.detector }), " ",
            h("span", { class: "meta", text: s.detector + " · " + fmt(s.anomalyCount) + " anomal" + (num(s.anomalyCount) === 1 ? "y" : "ies") + (users.length > 1 ? " · " + s.userId : "") })),
          h("div", {}, attackBadges(s.tactics, s.techniques)),
          alert && alert.reason ? h("div", { class: "meta", text: alert.reason }) : null),
        h("td", { class: "num", title: why }, h("span", { text: num(s.probability).toFixed(2) }), h("div", { class: "meta", text: s.counted && s.active ? "counted" : "not counted" })),
        h("td", {},
          h("button", { class: "link", type: "button", "data-action": "show-alert", "data-alert-id": s.alertId, title: "Show this alert in the alert list", onclick: () => showAlert(s.alertId), text: "alert" }),
          alert ? h("div", { class: "meta", text: enumLabel(alert.status, "ALERT_STATUS_") }) : null),
      ));
    }
    const counted = signals.filter((s) => s.counted && s.active);
    $("incident-formula").textContent = counted.length
      ? "score = 100 × (1 − " + counted.map((s) => "(1 − " + num(s.probability).toFixed(2) + ")").join(" × ") + ") = " + num(i.score).toFixed(1)
      : "No signal is open any more: the score stands as the story's last.";

    renderTimeline(d.timeline || [], i);
  }

  // An event in one line; its user only where the story is a source address's.
  function timelineText(e, withUser) {
    const place = [e.city, e.countryCode].filter(Boolean).join(", ");
    const call = e.apiMethod || e.apiPath ? [e.apiMethod, e.apiPath, e.statusCode ? "→ " + e.statusCode : ""].filter(Boolean).join(" ") : "";
    return [enumLabel(e.type, "ACTIVITY_TYPE_"), withUser ? e.userId : "", e.sourceIp, place, e.deviceId, call].filter(Boolean).join(" · ");
  }

  const withUser = (userId, incident) => (incident.entityKind === "ENTITY_KIND_SOURCE_ADDRESS" ? userId + ": " : "");

  function renderTimeline(entries, incident) {
    const list = clear($("incident-timeline"));
    const anomalies = entries.filter((t) => t.anomaly).length;
    $("incident-timeline-caption").textContent = fmt(anomalies) + " anomalies, " + fmt(entries.length - anomalies) + " events of " + entityLabel(incident) + " around them";
    for (const t of entries) {
      const at = h("time", { datetime: t.occurredAt, title: t.occurredAt, text: timeText(t.occurredAt, true) });
      if (t.anomaly) {
        const a = t.anomaly;
        const sev = severityKey(a.severity);
        list.append(h("li", { class: "anomaly sev-" + sev, "data-kind": "anomaly", "data-anomaly-id": a.anomalyId },
          at, h("span", { class: "badge sev-" + sev, text: sev.toLowerCase() }), " ", h("b", { text: a.detector }), " ",
          withUser(a.userId, incident), h("span", { text: a.reason || "" })));
      } else if (t.event) {
        list.append(h("li", { "data-kind": "event", "data-event-id": t.event.eventId }, at, h("span", { text: timelineText(t.event, incident.entityKind === "ENTITY_KIND_SOURCE_ADDRESS") })));
      }
    }
    if (!entries.length) list.append(h("li", { class: "empty", text: "Nothing recorded." }));
  }

  // The existing alert view, scrolled to one alert (all statuses shown if
  // the filter would hide it).
  function showAlert(alertId) {
    const alert = state.alerts.get(alertId);
    if (alert && !alertVisible(alert)) $("alerts-status-filter").value = "all";
    renderAlerts();
    const item = [...$("alerts-list").children].find((li) => li.dataset.alertId === alertId);
    if (!item) { toast("That alert is not in the alert list.", true); return; }
    state.focusedAlert = alertId;
    for (const li of $("alerts-list").querySelectorAll("li.focus")) li.classList.remove("focus");
    item.classList.add("focus");
    item.scrollIntoView({ behavior: "smooth", block: "center" });
  }

  // ---- activity log ------------------------------------------------------------

  function localToIso(value) {
    if (!value) return "";
    const d = new Date(value);
    return isNaN(d) ? "" : d.toISOString();
  }

  // The filter part of the query: shared by the table and the export links.
  function logFilters() {
    const q = new URLSearchParams();
    const user = $("logs-user").value.trim();
    if (user) q.set("user_id", user);
    if ($("logs-type").value) q.set("type", $("logs-type").value);
    const start = localToIso($("logs-start").value);
    const end = localToIso($("logs-end").value);
    if (start) q.set("start_time", start);
    if (end) q.set("end_time", end);
    return q;
  }

  function updateExportLinks() {
    for (const format of ["csv", "json", "ndjson"]) {
      const q = logFilters();
      q.set("format", format);
      $("export-" + format).href = API + "/logs/download/?" + q.toString();
    }
  }

  function resetLogPaging() { state.logTokens = [""]; state.logPage = 0; }

  async function loadLogs() {
    const error = $("logs-error");
    error.hidden = true;
    const start = $("logs-start").value, end = $("logs-end").value;
    if (start && end && new Date(start) >= new Date(end)) {
      error.textContent = "“From” must be before “To”.";
      error.hidden = false;
      return;
    }
    updateExportLinks();
    const q = logFilters();
    q.set("page_size", $("logs-page-size").value);
    const token = state.logTokens[state.logPage];
    if (token) q.set("page_token", token);
    const r = await api("/logs/?" + q.toString());
    const body = clear($("logs-body"));
    if (!r.ok) {
      error.textContent = r.unavailable ? "The activity log is not available yet." : "Could not load events: " + r.message;
      error.hidden = false;
      $("logs-empty").hidden = true;
      return;
    }
    const events = r.data.events || [];
    for (const e of events) body.append(logRow(e));
    $("logs-empty").hidden = events.length > 0;
    state.nextLogToken = r.data.nextPageToken || "";
    $("logs-next").disabled = !state.nextLogToken;
    $("logs-prev").disabled = state.logPage === 0;
    $("logs-first").disabled = state.logPage === 0;
    const size = num($("logs-page-size").value);
    const from = state.logPage * size;
    $("logs-page-info").textContent = events.length
      ? "page " + (state.logPage + 1) + " · rows " + (from + 1) + "–" + (from + events.length) + (state.nextLogToken ? "" : " (last page)")
      : "";
  }

  function logRow(e) {
    const place = [e.city, e.countryCode].filter(Boolean).join(", ");
    const call = e.apiMethod || e.apiPath ? [e.apiMethod, e.apiPath, e.statusCode ? "→ " + e.statusCode : ""].filter(Boolean).join(" ") : "";
    const type = enumLabel(e.type, "ACTIVITY_TYPE_");
    return h("tr", { "data-event-id": e.eventId },
      h("td", { title: e.occurredAt, text: timeText(e.occurredAt, true) }),
      h("td", {}, userLink(e.userId)),
      h("td", {}, h("span", { class: "badge plain", style: e.type === "ACTIVITY_TYPE_LOGIN_FAILURE" ? "color: var(--bad)" : "", text: type })),
      h("td", { class: "mono", text: e.sourceIp || "" }),
      h("td", { text: place }),
      h("td", { title: e.userAgent || "", text: e.deviceId || (e.userAgent || "").slice(0, 40) }),
      h("td", { class: "mono", text: call }),
      h("td", { class: "num", text: num(e.bytesTransferred) ? bytesText(e.bytesTransferred) : "" }),
      h("td", { text: e.source || "" }),
    );
  }

  // ---- baseline ----------------------------------------------------------------

  async function loadBaseline(userId) {
    const message = $("baseline-message");
    const view = $("baseline-view");
    if (!userId) return;
    message.textContent = "loading…";
    const r = await api("/users/" + encodeURIComponent(userId) + "/baseline/");
    if (!r.ok) {
      view.hidden = true;
      message.textContent = r.unavailable ? "Baselines are not available yet (they arrive with the detection engine)."
        : r.status === 404 ? "No baseline for " + userId + " yet: no events learned from."
        : "Could not load the baseline: " + r.message;
      message.dataset.state = r.unavailable ? "unavailable" : "error";
      return;
    }
    state.baseline = r.data.baseline || {};
    message.textContent = "";
    message.dataset.state = "ok";
    view.hidden = false;
    renderBaseline();
  }

  function renderBaseline() {
    const b = state.baseline;
    if (!b) return;
    renderHeatmap(b.loginHourOfWeek || [], b.timezone || "UTC");
    const dl = clear($("baseline-summary"));
    const stats = (s, unit) => s && num(s.count) ? num(s.mean).toFixed(1) + " ± " + num(s.stddev).toFixed(1) + (unit || "") + " (max " + num(s.max).toFixed(0) + ")" : "–";
    const known = (list) => (list || []).length ? [...list].sort((x, y) => num(y.count) - num(x.count)).slice(0, 5).map((k) => k.value + " ×" + fmt(k.count)).join(", ") : "–";
    const last = b.lastLogin || {};
    const facts = [
      ["User", b.userId],
      ["Status", b.mature ? "mature baseline" : "still learning (peer or population prior in use)"],
      ["Learned from", fmt(b.observationCount) + " events over " + fmt(b.daysCovered) + " days"],
      ["Seen", timeText(b.firstSeenAt) + " – " + timeText(b.lastSeenAt)],
      ["Time zone", b.timezone || "UTC"],
      ["Peer group", b.peerGroup || "–"],
      ["Logins per day", stats(b.loginsPerDay)],
      ["Failed logins / hour", stats(b.failedLoginsPerHour)],
      ["API calls / hour", stats(b.apiCallsPerHour)],
      ["Bytes / hour", b.bytesPerHour && num(b.bytesPerHour.count) ? bytesText(b.bytesPerHour.mean) + " (max " + bytesText(b.bytesPerHour.max) + ")" : "–"],
      ["API error share", (num(b.apiErrorShare) * 100).toFixed(1) + " %"],
      ["Last login", last.occurredAt ? timeText(last.occurredAt) + " from " + [last.sourceIp, last.city, last.countryCode].filter(Boolean).join(", ") : "–"],
      ["Countries", known(b.countries)],
      ["Cities", known(b.cities)],
      ["Source IPs", known(b.sourceIps)],
      ["Devices", known(b.devices)],
      ["Endpoints", (b.endpoints || []).length ? [...b.endpoints].sort((x, y) => num(y.count) - num(x.count)).slice(0, 5).map((e) => e.endpoint + " ×" + fmt(e.count)).join(", ") : "–"],
    ];
    for (const [k, v] of facts) dl.append(h("dt", { text: k }), h("dd", { text: v }));
  }

  function renderHeatmap(counts, timezone) {
    const box = clear($("baseline-heatmap"));
    $("baseline-heatmap-caption").textContent = "Successful logins per hour of the week (" + timezone + ")";
    if (counts.length !== 168) { box.append(h("div", { class: "empty", text: "No login pattern recorded yet." })); return; }
    const values = counts.map(num);
    const max = Math.max(1, ...values);
    const width = Math.max(360, Math.min(box.clientWidth || 720, 900));
    const left = 34, top = 4, bottom = 18;
    const cell = (width - left) / 24;
    const rowH = Math.min(26, Math.max(14, cell * 0.8));
    const height = top + 7 * rowH + bottom;
    const chart = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, id: "baseline-heatmap-svg" });
    for (let d = 0; d < 7; d++) {
      chart.append(svg("text", { x: 0, y: top + d * rowH + rowH * 0.7, text: DAYS[d] }));
      for (let hr = 0; hr < 24; hr++) {
        const v = values[d * 24 + hr];
        const t = v ? 0.12 + 0.88 * Math.sqrt(v / max) : 0;
        const rect = svg("rect", {
          x: left + hr * cell + 1, y: top + d * rowH + 1, width: cell - 2, height: rowH - 2, rx: 2,
          fill: v ? "var(--heat-1)" : "var(--heat-0)", "fill-opacity": v ? t.toFixed(3) : 1,
          "data-day": d, "data-hour": hr, "data-count": v,
        }, svg("title", { text: DAYS[d] + " " + String(hr).padStart(2, "0") + ":00–" + String(hr + 1).padStart(2, "0") + ":00 · " + fmt(v) + " logins" }));
        chart.append(rect);
      }
    }
    for (let hr = 0; hr < 24; hr += 3) {
      chart.append(svg("text", { x: left + hr * cell + 1, y: height - 4, text: String(hr).padStart(2, "0") }));
    }
    box.append(chart);
  }

  // ---- wiring ------------------------------------------------------------------

  let dashboardSoon = null;
  function scheduleDashboardRefresh() {
    clearTimeout(dashboardSoon);
    dashboardSoon = setTimeout(loadDashboard, 1500);
  }

  function refreshAll() {
    loadDashboard();
    if (state.incidentsAvailable !== false) loadIncidents();
    if (state.alertsAvailable !== false) loadAlerts();
    if (state.selectedIncident) loadIncidentDetail();
  }

  function init() {
    $("logs-tz").textContent = "(" + (Intl.DateTimeFormat().resolvedOptions().timeZone || "local") + ")";
    $("window-select").addEventListener("change", (e) => { state.window = num(e.target.value); loadDashboard(); });
    $("refresh-button").addEventListener("click", () => { refreshAll(); loadLogs(); });
    $("alerts-status-filter").addEventListener("change", renderAlerts);
    $("incidents-status-filter").addEventListener("change", renderIncidents);
    $("incident-close").addEventListener("click", closeIncident);
    $("logs-form").addEventListener("submit", (e) => { e.preventDefault(); resetLogPaging(); loadLogs(); });
    $("logs-form").addEventListener("input", updateExportLinks);
    $("logs-reset").addEventListener("click", () => { $("logs-form").reset(); resetLogPaging(); loadLogs(); });
    $("logs-next").addEventListener("click", () => {
      if (!state.nextLogToken) return;
      state.logTokens[state.logPage + 1] = state.nextLogToken;
      state.logPage += 1;
      loadLogs();
    });
    $("logs-prev").addEventListener("click", () => { if (state.logPage > 0) { state.logPage -= 1; loadLogs(); } });
    $("logs-first").addEventListener("click", () => { resetLogPaging(); loadLogs(); });
    $("baseline-form").addEventListener("submit", (e) => { e.preventDefault(); loadBaseline($("baseline-user").value.trim()); });
    let resizeTimer = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => { renderDashboard(); renderBaseline(); }, 150);
    });
    // Relative times ("5 min ago") and the dashboard stay current; paused while hidden.
    state.refreshTimer = setInterval(() => {
      if (document.visibilityState !== "visible") return;
      loadDashboard();
      renderIncidents();
      renderAlerts();
    }, REFRESH_MS);
    document.addEventListener("visibilitychange", () => { if (document.visibilityState === "visible") loadDashboard(); });

    loadCapabilities();
    loadDashboard();
    startAlerts();
    loadLogs();
    updateExportLinks();
  }

  // For tests and the curious: the page's state, read-only use please.
  window.uba = { state, refreshAll, loadLogs, loadBaseline, connectStream, openIncident };
  // An empty icon: otherwise the browser asks for /favicon.ico, which the
  // gateway does not serve, and every console shows a 404.
  document.head.append(h("link", { rel: "icon", href: "data:," }));
  document.addEventListener("DOMContentLoaded", init);
})();
