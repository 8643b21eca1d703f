-- 13: Parallel task groups. The order in which a group runs were seen to end: the
-- cursor of the group events stream (core.txn.taskgroups numbers them, per batch, one
-- journaling at a time, so a reader never sees a number before the ones below it).
CREATE TABLE run_journal (
    batch_pk INTEGER NOT NULL,
    n INTEGER NOT NULL,
    item_id INTEGER NOT NULL,
    PRIMARY KEY (batch_pk, n)
);
CREATE UNIQUE INDEX run_journal_item ON run_journal(item_id);
