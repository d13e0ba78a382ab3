-- where each finished call's delivery to each CRM connection stands: exactly once per pair
CREATE TABLE crm_deliveries (
    call_id TEXT NOT NULL REFERENCES calls(id),
    connection_id TEXT NOT NULL,
    delivery TEXT NOT NULL,
    PRIMARY KEY (call_id, connection_id)
);
