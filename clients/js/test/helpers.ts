/**
 * Test doubles: a scriptable fake WebSocket (the test plays the server), a
 * page-like event source, and a factory for clients wired to them.
 */
import { createClient, type ClientOptions, type PresenceClient } from "../src/index.js";
import type { WebSocketLike } from "../src/runtime.js";

export type SentFrame = { t: string; id?: number; [field: string]: unknown };

export class FakeWebSocket implements WebSocketLike {
  readyState = 0;
  readonly sent: SentFrame[] = [];
  closedByClient: { code?: number; reason?: string } | null = null;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  private readonly answered = new Set<number>();

  constructor(readonly url: string) {}

  send(data: string): void {
    if (this.readyState !== 1) throw new Error("socket not open");
    this.sent.push(JSON.parse(data) as SentFrame);
  }

  close(code?: number, reason?: string): void {
    this.readyState = 3;
    this.closedByClient = { code, reason };
  }

  // ---- the server's side

  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }

  receive(frame: object): void {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }

  /** Opens the socket and answers the hello with a welcome. */
  welcome(overrides: Record<string, unknown> = {}): void {
    if (this.readyState === 0) this.open();
    this.receive({
      t: "welcome",
      conn: "c1",
      user: "alice",
      session: "session-1",
      resumed: false,
      heartbeat_ms: 3_600_000,
      grace_ms: 15_000,
      ...overrides,
    });
  }

  serverClose(code: number, reason = ""): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }

  /** Frames sent, without the hello, optionally of one type. */
  frames(t?: string): SentFrame[] {
    return this.sent.filter((f) => f.t !== "hello" && (t === undefined || f.t === t));
  }

  /** Frames sent, as `t` or `t:channel` strings, for compact assertions. */
  summary(): string[] {
    return this.frames()
      .filter((f) => f.t !== "ping")
      .map((f) => (typeof f.channel === "string" ? `${f.t}:${f.channel}` : f.t));
  }

  hello(): SentFrame | undefined {
    return this.sent.find((f) => f.t === "hello");
  }

  /** Answers `ok` to every request not answered yet (optionally only those of one type). */
  okAll(t?: string): void {
    for (const frame of this.sent) {
      if (frame.id === undefined || this.answered.has(frame.id)) continue;
      if (t !== undefined && frame.t !== t) continue;
      this.reply(frame, { t: "ok" });
    }
  }

  reply(frame: SentFrame, answer: Record<string, unknown>): void {
    this.answered.add(frame.id!);
    this.receive({ ...answer, id: frame.id });
  }
}

/** A page-like event source (`window`, `document`). */
export class FakeEventSource {
  visibilityState = "visible";
  private readonly listeners = new Map<string, Set<() => void>>();

  addEventListener(type: string, listener: () => void): void {
    const set = this.listeners.get(type) ?? new Set();
    set.add(listener);
    this.listeners.set(type, set);
  }

  removeEventListener(type: string, listener: () => void): void {
    this.listeners.get(type)?.delete(listener);
  }

  dispatch(type: string): void {
    for (const listener of [...(this.listeners.get(type) ?? [])]) listener();
  }

  count(type: string): number {
    return this.listeners.get(type)?.size ?? 0;
  }
}

let urls = 0;

export interface Harness {
  url: string;
  client: PresenceClient;
  sockets: FakeWebSocket[];
  /** The latest socket. */
  readonly ws: FakeWebSocket;
  WebSocket: new (url: string) => FakeWebSocket;
  /** Another client of the same URL (shares the connection). */
  another(): PresenceClient;
}

/** A client on a fresh URL with a fake socket; the page and storage are off unless given. */
export function setup(overrides: Partial<ClientOptions> = {}): Harness {
  const url = overrides.url ?? `ws://presence.test/${++urls}/v1/ws`;
  const sockets: FakeWebSocket[] = [];
  class WebSocket extends FakeWebSocket {
    constructor(u: string) {
      super(u);
      sockets.push(this);
    }
  }
  const options: ClientOptions = {
    token: "token-1",
    WebSocket,
    storage: null,
    window: null,
    document: null,
    random: () => 0.5,
    ...overrides,
    url,
  };
  const client = createClient(options);
  return {
    url,
    client,
    sockets,
    get ws() {
      const ws = sockets[sockets.length - 1];
      if (!ws) throw new Error("no socket was opened");
      return ws;
    },
    WebSocket,
    another: () => createClient(options),
  };
}

/** Lets pending promise callbacks run. */
export async function flush(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

export function member(user: string, data: Record<string, unknown> = {}): object {
  return { user, data, conns: 1, since: "2024-01-01T00:00:00Z" };
}
