// Small DOM and formatting helpers shared by the demo and the dashboard.

/** `el("li", {class: "x", dataset: {user: "u"}}, "text", child)`: an element. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** Replaces an element's children. */
export function setChildren(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

/** A stable palette class for an id. */
export function hueClass(id) {
  let h = 0;
  for (const ch of String(id)) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return `hue-${h % 8}`;
}

/** Up to two initials of a display name. */
export function initials(name) {
  const words = String(name).trim().split(/[\s._-]+/).filter(Boolean);
  const letters = words.length > 1 ? [words[0], words[words.length - 1]] : [words[0] ?? "?"];
  return letters
    .map((w) => Array.from(w)[0] ?? "")
    .join("")
    .toUpperCase();
}

/** An avatar with initials and, when given, a status dot. */
export function avatar(id, name, status, small = false) {
  return el(
    "span",
    { class: `avatar ${hueClass(id)}${small ? " small" : ""}`, "aria-hidden": "true" },
    initials(name || id),
    status ? el("span", { class: `dot ${status}` }) : null,
  );
}

/** A status dot. */
export function dot(status) {
  return el("span", { class: `dot ${status}`, title: status });
}

/** "just now", "12 s ago", "3 min ago", "2 h ago", or a date. */
export function ago(time, now = Date.now()) {
  if (time === null || time === undefined) return "never";
  const t = typeof time === "number" ? time : Date.parse(time);
  if (!Number.isFinite(t)) return "—";
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 5) return "just now";
  if (s < 60) return `${s} s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h} h ago`;
  return new Date(t).toLocaleDateString();
}

/** For "since": "for 3 min" style durations. */
export function duration(time, now = Date.now()) {
  if (time === null || time === undefined) return "—";
  const t = typeof time === "number" ? time : Date.parse(time);
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  return `${h} h ${m % 60} min`;
}

/** HH:MM:SS of a time. */
export function clock(time) {
  const d = new Date(typeof time === "number" ? time : Date.parse(time));
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}

/** Shows a short message at the bottom of the page. */
export function toast(message, ms = 3000) {
  const node = el("div", { class: "toast", role: "status" }, message);
  document.body.append(node);
  setTimeout(() => node.remove(), ms);
}

/** sessionStorage that never throws (private modes, sandboxed frames). */
export const session = {
  get(key) {
    try {
      const raw = sessionStorage.getItem(key);
      return raw === null ? null : JSON.parse(raw);
    } catch {
      return null;
    }
  },
  set(key, value) {
    try {
      sessionStorage.setItem(key, JSON.stringify(value));
    } catch {
      /* memory only */
    }
  },
  remove(key) {
    try {
      sessionStorage.removeItem(key);
    } catch {
      /* nothing kept */
    }
  },
};
