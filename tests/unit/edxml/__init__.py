"""Unit tests of the edXML core: samples, strict writer, lenient reader, limits, mapping."""
