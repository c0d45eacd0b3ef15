-- gpuledger 0017: the hourly projection keeps MIG slices apart (issue 15, section 4). A row of
-- `usage_hourly` is keyed by tenant, SKU, project, MIG profile and hour; `mig_profile` is NULL
-- for a whole GPU, so every row written before keeps its key and figures (adding a nullable
-- column without a default changes no stored row). The primary key cannot hold a nullable
-- column: a unique index with NULLS NOT DISTINCT (PostgreSQL 15) takes its place, so that two
-- whole-GPU rows of one key still collide and `ON CONFLICT` finds them.

ALTER TABLE usage_hourly ADD COLUMN mig_profile text COLLATE "C";
ALTER TABLE usage_hourly DROP CONSTRAINT usage_hourly_pkey;
CREATE UNIQUE INDEX usage_hourly_key ON usage_hourly (tenant_id, gpu_sku, project, mig_profile, hour) NULLS NOT DISTINCT;
