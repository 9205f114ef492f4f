// The admin page: talks to the admin API with the session cookie
// (same-origin fetches send it, and send the Origin the API checks on
// writes). Every text from the server goes in through textContent.
'use strict';

const $ = (id) => document.getElementById(id);
const HEALTH_POLL_MS = 5000;
let healthTimer = null;

function say(text, isError) {
  $('message').textContent = text || '';
  $('message').className = isError ? 'error' : '';
}

async function api(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: {} };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401 && path !== '/auth/login') {
    showLogin();
    throw new Error('please log in');
  }
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const e = (data && data.error) || {};
    const field = e.field ? ` (${e.field})` : '';
    throw new Error((e.message || response.statusText) + field);
  }
  return data;
}

function showLogin() {
  stopHealth();
  $('main-view').hidden = true;
  $('logout').hidden = true;
  $('login-view').hidden = false;
}

function showMain() {
  $('login-view').hidden = true;
  $('main-view').hidden = false;
  $('logout').hidden = false;
}

function stopHealth() {
  if (healthTimer) clearInterval(healthTimer);
  healthTimer = null;
}

function cell(row, text) {
  const td = document.createElement('td');
  td.textContent = text;
  row.appendChild(td);
  return td;
}

function button(label, id, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  b.id = id;
  b.addEventListener('click', onClick);
  return b;
}

async function loadServers() {
  const page = await api('GET', '/api/servers?limit=500');
  const body = $('servers-body');
  body.replaceChildren();
  for (const s of page.items) {
    const row = document.createElement('tr');
    row.id = `server-${s.name}`;
    row.dataset.name = s.name;
    cell(row, s.name).className = 'server-name';
    cell(row, s.urls.join('\n'));
    cell(row, s.enabled ? 'yes' : 'no').className = 'server-enabled';
    const health = cell(row, '…');
    health.className = 'server-health health-unknown';
    health.id = `health-${s.name}`;
    cell(row, s.origin === 'config' ? `config (${s.config_file || 'file'})` : 'api');
    const actions = cell(row, '');
    if (s.origin === 'api') {
      actions.appendChild(button('Edit', `edit-${s.name}`, () => openEditor(s)));
      actions.appendChild(button(s.enabled ? 'Disable' : 'Enable', `toggle-${s.name}`,
        () => act(() => api('PATCH', `/api/servers/${encodeURIComponent(s.name)}`,
          { enabled: !s.enabled, version: s.version }), `${s.name} ${s.enabled ? 'disabled' : 'enabled'}`)));
      actions.appendChild(button('Delete', `delete-${s.name}`, () => {
        if (window.confirm(`Delete server ${s.name}?`)) {
          act(() => api('DELETE', `/api/servers/${encodeURIComponent(s.name)}?version=${s.version}`),
            `${s.name} deleted`);
        }
      }));
    }
    body.appendChild(row);
  }
  await refreshHealth();
}

async function refreshHealth() {
  const rows = Array.from(document.querySelectorAll('#servers-body tr'));
  await Promise.all(rows.map(async (row) => {
    const name = row.dataset.name;
    const target = $(`health-${name}`);
    try {
      const h = await api('GET', `/api/servers/${encodeURIComponent(name)}/health`);
      const detail = h.backends.map((b) => `${b.backend} ${b.healthy ? 'up' : 'down'}` +
        (b.last_error ? ` (${b.last_error})` : '')).join(', ');
      target.textContent = detail ? `${h.status}: ${detail}` : h.status;
      target.className = `server-health health-${h.status}`;
    } catch (e) {
      if (target) target.textContent = `? ${e.message}`;
    }
  }));
}

// Read-only here: virtual servers are written through the API or the file.
async function loadVirtualServers() {
  const page = await api('GET', '/api/virtual-servers?limit=500');
  const body = $('virtual-body');
  body.replaceChildren();
  for (const v of page.items) {
    const row = document.createElement('tr');
    row.id = `virtual-${v.name}`;
    cell(row, v.name).className = 'virtual-name';
    cell(row, v.include.join('\n'));
    cell(row, v.auth_mode);
    cell(row, v.enabled ? 'yes' : 'no');
    cell(row, v.unresolved.join('\n')).className = 'virtual-unresolved';
    cell(row, v.origin === 'config' ? `config (${v.config_file || 'file'})` : 'api');
    body.appendChild(row);
  }
}

async function loadAudit() {
  const page = await api('GET', '/api/audit?limit=50');
  const body = $('audit-body');
  body.replaceChildren();
  for (const a of page.items) {
    const row = document.createElement('tr');
    cell(row, new Date(a.at * 1000).toISOString());
    cell(row, a.actor);
    cell(row, a.action);
    cell(row, a.server);
    body.appendChild(row);
  }
}

