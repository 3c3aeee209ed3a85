/**
 * What a console does with the client: submit a request for a resident with an API key, read it
 * back, list that resident's requests of one category made since. It prints what intake answered as one
 * JSON object; tests/e2e/test_typed_clients.py compiles it beside the generated client and runs
 * it against a running intake.
 *
 *   node dist/usage.js BASE_URL API_KEY RESIDENT_ID CATEGORY
 */
import { createIntakeClient, type Problem, type ServiceRequest } from "./client.js";

function fail(step: string, status: number, problem: Problem | undefined): never {
  throw new Error(`${step}: ${status} ${problem?.title ?? ""}: ${problem?.detail ?? ""}`);
}

async function main(baseUrl: string, apiKey: string, residentId: string, category: string) {
  const intake = createIntakeClient(baseUrl, { apiKey });
  const since = new Date().toISOString();

  const submitted = await intake.POST("/v1/requests", {
    body: {
      category,
      summary: "Sharpen two kitchen knives",
      details: "Submitted by the TypeScript client",
      resident_id: residentId,
      external_ref: "console-ts-1",
    },
  });
  if (submitted.data === undefined) fail("submit", submitted.response.status, submitted.error);
  const created: ServiceRequest = submitted.data;
  if (created.id === undefined) throw new Error("submit: the request came back without an id");

  const read = await intake.GET("/v1/requests/{request_id}", {
    params: { path: { request_id: created.id } },
  });
  if (read.data === undefined) fail("read", read.response.status, read.error);

  const listed = await intake.GET("/v1/requests", {
    params: {
      query: { resident_id: residentId, category: [category], created_after: since, sort: "oldest" },
    },
  });
  if (listed.data === undefined) fail("list", listed.response.status, listed.error);

  console.log(
    JSON.stringify({
      created: {
        status: submitted.response.status,
        id: created.id,
        location: submitted.response.headers.get("Location"),
      },
      read: {
        id: read.data.id,
        category: read.data.category,
        summary: read.data.summary,
        details: read.data.details,
        resident_id: read.data.resident_id,
        external_ref: read.data.external_ref,
        on_behalf: read.data.on_behalf,
        channel: read.data.channel,
      },
      listed: listed.data.map((request) => request.id),
      pagination: JSON.parse(listed.response.headers.get("X-Pagination") ?? "null"),
    }),
  );
}

const [baseUrl, apiKey, residentId, category] = process.argv.slice(2);
if (!baseUrl || !apiKey || !residentId || !category) {
  console.error("usage: node dist/usage.js BASE_URL API_KEY RESIDENT_ID CATEGORY");
  process.exit(2);
}
await main(baseUrl, apiKey, residentId, category);
