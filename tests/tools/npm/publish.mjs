// Publish DNS-SD services with an independent mDNS stack from the npm registry.
//
//   node publish.mjs STACK ADDRESS SERVICES_JSON
//
// STACK is "ciao" (@homebridge/ciao, Homebridge's RFC 6762/6763 responder) or
// "bonjour" (bonjour-service on multicast-dns).  ADDRESS is this host's IPv4
// address on the link (the stacks are kept to it).  SERVICES_JSON is a list of
// {"name", "type" ("_ipp._tcp"), "port", "host" (label), "txt" ({key: value}),
// "subtypes" (["_universal"])}.  Prints one JSON line per event, as the Python
// tools do: {"event": "published", "stack", "name"} per service, then
// {"event": "ready"}; runs until SIGTERM, then unpublishes (goodbyes).
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const [stack, address, servicesJson] = process.argv.slice(2);
const services = JSON.parse(servicesJson);
const emit = (event, fields = {}) =>
  process.stdout.write(JSON.stringify({ event, t: Date.now() / 1000, stack, ...fields }) + "\n");
const bare = (label) => label.replace(/^_/, "");

async function withCiao() {
  const ciao = require("@homebridge/ciao");
  const responder = ciao.getResponder({ interface: address });
  const published = [];
  for (const s of services) {
    const [type, proto] = s.type.split(".");
    const service = responder.createService({
      name: s.name,
      type: bare(type),
      protocol: bare(proto),
      port: s.port,
      hostname: s.host,
      txt: s.txt,
      subtypes: (s.subtypes || []).map(bare),
      restrictedAddresses: [address],
      disabledIpv6: true,
    });
    service.on("name-change", (name) => emit("renamed", { from: s.name, name }));
    await service.advertise();
    published.push(service);
    emit("published", { name: service.getFQDN() });
  }
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
  for (const s of services) {
    const [type, proto] = s.type.split(".");
    const service = bonjour.publish({
      name: s.name,
      type: bare(type),
      protocol: bare(proto),
      port: s.port,
      host: `${s.host}.local`,
      txt: s.txt,
      subtypes: (s.subtypes || []).map(bare),
      disableIPv6: true,
    });
    await new Promise((resolve) => service.on("up", resolve));
    emit("published", { name: service.fqdn });
  }
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
