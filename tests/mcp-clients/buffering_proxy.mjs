// A deliberately bad proxy: it holds every upstream response whole and only
// then sends it, as a buffering middlebox would. The suite points a client
// through it to show that its progress check catches a path that does not
// stream (tests/integration/sdk_clients.rs); it is never a thing to copy.
//
// Usage: node buffering_proxy.mjs UPSTREAM_HOST:PORT
// Prints "listening on PORT" once it accepts connections.
import http from "node:http";

const [upstream] = process.argv.slice(2);
const [host, port] = (upstream ?? "").split(":");
if (!host || !port) {
  console.error("usage: buffering_proxy.mjs UPSTREAM_HOST:PORT");
  process.exit(2);
}

const server = http.createServer((req, res) => {
  const up = http.request({ host, port, path: req.url, method: req.method, headers: req.headers }, (ur) => {
    const chunks = [];
    ur.on("data", (c) => chunks.push(c));
    ur.on("end", () => {
      const headers = { ...ur.headers };
      delete headers["transfer-encoding"];
      res.writeHead(ur.statusCode, headers);
      res.end(Buffer.concat(chunks));
    });
  });
  up.on("error", () => res.destroy());
  req.pipe(up);
});
server.listen(0, "127.0.0.1", () => console.log(`listening on ${server.address().port}`));
