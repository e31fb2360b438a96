// The OrderShop dashboard: events as they flow (the gateway's /events), the
// consumer groups and what the archive archived and trimmed (/ops/streams),
// and the dead letters of crm and billing with a replay button. Every request
// carries the admin token when there is one: it comes from the page's
// address, #token=<token>, or the page asks for it once when the gateway
// answers 401. The event stream is read with fetch, not EventSource, which
// cannot send the Authorization header; it resumes from the last event's id
// (Last-Event-ID) after a break, as EventSource would.
"use strict";

const POLL_MS = 1500;       // groups and dead letters
const SILENCE_MS = 20000;   // no byte for this long, heartbeats included: reconnect
const KEEP = 50;            // events shown per stream

let token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
let asked = false;

function headers(extra) {
  const h = Object.assign({}, extra);
  if (token) h.Authorization = "Bearer " + token;
  return h;
}

// api fetches a JSON admin route; a 401 asks for the token once.
async function api(path, method) {
  const resp = await fetch(path, { method: method || "GET", headers: headers(), cache: "no-store" });
  if (resp.status === 401) askToken();
  let body = null;
  try { body = await resp.json(); } catch (e) { /* not JSON */ }
  if (!resp.ok) throw new Error((body && body.error) || resp.status + " " + resp.statusText);
  return body;
}

function askToken() {
  if (asked) return;
  asked = true;
  const t = prompt("The gateway wants its admin token (ADMIN_TOKEN):");
  if (t) {
    token = t.trim();
    history.replaceState(null, "", "#token=" + encodeURIComponent(token));
  }
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e[k] = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return e;
}

function status(cls, text) {
  const s = document.getElementById("status");
  s.className = "status " + cls;
  s.textContent = text;
}

// label is a stream's key without what a KEY_PREFIX put in front of it.
function label(key) {
  const i = key.lastIndexOf("events:");
  return i > 0 ? key.slice(i) : key;
}

function clock(t) {
  const d = new Date(t);
  if (isNaN(d)) return t || "";
  return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

// ---- events ----

const cards = new Map(); // stream key → {list, count, seen}

function card(key) {
  let c = cards.get(key);
  if (c) return c;
  const count = el("small", {}, "0 seen");
  const list = el("ol", {}, el("li", { class: "none" }, "waiting for events…"));
  document.getElementById("streams").append(el("div", { class: "stream", "data-stream": key }, el("h3", { title: key }, label(key), count), list));
  c = { list, count, seen: 0 };
  cards.set(key, c);
  return c;
}

function showEvent(e) {
  const c = card(e.stream);
  c.list.querySelector("li.none")?.remove();
  c.seen++;
  c.count.textContent = c.seen + " seen";
  const li = el("li", { class: "new", "data-entity-id": e.entity_id, "data-type": e.type, title: e.id + " · version " + e.version },
    el("span", { class: "mono" }, clock(e.time)), el("span", { class: "type" }, e.type),
    el("span", { class: "id mono" }, e.entity_id));
  c.list.prepend(li);
  while (c.list.children.length > KEEP) c.list.lastChild.remove();
}

// follow reads /events for ever, resuming after the last event it saw.
async function follow() {
  let last = "";
  for (;;) {
    const abort = new AbortController();
    let timer = setTimeout(() => abort.abort(), SILENCE_MS);
    try {
      const resp = await fetch("events", { headers: headers(last ? { "Last-Event-ID": last } : {}), signal: abort.signal, cache: "no-store" });
      if (resp.status === 401) askToken();
      if (resp.status === 400) last = ""; // an id this gateway cannot read: start afresh
      if (!resp.ok) throw new Error(resp.status + " " + resp.statusText);
      status("live", "live");
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        clearTimeout(timer);
        timer = setTimeout(() => abort.abort(), SILENCE_MS);
        buf += value;
        let end;
        while ((end = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          let id = null, type = "message", data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) continue; // a heartbeat
            const i = line.indexOf(":");
            const field = i < 0 ? line : line.slice(0, i);
            const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
            if (field === "id") id = val; else if (field === "event") type = val; else if (field === "data") data += val;
          }
          if (data) {
            const msg = JSON.parse(data);
            if (type === "streams") msg.forEach(card); else showEvent(msg);
          }
          if (id !== null) last = id;
        }
      }
    } catch (e) {
      /* reconnect below */
    } finally {
      clearTimeout(timer);
    }
    status("down", "reconnecting…");
    await new Promise(r => setTimeout(r, 1000));
  }
}

