/**
 * Automatic `away`: once the page has been hidden for a while the user is
 * reported away, and online again as soon as the page is visible.
 */
import { Timer, listen, type Clock, type DocumentLike } from "./runtime.js";

export class AwayTracker {
  private readonly timer: Timer;
  private unlisten: () => void = () => {};
  private away = false;

  constructor(
    private readonly document: DocumentLike | null,
    clock: Clock,
    /** Null disables the tracker. */
    private readonly delayMs: number | null,
    private readonly onChange: (away: boolean) => void,
  ) {
    this.timer = new Timer(clock);
  }

  start(): void {
    if (!this.document || this.delayMs === null) return;
    this.unlisten = listen(this.document, "visibilitychange", () => this.visibilityChanged());
    this.visibilityChanged();
  }

  stop(): void {
    this.unlisten();
    this.timer.cancel();
  }

  private visibilityChanged(): void {
    if (this.document?.visibilityState === "hidden") {
      if (!this.timer.pending && !this.away) this.timer.start(this.delayMs!, () => this.set(true));
    } else {
      this.timer.cancel();
      this.set(false);
    }
  }

  private set(away: boolean): void {
    if (away === this.away) return;
    this.away = away;
    this.onChange(away);
  }
}
