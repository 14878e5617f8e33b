// @vitest-environment jsdom
import { act, cleanup, render } from "@testing-library/react";
import { StrictMode, type ReactNode } from "react";
import type { ClientOptions } from "../src/index.js";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { MessageEvent, PresenceClient } from "../src/index.js";
import {
  PresenceProvider,
  useChannel,
  useChannelMessages,
  useClient,
  useMyStatus,
  useOccupancy,
  useOthers,
  usePublish,
  useSelf,
} from "../src/react.js";
import { FakeEventSource, FakeWebSocket, flush, member } from "./helpers.js";

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

function App({ children, extra = {} }: { children: ReactNode; extra?: Partial<ClientOptions> }) {
  return (
    <StrictMode>
      <PresenceProvider url={url} token="token-1" options={{ ...options, ...extra }}>
        {children}
      </PresenceProvider>
    </StrictMode>
  );
}

interface Cursor {
  x: number;
  y: number;
}
interface RoomData {
  name: string;
  cursor: Cursor | null;
}

const welcome = (): void => act(() => socket().welcome({ user: "me" }));
const sync = (members: object[], seq = 1): void =>
  act(() => socket().receive({ t: "sync", channel: "room:1", seq, members, more: false }));

describe("React hooks", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    sockets = [];
    url = `ws://react-hooks.test/${++n}`;
  });
  afterEach(() => {
    cleanup();
    vi.advanceTimersByTime(10_000);
    vi.useRealTimers();
  });

  it("useClient has the provider's client on the first render, and keeps one socket under StrictMode", () => {
    const seen: (PresenceClient | null)[] = [];
    function Probe() {
      const client = useClient();
      seen.push(client);
      return <span data-testid="state">{client.state}</span>;
    }
    const { getByTestId } = render(
      <App>
        <Probe />
      </App>,
    );
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.every((client) => client !== null)).toBe(true);
    expect(getByTestId("state").textContent).toBe("connecting");
    welcome();
    act(() => vi.advanceTimersByTime(5_000));
    expect(sockets).toHaveLength(1);
    expect(socket().closedByClient).toBeNull();
    expect(seen[seen.length - 1]!.released).toBe(false);
  });

  it("after the application's logout() a render of the provider opens no new connection", () => {
    let client: PresenceClient | null = null;
    function Probe({ label }: { label: string }) {
      client = useClient();
      return <span>{label}</span>;
    }
    const { rerender } = render(
      <App>
        <Probe label="a" />
      </App>,
    );
    welcome();
    act(() => client!.logout());
    expect(socket().summary()).toContain("bye");
    rerender(
      <App>
        <Probe label="b" />
      </App>,
    );
    act(() => vi.advanceTimersByTime(5_000));
    expect(sockets).toHaveLength(1);
    expect(client!.released).toBe(true);
  });

  it("useClient outside a provider throws", () => {
    function Probe() {
      useClient();
      return null;
    }
    vi.spyOn(console, "error").mockImplementation(() => {});
    expect(() => render(<Probe />)).toThrow(/inside a <PresenceProvider>/);
  });

  it("useChannel reports a refused enter as error, and clears it when new data is accepted", async () => {
    function Room({ name }: { name: string }) {
      const { error, members } = useChannel<RoomData>("room:1", { data: { name, cursor: null } });
      return (
        <p data-testid="room">
          {error ? `error:${error.code}` : "ok"} {members.length}
        </p>
      );
    }
    const { getByTestId, rerender } = render(
      <App>
        <Room name="A" />
      </App>,
    );
    welcome();
    expect(socket().summary()).toEqual(["enter:room:1"]);
    const enter = socket().frames("enter")[0]!;
    await act(async () => {
      socket().reply(enter, { t: "error", code: "forbidden", message: "no entry" });
      await flush();
    });
    expect(getByTestId("room").textContent).toBe("error:forbidden 0");
    rerender(
      <App>
        <Room name="B" />
      </App>,
    );
    const again = socket().frames("enter")[1]!;
    expect(again).toMatchObject({ data: { name: "B" } });
    await act(async () => {
      socket().reply(again, { t: "ok" });
      socket().receive({ t: "sync", channel: "room:1", seq: 1, members: [member("me", { name: "B" })], more: false });
      await flush();
    });
    expect(getByTestId("room").textContent).toBe("ok 1");
  });

  it("a channel the server takes away shows no members, no occupancy and a forbidden error, and is not entered again", async () => {
    function Room({ name }: { name: string }) {
      const { error, members } = useChannel<RoomData>("room:1", { data: { name, cursor: null } });
      const occupancy = useOccupancy("room:1");
      return (
        <p data-testid="room">
          {error ? `error:${error.code}` : "ok"} {members.length} {occupancy ? occupancy.members : "-"}
        </p>
      );
    }
    const { getByTestId, rerender } = render(
      <App>
        <Room name="A" />
      </App>,
    );
    welcome();
    await act(async () => {
      socket().okAll();
      await flush();
    });
    sync([member("me", { name: "A" }), member("bob")]);
    act(() => socket().receive({ t: "occupancy", channel: "room:1", members: 2, connections: 2 }));
    expect(getByTestId("room").textContent).toBe("ok 2 2");

    act(() => socket().receive({ t: "unsubscribed", channel: "room:1", reason: "forbidden" }));
    expect(getByTestId("room").textContent).toBe("error:forbidden 0 -");
    socket().sent.length = 0;
    // New data does not enter again, nor does a reconnect.
    rerender(
      <App>
        <Room name="B" />
      </App>,
    );
    act(() => vi.advanceTimersByTime(1_000));
    act(() => socket().serverClose(1006));
    act(() => vi.advanceTimersByTime(1_000));
    expect(sockets).toHaveLength(2);
    welcome();
    expect(socket().summary()).toEqual([]);
    expect(getByTestId("room").textContent).toBe("error:forbidden 0 -");
  });

  it("useOthers with a selector renders again only when the selected value changes", () => {
    let renders = 0;
    function Names() {
      const names = useOthers<RoomData, string[]>("room:1", (others) => others.map((o) => o.data.name));
      renders += 1;
      return <p data-testid="names">{names.join(",")}</p>;
    }
    const { getByTestId } = render(
      <App>
        <Names />
      </App>,
    );
    welcome();
    expect(socket().summary()).toEqual(["subscribe:room:1"]);
    sync([member("me", { name: "Me" }), member("bob", { name: "Bob", cursor: null })]);
    expect(getByTestId("names").textContent).toBe("Bob");
    const before = renders;
    // Bob's cursor moves, and so does mine: the names do not change.
    act(() => {
      socket().receive({ t: "update", channel: "room:1", seq: 2, member: member("bob", { name: "Bob", cursor: { x: 1, y: 1 } }) });
      socket().receive({ t: "update", channel: "room:1", seq: 3, member: member("me", { name: "Me", cursor: { x: 2, y: 2 } }) });
    });
    expect(renders).toBe(before);
    act(() => socket().receive({ t: "join", channel: "room:1", seq: 4, member: member("carol", { name: "Carol" }) }));
    expect(getByTestId("names").textContent).toBe("Bob,Carol");
    expect(renders).toBeGreaterThan(before);
  });

  it("useOthers without a selector leaves this user out; useSelf selects this user's data", () => {
    let selfRenders = 0;
    function Others() {
      const others = useOthers("room:1");
      return <p data-testid="others">{others.map((o) => o.user).join(",")}</p>;
    }
    function Me() {
      const cursor = useSelf<RoomData, Cursor | null>("room:1", (self) => self?.data.cursor ?? null);
      selfRenders += 1;
      return <p data-testid="me">{cursor ? `${cursor.x},${cursor.y}` : "none"}</p>;
    }
    const { getByTestId } = render(
      <App>
        <Others />
        <Me />
      </App>,
    );
    welcome();
    expect(socket().summary()).toEqual(["subscribe:room:1"]);
    sync([member("me", { name: "Me", cursor: { x: 1, y: 2 } }), member("bob", { name: "Bob" })]);
    expect(getByTestId("others").textContent).toBe("bob");
    expect(getByTestId("me").textContent).toBe("1,2");
    const before = selfRenders;
    act(() => socket().receive({ t: "update", channel: "room:1", seq: 2, member: member("bob", { name: "Bobby" }) }));
    expect(selfRenders).toBe(before);
    act(() => socket().receive({ t: "update", channel: "room:1", seq: 3, member: member("me", { name: "Me", cursor: { x: 5, y: 6 } }) }));
    expect(getByTestId("me").textContent).toBe("5,6");
  });

  it("useChannelMessages receives the channel's messages and usePublish sends them", () => {
    const received: MessageEvent<{ text: string }>[] = [];
    let publish: ((message: { text: string }) => Promise<void>) | null = null;
    function Chat() {
      useChannelMessages<{ text: string }>("room:1", (message) => received.push(message));
      publish = usePublish<{ text: string }>("room:1");
      return null;
    }
    render(
      <App>
        <Chat />
      </App>,
    );
    welcome();
    expect(socket().summary()).toEqual(["subscribe:room:1"]);
    act(() => socket().okAll());
    sync([]);
    act(() => socket().receive({ t: "message", channel: "room:1", from: "bob", data: { text: "hi" } }));
    expect(received).toEqual([{ from: "bob", data: { text: "hi" } }]);
    void publish!({ text: "hello" }).catch(() => {});
    expect(socket().frames("publish")).toMatchObject([{ channel: "room:1", data: { text: "hello" } }]);
  });

  it("useMyStatus follows the automatic away", () => {
    const doc = new FakeEventSource();
    function Status() {
      return <p data-testid="status">{useMyStatus()[0]}</p>;
    }
    const { getByTestId } = render(
      <App extra={{ document: doc, awayAfterHiddenMs: 1_000 }}>
        <Status />
      </App>,
    );
    welcome();
    doc.visibilityState = "hidden";
    act(() => doc.dispatch("visibilitychange"));
    expect(getByTestId("status").textContent).toBe("online");
    act(() => vi.advanceTimersByTime(1_000));
    expect(getByTestId("status").textContent).toBe("away");
    doc.visibilityState = "visible";
    act(() => doc.dispatch("visibilitychange"));
    expect(getByTestId("status").textContent).toBe("online");
  });

  it("a selector that reads props is applied again when they change", () => {
    function Named({ prefix }: { prefix: string }) {
      const names = useOthers<RoomData, string[]>("room:1", (others) => others.map((o) => prefix + o.data.name));
      return <p data-testid="names">{names.join(",")}</p>;
    }
    const { getByTestId, rerender } = render(
      <App>
        <Named prefix="a:" />
      </App>,
    );
    welcome();
    sync([member("bob", { name: "Bob" })]);
    expect(getByTestId("names").textContent).toBe("a:Bob");
    rerender(
      <App>
        <Named prefix="b:" />
      </App>,
    );
    expect(getByTestId("names").textContent).toBe("b:Bob");
  });

  it("useMyStatus shows this connection's status and sets it", async () => {
    let setStatus: ((status: "online" | "away") => Promise<void>) | null = null;
    function Status() {
      const [status, set] = useMyStatus();
      setStatus = set;
      return <p data-testid="status">{status}</p>;
    }
    const { getByTestId } = render(
      <App>
        <Status />
      </App>,
    );
    welcome();
    expect(getByTestId("status").textContent).toBe("online");
    await act(async () => {
      void setStatus!("away");
      await flush();
    });
    expect(getByTestId("status").textContent).toBe("away");
    expect(socket().frames("status")).toMatchObject([{ status: "away" }]);
    await act(async () => {
      void setStatus!("online");
      await flush();
    });
    expect(getByTestId("status").textContent).toBe("online");
  });
});
