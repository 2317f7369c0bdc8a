"""Data: file formats and readers, the importer, the store (schema, migrations, run records), per-user
sequences and generated data. May import `engine.core` only."""
