"""The ledger: the platform's own PostgreSQL schema (models, migrations, queries)."""
