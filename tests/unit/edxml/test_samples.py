"""Every shared sample imports; each one's report and mapped fields are what the sample means."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from docaxis.common.v1 import common_pb2

from gateway.edxml import (
    BusinessDocType,
    DocumentPackage,
    IssueCode,
    StatusPackage,
    read_document,
    read_edxml,
    read_status,
)
from gateway.edxml.dates import VIETNAM
from gateway.edxml.mapping import (
    affected_document_ids,
    attachment_ref,
    document_header,
    status_values,
)
from tests.testdata import corpus_files
from tests.unit.edxml.builders import (
    LENIENT,
    NOW,
    ORIGINAL_ID,
    RECALL,
    STATUS,
    STRICT,
)

# The repository's samples and, when it is beside the repository, the wider shared corpus's.
EVERY_SAMPLE = [pytest.param(found.path, id=found.id) for found in corpus_files("edxml", "*.edxml")]


def test_the_sample_folder_holds_the_documented_samples(samples: dict[str, bytes]) -> None:
    """The README's four samples are there (more may be added; each is tested below)."""
    assert {STRICT, LENIENT, RECALL, STATUS} <= set(samples)


@pytest.mark.parametrize("path", EVERY_SAMPLE)
def test_every_sample_imports_without_errors(path: Path) -> None:
    """Each sample parses into a package whose report has no error."""
    sample = path.read_bytes()
    result = read_edxml(sample, now=NOW)
    assert result.report.ok, result.report.errors
    assert result.raise_for_errors() is result.package


@pytest.mark.parametrize("name", [STRICT, RECALL, STATUS])
def test_strictly_written_samples_report_nothing(name: str, samples: dict[str, bytes]) -> None:
    """A package written the strict way gets an empty report: no problem, no normalisation."""
    assert read_edxml(samples[name], now=NOW).report.issues == ()


def test_the_lenient_sample_reports_each_normalisation(samples: dict[str, bytes]) -> None:
    """dd/MM/yyyy dates are normalised at their paths; empty signature and no signer warn."""
    report = read_edxml(samples[LENIENT], now=NOW).report
    found = {(issue.code, issue.path, issue.normalised) for issue in report.issues}
    assert found == {
        (IssueCode.DATE_NORMALISED, "MessageHeader/PromulgationInfo/PromulgationDate", True),
        (IssueCode.DATE_NORMALISED, "TraceHeaderList/TraceHeader[1]/Timestamp", True),
        (IssueCode.SIGNATURE_EMPTY, "DigitalSignature", False),
        (IssueCode.SIGNER_MISSING, "MessageHeader/SignerInfo", False),
    }
    assert report.ok
    assert {issue.code for issue in report.normalisations} == {IssueCode.DATE_NORMALISED}


def test_the_lenient_sample_reads_as_the_strict_one_apart_from_what_it_lacks(
    samples: dict[str, bytes],
) -> None:
    """Normalised dates equal the strict sample's; only signer, due date and signature differ."""
    strict = read_document(samples[STRICT], now=NOW).package
    lenient = read_document(samples[LENIENT], now=NOW).package
    assert lenient.header.promulgation == strict.header.promulgation
    assert lenient.trace == strict.trace
    assert lenient.header.signer is None
    assert lenient.header.due_date is None
    assert lenient.signature is not None
    assert lenient.signature.raw == b"<edXML:DigitalSignature/>"
    assert lenient.attachments == strict.attachments


def test_the_strict_sample_maps_to_a_document_header(samples: dict[str, bytes]) -> None:
    """Header fields land in the proto: ISO dates, priority shifted by one, computed DocumentId."""
    package = read_document(samples[STRICT], now=NOW).package
    header = document_header(package)
    assert header.sender == "000.00.11.H40"
    assert list(header.recipients) == ["000.00.00.H40", "000.00.12.H40"]
    assert (header.code.number, header.code.notation) == ("2491", "STC-NS")
    assert header.promulgation_date == "2025-03-14"
    assert header.due_date == "2025-03-31"
    assert header.priority == common_pb2.PRIORITY_URGENT
    assert header.business_type == common_pb2.BUSINESS_TYPE_NEW
    assert header.document_id == ORIGINAL_ID
    assert header.signer.competence == "KT. GIÁM ĐỐC"
    assert list(header.to_places) == ["UBND tỉnh (để báo cáo)", "Sở Nội vụ"]
    assert list(header.response_for) == []


def test_the_sample_attachment_is_unzipped_with_its_inner_name_kept(
    samples: dict[str, bytes],
) -> None:
    """The zip's differently named entry is kept; the reference is a PDF of the unzipped bytes."""
    package = read_document(samples[STRICT], now=NOW).package
    (attachment,) = package.attachments
    assert attachment.name == "2491-STC-NS.pdf"
    assert attachment.archive_name == "2491-STC-BCTC.pdf"
    assert attachment.data.startswith(b"%PDF")
    assert attachment.content_id == "1"
    assert package.references[0].content_id == "cid:1"
    reference = attachment_ref(attachment)
    assert reference.media_type == "application/pdf"
    assert reference.size == len(attachment.data)
    assert len(reference.sha256) == 64


def test_the_recall_sample_maps_to_a_revoke_of_the_original(samples: dict[str, bytes]) -> None:
    """Business type 1 becomes BUSINESS_TYPE_REVOKE and names the original in response_for."""
    package = read_document(samples[RECALL], now=NOW).package
    assert package.business_type is BusinessDocType.REVOKE
    business = package.trace.business
    assert business is not None
    assert business.document_id == ORIGINAL_ID
    assert business.reason == "Thu hồi văn bản điện tử do sai sót số liệu"
    header = document_header(package)
    assert header.business_type == common_pb2.BUSINESS_TYPE_REVOKE
    assert list(header.response_for) == [ORIGINAL_ID]
    assert affected_document_ids(package) == (ORIGINAL_ID,)


def test_the_status_sample_maps_to_its_status_fields(samples: dict[str, bytes]) -> None:
    """Reporter, original, code 05, description and Vietnam-time timestamp come through."""
    package = read_status(samples[STATUS], now=NOW).package
    assert isinstance(package, StatusPackage)
    assert package.timestamp == dt.datetime(2025, 3, 15, 8, 1, 44, tzinfo=VIETNAM)
    assert package.staff is not None
    assert package.staff.mobile == "0900000001"
    values = status_values(package)
    assert values.document_id == ORIGINAL_ID
    assert values.original_sender == "000.00.11.H40"
    assert values.reporter == "000.00.00.H40"
    assert values.status_code == "05"
    assert values.description == "Đang xử lý"
    assert values.reported_at == "2025-03-15T08:01:44+07:00"


def test_document_samples_are_documents_and_the_status_sample_is_a_status(
    samples: dict[str, bytes],
) -> None:
    """The reader tells the two kinds apart by the header's StatusCode."""
    for name in (STRICT, LENIENT, RECALL):
        assert isinstance(read_edxml(samples[name], now=NOW).package, DocumentPackage)
    assert isinstance(read_edxml(samples[STATUS], now=NOW).package, StatusPackage)
