/**
 * Keeps the resume token of a connection in memory and, where the host has
 * one, in `sessionStorage`, so that a page refresh inside the grace window
 * resumes instead of starting over.
 */
import type { StorageLike } from "./runtime.js";

export class SessionStore {
  private value: string | null;
  private readonly key: string;

  constructor(
    url: string,
    private readonly storage: StorageLike | null,
  ) {
    this.key = `presenced:session:${url}`;
    this.value = this.read();
  }

  get(): string | null {
    return this.value;
  }

  set(session: string): void {
    this.value = session;
    this.guard(() => this.storage?.setItem(this.key, session));
  }

  clear(): void {
    this.value = null;
    this.guard(() => this.storage?.removeItem(this.key));
  }

  private read(): string | null {
    let stored: string | null = null;
    this.guard(() => {
      stored = this.storage?.getItem(this.key) ?? null;
    });
    return stored;
  }

  private guard(action: () => void): void {
    try {
      action();
    } catch {
      // Storage full or denied: the in-memory value still serves reconnects.
    }
  }
}
