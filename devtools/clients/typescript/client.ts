/**
 * intake's TypeScript client: openapi-fetch calls, typed by what openapi-typescript read from
 * intake's OpenAPI document (schema.ts, generated beside this file by `make clients`).
 */
import createClient, { type Client } from "openapi-fetch";

import type { components, paths } from "./schema.js";

export type { components, paths };
export type ServiceRequest = components["schemas"]["Request"];
export type Problem = components["schemas"]["Problem"];

/** How a caller proves who it is: an API key (systems, staff consoles) or a person's token. */
export type Credentials = { apiKey: string } | { token: string };

/** A client of intake at `baseUrl` (e.g. http://127.0.0.1:8001), sending `credentials`. */
export function createIntakeClient(baseUrl: string, credentials: Credentials): Client<paths> {
  const headers: Record<string, string> =
    "apiKey" in credentials
      ? { "X-API-Key": credentials.apiKey }
      : { Authorization: `Bearer ${credentials.token}` };
  return createClient<paths>({ baseUrl, headers });
}
