// What the READMEs' examples (copied into src/readme/ by
// scripts/readme-examples.mjs) leave to the application: its UI functions
// and its token endpoint.
import type { Member } from "@presenced/client";

declare global {
  /** The server URL. */
  const url: string;
  /** A token provider: the application's endpoint that issues presence tokens. */
  function getToken(): Promise<string>;
  function render(members: Member[]): void;
  function toast(text: string): void;
  function showCount(count: number): void;
  function banner(state: string): void;
  function showSignedOutPage(): void;
}
