"""Pure domain: states, models, the batch manager. No I/O here."""
