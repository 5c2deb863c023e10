"""Storage: the SQLAlchemy models, the engine/session factory and Alembic migrations. Knows nothing of chat."""
