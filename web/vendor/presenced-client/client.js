/**
 * `createClient` and `PresenceClient`: the public face of a shared
 * connection. Clients for the same URL share one connection (and so one
 * socket and one server-side presence); each client keeps track of what it
 * took (channel handles, watches, listeners) so that `release()` gives back
 * exactly that. With `shareAcrossTabs` (the sharing module, `src/share/`) the
 * page's connection is carried by a link to the socket of the leader tab
 * instead of a socket of its own.
 */
import { ChannelHandle, releasedClient } from "./channel.js";
import { Connection } from "./connection.js";
import { resolveOptions, tabSharing } from "./options.js";
import { defaultBroadcastChannel, defaultWindow } from "./runtime.js";
/** Live connections of this page, one per URL. */
const connections = new Map();
/**
 * Connections shared across tabs, one per URL and page. The page is the
 * `window` option (so that tests can play several tabs in one process).
 */
const sharedConnections = new WeakMap();
const NO_WINDOW = {};
/**
 * Returns a client for `options.url`. The first client for a URL opens the
 * connection with its options; later ones share it (their other options are
 * ignored) until every client has been released or one logged out.
 * Throws a TypeError for an invalid `shareAcrossTabs` (such as `true`).
 */
export function createClient(options) {
    const sharing = tabSharing(options.shareAcrossTabs);
    const registry = registryFor(options, sharing);
    let connection = registry.get(options.url);
    if (!connection) {
        const resolved = resolveOptions(options);
        const link = sharing && registry !== connections ? sharing.openLink(resolved) : null;
        connection = new Connection(resolved, (closed) => {
            if (registry.get(closed.options.url) === closed)
                registry.delete(closed.options.url);
        }, link ? { link } : {});
        registry.set(options.url, connection);
    }
    connection.acquire();
    return new PresenceClient(connection);
}
/** Where the page's connection for these options lives: shared across tabs only where a BroadcastChannel exists. */
function registryFor(options, sharing) {
    if (!sharing)
        return connections;
    const channel = options.BroadcastChannel === undefined ? defaultBroadcastChannel() : options.BroadcastChannel;
    if (!channel)
        return connections;
    const page = (options.window === undefined ? defaultWindow() : options.window) ?? NO_WINDOW;
    let registry = sharedConnections.get(page);
    if (!registry) {
        registry = new Map();
        sharedConnections.set(page, registry);
    }
    return registry;
}
export class PresenceClient {
    /** @internal Use `createClient`. */
    constructor(connection) {
        this.connection = connection;
        this.handles = new Set();
        /** Users this client watches, with how many times. */
        this.watched = new Map();
        this.offs = new Set();
        this.releasedValue = false;
    }
    /** `connecting` (first attempt), `connected`, `reconnecting` or `disconnected` (logged out, kicked, released). */
    get state() {
        return this.connection.state;
    }
    /** This connection's user id (null for a guest; undefined until the first `welcome`). */
    get user() {
        return this.connection.user;
    }
    /** Whether `release()` or `logout()` was called; a released client takes nothing any more. */
    get released() {
        return this.releasedValue;
    }
    /**
     * A new handle on a channel. Each handle is one reference; release it when
     * done. `D` types the members' data (an interface or type alias of a JSON
     * object; default `MemberData`), `M` the channel's messages (default `Json`).
     */
    channel(name) {
        return new ChannelHandle(this, name);
    }
    /** Watch users' statuses (reference-counted per user). Resolves once the server sent them. */
    watch(users) {
        if (this.releasedValue)
            return releasedClient();
        for (const user of users)
            this.watched.set(user, (this.watched.get(user) ?? 0) + 1);
        return this.connection.sync.watch(users);
    }
    /** Drops references taken with `watch`; the server is told after the release delay. */
    unwatch(users) {
        const dropped = users.filter((user) => this.forgetWatch(user));
        void this.connection.sync.unwatch(dropped, this.connection.options.releaseDelayMs);
    }
    /** Last known status of a watched user. */
    status(user) {
        return this.connection.status(user);
    }
    /** This connection's own status as asked for (automatic away included). */
    get ownStatus() {
        return this.connection.sync.status;
    }
    /** Sets this connection's status; kept across reconnects. */
    setStatus(status) {
        if (this.releasedValue)
            return releasedClient();
        return this.connection.setOwnStatus(status);
    }
    on(event, listener) {
        if (this.releasedValue)
            return () => { };
        const off = this.connection.events.on(event, listener);
        const remove = () => {
            if (this.offs.delete(remove))
                off();
        };
        this.offs.add(remove);
        return remove;
    }
    /**
     * Logs out: sends `bye` (the user's presence on this connection ends at
     * once, with no grace) and closes the shared connection for every client
     * of this URL.
     */
    logout() {
        this.connection.logout();
        this.release();
    }
    /**
     * Gives back everything this client took (handles, watches, listeners) and
     * its share of the connection, which closes (without `bye`, so the server
     * keeps the user present for its grace window) once no client uses it.
     */
    release() {
        if (this.releasedValue)
            return;
        this.releasedValue = true;
        for (const handle of [...this.handles])
            handle.release();
        const users = [...this.watched.entries()].flatMap(([user, count]) => Array(count).fill(user));
        this.watched.clear();
        void this.connection.sync.unwatch(users, this.connection.options.releaseDelayMs);
        for (const off of [...this.offs])
            off();
        this.connection.release();
    }
    /** @internal */
    track(handle) {
        this.handles.add(handle);
    }
    /** @internal */
    untrack(handle) {
        this.handles.delete(handle);
    }
    forgetWatch(user) {
        const count = this.watched.get(user);
        if (count === undefined)
            return false;
        if (count > 1)
            this.watched.set(user, count - 1);
        else
            this.watched.delete(user);
        return true;
    }
}
