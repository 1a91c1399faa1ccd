"""The comparison primitive, the tolerance table, report tables, coverage, summaries and the gate."""