// ---- groups and dead letters ----

function fill(tbody, rows, cols, empty) {
  tbody.replaceChildren(...(rows.length ? rows : [el("tr", { class: "empty" }, el("td", { colspan: cols }, empty))]));
}

async function pollGroups() {
  const note = document.getElementById("groups-note");
  try {
    const streams = await api("ops/streams");
    const rows = [], archive = [];
    for (const s of streams) {
      card(s.stream);
      for (const g of s.groups) {
        if (g.name === "archive") {
          archive.push(el("tr", { "data-stream": s.stream }, el("td", { class: "mono", title: s.stream }, label(s.stream)),
            el("td", { class: "num archived" }, g.done < 0 ? "?" : g.done),
            el("td", { class: "num lag" + (g.lag > 0 ? " high" : "") }, g.lag < 0 ? "?" : g.lag),
            el("td", { class: "num trimmed" }, s.trimmed)));
        }
        const consumers = g.consumers.map(c => c.name + " (" + c.pending + ", " + (c.idle_ms / 1000).toFixed(1) + " s)").join(", ");
        rows.push(el("tr", { "data-stream": s.stream, "data-group": g.name },
          el("td", { class: "mono", title: s.stream }, label(s.stream)), el("td", {}, g.name),
          el("td", { class: "num lag" + (g.lag > 0 ? " high" : "") }, g.lag < 0 ? "?" : g.lag),
          el("td", { class: "num pending" }, g.pending),
          el("td", { class: "num dead" + (g.dead_letters > 0 ? " bad" : "") }, g.dead_letters),
          el("td", {}, consumers || "none")));
      }
    }
    fill(document.querySelector("#groups tbody"), rows, 6, "no consumer groups yet");
    fill(document.querySelector("#archive tbody"), archive, 4, "archiving off (no group archive)");
    note.textContent = "";
  } catch (e) {
    note.textContent = "groups: " + e.message;
  }
}

async function pollDeadLetters() {
  const note = document.getElementById("dead-note");
  const rows = [], problems = [];
  for (const service of ["crm", "billing"]) {
    try {
      for (const d of await api("ops/" + service + "/deadletters")) rows.push(deadRow(service, d));
    } catch (e) {
      problems.push(service + ": " + e.message);
    }
  }
  fill(document.querySelector("#dead tbody"), rows, 8, "none");
  note.textContent = problems.join("; ");
}

function deadRow(service, d) {
  const entry = d.entry || {};
  const button = el("button", {
    onclick: async () => {
      button.disabled = true;
      try {
        await api("ops/" + service + "/deadletters/" + encodeURIComponent(d.stream) + "/" + encodeURIComponent(d.id) + "/replay", "POST");
        button.textContent = "replayed";
      } catch (e) {
        button.textContent = "failed";
        button.title = e.message;
      }
      pollDeadLetters();
    },
  }, "Replay");
  return el("tr", { "data-group": d.group, "data-entity-id": entry.entity_id || "" }, el("td", {}, d.group), el("td", {}, d.stream),
    el("td", { class: "mono", title: "dead letter " + d.id + ", stream entry " + d.stream_id }, entry.type || d.stream_id),
    el("td", { class: "mono" }, entry.entity_id || ""), el("td", {}, d.error),
    el("td", { class: "num" }, d.deliveries), el("td", { class: "mono" }, clock(d.time)), el("td", {}, button));
}

async function poll() {
  await Promise.all([pollGroups(), pollDeadLetters()]);
  setTimeout(poll, POLL_MS);
}

follow();
poll();
