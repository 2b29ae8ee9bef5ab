// Publish DNS-SD services with an independent mDNS stack from the npm registry.
//
//   node publish.mjs STACK ADDRESS SERVICES_JSON
//
// STACK is "ciao" (@homebridge/ciao, Homebridge's RFC 6762/6763 responder) or
// "bonjour" (bonjour-service on multicast-dns).  ADDRESS is this host's IPv4
// address on the link (the stacks are kept to it).  SERVICES_JSON is a list of
// {"name", "type" ("_ipp._tcp"), "port", "host" (label), "txt" ({key: value}, or
// a list of raw strings "key=value" in wire order, "hex:..." for bytes: turned
// into the {key: value} object both stacks take, as an app would), "subtypes"
// (["_universal"]), "ipv6" (also the IPv6 addresses)}.  Hosts are published
// together, a host's services in turn.  Prints one JSON line per event, as the Python tools do:
// {"event": "published", "stack", "name"} per service, {"event": "refused",
// "name", "error"} for one the stack will not publish (its own error), then
// {"event": "ready"}; runs until SIGTERM, then unpublishes (goodbyes).
import { createRequire } from "node:module";
import os from "node:os";

const require = createRequire(import.meta.url);
const [stack, address, servicesJson] = process.argv.slice(2);
const services = JSON.parse(servicesJson);
const emit = (event, fields = {}) =>
  process.stdout.write(JSON.stringify({ event, t: Date.now() / 1000, stack, ...fields }) + "\n");
const bare = (label) => label.replace(/^_/, "");
// The stacks take TXT as an object: a key without "=", a repeated key or bytes cannot be said.
const txtObject = (txt) => {
  if (!Array.isArray(txt)) return txt;
  const out = {};
  for (const entry of txt) {
    const raw = entry.startsWith("hex:") ? Buffer.from(entry.slice(4), "hex") : Buffer.from(entry, "utf8");
    const eq = raw.indexOf(0x3d);
    if (eq < 0) out[raw.toString("utf8")] = true;
    else out[raw.subarray(0, eq).toString("utf8")] = raw.subarray(eq + 1).toString("utf8");
  }
  return out;
};
// Hosts are published together, the services of one host one after the other: ciao probes
// the host name with each service, and two probes at once for one name collide.
const byHost = async (list, one) => {
  const hosts = new Map();
  for (const s of list) hosts.set(s.host, [...(hosts.get(s.host) || []), s]);
  await Promise.all(
    [...hosts.values()].map(async (group) => {
      for (const s of group) await one(s);
    }),
  );
};
const v6Of = (address) =>
  Object.values(os.networkInterfaces())
    .flat()
    .filter((a) => a.family === "IPv6" && !a.internal && !a.address.startsWith("fe80"))
    .map((a) => a.address);

async function withCiao() {
  const ciao = require("@homebridge/ciao");
  const responder = ciao.getResponder({ interface: address });
  const published = [];
  const one = async (s) => {
    const [type, proto] = s.type.split(".");
    try {
      const service = responder.createService({
        name: s.name,
        type: bare(type),
        protocol: bare(proto),
        port: s.port,
        hostname: s.host,
        txt: txtObject(s.txt),
        subtypes: (s.subtypes || []).map(bare),
        restrictedAddresses: s.ipv6 ? [address, ...v6Of(address)] : [address],
        disabledIpv6: !s.ipv6,
      });
      service.on("name-change", (name) => emit("renamed", { from: s.name, name }));
      await service.advertise();
      published.push(service);
      emit("published", { name: service.getFQDN() });
    } catch (err) {
      emit("refused", { name: s.name, error: String(err && err.message ? err.message : err) });
    }
  };
  await byHost(services, one);
  return async () => {
    for (const service of published) await service.end();
    await responder.shutdown();
  };
}

async function withBonjour() {
  const { Bonjour } = require("bonjour-service");
  const bonjour = new Bonjour({ interface: address, bind: "0.0.0.0" }, (err) =>
    emit("error", { error: String(err) }),
  );
  const one = async (s) => {
    const [type, proto] = s.type.split(".");
    let service;
    try {
      service = bonjour.publish({
        name: s.name,
        type: bare(type),
        protocol: bare(proto),
        port: s.port,
        host: `${s.host}.local`,
        txt: txtObject(s.txt),
        subtypes: (s.subtypes || []).map(bare),
        disableIPv6: !s.ipv6,
      });
    } catch (err) {
      emit("refused", { name: s.name, error: String(err && err.message ? err.message : err) });
      return;
    }
    await new Promise((resolve) => service.on("up", resolve));
    emit("published", { name: service.fqdn });
  };
  await byHost(services, one);
  return () => new Promise((resolve) => bonjour.unpublishAll(() => bonjour.destroy(resolve)));
}

const stop = await (stack === "ciao" ? withCiao() : withBonjour());
emit("ready");
let stopping = false;
for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, async () => {
    if (stopping) return;
    stopping = true;
    await stop();
    emit("stopped");
    process.exit(0);
  });
}
setInterval(() => {}, 1 << 30);
