"""Alembic migrations of the hotline store (run by :meth:`hotline.store.db.Database.upgrade`)."""
