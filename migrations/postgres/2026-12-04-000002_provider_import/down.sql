DROP TABLE import_revisions;
DROP TABLE imported_buckets;
DROP TABLE provider_costs;
DROP TABLE import_runs;
DROP TABLE provider_connections;
