// Validates payloads with zod (the version Cargo's client, @cargo-ai/api, ships) and prints the issues.
//
// Why: the emulator answers a payload that breaks its schema with zod's issue list (REFERENCE.md 1.6);
// tests/integration/test_zod_wording.py checks that list against zod itself, run here on the same
// payloads, with each schema given as the JSON Schema of the emulator's payload model.
//
// stdin: [{"schema": <JSON Schema>, "payload": <any JSON>}, ...]; stdout: one issue list per case.
import { z } from "zod";

const chunks = [];
for await (const chunk of process.stdin) {
  chunks.push(chunk);
}
const cases = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const results = cases.map(({ schema, payload }) => {
  const parsed = z.fromJSONSchema(schema).safeParse(payload);
  return parsed.success ? [] : parsed.error.issues;
});
process.stdout.write(JSON.stringify(results));
