-- contacts imported before consent was recorded have none, and an artificial voice needs prior
-- express consent: those not yet dialed are finalised as `no_consent` (the counters follow by
-- the contact_recounted trigger), so a report shows how many; a contact being dialed now is
-- withdrawn by the dial-time check with the same reason
UPDATE campaigns SET contacts_done = contacts_done + (
    SELECT COUNT(*) FROM contacts WHERE contacts.campaign_id = campaigns.id AND contacts.state = 'ready' AND contacts.consent IS NULL
);
UPDATE contacts SET state = 'done', disposition = 'no_consent'
    WHERE state = 'ready' AND consent IS NULL;

-- built-in templates are each organisation's own copy: the ids the first organisation claimed
-- for them are not provider resources
DELETE FROM provider_owners WHERE provider_id LIKE 'template:%';
