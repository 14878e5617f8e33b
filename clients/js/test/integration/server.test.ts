/**
 * Against a running presenced server; skipped unless PRESENCED_URL is set:
 *
 *   presenced serve --jwt-secret dev-secret &
 *   PRESENCED_URL=ws://127.0.0.1:7400/v1/ws PRESENCED_JWT_SECRET=dev-secret npm test
 *
 * With PRESENCED_JWT_SECRET the tests mint HS256 tokens for their own users;
 * with PRESENCED_TOKEN instead, only the single-user tests run. With
 * PRESENCED_API_KEY too, the HTTP API's disconnect (close 4409) is tried.
 */
import { createHmac, randomUUID } from "node:crypto";
import WebSocket from "ws";
import { afterEach, describe, expect, it } from "vitest";
import {
  createClient,
  type ClientOptions,
  type ConnectionState,
  type LeaveEvent,
  type Member,
  type PresenceClient,
  type StorageLike,
  type WebSocketConstructor,
} from "../../src/index.js";

const url = process.env.PRESENCED_URL;
const secret = process.env.PRESENCED_JWT_SECRET;
const staticToken = process.env.PRESENCED_TOKEN;
const apiKey = process.env.PRESENCED_API_KEY;

if (!url) {
  console.info("integration tests skipped: set PRESENCED_URL (and PRESENCED_JWT_SECRET or PRESENCED_TOKEN) to run them");
}

function mint(user: string, claims: object = {}): string {
  const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const payload = { sub: user, exp: Math.floor(Date.now() / 1000) + 600, ...claims };
  const body = `${encode({ alg: "HS256", typ: "JWT" })}.${encode(payload)}`;
  return `${body}.${createHmac("sha256", secret!).update(body).digest("base64url")}`;
}

const clients: PresenceClient[] = [];
/** Every socket opened, so that a test can cut one like a network failure would. */
const sockets: WebSocket[] = [];
/** Every `welcome` received, newest last. */
const welcomes: Array<{ resumed: boolean; conn: string }> = [];
/** The frames each socket sent. */
const sentBy = new WeakMap<WebSocket, Array<{ t: string; channel?: string }>>();
class TrackedWebSocket extends WebSocket {
  constructor(address: string) {
    super(address);
    sockets.push(this);
    sentBy.set(this, []);
    this.on("message", (data) => {
      const frame = JSON.parse(String(data)) as { t: string; resumed: boolean; conn: string };
      if (frame.t === "welcome") welcomes.push(frame);
    });
  }

  override send(data: string): void {
    sentBy.get(this)!.push(JSON.parse(data) as { t: string; channel?: string });
    super.send(data);
  }
}
const lastWelcome = () => welcomes[welcomes.length - 1]!;

const uniqueUrl = (): string => `${url}${url!.includes("?") ? "&" : "?"}c=${randomUUID()}`;

/** A client on its own connection (a distinct URL, since clients of one URL share one). */
function connect(token: string, options: Partial<ClientOptions> = {}): PresenceClient {
  const client = createClient({
    url: uniqueUrl(),
    token,
    WebSocket: TrackedWebSocket as unknown as WebSocketConstructor,
    storage: null,
    window: null,
    document: null,
    releaseDelayMs: 0,
    backoff: { baseMs: 50 },
    ...options,
  });
  clients.push(client);
  return client;
}

class MemoryStorage implements StorageLike {
  private readonly items = new Map<string, string>();
  getItem = (key: string): string | null => this.items.get(key) ?? null;
  setItem = (key: string, value: string): void => void this.items.set(key, value);
  removeItem = (key: string): void => void this.items.delete(key);
}

function until<T>(read: () => T | undefined, what: string, timeoutMs = 5_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const poll = (): void => {
      const value = read();
      if (value !== undefined) resolve(value);
      else if (Date.now() - started > timeoutMs) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(poll, 10);
    };
    poll();
  });
}

const connected = (client: PresenceClient): Promise<ConnectionState> =>
  until(() => (client.state === "connected" ? client.state : undefined), "a welcome");

const users = (members: Member[]): string[] => members.map((m) => m.user).sort();

afterEach(() => {
  for (const client of clients.splice(0)) client.logout();
});

describe.skipIf(!url || !(secret || staticToken))("integration: one user", () => {
  const token = (): string => staticToken ?? mint(`it-${randomUUID()}`);

  it("connects and is welcomed", async () => {
    const client = connect(token());
    await connected(client);
    expect(typeof client.user).toBe("string");
  });

  it("enters a channel and sees itself as a member", async () => {
    const client = connect(token());
    const room = client.channel(`it:${randomUUID()}`);
    await room.enter({ name: "Me" });
    const members = await until(() => (room.members().length > 0 ? room.members() : undefined), "the snapshot");
    expect(members).toMatchObject([{ user: client.user, data: { name: "Me" } }]);
  });

  it("rejects bad requests with a typed error", async () => {
    const client = connect(token());
    await expect(client.channel("no spaces allowed").subscribe()).rejects.toMatchObject({ code: "bad_request" });
  });
});

