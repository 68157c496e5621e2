"""Who to write to at a council: its contacts by role, from the spec reference data.

``return_specs/shared/contacts/<GSS>.yaml`` lists each council's ``returns`` mailbox and its
``senior`` contact (escalations). The reference data is the single source of truth; the ledger
does not copy it.
"""

from __future__ import annotations

from typing import Literal

from lgdp.specs.load import Reference, load_reference
from lgdp.specs.model import Contact

Role = Literal["returns", "senior"]


class NoContact(LookupError):
    """A council has no contact of the role needed: fix the council's contacts file."""


def contacts(council_code: str, role: Role = "returns", reference: Reference | None = None) -> list[Contact]:
    ref = reference or load_reference()
    cc = ref.contacts.get(council_code)
    return [c for c in cc.contacts if c.role == role] if cc else []


def addresses(council_code: str, role: Role = "returns", reference: Reference | None = None) -> list[str]:
    """The council's addresses for ``role``; raises ``NoContact`` naming the file to fix if none."""
    found = [c.email for c in contacts(council_code, role, reference)]
    if not found:
        raise NoContact(
            f"council {council_code} has no {role!r} contact: add one to "
            f"return_specs/shared/contacts/{council_code}.yaml"
        )
    return found
