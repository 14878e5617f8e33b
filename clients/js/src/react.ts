/**
 * React bindings: a provider that owns a client, and hooks that read the
 * client's state through `useSyncExternalStore`. Every reference a hook takes
 * is released with the client's release delay, so StrictMode's double
 * effects and Fast Refresh remounts never send unsubscribe, leave or unwatch.
 */
import {
  createContext,
  createElement,
  useCallback,
  useContext,
  useEffect,
  useMemo,
  useRef,
  useState,
  useSyncExternalStore,
  type ReactElement,
  type ReactNode,
} from "react";
import { revokedError, type ChannelHandle } from "./channel.js";
import type { MessageEvent } from "./channel-view.js";
import type { PresenceError } from "./errors.js";
import type { OwnStatus } from "./state-sync.js";
import { createClient, type PresenceClient } from "./client.js";
import type { Off } from "./emitter.js";
import type { ClientOptions } from "./options.js";
import type { Json, Member, MemberData, MemberDataShape, Occupancy, PresenceEntry } from "./protocol.js";
import type { TokenProvider, TokenSource } from "./token.js";
import type { ConnectionState } from "./link/link.js";

const PresenceContext = createContext<PresenceClient | null>(null);

export interface PresenceProviderProps {
  /** Server WebSocket URL. Ignored when `client` is given. */
  url?: string;
  /** JWT, token provider, or null for a guest. Ignored when `client` is given. */
  token?: TokenSource;
  /** Other client options, read when the client is created. */
  options?: Omit<ClientOptions, "url" | "token">;
  /** Use a client created elsewhere instead; the provider then never releases it. */
  client?: PresenceClient;
  children?: ReactNode;
}

/** The client a provider created, with how many of its effects hold it. */
interface OwnClient {
  key: unknown[];
  client: PresenceClient;
  holders: number;
  held: boolean;
  /** Released by the provider (not by the application's `logout()`/`release()`, which a new client must not undo). */
  dropped: boolean;
}

/**
 * Makes a client available to the hooks below. With `url` and `token` it
 * creates the client in its first render (so that `useClient()` has it at
 * once), except where there is no `window` (server rendering; React in Node
 * gets it after mounting), and releases it on unmount (or when
 * `url`, the static token, or the token's kind changes). A provider token
 * function may change identity on every render: the latest one is called.
 */
export function PresenceProvider(props: PresenceProviderProps): ReactElement {
  const { url, token, client: given, children } = props;
  const tokenRef = useRef(token);
  tokenRef.current = token;
  const optionsRef = useRef(props.options);
  optionsRef.current = props.options;
  const own = useRef<OwnClient | null>(null);
  const [, rerender] = useState(0);
  const tokenKey = typeof token === "function" ? tokenProviderKey : (token ?? null);
  const key = [url, tokenKey];

  const wanted = !given && url !== undefined;
  // Without a window (server rendering, but also React in Node) the client is made by the effect below.
  const [effectsRun, setEffectsRun] = useState(false);
  let slot: OwnClient | null = null;
  if (wanted && (effectsRun || !onServer())) {
    slot = own.current;
    if (!slot || slot.dropped || !sameKey(slot.key, key)) {
      const source: TokenSource =
        tokenKey === tokenProviderKey ? () => (tokenRef.current as TokenProvider)() : (tokenKey as string | null);
      slot = { key, client: createClient({ ...optionsRef.current, url, token: source }), holders: 0, held: false, dropped: false };
      own.current = slot;
      releaseIfNeverHeld(slot);
    }
  }

  useEffect(() => {
    if (wanted && !slot) setEffectsRun(true);
  }, [wanted, slot]);

  useEffect(() => {
    if (!slot) return;
    if (slot.dropped) {
      // Held too late (see releaseIfNeverHeld): render again for a fresh client.
      rerender((n) => n + 1);
      return;
    }
    slot.holders += 1;
    slot.held = true;
    return () => {
      slot.holders -= 1;
      // StrictMode runs the cleanup and the effect again at once: release only if nothing took it back.
      slot.client.connection.options.clock.setTimeout(() => {
        if (slot.holders === 0) drop(slot);
      }, 0);
    };
  }, [slot]);

  return createElement(PresenceContext.Provider, { value: given ?? slot?.client ?? null }, children);
}

