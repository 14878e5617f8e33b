// The dashboard at `/admin`: the HTTP API with the API key (kept in
// sessionStorage), a live event feed read from `GET /v1/events` with fetch
// (EventSource cannot send an Authorization header), and `GET /v1/stats`.
import { renderChart } from "/assets/chart.js";
import { ago, avatar, clock, duration, el, session, setChildren, toast } from "/assets/common.js";

const KEY = "presenced-admin:key";
const USERS_PAGE = 25;
const CHANNELS_PAGE = 25;
const MEMBERS_PAGE = 50;
const FEED_MAX = 200;
const POLL_MS = 5000;

const $ = (id) => document.getElementById(id);

let apiKey = null;
let pollTimer = null;
let refreshTimer = null;
let feedAbort = null;
let feedCount = 0;
let lastSamples = [];
const names = new Map();

/** A paginated listing: the cursors of the pages seen so far. */
function pager() {
  return { cursors: [null], index: 0, next: null };
}
const users = { ...pager(), filter: "" };
const channels = pager();
const members = { ...pager(), channel: null };

// ----- API ----------------------------------------------------------------

class AuthError extends Error {}

async function api(path, options = {}) {
  const res = await fetch(path, {
    ...options,
    cache: "no-store",
    headers: { Authorization: `Bearer ${apiKey}`, ...(options.body ? { "content-type": "application/json" } : {}) },
  });
  if (res.status === 401 || res.status === 403) throw new AuthError(res.status === 401 ? "API key required" : "Wrong API key");
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new Error(body?.error?.message ?? `HTTP ${res.status}`);
  return body;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : "";
}

function failed(error) {
  if (error instanceof AuthError) signOut(error.message);
  else console.warn(error);
}

// ----- stats and chart ----------------------------------------------------------------

async function loadStats() {
  const stats = await api("/v1/stats");
  const now = stats.now;
  $("stat-connections").textContent = now.connections;
  $("stat-users").textContent = now.users;
  $("stat-channels").textContent = now.channels;
  $("stat-members").textContent = now.members;
  const toSample = (s) => ({ at: Date.parse(s.at), connections: s.connections, users: s.users });
  lastSamples = stats.history.map(toSample);
  const current = toSample(now);
  // "now" joins the history unless the last sample was just taken.
  if (!lastSamples.length || current.at - lastSamples[lastSamples.length - 1].at > 1000) lastSamples.push(current);
  drawChart();
  const first = lastSamples[0];
  $("chart-range").textContent = first && stats.history.length ? `since ${clock(first.at)} · a sample every ${stats.interval_ms / 1000} s` : "";
}

function drawChart() {
  renderChart($("chart"), lastSamples);
}

// ----- users ----------------------------------------------------------------

/** Avatar, display name (when a member's token carried one) and user id. */
function userCell(user, status) {
  const name = names.get(user);
  return el(
    "span",
    { class: "user-cell" },
    avatar(user, name ?? user, status, true),
    el("span", { class: "user-label" }, el("span", { class: "user-name" }, name ?? user), name && name !== user ? el("span", { class: "user-id" }, user) : null),
  );
}

async function loadUsers() {
  const page = await api(`/v1/users${query({ limit: USERS_PAGE, status: users.filter, cursor: users.cursors[users.index] })}`);
  users.next = page.next_cursor;
  const now = Date.now();
  setChildren(
    $("users"),
    page.users.map((u) =>
      el(
        "tr",
        { dataset: { user: u.user, status: u.status } },
        el("td", {}, userCell(u.user, u.status)),
        el("td", { "data-label": "Status" }, el("span", { class: `badge ${u.status}` }, u.status)),
        el("td", { "data-label": "Since", title: u.since ?? "" }, duration(u.since, now)),
        el("td", { "data-label": "Last seen", title: u.last_seen ?? "" }, ago(u.last_seen, now)),
        el("td", { "data-label": "Conns", class: "num" }, u.connections),
        el("td", { "data-label": "Channels", class: "num", title: u.channels.join(", ") }, u.channels.length),
        el("td", { class: "num actions" }, kickButton(u.user)),
      ),
    ),
  );
  paintKickButtons();
  const empty = page.users.length === 0 && users.index === 0;
  $("users-empty").hidden = !empty;
  $("users-count").textContent = empty ? "" : `${page.users.length}${page.next_cursor || users.index ? " on this page" : ""}`;
  $("users-page").textContent = `Page ${users.index + 1}`;
  $("users-prev").disabled = users.index === 0;
  $("users-next").disabled = !users.next;
}

