// flows.mjs --base URL --doc openapi.json: drives the real gateway through every operation of
// the public API (create, preview, read, update, relinquish, delete, config, the document,
// probes) and through its error answers (400, 401, 404, 405, 413, 415, 429, 431, 503), and
// checks each answer against the document: the status must be documented for the operation,
// the body must match the response schema of its media type, documented headers must match
// their schemas and required ones be there. The gateway must trust 127.0.0.1 as a proxy and
// exempt loopback, with a small failure budget (the driver, test_openapi_flows, starts it so).
import { readFileSync } from "node:fs";
import { randomUUID, randomBytes } from "node:crypto";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((a, v, i, all) => (v.startsWith("--") ? [...a, [v.slice(2), all[i + 1]]] : a), []),
);
const base = args.base;
const docText = readFileSync(args.doc, "utf8");
const doc = JSON.parse(docText);
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema(doc, "openapi.json");
const esc = (p) => String(p).replace(/~/g, "~0").replace(/\//g, "~1");
const deref = (node, ptr) => {
  while (node && node.$ref) {
    ptr = node.$ref.replace(/^#\//, "").split("/").map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
    node = ptr.reduce((o, k) => o[k], doc);
  }
  return [node, ptr];
};

const failures = [];
const seen = new Set();
let checks = 0;

// Validates |res| (status, headers, body text) as an answer of |method| |template|.
function check(what, template, method, res, text) {
  checks++;
  const fail = (msg) => failures.push(`${what}: ${method} ${template} -> ${res.status}: ${msg}`);
  const item = doc.paths[template];
  let op = item && item[method.toLowerCase()];
  let r0, rptr;
  if (!op && res.status === 405) {
    r0 = doc.components.responses.MethodNotAllowed; // a method the path does not have
    rptr = ["components", "responses", "MethodNotAllowed"];
  } else if (!op) {
    return fail("no such operation in the document");
  } else {
    r0 = op.responses[String(res.status)];
    rptr = ["paths", template, method.toLowerCase(), "responses", String(res.status)];
    if (!r0) return fail(`status not documented (documented: ${Object.keys(op.responses).join(" ")})`);
    seen.add(`${op.operationId} ${res.status}`);
  }
  const [r, ptr] = deref(r0, rptr);
  for (const [name, h0] of Object.entries(r.headers || {})) {
    const [h, hptr] = deref(h0, [...ptr, "headers", name]);
    const v = res.headers.get(name);
    if (v === null) {
      if (h.required) fail(`required header ${name} missing`);
      continue;
    }
    const validate = ajv.getSchema("openapi.json#/" + [...hptr, "schema"].map(esc).join("/"));
    if (!validate(v)) fail(`header ${name}: ${v}: ${ajv.errorsText(validate.errors)}`);
  }
  const ct = (res.headers.get("content-type") || "").split(";")[0].trim();
  if (!r.content) {
    if (text.length) fail("a body where the document has none");
    return;
  }
  if (!r.content[ct]) return fail(`content type ${ct} not documented (${Object.keys(r.content).join(" ")})`);
  const validate = ajv.getSchema("openapi.json#/" + [...ptr, "content", ct, "schema"].map(esc).join("/"));
  let body = text;
  if (ct === "application/json") {
    try {
      body = JSON.parse(text);
    } catch {
      return fail(`body is not JSON: ${text.slice(0, 100)}`);
    }
  }
  if (!validate(body)) fail(`body ${text.slice(0, 200)}: ${ajv.errorsText(validate.errors)}`);
}

// One request; |want| the expected status. Returns [response, text].
async function call(what, template, method, path, { headers = {}, body, want } = {}) {
  const init = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    if (!Object.keys(init.headers).some((h) => h.toLowerCase() === "content-type"))
      init.headers["Content-Type"] = "application/json";
  }
  const res = await fetch(base + path, init);
  const text = await res.text();
  if (want !== undefined && res.status !== want) failures.push(`${what}: ${method} ${path}: status ${res.status}, want ${want}: ${text.slice(0, 200)}`);
  check(what, template, method, res, text);
  const corr = headers["Mailbox-Correlation-ID"];
  // a valid id is echoed on every answer (the 431 may have dropped the header itself)
  if (corr && corr.length <= 128 && res.headers.get("mailbox-correlation-id") !== corr && res.status !== 431)
    failures.push(`${what}: correlation id not echoed`);
  return [res, text];
}

const M = "/v1/m", MID = "/v1/m/{mailboxIdentifier}";
const data = () => randomBytes(48).toString("base64");
const corr = () => ({ "Mailbox-Correlation-ID": randomUUID() });
const claim = (c, extra = {}) => ({ deviceClaim: c, ...corr(), ...extra });
const S = randomUUID(), R = randomUUID(), T = randomUUID();
const id = randomUUID();
const createBody = {
  mailboxIdentifier: id,
  payload: { type: "AES128", data: data() },
  displayInformation: { title: "Car Key", description: "A key to my car", imageUrl: "https://example.com/k.png" },
  notificationToken: { type: "com.apple.apns", tokenData: "abcd" },
  mailboxConfiguration: { accessRights: "RWD", timeToLive: "3600" },
};

// documents and probes
{
  const [, text] = await call("document", "/v1/openapi.json", "GET", "/v1/openapi.json", { want: 200 });
  if (text !== docText) failures.push("GET /v1/openapi.json is not gateway/openapi.json of this tree");
}
await call("config", "/v1/config", "GET", "/v1/config", { headers: corr(), want: 200 });
await call("config method", "/v1/config", "POST", "/v1/config", { want: 405 });
await call("liveness", "/healthz", "GET", "/healthz", { want: 200 });
await call("liveness method", "/healthz", "DELETE", "/healthz", { want: 405 });
for (let i = 0; ; i++) {
  const res = await fetch(base + "/readyz");
  await res.text();
  if (res.status === 200 || i > 100) break;
  await new Promise((r) => setTimeout(r, 100));
}
await call("readiness", "/readyz", "GET", "/readyz", { want: 200 });

// create
const c1 = corr();
await call("create", M, "POST", M, { headers: { deviceClaim: S, ...c1 }, body: createBody, want: 200 });
await call("create repeated", M, "POST", M, { headers: { "Mailbox-Device-Claim": S, ...c1 }, body: createBody, want: 201 });
await call("create, relay picks the id", M, "POST", M, {
  headers: { deviceClaim: S, "Mailbox-Request-ID": randomUUID() },
  body: { ...createBody, mailboxIdentifier: undefined, mailboxConfiguration: { expiration: new Date(Date.now() + 600e3).toISOString() } },
  want: 200,
});
await call("create existing id", M, "POST", M, { headers: claim(T), body: createBody, want: 401 });
await call("create bad json", M, "POST", M, { headers: claim(S), body: "{\"payload\":", want: 400 });
await call("create missing field", M, "POST", M, { headers: claim(S), body: { payload: createBody.payload }, want: 400 });
await call("create no claim", M, "POST", M, { headers: corr(), body: createBody, want: 400 });
await call("create two claims", M, "POST", M, { headers: claim(S, { "Mailbox-Device-Claim": T }), body: createBody, want: 400 });
await call("create bad correlation id", M, "POST", M, { headers: { deviceClaim: S, "Mailbox-Correlation-ID": "x".repeat(129) }, body: createBody });
await call("create text/plain", M, "POST", M, { headers: claim(S, { "Content-Type": "text/plain" }), body: "hello", want: 415 });
await call("create too large", M, "POST", M, { headers: claim(S), body: { ...createBody, pad: "x".repeat(70000) }, want: 413 });
await call("create headers too large", M, "POST", M, { headers: claim(S, { "X-Pad": "y".repeat(17000) }), body: createBody, want: 431 });
await call("create attestation, no verifier", M, "POST", M, {
  headers: claim(S, { deviceAttestation: Buffer.from("{}").toString("base64url") }),
  body: { ...createBody, mailboxIdentifier: randomUUID() },
  want: 503,
});
await call("create wrong method", M, "GET", M, { want: 405 });

// preview
await call("preview", MID, "GET", `${M}/${id}`, { headers: corr(), want: 200 });
await call("preview upper case id", MID, "GET", `${M}/${id.toUpperCase()}`, { want: 200 });
await call("preview unknown", MID, "GET", `${M}/${randomUUID()}`, { want: 404 });
await call("preview bad id", MID, "GET", `${M}/not-a-uuid`, { want: 400 });

// read secure
const c2 = corr();
await call("read binds receiver", MID, "POST", `${M}/${id}`, { headers: { deviceClaim: R, ...c2 }, want: 200 });
await call("read repeated", MID, "POST", `${M}/${id}`, { headers: { deviceClaim: R, ...c2 }, want: 201 });
await call("read by creator", MID, "POST", `${M}/${id}`, { headers: claim(S), want: 200 });
await call("read third device", MID, "POST", `${M}/${id}`, { headers: claim(T), want: 401 });
await call("read unknown", MID, "POST", `${M}/${randomUUID()}`, { headers: claim(R), want: 404 });
await call("read no claim", MID, "POST", `${M}/${id}`, { headers: corr(), want: 400 });
await call("read bad claim", MID, "POST", `${M}/${id}`, { headers: claim("not-a-uuid"), want: 400 });
await call("read text/plain body", MID, "POST", `${M}/${id}`, { headers: claim(R, { "Content-Type": "text/plain" }), body: "x", want: 415 });

// update
const upd = { payload: { type: "AEAD_AES_256_GCM", data: data() }, notificationToken: { type: "webhook", tokenData: "https://example.com/hook" } };
const c4 = corr();
await call("update", MID, "PUT", `${M}/${id}`, { headers: { deviceClaim: R, ...c4 }, body: upd, want: 200 });
await call("update repeated", MID, "PUT", `${M}/${id}`, { headers: { deviceClaim: R, ...c4 }, body: upd, want: 201 });
await call("update no token", MID, "PUT", `${M}/${id}`, { headers: claim(R), body: { payload: upd.payload }, want: 400 });
await call("update third device", MID, "PUT", `${M}/${id}`, { headers: claim(T), body: upd, want: 401 });
await call("update unknown", MID, "PUT", `${M}/${randomUUID()}`, { headers: claim(R), body: upd, want: 404 });
await call("update text/plain", MID, "PUT", `${M}/${id}`, { headers: claim(R, { "Content-Type": "text/plain" }), body: "x", want: 415 });

// relinquish
await call("relinquish by creator", MID, "PATCH", `${M}/${id}`, { headers: claim(S), want: 400 });
await call("relinquish third device", MID, "PATCH", `${M}/${id}`, { headers: claim(T), want: 401 });
const c5 = corr();
await call("relinquish", MID, "PATCH", `${M}/${id}`, { headers: { deviceClaim: R, ...c5 }, want: 200 });
await call("relinquish repeated", MID, "PATCH", `${M}/${id}`, { headers: { deviceClaim: R, ...c5 }, want: 201 });
await call("relinquish unknown", MID, "PATCH", `${M}/${randomUUID()}`, { headers: claim(R), want: 404 });

// delete
await call("delete third device", MID, "DELETE", `${M}/${id}`, { headers: claim(T), want: 401 });
await call("delete bad id", MID, "DELETE", `${M}/1234`, { headers: claim(S), want: 400 });
const c3 = corr();
await call("delete", MID, "DELETE", `${M}/${id}`, { headers: { deviceClaim: S, ...c3 }, want: 200 });
await call("delete again", MID, "DELETE", `${M}/${id}`, { headers: { deviceClaim: S, ...c3 }, want: 404 });
await call("mailbox wrong method", MID, "OPTIONS", `${M}/${id}`, { want: 405 });

// rate limits: a client behind the trusted proxy guesses ids until refused
{
  const behind = { "X-Forwarded-For": "192.0.2.77" };
  let got429 = false;
  for (let i = 0; i < 50 && !got429; i++) {
    const [res] = await call("guessing", MID, "POST", `${M}/${randomUUID()}`, { headers: claim(T, behind) });
    got429 = res.status === 429;
  }
  if (!got429) failures.push("guessing: never refused with 429");
  await call("refused client's preview", MID, "GET", `${M}/${randomUUID()}`, { headers: behind, want: 429 });
  await call("refused client's create", M, "POST", M, { headers: claim(T, behind), body: createBody, want: 429 });
  await call("refused client's update", MID, "PUT", `${M}/${id}`, { headers: claim(T, behind), body: upd, want: 429 });
  await call("refused client's relinquish", MID, "PATCH", `${M}/${id}`, { headers: claim(T, behind), want: 429 });
  await call("refused client's delete", MID, "DELETE", `${M}/${id}`, { headers: claim(T, behind), want: 429 });
}

// every documented (operation, status) pair that the flows did not produce is listed: the
// list must only hold answers a healthy stack cannot give on demand
const all = [];
for (const [, item] of Object.entries(doc.paths))
  for (const m of ["get", "put", "post", "delete", "patch"])
    if (item[m]) for (const s of Object.keys(item[m].responses)) all.push(`${item[m].operationId} ${s}`);
const generic = /\s(405|408|413|431|500|503|504)$/; // core limits and faults, any operation
const unseen = all.filter((k) => !seen.has(k) && !generic.test(k));
console.log(`${checks} answers checked against the document; ${seen.size} of ${all.length} documented (operation, status) pairs seen`);
console.log(`not produced here (besides 405/408/413/431/500/503/504): ${unseen.join(", ")}`);
if (failures.length) {
  console.error("FAIL:\n  " + failures.join("\n  "));
  process.exit(1);
}
console.log("ok: every answer matches gateway/openapi.json");