const tokenProviderKey = Symbol("token provider");

function sameKey(a: unknown[], b: unknown[]): boolean {
  return a.length === b.length && a.every((value, i) => value === b[i]);
}

/** Server rendering: a client there would open a socket for a page that is never shown. */
function onServer(): boolean {
  return typeof window === "undefined";
}

/**
 * A client created in a render that React threw away (StrictMode's double
 * render in React 18, an interrupted concurrent render) is never held by an
 * effect: release it after the release delay. An effect that comes later
 * still finds it released and renders again.
 */
function releaseIfNeverHeld(slot: OwnClient): void {
  const { clock, releaseDelayMs } = slot.client.connection.options;
  clock.setTimeout(() => {
    if (!slot.held) drop(slot);
  }, Math.max(releaseDelayMs, 1_000));
}

function drop(slot: OwnClient): void {
  slot.dropped = true;
  slot.client.release();
}

/**
 * The provider's client; null outside a provider and during server
 * rendering. Inside a provider (in the browser) it is there from the first
 * render.
 */
export function usePresenceClient(): PresenceClient | null {
  return useContext(PresenceContext);
}

/**
 * The provider's client, never null: throws outside a `PresenceProvider` and
 * during server rendering (where there is no client; use
 * `usePresenceClient()` in components that render on the server).
 */
export function useClient(): PresenceClient {
  const client = useContext(PresenceContext);
  if (!client) {
    throw new Error(
      onServer()
        ? "presenced: no client during server rendering; use usePresenceClient() where it may be null"
        : "presenced: useClient() must be called inside a <PresenceProvider>",
    );
  }
  return client;
}

const noop: Off = () => {};
const NO_MEMBERS: Member[] = [];
const NO_STATUSES: Record<string, PresenceEntry> = Object.freeze({}) as Record<string, PresenceEntry>;

/** The connection state; `connecting` until the provider's client exists. */
export function useConnectionState(): ConnectionState {
  const client = usePresenceClient();
  const subscribe = useCallback((onChange: () => void) => client?.on("state", onChange) ?? noop, [client]);
  const read = (): ConnectionState => client?.state ?? "connecting";
  return useSyncExternalStore(subscribe, read, read);
}

/**
 * Members of a channel. With `data` the current user enters the channel with
 * that data (and updates it when `data` changes, compared by value);
 * without, it only subscribes. `D` types the members' data (an interface or
 * type alias of a JSON object). A channel the server takes away
 * (`unsubscribed`) shows no members and is not entered again on new data
 * until the hook mounts anew (another channel, client or key).
 */
export function useChannelMembers<D extends MemberDataShape<D> = MemberData>(channel: string, data?: D): Member<D>[] {
  const client = usePresenceClient();
  const entering = data !== undefined;
  const dataRef = useRef(data);
  dataRef.current = data;
  const held = useRef<ChannelHandle<D> | null>(null);

  useEffect(() => {
    if (!client) return;
    const handle = client.channel<D>(channel);
    held.current = handle;
    void (entering ? handle.enter(dataRef.current) : handle.subscribe());
    return () => {
      if (held.current === handle) held.current = null;
      handle.release();
    };
  }, [client, channel, entering]);

  const dataKey = entering ? JSON.stringify(data) : undefined;
  useEffect(() => {
    // Same data as the server has sends nothing, so the first run is free.
    const handle = held.current;
    if (handle && !handle.revoked && dataRef.current !== undefined) void handle.enter(dataRef.current);
  }, [dataKey]);

  return useChannelValue(client, channel, "members", (handle) => handle.members(), NO_MEMBERS) as Member<D>[];
}

/** Occupancy of a channel (subscribes with `occupancy: true`); null until the first update. */
export function useOccupancy(channel: string): Occupancy | null {
  const client = usePresenceClient();
  useEffect(() => {
    if (!client) return;
    const handle = client.channel(channel);
    void handle.subscribe({ occupancy: true });
    return () => handle.release();
  }, [client, channel]);
  return useChannelValue(client, channel, "occupancy", (handle) => handle.occupancy(), null);
}