/** Kick asks once more before it acts; the question survives a refresh of the table. */
let armedKick = { user: null, timer: null };

function paintKickButtons() {
  for (const button of document.querySelectorAll("button[data-kick]")) {
    const armed = button.dataset.kick === armedKick.user;
    button.textContent = armed ? "Confirm" : "Kick";
    button.classList.toggle("confirm", armed);
  }
}

function kickButton(user) {
  const button = el("button", { type: "button", class: "danger small", dataset: { kick: user }, title: `Close every connection of ${user}` }, "Kick");
  button.addEventListener("click", async () => {
    clearTimeout(armedKick.timer);
    if (armedKick.user !== user) {
      armedKick = {
        user,
        timer: setTimeout(() => {
          armedKick = { user: null, timer: null };
          paintKickButtons();
        }, 4000),
      };
      paintKickButtons();
      return;
    }
    armedKick = { user: null, timer: null };
    paintKickButtons();
    button.disabled = true;
    try {
      const out = await api(`/v1/users/${encodeURIComponent(user)}/disconnect`, { method: "POST", body: "{}" });
      toast(`Disconnected ${user} (${out.disconnected} ${out.disconnected === 1 ? "connection" : "connections"})`);
      refreshSoon(0);
    } catch (error) {
      failed(error);
      button.disabled = false;
    }
  });
  return button;
}

// ----- recently offline ----------------------------------------------------------------

/**
 * `GET /v1/users` lists online and away users only, so the users this page
 * saw go offline on its event feed are kept here (newest first, since the
 * page was opened), with their presence from `POST /v1/users/query`.
 */
const OFFLINE_MAX = 50;
const recentOffline = new Map(); // user -> {at, reason, presence}

function sawOffline(event) {
  if (!event.user) return;
  recentOffline.delete(event.user);
  recentOffline.set(event.user, { at: event.at ?? new Date().toISOString(), reason: event.reason ?? null, presence: null });
  while (recentOffline.size > OFFLINE_MAX) recentOffline.delete(recentOffline.keys().next().value);
}

async function loadOffline() {
  const ids = [...recentOffline.keys()];
  if (ids.length) {
    const out = await api("/v1/users/query", { method: "POST", body: JSON.stringify({ users: ids }) });
    for (const id of ids) {
      const presence = out.users?.[id];
      const entry = recentOffline.get(id);
      if (!entry) continue;
      // Back online or away: the users table has them again.
      if (presence && presence.status !== "offline") recentOffline.delete(id);
      else entry.presence = presence ?? null;
    }
  }
  renderOffline();
}

function renderOffline() {
  const now = Date.now();
  const rows = [...recentOffline.entries()].reverse();
  setChildren(
    $("offline-users"),
    rows.map(([user, { at, reason, presence }]) => {
      const lastSeen = presence?.last_seen ?? null;
      const since = presence?.since ?? at;
      return el(
        "tr",
        { dataset: { user, status: "offline" } },
        el("td", {}, userCell(user, "offline")),
        el("td", { "data-label": "Status" }, el("span", { class: "badge offline" }, "offline")),
        el("td", { "data-label": "Last seen", class: "last-seen", title: lastSeen ?? "" }, lastSeen ? `${ago(lastSeen, now)} · ${clock(lastSeen)}` : "—"),
        el("td", { "data-label": "Offline for", title: since ?? "" }, since ? duration(since, now) : "—"),
        el("td", { "data-label": "Why" }, reason ?? "—"),
      );
    }),
  );
  $("offline-table").hidden = rows.length === 0;
  $("offline-empty").hidden = rows.length > 0;
  $("offline-count").textContent = rows.length ? String(rows.length) : "";
}

// ----- channels and members ----------------------------------------------------------------

