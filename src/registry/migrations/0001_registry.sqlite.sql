-- Tables are prefixed gw_ so the registry can share a database with other
-- applications (the reference's own tables are named servers, gateways, ...).
CREATE TABLE gw_meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL,
    key_check BLOB
);
INSERT INTO gw_meta (id, generation) VALUES (1, 0);
CREATE TABLE gw_servers (
    name TEXT PRIMARY KEY,
    urls TEXT NOT NULL,
    transport TEXT NOT NULL,
    auth_mode TEXT NOT NULL,
    proxy_header TEXT,
    jwt_audience TEXT,
    passthrough_headers TEXT,
    enabled BIGINT NOT NULL,
    description TEXT NOT NULL,
    tags TEXT NOT NULL,
    credential BLOB,
    origin_file TEXT,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE gw_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    server TEXT NOT NULL,
    before_json TEXT,
    after_json TEXT
);
CREATE INDEX gw_audit_server ON gw_audit (server, id);
