// Server rendering: no window, so the provider creates no client (and opens no socket).
import { renderToString } from "react-dom/server";
import { describe, expect, it } from "vitest";
import { PresenceProvider, useChannel, useClient, useConnectionState, usePresenceClient } from "../src/react.js";
import { FakeWebSocket } from "./helpers.js";

describe("React bindings in server rendering", () => {
  it("the provider creates no client; the hooks render empty values; useClient throws", () => {
    const sockets: FakeWebSocket[] = [];
    class TestSocket extends FakeWebSocket {
      constructor(url: string) {
        super(url);
        sockets.push(this);
      }
    }
    const options = { WebSocket: TestSocket, storage: null, window: null, document: null };
    function Page() {
      const client = usePresenceClient();
      const { members, error } = useChannel("room:1", { data: { name: "A" } });
      return (
        <p>
          {client === null ? "no client" : "client"} {useConnectionState()} {members.length} {String(error)}
        </p>
      );
    }
    const html = renderToString(
      <PresenceProvider url="ws://ssr.test/v1/ws" token="t" options={options}>
        <Page />
      </PresenceProvider>,
    );
    expect(html).toContain("no client");
    expect(html).toContain("connecting");
    expect(sockets).toHaveLength(0);

    function Strict() {
      useClient();
      return null;
    }
    expect(() =>
      renderToString(
        <PresenceProvider url="ws://ssr.test/v1/ws" token="t" options={options}>
          <Strict />
        </PresenceProvider>,
      ),
    ).toThrow(/server rendering/);
  });
});
