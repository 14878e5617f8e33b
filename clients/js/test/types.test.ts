// Type tests: `npm run typecheck` compiles this file, so a `@ts-expect-error`
// that no longer errs, or an `expectTypeOf` that no longer holds, fails it.
import { describe, expectTypeOf, it } from "vitest";
import WebSocket from "ws";
import {
  createClient,
  type ChannelHandle,
  type Json,
  type LeaveEvent,
  type Member,
  type MemberData,
  type MessageEvent,
  type UnsubscribedEvent,
  type UnsubscribedReason,
} from "../src/index.js";
import { useChannel, useChannelMembers, useChannelMessages, useOthers, usePublish, useSelf } from "../src/react.js";

interface Cursor {
  x: number;
  y: number;
}

/** An interface, as applications write member data: no index signature. */
interface RoomData {
  name: string;
  avatar?: string;
  cursor: Cursor | null;
  tags: string[];
}

// Never called: only compiled.
function typeOnly(): void {
  const client = createClient({ url: "ws://x", token: null });

  const room = client.channel<RoomData>("room:1");
  expectTypeOf(room).toEqualTypeOf<ChannelHandle<RoomData, Json>>();
  expectTypeOf(room.members()).toEqualTypeOf<Member<RoomData>[]>();
  expectTypeOf(room.members()[0]!.data.name).toEqualTypeOf<string>();
  expectTypeOf(room.members()[0]!.data.cursor).toEqualTypeOf<Cursor | null>();
  expectTypeOf(room.members()[0]!.data.avatar).toEqualTypeOf<string | undefined>();
  void room.enter({ name: "Alice", cursor: null, tags: [] });
  void room.update({ name: "Alice", cursor: { x: 1, y: 2 }, tags: ["a"] });
  // @ts-expect-error a required field is missing
  void room.update({ name: "Alice", tags: [] });
  // @ts-expect-error a field of the wrong type
  void room.enter({ name: 1, cursor: null, tags: [] });
  room.on("members", (members) => expectTypeOf(members).toEqualTypeOf<Member<RoomData>[]>());
  room.on("join", (member) => expectTypeOf(member.data).toEqualTypeOf<RoomData>());
  room.on("leave", (event) => expectTypeOf(event).toEqualTypeOf<LeaveEvent<RoomData>>());
  room.on("unsubscribed", (event) => expectTypeOf(event).toEqualTypeOf<UnsubscribedEvent>());
  client.on("unsubscribed", ({ channel, reason }) => {
    expectTypeOf(channel).toEqualTypeOf<string>();
    expectTypeOf(reason).toEqualTypeOf<UnsubscribedReason>();
  });
  expectTypeOf(room.revoked).toEqualTypeOf<"forbidden" | null>();

  // Messages typed too.
  const chat = client.channel<RoomData, { text: string }>("room:1");
  void chat.publish({ text: "hi" });
  // @ts-expect-error not a message of this channel
  void chat.publish({ body: "hi" });
  chat.on("message", (event) => expectTypeOf(event).toEqualTypeOf<MessageEvent<{ text: string }>>());

  // Type aliases and records work, and the default is the untyped MemberData.
  client.channel<{ a: number; b?: boolean }>("x");
  client.channel<Record<string, number>>("x");
  const untyped = client.channel("lobby");
  expectTypeOf(untyped.members()).toEqualTypeOf<Member<MemberData>[]>();
  expectTypeOf(untyped.members()[0]!.data.anything).toEqualTypeOf<Json | undefined>();

  // Not JSON objects: refused.
  // @ts-expect-error a Date is not JSON
  client.channel<{ when: Date }>("x");
  // @ts-expect-error a function is not JSON
  client.channel<{ f: () => void }>("x");
  // @ts-expect-error bigint is not JSON
  client.channel<{ n: bigint }>("x");
  // @ts-expect-error member data is an object, not a string
  client.channel<string>("x");
  // @ts-expect-error member data is an object, not an array
  client.channel<number[]>("x");

  // React: the hook takes the same type.
  const members = useChannelMembers<RoomData>("room:1", { name: "A", cursor: null, tags: [] });
  expectTypeOf(members).toEqualTypeOf<Member<RoomData>[]>();
  const inferred = useChannelMembers("room:1", { name: "A" });
  expectTypeOf(inferred[0]!.data).toEqualTypeOf<{ name: string }>();
  expectTypeOf(useChannelMembers("lobby")).toEqualTypeOf<Member<MemberData>[]>();
  // @ts-expect-error a Date is not JSON
  useChannelMembers("room:1", { when: new Date() });

  const channel = useChannel<RoomData, { text: string }>("room:1", { data: { name: "A", cursor: null, tags: [] } });
  expectTypeOf(channel.members).toEqualTypeOf<Member<RoomData>[]>();
  expectTypeOf(channel.update).parameter(0).toEqualTypeOf<RoomData>();
  expectTypeOf(channel.publish).parameter(0).toEqualTypeOf<{ text: string }>();
  // @ts-expect-error a Date is not JSON
  useChannel<{ when: Date }>("room:1");
  expectTypeOf(useSelf<RoomData>("room:1")).toEqualTypeOf<Member<RoomData> | null>();
  expectTypeOf(useSelf<RoomData, Cursor | null>("room:1", (self) => self?.data.cursor ?? null)).toEqualTypeOf<Cursor | null>();
  expectTypeOf(useOthers<RoomData>("room:1")).toEqualTypeOf<Member<RoomData>[]>();
  expectTypeOf(useOthers<RoomData, string[]>("room:1", (others) => others.map((o) => o.data.name))).toEqualTypeOf<string[]>();
  useChannelMessages<{ text: string }>("room:1", (message) => expectTypeOf(message.data.text).toEqualTypeOf<string>());
  expectTypeOf(usePublish<{ text: string }>("room:1")).toEqualTypeOf<(message: { text: string }) => Promise<void>>();

  // The `ws` package's WebSocket and the DOM's are accepted as the WebSocket implementation.
  createClient({ url: "ws://x", token: null, WebSocket });
  createClient({ url: "ws://x", token: null, WebSocket: globalThis.WebSocket });
}

describe("types", () => {
  it("are checked by the compiler (npm run typecheck)", () => {
    expectTypeOf(typeOnly).toBeFunction();
  });
});
