"""``$res:`` and ``$var:`` references in static input transforms, resolved from Settings.

The local runner's stand-in for Windmill resources and variables (which production keeps in the
Windmill instance, never in git):

- ``$res:f/chatmill/postgres`` → ``{host, port, user, password, dbname, sslmode}`` parsed from
  ``settings.database_url`` (a unix-socket URL such as ``postgresql://postgres:@/chatmill?host=/dir``
  gives ``host="/dir"``);
- ``$var:f/chatmill/<name>`` → the Settings field ``<name>`` (``SecretStr`` unwrapped, lists
  comma-joined, paths as strings, unset → ``""``) or the derived ``graph_url``. Numbers and booleans
  keep their type here, but Windmill variables are strings: scripts should coerce numeric
  variables (``float(x)``) so they behave the same on both backends.

Anything else raises :class:`ReferenceNotFound`, which fails the step (and the run) with a clear
message. Resolved values are only ever passed to ``main``; they are not recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict
from pydantic import SecretStr

from chatmill.settings import Settings

RESOURCE_PREFIX = "$res:"
VARIABLE_PREFIX = "$var:"
VARIABLE_FOLDER = "f/chatmill/"
DERIVED_VARIABLES = frozenset({"graph_url"})


class ReferenceNotFound(LookupError):
    """A ``$res:`` / ``$var:`` reference the local runner cannot resolve."""


def postgres_resource(database_url: str) -> dict[str, Any]:
    """A Windmill ``postgresql`` resource from a libpq URL or DSN."""
    params = conninfo_to_dict(database_url)
    port = params.get("port")
    return {
        "host": str(params.get("host") or "localhost"),
        "port": int(str(port)) if port else 5432,
        "user": str(params.get("user") or ""),
        "password": str(params.get("password") or ""),
        "dbname": str(params.get("dbname") or params.get("user") or ""),
        "sslmode": str(params.get("sslmode") or "prefer"),
    }


class References:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._resources = {"f/chatmill/postgres": self._postgres}

    def resolve(self, value: Any) -> Any:
        """``value`` with every ``$res:``/``$var:`` string (at any depth) replaced by its value."""
        if isinstance(value, str):
            if value.startswith(RESOURCE_PREFIX):
                return self.resource(value[len(RESOURCE_PREFIX) :])
            if value.startswith(VARIABLE_PREFIX):
                return self.variable(value[len(VARIABLE_PREFIX) :])
            return value
        if isinstance(value, dict):
            return {key: self.resolve(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        return value

    def resource(self, path: str) -> Any:
        factory = self._resources.get(path)
        if factory is None:
            known = ", ".join(sorted(self._resources))
            raise ReferenceNotFound(f"unknown resource $res:{path} (the local runner knows: {known})")
        return factory()

    def variable(self, path: str) -> Any:
        name = path.removeprefix(VARIABLE_FOLDER)
        if not path.startswith(VARIABLE_FOLDER) or not name or "/" in name:
            raise ReferenceNotFound(f"unknown variable $var:{path} (variables live under {VARIABLE_FOLDER})")
        if name in DERIVED_VARIABLES:
            return getattr(self.settings, name)
        if name not in type(self.settings).model_fields:
            raise ReferenceNotFound(f"unknown variable $var:{path}: Settings has no field {name!r}")
        return _plain(getattr(self.settings, name))

    def _postgres(self) -> dict[str, Any]:
        if not self.settings.database_url:
            raise ReferenceNotFound("$res:f/chatmill/postgres: DATABASE_URL is not resolved")
        return postgres_resource(self.settings.database_url)


def _plain(value: Any) -> Any:
    if value is None:
        return ""  # a Windmill variable is always a string; an unset one reads as empty
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, list):
        return ",".join(str(_plain(item)) for item in value)
    if isinstance(value, Path):
        return str(value)
    return value