describe.skipIf(!url || !secret)("integration: two users", () => {
  it("sees another user join, update and leave", async () => {
    const channel = `it:${randomUUID()}`;
    const alice = connect(mint(`alice-${randomUUID()}`));
    const bob = connect(mint(`bob-${randomUUID()}`));
    const view = alice.channel(channel);
    await view.subscribe();
    const theirs = bob.channel(channel);
    await theirs.enter({ typing: false });
    await until(() => (view.members().length === 1 ? true : undefined), "bob's join");
    await theirs.update({ typing: true });
    await until(() => (view.members()[0]?.data.typing === true ? true : undefined), "bob's update");
    await theirs.leave();
    await until(() => (view.members().length === 0 ? true : undefined), "bob's leave");
  });

  it("watches another user's status", async () => {
    const bobId = `bob-${randomUUID()}`;
    const alice = connect(mint(`alice-${randomUUID()}`));
    await alice.watch([bobId]);
    expect(alice.status(bobId)?.status).toBe("offline");
    const bob = connect(mint(bobId));
    await connected(bob);
    await until(() => (alice.status(bobId)?.status === "online" ? true : undefined), "bob online");
    bob.logout();
    await until(() => (alice.status(bobId)?.status === "offline" ? true : undefined), "bob offline after logout");
  });

  it("a second user's member map matches after a burst", async () => {
    const channel = `it:${randomUUID()}`;
    const watcher = connect(mint(`w-${randomUUID()}`));
    const view = watcher.channel(channel);
    await view.subscribe();
    const ids: string[] = [];
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        const id = `m-${randomUUID()}`;
        ids.push(id);
        await connect(mint(id)).channel(channel).enter();
      }),
    );
    await until(() => (view.members().length === 8 ? true : undefined), "eight members");
    expect(users(view.members())).toEqual(ids.sort());
  });

  it("a dropped socket resumes without anyone seeing a leave", async () => {
    const channel = `it:${randomUUID()}`;
    const watcher = connect(mint(`w-${randomUUID()}`));
    const view = watcher.channel(channel);
    const leaves: LeaveEvent[] = [];
    view.on("leave", (event) => leaves.push(event));
    await view.subscribe();
    const alice = connect(mint(`alice-${randomUUID()}`));
    await alice.channel(channel).enter({ name: "Alice" });
    await until(() => (view.members().length === 1 ? true : undefined), "alice's join");

    const first = lastWelcome();
    const states: ConnectionState[] = [];
    alice.on("state", (state) => states.push(state));
    sockets[sockets.length - 1]!.terminate();
    await until(() => (states.includes("connected") ? true : undefined), "alice's reconnect");
    expect(states[0]).toBe("reconnecting");
    expect(lastWelcome()).toMatchObject({ resumed: true, conn: first.conn });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(leaves).toEqual([]);
    expect(view.members()).toMatchObject([{ data: { name: "Alice" } }]);
  });

  it("a page reload inside the grace window resumes through the stored session", async () => {
    const channel = `it:${randomUUID()}`;
    const watcher = connect(mint(`w-${randomUUID()}`));
    const view = watcher.channel(channel);
    const leaves: LeaveEvent[] = [];
    view.on("leave", (event) => leaves.push(event));
    await view.subscribe();

    const storage = new MemoryStorage();
    const page = uniqueUrl();
    const token = mint(`alice-${randomUUID()}`);
    const before = connect(token, { url: page, storage });
    await before.channel(channel).enter({ name: "Alice" });
    await until(() => (view.members().length === 1 ? true : undefined), "alice's join");
    // The page goes away: its socket dies and its script stops, sending nothing more.
    before.on("state", (state) => {
      if (state === "reconnecting") before.release();
    });
    sockets[sockets.length - 1]!.terminate();
    await until(() => (before.state === "disconnected" ? true : undefined), "the old page to be gone");

    const first = lastWelcome();
    const after = connect(token, { url: page, storage });
    await connected(after);
    expect(lastWelcome()).toMatchObject({ resumed: true, conn: first.conn });
    // The restored connection keeps its membership without entering again.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(leaves).toEqual([]);
    expect(view.members()).toHaveLength(1);
  });
});

