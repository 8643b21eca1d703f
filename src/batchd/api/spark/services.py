"""Spark services: versioned tasks named ``folder/name``, found by URI, id or version id.

A service reference is one of ``folder/name``, ``folder/name[1.4.3]``, ``folder/name[1.4]``
(the latest ``1.4.x``), ``folder/name[1]``, ``/folders/folder/services/name`` (with an
optional ``[version]`` too), a ``service_id`` (its latest version) or a ``version_id``.
Ids are deterministic UUIDs, so every server of a deployment reports the same ones.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from batchd.domain import errors
from batchd.tasks.registry import TaskRegistry

_NAMESPACE = uuid.UUID("6f0c5a8e-5b1d-4c1e-9a43-2b7f3f1d9c10")
_FOLDER_URI = re.compile(r"^/?folders/(?P<folder>[^/\[\]]+)/services/(?P<name>[^/\[\]]+)"
                         r"(?:\[(?P<version>[^\]]*)\])?$")
_NAME_URI = re.compile(r"^(?P<name>[^\[\]]+?)(?:\[(?P<version>[^\]]*)\])?$")
_VERSION = re.compile(r"^\d+(?:\.\d+){0,2}(?:-[0-9A-Za-z.-]+)?$")


def service_id(name: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"service:{name}"))


def version_id(name: str, version: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"version:{name}:{version}"))


@dataclass(frozen=True, slots=True)
class Service:
    """A resolved service version: the task that runs its chunks."""

    name: str
    version: str

    @property
    def service_id(self) -> str:
        return service_id(self.name)

    @property
    def version_id(self) -> str:
        return version_id(self.name, self.version)

    @property
    def uri(self) -> str:
        return f"{self.name}[{self.version}]"


class ServiceNotFound(errors.NotFound):
    code = "service_not_found"


class InvalidServiceReference(errors.InvalidInput):
    code = "invalid_service"


def resolve(registry: TaskRegistry, reference: str) -> Service:
    """The service version ``reference`` names.

    Raises:
        InvalidServiceReference: the reference is not a service URI, id or version id.
        ServiceNotFound: no such service, or no version of it matches.
    """
    ref = reference.strip()
    by_id = _by_uuid(registry, ref)
    if by_id is not None:
        return by_id
    m = _FOLDER_URI.match(ref)
    if m:
        name, wanted = f"{m['folder']}/{m['name']}", m["version"]
    else:
        m = _NAME_URI.match(ref)
        if not m or not m["name"].strip():
            raise _bad_reference(reference, "expected folder/name, folder/name[version], "
                                 "/folders/f/services/s, a service_id or a version_id")
        name, wanted = m["name"].strip().strip("/"), m["version"]
    if wanted is not None and not _VERSION.match(wanted.strip()):
        raise _bad_reference(reference, f"{wanted!r} is not a version such as 1, 1.4 or 1.4.3")
    versions = registry.versions(name)
    if not versions:
        raise ServiceNotFound(f"service {name!r} was not found")
    version = _pick(versions, None if wanted is None else wanted.strip())
    if version is None:
        raise ServiceNotFound(
            f"service {name!r} has no version matching [{wanted}]; known: {versions}"
        )
    return Service(name=name, version=version)


def _pick(versions: list[str], wanted: str | None) -> str | None:
    """The newest version matching ``wanted`` (exact, or a prefix of whole parts)."""
    if wanted is not None and wanted in versions:
        return wanted
    matching = [
        v for v in versions if wanted is None or v.startswith(wanted + ".")
    ]
    # A prefix picks the newest release; a pre-release only when nothing else matches.
    releases = [v for v in matching if "-" not in v]
    candidates = releases or matching
    return candidates[-1] if candidates else None  # versions come oldest first


def _by_uuid(registry: TaskRegistry, ref: str) -> Service | None:
    try:
        wanted = str(uuid.UUID(ref))
    except ValueError:
        return None
    for name in registry.names():
        versions = registry.versions(name)
        if service_id(name) == wanted:
            latest = _pick(versions, None)
            return Service(name=name, version=latest) if latest else None
        for v in versions:
            if version_id(name, v) == wanted:
                return Service(name=name, version=v)
    raise ServiceNotFound(f"no service or service version has the id {ref!r}")


def _bad_reference(reference: str, why: str) -> InvalidServiceReference:
    return InvalidServiceReference(
        f"service {reference!r} is not valid: {why}",
        details=[{"loc": ["body", "service"], "msg": why, "type": "invalid_service"}],
    )
