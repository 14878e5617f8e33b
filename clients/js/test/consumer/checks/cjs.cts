import { createClient, type Member } from "@presenced/client";
import { useChannel } from "@presenced/client/react";
import { shareAcrossTabs } from "@presenced/client/share";
import WebSocket = require("ws");

interface Data {
  name: string;
}

const client = createClient({ url: "ws://127.0.0.1:1/v1/ws", token: null, WebSocket, shareAcrossTabs });
const members: Member<Data>[] = client.channel<Data>("room").members();
export const names: string[] = members.map((m) => m.data.name);
export const hook: typeof useChannel = useChannel;
