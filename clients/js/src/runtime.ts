/**
 * Everything the client takes from its environment, behind small interfaces so
 * that tests (or non-browser hosts) can supply their own: the WebSocket
 * constructor, timers and clock, randomness, storage, the page's events, and
 * for `shareAcrossTabs` the BroadcastChannel and Web Locks.
 */

/** The part of the WebSocket API the client uses (browsers and the `ws` package both fit). */
/**
 * An event handler property of a WebSocket. Checked bivariantly (as methods
 * are), so that implementations whose handlers take a richer event (the DOM's
 * `MessageEvent`, the `ws` package's `WebSocket.MessageEvent`) fit.
 */
type Handler<E> = { bivarianceHack(event: E): void }["bivarianceHack"] | null;

export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: Handler<unknown>;
  onmessage: Handler<{ data: unknown }>;
  onclose: Handler<{ code: number; reason: string }>;
  onerror: Handler<unknown>;
}

/** A WebSocket constructor: the browser's, Node's, or the `ws` package's. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export type TimerHandle = unknown;

export interface Clock {
  now(): number;
  setTimeout(callback: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

/** The subset of the Web Storage API used to keep the resume token. */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** An event source such as `window` (for `online`) or `document` (for `visibilitychange`). */
export interface EventSourceLike {
  addEventListener(type: string, listener: () => void): void;
  removeEventListener(type: string, listener: () => void): void;
}

export interface DocumentLike extends EventSourceLike {
  readonly visibilityState: string;
}

/** The part of the BroadcastChannel API the client uses (`shareAcrossTabs`). */
export interface BroadcastChannelLike {
  onmessage: ((event: { data: unknown }) => void) | null;
  postMessage(message: unknown): void;
  close(): void;
}

export type BroadcastChannelConstructor = new (name: string) => BroadcastChannelLike;

/** The part of the Web Locks API (`navigator.locks`) the client uses (`shareAcrossTabs`). */
export interface LockManagerLike {
  /**
   * Calls `callback` once the exclusive lock `name` is granted and holds it
   * until the promise the callback returns settles. An aborted `signal`
   * withdraws a request not granted yet (the returned promise then rejects).
   */
  request(
    name: string,
    options: { signal?: AbortSignal },
    callback: (lock: unknown) => Promise<void> | void,
  ): Promise<unknown>;
}

/** Timers and clock of the host, looked up at call time so that test fakes installed later apply. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => globalThis.setTimeout(callback, ms),
  clearTimeout: (handle) => globalThis.clearTimeout(handle as ReturnType<typeof setTimeout>),
};

export function defaultWebSocket(): WebSocketConstructor | undefined {
  return (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
}

/** `sessionStorage` when the host has a usable one (absent in Node, may throw in sandboxed frames). */
export function defaultSessionStorage(): StorageLike | null {
  try {
    const storage = (globalThis as { sessionStorage?: StorageLike }).sessionStorage;
    if (!storage) return null;
    const probe = "presenced:probe";
    storage.setItem(probe, "1");
    storage.removeItem(probe);
    return storage;
  } catch {
    return null;
  }
}

export function defaultWindow(): EventSourceLike | null {
  const win = (globalThis as { window?: EventSourceLike }).window;
  return win && typeof win.addEventListener === "function" ? win : null;
}

export function defaultDocument(): DocumentLike | null {
  const doc = (globalThis as { document?: DocumentLike }).document;
  return doc && typeof doc.addEventListener === "function" ? doc : null;
}

/**
 * The host's BroadcastChannel in a browser page or worker. Node has one too,
 * but no tabs to share with (and an open channel keeps the process alive).
 */
export function defaultBroadcastChannel(): BroadcastChannelConstructor | null {
  const host = globalThis as {
    BroadcastChannel?: BroadcastChannelConstructor;
    document?: unknown;
    WorkerGlobalScope?: unknown;
  };
  if (typeof host.BroadcastChannel !== "function") return null;
  if (host.document === undefined && host.WorkerGlobalScope === undefined) return null;
  return host.BroadcastChannel;
}

/** `navigator.locks` when the host has Web Locks. */
export function defaultLocks(): LockManagerLike | null {
  const locks = (globalThis as { navigator?: { locks?: LockManagerLike } }).navigator?.locks;
  return locks && typeof locks.request === "function" ? locks : null;
}

/** Subscribes to an event on an optional source and returns the unsubscribe function. */
export function listen(source: EventSourceLike | null, type: string, listener: () => void): () => void {
  if (!source) return () => {};
  source.addEventListener(type, listener);
  return () => source.removeEventListener(type, listener);
}

/** A single-shot timer that can be re-armed and cancelled. */
export class Timer {
  private handle: TimerHandle | undefined;

  constructor(private readonly clock: Clock) {}

  get pending(): boolean {
    return this.handle !== undefined;
  }

  start(ms: number, callback: () => void): void {
    this.cancel();
    this.handle = this.clock.setTimeout(() => {
      this.handle = undefined;
      callback();
    }, Math.max(0, ms));
  }

  cancel(): void {
    if (this.handle !== undefined) {
      this.clock.clearTimeout(this.handle);
      this.handle = undefined;
    }
  }
}
