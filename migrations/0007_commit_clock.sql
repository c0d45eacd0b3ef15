-- gpuledger 0007: the commit clock. Every transaction that appends usage rows takes the commit
-- lock (store::append::COMMIT_LOCK) before it commits, and holding it adds one to this counter.
-- A writer reads the counter before it looks at the ledger's GPU time (step 2 of an append); at
-- commit time, the commits numbered after that reading are the only ones it has not seen. When it
-- knows what each of them wrote (they were its own process's, kept in memory), it checks its
-- batch against those in memory instead of probing the GPU-time index again; any commit it does
-- not know sends it to the index as before. Not ledger data: one row, updated in place.
CREATE TABLE ledger_commit_clock (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    commits bigint NOT NULL CHECK (commits >= 0)
);
INSERT INTO ledger_commit_clock (commits) VALUES (0);

-- No commit that moves a Kafka stream's head (that is, ledgers usage) goes uncounted, whoever
-- makes it: the ingester counts its own under the commit lock (so it knows its number), and at
-- commit this trigger counts any transaction that did not, such as an ingester built before this
-- migration, still running during an upgrade. A commit counted here is one no process knows, so
-- every writer that must check it probes the index.
CREATE FUNCTION ledger_count_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ledger_commit_clock SET commits = commits + 1 WHERE xmin <> pg_current_xact_id()::xid;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER count_commit AFTER UPDATE ON ledger_streams
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.next_offset IS NOT NULL AND OLD.head_pos IS DISTINCT FROM NEW.head_pos)
    EXECUTE FUNCTION ledger_count_commit();

REVOKE ALL ON ledger_commit_clock FROM PUBLIC;
GRANT SELECT, UPDATE ON ledger_commit_clock TO gpuledger_writer;
