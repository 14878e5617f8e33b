/**
 * Automatic `away`: once the page has been hidden for a while the user is
 * reported away, and online again as soon as the page is visible.
 */
import { Timer, listen } from "./runtime.js";
export class AwayTracker {
    constructor(document, clock, 
    /** Null disables the tracker. */
    delayMs, onChange) {
        this.document = document;
        this.delayMs = delayMs;
        this.onChange = onChange;
        this.unlisten = () => { };
        this.away = false;
        this.timer = new Timer(clock);
    }
    start() {
        if (!this.document || this.delayMs === null)
            return;
        this.unlisten = listen(this.document, "visibilitychange", () => this.visibilityChanged());
        this.visibilityChanged();
    }
    stop() {
        this.unlisten();
        this.timer.cancel();
    }
    visibilityChanged() {
        if (this.document?.visibilityState === "hidden") {
            if (!this.timer.pending && !this.away)
                this.timer.start(this.delayMs, () => this.set(true));
        }
        else {
            this.timer.cancel();
            this.set(false);
        }
    }
    set(away) {
        if (away === this.away)
            return;
        this.away = away;
        this.onChange(away);
    }
}
