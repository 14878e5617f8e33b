/** Version of this package, sent in `hello.client`. */
export const VERSION = "0.1.0";
export const CLIENT_NAME = `presenced-js/${VERSION}`;
