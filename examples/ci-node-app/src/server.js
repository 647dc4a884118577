// A small JSON service: GET /?name=X greets, GET /healthz answers ok.
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { greeting } from './greeting.js';

const { version } = JSON.parse(readFileSync(new URL('./version.json', import.meta.url), 'utf8'));
const port = Number(process.env.PORT || 3000);

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (url.pathname === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    return;
  }
  if (url.pathname !== '/') {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(greeting(url.searchParams.get('name'), version)) + '\n');
});

server.listen(port, () => console.log(`ci-node-app ${version} listening on :${port}`));
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => server.close(() => process.exit(0)));
