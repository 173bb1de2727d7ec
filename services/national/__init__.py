"""The national-axis connector: a docaxis hub under an existing national axis (domain.md §8).

Outgoing documents and statuses leave through the same per-peer store-and-forward queue as
hub-to-hub traffic (NationalAxisTransport is a PeerTransport); incoming ones are polled
(NationalAxisPoller, one leader per axis), since the national axis does not push; its agency
registry is pulled through its delta feed (NationalAxisFeed). edXML is read and written with the
gateway's lenient reader and strict writer.
"""
