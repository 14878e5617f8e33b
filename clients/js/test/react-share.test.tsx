// @vitest-environment jsdom
import { act, cleanup, render } from "@testing-library/react";
import { StrictMode, type ReactNode } from "react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { ClientOptions } from "../src/index.js";
import { PresenceProvider, useChannelMembers, useConnectionState, useUserStatus } from "../src/react.js";
import { member } from "./helpers.js";
import { FakeBrowser, settle, type FakeTab } from "./tabs.js";

function Tab({ tab, children }: { tab: FakeTab; children: ReactNode }) {
  const { url, token, ...options } = tab.options() as ClientOptions;
  return (
    <StrictMode>
      <PresenceProvider url={url} token={token} options={options}>
        {children}
      </PresenceProvider>
    </StrictMode>
  );
}

function Room({ id }: { id: string }) {
  const members = useChannelMembers("room:1", { name: id });
  const state = useConnectionState();
  const statuses = useUserStatus(["bob"]);
  return (
    <p data-testid={id}>
      {state}:{members.map((m) => m.user).join(",")}:{statuses.bob?.status ?? "-"}
    </p>
  );
}

describe("React bindings over a connection shared across tabs", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    cleanup();
    vi.advanceTimersByTime(10_000);
    vi.useRealTimers();
  });

  it("two tabs' providers share one socket and render the same room", async () => {
    const browser = new FakeBrowser();
    const [a, b] = [browser.tab(), browser.tab()];
    const { getByTestId } = render(
      <>
        <Tab tab={a}>
          <Room id="A" />
        </Tab>
        <Tab tab={b}>
          <Room id="B" />
        </Tab>
      </>,
    );
    await act(settle);
    expect(browser.sockets).toHaveLength(1);
    const ws = browser.ws;
    await act(async () => {
      ws.welcome();
      await settle();
    });
    // StrictMode's double effects in both tabs: one enter, one watch, nothing released.
    act(() => vi.advanceTimersByTime(5_000));
    await act(settle);
    // Each tab entered with its own data: the last writer's wins, as on the server.
    expect(ws.summary()).toEqual(["enter:room:1", "watch", "update:room:1"]);
    await act(async () => {
      ws.receive({ t: "sync", channel: "room:1", seq: 1, members: [member("alice"), member("bob")], more: false });
      ws.receive({ t: "presence", users: { bob: { status: "online", since: null, last_seen: null } } });
      ws.okAll();
      await settle();
    });
    expect(getByTestId("A").textContent).toBe("connected:alice,bob:online");
    expect(getByTestId("B").textContent).toBe("connected:alice,bob:online");
    await act(async () => {
      ws.receive({ t: "leave", channel: "room:1", seq: 2, user: "bob", reason: "left" });
      await settle();
    });
    expect(getByTestId("B").textContent).toBe("connected:alice:online");
  });
});
