/**
 * Test doubles for `shareAcrossTabs`: a fake browser with an in-memory
 * BroadcastChannel and Web Locks, and tabs (each with its own window,
 * document and clock) whose clients share the browser's fake sockets. A tab
 * can crash: its timers stop, its channels go silent and its locks are
 * released, as when the browser kills it.
 */
import { createClient, type ClientOptions, type PresenceClient } from "../src/index.js";
import type { BroadcastChannelLike, Clock, LockManagerLike } from "../src/runtime.js";
import { shareAcrossTabs } from "../src/share/index.js";
import { FakeEventSource, FakeWebSocket } from "./helpers.js";

class FakeChannel implements BroadcastChannelLike {
  onmessage: ((event: { data: unknown }) => void) | null = null;
  closed = false;

  constructor(
    private readonly browser: FakeBrowser,
    readonly tab: FakeTab,
    readonly name: string,
  ) {
    browser.channels.add(this);
  }

  postMessage(message: unknown): void {
    if (this.closed) throw new Error("InvalidStateError: channel closed");
    const data = structuredClone(message);
    this.browser.posted.push(data);
    for (const other of this.browser.channels) {
      if (other === this || other.name !== this.name || other.closed) continue;
      queueMicrotask(() => {
        if (!other.closed) other.onmessage?.({ data: structuredClone(data) });
      });
    }
  }

  close(): void {
    this.closed = true;
    this.browser.channels.delete(this);
  }
}

interface Waiter {
  name: string;
  owner: FakeTab;
  callback: (lock: unknown) => Promise<void> | void;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

class FakeLocks {
  readonly held = new Map<string, Waiter>();
  private readonly queues = new Map<string, Waiter[]>();

  request(
    owner: FakeTab,
    name: string,
    options: { signal?: AbortSignal },
    callback: (lock: unknown) => Promise<void> | void,
  ): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { name, owner, callback, resolve, reject };
      const { signal } = options;
      if (signal?.aborted) {
        reject(new Error("AbortError"));
        return;
      }
      signal?.addEventListener("abort", () => {
        const queue = this.queues.get(name) ?? [];
        const at = queue.indexOf(waiter);
        if (at >= 0) {
          queue.splice(at, 1);
          reject(new Error("AbortError"));
        }
      });
      const queue = this.queues.get(name) ?? [];
      queue.push(waiter);
      this.queues.set(name, queue);
      queueMicrotask(() => this.grant(name));
    });
  }

  /** Releases every lock of a crashed tab and forgets its requests. */
  crash(owner: FakeTab): void {
    for (const [name, queue] of this.queues) {
      this.queues.set(
        name,
        queue.filter((w) => w.owner !== owner),
      );
    }
    for (const [name, waiter] of [...this.held]) {
      if (waiter.owner === owner) {
        this.held.delete(name);
        queueMicrotask(() => this.grant(name));
      }
    }
  }

  holder(name: string): FakeTab | undefined {
    return this.held.get(name)?.owner;
  }

  private grant(name: string): void {
    if (this.held.has(name)) return;
    const waiter = this.queues.get(name)?.shift();
    if (!waiter) return;
    this.held.set(name, waiter);
    const release = (): void => {
      if (this.held.get(name) !== waiter) return;
      this.held.delete(name);
      this.grant(name);
    };
    Promise.resolve()
      .then(() => waiter.callback({ name }))
      .then(
        (value) => {
          release();
          waiter.resolve(value);
        },
        (error: unknown) => {
          release();
          waiter.reject(error);
        },
      );
  }
}

let browsers = 0;

export class FakeBrowser {
  readonly channels = new Set<FakeChannel>();
  /** Every message posted on any channel, for assertions. */
  readonly posted: unknown[] = [];
  readonly locks = new FakeLocks();
  /** Sockets opened by any tab, in order: the server's view. */
  readonly sockets: FakeWebSocket[] = [];
  readonly url = `ws://tabs.test/${++browsers}/v1/ws`;
  readonly tabs: FakeTab[] = [];
  readonly WebSocket: new (url: string) => FakeWebSocket;

  constructor(readonly defaults: Partial<ClientOptions> = {}) {
    const sockets = this.sockets;
    this.WebSocket = class extends FakeWebSocket {
      constructor(u: string) {
        super(u);
        sockets.push(this);
      }
    };
  }

  /** The latest socket. */
  get ws(): FakeWebSocket {
    const ws = this.sockets[this.sockets.length - 1];
    if (!ws) throw new Error("no socket was opened");
    return ws;
  }

  /** Open (not closed by the client nor by the server) sockets. */
  openSockets(): FakeWebSocket[] {
    return this.sockets.filter((ws) => ws.readyState < 2);
  }

  tab(overrides: Partial<ClientOptions> = {}): FakeTab {
    const tab = new FakeTab(this, overrides);
    this.tabs.push(tab);
    return tab;
  }
}

export class FakeTab {
  readonly window = new FakeEventSource();
  readonly document = new FakeEventSource();
  frozen = false;
  readonly clock: Clock;
  readonly BroadcastChannel: new (name: string) => BroadcastChannelLike;
  readonly locks: LockManagerLike;
  /** Sockets this tab opened. */
  readonly sockets: FakeWebSocket[] = [];
  readonly WebSocket: new (url: string) => FakeWebSocket;
  private readonly channels: FakeChannel[] = [];

  constructor(
    readonly browser: FakeBrowser,
    private readonly overrides: Partial<ClientOptions>,
  ) {
    const tab = this;
    this.clock = {
      now: () => Date.now(),
      setTimeout: (callback, ms) =>
        setTimeout(() => {
          if (!tab.frozen) callback();
        }, ms),
      clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
    };
    this.BroadcastChannel = class extends FakeChannel {
      constructor(name: string) {
        super(browser, tab, name);
        tab.channels.push(this);
      }
    };
    this.locks = {
      request: (name, options, callback) => browser.locks.request(tab, name, options, callback),
    };
    this.WebSocket = class extends browser.WebSocket {
      constructor(u: string) {
        super(u);
        tab.sockets.push(this);
      }
    };
  }

  options(extra: Partial<ClientOptions> = {}): ClientOptions {
    return {
      url: this.browser.url,
      token: "token-1",
      WebSocket: this.WebSocket,
      storage: null,
      window: this.window,
      document: this.document,
      random: () => 0.5,
      clock: this.clock,
      shareAcrossTabs,
      BroadcastChannel: this.BroadcastChannel,
      locks: this.locks,
      ...this.browser.defaults,
      ...this.overrides,
      ...extra,
    };
  }

  client(extra: Partial<ClientOptions> = {}): PresenceClient {
    return createClient(this.options(extra));
  }

  /** The browser kills the tab: no more timers, messages or locks. Its socket, if any, is dead too. */
  crash(): void {
    this.frozen = true;
    for (const channel of this.channels) channel.closed = true;
    this.browser.locks.crash(this);
    for (const ws of this.sockets) ws.readyState = 3;
  }

  hide(): void {
    this.document.visibilityState = "hidden";
    this.document.dispatch("visibilitychange");
  }

  show(): void {
    this.document.visibilityState = "visible";
    this.document.dispatch("visibilitychange");
  }
}

/** Lets every pending message, lock grant and promise callback run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 400; i++) await Promise.resolve();
}