describe.skipIf(!url || !secret)("integration: rights rechecked", () => {
  /** Alice, whose token allows `secret:*` and `public:*` until `narrow()`, then only `public:*`. */
  function alice(life: number) {
    const id = `alice-${randomUUID()}`;
    let narrowed = false;
    const token = (): string => {
      const now = Math.floor(Date.now() / 1000);
      const channels = narrowed ? ["public:*"] : ["secret:*", "public:*"];
      return mint(id, { iat: now, exp: now + life, channels });
    };
    const page = uniqueUrl();
    const client = connect(token(), { token, url: page });
    /** Alice's current socket. */
    const socket = (): WebSocket => sockets.filter((ws) => ws.url === page).pop()!;
    return { id, client, socket, narrow: () => void (narrowed = true) };
  }

  /** Alice in a secret channel and a public one, seen by an observer. */
  async function inTwoChannels(a: ReturnType<typeof alice>) {
    const secretChannel = `secret:${randomUUID()}`;
    const publicChannel = `public:${randomUUID()}`;
    const observer = connect(mint(`obs-${randomUUID()}`)).channel(secretChannel);
    const leaves: LeaveEvent[] = [];
    observer.on("leave", (event) => leaves.push(event));
    await observer.subscribe();
    const room = a.client.channel(secretChannel);
    await room.enter({ name: "Alice" });
    const open = a.client.channel(publicChannel);
    await open.subscribe();
    await until(() => (observer.members().length === 1 ? true : undefined), "alice's join");
    const ended: Array<{ channel: string; reason: string }> = [];
    a.client.on("unsubscribed", (event) => ended.push(event));
    return { secretChannel, observer, leaves, room, open, ended };
  }

  it("a refresh whose token no longer allows a channel ends it, and the resume after a drop does not ask for it", async () => {
    // The client refreshes a token living 10 s after 5 s.
    const a = alice(10);
    const t = await inTwoChannels(a);
    a.narrow();
    await until(() => (t.ended.length > 0 ? true : undefined), "the refresh's unsubscribed", 10_000);
    expect(t.ended).toEqual([{ channel: t.secretChannel, reason: "forbidden" }]);
    expect(t.room.revoked).toBe("forbidden");
    expect(t.room.members()).toEqual([]);
    await until(() => (t.leaves.length > 0 ? true : undefined), "alice's leave");
    expect(t.leaves).toMatchObject([{ user: a.id, reason: "left" }]);

    const dropped = a.socket();
    const states: ConnectionState[] = [];
    a.client.on("state", (state) => states.push(state));
    dropped.terminate();
    await until(() => (states.includes("connected") ? true : undefined), "alice's reconnect");
    expect(a.socket()).not.toBe(dropped);
    expect(lastWelcome()).toMatchObject({ resumed: true });
    // A request's reply: whatever the reconnect sent went out before it.
    await t.open.publish({ hello: true });
    const sent = sentBy.get(a.socket())!;
    expect(sent.map((frame) => frame.t)).toEqual(["hello", "publish"]);
    expect([t.open.subscribed, t.room.subscribed, t.room.entered]).toEqual([true, false, false]);
  }, 20_000);

  it("a resume with a narrower token ends the channel right after the welcome; the others stay", async () => {
    const a = alice(600);
    const t = await inTwoChannels(a);
    a.narrow();
    a.socket().terminate();
    await until(() => (t.ended.length > 0 ? true : undefined), "the resume's unsubscribed");
    expect(lastWelcome()).toMatchObject({ resumed: true });
    expect(t.ended).toEqual([{ channel: t.secretChannel, reason: "forbidden" }]);
    expect(t.room.members()).toEqual([]);
    await until(() => (t.leaves.length > 0 ? true : undefined), "alice's leave");
    expect(t.leaves).toMatchObject([{ user: a.id, reason: "left" }]);
    expect([t.open.subscribed, t.open.revoked, t.room.revoked]).toEqual([true, null, "forbidden"]);
    await t.open.publish({ still: "here" });
  });
});

describe.skipIf(!url || !secret || !apiKey)("integration: HTTP API", () => {
  it("a user disconnected by the API is told it was kicked and does not reconnect", async () => {
    const id = `kick-${randomUUID()}`;
    const client = connect(mint(id));
    await connected(client);
    const kicked: unknown[] = [];
    client.on("kicked", (info) => kicked.push(info));
    const base = new URL(url!);
    base.protocol = base.protocol === "wss:" ? "https:" : "http:";
    const response = await fetch(new URL(`/v1/users/${encodeURIComponent(id)}/disconnect`, base), {
      method: "POST",
      headers: { authorization: `Bearer ${apiKey}` },
    });
    expect(response.ok).toBe(true);
    await until(() => (kicked.length > 0 ? true : undefined), "the kick");
    expect(kicked).toMatchObject([{ code: 4409 }]);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(client.state).toBe("disconnected");
  });
});
