// @vitest-environment jsdom
import { act, cleanup, render } from "@testing-library/react";
import { StrictMode, useState, type ReactNode } from "react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createClient, type MemberData } from "../src/index.js";
import {
  PresenceProvider,
  useChannelMembers,
  useConnectionState,
  useOccupancy,
  usePresenceClient,
  useUserStatus,
} from "../src/react.js";
import { FakeWebSocket, member } from "./helpers.js";

let sockets: FakeWebSocket[] = [];
class TestSocket extends FakeWebSocket {
  constructor(url: string) {
    super(url);
    sockets.push(this);
  }
}
const socket = (): FakeWebSocket => sockets[sockets.length - 1]!;

let n = 0;
let url = "";
const options = { WebSocket: TestSocket, storage: null, window: null, document: null, random: () => 0.5 };

function App({ children }: { children: ReactNode }) {
  return (
    <StrictMode>
      <PresenceProvider url={url} token="token-1" options={options}>
        {children}
      </PresenceProvider>
    </StrictMode>
  );
}

function Members({ channel, data }: { channel: string; data?: MemberData }) {
  const members = useChannelMembers(channel, data);
  return <ul data-testid={channel}>{members.map((m) => <li key={m.user}>{m.user}</li>)}</ul>;
}

function welcome(): void {
  act(() => socket().welcome());
}

describe("React bindings", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    sockets = [];
    url = `ws://react.test/${++n}`;
  });
  afterEach(() => {
    cleanup();
    vi.advanceTimersByTime(10_000);
    vi.useRealTimers();
  });

  it("StrictMode mount, unmount and remount sends one enter and no leave or unsubscribe", () => {
    const { rerender } = render(<App>{null}</App>);
    welcome();
    // Mounted on a live connection: StrictMode runs the effects, their cleanups, and the effects again.
    rerender(
      <App>
        <Members channel="room:1" data={{ name: "Alice" }} />
        <Members channel="lobby" />
      </App>,
    );
    act(() => vi.advanceTimersByTime(5_000));
    expect(sockets).toHaveLength(1);
    expect(socket().summary()).toEqual(["enter:room:1", "subscribe:lobby"]);
    expect(socket().frames("enter")[0]).toMatchObject({ data: { name: "Alice" } });
  });

  it("the provider's own StrictMode remount keeps one socket", () => {
    render(
      <App>
        <Members channel="room:1" />
      </App>,
    );
    welcome();
    act(() => vi.advanceTimersByTime(5_000));
    expect(sockets).toHaveLength(1);
    expect(socket().closedByClient).toBeNull();
    expect(socket().summary()).toEqual(["subscribe:room:1"]);
  });

  it("renders the channel's members and follows changes", () => {
    const { getByTestId } = render(
      <App>
        <Members channel="room:1" />
      </App>,
    );
    welcome();
    expect(socket().summary()).toEqual(["subscribe:room:1"]);
    act(() => {
      socket().receive({ t: "sync", channel: "room:1", seq: 1, members: [member("a"), member("b")], more: false });
    });
    expect(getByTestId("room:1").textContent).toBe("ab");
    act(() => {
      socket().receive({ t: "leave", channel: "room:1", seq: 2, user: "a", reason: "left" });
    });
    expect(getByTestId("room:1").textContent).toBe("b");
  });

  it("a remount (Fast Refresh, route change) within the delay sends nothing", () => {
    function Toggle() {
      const [key, setKey] = useState(0);
      return (
        <>
          <button onClick={() => setKey((k) => k + 1)}>remount</button>
          <Members key={key} channel="room:1" data={{ name: "Alice" }} />
        </>
      );
    }
    const { getByText, rerender } = render(<App>{null}</App>);
    welcome();
    rerender(
      <App>
        <Toggle />
      </App>,
    );
    act(() => getByText("remount").click());
    act(() => getByText("remount").click());
    act(() => vi.advanceTimersByTime(5_000));
    expect(socket().summary()).toEqual(["enter:room:1"]);
  });

  it("updates member data when it changes by value", () => {
    const { rerender } = render(
      <App>
        <Members channel="room:1" data={{ name: "Alice" }} />
      </App>,
    );
    welcome();
    rerender(
      <App>
        <Members channel="room:1" data={{ name: "Alice" }} />
      </App>,
    );
    rerender(
      <App>
        <Members channel="room:1" data={{ name: "Alice", typing: true }} />
      </App>,
    );
    expect(socket().frames()).toMatchObject([
      { t: "enter", data: { name: "Alice" } },
      { t: "update", data: { name: "Alice", typing: true } },
    ]);
  });

  it("unmounting the tree unsubscribes and closes the socket after the delay, without bye", () => {
    const { unmount } = render(
      <App>
        <Members channel="room:1" data={{}} />
      </App>,
    );
    welcome();
    unmount();
    expect(socket().closedByClient).toBeNull();
    act(() => vi.advanceTimersByTime(1_500));
    expect(socket().closedByClient).not.toBeNull();
    expect(socket().summary()).not.toContain("bye");
    expect(socket().summary()).not.toContain("leave:room:1");
  });

  it("useConnectionState follows the connection", () => {
    function State() {
      return <span data-testid="state">{useConnectionState()}</span>;
    }
    const { getByTestId } = render(
      <App>
        <State />
      </App>,
    );
    expect(getByTestId("state").textContent).toBe("connecting");
    welcome();
    expect(getByTestId("state").textContent).toBe("connected");
    act(() => socket().serverClose(1006));
    expect(getByTestId("state").textContent).toBe("reconnecting");
  });

  it("useUserStatus watches once and shows statuses", () => {
    function Status({ ids }: { ids: string[] }) {
      const statuses = useUserStatus(ids);
      return <span data-testid="status">{ids.map((id) => `${id}=${statuses[id]?.status ?? "?"}`).join(",")}</span>;
    }
    const { getByTestId, rerender } = render(<App>{null}</App>);
    welcome();
    rerender(
      <App>
        <Status ids={["bob", "carol"]} />
      </App>,
    );
    expect(socket().frames("watch")).toMatchObject([{ users: ["bob", "carol"] }]);
    act(() => {
      socket().receive({
        t: "presence",
        users: { bob: { status: "online", since: null, last_seen: null }, carol: { status: "away", since: null, last_seen: null } },
      });
    });
    expect(getByTestId("status").textContent).toBe("bob=online,carol=away");
    act(() => vi.advanceTimersByTime(5_000));
    expect(socket().frames("unwatch")).toEqual([]);
  });

  it("useOccupancy subscribes with occupancy and shows it", () => {
    function Count() {
      const occupancy = useOccupancy("lobby");
      return <span data-testid="count">{occupancy ? occupancy.members : "-"}</span>;
    }
    const { getByTestId, rerender } = render(<App>{null}</App>);
    welcome();
    rerender(
      <App>
        <Count />
      </App>,
    );
    act(() => vi.advanceTimersByTime(5_000));
    expect(socket().frames("subscribe")).toMatchObject([{ channel: "lobby", occupancy: true }]);
    expect(getByTestId("count").textContent).toBe("-");
    act(() => socket().receive({ t: "occupancy", channel: "lobby", members: 4, connections: 6 }));
    expect(getByTestId("count").textContent).toBe("4");
    expect(socket().summary()).toEqual(["subscribe:lobby"]);
  });

  it("accepts a client created elsewhere and never releases it", () => {
    const client = createClient({ url, token: "t", ...options });
    function Who() {
      return <span data-testid="same">{String(usePresenceClient() === client)}</span>;
    }
    const { getByTestId, unmount } = render(
      <StrictMode>
        <PresenceProvider client={client}>
          <Who />
        </PresenceProvider>
      </StrictMode>,
    );
    expect(getByTestId("same").textContent).toBe("true");
    unmount();
    act(() => vi.advanceTimersByTime(5_000));
    expect(client.released).toBe(false);
    expect(socket().closedByClient).toBeNull();
    client.release();
  });

  it("hooks outside a provider render empty values", () => {
    function Orphan() {
      const members = useChannelMembers("room:1");
      const state = useConnectionState();
      return <span data-testid="orphan">{`${members.length}/${state}`}</span>;
    }
    const { getByTestId } = render(<Orphan />);
    expect(getByTestId("orphan").textContent).toBe("0/connecting");
    expect(sockets).toHaveLength(0);
  });
});

