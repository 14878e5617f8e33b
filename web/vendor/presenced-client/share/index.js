import { SharedLink } from "./shared-link.js";
/** The value of the `shareAcrossTabs` client option that turns sharing on. */
export const shareAcrossTabs = {
    openLink: (options) => SharedLink.open(options),
};
