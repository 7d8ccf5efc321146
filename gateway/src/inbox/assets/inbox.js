// Dartwing Inbox page: log in, load the conversation list (with the head seq), then live on
// the WebSocket from that seq. Every event names what changed; the page reloads that part
// (idempotent), so an event seen twice or after a snapshot that already holds it is harmless.
// On a drop or a `resync` it reconnects with the last seq it saw: nothing is missed.
"use strict";
const $ = (id) => document.getElementById(id);
// Channel badges are text: a kiosk or a server without emoji fonts shows them all the same.
const ICONS = { sms: "SMS", whatsapp: "WA", email: "Mail", voice: "Call" };
const TICKS = { queued: "○", sending: "○", sent: "✓", delivered: "✓✓", read: "✓✓", failed: "✗" };
const state = {
  token: sessionStorage.getItem("dw_token"), agent: null, seq: 0, ws: null, retry: 500,
  convs: [], current: null, cmd: 0, pending: {}, reloadTimer: null, typingTimer: null,
};

async function api(path, opts = {}) {
  const r = await fetch(path, { ...opts, headers: { "content-type": "application/json", authorization: "Bearer " + state.token, ...(opts.headers || {}) } });
  if (r.status === 401) { logout(); throw new Error("unauthorized"); }
  if (!r.ok) throw new Error((await r.json()).error.message);
  return r.status === 204 ? null : r.json();
}

function logout() {
  if (state.token) fetch("/api/v1/logout", { method: "POST", headers: { authorization: "Bearer " + state.token } });
  sessionStorage.removeItem("dw_token");
  state.token = null;
  if (state.ws) state.ws.close();
  $("app").hidden = true; $("login").hidden = false;
}

$("login").addEventListener("submit", async (e) => {
  e.preventDefault();
  const r = await fetch("/api/v1/login", { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: $("login-email").value, password: $("login-password").value }) });
  if (!r.ok) { $("login-error").textContent = r.status === 429 ? "Too many attempts; wait a moment." : "Wrong email or password."; return; }
  state.token = (await r.json()).token;
  sessionStorage.setItem("dw_token", state.token);
  start();
});
$("logout").addEventListener("click", logout);

async function start() {
  $("login").hidden = true; $("app").hidden = false;
  const snap = await api("/api/v1/inbox/conversations");
  state.agent = snap.agent; state.seq = snap.head_seq; state.convs = snap.conversations;
  $("me").textContent = snap.agent.email;
  renderList();
  state.broadcasts = new Map();
  // Newest first from the API; kept oldest first, as later ones arrive.
  for (const b of (await api("/api/v1/inbox/broadcasts").catch(() => [])).reverse()) state.broadcasts.set(b.id, b);
  renderBroadcasts();
  connect();
}

function connect() {
  const ws = new WebSocket(location.origin.replace(/^http/, "ws") + "/api/v1/ws");
  state.ws = ws;
  ws.onopen = () => ws.send(JSON.stringify({ type: "hello", token: state.token, last_seq: state.seq }));
  ws.onmessage = (m) => onFrame(JSON.parse(m.data));
  ws.onclose = (c) => {
    setConn("offline");
    if (c.code === 4401) return logout();
    if (c.code === 4410) return void setTimeout(() => start().catch(logout), 200); // history pruned: fresh snapshot
    if (!state.token) return;
    setTimeout(connect, state.retry);
    state.retry = Math.min(state.retry * 2, 5000);
  };
}

function setConn(s) { $("conn-status").dataset.state = s; $("conn-status").textContent = s; }

function onFrame(f) {
  switch (f.type) {
    case "welcome": break;
    case "caught_up": setConn("online"); state.retry = 500; scheduleReload(); break;
    case "event":
      if (f.seq <= state.seq) return; // seen already
      state.seq = f.seq;
      onEvent(f.event);
      break;
    case "resync": state.seq = f.seq; break; // the server closes; onclose reconnects from here
    case "typing":
      if (state.current === f.conversation_id) {
        $("typing").textContent = "Someone is typing…";
        clearTimeout(state.typingTimer);
        state.typingTimer = setTimeout(() => ($("typing").textContent = ""), 3000);
      }
      break;
    case "ack": case "error": {
      const done = state.pending[f.id]; delete state.pending[f.id];
      if (done) done(f);
      break;
    }
  }
}

