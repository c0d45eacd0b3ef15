-- gpuledger 0002: billing. Reference data (seller, prices, profiles, contracts, usage adjustments),
-- invoices, credit notes and period closes are ledger events (streams 'gpuledger.reference' and
-- 'gpuledger.billing'); the two tables here index them and are append-only like the ledger.

-- One row per closed period: the period.closed event that closed it.
CREATE TABLE billing_closes (
    period      text PRIMARY KEY CHECK (period ~ '^[0-9]{4}-[0-9]{2}$'),
    event_id    uuid NOT NULL UNIQUE,
    closed_at   timestamptz NOT NULL,
    stream_id   integer NOT NULL REFERENCES ledger_streams (stream_id),
    stream_pos  bigint NOT NULL
);

-- One row per issued invoice or credit note, pointing at its invoice.issued ledger row.
-- Numbers are gapless per series: number n may only be inserted when n - 1 exists.
CREATE TABLE invoices (
    number       text PRIMARY KEY,
    series       text NOT NULL,
    series_no    integer NOT NULL CHECK (series_no >= 1),
    type_code    smallint NOT NULL CHECK (type_code IN (380, 381)),
    tenant_id    text COLLATE "C" NOT NULL,
    period       text NOT NULL,
    close_period text NOT NULL REFERENCES billing_closes (period) DEFERRABLE INITIALLY DEFERRED,
    issued_at    timestamptz NOT NULL,
    net_total    numeric(18, 2) NOT NULL,
    vat_total    numeric(18, 2) NOT NULL,
    gross_total  numeric(18, 2) NOT NULL,
    event_id     uuid NOT NULL UNIQUE,
    stream_id    integer NOT NULL REFERENCES ledger_streams (stream_id),
    stream_pos   bigint NOT NULL,
    UNIQUE (series, series_no)
);
CREATE INDEX invoices_tenant_period ON invoices (tenant_id, period);
CREATE INDEX invoices_close_period ON invoices (close_period);

CREATE FUNCTION invoices_gapless() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.series_no > 1 AND NOT EXISTS (
        SELECT 1 FROM invoices WHERE series = NEW.series AND series_no = NEW.series_no - 1
    ) THEN
        RAISE EXCEPTION 'gpuledger: invoice number % would leave a gap in series %', NEW.number, NEW.series
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER invoices_gapless BEFORE INSERT ON invoices FOR EACH ROW EXECUTE FUNCTION invoices_gapless();

SELECT ledger_protect('billing_closes');
SELECT ledger_protect('invoices');

REVOKE ALL ON billing_closes, invoices FROM PUBLIC;
GRANT SELECT, INSERT ON billing_closes, invoices TO gpuledger_writer;
CREATE INDEX usage_hourly_hour ON usage_hourly (hour);
