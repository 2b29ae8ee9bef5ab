// Browse DNS-SD services with an independent mDNS stack from the npm registry.
//
//   node browse.mjs CLIENT ADDRESS SECONDS NAME...
//
// CLIENT is "bonjour" (bonjour-service's Browser: what a Node app sees) or "mdns"
// (plain multicast-dns: PTR queries for each NAME, then SRV/TXT/A for every
// instance, read from the answers).  NAME is a service type or a subtype
// ("_ipp._tcp", "_universal._sub._ipp._tcp").  ADDRESS is this host's IPv4
// address on the link.  After SECONDS it prints one JSON line per instance per
// NAME: {"event": "found", "client", "browsed", "fqdn", "port", "txt" (strings
// in wire order, UTF-8 with "hex:" for other bytes), "host", "addresses"}, then
// {"event": "done"}, and exits.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const [client, address, seconds, ...names] = process.argv.slice(2);
const emit = (event, fields = {}) =>
  process.stdout.write(JSON.stringify({ event, t: Date.now() / 1000, client, ...fields }) + "\n");
const text = (buf) => {
  const s = buf.toString("utf8");
  return Buffer.from(s, "utf8").equals(buf) ? s : "hex:" + buf.toString("hex");
};
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function bonjourBrowse() {
  const { Bonjour } = require("bonjour-service");
  const bonjour = new Bonjour({ interface: address, bind: "0.0.0.0" });
  // One browser per NAME, started 250 ms apart: a responder answers questions that come
  // together in one aggregated response, and this Browser reads an instance only from a packet
  // that holds its PTR and its SRV (see docs/interop.md).
  const browsers = [];
  for (const name of names) {
    const [type, proto] = name.split(".");
    browsers.push([name, bonjour.find({ type: type.replace(/^_/, ""), protocol: proto.replace(/^_/, "") })]);
    if (names.length > 1) await sleep(250);
  }
  await sleep(seconds * 1000);
  for (const [name, browser] of browsers) {
    for (const s of browser.services) {
      emit("found", {
        browsed: name,
        fqdn: s.fqdn,
        name: s.name,
        port: s.port,
        txt: (s.rawTxt ? [].concat(s.rawTxt) : []).map(text),
        host: s.host,
        addresses: s.addresses || [],
        subtypes: s.subtypes || [],
      });
    }
  }
  await new Promise((resolve) => bonjour.destroy(resolve));
}

async function mdnsBrowse() {
  const mdns = require("multicast-dns")({ interface: address, bind: "0.0.0.0" });
  const records = [];
  mdns.on("response", (packet) => {
    for (const rr of [...packet.answers, ...packet.additionals]) records.push(rr);
  });
  const lower = (s) => s.toLowerCase();
  const ask = (name, type) => mdns.query({ questions: [{ name, type }] });
  for (let round = 0; round < 3; round++) {
    for (const name of names) ask(`${name}.local`, "PTR");
    await sleep(300);
    const targets = new Set(
      records.filter((r) => r.type === "PTR" && r.ttl > 0).map((r) => r.data),
    );
    for (const target of targets) ask(target, "SRV");
  }
  await sleep(seconds * 1000);
  const live = records.filter((r) => r.ttl > 0);
  const last = (pred) => live.filter(pred).pop();
  for (const name of names) {
    const owner = lower(`${name}.local`);
    const seen = new Set();
    for (const ptr of live.filter((r) => r.type === "PTR" && lower(r.name) === owner)) {
      if (seen.has(lower(ptr.data))) continue;
      seen.add(lower(ptr.data));
      const srv = last((r) => r.type === "SRV" && lower(r.name) === lower(ptr.data));
      const txt = last((r) => r.type === "TXT" && lower(r.name) === lower(ptr.data));
      const host = srv ? srv.data.target : null;
      const addresses = host
        ? [...new Set(live.filter((r) => (r.type === "A" || r.type === "AAAA") && lower(r.name) === lower(host)).map((r) => r.data))]
        : [];
      emit("found", {
        browsed: name,
        fqdn: ptr.data,
        port: srv ? srv.data.port : null,
        priority: srv ? srv.data.priority : null,
        weight: srv ? srv.data.weight : null,
        txt: txt ? txt.data.map(text) : null,
        host,
        addresses,
      });
    }
  }
  mdns.destroy();
}

await (client === "bonjour" ? bonjourBrowse() : mdnsBrowse());
emit("done");
process.exit(0);