function onEvent(ev) {
  if (ev.type && ev.type.startsWith("dartwing.broadcast.")) return onBroadcast(ev.type, ev.data || {});
  const conv = ev.data && ev.data.conversation_id;
  scheduleReload(conv);
}

// Broadcasts follow their events: created, progress, confirmed, finished, cancelled (each
// but `created` carries the counts; `created` the name and audience size).
function onBroadcast(type, d) {
  if (!state.broadcasts || !d.broadcast_id) return;
  const b = state.broadcasts.get(d.broadcast_id) || { id: d.broadcast_id, name: d.name || "Broadcast", state: "running", counts: {} };
  if (type.endsWith(".created.v1")) b.counts = { pending: d.recipients };
  if (d.counts) b.counts = d.counts;
  if (d.state) b.state = d.state;
  if (type.endsWith(".cancelled.v1")) b.state = "cancelled";
  state.broadcasts.set(b.id, b);
  renderBroadcasts();
}

const COUNTS = [["confirmed", "confirmed"], ["sent", "sent"], ["pending", "pending"],
  ["not_confirmed", "not confirmed"], ["unreachable", "unreachable"], ["opted_out", "opted out"]];

function renderBroadcasts() {
  const list = [...state.broadcasts.values()].slice(-10).reverse();
  $("broadcasts").replaceChildren(...list.map((b) => {
    const li = document.createElement("li");
    li.className = "broadcast"; li.dataset.id = b.id; li.dataset.state = b.state;
    const name = document.createElement("span"); name.className = "name"; name.textContent = b.name;
    const st = document.createElement("span"); st.className = "state"; st.textContent = b.state;
    const counts = document.createElement("span"); counts.className = "counts";
    counts.textContent = COUNTS.filter(([k]) => b.counts && b.counts[k]).map(([k, w]) => `${b.counts[k]} ${w}`).join(" · ") || "—";
    li.append(name, st, counts);
    return li;
  }));
}

function scheduleReload(conv) {
  if (conv) state.dirty = (state.dirty || new Set()).add(conv);
  clearTimeout(state.reloadTimer);
  state.reloadTimer = setTimeout(reload, 30);
}

async function reload() {
  const dirty = state.dirty || new Set(); state.dirty = null;
  const snap = await api("/api/v1/inbox/conversations");
  state.convs = snap.conversations;
  renderList();
  if (state.current && (dirty.has(state.current) || dirty.size === 0)) await openThread(state.current, false);
}

function label(c) {
  const id = c.identities[0];
  return id ? id.address : c.contact_id.slice(0, 8);
}

function convItem(c) {
  const li = document.createElement("li");
  li.className = "conv status-" + c.status + (c.id === state.current ? " selected" : "");
  li.dataset.id = c.id; li.tabIndex = 0;
  li.innerHTML = `<span class="icon" title="${c.channel || ""}"></span><span class="who"></span>` +
    `<span class="unread" data-count="${c.unread}">${c.unread}</span><span class="preview"></span>`;
  li.querySelector(".icon").textContent = ICONS[c.channel] || "•";
  li.querySelector(".who").textContent = label(c);
  li.querySelector(".preview").textContent = c.preview || "";
  li.addEventListener("click", () => openThread(c.id, true));
  return li;
}

function renderList() {
  const queue = state.convs.filter((c) => !c.assignee_id && c.status === "open");
  $("queue").replaceChildren(...queue.map(convItem));
  $("queue-count").textContent = queue.length;
  $("convs").replaceChildren(...state.convs.filter((c) => !queue.includes(c)).map(convItem));
}

