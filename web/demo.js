// The live demo at `/`: sign in with a development token, enter a room and
// the site-wide `demo:everyone` channel, and show who is there, live, with
// the SDK. Everything the SDK reported is also kept in `window.__events`
// (for the end-to-end tests and for the curious).
import { createClient } from "/assets/vendor/presenced-client/index.js";
import { shareAcrossTabs } from "/assets/vendor/presenced-client/share/index.js";
import { ago, avatar, clock, duration, el, session, setChildren } from "/assets/common.js";

const AUTH_KEY = "presenced-demo:auth";
const EVERYONE = "demo:everyone";
const ROOMS = ["lobby", "design", "random"];
const ROOM_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const WS_URL = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/ws`;
const STATUS_RANK = { online: 0, away: 1, offline: 2 };
const STATE_TEXT = {
  connecting: "connecting…",
  connected: "connected",
  reconnecting: "reconnecting…",
  disconnected: "disconnected",
};

// `?share=1`: the tabs of this browser share one connection (the SDK's
// `shareAcrossTabs`): one tab holds the socket, the others go through it.
const SHARE = new URLSearchParams(location.search).has("share");

const $ = (id) => document.getElementById(id);
const devTokens = document.querySelector('meta[name="presenced-dev-tokens"]')?.content === "true";

/** Every state change the SDK reported, oldest first. */
window.__events = [];

let auth = null; // { user, name, token, exp }
let client = null;
let everyone = null;
let room = null;
let roomName = null;
let offs = [];
const watched = new Set();
const names = new Map();
let lastMembers = new Set();

// ----- events ----------------------------------------------------------------

function record(kind, detail = {}) {
  const event = { at: Date.now(), kind, ...detail };
  window.__events.push(event);
  const line = describe(event);
  if (line) {
    const log = $("log");
    log.prepend(el("li", {}, el("time", {}, clock(event.at)), el("span", {}, line)));
    while (log.childElementCount > 100) log.lastElementChild.remove();
  }
}

function describe(e) {
  const who = (user) => (user === auth?.user ? "You" : nameOf(user));
  switch (e.kind) {
    case "state":
      return `Connection ${STATE_TEXT[e.state] ?? e.state}`;
    case "join":
      // Joining the site-wide channel is "is online", shown from presence.
      return e.channel === EVERYONE ? null : `${who(e.user)} joined ${e.channel}`;
    case "leave":
      return e.channel === EVERYONE ? null : `${who(e.user)} left ${e.channel}${e.reason && e.reason !== "left" ? ` (${e.reason})` : ""}`;
    case "presence":
      return `${who(e.user)} ${e.user === auth?.user ? "are" : "is"} ${e.status}`;
    case "kicked":
      return `Disconnected by an administrator (${e.code})`;
    case "error":
      return `Error: ${e.code} — ${e.message}`;
    default:
      return null;
  }
}

// ----- identity ----------------------------------------------------------------

/** A user id from a display name: the same name is the same user. */
export function userIdFor(name) {
  const slug = name
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 48);
  if (slug) return slug;
  const hex = Array.from(new TextEncoder().encode(name.trim()), (b) => b.toString(16).padStart(2, "0")).join("");
  return `u-${hex.slice(0, 96)}`;
}

function nameOf(user) {
  return names.get(user) ?? user;
}

function learnNames(members) {
  for (const m of members) {
    const name = m.data?.info?.name;
    if (typeof name === "string" && name) names.set(m.user, name);
  }
}

async function mintToken(user, name) {
  const res = await fetch("/v1/dev/token", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user, name }),
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    const error = new Error(body?.error?.message ?? `HTTP ${res.status}`);
    error.status = res.status;
    throw error;
  }
  return { token: body.token, exp: Date.now() / 1000 + body.expires_in };
}

/** The SDK's token provider: the stored token while it has a few minutes left, else a fresh one. */
async function currentToken() {
  if (auth.token && auth.exp - Date.now() / 1000 > 120) return auth.token;
  const { token, exp } = await mintToken(auth.user, auth.name);
  auth = { ...auth, token, exp };
  session.set(AUTH_KEY, auth);
  return token;
}

// ----- connection ----------------------------------------------------------------

function start() {
  names.set(auth.user, auth.name);
  client = createClient({ url: WS_URL, token: currentToken, shareAcrossTabs: SHARE ? shareAcrossTabs : false });
  record("state", { state: client.state });
  renderState(client.state);
  offs.push(
    client.on("state", (state) => {
      record("state", { state });
      renderState(state);
      if (state === "disconnected") {
        renderPeople();
        renderOwnStatus();
      }
    }),
    client.on("presence", (changed) => {
      for (const [user, entry] of Object.entries(changed)) record("presence", { user, status: entry.status });
      renderPeople();
      renderOwnStatus();
    }),
    client.on("kicked", ({ code }) => {
      record("kicked", { code });
      $("kicked").hidden = false;
      $("reconnecting").hidden = true;
      renderState("disconnected");
      renderPeople();
      renderOwnStatus();
    }),
    client.on("error", (error) => record("error", { code: error.code, message: error.message })),
  );

  everyone = client.channel(EVERYONE);
  observe(everyone, () => renderPeople());
  everyone.enter({}).catch(() => {});

  showApp();
  joinRoom(roomFromHash() ?? "lobby");
}

/** Logs a channel's events and calls `changed` with every new member list. */
function observe(handle, changed) {
  const channel = handle.name;
  handle.on("members", (members) => {
    learnNames(members);
    record("members", { channel, users: members.map((m) => m.user) });
    if (channel === EVERYONE) {
      const fresh = members.map((m) => m.user).filter((u) => !watched.has(u));
      for (const u of fresh) watched.add(u);
      if (fresh.length) client.watch(fresh).catch(() => {});
    }
    changed(members);
  });
  handle.on("join", (member) => {
    learnNames([member]);
    record("join", { channel, user: member.user });
  });
  handle.on("leave", ({ user, reason }) => record("leave", { channel, user, reason: reason ?? null }));
  handle.on("occupancy", () => renderRoom());
}

function joinRoom(name) {
  if (!client || name === roomName) return;
  if (room) {
    const old = room;
    old.unsubscribe().catch(() => {});
    old.release();
  }
  roomName = name;
  lastMembers = new Set();
  room = client.channel(`room:${name}`);
  observe(room, () => renderRoom());
  room.subscribe({ occupancy: true }).catch(() => {});
  room.enter({}).catch(() => {});
  if (roomFromHash() !== name) history.replaceState(null, "", `#${name}`);
  renderRoomChips();
  renderRoom();
}

