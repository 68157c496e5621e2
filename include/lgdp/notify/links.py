"""Web links councils can click: their SharePoint folder for one return and period.

The folder's path comes from ``lgdp.collect.graph.folder_path`` (the same function collection
uses, so the link and the folder cannot disagree); the site's web address is configuration
(``LGDP_SHAREPOINT_WEB_URL``, the document library's URL). The default is a clearly fake
example.org address; the demo points it at the Microsoft 365 stand-in's folder browser.
"""

from __future__ import annotations

import os
from urllib.parse import quote

from lgdp.collect.graph import folder_path

DEFAULT_WEB_URL = "https://lgdp.sharepoint.example.org/sites/lgdp/Shared%20Documents"
PLATFORM_FOLDER = "_platform"  # where open_collection puts templates and guidance (see airflow.operators)


def library_url() -> str:
    base = os.environ.get("LGDP_SHAREPOINT_WEB_URL") or DEFAULT_WEB_URL
    return quote(base.rstrip("/"), safe=":/%?=&#~@!$'()*+,;")


def folder_url(return_id: str, period: str, council_code: str) -> str:
    return f"{library_url()}/{quote(folder_path(return_id, period, council_code))}"


def guidance_url(return_id: str, period: str, council_code: str) -> str:
    return f"{folder_url(return_id, period, council_code)}/{PLATFORM_FOLDER}"
