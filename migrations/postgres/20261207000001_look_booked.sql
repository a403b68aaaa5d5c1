-- The twin of migrations/20261207000001_look_booked.sql: paced look-ups of unknown responses.
-- look_booked: 1 while next_look_at is a time booked for the delivery's look-up.

ALTER TABLE webhook_deliveries ADD COLUMN look_booked BIGINT NOT NULL DEFAULT 0;