async function openThread(id, markRead) {
  state.current = id;
  document.querySelector(".app").classList.add("reading");
  const c = state.convs.find((x) => x.id === id);
  $("thread-title").textContent = c ? label(c) : id;
  $("thread-assignee").textContent = c && c.assignee_id ? (c.assignee_id === state.agent.id ? "assigned to you" : "assigned") : "in queue";
  $("btn-resolve").textContent = c && c.status === "resolved" ? "Reopen" : "Resolve";
  for (const b of ["btn-assign", "btn-resolve", "reply-body", "reply-send"]) $(b).disabled = false;
  document.querySelectorAll(".conv").forEach((el) => el.classList.toggle("selected", el.dataset.id === id));
  const msgs = await api(`/api/v1/inbox/conversations/${id}/messages?limit=500`);
  if (state.current !== id) return;
  renderMessages(msgs);
  $("messages").scrollTop = $("messages").scrollHeight;
  if ((markRead || document.hasFocus()) && c && c.unread > 0) command({ type: "read", conversation_id: id });
}

// Re-renders the thread keeping the node of every message that has not changed, so a live
// update does not take away what the agent is doing with it: a voicemail player fetched or
// playing stays (a media element moved within the same task keeps playing), and a click in
// flight lands on a node that is still there.
function renderMessages(msgs) {
  const old = new Map([...$("messages").children].map((el) => [el.dataset.id, el]));
  $("messages").replaceChildren(...msgs.map((m) => {
    const sig = JSON.stringify(m);
    const kept = old.get(m.id);
    if (kept && kept.sig === sig) return kept;
    const li = msgItem(m); li.sig = sig;
    return li;
  }));
}

// Who spoke, on a call's transcript turns and voicemails.
const SPEAKERS = { caller: "Caller", receptionist: "Receptionist" };

function msgItem(m) {
  const li = document.createElement("li");
  li.className = "msg " + m.direction; li.dataset.id = m.id;
  li.textContent = m.body;
  if (m.kind === "transcript" || m.kind === "voicemail") {
    const who = document.createElement("span"); who.className = "speaker";
    const speaker = (m.content && SPEAKERS[m.content.speaker]) || "";
    who.textContent = m.kind === "voicemail" ? "Voicemail from the caller" : speaker;
    li.prepend(who);
  }
  const meta = document.createElement("span"); meta.className = "meta";
  meta.textContent = new Date(m.created_at).toLocaleTimeString() + " · " + (ICONS[m.channel] || m.channel);
  if (m.direction === "outbound") {
    const t = document.createElement("span"); t.className = "ticks"; t.dataset.status = m.status;
    t.textContent = " " + (TICKS[m.status] || m.status);
    t.title = m.status + (m.status === "failed" ? ": " + (m.error_message || m.error_code || "unknown reason") : "");
    if (m.status === "failed") t.textContent += " " + (m.error_message || m.error_code || "failed");
    meta.append(t);
  }
  if (m.kind === "voicemail") li.append(voicemailPlayer(m));
  if (m.channel === "email" && m.content && m.content.html) li.append(formattedToggle(m.content.html));
  li.append(meta);
  return li;
}

// An email's HTML (sanitised by the gateway), shown on demand in a frame sandboxed to the
// hilt: no scripts, forms, popups or same-origin access, and a policy that loads nothing
// from the network. The text above it stays the message.
function formattedToggle(html) {
  const b = document.createElement("button");
  b.type = "button"; b.className = "formatted"; b.textContent = "Show formatted";
  b.addEventListener("click", () => {
    const open = b.nextElementSibling && b.nextElementSibling.tagName === "IFRAME";
    if (open) { b.nextElementSibling.remove(); b.textContent = "Show formatted"; return; }
    const f = document.createElement("iframe");
    f.className = "mail-html"; f.setAttribute("sandbox", ""); f.referrerPolicy = "no-referrer";
    f.title = "Formatted email";
    f.srcdoc = '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; ' +
      'style-src \'unsafe-inline\'; img-src data:">' + html;
    b.after(f); b.textContent = "Hide formatted";
  });
  return b;
}

