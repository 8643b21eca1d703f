-- 7: an upload waits in unlogged stage tables until its commit moves it into items and
-- item_inputs. A rejected upload is deleted from the stage, which is truncated whenever no
-- upload is in it: no dead rows or index entries are left in items for a vacuum that may
-- never come. Unlogged: no WAL for data that may be thrown away (after a crash PostgreSQL
-- empties them; a commit checks that its upload is all there).
CREATE UNLOGGED TABLE item_stage (
    id bigint PRIMARY KEY,
    batch_pk bigint NOT NULL,
    seq bigint NOT NULL,
    rec0 bigint NOT NULL,
    n_records integer NOT NULL,
    status text NOT NULL,
    stage text,
    est_usd double precision NOT NULL DEFAULT 0,
    size integer NOT NULL DEFAULT 0,
    ext_id text,
    meta bytea,
    delivered boolean,
    runner text,
    webhook_url text,
    webhook_event text
);
CREATE INDEX item_stage_upload ON item_stage(batch_pk, stage);
CREATE UNLOGGED TABLE item_stage_inputs (id bigint PRIMARY KEY, data bytea NOT NULL);
-- Clears an upload from the stage (upload_stage NULL: every upload of the batch). A large
-- stage with only this upload in it is truncated: instant, and its files shrink at once.
-- Otherwise, or when another transaction uses the stage, the upload's rows are deleted
-- (cheaper for a small one; reclaim_space truncates the tables later). Never waits.
CREATE FUNCTION batchd_clear_stage(upload_pk bigint, upload_stage text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF pg_relation_size('item_stage_inputs') >= 8 * 1024 * 1024 THEN
        IF NOT EXISTS (SELECT 1 FROM item_stage WHERE batch_pk <> upload_pk
                       OR (upload_stage IS NOT NULL AND stage IS DISTINCT FROM upload_stage))
        THEN
            BEGIN
                LOCK TABLE item_stage, item_stage_inputs IN ACCESS EXCLUSIVE MODE NOWAIT;
                IF NOT EXISTS (SELECT 1 FROM item_stage WHERE batch_pk <> upload_pk
                               OR (upload_stage IS NOT NULL
                                   AND stage IS DISTINCT FROM upload_stage)) THEN
                    TRUNCATE item_stage, item_stage_inputs;
                    RETURN;
                END IF;
            EXCEPTION WHEN lock_not_available THEN
                NULL;
            END;
        END IF;
    END IF;
    DELETE FROM item_stage_inputs d USING item_stage s
    WHERE d.id = s.id AND s.batch_pk = upload_pk
        AND (upload_stage IS NULL OR s.stage = upload_stage);
    DELETE FROM item_stage
    WHERE batch_pk = upload_pk AND (upload_stage IS NULL OR stage = upload_stage);
END
$$;
-- Uploads that were in progress when the server stopped for this upgrade: gone.
DELETE FROM item_inputs WHERE id IN (SELECT id FROM items WHERE status = 'staged');
DELETE FROM items WHERE status = 'staged';
