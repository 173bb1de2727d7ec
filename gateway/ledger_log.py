"""The ledger as a static, HTTP-readable log (C2SP tlog-tiles), under `/ledger/`:

    GET /ledger/checkpoint                    the latest served checkpoint with cosignatures
    GET /ledger/tile/<L>/<N>[.p/<W>]          hash tiles (256 or W hashes of 32 bytes)
    GET /ledger/tile/entries/<N>[.p/<W>]      entry bundles (uint16-length-prefixed bodies)

Paths are byte-compatible with the spec, so `curl` (with a client certificate) or an
off-the-shelf tlog-tiles client can mirror the log and verify it against the checkpoint. Any
authenticated agency or administrator may read it; the gateway only relays LedgerService.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from docaxis.ledger.v1 import ledger_service_pb2 as lpb
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from docaxis_client.ledger.tiles import parse_entries_path, parse_tile_path
from gateway.auth import Principal
from gateway.problems import Problem
from gateway.rest.app import Context

TILE_MEDIA_TYPE = "application/octet-stream"
CHECKPOINT_MEDIA_TYPE = "text/plain; charset=utf-8"
# Full tiles and bundles never change; partial ones are superseded as the log grows, and the
# checkpoint moves about once a second (the spec's recommended caching).
IMMUTABLE = "public, max-age=31536000, immutable"
SHORT = "public, max-age=1"


async def _principal(ctx: Context, request: Request) -> Principal:
    """An agency certificate, or else an administrator's."""
    try:
        return await ctx.agency(request)
    except Problem as problem:
        if problem.status != 403:
            raise
    return ctx.authenticator.administrator(request.scope)


def ledger_log_routes(ctx: Context) -> list[Route]:
    def endpoint(
        handler: Callable[[Request, Principal], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def call(request: Request) -> Response:
            try:
                return await handler(request, await _principal(ctx, request))
            except Problem as problem:
                ctx.metrics.count_rejection(problem)
                return problem.response()

        return call

    async def checkpoint(request: Request, principal: Principal) -> Response:
        answer = await ctx.call(
            ctx.services.ledger.GetCheckpoint, lpb.GetCheckpointRequest(), principal
        )
        return Response(
            answer.note, media_type=CHECKPOINT_MEDIA_TYPE, headers={"Cache-Control": SHORT}
        )

    async def tile(request: Request, principal: Principal) -> Response:
        path = "tile/" + request.path_params["path"]
        try:
            if path.startswith("tile/entries/"):
                index, width = parse_entries_path(path)
                bundle = await ctx.call(
                    ctx.services.ledger.GetEntryBundle,
                    lpb.GetEntryBundleRequest(index=index, width=width),
                    principal,
                )
                data, full = bundle.data, width == 256
            else:
                coord = parse_tile_path(path)
                answer = await ctx.call(
                    ctx.services.ledger.GetTile,
                    lpb.GetTileRequest(level=coord.level, index=coord.index, width=coord.width),
                    principal,
                )
                data, full = answer.data, coord.full
        except ValueError as exc:
            raise Problem(404, "NOT_FOUND", f"not a tlog-tiles path: {exc}") from None
        cache = IMMUTABLE if full else SHORT
        return Response(data, media_type=TILE_MEDIA_TYPE, headers={"Cache-Control": cache})

    return [
        Route("/ledger/checkpoint", endpoint(checkpoint), methods=["GET"]),
        Route("/ledger/tile/{path:path}", endpoint(tile), methods=["GET"]),
    ]