function roomFromHash() {
  const name = decodeURIComponent(location.hash.slice(1));
  return ROOM_NAME.test(name) ? name : null;
}

function stop() {
  for (const off of offs) off();
  offs = [];
  client = null;
  everyone = null;
  room = null;
  roomName = null;
  watched.clear();
  lastMembers = new Set();
}

// ----- rendering ----------------------------------------------------------------

function renderState(state) {
  const pill = $("conn-state");
  pill.dataset.state = state;
  $("conn-text").textContent = STATE_TEXT[state] ?? state;
  $("reconnecting").hidden = state !== "reconnecting";
}

/**
 * Whether this tab is out for good (kicked, or signed out in another shared
 * tab): the SDK then knows nobody's presence, so the page shows that, not a
 * roster of people who all look offline.
 */
function isDisconnected() {
  return client?.state === "disconnected";
}

function renderOwnStatus() {
  const status = client?.ownStatus ?? "online";
  $("set-online").setAttribute("aria-pressed", String(status === "online"));
  $("set-away").setAttribute("aria-pressed", String(status === "away"));
  const own = isDisconnected() ? "offline" : (client?.status(auth.user)?.status ?? (client?.state === "connected" ? "online" : "offline"));
  setChildren($("me-avatar"), avatar(auth.user, auth.name, own, true));
}