// A voicemail's recording: fetched with the session token on the first click (an <audio>
// src cannot carry it), then played from a blob URL.
function voicemailPlayer(m) {
  const b = document.createElement("button");
  b.className = "voicemail"; b.type = "button";
  const secs = m.content && m.content.seconds ? ` (${Math.round(m.content.seconds)} s)` : "";
  b.textContent = "▶ Voicemail" + secs;
  b.addEventListener("click", async () => {
    const r = await fetch(`/api/v1/messages/${m.id}/audio`, { headers: { authorization: "Bearer " + state.token } });
    if (!r.ok) { b.textContent = "Voicemail unavailable"; return; }
    const audio = document.createElement("audio");
    audio.controls = true; audio.src = URL.createObjectURL(await r.blob());
    b.replaceWith(audio); audio.play().catch(() => {});
  }, { once: true });
  return b;
}

function command(cmd) {
  return new Promise((resolve) => {
    const id = "c" + Date.now().toString(36) + "-" + state.cmd++;
    state.pending[id] = resolve;
    const frame = JSON.stringify({ ...cmd, id });
    const send = () => state.ws && state.ws.readyState === 1 ? state.ws.send(frame) : setTimeout(send, 200);
    send();
  });
}

$("reply").addEventListener("submit", async (e) => {
  e.preventDefault();
  const body = $("reply-body").value.trim();
  if (!body || !state.current) return;
  $("reply-send").disabled = true;
  const a = await command({ type: "reply", conversation_id: state.current, body });
  $("reply-send").disabled = false;
  if (a.type === "ack") $("reply-body").value = ""; else alert(a.message);
});
$("reply-body").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("reply").requestSubmit();
  else if (state.current) command({ type: "typing", conversation_id: state.current });
});
$("btn-assign").addEventListener("click", () => command({ type: "assign", conversation_id: state.current }));
$("btn-resolve").addEventListener("click", () => {
  const c = state.convs.find((x) => x.id === state.current);
  command({ type: c && c.status === "resolved" ? "reopen" : "resolve", conversation_id: state.current });
});
$("back").addEventListener("click", () => document.querySelector(".app").classList.remove("reading"));

let searchTimer = null;
$("search").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(async () => {
    const q = $("search").value.trim();
    $("results").hidden = !q; $("convs").hidden = !!q;
    if (!q) return;
    const hits = await api("/api/v1/search?q=" + encodeURIComponent(q)).catch(() => []);
    $("results").replaceChildren(...hits.map((h) => {
      const c = state.convs.find((x) => x.id === h.conversation_id) || { id: h.conversation_id, identities: [], contact_id: h.conversation_id, unread: 0, channel: h.channel, status: "" };
      const li = convItem({ ...c, preview: h.body, unread: 0 });
      return li;
    }));
  }, 150);
});

document.addEventListener("keydown", (e) => {
  const typing = ["INPUT", "TEXTAREA"].includes(document.activeElement.tagName);
  if (e.key === "Escape") { document.activeElement.blur(); return; }
  if (typing || $("app").hidden) return;
  const items = [...document.querySelectorAll(".conv")];
  // From the focused conversation, else the open one (when the open one comes first in the
  // list, a match on either would pin j to the item after it).
  let at = items.indexOf(document.activeElement);
  if (at < 0) at = items.findIndex((el) => el.dataset.id === state.current);
  if (e.key === "j" || e.key === "ArrowDown") { (items[at + 1] || items[0])?.focus(); e.preventDefault(); }
  else if (e.key === "k" || e.key === "ArrowUp") { (items[at - 1] || items[items.length - 1])?.focus(); e.preventDefault(); }
  else if (e.key === "Enter" && document.activeElement.dataset.id) openThread(document.activeElement.dataset.id, true);
  else if (e.key === "r" && state.current) { $("reply-body").focus(); e.preventDefault(); }
  else if (e.key === "e" && state.current) $("btn-resolve").click();
  else if (e.key === "/") { $("search").focus(); e.preventDefault(); }
});

if (state.token) start().catch(() => logout()); else $("login").hidden = false;
