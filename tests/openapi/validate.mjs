// validate.mjs DOC: checks that DOC is a valid OpenAPI 3.1 document (the official 3.1 schema,
// via @seriousme/openapi-schema-validator), that every $ref resolves, that every schema in it
// compiles under JSON Schema 2020-12 (ajv), and the project's own rules for the relay's
// contract: every operation has an operationId, documents 429 when it is rate limited and
// 500/503 always, and every error response uses the shared error body.
import { readFileSync } from "node:fs";
import { Validator } from "@seriousme/openapi-schema-validator";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const file = process.argv[2];
if (!file) {
  console.error("usage: node validate.mjs openapi.json");
  process.exit(2);
}
const doc = JSON.parse(readFileSync(file, "utf8"));
const problems = [];

const validator = new Validator();
const res = await validator.validate(structuredClone(doc));
if (!res.valid) problems.push(`not valid OpenAPI ${validator.version}: ${JSON.stringify(res.errors, null, 1)}`);
if (validator.version !== "3.1") problems.push(`OpenAPI version ${validator.version}, want 3.1`);

const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema(doc, "openapi.json");
const pointer = (parts) => "openapi.json#/" + parts.map((p) => String(p).replace(/~/g, "~0").replace(/\//g, "~1")).join("/");

const methods = ["get", "put", "post", "delete", "patch", "head", "options"];
const resolve = (node) => {
  while (node && node.$ref) {
    const parts = node.$ref.replace(/^#\//, "").split("/").map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
    node = parts.reduce((o, k) => (o ? o[k] : undefined), doc);
    if (!node) problems.push(`unresolved $ref`);
  }
  return node;
};
const opIds = new Set();
let ops = 0;
for (const [path, item] of Object.entries(doc.paths)) {
  for (const m of methods) {
    const op = item[m];
    if (!op) continue;
    ops++;
    const where = `${m.toUpperCase()} ${path}`;
    if (!op.operationId) problems.push(`${where}: no operationId`);
    else if (opIds.has(op.operationId)) problems.push(`${where}: duplicate operationId`);
    opIds.add(op.operationId);
    const mailbox = path.startsWith("/v1/m");
    const need = mailbox ? ["200", "400", "429", "500", "503"] : ["200", "500"];
    for (const s of need) if (!op.responses[s]) problems.push(`${where}: status ${s} not documented`);
    for (const p of [...(item.parameters || []), ...(op.parameters || [])]) resolve(p);
    for (const [status, r0] of Object.entries(op.responses)) {
      const r = resolve(r0);
      for (const h of Object.values(r.headers || {})) resolve(h);
      for (const [ct, media] of Object.entries(r.content || {})) {
        const base = r0.$ref ? r0.$ref.replace(/^#\//, "").split("/") : ["paths", path, m, "responses", status];
        try {
          ajv.getSchema(pointer([...base, "content", ct, "schema"])) ||
            problems.push(`${where} ${status} ${ct}: schema does not compile`);
        } catch (e) {
          problems.push(`${where} ${status} ${ct}: ${e.message}`);
        }
        if (Number(status) >= 400 && ct === "application/json") {
          const s = resolve(media.schema);
          const refsError = JSON.stringify(s).includes("#/components/schemas/Error");
          if (!refsError) problems.push(`${where} ${status}: error answer without the Error schema`);
        }
      }
    }
  }
}
for (const [name] of Object.entries(doc.components.schemas)) {
  try {
    ajv.getSchema(pointer(["components", "schemas", name]));
  } catch (e) {
    problems.push(`schema ${name}: ${e.message}`);
  }
}
if (problems.length) {
  console.error(`FAIL: ${file}:\n  ` + problems.join("\n  "));
  process.exit(1);
}
console.log(`ok: ${file} is valid OpenAPI ${validator.version}; ${ops} operations, ${Object.keys(doc.components.schemas).length} schemas compile`);
