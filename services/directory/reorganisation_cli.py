"""`docaxis agencies sync` and `docaxis agencies reorganise`: the delta feed and reorganisations
from the command line (through DirectoryService, as an administrator)."""

from __future__ import annotations

import argparse

from docaxis.directory.v1 import directory_service_pb2 as dpb
from docaxis.directory.v1 import directory_service_pb2_grpc as dpb_grpc

_KINDS = {
    "merge": dpb.REORGANISATION_KIND_MERGE,
    "rename": dpb.REORGANISATION_KIND_RENAME,
    "close": dpb.REORGANISATION_KIND_CLOSE,
    "split": dpb.REORGANISATION_KIND_SPLIT,
}


def agency_line(agency: dpb.Agency) -> str:
    status = dpb.AgencyStatus.Name(agency.status).removeprefix("AGENCY_STATUS_").lower()
    line = f"{agency.version:>8}  {agency.code}  {status:<13}  {agency.name}"
    if agency.valid_to:
        line += f"  (until {agency.valid_to})"
    if agency.successor_codes:
        line += f"  -> {', '.join(agency.successor_codes)}"
    return line


async def sync_agencies(
    stub: dpb_grpc.DirectoryServiceAsyncStub, metadata: tuple[tuple[str, str], ...], since: int
) -> int:
    """Prints every agency changed since `since` (version, code, status, name, successors), then
    the version to pass next time."""
    while True:
        page = await stub.SyncAgencies(
            dpb.SyncAgenciesRequest(since_version=since, page_size=1000),
            metadata=metadata,
            timeout=30,
        )
        for agency in page.agencies:
            print(agency_line(agency))  # noqa: T201 - command output
        since = page.next_since_version
        if not page.more:
            break
    print(f"next: docaxis agencies sync --since {since}")  # noqa: T201 - command output
    return 0


async def record_reorganisation(
    stub: dpb_grpc.DirectoryServiceAsyncStub,
    metadata: tuple[tuple[str, str], ...],
    args: argparse.Namespace,
) -> int:
    response = await stub.RecordReorganisation(
        dpb.RecordReorganisationRequest(
            reorganisation=dpb.Reorganisation(
                kind=_KINDS[args.kind],
                effective_date=args.effective,
                old_codes=args.old,
                new_codes=args.new,
                note=args.note,
            )
        ),
        metadata=metadata,
        timeout=30,
    )
    verb = "recorded" if response.created else "already recorded"
    print(f"{verb} {args.kind} effective {args.effective}")  # noqa: T201 - command output
    for agency in response.agencies:
        print(agency_line(agency))  # noqa: T201 - command output
    return 0
