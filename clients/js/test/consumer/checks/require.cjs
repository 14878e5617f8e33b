// require() of every entry, as Jest in CommonJS mode and older Node code do.
const assert = require("node:assert");
const client = require("@presenced/client");
const react = require("@presenced/client/react");
const share = require("@presenced/client/share");
assert.equal(typeof client.createClient, "function");
assert.equal(typeof client.PresenceError, "function");
assert.equal(typeof react.PresenceProvider, "function");
assert.equal(typeof react.useChannel, "function");
assert.equal(typeof share.shareAcrossTabs.openLink, "function");
const WebSocket = require("ws");
const c = client.createClient({ url: "ws://127.0.0.1:9/v1/ws", token: null, WebSocket, storage: null, window: null, document: null });
assert.equal(c.state, "connecting");
c.release();
console.log("require: ok");
