// Checks rendered Kubernetes manifests (one YAML stream per overlay) and the Dockerfile.
//   node check-manifests.mjs --src REPO --bin BIN_DIR name=rendered.yaml ...
// Run by tests/deploy/check-deploy from a directory whose node_modules has the packages of
// tests/deploy/package.json. Prints one line per failed rule and a closing
// "N passed, N failed" line; exits 1 on any failure.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";

// ---- what the binaries do (brief: default addresses; each is checked against --help) ----
// ports: what every pod must expose; optPorts: exposed only when configured (the gateway's
// own TLS listener); defaults: the binary's --help defaults (brief), compared when built.
const SERVICES = {
  gateway: {
    kind: "Deployment",
    ports: { http: 8080, admin: 9100 },
    optPorts: { https: 8443 },
    listenEnv: { TIGRESS_HTTP_LISTEN: 8080, TIGRESS_ADMIN_LISTEN: 9100 },
    optListenEnv: { TIGRESS_HTTPS_LISTEN: 8443 },
    defaults: { TIGRESS_HTTP_LISTEN: 8080, TIGRESS_HTTPS_LISTEN: 8443, TIGRESS_ADMIN_LISTEN: 9100 },
    probe: "http",
    stateful: false,
  },
  "mailbox-store": {
    kind: "StatefulSet",
    ports: { grpc: 7001, admin: 9101 },
    listenEnv: { TIGRESS_LISTEN: 7001, TIGRESS_ADMIN_LISTEN: 9101 },
    probe: "grpc",
    stateful: true,
    callers: ["gateway"],
  },
  "push-dispatch": {
    kind: "StatefulSet",
    ports: { grpc: 7002, admin: 9102 },
    listenEnv: { TIGRESS_LISTEN: 7002, TIGRESS_ADMIN_LISTEN: 9102 },
    probe: "grpc",
    stateful: true,
    callers: ["gateway", "mailbox-store"],
  },
  "attestation-verifier": {
    kind: "Deployment",
    ports: { grpc: 7003, admin: 9103 },
    listenEnv: { TIGRESS_LISTEN: 7003, TIGRESS_ADMIN_LISTEN: 9103 },
    probe: "grpc",
    stateful: false,
    callers: ["gateway"],
  },
};
for (const s of Object.values(SERVICES)) {
  s.optPorts = s.optPorts || {};
  s.optListenEnv = s.optListenEnv || {};
  s.defaults = s.defaults || s.listenEnv;
}
const TARGET_ENV = {
  TIGRESS_PUSH_TARGET: "push-dispatch",
  TIGRESS_ATTESTATION_TARGET: "attestation-verifier",
};
const UID = 65532;
// The PostgreSQL engine (TIGRESS_ENGINE=postgres): mailbox-store is then a stateless Deployment
// and the database is where deploy/k8s/examples/postgres-ha/ puts it (a CloudNativePG Cluster
// "tigress-db" in the namespace "tigress-db"), or a managed service outside the cluster.
const DATABASE_PEER = { ns: "tigress-db", labels: { "cnpg.io/cluster": "tigress-db" } };
const DATABASE_PORT = 5432;

// Keys allowed in a container and a pod spec: schema validation accepts unknown fields, so a
// typo such as "livenesProbe" would otherwise pass silently.
const CONTAINER_KEYS = new Set([
  "name", "image", "imagePullPolicy", "command", "args", "workingDir", "env", "envFrom",
  "ports", "startupProbe", "readinessProbe", "livenessProbe", "lifecycle", "resources",
  "securityContext", "volumeMounts", "terminationMessagePolicy", "terminationMessagePath",
]);
const POD_SPEC_KEYS = new Set([
  "serviceAccountName", "automountServiceAccountToken", "terminationGracePeriodSeconds",
  "securityContext", "containers", "initContainers", "volumes", "affinity",
  "topologySpreadConstraints", "nodeSelector", "tolerations", "priorityClassName",
  "enableServiceLinks",
]);
const PSS_VOLUME_TYPES = ["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
  "persistentVolumeClaim", "projected", "secret"];

// ---- arguments ----
const args = process.argv.slice(2);
let src = "", binDir = "", noApt = false;
const overlays = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--src") src = args[++i];
  else if (args[i] === "--bin") binDir = args[++i];
  else if (args[i] === "--no-apt") noApt = true;
  else {
    const eq = args[i].indexOf("=");
    overlays.push({ name: args[i].slice(0, eq), file: args[i].slice(eq + 1) });
  }
}

let passed = 0, failed = 0;
const notes = [];
function check(cond, what) {
  if (cond) passed++;
  else {
    failed++;
    console.log(`FAIL: ${what}`);
  }
  return cond;
}

// ---- helpers ----
function matchSelector(sel, labels) {
  if (!sel) return false;
  for (const [k, v] of Object.entries(sel.matchLabels || {})) if (labels[k] !== v) return false;
  for (const e of sel.matchExpressions || []) {
    const has = Object.prototype.hasOwnProperty.call(labels, e.key);
    if (e.operator === "In" && !(has && e.values.includes(labels[e.key]))) return false;
    if (e.operator === "NotIn" && has && e.values.includes(labels[e.key])) return false;
    if (e.operator === "Exists" && !has) return false;
    if (e.operator === "DoesNotExist" && has) return false;
  }
  return true;
}
const portOf = (addr) => Number(String(addr).split(":").pop());
const envMap = (c) => Object.fromEntries((c.env || []).map((e) => [e.name, e.value]));