describe("React bindings release what they take", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    sockets = [];
    url = `ws://react.test/${++n}`;
  });
  afterEach(() => {
    cleanup();
    vi.advanceTimersByTime(10_000);
    vi.useRealTimers();
  });

  /** A client whose handles are recorded: for each, how many listeners it has added and whether it was released since. */
  function recordedClient() {
    const client = createClient({ ...options, url, token: "token-1" });
    const handles: { channel: string; listening: boolean }[] = [];
    const channel = client.channel.bind(client);
    client.channel = ((name: string) => {
      const handle = channel(name);
      const record = { channel: name, listening: false };
      handles.push(record);
      const on = handle.on.bind(handle);
      handle.on = ((event: never, listener: never) => {
        record.listening = true;
        return on(event, listener);
      }) as typeof handle.on;
      const release = handle.release.bind(handle);
      handle.release = () => {
        record.listening = false;
        release();
      };
      return handle;
    }) as typeof client.channel;
    return { client, handles };
  }

  function Occupancy({ channel }: { channel: string }) {
    const occupancy = useOccupancy(channel);
    return <p data-testid={`occ:${channel}`}>{occupancy?.members ?? "-"}</p>;
  }

  it("every channel handle the hooks listen on is released on unmount, also under StrictMode", () => {
    const { client, handles } = recordedClient();
    const view = (channels: string[]) => (
      <StrictMode>
        <PresenceProvider client={client}>
          {channels.map((c) => (
            <div key={c}>
              <Members channel={c} />
              <Occupancy channel={c} />
            </div>
          ))}
        </PresenceProvider>
      </StrictMode>
    );
    const { rerender, getByTestId } = render(view(["room:1"]));
    act(() => socket().welcome());
    // Still live after StrictMode's double subscription.
    act(() => {
      socket().receive({ t: "sync", channel: "room:1", seq: 1, members: [member("bob")], more: false });
      socket().receive({ t: "occupancy", channel: "room:1", members: 1, connections: 1 });
    });
    expect(getByTestId("room:1").textContent).toBe("bob");
    expect(getByTestId("occ:room:1").textContent).toBe("1");
    // Switching rooms, then leaving them all.
    for (let i = 2; i <= 5; i++) rerender(view([`room:${i}`]));
    rerender(view([]));
    expect(handles.filter((h) => h.listening)).toEqual([]);
    expect(handles.filter((h) => h.channel === "room:5").length).toBeGreaterThan(0);
    client.release();
  });
});