function renderRoomChips() {
  const rooms = ROOMS.includes(roomName) || !roomName ? ROOMS : [...ROOMS, roomName];
  setChildren(
    $("room-chips"),
    rooms.map((r) =>
      el("button", { type: "button", class: "chip", "aria-pressed": String(r === roomName), dataset: { room: r }, onclick: () => joinRoom(r) }, r),
    ),
  );
}

function renderRoom() {
  if (!room) return;
  const off = isDisconnected();
  $("room-off").hidden = !off;
  if (off) {
    $("room-title").textContent = `room:${roomName}`;
    $("room-count").textContent = "not connected";
    setChildren($("members"));
    $("members-empty").hidden = true;
    lastMembers = new Set();
    return;
  }
  const members = [...room.members()].sort((a, b) => (a.user === auth.user ? -1 : b.user === auth.user ? 1 : nameOf(a.user).localeCompare(nameOf(b.user))));
  const occupancy = room.occupancy();
  $("room-title").textContent = `room:${roomName}`;
  const people = members.length;
  const conns = occupancy?.connections;
  $("room-count").textContent =
    `${people} ${people === 1 ? "person" : "people"}` + (conns !== undefined ? ` · ${conns} ${conns === 1 ? "connection" : "connections"}` : "");
  const now = Date.now();
  const seen = new Set();
  setChildren(
    $("members"),
    members.map((m) => {
      seen.add(m.user);
      const status = client.status(m.user)?.status ?? "online";
      const tabs = m.conns ?? 1;
      return el(
        "li",
        { class: lastMembers.has(m.user) ? "" : "enter", dataset: { user: m.user, status } },
        avatar(m.user, nameOf(m.user), status),
        el(
          "div",
          { class: "who" },
          el("div", { class: "name" }, el("span", { class: "name-text" }, nameOf(m.user)), m.user === auth.user ? el("span", { class: "you" }, "you") : null),
          el("div", { class: "sub" }, `${tabs} ${tabs === 1 ? "tab" : "tabs"} · ${hereFor(m.since, now)}`),
        ),
        el("span", { class: `badge ${status}` }, status),
      );
    }),
  );
  lastMembers = seen;
  $("members-empty").hidden = members.length > 0;
}

function hereFor(since, now) {
  return Date.parse(since) > now - 10_000 ? "just joined" : `here for ${duration(since, now)}`;
}

let peopleRenders = 0;

function renderPeople() {
  if (!everyone) return;
  peopleRenders += 1;
  const off = isDisconnected();
  $("people-off").hidden = !off;
  if (off) {
    $("people-count").textContent = "";
    setChildren($("people"));
    $("people-empty").hidden = true;
    renderRoom();
    return;
  }
  const inSite = new Map(everyone.members().map((m) => [m.user, m]));
  const ids = new Set([...inSite.keys(), ...watched]);
  const now = Date.now();
  const rows = [...ids].map((user) => {
    const entry = client.status(user);
    const status = entry?.status ?? (inSite.has(user) ? "online" : "offline");
    return { user, status, entry };
  });
  rows.sort(
    (a, b) =>
      STATUS_RANK[a.status] - STATUS_RANK[b.status] ||
      (a.user === auth.user ? -1 : b.user === auth.user ? 1 : nameOf(a.user).localeCompare(nameOf(b.user))),
  );
  const online = rows.filter((r) => r.status !== "offline").length;
  $("people-count").textContent = `${online} online`;
  setChildren(
    $("people"),
    rows.map(({ user, status, entry }) => {
      let sub = status;
      if (status === "offline") sub = `offline · last seen ${ago(entry?.last_seen, now)}`;
      else if (entry?.since) sub = Date.parse(entry.since) > now - 10_000 ? `${status} · just now` : `${status} for ${duration(entry.since, now)}`;
      return el(
        "li",
        { class: status === "offline" ? "is-offline" : "", dataset: { user, status } },
        avatar(user, nameOf(user), status),
        el(
          "div",
          { class: "who" },
          el("div", { class: "name" }, el("span", { class: "name-text" }, nameOf(user)), user === auth.user ? el("span", { class: "you" }, "you") : null),
          el("div", { class: "sub" }, sub),
        ),
      );
    }),
  );
  $("people-empty").hidden = rows.length > 1;
  renderRoom();
}

