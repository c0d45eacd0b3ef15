-- gpuledger 0018: the coverage report (issue 15, section 5). A coverage row keeps the MIG
-- profile of its instance, so that the report counts a slice's seconds under its SKU and
-- profile, apart from whole GPUs (a slice-second is not a GPU-second). NULL for a whole GPU,
-- and for the MIG rows written before this migration (the report shows their profile as
-- `unrecorded`). Adding a nullable column without a default changes no stored row.
--
-- Finance reads the table (and `ledger_event_ids`, for the report's in-ledger figure) as a
-- member of gpuledger_writer (0011, 0014): no grant is needed.

ALTER TABLE collector_coverage ADD COLUMN mig_profile text;
