import { StrictMode, useState } from "react";
import { createRoot } from "react-dom/client";
import type { Member, PresenceError } from "@presenced/client";
import {
  PresenceProvider,
  useChannel,
  useChannelMessages,
  useClient,
  useConnectionState,
  useMyStatus,
  useOthers,
  useSelf,
} from "@presenced/client/react";
import { shareAcrossTabs } from "@presenced/client/share";

interface Cursor {
  x: number;
  y: number;
}

/** Member data as an application writes it: an interface. */
interface RoomData {
  name: string;
  cursor: Cursor | null;
}

interface ChatMessage {
  text: string;
}

function Room({ name }: { name: string }) {
  const [cursor, setCursor] = useState<Cursor | null>(null);
  const { members, error, publish } = useChannel<RoomData, ChatMessage>("room:1", { data: { name, cursor } });
  const others = useOthers<RoomData, string[]>("room:1", (list) => list.map((m) => m.data.name));
  const myCursor = useSelf<RoomData, Cursor | null>("room:1", (self) => self?.data.cursor ?? null);
  const [status, setStatus] = useMyStatus();
  const [log, setLog] = useState<string[]>([]);
  useChannelMessages<ChatMessage>("room:1", ({ from, data }) => setLog((l) => [...l, `${from ?? "server"}: ${data.text}`]));
  const describe = (e: PresenceError | null): string => (e ? `${e.code}: ${e.message}` : "");
  const first: Member<RoomData> | undefined = members[0];
  return (
    <div onMouseMove={(e) => setCursor({ x: e.clientX, y: e.clientY })}>
      <p>{describe(error)}</p>
      <p>first: {first?.data.name ?? "nobody"}; others: {others.join(", ")}</p>
      <p>my cursor: {myCursor ? `${myCursor.x},${myCursor.y}` : "none"}</p>
      <button onClick={() => void setStatus(status === "away" ? "online" : "away")}>{status}</button>
      <button onClick={() => void publish({ text: "hi" })}>say hi</button>
      <ul>{log.map((line, i) => <li key={i}>{line}</li>)}</ul>
    </div>
  );
}

function State() {
  const client = useClient();
  const state = useConnectionState();
  return <p>{client.user ?? "guest"}: {state}</p>;
}

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <PresenceProvider url="ws://127.0.0.1:7400/v1/ws" token={null} options={{ shareAcrossTabs }}>
      <State />
      <Room name="Alice" />
    </PresenceProvider>
  </StrictMode>,
);
