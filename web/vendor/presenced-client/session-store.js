export class SessionStore {
    constructor(url, storage) {
        this.storage = storage;
        this.key = `presenced:session:${url}`;
        this.value = this.read();
    }
    get() {
        return this.value;
    }
    set(session) {
        this.value = session;
        this.guard(() => this.storage?.setItem(this.key, session));
    }
    clear() {
        this.value = null;
        this.guard(() => this.storage?.removeItem(this.key));
    }
    read() {
        let stored = null;
        this.guard(() => {
            stored = this.storage?.getItem(this.key) ?? null;
        });
        return stored;
    }
    guard(action) {
        try {
            action();
        }
        catch {
            // Storage full or denied: the in-memory value still serves reconnects.
        }
    }
}
