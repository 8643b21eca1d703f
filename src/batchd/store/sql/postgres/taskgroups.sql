-- Parallel task groups: the journal of ended runs (the events stream order), and the
-- ids of runs just added.

-- name: run_journal_batch
-- The batch pk and how many of its runs have ended (one journaling at a time: the row stays
-- locked until the commit).
SELECT pk, n_succeeded + n_failed + n_cancelled FROM batches WHERE id = %s FOR UPDATE;

-- name: run_journal_end
SELECT COALESCE(MAX(n), 0) FROM run_journal WHERE batch_pk = %s;

-- name: journal_ended_runs
-- Numbers the batch ended runs not yet journaled after base, in the order they ended.
INSERT INTO run_journal (batch_pk, n, item_id)
SELECT %(pk)s, %(base)s + ROW_NUMBER() OVER (ORDER BY i.finished_at, i.seq), i.id
FROM items i
WHERE i.batch_pk = %(pk)s AND i.status IN ('succeeded', 'failed', 'cancelled')
  AND NOT EXISTS (SELECT 1 FROM run_journal j WHERE j.item_id = i.id);

-- name: journaled_runs
-- The journal after a number, each entry number then the columns of core.txn.reads.item_row.
SELECT j.n, i.id, i.seq, i.rec0, i.n_records, i.status, i.attempts, d.data, o.data, i.error,
       i.usage, i.started_at, i.finished_at, i.runner
FROM run_journal j JOIN items i ON i.id = j.item_id JOIN item_inputs d ON d.id = i.id
LEFT JOIN item_outputs o ON o.id = i.id
WHERE j.batch_pk = (SELECT pk FROM batches WHERE id = %(batch_id)s) AND j.n > %(after)s
ORDER BY j.n LIMIT %(limit)s;

-- name: runs_added_since
-- (id, ext_id) of the batch items from a seq on: where an upload items are.
SELECT id, ext_id FROM items
WHERE batch_pk = (SELECT pk FROM batches WHERE id = %(batch_id)s) AND seq >= %(seq)s
  AND ext_id IS NOT NULL AND status != 'staged'
ORDER BY seq;
