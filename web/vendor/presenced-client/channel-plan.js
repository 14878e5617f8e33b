export const NOT_SUBSCRIBED = Object.freeze({
    subscribed: false,
    entered: false,
    occupancy: false,
    data: undefined,
});
/** Unknown server state: only idempotent frames that establish `to` whatever was there. */
export const UNKNOWN = null;
export function planChannel(channel, from, to) {
    if (!to.subscribed) {
        return from === UNKNOWN || from.subscribed ? [{ t: "unsubscribe", channel }] : [];
    }
    const subscribe = subscribeFrame(channel, to.occupancy);
    if (from === UNKNOWN) {
        if (to.entered)
            return [...(to.occupancy ? [subscribe] : []), enterFrame(channel, to.data)];
        // `leave` may answer `not_member`, which the caller accepts.
        return [subscribe, { t: "leave", channel }];
    }
    const needsSubscribe = !from.subscribed || (to.occupancy && !from.occupancy);
    const frames = [];
    if (to.entered && !from.entered) {
        // `enter` implies `subscribe`, except for the occupancy flag.
        if (needsSubscribe && to.occupancy)
            frames.push(subscribe);
        frames.push(enterFrame(channel, to.data));
        return frames;
    }
    if (needsSubscribe)
        frames.push(subscribe);
    if (to.entered) {
        if (to.data !== undefined && !sameJson(from.data, to.data)) {
            frames.push({ t: "update", channel, data: to.data });
        }
    }
    else if (from.entered) {
        frames.push({ t: "leave", channel });
    }
    return frames;
}
function subscribeFrame(channel, occupancy) {
    return occupancy ? { t: "subscribe", channel, occupancy: true } : { t: "subscribe", channel };
}
function enterFrame(channel, data) {
    return data === undefined ? { t: "enter", channel } : { t: "enter", channel, data };
}
/** Structural equality of JSON values (key order of objects does not matter). */
export function sameJson(a, b) {
    if (a === b)
        return true;
    if (typeof a !== "object" || typeof b !== "object" || a === null || b === null)
        return false;
    if (Array.isArray(a) !== Array.isArray(b))
        return false;
    if (Array.isArray(a)) {
        const other = b;
        return a.length === other.length && a.every((value, i) => sameJson(value, other[i]));
    }
    const left = a;
    const right = b;
    const keys = Object.keys(left);
    return (keys.length === Object.keys(right).length &&
        keys.every((key) => Object.prototype.hasOwnProperty.call(right, key) && sameJson(left[key], right[key])));
}