/** Statuses of the given users, watched while the component is mounted: id → {status, since, last_seen}. */
export function useUserStatus(users: readonly string[]): Record<string, PresenceEntry> {
  const client = usePresenceClient();
  const key = JSON.stringify([...new Set(users)].sort());
  const ids = useMemo(() => JSON.parse(key) as string[], [key]);

  useEffect(() => {
    if (!client || ids.length === 0) return;
    void client.watch(ids);
    return () => client.unwatch(ids);
  }, [client, ids]);

  const last = useRef(NO_STATUSES);
  const subscribe = useCallback((onChange: () => void) => client?.on("presence", onChange) ?? noop, [client]);
  const read = (): Record<string, PresenceEntry> => {
    const next: Record<string, PresenceEntry> = {};
    for (const id of ids) {
      const entry = client?.status(id);
      if (entry) next[id] = entry;
    }
    if (sameEntries(last.current, next)) return last.current;
    last.current = next;
    return next;
  };
  return useSyncExternalStore(subscribe, read, () => NO_STATUSES);
}

export interface ChannelOptions<D> {
  /** Enter the channel with this data (updated when it changes by value); without, only subscribe. */
  data?: D;
  /** Also receive occupancy (see `useOccupancy`). */
  occupancy?: boolean;
}

export interface ChannelState<D extends MemberDataShape<D> = MemberData, M = Json> {
  /** The channel's members (the same array until they change). */
  members: Member<D>[];
  /**
   * The server's refusal of this hook's `subscribe`, `enter` or `update`
   * (say `forbidden`, `too_large`, `limit_exceeded`), null once one
   * succeeds. A missing connection is not an error here: see
   * `useConnectionState`. When the server takes the channel away
   * (`unsubscribed`, see `ChannelHandle.revoked`) it is a `forbidden`
   * error that stays, with no members, until the hook mounts anew: new
   * `data` does not enter again, `update` rejects with it.
   */
  error: PresenceError | null;
  /** Replaces this user's data in the channel (the hook must have `data`); a refusal also sets `error`. */
  update: (data: D) => Promise<void>;
  /** Sends a message to the channel's subscribers. */
  publish: (message: M) => Promise<void>;
}

/**
 * A channel: its members, the error of entering or subscribing, and
 * functions to update this user's data and publish (stable across renders).
 * With `options.data` the user enters the channel with that data, as
 * `useChannelMembers(channel, data)` does.
 */
export function useChannel<D extends MemberDataShape<D> = MemberData, M = Json>(
  channel: string,
  options: ChannelOptions<D> = {},
): ChannelState<D, M> {
  const client = usePresenceClient();
  const { data, occupancy = false } = options;
  const entering = data !== undefined;
  const dataRef = useRef(data);
  dataRef.current = data;
  const held = useRef<ChannelHandle<D, M> | null>(null);
  const [error, setError] = useState<PresenceError | null>(null);

  // Settles the error state from one of this hook's requests, unless the handle is gone.
  const report = useCallback((handle: ChannelHandle<D, M>, request: Promise<void>) => {
    request.then(
      () => {
        if (held.current === handle) setError(null);
      },
      (err: PresenceError) => {
        if (held.current === handle && err.code !== "unavailable") setError(err);
      },
    );
    return request;
  }, []);

  useEffect(() => {
    if (!client) return;
    const handle = client.channel<D, M>(channel);
    held.current = handle;
    setError(null);
    void report(handle, entering ? handle.enter(dataRef.current) : handle.subscribe({ occupancy }));
    if (entering && occupancy) void handle.subscribe({ occupancy });
    handle.on("unsubscribed", ({ reason }) => {
      if (held.current === handle) setError(revokedError(channel, reason));
    });
    return () => {
      if (held.current === handle) held.current = null;
      handle.release();
    };
  }, [client, channel, entering, occupancy, report]);

  const dataKey = entering ? JSON.stringify(data) : undefined;
  useEffect(() => {
    const handle = held.current;
    if (handle && !handle.revoked && dataRef.current !== undefined) void report(handle, handle.enter(dataRef.current));
  }, [dataKey, report]);

  const update = useCallback(
    (next: D) => {
      const handle = held.current;
      if (!handle) return Promise.reject(new Error("presenced: the channel is not mounted")) as Promise<void>;
      return report(handle, handle.update(next));
    },
    [report],
  );
  const publish = usePublish<M>(channel);
  const members = useChannelValue(client, channel, "members", (handle) => handle.members(), NO_MEMBERS) as Member<D>[];
  return useMemo(() => ({ members, error, update, publish }), [members, error, update, publish]);
}

