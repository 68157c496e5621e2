"""The platform team's pages: register, calendar, progress across returns, each council.

Pure functions over the ledger (SQLAlchemy sessions in, plain dicts and dataclasses out) in
``register``, ``calendar``, ``progress`` and ``council``; ``render`` turns them into HTML with the
Jinja templates shipped in ``templates/`` (no CDN, no JavaScript needed); ``web`` is the FastAPI
app (pages and a JSON API). The Airflow glue (authentication through Airflow's auth manager, the
nav entries, links to task instances) lives in ``plugins/lgdp_ui.py``.
"""
