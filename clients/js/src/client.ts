/**
 * `createClient` and `PresenceClient`: the public face of a shared
 * connection. Clients for the same URL share one connection (and so one
 * socket and one server-side presence); each client keeps track of what it
 * took (channel handles, watches, listeners) so that `release()` gives back
 * exactly that. With `shareAcrossTabs` (the sharing module, `src/share/`) the
 * page's connection is carried by a link to the socket of the leader tab
 * instead of a socket of its own.
 */
import { ChannelHandle, releasedClient, type AnyHandle, type HandleOwner } from "./channel.js";
import { Connection, type ConnectionEvents } from "./connection.js";
import type { Listener, Off } from "./emitter.js";
import type { ConnectionState, TabSharing } from "./link/link.js";
import { resolveOptions, tabSharing, type ClientOptions } from "./options.js";
import type { Json, MemberData, MemberDataShape, PresenceEntry } from "./protocol.js";
import { defaultBroadcastChannel, defaultWindow } from "./runtime.js";
import type { OwnStatus } from "./state-sync.js";

/** Live connections of this page, one per URL. */
const connections = new Map<string, Connection>();
/**
 * Connections shared across tabs, one per URL and page. The page is the
 * `window` option (so that tests can play several tabs in one process).
 */
const sharedConnections = new WeakMap<object, Map<string, Connection>>();
const NO_WINDOW = {};

/**
 * Returns a client for `options.url`. The first client for a URL opens the
 * connection with its options; later ones share it (their other options are
 * ignored) until every client has been released or one logged out.
 * Throws a TypeError for an invalid `shareAcrossTabs` (such as `true`).
 */
export function createClient(options: ClientOptions): PresenceClient {
  const sharing = tabSharing(options.shareAcrossTabs);
  const registry = registryFor(options, sharing);
  let connection = registry.get(options.url);
  if (!connection) {
    const resolved = resolveOptions(options);
    const link = sharing && registry !== connections ? sharing.openLink(resolved) : null;
    connection = new Connection(
      resolved,
      (closed) => {
        if (registry.get(closed.options.url) === closed) registry.delete(closed.options.url);
      },
      link ? { link } : {},
    );
    registry.set(options.url, connection);
  }
  connection.acquire();
  return new PresenceClient(connection);
}

/** Where the page's connection for these options lives: shared across tabs only where a BroadcastChannel exists. */
function registryFor(options: ClientOptions, sharing: TabSharing | null): Map<string, Connection> {
  if (!sharing) return connections;
  const channel = options.BroadcastChannel === undefined ? defaultBroadcastChannel() : options.BroadcastChannel;
  if (!channel) return connections;
  const page = (options.window === undefined ? defaultWindow() : options.window) ?? NO_WINDOW;
  let registry = sharedConnections.get(page);
  if (!registry) {
    registry = new Map();
    sharedConnections.set(page, registry);
  }
  return registry;
}

export class PresenceClient implements HandleOwner {
  private readonly handles = new Set<AnyHandle>();
  /** Users this client watches, with how many times. */
  private readonly watched = new Map<string, number>();
  private readonly offs = new Set<Off>();
  private releasedValue = false;

  /** @internal Use `createClient`. */
  constructor(readonly connection: Connection) {}

  /** `connecting` (first attempt), `connected`, `reconnecting` or `disconnected` (logged out, kicked, released). */
  get state(): ConnectionState {
    return this.connection.state;
  }

  /** This connection's user id (null for a guest; undefined until the first `welcome`). */
  get user(): string | null | undefined {
    return this.connection.user;
  }

  /** Whether `release()` or `logout()` was called; a released client takes nothing any more. */
  get released(): boolean {
    return this.releasedValue;
  }

  /**
   * A new handle on a channel. Each handle is one reference; release it when
   * done. `D` types the members' data (an interface or type alias of a JSON
   * object; default `MemberData`), `M` the channel's messages (default `Json`).
   */
  channel<D extends MemberDataShape<D> = MemberData, M = Json>(name: string): ChannelHandle<D, M> {
    return new ChannelHandle<D, M>(this, name);
  }

  /** Watch users' statuses (reference-counted per user). Resolves once the server sent them. */
  watch(users: string[]): Promise<void> {
    if (this.releasedValue) return releasedClient();
    for (const user of users) this.watched.set(user, (this.watched.get(user) ?? 0) + 1);
    return this.connection.sync.watch(users);
  }

  /** Drops references taken with `watch`; the server is told after the release delay. */
  unwatch(users: string[]): void {
    const dropped = users.filter((user) => this.forgetWatch(user));
    void this.connection.sync.unwatch(dropped, this.connection.options.releaseDelayMs);
  }

  /** Last known status of a watched user. */
  status(user: string): PresenceEntry | undefined {
    return this.connection.status(user);
  }

  /** This connection's own status as asked for (automatic away included). */
  get ownStatus(): OwnStatus {
    return this.connection.sync.status;
  }

  /** Sets this connection's status; kept across reconnects. */
  setStatus(status: OwnStatus): Promise<void> {
    if (this.releasedValue) return releasedClient();
    return this.connection.setOwnStatus(status);
  }

  on<K extends keyof ConnectionEvents>(event: K, listener: Listener<ConnectionEvents[K]>): Off {
    if (this.releasedValue) return () => {};
    const off = this.connection.events.on(event, listener);
    const remove: Off = () => {
      if (this.offs.delete(remove)) off();
    };
    this.offs.add(remove);
    return remove;
  }

  /**
   * Logs out: sends `bye` (the user's presence on this connection ends at
   * once, with no grace) and closes the shared connection for every client
   * of this URL.
   */
  logout(): void {
    this.connection.logout();
    this.release();
  }

  /**
   * Gives back everything this client took (handles, watches, listeners) and
   * its share of the connection, which closes (without `bye`, so the server
   * keeps the user present for its grace window) once no client uses it.
   */
  release(): void {
    if (this.releasedValue) return;
    this.releasedValue = true;
    for (const handle of [...this.handles]) handle.release();
    const users = [...this.watched.entries()].flatMap(([user, count]) => Array<string>(count).fill(user));
    this.watched.clear();
    void this.connection.sync.unwatch(users, this.connection.options.releaseDelayMs);
    for (const off of [...this.offs]) off();
    this.connection.release();
  }

  /** @internal */
  track(handle: AnyHandle): void {
    this.handles.add(handle);
  }

  /** @internal */
  untrack(handle: AnyHandle): void {
    this.handles.delete(handle);
  }

  private forgetWatch(user: string): boolean {
    const count = this.watched.get(user);
    if (count === undefined) return false;
    if (count > 1) this.watched.set(user, count - 1);
    else this.watched.delete(user);
    return true;
  }

}