async function loadAll() {
  await loadServers();
  await loadVirtualServers();
  await loadAudit();
  stopHealth();
  healthTimer = setInterval(() => refreshHealth().catch(() => {}), HEALTH_POLL_MS);
}

async function act(call, done) {
  try {
    await call();
    say(done);
    await loadAll();
  } catch (e) {
    say(e.message, true);
  }
}

function describeCredential(auth) {
  if (!auth || auth.type === 'none') return 'Current: none';
  if (auth.type === 'basic') return `Current: basic, user ${auth.username}, password set`;
  if (auth.type === 'headers') return `Current: headers ${Object.keys(auth.headers).join(', ')} (set)`;
  return 'Current: bearer token set';
}

function openEditor(server) {
  const editing = Boolean(server);
  $('editor').hidden = false;
  $('editor').dataset.mode = editing ? 'edit' : 'add';
  $('editor-title').textContent = editing ? `Edit ${server.name}` : 'Add server';
  $('server-name').value = editing ? server.name : '';
  $('server-name').readOnly = editing;
  $('server-version').value = editing ? server.version : '';
  $('server-urls').value = editing ? server.urls.join('\n') : '';
  $('server-transport').value = editing ? server.transport : 'streamable-http';
  $('server-auth-mode').value = editing ? server.auth_mode : 'inherit';
  $('server-description').value = editing ? server.description : '';
  $('server-tags').value = editing ? server.tags.join(', ') : '';
  $('server-enabled').checked = editing ? server.enabled : true;
  $('server-auth-current').textContent = editing ? describeCredential(server.upstream_auth) : '';
  $('server-auth-type').value = editing ? 'keep' : 'none';
  $('server-auth-user').value = '';
  $('server-auth-secret').value = '';
  $('editor').dataset.server = editing ? JSON.stringify(server) : '';
  $('server-name').focus();
}

function closeEditor() {
  $('editor').hidden = true;
}

function formBody() {
  const body = {
    name: $('server-name').value.trim(),
    urls: $('server-urls').value.split('\n').map((u) => u.trim()).filter(Boolean),
    transport: $('server-transport').value,
    auth_mode: $('server-auth-mode').value,
    description: $('server-description').value,
    tags: $('server-tags').value.split(',').map((t) => t.trim()).filter(Boolean),
    enabled: $('server-enabled').checked,
  };
  const kind = $('server-auth-type').value;
  const secret = $('server-auth-secret').value;
  if (kind === 'none') body.upstream_auth = { type: 'none' };
  if (kind === 'bearer') body.upstream_auth = { type: 'bearer', token: secret };
  if (kind === 'basic') {
    body.upstream_auth = { type: 'basic', username: $('server-auth-user').value, password: secret };
  }
  return body;
}

async function saveServer(event) {
  event.preventDefault();
  const body = formBody();
  if ($('editor').dataset.mode === 'edit') {
    const original = JSON.parse($('editor').dataset.server);
    // Fields the form does not show travel back unchanged.
    body.proxy_header = original.proxy_header;
    body.jwt_audience = original.jwt_audience;
    body.passthrough_headers = original.passthrough_headers;
    body.version = Number($('server-version').value);
    await act(() => api('PUT', `/api/servers/${encodeURIComponent(body.name)}`, body), `${body.name} saved`);
  } else {
    await act(() => api('POST', '/api/servers', body), `${body.name} added`);
  }
  if (!$('message').classList.contains('error')) closeEditor();
}

async function login(event) {
  event.preventDefault();
  try {
    await api('POST', '/auth/login', {
      email: $('login-email').value,
      password: $('login-password').value,
    });
    $('login-password').value = '';
    say('');
    showMain();
    await loadAll();
  } catch (e) {
    say(e.message, true);
  }
}

async function logout() {
  try {
    await api('POST', '/auth/logout');
  } finally {
    say('Logged out');
    showLogin();
  }
}

async function start() {
  $('login-form').addEventListener('submit', login);
  $('logout').addEventListener('click', logout);
  $('add-server').addEventListener('click', () => openEditor(null));
  $('server-cancel').addEventListener('click', closeEditor);
  $('server-form').addEventListener('submit', saveServer);
  $('audit-refresh').addEventListener('click', () => loadAudit().catch((e) => say(e.message, true)));
  try {
    await api('GET', '/api/servers?limit=1');
    showMain();
    await loadAll();
  } catch (e) {
    showLogin();
  }
}

document.addEventListener('DOMContentLoaded', start);
