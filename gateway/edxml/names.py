"""edXML wire names: the QCVN 102 namespace, the prefix and the standard's own spellings."""

from __future__ import annotations

from typing import Final

NAMESPACE: Final = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
# The national axis's parser matches the literal prefix, not just the namespace (domain.md §2.1).
PREFIX: Final = "edXML"
ZIP_CONTENT_TYPE: Final = "application/zip"
MANIFEST_VERSION: Final = "1.0"

# One vendor's internal format spells these correctly, in a namespace of its own: accepted on
# input and reported, never written. The standard's misspelling is the canonical name.
ALIASES: Final[dict[str, str]] = {
    "Business": "Bussiness",
    "BusinessDocType": "BussinessDocType",
    "BusinessDocReason": "BussinessDocReason",
    "BusinessDocumentInfo": "BussinessDocumentInfo",
}

# The official sample carries `Signature` (XML-DSig shape, default namespace); other senders write
# an empty `edXML:DigitalSignature`. Either is the envelope signature, kept byte for byte.
SIGNATURE_NAMES: Final = frozenset({"Signature", "DigitalSignature"})

# SOAP header attributes some provincial axes put on TraceHeaderList; meaningless to edXML.
SOAP_ATTRIBUTES: Final = frozenset({"mustUnderstand", "actor"})

# Where the payload of an attachment lives; its text is decoded as it streams in.
PAYLOAD_ELEMENT: Final = "ContentTransferEncoded"

# An organisation element's children in the standard's order, with the model's field names.
ORGANISATION_FIELDS: Final = (
    ("OrganId", "organ_id"),
    ("OrganizationInCharge", "organization_in_charge"),
    ("OrganName", "organ_name"),
    ("OrganAdd", "organ_add"),
    ("Email", "email"),
    ("Telephone", "telephone"),
    ("Fax", "fax"),
    ("Website", "website"),
)
