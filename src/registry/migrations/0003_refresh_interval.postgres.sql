-- A server's own catalog refresh interval in seconds; NULL: the global
-- CATALOG_REFRESH_INTERVAL.
ALTER TABLE gw_servers ADD COLUMN refresh_interval BIGINT;