async function modelFor(apiVersion, kind) {
  const mod = apiVersion.includes("/") ? apiVersion : `${apiVersion}`;
  const m = await import(`kubernetes-models/${mod}`);
  return m[kind];
}

// ---- binaries: --help gives the real flag table (env names and defaults) ----
const helpOf = {};
for (const name of Object.keys(SERVICES)) {
  const exe = binDir ? join(binDir, name) : "";
  if (!exe || !existsSync(exe)) {
    notes.push(`${name} not built: its flags and defaults were not compared with the manifests`);
    continue;
  }
  let out = "";
  try {
    out = execFileSync(exe, ["--help"], { encoding: "utf8", timeout: 20000 });
  } catch (e) {
    check(false, `${name} --help failed: ${e.message.split("\n")[0]}`);
    continue;
  }
  const vars = {};
  for (const m of out.matchAll(/\((TIGRESS_[A-Z0-9_]+), default "([^"]*)"\)/g)) vars[m[1]] = m[2];
  helpOf[name] = vars;
  for (const [v, port] of Object.entries(SERVICES[name].defaults)) {
    if (check(v in vars, `${name} --help has no ${v}`))
      check(portOf(vars[v]) === port,
        `${name}: default of ${v} is "${vars[v]}", want port ${port} (brief's defaults)`);
  }
}

// ---- the Dockerfile ----
function checkDockerfile() {
  const path = join(src, "deploy/docker/Dockerfile");
  if (!check(existsSync(path), "deploy/docker/Dockerfile exists")) return;
  const text = readFileSync(path, "utf8").replace(/\\\n/g, " ");
  const lines = text.split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
  const froms = lines.filter((l) => /^FROM\s/i.test(l));
  check(froms.length >= 2, "Dockerfile is multi-stage (>= 2 FROM)");
  for (const f of froms) check(/debian:bookworm/.test(f), `Dockerfile stage on Debian bookworm: ${f}`);
  const runs = lines.filter((l) => /^RUN\s/i.test(l)).join("\n");
  check(/deploy\/install-deps --build/.test(runs), "Dockerfile runs deploy/install-deps --build");
  check(/deploy\/build\b/.test(runs), "Dockerfile runs deploy/build (the script tests/run uses)");
  const lastFrom = lines.map((l) => /^FROM\s/i.test(l)).lastIndexOf(true);
  const runtime = lines.slice(lastFrom);
  const users = runtime.filter((l) => /^USER\s/i.test(l));
  check(users.length > 0 && /^USER\s+65532(:65532)?$/.test(users[users.length - 1]),
    "runtime stage ends as USER 65532");
  const copies = runtime.filter((l) => /^COPY\s+--from=/i.test(l)).join(" ");
  for (const b of Object.keys(SERVICES))
    check(new RegExp(`/${b}\\b`).test(copies), `runtime stage copies the ${b} binary`);
  check(!runtime.some((l) => /^COPY\s+(?!--from)/i.test(l)),
    "runtime stage copies nothing but build outputs (no sources)");
  // The runtime package list, then each binary's direct library needs against it.
  const inst = runtime.join(" ").match(/apt-get install ([^&]*)/);
  const pkgs = inst ? inst[1].split(/\s+/).filter((t) => t && !t.startsWith("-")) : [];
  check(pkgs.length > 0, "runtime stage installs its runtime libraries with apt-get");
  // One apt-cache call for all names (each call reads the whole package cache: seconds).
  if (noApt) {
    // self-test runs: the names were checked by the main run
  } else {
    let shown = null;
    try {
      shown = execFileSync("apt-cache", ["show", "--no-all-versions", ...pkgs],
        { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], maxBuffer: 64 << 20 });
    } catch (e) {
      shown = e.stdout ? String(e.stdout) : null; // exit 100 when some name is unknown
    }
    if (shown === null) notes.push("no apt-cache: runtime package names not verified");
    else for (const p of pkgs) check(shown.includes(`Package: ${p}\n`), `runtime package ${p} is known to apt (bookworm)`);
  }
  // Always present in debian:bookworm-slim (essential or required by dpkg/apt).
  const base = new Set(["libc6", "libgcc-s1", "libstdc++6", "zlib1g", "libzstd1", "liblzma5",
    "libbz2-1.0", "libselinux1", "libmd0", "libcrypt1", "libpcre2-8-0"]);
  const neededPkgs = new Set();
  let builtAll = true, sanitized = false;
  // First every binary's direct needs (DT_NEEDED) and where ldd finds them...
  const needs = []; // {b, soname, cands}
  for (const b of Object.keys(SERVICES)) {
    const exe = binDir ? join(binDir, b) : "";
    if (!exe || !existsSync(exe)) { builtAll = false; continue; }
    try {
      const ldd = execFileSync("ldd", [exe], { encoding: "utf8" });
      const needed = execFileSync("readelf", ["-d", exe], { encoding: "utf8" });
      for (const m of needed.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)) {
        const soname = m[1];
        if (/^lib(asan|ubsan|lsan|tsan)\b/.test(soname)) { sanitized = true; continue; }
        const lm = ldd.match(new RegExp(`${soname.replace(/[.+]/g, "\\$&")} => (\\S+)`));
        if (!check(lm, `${b}: ${soname} resolves (ldd)`)) continue;
        // dpkg knows a file by the path its package installed, which after the /usr merge may
        // be /usr/lib/... while ldd reports /lib/...: try both, and the symlink target.
        let real = lm[1];
        try { real = execFileSync("readlink", ["-f", lm[1]], { encoding: "utf8" }).trim(); } catch { /* keep */ }
        const cands = [...new Set([lm[1], real].flatMap((p) => [p, p.replace(/^\/lib\//, "/usr/lib/")]))];
        needs.push({ b, soname, cands });
      }
    } catch (e) {
      notes.push(`${b}: ldd/readelf unavailable (${e.message.split("\n")[0]})`);
      builtAll = false;
    }
  }
  // A sanitizer build links differently (no --as-needed trimming of gRPC's absl/re2/c-ares
  // dependencies) and is not what the image ships: its link set says nothing about the image.
  if (sanitized) {
    notes.push("sanitizer build: the runtime package set is checked only against a normal build");
    needs.length = 0;
  }
  // ...then one dpkg -S for all of them (each call reads the whole file database: slow).
  const owner = {};
  if (needs.length) {
    let out = "";
    const all = [...new Set(needs.flatMap((n) => n.cands))];
    try {
      out = execFileSync("dpkg", ["-S", ...all], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    } catch (e) {
      out = e.stdout ? String(e.stdout) : ""; // exit 1 when some candidate path is unknown
    }
    for (const line of out.split("\n")) {
      const m = line.match(/^([^:,\s]+)(?::[a-z0-9]+)?: (\/\S+)$/);
      if (m) owner[m[2]] = m[1];
    }
  }
  for (const { b, soname, cands } of needs) {
    const pkg = cands.map((p) => owner[p]).find(Boolean);
    if (!pkg) { notes.push(`${b}: ${soname} is not from a Debian package`); continue; }
    neededPkgs.add(pkg);
    check(base.has(pkg) || pkgs.includes(pkg),
      `${b} needs ${soname} from ${pkg}, which the Dockerfile's runtime stage does not install`);
  }
  // And nothing more: each runtime package is one some binary links (a sanitizer build links
  // more, so it is not the image's build).
  if (builtAll && !sanitized) {
    for (const p of pkgs)
      if (p !== "ca-certificates")
        check(neededPkgs.has(p), `runtime package ${p} is linked by none of the four binaries (drop it)`);
  }
}

// ---- network policy evaluation (enough of the semantics for these manifests) ----
function peerMatches(peer, from, policyNs, nsLabels) {
  if (peer.ipBlock) return from.external === true; // only non-pod addresses
  if (from.external) return false;
  const nsOk = peer.namespaceSelector
    ? matchSelector(peer.namespaceSelector, nsLabels(from.ns))
    : from.ns === policyNs;
  const podOk = peer.podSelector ? matchSelector(peer.podSelector, from.labels) : true;
  return nsOk && podOk;
}
function portMatches(rulePorts, port) {
  if (!rulePorts || rulePorts.length === 0) return true;
  return rulePorts.some((p) => {
    if (p.protocol && p.protocol !== "TCP") return false;
    if (p.port === undefined) return true;
    const lo = Number(p.port), hi = p.endPort ? Number(p.endPort) : lo;
    return port >= lo && port <= hi;
  });
}
function allowed(policies, dir, subject, peer, port, nsLabels) {
  const sel = policies.filter((p) => p.metadata.namespace === subject.ns &&
    (p.spec.policyTypes || ["Ingress"]).includes(dir) && matchSelector(p.spec.podSelector, subject.labels));
  if (sel.length === 0) return true; // not isolated
  const key = dir === "Ingress" ? "ingress" : "egress";
  const peersKey = dir === "Ingress" ? "from" : "to";
  return sel.some((p) => (p.spec[key] || []).some((r) =>
    portMatches(r.ports, port) &&
    (!r[peersKey] || r[peersKey].length === 0 ||
      r[peersKey].some((pe) => peerMatches(pe, peer, p.metadata.namespace, nsLabels)))));
}

// ---- one overlay ----
async function checkOverlay(name, file) {
  const where = `[${name}]`;
  const docs = parseAllDocuments(readFileSync(file, "utf8"));
  const objs = [];
  for (const d of docs) {
    if (d.errors.length) { check(false, `${where} YAML: ${d.errors[0].message}`); continue; }
    const o = d.toJS();
    if (o) objs.push(o);
  }
  check(objs.length > 0, `${where} renders objects`);

  // Schema validation, every object.
  for (const o of objs) {
    const id = `${where} ${o.kind}/${o.metadata?.name}`;
    let Model;
    try { Model = await modelFor(o.apiVersion, o.kind); } catch { Model = undefined; }
    if (!check(typeof Model === "function", `${id}: no schema for ${o.apiVersion} ${o.kind}`)) continue;
    // kustomize folds long base64 values over lines; the API server's decoder skips the
    // newlines, the schema's "byte" format does not.
    const obj = o.kind === "Secret" && o.data
      ? { ...o, data: Object.fromEntries(Object.entries(o.data).map(([k, v]) => [k, String(v).replace(/\s+/g, "")])) }
      : o;
    try {
      new Model(obj).validate();
      passed++;
    } catch (e) {
      check(false, `${id}: schema: ${e.message}`);
    }
  }

  const byKind = (k) => objs.filter((o) => o.kind === k);
  const find = (k, n) => objs.find((o) => o.kind === k && o.metadata.name === n);
  const nsObjs = byKind("Namespace");
  check(nsObjs.length === 1, `${where} one Namespace`);
  const ns = nsObjs[0]?.metadata.name;
  check(nsObjs[0]?.metadata.labels?.["pod-security.kubernetes.io/enforce"] === "restricted",
    `${where} Namespace enforces the restricted Pod Security Standard`);
  for (const o of objs) {
    if (o.kind !== "Namespace")
      check(o.metadata.namespace === ns, `${where} ${o.kind}/${o.metadata.name} is in namespace ${ns}`);
  }
  const nsLabels = (n) => n === ns
    ? { ...(nsObjs[0]?.metadata.labels || {}), "kubernetes.io/metadata.name": n }
    : { "kubernetes.io/metadata.name": n };

  const configMaps = Object.fromEntries(byKind("ConfigMap").map((c) => [c.metadata.name, c.data || {}]));
  const secretsDoc = readFileSync(join(src, "deploy/k8s/base/secrets.md"), "utf8");
  const cfg0 = Object.assign({}, ...Object.values(configMaps));
  const workloads = objs.filter((o) => ["Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"].includes(o.kind));
  const podLabelsOf = {};

  // The store's engine decides its shape: RocksDB = StatefulSet shards, PostgreSQL = Deployment.
  const storeW = workloads.find((o) => o.metadata.name === "mailbox-store");
  const storeEnv = storeW ? envMap(storeW.spec.template.spec.containers[0] || {}) : {};
  const engine = storeEnv.TIGRESS_ENGINE ?? cfg0.TIGRESS_ENGINE ?? "rocksdb";
  check(["rocksdb", "postgres"].includes(engine), `${where} TIGRESS_ENGINE is rocksdb or postgres (got ${engine})`);
  const wants = { ...SERVICES };
  if (engine === "postgres")
    wants["mailbox-store"] = { ...SERVICES["mailbox-store"], kind: "Deployment", stateful: false };

  for (const [svcName, want] of Object.entries(wants)) {
    const w = find(want.kind, svcName);
    if (!check(w, `${where} ${want.kind}/${svcName} exists`)) continue;
    const id = `${where} ${w.kind}/${svcName}`;
    const tpl = w.spec.template;
    podLabelsOf[svcName] = tpl.metadata.labels || {};
    check(matchSelector(w.spec.selector, tpl.metadata.labels || {}), `${id}: selector matches its pods`);
    const ps = tpl.spec;
    for (const k of Object.keys(ps)) check(POD_SPEC_KEYS.has(k), `${id}: unexpected pod spec key "${k}" (typo?)`);
    check(ps.automountServiceAccountToken === false, `${id}: no service account token mounted`);
    check(ps.serviceAccountName === svcName && find("ServiceAccount", svcName),
      `${id}: runs as its own ServiceAccount ${svcName}`);
    for (const k of ["hostNetwork", "hostPID", "hostIPC"]) check(!ps[k], `${id}: no ${k}`);
    const psc = ps.securityContext || {};
    check(psc.runAsNonRoot === true && psc.runAsUser === UID, `${id}: pod runs as non-root uid ${UID}`);
    check(psc.seccompProfile?.type === "RuntimeDefault", `${id}: pod seccomp RuntimeDefault`);
    for (const v of ps.volumes || []) {
      const types = Object.keys(v).filter((k) => k !== "name");
      check(types.length === 1 && PSS_VOLUME_TYPES.includes(types[0]),
        `${id}: volume ${v.name} type ${types} allowed by restricted PSS`);
      if (v.secret) {
        check(find("Secret", v.secret.secretName) || secretsDoc.includes("`" + v.secret.secretName + "`"),
          `${id}: Secret ${v.secret.secretName} is rendered or documented in deploy/k8s/base/secrets.md`);
      }
      if (v.configMap) check(configMaps[v.configMap.name], `${id}: ConfigMap ${v.configMap.name} exists`);
    }
    const ann = tpl.metadata.annotations || {};
    check(ann["prometheus.io/scrape"] === "true" && Number(ann["prometheus.io/port"]) === want.ports.admin &&
      ann["prometheus.io/path"] === "/metrics",
      `${id}: prometheus.io scrape annotations on admin port ${want.ports.admin}`);
    check(ps.containers.length === 1, `${id}: one container`);

    for (const c of [...(ps.initContainers || []), ...ps.containers]) {
      const cid = `${id} container ${c.name}`;
      for (const k of Object.keys(c)) check(CONTAINER_KEYS.has(k), `${cid}: unexpected key "${k}" (typo?)`);
      for (const p of ["startupProbe", "readinessProbe", "livenessProbe"]) check(c[p], `${cid}: has ${p}`);
      const r = c.resources || {};
      for (const a of ["requests", "limits"])
        for (const res of ["cpu", "memory"]) check(r[a]?.[res], `${cid}: resources.${a}.${res}`);
      const sc = c.securityContext || {};
      check(sc.runAsNonRoot === true, `${cid}: runAsNonRoot`);
      check(sc.runAsUser === UID || (sc.runAsUser === undefined && psc.runAsUser === UID), `${cid}: runAsUser ${UID}`);
      check(sc.readOnlyRootFilesystem === true, `${cid}: readOnlyRootFilesystem`);
      check(sc.allowPrivilegeEscalation === false, `${cid}: allowPrivilegeEscalation false`);
      check(!sc.privileged, `${cid}: not privileged`);
      check((sc.capabilities?.drop || []).includes("ALL"), `${cid}: drops ALL capabilities`);
      check((sc.capabilities?.add || []).every((x) => x === "NET_BIND_SERVICE"), `${cid}: adds no capability`);
      check((sc.seccompProfile?.type || psc.seccompProfile?.type) === "RuntimeDefault", `${cid}: seccomp RuntimeDefault`);
      check(c.command?.[0] === `/usr/local/bin/${svcName}`, `${cid}: runs /usr/local/bin/${svcName}`);
      for (const ef of c.envFrom || [])
        if (ef.configMapRef) check(configMaps[ef.configMapRef.name], `${cid}: envFrom ConfigMap ${ef.configMapRef.name} exists`);

      // Ports: exactly the binary's (plus configured optional ones), with the documented names.
      const env = envMap(c);
      const cports = Object.fromEntries((c.ports || []).map((p) => [p.name, p.containerPort]));
      const wantPorts = { ...want.ports };
      for (const [pn, port] of Object.entries(want.optPorts)) if (pn in cports) wantPorts[pn] = port;
      check(JSON.stringify(Object.entries(cports).sort()) === JSON.stringify(Object.entries(wantPorts).sort()),
        `${cid}: ports ${JSON.stringify(cports)} = ${JSON.stringify(wantPorts)}`);
      for (const [v, port] of Object.entries(want.listenEnv))
        check(env[v] && env[v].startsWith("0.0.0.0:") && portOf(env[v]) === port,
          `${cid}: ${v}=0.0.0.0:${port} (got ${env[v]})`);
      for (const [v, port] of Object.entries(want.optListenEnv))
        if (v in env) check(env[v] === `0.0.0.0:${port}` && Object.values(cports).includes(port),
          `${cid}: ${v}=0.0.0.0:${port} with a container port ${port} (got ${env[v]})`);
      // Probes: grpc on the gRPC port for backends; HTTP /healthz and /readyz on 8080 for the gateway.
      for (const p of ["startupProbe", "readinessProbe", "livenessProbe"]) {
        const pr = c[p];
        if (!pr) continue;
        if (want.probe === "grpc") {
          check(pr.grpc && pr.grpc.port === want.ports.grpc, `${cid}: ${p} is grpc on ${want.ports.grpc}`);
        } else {
          const path = p === "readinessProbe" ? "/readyz" : "/healthz";
          check(pr.httpGet && pr.httpGet.path === path &&
            (pr.httpGet.port === want.ports.http || pr.httpGet.port === "http"),
            `${cid}: ${p} is GET ${path} on ${want.ports.http}`);
        }
      }
      // Data directory is the volume claim (stateful services).
      if (want.stateful) {
        const vct = (w.spec.volumeClaimTemplates || []).map((t) => t.metadata.name);
        check(vct.length > 0, `${cid}: StatefulSet has a volumeClaimTemplate`);
        const m = (c.volumeMounts || []).find((vm) => vct.includes(vm.name));
        check(m && env.TIGRESS_DATA_DIR === m.mountPath, `${cid}: TIGRESS_DATA_DIR is the claimed volume`);
        const hs = find("Service", w.spec.serviceName);
        check(hs && hs.spec.clusterIP === "None", `${cid}: serviceName ${w.spec.serviceName} is a headless Service`);
      }
      check((c.volumeMounts || []).some((vm) => vm.mountPath === "/tmp"), `${cid}: writable /tmp (read-only root)`);

      // SIGTERM drains within the grace period: preStop sleep + the binary's drain timeout.
      const h0 = helpOf[svcName];
      if (h0) {
        const drainVar = ["TIGRESS_DRAIN_TIMEOUT_MS", "TIGRESS_SHUTDOWN_GRACE_MS"].find((v) => v in h0);
        const drainMs = Number(env[drainVar] ?? (cfg0[drainVar] ?? h0[drainVar] ?? 0));
        const pre = c.lifecycle?.preStop?.exec?.command || [];
        const preMs = pre[0] === "/bin/sleep" ? Number(pre[1]) * 1000 : 0;
        const graceMs = (ps.terminationGracePeriodSeconds ?? 30) * 1000;
        check(preMs + drainMs + 2000 <= graceMs,
          `${cid}: terminationGracePeriodSeconds ${graceMs / 1000}s < preStop ${preMs} ms + ${drainVar} ${drainMs} ms + 2 s`);
      }
      // Every TIGRESS_ variable this container gets is a flag of its binary (typos and renames).
      const h = helpOf[svcName];
      if (h) {
        for (const v of Object.keys(env).filter((k) => k.startsWith("TIGRESS_")))
          check(v in h, `${cid}: ${v} is not an option of ${svcName} (see ${svcName} --help)`);
      }
    }
  }

  // ConfigMap variables: each one is read by at least one binary (when all are built).
  if (Object.keys(helpOf).length === Object.keys(SERVICES).length) {
    for (const [cm, data] of Object.entries(configMaps))
      for (const v of Object.keys(data).filter((k) => k.startsWith("TIGRESS_")))
        check(Object.values(helpOf).some((h) => v in h), `${where} ConfigMap ${cm}: ${v} is no binary's option`);
  }

  // Backend targets: headless Services, round_robin, and the shard list = StatefulSet pods.
  const cfg = Object.assign({}, ...Object.values(configMaps));
  check(cfg.TIGRESS_LB_POLICY === "round_robin", `${where} TIGRESS_LB_POLICY=round_robin`);
  for (const [v, svc] of Object.entries(TARGET_ENV)) {
    const want = `dns:///${svc}.${ns}.svc.cluster.local:${SERVICES[svc].ports.grpc}`;
    check(cfg[v] === want, `${where} ${v}=${want} (got ${cfg[v]})`);
  }
  const store = engine === "rocksdb" && find("StatefulSet", "mailbox-store");
  if (engine === "postgres") checkPostgresStore(where, ns, cfg, find, byKind, nsLabels, podLabelsOf);
  if (store) {
    const n = store.spec.replicas ?? 1;
    const want = Array.from({ length: n },
      (_, i) => `mailbox-store-${i}.${store.spec.serviceName}.${ns}.svc.cluster.local:7001`).join(",");
    check(cfg.TIGRESS_STORE_SHARDS === want,
      `${where} TIGRESS_STORE_SHARDS lists the ${n} StatefulSet pods: want ${want}, got ${cfg.TIGRESS_STORE_SHARDS}`);
  }

  // Services select pods, and their target ports exist there.
  for (const s of byKind("Service")) {
    const id = `${where} Service/${s.metadata.name}`;
    const pods = workloads.filter((w) => matchSelector({ matchLabels: s.spec.selector || {} }, w.spec.template.metadata.labels || {}));
    if (!check(s.spec.selector && pods.length > 0, `${id}: selects a pod`)) continue;
    for (const p of s.spec.ports) {
      const ok = pods.every((w) => w.spec.template.spec.containers.some((c) => (c.ports || []).some((cp) =>
        cp.name === p.targetPort || cp.containerPort === p.targetPort || (p.targetPort === undefined && cp.containerPort === p.port))));
      check(ok, `${id}: port ${p.name} -> ${p.targetPort} exists in the selected pods`);
      const svc = SERVICES[s.metadata.name];
      if (svc) check({ ...svc.ports, ...svc.optPorts }[p.name] === p.port, `${id}: port ${p.name}=${p.port} is the binary's default`);
    }
    const svc = SERVICES[s.metadata.name];
    if (svc && svc.probe === "grpc") check(s.spec.clusterIP === "None", `${id}: headless (round_robin over pods)`);
  }
  for (const h of byKind("HorizontalPodAutoscaler")) {
    const t = h.spec.scaleTargetRef;
    check(find(t.kind, t.name), `${where} HPA/${h.metadata.name} targets an existing ${t.kind}/${t.name}`);
    if (find(t.kind, t.name)) check(find(t.kind, t.name).spec.replicas === undefined,
      `${where} ${t.kind}/${t.name} has no fixed replicas (its HPA owns them)`);
  }
  for (const p of byKind("PodDisruptionBudget"))
    check(workloads.some((w) => matchSelector(p.spec.selector, w.spec.template.metadata.labels || {})),
      `${where} PDB/${p.metadata.name} selects pods`);
  check(find("HorizontalPodAutoscaler", "gateway") && find("PodDisruptionBudget", "gateway"), `${where} gateway has an HPA and a PDB`);
  check(find("HorizontalPodAutoscaler", "attestation-verifier"), `${where} attestation-verifier has an HPA`);
  for (const ing of byKind("Ingress")) {
    const id = `${where} Ingress/${ing.metadata.name}`;
    check((ing.spec.tls || []).length > 0, `${id}: has TLS`);
    for (const r of ing.spec.rules || [])
      for (const p of r.http?.paths || []) {
        const s = find("Service", p.backend.service?.name);
        check(s && s.spec.ports.some((sp) => sp.name === p.backend.service.port.name || sp.port === p.backend.service.port.number),
          `${id}: backend ${p.backend.service?.name} exists with that port`);
      }
  }
  if (name === "prod") check(byKind("Ingress").length > 0, `${where} prod has an Ingress`);

  // Network policies: who can reach which port.
  const pols = byKind("NetworkPolicy");
  check(pols.some((p) => Object.keys(p.spec.podSelector || {}).length === 0 &&
    (p.spec.policyTypes || []).includes("Ingress") && (p.spec.policyTypes || []).includes("Egress") &&
    !p.spec.ingress && !p.spec.egress), `${where} a default-deny NetworkPolicy (ingress and egress)`);
  const peers = {
    ...Object.fromEntries(Object.keys(SERVICES).map((s) => [s, { ns, labels: podLabelsOf[s] || {} }])),
    "a pod in another namespace": { ns: "elsewhere", labels: { app: "x" } },
    "the ingress controller": { ns: "ingress-nginx", labels: { "app.kubernetes.io/name": "ingress-nginx" } },
    prometheus: { ns: "monitoring", labels: { "app.kubernetes.io/name": "prometheus" } },
  };
  const ingressCtl = byKind("Ingress").length > 0;
  const gw = find("Deployment", "gateway");
  const gatewayServesTls = !!gw && gw.spec.template.spec.containers.some((c) => (c.ports || []).some((p) => p.name === "https"));
  for (const [svcName, want] of Object.entries(SERVICES)) {
    const subject = { ns, labels: podLabelsOf[svcName] || {} };
    for (const [pname, port] of Object.entries({ ...want.ports, ...want.optPorts })) {
      for (const [peerName, peer] of Object.entries(peers)) {
        if (peerName === svcName) continue;
        let expect;
        if (pname === "admin") expect = peerName === "prometheus";
        else if (svcName === "gateway") {
          // From outside: through the ingress controller when there is one (plain HTTP only).
          // 8443 only where the gateway's own TLS listener is enabled.
          const served = pname !== "https" || gatewayServesTls;
          expect = served && (ingressCtl ? peerName === "the ingress controller" && pname === "http"
            : !SERVICES[peerName]);
        } else expect = want.callers.includes(peerName);
        const ing = allowed(pols, "Ingress", subject, peer, port, nsLabels);
        const egr = peer.ns === ns ? allowed(pols, "Egress", peer, subject, port, nsLabels) : true;
        check((ing && egr) === expect,
          `${where} ${peerName} -> ${svcName}:${port} (${pname}) should be ${expect ? "allowed" : "denied"}`);
      }
    }
  }
  // DNS must stay reachable for every pod, or no backend name resolves.
  const dns = { ns: "kube-system", labels: { "k8s-app": "kube-dns" } };
  for (const s of Object.keys(SERVICES))
    check(allowed(pols, "Egress", { ns, labels: podLabelsOf[s] || {} }, dns, 53, nsLabels), `${where} ${s} may reach DNS`);
  check(allowed(pols, "Egress", { ns, labels: podLabelsOf["push-dispatch"] || {} }, { external: true }, 443, nsLabels),
    `${where} push-dispatch may reach APNs/FCM/webhooks on 443`);
  check(!allowed(pols, "Egress", { ns, labels: podLabelsOf["attestation-verifier"] || {} }, { external: true }, 443, nsLabels),
    `${where} attestation-verifier has no outside egress`);
}

// ---- the PostgreSQL engine's overlay ----
function checkPostgresStore(where, ns, cfg, find, byKind, nsLabels, podLabelsOf) {
  const id = `${where} mailbox-store (engine postgres)`;
  const w = find("Deployment", "mailbox-store");
  if (!check(w, `${id}: is a Deployment`)) return;
  check(!find("StatefulSet", "mailbox-store"), `${id}: no StatefulSet beside the Deployment`);
  const ps = w.spec.template.spec;
  const c = ps.containers[0];
  const env = envMap(c);
  // Stateless: nothing on a volume, so any replica can go and come.
  check(!w.spec.volumeClaimTemplates, `${id}: no volumeClaimTemplates`);
  for (const v of ps.volumes || [])
    check(v.secret || v.configMap || (v.emptyDir && (c.volumeMounts || []).some((m) => m.name === v.name && m.mountPath === "/tmp")),
      `${id}: volume ${v.name} is a Secret, a ConfigMap or the /tmp emptyDir (no data volume)`);
  check(!("TIGRESS_DATA_DIR" in env), `${id}: no TIGRESS_DATA_DIR`);
  // Every replica must hash claims under the same key: from a Secret, never generated per pod.
  check(env.TIGRESS_CLAIM_KEY_FILE, `${id}: TIGRESS_CLAIM_KEY_FILE is set (shared by all replicas)`);
  // The database URL is a file from a mounted Secret, never a plain variable.
  const urlFile = env.TIGRESS_DATABASE_URL_FILE;
  check(urlFile, `${id}: TIGRESS_DATABASE_URL_FILE is set`);
  check(!Object.keys(env).some((k) => /DATABASE_URL$|PASSWORD/.test(k)) && !("TIGRESS_DATABASE_URL_FILE" in cfg),
    `${id}: no database URL or password in plain variables or the ConfigMap`);
  if (urlFile) {
    const m = (c.volumeMounts || []).find((vm) => urlFile.startsWith(vm.mountPath.replace(/\/?$/, "/")));
    const v = m && (ps.volumes || []).find((x) => x.name === m.name);
    check(v && v.secret && !v.secret.optional,
      `${id}: TIGRESS_DATABASE_URL_FILE ${urlFile} lies in a mounted, required Secret`);
  }
  // Scaled by an HPA, protected by a PDB.
  const hpa = byKind("HorizontalPodAutoscaler").find((h) =>
    h.spec.scaleTargetRef.kind === "Deployment" && h.spec.scaleTargetRef.name === "mailbox-store");
  check(hpa && hpa.spec.minReplicas >= 2, `${id}: an HPA with minReplicas >= 2`);
  check(byKind("PodDisruptionBudget").some((p) => matchSelector(p.spec.selector, w.spec.template.metadata.labels || {})),
    `${id}: a PodDisruptionBudget selects its pods`);
  // A RocksDB StatefulSet left running while its mailboxes expire (pods labelled as in the
  // base) must not be selected: its pods would get a share of new calls and of the HPA's metrics.
  const rocksdbPod = { "app.kubernetes.io/name": "mailbox-store", "app.kubernetes.io/component": "storage",
    "app.kubernetes.io/part-of": "tigress-relay" };
  const svc = find("Service", "mailbox-store");
  check(svc && !matchSelector({ matchLabels: svc.spec.selector || {} }, rocksdbPod),
    `${id}: Service mailbox-store does not select a RocksDB StatefulSet's pods`);
  check(!matchSelector(w.spec.selector, rocksdbPod), `${id}: Deployment selector does not select a RocksDB StatefulSet's pods`);
  check(byKind("PodDisruptionBudget").every((p) => !matchSelector(p.spec.selector, rocksdbPod)),
    `${id}: no PDB selects a RocksDB StatefulSet's pods`);
  // The gateway sees one Service over all replicas: no shard ring.
  check(!cfg.TIGRESS_STORE_SHARDS, `${where} no TIGRESS_STORE_SHARDS with the PostgreSQL engine (got ${cfg.TIGRESS_STORE_SHARDS})`);
  const gw = find("Deployment", "gateway");
  check(gw && !("TIGRESS_STORE_SHARDS" in envMap(gw.spec.template.spec.containers[0])),
    `${where} the gateway's env sets no TIGRESS_STORE_SHARDS`);
  const target = `dns:///mailbox-store.${ns}.svc.cluster.local:7001`;
  check(cfg.TIGRESS_STORE_TARGET === target, `${where} TIGRESS_STORE_TARGET=${target} (got ${cfg.TIGRESS_STORE_TARGET})`);
  // Only the store reaches the database.
  const pols = byKind("NetworkPolicy");
  const storeSubject = { ns, labels: podLabelsOf["mailbox-store"] || {} };
  check(allowed(pols, "Egress", storeSubject, DATABASE_PEER, DATABASE_PORT, nsLabels) ||
    allowed(pols, "Egress", storeSubject, { external: true }, DATABASE_PORT, nsLabels),
    `${where} mailbox-store may reach PostgreSQL on ${DATABASE_PORT}`);
  for (const other of ["gateway", "push-dispatch", "attestation-verifier"])
    check(!allowed(pols, "Egress", { ns, labels: podLabelsOf[other] || {} }, DATABASE_PEER, DATABASE_PORT, nsLabels),
      `${where} ${other} may not reach PostgreSQL`);
}

// ---- the documented database example (a CRD: no schema offline, so its shape only) ----
async function checkPostgresExample() {
  const rel = "deploy/k8s/examples/postgres-ha/cluster.yaml";
  const path = join(src, rel);
  if (!check(existsSync(path), `${rel} exists`)) return;
  const objs = parseAllDocuments(readFileSync(path, "utf8")).map((d) => d.toJS()).filter(Boolean);
  const nsObj = objs.find((o) => o.kind === "Namespace");
  if (check(nsObj && nsObj.metadata.name === DATABASE_PEER.ns, `${rel}: Namespace ${DATABASE_PEER.ns}`)) {
    try { new (await modelFor("v1", "Namespace"))(nsObj).validate(); passed++; }
    catch (e) { check(false, `${rel}: Namespace schema: ${e.message}`); }
  }
  const c = objs.find((o) => o.kind === "Cluster");
  if (!check(c && c.apiVersion === "postgresql.cnpg.io/v1", `${rel}: a CloudNativePG Cluster (postgresql.cnpg.io/v1)`)) return;
  // The overlay's NetworkPolicy selects the database pods by cnpg.io/cluster=<name>.
  check(c.metadata.name === DATABASE_PEER.labels["cnpg.io/cluster"] && c.metadata.namespace === DATABASE_PEER.ns,
    `${rel}: Cluster ${DATABASE_PEER.ns}/${DATABASE_PEER.labels["cnpg.io/cluster"]}, where the postgres overlay's NetworkPolicy expects it`);
  const sp = c.spec || {};
  check(sp.instances >= 3, `${rel}: at least 3 instances (got ${sp.instances})`);
  const sync = sp.postgresql?.synchronous;
  check((sync && sync.number >= 1 && sync.dataDurability !== "preferred") || sp.minSyncReplicas >= 1,
    `${rel}: at least one synchronous standby, required for commits`);
  check(sp.affinity?.enablePodAntiAffinity !== false && sp.affinity?.podAntiAffinityType === "required",
    `${rel}: instances on different nodes (required pod anti-affinity)`);
  check(sp.bootstrap?.initdb?.database && sp.bootstrap?.initdb?.owner, `${rel}: bootstrap creates a database and its owner`);
  check(sp.storage?.size, `${rel}: storage size set`);
}

checkDockerfile();
await checkPostgresExample();
for (const o of overlays) await checkOverlay(o.name, o.file);
for (const n of notes) console.log(`NOTE: ${n}`);
console.log(`deploy checks over ${overlays.map((o) => o.name).join(", ")}: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