async function loadChannels() {
  const page = await api(`/v1/channels${query({ limit: CHANNELS_PAGE, cursor: channels.cursors[channels.index] })}`);
  channels.next = page.next_cursor;
  const most = Math.max(1, ...page.channels.map((c) => c.members));
  setChildren(
    $("channels"),
    page.channels.map((c) => {
      const bar = el("span");
      bar.style.width = `${Math.round((c.members / most) * 100)}%`;
      return el(
        "tr",
        {
          class: `clickable${c.channel === members.channel ? " selected" : ""}`,
          dataset: { channel: c.channel },
          tabindex: "0",
          onclick: () => selectChannel(c.channel),
          onkeydown: (e) => {
            if (e.key === "Enter" || e.key === " ") {
              e.preventDefault();
              selectChannel(c.channel);
            }
          },
        },
        el("td", { class: "mono" }, c.channel),
        el("td", { "data-label": "Members", class: "num" }, c.members),
        el("td", { "data-label": "Conns", class: "num" }, c.connections),
        el("td", { "data-label": "Share", class: "bar" }, el("div", { class: "occupancy-bar" }, bar)),
      );
    }),
  );
  const empty = page.channels.length === 0 && channels.index === 0;
  $("channels-empty").hidden = !empty;
  $("channels-count").textContent = empty ? "" : `${page.channels.length}${page.next_cursor || channels.index ? " on this page" : ""}`;
  $("channels-page").textContent = `Page ${channels.index + 1}`;
  $("channels-prev").disabled = channels.index === 0;
  $("channels-next").disabled = !channels.next;
}

function selectChannel(channel) {
  Object.assign(members, pager(), { channel });
  for (const row of $("channels").children) row.classList.toggle("selected", row.dataset.channel === channel);
  loadMembers().catch(failed);
}

async function loadMembers() {
  if (!members.channel) return;
  const channel = members.channel;
  const page = await api(
    `/v1/channels/${encodeURIComponent(channel)}/members${query({ limit: MEMBERS_PAGE, cursor: members.cursors[members.index] })}`,
  );
  if (channel !== members.channel) return;
  members.next = page.next_cursor;
  const now = Date.now();
  for (const m of page.members) learnName(m.user, m.data?.info?.name);
  $("members-title").textContent = `Members of ${channel}`;
  setChildren(
    $("members"),
    page.members.map((m) => {
      const { info, ...rest } = m.data ?? {};
      const shown = Object.keys(rest).length ? JSON.stringify(rest) : "—";
      return el(
        "tr",
        { dataset: { user: m.user } },
        el("td", {}, userCell(m.user, null)),
        el("td", { "data-label": "Conns", class: "num" }, m.conns),
        el("td", { "data-label": "In channel for", title: m.since }, duration(m.since, now)),
        el("td", { "data-label": "Data", class: "data", title: JSON.stringify(m.data) }, shown),
      );
    }),
  );
  const empty = page.members.length === 0 && members.index === 0;
  $("members-table").hidden = empty;
  $("members-pager").hidden = empty;
  setChildren($("members-empty"), el("strong", {}, empty ? "Nobody in this channel" : ""), empty ? "It has subscribers but no members, or it just emptied." : "");
  $("members-empty").hidden = !empty;
  $("members-count").textContent = empty ? "" : `${page.members.length}${page.next_cursor || members.index ? " on this page" : ""}`;
  $("members-page").textContent = `Page ${members.index + 1}`;
  $("members-prev").disabled = members.index === 0;
  $("members-next").disabled = !members.next;
}

function pageButtons(name, state, load) {
  $(`${name}-next`).addEventListener("click", () => {
    if (!state.next) return;
    state.cursors = state.cursors.slice(0, state.index + 1);
    state.cursors.push(state.next);
    state.index += 1;
    load().catch(failed);
  });
  $(`${name}-prev`).addEventListener("click", () => {
    if (state.index === 0) return;
    state.index -= 1;
    load().catch(failed);
  });
}

// ----- live feed ----------------------------------------------------------------

function setFeedState(state) {
  $("feed-state").dataset.state = state;
  $("feed-text").textContent = state === "live" ? "live" : state === "reconnecting" ? "reconnecting…" : "offline";
}

/** Feed items by user, to put names on them once known. */
const feedItems = [];

function learnName(user, name) {
  if (!user || typeof name !== "string" || !name || names.get(user) === name) return;
  names.set(user, name);
  for (const item of feedItems) if (item.event.user === user) item.label.textContent = feedLabel(item.event);
}

function feedLabel(event) {
  const user = event.user ?? "";
  return [names.get(user) ?? user, event.channel, event.reason].filter(Boolean).join(" · ");
}

