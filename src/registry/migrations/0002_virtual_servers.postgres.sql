-- Virtual servers share the servers' name space (/servers/{name}/mcp):
-- each write checks the other table in the same transaction, after the
-- generation bump that serialises writers.
CREATE TABLE gw_virtual_servers (
    name TEXT PRIMARY KEY,
    include_patterns TEXT NOT NULL,
    auth_mode TEXT NOT NULL,
    proxy_header TEXT,
    jwt_audience TEXT,
    description TEXT NOT NULL,
    enabled BIGINT NOT NULL,
    origin_file TEXT,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- What an audit entry's `server` names: a server or a virtual server.
ALTER TABLE gw_audit ADD COLUMN kind TEXT NOT NULL DEFAULT 'server';
