"""Collecting councils' return files: SharePoint access (``graph``) and what happens to each file."""