/**
 * Compares two values: equal if `Object.is`, or arrays with `Object.is`
 * elements, or plain objects with `Object.is` values of the same keys. The
 * default equality of `useSelf` and `useOthers`.
 */
export function shallow(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const keysA = Object.keys(a);
  const keysB = Object.keys(b);
  if (keysA.length !== keysB.length) return false;
  return keysA.every(
    (key) =>
      Object.prototype.hasOwnProperty.call(b, key) &&
      Object.is((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key]),
  );
}

/**
 * This user's member in a channel (null until it is one), or what `select`
 * takes from it: the component renders again only when the selected value
 * changes (by `isEqual`, default `shallow`). Subscribes while mounted but
 * does not enter: enter with `useChannel(channel, { data })` or
 * `useChannelMembers(channel, data)`.
 */
export function useSelf<D extends MemberDataShape<D> = MemberData, T = Member<D> | null>(
  channel: string,
  select?: (self: Member<D> | null) => T,
  isEqual: (a: T, b: T) => boolean = shallow,
): T {
  const client = usePresenceClient();
  useSubscription(client, channel);
  const pick = (members: Member<D>[]): Member<D> | null => {
    const user = client?.user;
    if (user === undefined || user === null) return null;
    return members.find((member) => member.user === user) ?? null;
  };
  return useSelectedMembers<D, T>(client, channel, select, (members) => {
    const self = pick(members);
    return select ? select(self) : (self as T);
  }, isEqual);
}

/**
 * The other members of a channel (everyone but this user), or what `select`
 * takes from them: the component renders again only when the selected value
 * changes (by `isEqual`, default `shallow`, so an unchanged list of others
 * keeps the component still when only this user's data changed). Subscribes
 * while mounted.
 */
export function useOthers<D extends MemberDataShape<D> = MemberData, T = Member<D>[]>(
  channel: string,
  select?: (others: Member<D>[]) => T,
  isEqual: (a: T, b: T) => boolean = shallow,
): T {
  const client = usePresenceClient();
  useSubscription(client, channel);
  return useSelectedMembers<D, T>(client, channel, select, (members) => {
    const user = client?.user;
    const others = members.filter((member) => member.user !== user);
    return select ? select(others) : (others as T);
  }, isEqual);
}

/** Holds a subscription to the channel while mounted. */
function useSubscription(client: PresenceClient | null, channel: string): void {
  useEffect(() => {
    if (!client) return;
    const handle = client.channel(channel);
    void handle.subscribe();
    return () => handle.release();
  }, [client, channel]);
}

/**
 * A value computed from a channel's members, kept (same identity) while
 * `isEqual` says it did not change. It is computed again when the members,
 * the user or the application's `select` function change (so a selector that
 * reads props is never stale).
 */
