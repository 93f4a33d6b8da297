"""Opening the audit database for the commands that read it (`history`, `explain`).

The URL comes from `--database-url`, else the daemon's own configuration (AUTOTUNER_DATABASE_URL
or the settings file), so that these commands read what `autotuner run` wrote.
"""

from __future__ import annotations

import argparse

from autotuner.adapters.sql_store import SqlStore, StoreError
from autotuner.runtime.settings import SettingsError, load_settings


class AuditUnavailable(Exception):
    """The audit database cannot be read; the message says what to do."""


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="audit database (default: as `autotuner run` is configured, a SQLite file)",
    )
    parser.add_argument("--config", metavar="FILE", help="the daemon's YAML settings file")


def open_store(args: argparse.Namespace) -> SqlStore:
    try:
        settings = load_settings({"database_url": args.database_url, "config": args.config})
    except SettingsError as error:
        raise AuditUnavailable(str(error)) from None
    try:
        # A reader must not leave an empty database behind where none was.
        return SqlStore(settings.database_url.get_secret_value(), create=False)
    except StoreError as error:
        raise AuditUnavailable(str(error)) from None
