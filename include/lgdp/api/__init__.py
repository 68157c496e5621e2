"""The councils' submission API: system-to-system returns beside the SharePoint folders.

A council's case-management or finance system submits a return with a token issued for that
council (``lgdp api token issue``); the API keeps the bytes, places the file in the council's
SharePoint folder, and the ``collect`` task processes it exactly like a file an officer dropped.
No Airflow here: ``plugins/lgdp_api.py`` mounts the app on the api-server.
"""
