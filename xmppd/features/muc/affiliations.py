"""XEP-0045 §5: affiliations and roles, and the permission matrix of §5.1.2 / §5.2.1 (who may change what)."""
from __future__ import annotations

import enum

from ...errors import Condition, StanzaError


class Affiliation(enum.StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    NONE = "none"
    OUTCAST = "outcast"

    @property
    def rank(self) -> int:
        return _AFF_RANK[self]


class Role(enum.StrEnum):
    MODERATOR = "moderator"
    PARTICIPANT = "participant"
    VISITOR = "visitor"
    NONE = "none"

    @property
    def rank(self) -> int:
        return _ROLE_RANK[self]


_AFF_RANK = {Affiliation.OUTCAST: -1, Affiliation.NONE: 0, Affiliation.MEMBER: 1, Affiliation.ADMIN: 2, Affiliation.OWNER: 3}
_ROLE_RANK = {Role.NONE: 0, Role.VISITOR: 1, Role.PARTICIPANT: 2, Role.MODERATOR: 3}


def parse_affiliation(text: str | None) -> Affiliation:
    try:
        return Affiliation(text or "")
    except ValueError:
        raise StanzaError(Condition.BAD_REQUEST, f"unknown affiliation {text!r}") from None


def parse_role(text: str | None) -> Role:
    try:
        return Role(text or "")
    except ValueError:
        raise StanzaError(Condition.BAD_REQUEST, f"unknown role {text!r}") from None


def default_role(aff: Affiliation, moderated: bool) -> Role:
    """§5.1.1: the role an occupant gets on entering, from its affiliation."""
    if aff in (Affiliation.OWNER, Affiliation.ADMIN):
        return Role.MODERATOR
    if aff is Affiliation.MEMBER:
        return Role.PARTICIPANT
    if aff is Affiliation.OUTCAST:
        return Role.NONE
    return Role.VISITOR if moderated else Role.PARTICIPANT


def check_role_change(actor_role: Role, actor_aff: Affiliation, target_aff: Affiliation, target_role: Role, new_role: Role) -> None:
    """§5.1.2 / §8 / §9.6: may an occupant with (actor_role, actor_aff) set ``new_role`` on the target?

    Raises ``forbidden`` when the actor lacks the privilege at all, ``not-allowed`` when the
    target outranks it (a moderator can't kick an admin; nobody changes an owner's role).
    """
    if actor_role is not Role.MODERATOR:
        raise StanzaError(Condition.FORBIDDEN, "only moderators may change roles")
    if target_aff.rank >= Affiliation.ADMIN.rank and new_role is not Role.MODERATOR:
        # §8.2/§8.3: admins and owners are moderators by affiliation; their role can't be lowered.
        raise StanzaError(Condition.NOT_ALLOWED, f"an occupant with affiliation {target_aff} keeps the moderator role")
    if new_role is Role.MODERATOR or target_role is Role.MODERATOR:
        # Granting or revoking moderator status is an admin privilege (§9.6/§9.7).
        if actor_aff.rank < Affiliation.ADMIN.rank:
            raise StanzaError(Condition.FORBIDDEN, "only admins and owners may grant or revoke moderator status")
    if new_role is Role.NONE and target_aff.rank > actor_aff.rank:
        raise StanzaError(Condition.NOT_ALLOWED, "you can't kick an occupant with a higher affiliation")


def check_affiliation_change(actor_aff: Affiliation, target_aff: Affiliation, new_aff: Affiliation) -> None:
    """§5.2.1: owners change every affiliation; admins handle member/none/outcast of non-admins."""
    if actor_aff is Affiliation.OWNER:
        return
    if actor_aff is not Affiliation.ADMIN:
        raise StanzaError(Condition.FORBIDDEN, "only admins and owners may change affiliations")
    if target_aff.rank >= Affiliation.ADMIN.rank:
        raise StanzaError(Condition.NOT_ALLOWED, f"an admin can't change the affiliation of an {target_aff}")
    if new_aff.rank >= Affiliation.ADMIN.rank:
        raise StanzaError(Condition.FORBIDDEN, f"only owners may grant the {new_aff} affiliation")
