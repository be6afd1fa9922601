"""XEP-0092: Software Version."""
from __future__ import annotations

import platform
from dataclasses import dataclass

from lxml import etree

from .. import __version__
from ..core.dispatch import IqRequest
from ..core.feature import Feature, iq_handler
from ..xml import ns
from ..xml.builder import element, sub

_QUERY = f"{{{ns.VERSION}}}query"


@dataclass(frozen=True, slots=True)
class VersionOptions:
    show_os: bool = False  # the operating system tells attackers more than users need


class Version(Feature):
    name = "version"
    implements = ("XEP-0092",)
    disco_features = (ns.VERSION,)
    Options = VersionOptions

    @iq_handler("get", _QUERY)
    async def get_version(self, req: IqRequest) -> etree._Element:
        q = element(_QUERY, default_ns=ns.VERSION)
        sub(q, f"{{{ns.VERSION}}}name", text="xmppd")
        sub(q, f"{{{ns.VERSION}}}version", text=__version__)
        if self.options.show_os:
            sub(q, f"{{{ns.VERSION}}}os", text=f"{platform.system()} {platform.release()}")
        return q
