"""A transparency-log witness (C2SP tlog-witness): a separate process with its own key, run by
anyone the axis's operator does not control (a provincial inspectorate, the national hub, an
agency). `docaxis witness run` serves it."""
