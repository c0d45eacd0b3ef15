-- gpuledger 0009: the billing index tables (`invoices`, `billing_closes`), which the API and the
-- pages read, may only hold rows that their ledger events state. A row is checked against the
-- event it points at (stream, position, event id): the event must exist, be of the right kind,
-- and carry the same number, type, tenant, period, totals and times. Deferred to commit, so the
-- order of the inserts inside a close does not matter; ENABLE ALWAYS, so that
-- session_replication_role = replica does not switch the check off.

CREATE FUNCTION billing_invoice_guard() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    d jsonb;
BEGIN
    SELECT e.payload -> 'data' INTO d FROM ledger_events e
     WHERE e.stream_id = NEW.stream_id AND e.stream_pos = NEW.stream_pos
       AND e.event_id = NEW.event_id AND e.kind = 'invoice.issued';
    IF d IS NULL THEN
        RAISE EXCEPTION 'gpuledger: invoices row % has no invoice.issued event % at stream %/%',
            NEW.number, NEW.event_id, NEW.stream_id, NEW.stream_pos USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF d ->> 'number' IS DISTINCT FROM NEW.number
       OR d ->> 'series' IS DISTINCT FROM NEW.series
       OR NEW.number IS DISTINCT FROM NEW.series || '-' || lpad(NEW.series_no::text, 6, '0')
       OR (d ->> 'type_code')::smallint IS DISTINCT FROM NEW.type_code
       OR d ->> 'tenant_id' IS DISTINCT FROM NEW.tenant_id
       OR d ->> 'period' IS DISTINCT FROM NEW.period
       OR (d ->> 'issued_at')::timestamptz IS DISTINCT FROM NEW.issued_at
       OR (d ->> 'net_total')::numeric IS DISTINCT FROM NEW.net_total
       OR (d ->> 'vat_total')::numeric IS DISTINCT FROM NEW.vat_total
       OR (d ->> 'gross_total')::numeric IS DISTINCT FROM NEW.gross_total
       OR NOT EXISTS (SELECT 1 FROM billing_closes c
                       WHERE c.period = NEW.close_period AND c.event_id = (d ->> 'close_event_id')::uuid) THEN
        RAISE EXCEPTION 'gpuledger: invoices row % differs from its invoice.issued event %', NEW.number, NEW.event_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION billing_close_guard() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    d jsonb;
BEGIN
    SELECT e.payload -> 'data' INTO d FROM ledger_events e
     WHERE e.stream_id = NEW.stream_id AND e.stream_pos = NEW.stream_pos
       AND e.event_id = NEW.event_id AND e.kind = 'period.closed';
    IF d IS NULL THEN
        RAISE EXCEPTION 'gpuledger: billing_closes row % has no period.closed event % at stream %/%',
            NEW.period, NEW.event_id, NEW.stream_id, NEW.stream_pos USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF d ->> 'period' IS DISTINCT FROM NEW.period
       OR (d ->> 'issued_at')::timestamptz IS DISTINCT FROM NEW.closed_at THEN
        RAISE EXCEPTION 'gpuledger: billing_closes row % differs from its period.closed event %', NEW.period, NEW.event_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER invoices_match_event AFTER INSERT ON invoices
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION billing_invoice_guard();
CREATE CONSTRAINT TRIGGER billing_closes_match_event AFTER INSERT ON billing_closes
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION billing_close_guard();
ALTER TABLE invoices ENABLE ALWAYS TRIGGER invoices_match_event;
ALTER TABLE billing_closes ENABLE ALWAYS TRIGGER billing_closes_match_event;

REVOKE ALL ON FUNCTION billing_invoice_guard(), billing_close_guard() FROM PUBLIC;
