"""Alembic environment: runs on the connection engine.db.migrate hands over."""
from alembic import context

from engine.schema import metadata as target_metadata

connection = context.config.attributes.get("connection")
if connection is None:
    from engine.db.session import make_engine
    connectable = make_engine(context.config.get_main_option("sqlalchemy.url") or None)
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
