// import of every entry from Node.
import assert from "node:assert";
import { createClient } from "@presenced/client";
import { useChannel } from "@presenced/client/react";
import { shareAcrossTabs } from "@presenced/client/share";
assert.equal(typeof createClient, "function");
assert.equal(typeof useChannel, "function");
assert.equal(typeof shareAcrossTabs.openLink, "function");
console.log("import: ok");
