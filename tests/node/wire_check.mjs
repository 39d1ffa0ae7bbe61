// Calls the emulator with Cargo's own TypeScript client (@cargo-ai/api) and prints what it got as JSON.
//
// Why: the emulator is only useful if Cargo's real client can talk to it unchanged (URL building,
// headers, Axios-style query strings, error classes). pytest starts an emulator, runs this script and
// asserts on the printed JSON (tests/integration/test_api_wire.py).
//
// Environment: CARGO_BASE_URL (emulator root, without /v1), CARGO_TOKEN, CARGO_WORKSPACE_UUID,
// WORKFLOW_UUID, RUN_UUID, RELEASE_UUID, MODEL_UUID.
import { gunzipSync } from "node:zlib";

import { buildApi } from "@cargo-ai/api";

const env = (name) => {
  const value = process.env[name];
  if (value === undefined || value === "") {
    throw new Error(`missing environment variable ${name}`);
  }
  return value;
};

const baseUrl = env("CARGO_BASE_URL");
const workflowUuid = env("WORKFLOW_UUID");

const api = buildApi({ baseUrl, accessToken: env("CARGO_TOKEN"), workspaceUuid: env("CARGO_WORKSPACE_UUID") });
const intruder = buildApi({ baseUrl, accessToken: "not-a-token" });

const errorJson = (error) => ({
  type: error.type,
  status: error.status,
  message: error.message,
  reason: error.reason,
  data: error.data,
});

const results = {};
const call = async (name, fn) => {
  try {
    results[name] = { ok: true, value: await fn() };
  } catch (error) {
    results[name] = { ok: false, error: errorJson(error) };
  }
};

await call("workspaceCurrent", () => api.workspaceManagement.workspace.getCurrent());
await call("userCurrent", () => api.userManagement.user.getCurrent());
await call("runsList", () => api.orchestration.run.list({ workflowUuid, statuses: ["success", "error"], limit: 2 }));
await call("runsCount", () => api.orchestration.run.count({ workflowUuid, isFinished: true }));
await call("runGet", () => api.orchestration.run.get(env("RUN_UUID")));
await call("batchesList", () =>
  api.orchestration.batch.list({
    workflowUuids: [workflowUuid],
    statuses: ["success", "error"],
    isFinished: true,
    limit: 50,
    offset: 0,
  }),
);
await call("query", () => api.orchestration.query.execute({ query: "SELECT count() AS n FROM runs" }));
await call("spansList", () =>
  api.orchestration.span.list({ executionStartedAfter: "2026-03-01T00:00:00.000Z", nodeSlug: "enrich", limit: 10 }),
);
await call("releaseGet", () => api.orchestration.release.get(env("RELEASE_UUID")));
await call("releasesList", () => api.orchestration.release.list({ workflowUuid, statuses: ["deployed"] }));
await call("workflowsAll", () => api.orchestration.workflow.all());
await call("agentsAll", () => api.ai.agent.all());
await call("connectorsList", () => api.connection.connector.list({ integrationSlug: "clearbit" }));
await call("modelsAll", () => api.storage.model.all());
await call("segmentFetch", () =>
  api.segmentation.segment.fetch({
    modelUuid: env("MODEL_UUID"),
    filter: { conjonction: "and", groups: [] },
    fetchingLimit: 2,
  }),
);
await call("runsDownload", async () => {
  const { url } = await api.orchestration.run.download({ workflowUuid });
  const response = await fetch(url);
  const csv = gunzipSync(Buffer.from(await response.arrayBuffer())).toString("utf8");
  return { status: response.status, lines: csv.trim().split("\n") };
});
await call("validationError", () => api.orchestration.run.download({ workflowUuid, isFinished: true }));
await call("spansMissingField", () => api.orchestration.span.count({}));
// The seed's {"kind":"recordIds","recordIds":[...]}: the client's type wants modelUuid + ids instead.
await call("batchCreateSeedShape", () =>
  api.orchestration.batch.create({ workflowUuid, data: { kind: "recordIds", recordIds: ["cmp_0000001"] } }),
);
await call("batchNotFinished", () => api.orchestration.batch.download({ uuid: env("RUNNING_BATCH_UUID") }));
await call("unauthorized", () => intruder.workspaceManagement.workspace.getCurrent());

process.stdout.write(JSON.stringify(results));
