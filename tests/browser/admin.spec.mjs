// The admin page in a real browser: Debian's headless Chromium driven by
// playwright-core. Logs in, adds a server, sees it listed with its
// backend's health, calls it through the gateway, edits, disables and
// enables it, deletes it, reads the audit log, logs out.
//
// Run by tests/integration/admin_page.rs, which starts the gateway and
// passes: ADMIN_URL, GATEWAY_URL, ADMIN_EMAIL, ADMIN_PASSWORD, UPSTREAM_URL
// (an MCP server's /mcp URL), and optionally CHROMIUM (default
// /usr/bin/chromium). Exits non-zero with a message on the first failure.
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
};

const ADMIN_URL = env('ADMIN_URL');
const GATEWAY_URL = env('GATEWAY_URL');
const EMAIL = env('ADMIN_EMAIL');
const PASSWORD = env('ADMIN_PASSWORD');
const UPSTREAM_URL = env('UPSTREAM_URL');
const NAME = env('SERVER_NAME', 'browser-added');
// Generous bounds for waiting on state, never assertions about speed.
const WAIT = { timeout: 30_000 };

const browser = await chromium.launch({
  executablePath: env('CHROMIUM', '/usr/bin/chromium'),
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
try {
  const page = await browser.newPage();
  const failedRequests = [];
  page.on('requestfailed', (r) => failedRequests.push(r.url()));
  page.on('dialog', (d) => d.accept());

  await page.goto(ADMIN_URL);
  await page.locator('#login-view').waitFor({ state: 'visible', ...WAIT });
  await page.fill('#login-email', EMAIL);
  await page.fill('#login-password', PASSWORD);
  await page.click('#login-submit');
  await page.locator('#main-view').waitFor({ state: 'visible', ...WAIT });

  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === 'mcp_admin_session');
  assert.ok(session, 'the session cookie is set');
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Strict');

  await page.click('#add-server');
  await page.fill('#server-name', NAME);
  await page.fill('#server-urls', UPSTREAM_URL);
  await page.fill('#server-description', 'added by the browser test');
  await page.click('#server-save');

  const row = page.locator(`#server-${NAME}`);
  await row.waitFor({ state: 'visible', ...WAIT });
  // The health column polls until the data plane has checked the backend.
  await page.waitForFunction(
    (name) => document.getElementById(`health-${name}`)?.textContent.startsWith('up'),
    NAME,
    WAIT,
  );

  // The new server is routed by the gateway.
  let routed = false;
  for (let attempt = 0; attempt < 100 && !routed; attempt++) {
    const response = await fetch(`${GATEWAY_URL}/servers/${NAME}/mcp`, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        Accept: 'application/json, text/event-stream',
        'X-Authenticated-User': 'browser-test',
      },
      body: JSON.stringify({
        jsonrpc: '2.0', id: 1, method: 'initialize',
        params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'browser-test', version: '1' } },
      }),
    });
    routed = response.status === 200;
    if (!routed) await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok(routed, `POST ${GATEWAY_URL}/servers/${NAME}/mcp answers 200`);

  // Edit: the form sends the version it read (PUT).
  await page.click(`#edit-${NAME}`);
  await page.locator('#editor').waitFor({ state: 'visible', ...WAIT });
  await page.fill('#server-description', 'edited by the browser test');
  await page.fill('#server-tags', 'browser, e2e');
  await page.click('#server-save');
  await page.waitForFunction(
    () => document.getElementById('message').textContent.endsWith('saved'),
    null,
    WAIT,
  );
  // Disable, then enable again (PATCH).
  await page.click(`#toggle-${NAME}`);
  await page.waitForFunction(
    (name) => document.querySelector(`#server-${name} .server-enabled`)?.textContent === 'no',
    NAME,
    WAIT,
  );
  await page.click(`#toggle-${NAME}`);
  await page.waitForFunction(
    (name) => document.querySelector(`#server-${name} .server-enabled`)?.textContent === 'yes',
    NAME,
    WAIT,
  );
  const stored = await page.evaluate(async (name) => {
    const r = await fetch(`/api/servers/${name}`, { credentials: 'same-origin' });
    return r.json();
  }, NAME);
  assert.equal(stored.description, 'edited by the browser test');
  assert.deepEqual(stored.tags, ['browser', 'e2e']);
  assert.equal(stored.enabled, true);
  assert.equal(stored.version, 4, 'create, edit, disable, enable');

  await page.click(`#delete-${NAME}`);
  await row.waitFor({ state: 'detached', ...WAIT });
  // The audit table refreshes after the deletion: wait for its entry, not
  // for any row (the earlier entries are already there).
  await page.waitForFunction(
    (name) =>
      new RegExp(`delete\\s*${name}`).test(document.querySelector('#audit-body')?.textContent ?? ''),
    NAME,
    WAIT,
  );
  const audit = await page.locator('#audit-body').textContent();
  assert.match(audit, new RegExp(`delete\\s*${NAME}`));

  await page.click('#logout');
  await page.locator('#login-view').waitFor({ state: 'visible', ...WAIT });
  assert.deepEqual(failedRequests, [], 'no request failed (nothing fetched from elsewhere)');
  console.log('admin page: login, add, health, route, edit, disable, enable, delete, audit, logout: ok');
} finally {
  await browser.close();
}