function useSelectedMembers<D extends MemberDataShape<D>, T>(
  client: PresenceClient | null,
  channel: string,
  select: unknown,
  compute: (members: Member<D>[]) => T,
  isEqual: (a: T, b: T) => boolean,
): T {
  const computeRef = useRef(compute);
  computeRef.current = compute;
  const isEqualRef = useRef(isEqual);
  isEqualRef.current = isEqual;
  const last = useRef<{ members: Member<D>[]; user: string | null | undefined; select: unknown; value: T } | null>(
    null,
  );
  const reader = useMemo(() => client?.channel<D>(channel) ?? null, [client, channel]);
  const subscribe = useCallback(
    (onChange: () => void) => {
      if (!client) return noop;
      const handle = client.channel(channel);
      handle.on("members", onChange);
      const off = client.on("state", onChange);
      return () => {
        off();
        handle.release();
      };
    },
    [client, channel],
  );
  const snapshot = (): T => {
    const members = reader ? reader.members() : (NO_MEMBERS as Member<D>[]);
    const user = client?.user;
    const prev = last.current;
    if (prev && prev.members === members && prev.user === user && prev.select === select) return prev.value;
    const value = computeRef.current(members);
    if (prev && isEqualRef.current(prev.value, value)) {
      last.current = { members, user, select, value: prev.value };
      return prev.value;
    }
    last.current = { members, user, select, value };
    return value;
  };
  return useSyncExternalStore(subscribe, snapshot, snapshot);
}

/**
 * Calls `onMessage` with every message of the channel (subscribing while
 * mounted). The latest `onMessage` is called, so it may change on every
 * render.
 */
export function useChannelMessages<M = Json>(channel: string, onMessage: (message: MessageEvent<M>) => void): void {
  const client = usePresenceClient();
  const listener = useRef(onMessage);
  listener.current = onMessage;
  useEffect(() => {
    if (!client) return;
    const handle = client.channel<MemberData, M>(channel);
    handle.on("message", (message) => listener.current(message));
    void handle.subscribe();
    return () => handle.release();
  }, [client, channel]);
}

/**
 * A function that publishes a message to the channel, stable while the
 * client and channel are the same. It rejects (`unavailable`) without a
 * provider's client.
 */
export function usePublish<M = Json>(channel: string): (message: M) => Promise<void> {
  const client = usePresenceClient();
  return useCallback(
    (message: M) => {
      if (!client) return Promise.reject(new Error("presenced: no client (outside a PresenceProvider?)")) as Promise<void>;
      return client.channel<MemberData, M>(channel).publish(message);
    },
    [client, channel],
  );
}

/**
 * This connection's own status (`online` or `away`, automatic away included)
 * and a function to set it (kept across reconnects), as `useState` returns
 * them. `online` until the provider's client exists.
 */
export function useMyStatus(): [OwnStatus, (status: OwnStatus) => Promise<void>] {
  const client = usePresenceClient();
  const subscribe = useCallback((onChange: () => void) => client?.on("ownStatus", onChange) ?? noop, [client]);
  const read = (): OwnStatus => client?.ownStatus ?? "online";
  const status = useSyncExternalStore(subscribe, read, () => "online" as OwnStatus);
  const setStatus = useCallback(
    (next: OwnStatus) => client?.setStatus(next) ?? (Promise.reject(new Error("presenced: no client")) as Promise<void>),
    [client],
  );
  return [status, setStatus];
}

/**
 * Reads a channel value that changes with one of its events. Each
 * subscription of the store listens through a handle of its own and releases
 * it when React unsubscribes (StrictMode's double subscription included), so
 * the client keeps no handle for a component that is gone. Reads go through a
 * handle that never listens nor subscribes, which holds nothing.
 */
function useChannelValue<T>(
  client: PresenceClient | null,
  channel: string,
  event: "members" | "occupancy",
  read: (handle: ChannelHandle) => T,
  fallback: T,
): T {
  const reader = useMemo(() => client?.channel(channel) ?? null, [client, channel]);
  const subscribe = useCallback(
    (onChange: () => void) => {
      if (!client) return noop;
      const handle = client.channel(channel);
      handle.on(event, onChange);
      // A channel the server took away has no value any more.
      handle.on("unsubscribed", onChange);
      return () => handle.release();
    },
    [client, channel, event],
  );
  const snapshot = (): T => (reader ? read(reader) : fallback);
  return useSyncExternalStore(subscribe, snapshot, () => fallback);
}

function sameEntries(a: Record<string, PresenceEntry>, b: Record<string, PresenceEntry>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((key) => a[key] === b[key]);
}
