-- Paced look-ups of unknown responses (src/store/deliveries.rs, `LookPacer`): a delivery
-- naming a response no job knows is looked up upstream at most `webhook.lookups_per_second`
-- a second; one that cannot be looked up yet is booked a later time.
--
-- look_booked: 1 while the delivery's next_look_at is a time booked for its look-up (it is
-- looked up when that time comes, without taking another); 0 otherwise (a new delivery, or
-- one due again after a look that found nothing, takes a time when it comes due).
-- Portable types only.

ALTER TABLE webhook_deliveries ADD COLUMN look_booked INTEGER NOT NULL DEFAULT 0;
