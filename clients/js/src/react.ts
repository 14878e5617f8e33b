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
import type { ChannelHandle } from "./channel.js";
import { createClient, type PresenceClient } from "./client.js";
import type { Off } from "./emitter.js";
import type { ClientOptions } from "./options.js";
import type { Member, MemberData, MemberDataShape, Occupancy, PresenceEntry } from "./protocol.js";
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

/**
 * Makes a client available to the hooks below. With `url` and `token` it
 * creates the client after mounting and releases it on unmount (or when
 * `url`, the static token, or the token's kind changes). A provider token
 * function may change identity on every render: the latest one is called.
 */
export function PresenceProvider(props: PresenceProviderProps): ReactElement {
  const { url, token, client: given, children } = props;
  const tokenRef = useRef(token);
  tokenRef.current = token;
  const optionsRef = useRef(props.options);
  optionsRef.current = props.options;
  const [own, setOwn] = useState<PresenceClient | null>(null);
  const tokenKey = typeof token === "function" ? tokenProviderKey : (token ?? null);

  useEffect(() => {
    if (given || url === undefined) return;
    const source: TokenSource =
      tokenKey === tokenProviderKey ? () => (tokenRef.current as TokenProvider)() : (tokenKey as string | null);
    const client = createClient({ ...optionsRef.current, url, token: source });
    setOwn(client);
    return () => client.release();
  }, [given, url, tokenKey]);

  return createElement(PresenceContext.Provider, { value: given ?? own }, children);
}

const tokenProviderKey = Symbol("token provider");

/**
 * The provider's client; null outside a provider, during server rendering and
 * in the first render before the provider has created its client.
 */
export function usePresenceClient(): PresenceClient | null {
  return useContext(PresenceContext);
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
 * type alias of a JSON object).
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
    if (dataRef.current !== undefined) void held.current?.enter(dataRef.current);
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