function showApp() {
  $("signin").hidden = true;
  $("dev-off").hidden = true;
  $("app").hidden = false;
  $("kicked").hidden = true;
  $("room-off").hidden = true;
  $("people-off").hidden = true;
  $("me").hidden = false;
  $("me-name").textContent = auth.name;
  renderOwnStatus();
  renderRoomChips();
}

function showSignIn(message = "") {
  $("app").hidden = true;
  $("me").hidden = true;
  $("dev-off").hidden = devTokens;
  $("signin").hidden = !devTokens;
  $("signin-error").textContent = message;
  renderState("disconnected");
  $("conn-text").textContent = "not connected";
  if (devTokens) $("name").focus();
}

// ----- wiring ----------------------------------------------------------------

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("name").value.trim();
  if (!name) return;
  const user = userIdFor(name);
  $("join").disabled = true;
  $("signin-error").textContent = "";
  try {
    const { token, exp } = await mintToken(user, name);
    auth = { user, name, token, exp };
    session.set(AUTH_KEY, auth);
    start();
  } catch (error) {
    if (error.status === 404) {
      $("signin").hidden = true;
      $("dev-off").hidden = false;
    } else {
      $("signin-error").textContent = `Could not sign in: ${error.message}`;
    }
  } finally {
    $("join").disabled = false;
  }
});

$("sign-out").addEventListener("click", () => {
  client?.logout();
  stop();
  auth = null;
  session.remove(AUTH_KEY);
  $("log").replaceChildren();
  showSignIn();
});

$("rejoin").addEventListener("click", () => {
  client?.release();
  stop();
  start();
});

$("set-online").addEventListener("click", () => client?.setStatus("online").then(renderOwnStatus, () => {}));
$("set-away").addEventListener("click", () => client?.setStatus("away").then(renderOwnStatus, () => {}));
$("clear-log").addEventListener("click", () => $("log").replaceChildren());

$("room-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("room-input").value.trim().replace(/^room:/, "");
  if (!ROOM_NAME.test(name)) {
    $("room-input").setCustomValidity("Letters, digits, _ . - (at most 64)");
    $("room-input").reportValidity();
    return;
  }
  $("room-input").setCustomValidity("");
  $("room-input").value = "";
  joinRoom(name);
});
$("room-input").addEventListener("input", () => $("room-input").setCustomValidity(""));

window.addEventListener("hashchange", () => {
  const name = roomFromHash();
  if (name) joinRoom(name);
});

// Relative times ("here for 3 min") move on.
setInterval(() => {
  if (client) renderPeople();
}, 5000);

/** For tests and the console. */
window.__demo = {
  get state() {
    return client?.state ?? "disconnected";
  },
  get user() {
    return auth?.user ?? null;
  },
  get room() {
    return roomName;
  },
  /** Whether this tab shares its connection with the other tabs (`?share=1`). */
  get shared() {
    return SHARE;
  },
  members(channel = `room:${roomName}`) {
    if (channel === EVERYONE) return everyone?.members().map((m) => m.user) ?? [];
    if (room && channel === room.name) return room.members().map((m) => m.user);
    return [];
  },
  status(user) {
    return client?.status(user)?.status ?? null;
  },
  /** How often the People list was drawn (it is redrawn every 5 s, for the relative times). */
  get peopleRenders() {
    return peopleRenders;
  },
};

auth = session.get(AUTH_KEY);
if (devTokens && auth?.user && auth?.name) start();
else showSignIn();
