/**
 * The messages tabs exchange over their BroadcastChannel with
 * `shareAcrossTabs` (one channel per server URL). Every message names its
 * sender (`from`, a random id per tab and connection); `to`, when present,
 * names the recipients and everyone else ignores it.
 *
 * - Election: `discover` (who leads?), `leader` (I lead, in `term`),
 *   `resign` (I stop leading), `claim` (heartbeat election only).
 * - Tab to leader: `attach` (open a virtual connection), `req` (a request
 *   frame on that virtual connection `conn`), `detach`, `alive` (heartbeat
 *   election only).
 * - Leader to tabs: `welcome` (the virtual connection is up), `frame` (a
 *   server frame or a reply), `lost` (the real connection dropped; a new
 *   `welcome` follows), `reset` (unknown tab: attach again), `error` and
 *   `kicked` (from the real connection).
 * - Anyone: `logout` (every tab ends its presence).
 *
 * Also the names of the channel and the locks, and small helpers.
 */
import type { ErrorCode, OutgoingFrame, ServerFrame } from "../protocol.js";

export const MESSAGE_VERSION = 1;

export type TabMessageBody =
  | { kind: "discover" }
  | { kind: "leader"; term: number }
  | { kind: "claim"; term: number }
  | { kind: "resign" }
  | { kind: "logout" }
  | { kind: "attach"; to: string }
  | { kind: "detach"; to: string }
  | { kind: "alive"; to: string }
  | { kind: "req"; to: string; conn: string; frame: OutgoingFrame }
  | { kind: "welcome"; to: string; conn: string; user: string | null; resumed: boolean; grace_ms: number }
  | { kind: "frame"; to: string[]; frame: ServerFrame }
  | { kind: "lost" }
  | { kind: "reset"; to: string }
  | { kind: "error"; code: ErrorCode; message: string }
  | { kind: "kicked"; code: number; reason: string };

export type TabMessage = TabMessageBody & { v: typeof MESSAGE_VERSION; from: string };

export type MessageOf<K extends TabMessage["kind"]> = Extract<TabMessage, { kind: K }>;

export function isTabMessage(data: unknown): data is TabMessage {
  if (typeof data !== "object" || data === null) return false;
  const message = data as { v?: unknown; kind?: unknown; from?: unknown };
  return message.v === MESSAGE_VERSION && typeof message.kind === "string" && typeof message.from === "string";
}

/** Whether a message is meant for `id` (messages without `to` are for everyone). */
export function isFor(message: object, id: string): boolean {
  const { to } = message as { to?: string | string[] };
  if (to === undefined) return true;
  return typeof to === "string" ? to === id : to.includes(id);
}

/** Whether a message has recipients other than `id`. */
export function isForOthers(message: object, id: string): boolean {
  const { to } = message as { to?: string | string[] };
  if (to === undefined) return true;
  return typeof to === "string" ? to !== id : to.some((recipient) => recipient !== id);
}

export function channelName(url: string): string {
  return `presenced:tabs:${url}`;
}

export function leaderLockName(url: string): string {
  return `presenced:leader:${url}`;
}

/** Held by every tab while it takes part; granted to the leader once the tab is gone. */
export function tabLockName(url: string, tab: string): string {
  return `presenced:tab:${url}:${tab}`;
}

let counter = 0;

/** A random id for a tab's part in sharing (not security sensitive). */
export function randomId(): string {
  const crypto = (globalThis as { crypto?: { getRandomValues?<T extends Uint8Array>(array: T): T } }).crypto;
  let random = "";
  if (crypto && typeof crypto.getRandomValues === "function") {
    random = Array.from(crypto.getRandomValues(new Uint8Array(9)), (b) => b.toString(16).padStart(2, "0")).join("");
  } else {
    random = Math.random().toString(36).slice(2) + Math.random().toString(36).slice(2);
  }
  counter += 1;
  return `${random}-${counter.toString(36)}`;
}

/** A copy as a BroadcastChannel would deliver it, for messages a tab sends to itself. */
export function cloneMessage<T>(message: T): T {
  const clone = (globalThis as { structuredClone?: <V>(value: V) => V }).structuredClone;
  return typeof clone === "function" ? clone(message) : (JSON.parse(JSON.stringify(message)) as T);
}

/** An AbortController where the host has one. */
export function abortController(): AbortController | null {
  return typeof AbortController === "function" ? new AbortController() : null;
}

/** Without Web Locks, how often followers tell the leader they are alive. */
export const ALIVE_MS = 1_000;
