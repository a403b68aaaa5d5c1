-- The daemon that holds a submission lease: its create journal's instance id (the journal
-- file's name). A daemon that finds that journal orphaned (its lock free: the owner is gone)
-- turns the owner's leases into uncertain creates at once, instead of waiting out the lease,
-- which lasts as long as a create with all its retries may take (minutes). NULL for a lease
-- taken without a journal (an in-memory database) or before this column: such a lease runs
-- its time.
ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
