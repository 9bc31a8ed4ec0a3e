"""The records every service hands to persistence, and persistence stores (pure, no I/O).

- `schema.py`: one pydantic model per table, `validate(table, record)` with errors naming `table.field`;
- `events.py`: event types, `make_event`, `derived_id` (uuid5);
- `trades.py`: `trades` records from a real deal (`RealFill`), a paper trade (`PaperTrade`) or opening;
- `real_trades.py`: the connector's fills, closes and recovered openings as `trades` records.
"""
