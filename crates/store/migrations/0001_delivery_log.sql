-- The delivery log: one row per delivery, one per attempt, both partitioned by the day the
-- delivery was created, so retention drops whole partitions instead of deleting rows.
-- Partitions are created ahead of time by the store (one per UTC day: `<table>_pYYYYMMDD`).

CREATE TABLE hm_deliveries (
    id            text        NOT NULL,
    created_at    timestamptz NOT NULL,
    tenant_id     text        NOT NULL,
    webhook_id    text        NOT NULL,
    status        text        NOT NULL,
    event_type    text        NOT NULL,
    call_id       text,
    campaign_id   text,
    campaign_name text,
    direction     text,
    -- The tracking number's digits only, as the log's filter compares numbers.
    tracking      text,
    -- created_at to the nanosecond (RFC 3339): the column itself keeps microseconds.
    created_exact text        NOT NULL,
    -- The whole delivery as JSON (rendered request, status, counters).
    doc           text        NOT NULL,
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);

-- Newest first, per tenant, per webhook, everything; and by call within a tenant.
CREATE INDEX hm_deliveries_tenant ON hm_deliveries (tenant_id, created_at DESC, id DESC);
CREATE INDEX hm_deliveries_webhook ON hm_deliveries (webhook_id, created_at DESC, id DESC);
CREATE INDEX hm_deliveries_time ON hm_deliveries (created_at DESC, id DESC);
CREATE INDEX hm_deliveries_call ON hm_deliveries (call_id, created_at DESC) WHERE call_id IS NOT NULL;

CREATE TABLE hm_attempts (
    delivery_id text        NOT NULL,
    -- The delivery's created_at: the partition key, shared with hm_deliveries.
    created_at  timestamptz NOT NULL,
    seq         integer     NOT NULL,
    doc         text        NOT NULL,
    PRIMARY KEY (delivery_id, created_at, seq)
) PARTITION BY RANGE (created_at);

-- How many deliveries each webhook keeps, for the per-webhook cap (kept exact by every write
-- batch and recounted when partitions are dropped).
CREATE TABLE hm_webhook_counts (
    webhook_id text   PRIMARY KEY,
    kept       bigint NOT NULL
);
