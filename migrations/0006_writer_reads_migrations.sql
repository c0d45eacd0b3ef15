-- gpuledger 0006: the ingester checks at start that every migration it knows was applied
-- (store::check_migrated). It runs as gpuledger_writer, and in production logs in as a role that
-- is only a member of it, so that role must be able to read which migrations were applied.
GRANT SELECT ON schema_migrations TO gpuledger_writer;