function addFeedItem(event) {
  const type = event.type ?? "event";
  learnName(event.user, event.data?.info?.name);
  const label = el("span", { class: "what", title: JSON.stringify(event) }, feedLabel(event));
  const item = el(
    "li",
    { class: "enter", dataset: { type, user: event.user ?? "" } },
    el("time", {}, clock(event.at ?? Date.now())),
    el("span", {}, el("span", { class: `badge ${type.replace(".", "-")}` }, type)),
    label,
  );
  $("feed").prepend(item);
  feedItems.unshift({ event, label, item });
  while ($("feed").childElementCount > FEED_MAX) {
    $("feed").lastElementChild.remove();
    feedItems.pop();
  }
  feedCount += 1;
  $("feed-count").textContent = String(feedCount);
  $("feed-empty").hidden = true;
}

function handleSse(block) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") name = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return;
  let payload;
  try {
    payload = JSON.parse(data.join("\n"));
  } catch {
    return;
  }
  if (name === "presence") {
    addFeedItem(payload);
    if (payload.type === "user.offline") sawOffline(payload);
    else if (payload.type === "user.online" || payload.type === "user.away") recentOffline.delete(payload.user);
    refreshSoon();
  } else if (name === "lagged") {
    addFeedItem({ type: "lagged", user: `missed ${payload.missed} events (reloaded the lists)`, at: new Date().toISOString() });
    refreshSoon(0);
  }
}

async function runFeed() {
  let delay = 1000;
  while (apiKey) {
    const abort = new AbortController();
    feedAbort = abort;
    try {
      const res = await fetch("/v1/events", { headers: { Authorization: `Bearer ${apiKey}` }, signal: abort.signal, cache: "no-store" });
      if (res.status === 401 || res.status === 403) {
        signOut("Wrong API key");
        return;
      }
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      setFeedState("live");
      delay = 1000;
      refreshSoon(0); // anything that happened while the feed was down
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          handleSse(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (error) {
      if (abort.signal.aborted) return;
      console.warn("event feed:", error);
    }
    if (!apiKey || abort.signal.aborted) return;
    setFeedState("reconnecting");
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 15000);
  }
}

// ----- refresh ----------------------------------------------------------------

async function refreshAll() {
  if (!apiKey) return;
  await Promise.all([loadStats(), loadUsers(), loadChannels(), loadMembers(), loadOffline()]).catch(failed);
}

/** Coalesces the refreshes a burst of events asks for. */
function refreshSoon(ms = 300) {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => refreshAll(), ms);
}

// ----- sign in and out ----------------------------------------------------------------

function showDashboard() {
  $("login").hidden = true;
  $("dashboard").hidden = false;
  $("sign-out").hidden = false;
  $("feed-state").hidden = false;
  setFeedState("reconnecting");
  refreshAll();
  clearInterval(pollTimer);
  pollTimer = setInterval(refreshAll, POLL_MS);
  runFeed();
}

function signOut(message = "") {
  apiKey = null;
  recentOffline.clear();
  renderOffline();
  session.remove(KEY);
  clearInterval(pollTimer);
  clearTimeout(refreshTimer);
  feedAbort?.abort();
  $("dashboard").hidden = true;
  $("sign-out").hidden = true;
  $("feed-state").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("api-key").value = "";
  $("api-key").focus();
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = $("api-key").value.trim();
  if (!key) return;
  $("login-button").disabled = true;
  $("login-error").textContent = "";
  apiKey = key;
  try {
    await api("/v1/stats");
    session.set(KEY, key);
    showDashboard();
  } catch (error) {
    apiKey = null;
    $("login-error").textContent = error instanceof AuthError ? "That is not this server's API key." : `Could not reach the server: ${error.message}`;
  } finally {
    $("login-button").disabled = false;
  }
});

$("sign-out").addEventListener("click", () => signOut());

for (const button of document.querySelectorAll("[data-filter]")) {
  button.addEventListener("click", () => {
    for (const b of document.querySelectorAll("[data-filter]")) b.setAttribute("aria-pressed", String(b === button));
    Object.assign(users, pager(), { filter: button.dataset.filter });
    loadUsers().catch(failed);
  });
}

$("feed-clear").addEventListener("click", () => {
  $("feed").replaceChildren();
  feedItems.length = 0;
  feedCount = 0;
  $("feed-count").textContent = "";
  $("feed-empty").hidden = false;
});

pageButtons("users", users, loadUsers);
pageButtons("channels", channels, loadChannels);
pageButtons("members", members, loadMembers);

new ResizeObserver(() => drawChart()).observe($("chart"));

apiKey = session.get(KEY);
if (apiKey) showDashboard();
else signOut();
